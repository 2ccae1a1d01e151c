//! `segments.v1.Queries`: reads from the read model, after it has applied
//! the `min_sequence` the client asked for.

use crate::auth::ApiKeys;
use crate::convert;
use segmentd_domain::Criteria;
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::queries_server::Queries;
use segmentd_readmodel::{OrgView, ReadModel, SegmentLookup};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

pub struct QueriesService {
    model: Arc<ReadModel>,
    keys: ApiKeys,
    /// How long a query waits for `min_sequence` before answering UNAVAILABLE.
    max_wait: Duration,
}

impl QueriesService {
    pub fn new(model: Arc<ReadModel>, keys: ApiKeys, max_wait: Duration) -> Self {
        QueriesService { model, keys, max_wait }
    }

    /// Authenticates and waits until the read model has applied `min_sequence`.
    async fn prepare<T>(&self, request: &Request<T>, min_sequence: u64) -> Result<String, Status> {
        let caller = self.keys.authenticate(request)?;
        if min_sequence > 0 {
            self.model.wait_for(min_sequence, self.max_wait).await.map_err(crate::status::read_model)?;
        }
        Ok(caller.org)
    }
}

fn page_size(raw: u32) -> Result<usize, Status> {
    match raw as usize {
        0 => Ok(DEFAULT_PAGE),
        n if n > MAX_PAGE => Err(Status::invalid_argument(format!("page_size: at most {MAX_PAGE}"))),
        n => Ok(n),
    }
}

const TOKEN_PREFIX: &str = "r1.";

fn page_token(raw: &str) -> Result<Option<u32>, Status> {
    if raw.is_empty() {
        return Ok(None);
    }
    raw.strip_prefix(TOKEN_PREFIX)
        .and_then(|r| r.parse().ok())
        .map(Some)
        .ok_or_else(|| Status::invalid_argument("page_token: not a token this server gave out"))
}

fn next_token(after: Option<u32>) -> String {
    after.map(|r| format!("{TOKEN_PREFIX}{r}")).unwrap_or_default()
}

fn segment_criteria(view: &OrgView, lookup: SegmentLookup<'_>) -> Result<Arc<Criteria>, Status> {
    let def = view.segment(lookup.clone()).ok_or_else(|| not_found(&lookup))?;
    view.segment_criteria(def.id)
        .cloned()
        .ok_or_else(|| Status::internal(format!("segment {} has criteria this server cannot read", def.id)))
}

fn not_found(lookup: &SegmentLookup<'_>) -> Status {
    match lookup {
        SegmentLookup::Id(id) => Status::not_found(format!("segment {id} does not exist")),
        SegmentLookup::Name(name) => Status::not_found(format!("no segment is named {name:?}")),
    }
}

#[tonic::async_trait]
impl Queries for QueriesService {
    async fn get_contact(&self, request: Request<pb::GetContactRequest>) -> Result<Response<pb::Contact>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let email = convert::email("email", &request.get_ref().email)?;
        self.model.read(&org, |view, _| {
            view.contact(email.as_str())
                .map(|c| Response::new(convert::contact(c)))
                .ok_or_else(|| Status::not_found(format!("contact {email} does not exist")))
        })
    }

    async fn get_segment(&self, request: Request<pb::GetSegmentRequest>) -> Result<Response<pb::Segment>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let lookup = convert::segment_ref("segment", request.get_ref().segment.as_ref())?;
        self.model.read(&org, |view, _| {
            view.segment(lookup.clone()).map(|s| Response::new(convert::segment(s))).ok_or_else(|| not_found(&lookup))
        })
    }

    async fn list_segments(
        &self,
        request: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        Ok(self.model.read(&org, |view, sequence| {
            Response::new(pb::ListSegmentsReply { segments: view.segments().map(convert::segment).collect(), sequence })
        }))
    }

    async fn count_members(
        &self,
        request: Request<pb::CountMembersRequest>,
    ) -> Result<Response<pb::CountMembersReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let lookup = convert::segment_ref("segment", req.segment.as_ref())?;
        let at = convert::clock(&req.at)?;
        self.model.read(&org, |view, sequence| {
            let criteria = segment_criteria(view, lookup)?;
            Ok(Response::new(pb::CountMembersReply { count: view.count(&criteria, at), sequence }))
        })
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let lookup = convert::segment_ref("segment", req.segment.as_ref())?;
        let at = convert::clock(&req.at)?;
        let limit = page_size(req.page_size)?;
        let after = page_token(&req.page_token)?;
        self.model.read(&org, |view, sequence| {
            let criteria = segment_criteria(view, lookup)?;
            let page = view.members(&criteria, at, after, limit);
            Ok(Response::new(pb::ListMembersReply {
                contacts: page.contacts.iter().map(|c| convert::contact(c)).collect(),
                next_page_token: next_token(page.next_after),
                sequence,
            }))
        })
    }

    async fn preview_criteria(
        &self,
        request: Request<pb::PreviewCriteriaRequest>,
    ) -> Result<Response<pb::PreviewCriteriaReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let criteria = convert::criteria("criteria", req.criteria.as_ref())?;
        let at = convert::clock(&req.at)?;
        let limit = page_size(req.page_size)?;
        Ok(self.model.read(&org, |view, sequence| {
            let page = view.members(&criteria, at, None, limit);
            Response::new(pb::PreviewCriteriaReply {
                count: view.count(&criteria, at),
                contacts: page.contacts.iter().map(|c| convert::contact(c)).collect(),
                criteria_text: criteria.to_string(),
                sequence,
            })
        }))
    }
}
