//! `segments.v1.Queries`: reads from the read model, after it has applied
//! the `min_sequence` the client asked for; or, for `as_of`, from a past
//! state rebuilt from the log (`segmentd_readmodel::PastModels`).

use crate::auth::ApiKeys;
use crate::convert;
use crate::explain::ContactRef;
use crate::grpc::{export, stopped};
use segmentd_domain::catalog::MAX_BULK_SEGMENTS;
use segmentd_domain::dependencies::{check_uses, users_of};
use segmentd_domain::{Criteria, Timestamp};
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::queries_server::Queries;
use segmentd_readmodel::{
    JobNotice, JobView, Members, OrgView, PastModels, PastView, ReadModel, SegmentLookup, Until, Watch, WatchFilter,
};
use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Job updates buffered for one watcher.
const WATCH_BUFFER: usize = 64;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// The response header that says which log sequence an `as_of` answer's
/// state ends at.
pub const AS_OF_SEQUENCE_HEADER: &str = "x-as-of-sequence";

pub struct QueriesService {
    model: Arc<ReadModel>,
    keys: ApiKeys,
    /// How long a query waits for `min_sequence` before answering UNAVAILABLE.
    max_wait: Duration,
    /// Past states for `as_of`; absent on a node without a log.
    past: Option<Arc<PastModels>>,
    /// Ends open WatchJobs streams, so a graceful stop does not wait on them.
    shutdown: Option<watch::Receiver<bool>>,
}

impl QueriesService {
    pub fn new(model: Arc<ReadModel>, keys: ApiKeys, max_wait: Duration) -> Self {
        QueriesService { model, keys, max_wait, past: None, shutdown: None }
    }

    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Answers `as_of` queries from past states rebuilt from this log.
    pub fn with_past(mut self, past: Arc<PastModels>) -> Self {
        self.past = Some(past);
        self
    }

    /// The past state `as_of` names, or `None` for the live model.
    async fn past_state(&self, as_of: Option<Until>) -> Result<Option<PastView>, Status> {
        let Some(until) = as_of else { return Ok(None) };
        let past = self.past.as_ref().ok_or_else(crate::status::as_of_without_log)?;
        if let Until::Time(asked) = until {
            let now = crate::write::now();
            if asked > now {
                return Err(crate::status::as_of_in_future(asked, now));
            }
        }
        past.at(until).await.map(Some).map_err(crate::status::past)
    }

    fn model_of<'a>(&'a self, past: &'a Option<PastView>) -> &'a ReadModel {
        past.as_ref().map_or(&*self.model, |p| p.state.model())
    }

    /// Authenticates and waits until the read model has applied `min_sequence`.
    async fn prepare<T>(&self, request: &Request<T>, min_sequence: u64) -> Result<String, Status> {
        let caller = self.keys.authenticate(request)?;
        if min_sequence > 0 {
            self.model.wait_for(min_sequence, self.max_wait).await.map_err(crate::status::read_model)?;
        }
        Ok(caller.org)
    }

    /// The clock of relative conditions: `at` if given, else the read
    /// model's clock (the system clock, or the one a test pinned).
    fn at(&self, raw: &str) -> Result<Timestamp, Status> {
        if raw.is_empty() { Ok(self.model.clock().now()) } else { Ok(convert::clock(raw)?) }
    }
}

/// Changes sent per message at most (several small records are merged).
const CHANGES_PER_MESSAGE: usize = 1000;

/// Sends `watch`'s records to `tx` until the client goes away or the feed
/// ends; a watcher that can no longer be served gets the reason as status.
async fn forward(mut watch: Watch, tx: mpsc::Sender<Result<pb::MembershipChanges, Status>>) {
    loop {
        let first = tokio::select! {
            next = watch.next() => next,
            _ = tx.closed() => return,
        };
        let mut records = Vec::new();
        let mut result = first.map(|r| records.push(r));
        let mut changes = records.first().map_or(0, |r| r.changes.len());
        while result.is_ok() && changes < CHANGES_PER_MESSAGE {
            match watch.try_next() {
                Ok(Some(r)) => {
                    changes += r.changes.len();
                    records.push(r);
                }
                Ok(None) => break,
                Err(e) => result = Err(e),
            }
        }
        for message in convert::membership_changes(&records, CHANGES_PER_MESSAGE) {
            if tx.send(Ok(message)).await.is_err() {
                return;
            }
        }
        if let Err(e) = result {
            let _ = tx.send(Err(crate::status::feed(e))).await;
            return;
        }
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

/// A page of members in the layout the request asked for.
fn members_reply(page: &Members, form: &convert::PageForm, sequence: u64) -> pb::ListMembersReply {
    let mut reply =
        pb::ListMembersReply { next_page_token: next_token(page.next_after), sequence, ..Default::default() };
    match form {
        convert::PageForm::Contacts => reply.contacts = page.contacts.iter().map(convert::stored_contact).collect(),
        convert::PageForm::Rows(fields) => {
            reply.fields = fields.iter().map(ToString::to_string).collect();
            reply.rows = page.contacts.iter().map(|c| convert::export_row(c, fields)).collect();
        }
    }
    reply
}

/// The clock of relative conditions: `at` when given, else the as_of
/// instant, else `now` (the read model's clock: the system clock, or the
/// one a test pinned).
fn clock_of(pinned: Option<Timestamp>, past: &Option<PastView>, now: &segmentd_readmodel::Clock) -> Timestamp {
    pinned.or(past.as_ref().map(|p| p.clock)).unwrap_or_else(|| now.now())
}

/// Names the past state an answer came from, refusals (NOT_FOUND) included.
fn mark_past<T>(answer: Result<Response<T>, Status>, past: &Option<PastView>) -> Result<Response<T>, Status> {
    let Some(p) = past else { return answer };
    let seq = p.state.seq().into();
    match answer {
        Ok(mut response) => {
            response.metadata_mut().insert(AS_OF_SEQUENCE_HEADER, seq);
            Ok(response)
        }
        Err(mut status) => {
            status.metadata_mut().insert(AS_OF_SEQUENCE_HEADER, seq);
            Err(status)
        }
    }
}

/// A saved segment's id and parsed criteria.
fn segment_criteria(view: &OrgView, lookup: SegmentLookup<'_>) -> Result<(u64, Arc<Criteria>), Status> {
    let def = view.segment(lookup.clone()).ok_or_else(|| not_found(&lookup))?;
    let criteria = view
        .segment_criteria(def.id)
        .cloned()
        .ok_or_else(|| Status::internal(format!("segment {} has criteria this server cannot read", def.id)))?;
    Ok((def.id, criteria))
}

/// The criteria of a campaign's segment; FAILED_PRECONDITION once the
/// segment is deleted (the campaign has no recipients to speak of).
fn campaign_criteria(view: &OrgView, lookup: &convert::Lookup<'_>) -> Result<Arc<Criteria>, Status> {
    let campaign =
        convert::find_campaign(view.catalog(), lookup).ok_or_else(|| Status::not_found(lookup.missing("campaign")))?;
    if view.segment(SegmentLookup::Id(campaign.segment_id)).is_none() {
        return Err(Status::failed_precondition(format!(
            "campaign {} ({:?}) has no recipients: its segment {} was deleted",
            campaign.id, campaign.name, campaign.segment_id
        )));
    }
    segment_criteria(view, SegmentLookup::Id(campaign.segment_id)).map(|(_, criteria)| criteria)
}

const LIST_TOKEN_PREFIX: &str = "l1.";

fn list_token(raw: &str) -> Result<usize, Status> {
    if raw.is_empty() {
        return Ok(0);
    }
    raw.strip_prefix(LIST_TOKEN_PREFIX)
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| Status::invalid_argument("page_token: not a token this server gave out"))
}

fn not_found(lookup: &SegmentLookup<'_>) -> Status {
    match lookup {
        SegmentLookup::Id(id) => Status::not_found(format!("segment {id} does not exist")),
        SegmentLookup::Name(name) => Status::not_found(format!("no segment is named {name:?}")),
    }
}

fn job_not_found(id: &str) -> Status {
    Status::not_found(format!("job {id:?} does not exist"))
}

/// Feeds one WatchJobs stream: the current state first, then every applied
/// change, skipping notices the state already reflects. A watcher that fell
/// behind the notice buffer gets the current state again.
async fn watch_jobs(
    model: Arc<ReadModel>,
    org: String,
    job_id: Option<String>,
    mut notices: broadcast::Receiver<JobNotice>,
    out: mpsc::Sender<Result<pb::Job, Status>>,
    mut shutdown: Option<watch::Receiver<bool>>,
) {
    let current = |model: &ReadModel| -> Vec<JobView> {
        model.read(&org, |view, _| match &job_id {
            Some(id) => view.job(id).cloned().into_iter().collect(),
            None => view.jobs().filter(|j| !j.ended()).cloned().collect(),
        })
    };
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut pending = current(&model);
    loop {
        for job in pending.drain(..) {
            if seen.get(&job.id).is_some_and(|s| *s >= job.last_seq) {
                continue;
            }
            seen.insert(job.id.clone(), job.last_seq);
            let ended = job.ended();
            if out.send(Ok(convert::job(&job))).await.is_err() {
                return;
            }
            if ended && job_id.is_some() {
                return;
            }
        }
        let stop = stopped(shutdown.as_mut());
        tokio::select! {
            notice = notices.recv() => match notice {
                Ok(n) if n.org == org && job_id.as_ref().is_none_or(|id| *id == n.job.id) => pending.push(n.job),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => pending = current(&model),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = stop => return,
            () = out.closed() => return,
        }
    }
}

#[tonic::async_trait]
impl Queries for QueriesService {
    type WatchJobsStream = Pin<Box<dyn Stream<Item = Result<pb::Job, Status>> + Send + 'static>>;

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let id = convert::job_id("job_id", &request.get_ref().job_id)?;
        self.model.read(&org, |view, _| {
            view.job(&id).map(|j| Response::new(convert::job(j))).ok_or_else(|| job_not_found(&id))
        })
    }

    async fn watch_jobs(
        &self,
        request: Request<pb::WatchJobsRequest>,
    ) -> Result<Response<Self::WatchJobsStream>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let job_id = match request.get_ref().job_id.trim() {
            "" => None,
            raw => Some(convert::job_id("job_id", raw)?),
        };
        // Subscribed before the state is read, so no change falls between.
        let notices = self.model.watch_jobs();
        if let Some(id) = &job_id
            && self.model.read(&org, |view, _| view.job(id).is_none())
        {
            return Err(job_not_found(id));
        }
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(watch_jobs(Arc::clone(&self.model), org, job_id, notices, tx, self.shutdown.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_score_resets(
        &self,
        request: Request<pb::ListScoreResetsRequest>,
    ) -> Result<Response<pb::ListScoreResetsReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let since = convert::instant("since", &req.since)?;
        let until = convert::instant("until", &req.until)?;
        if let (Some(s), Some(u)) = (since, until)
            && s > u
        {
            return Err(Status::invalid_argument("since: must not be after until"));
        }
        let segment = match &req.segment {
            None => None,
            Some(r) => Some(convert::segment_ref("segment", Some(r))?),
        };
        let actor = req.actor.trim();
        if actor.len() > convert::MAX_ACTOR_LEN {
            return Err(Status::invalid_argument(format!("actor: at most {} bytes", convert::MAX_ACTOR_LEN)));
        }
        Ok(self.model.read(&org, |view, sequence| {
            let mut resets: Vec<&JobView> = view
                .jobs()
                .filter(|j| j.reset_reason().is_some())
                .filter(|j| since.is_none_or(|s| j.started_at >= s) && until.is_none_or(|u| j.started_at < u))
                .filter(|j| actor.is_empty() || j.actor == actor)
                .filter(|j| match &segment {
                    None => true,
                    Some(SegmentLookup::Id(id)) => j.segment_id == *id,
                    Some(SegmentLookup::Name(name)) => j.segment_name.to_lowercase() == name.to_lowercase(),
                })
                .collect();
            resets.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| b.last_seq.cmp(&a.last_seq)));
            Response::new(pb::ListScoreResetsReply {
                resets: resets.iter().map(|j| convert::score_reset(j, view.reset_contacts(&j.id).len())).collect(),
                sequence,
            })
        }))
    }

    async fn get_score_reset(
        &self,
        request: Request<pb::GetScoreResetRequest>,
    ) -> Result<Response<pb::GetScoreResetReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let id = convert::job_id("job_id", &req.job_id)?;
        let limit = page_size(req.page_size)?;
        let from = page_token(&req.page_token)?.map_or(0, |i| i as usize);
        self.model.read(&org, |view, sequence| {
            let job = view
                .job(&id)
                .filter(|j| j.reset_reason().is_some())
                .ok_or_else(|| Status::not_found(format!("score reset {id:?} does not exist")))?;
            let all = view.reset_contacts(&id);
            let page = all.get(from..).unwrap_or_default();
            let page = &page[..page.len().min(limit)];
            let next = from + page.len();
            Ok(Response::new(pb::GetScoreResetReply {
                reset: Some(convert::score_reset(job, all.len())),
                contacts: page.iter().map(convert::affected_contact).collect(),
                next_page_token: if next < all.len() { format!("{TOKEN_PREFIX}{next}") } else { String::new() },
                sequence,
            }))
        })
    }

    async fn get_contact(&self, request: Request<pb::GetContactRequest>) -> Result<Response<pb::Contact>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let email = convert::email("email", &request.get_ref().email)?;
        self.model.read(&org, |view, _| {
            view.contact(email.as_str())
                .map(|c| Response::new(convert::contact(&c)))
                .ok_or_else(|| Status::not_found(format!("contact {email} does not exist")))
        })
    }

    async fn get_segment(&self, request: Request<pb::GetSegmentRequest>) -> Result<Response<pb::Segment>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let lookup = convert::segment_ref("segment", req.segment.as_ref())?;
        let as_of = convert::as_of("as_of", req.as_of.as_ref())?;
        let past = self.past_state(as_of).await?;
        let found = self.model_of(&past).read(&org, |view, _| {
            let def = view.segment(lookup.clone()).ok_or_else(|| not_found(&lookup))?;
            let catalog = view.catalog();
            let mut segment = convert::segment(def, catalog);
            segment.used_by = users_of(catalog, def.id).iter().map(|u| convert::segment_name(u.id, catalog)).collect();
            Ok(Response::new(segment))
        });
        mark_past(found, &past)
    }

    async fn list_segments(
        &self,
        request: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let legacy = pb::LegacyFilter::try_from(req.legacy)
            .map_err(|_| Status::invalid_argument(format!("legacy: unknown filter {}", req.legacy)))?;
        let topic = req.topic.as_ref().map(|t| convert::topic_ref("topic", Some(t))).transpose()?;
        let bulk_parent = (req.bulk_parent_id != 0).then_some(req.bulk_parent_id);
        self.model.read(&org, |view, sequence| {
            let catalog = view.catalog();
            let topic = match &topic {
                Some(l) => {
                    Some(convert::find_topic(catalog, l).ok_or_else(|| Status::not_found(l.missing("topic")))?.id)
                }
                None => None,
            };
            let segments = view
                .segments()
                .filter(|s| match legacy {
                    pb::LegacyFilter::All => true,
                    pb::LegacyFilter::OrgLevel => !s.is_legacy(),
                    pb::LegacyFilter::Legacy => s.is_legacy(),
                })
                .filter(|s| topic.is_none_or(|t| s.topics.contains(&t)))
                .filter(|s| bulk_parent.is_none_or(|b| s.bulk_parent == Some(b)))
                .map(|s| convert::segment(s, catalog))
                .collect();
            Ok(Response::new(pb::ListSegmentsReply { segments, sequence }))
        })
    }

    async fn count_members(
        &self,
        request: Request<pb::CountMembersRequest>,
    ) -> Result<Response<pb::CountMembersReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let lookup = convert::segment_ref("segment", req.segment.as_ref())?;
        let pinned = convert::pinned_clock(&req.at)?;
        let as_of = convert::as_of("as_of", req.as_of.as_ref())?;
        let past = self.past_state(as_of).await?;
        let at = clock_of(pinned, &past, self.model.clock());
        let counted = self.model_of(&past).read(&org, |view, sequence| {
            let (id, criteria) = segment_criteria(view, lookup)?;
            Ok(Response::new(pb::CountMembersReply { count: view.segment_count(id, &criteria, at), sequence }))
        });
        mark_past(counted, &past)
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let lookup = convert::segment_ref("segment", req.segment.as_ref())?;
        let pinned = convert::pinned_clock(&req.at)?;
        let limit = page_size(req.page_size)?;
        let after = page_token(&req.page_token)?;
        let form = convert::page_form(req.layout, &req.fields)?;
        let as_of = convert::as_of("as_of", req.as_of.as_ref())?;
        let past = self.past_state(as_of).await?;
        let at = clock_of(pinned, &past, self.model.clock());
        let page = self.model_of(&past).read(&org, |view, sequence| {
            let (id, criteria) = segment_criteria(view, lookup)?;
            let page = view.segment_members(id, &criteria, at, after, limit);
            Ok(Response::new(members_reply(&page, &form, sequence)))
        });
        mark_past(page, &past)
    }

    async fn preview_criteria(
        &self,
        request: Request<pb::PreviewCriteriaRequest>,
    ) -> Result<Response<pb::PreviewCriteriaReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let mut criteria = convert::criteria("criteria", req.criteria.as_ref())?;
        let at = self.at(&req.at)?;
        let limit = page_size(req.page_size)?;
        self.model.read(&org, |view, sequence| {
            // `in segment` conditions, as CreateSegment would take them.
            check_uses(view.catalog(), None, &mut criteria).map_err(crate::status::domain)?;
            let page = view.members(&criteria, at, None, limit);
            Ok(Response::new(pb::PreviewCriteriaReply {
                count: view.count(&criteria, at),
                contacts: page.contacts.iter().map(convert::stored_contact).collect(),
                criteria_text: criteria.to_string(),
                sequence,
            }))
        })
    }

    async fn list_topics(
        &self,
        request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        Ok(self.model.read(&org, |view, sequence| {
            let topics = view.catalog().extras.topics.values().map(convert::topic).collect();
            Response::new(pb::ListTopicsReply { topics, sequence })
        }))
    }

    async fn get_list(&self, request: Request<pb::GetListRequest>) -> Result<Response<pb::StaticList>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let lookup = convert::list_ref("list", request.get_ref().list.as_ref())?;
        self.model.read(&org, |view, _| {
            convert::find_list(view.catalog(), &lookup)
                .map(|l| Response::new(convert::static_list(l)))
                .ok_or_else(|| Status::not_found(lookup.missing("list")))
        })
    }

    async fn list_lists(&self, request: Request<pb::ListListsRequest>) -> Result<Response<pb::ListListsReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        Ok(self.model.read(&org, |view, sequence| {
            let lists = view.catalog().extras.lists.values().map(convert::static_list).collect();
            Response::new(pb::ListListsReply { lists, sequence })
        }))
    }

    async fn list_list_members(
        &self,
        request: Request<pb::ListListMembersRequest>,
    ) -> Result<Response<pb::ListListMembersReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let lookup = convert::list_ref("list", req.list.as_ref())?;
        let limit = page_size(req.page_size)?;
        let after = list_token(&req.page_token)?;
        self.model.read(&org, |view, sequence| {
            let list =
                convert::find_list(view.catalog(), &lookup).ok_or_else(|| Status::not_found(lookup.missing("list")))?;
            let emails = view.list_members(list.id, after, limit);
            let members = emails
                .iter()
                .map(|email| pb::ListMember {
                    email: email.clone(),
                    contact: view.contact(email).map(|c| convert::contact(&c)),
                })
                .collect();
            let end = after + emails.len();
            let next_page_token =
                if end < view.list_len(list.id) { format!("{LIST_TOKEN_PREFIX}{end}") } else { String::new() };
            Ok(Response::new(pb::ListListMembersReply { members, next_page_token, sequence }))
        })
    }

    async fn get_campaign(&self, request: Request<pb::GetCampaignRequest>) -> Result<Response<pb::Campaign>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let lookup = convert::campaign_ref("campaign", request.get_ref().campaign.as_ref())?;
        self.model.read(&org, |view, _| {
            convert::find_campaign(view.catalog(), &lookup)
                .map(|c| Response::new(convert::campaign(c)))
                .ok_or_else(|| Status::not_found(lookup.missing("campaign")))
        })
    }

    async fn list_campaigns(
        &self,
        request: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        Ok(self.model.read(&org, |view, sequence| {
            let campaigns = view.catalog().extras.campaigns.values().map(convert::campaign).collect();
            Response::new(pb::ListCampaignsReply { campaigns, sequence })
        }))
    }

    async fn count_campaign_recipients(
        &self,
        request: Request<pb::CountCampaignRecipientsRequest>,
    ) -> Result<Response<pb::CountMembersReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let lookup = convert::campaign_ref("campaign", req.campaign.as_ref())?;
        let at = convert::clock(&req.at)?;
        self.model.read(&org, |view, sequence| {
            let criteria = campaign_criteria(view, &lookup)?;
            Ok(Response::new(pb::CountMembersReply { count: view.count(&criteria, at), sequence }))
        })
    }

    async fn list_campaign_recipients(
        &self,
        request: Request<pb::ListCampaignRecipientsRequest>,
    ) -> Result<Response<pb::ListMembersReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let lookup = convert::campaign_ref("campaign", req.campaign.as_ref())?;
        let at = convert::clock(&req.at)?;
        let limit = page_size(req.page_size)?;
        let after = page_token(&req.page_token)?;
        let form = convert::page_form(req.layout, &req.fields)?;
        self.model.read(&org, |view, sequence| {
            let criteria = campaign_criteria(view, &lookup)?;
            let page = view.members(&criteria, at, after, limit);
            Ok(Response::new(members_reply(&page, &form, sequence)))
        })
    }

    async fn explain_membership(
        &self,
        request: Request<pb::ExplainMembershipRequest>,
    ) -> Result<Response<pb::MembershipExplanation>, Status> {
        use pb::explain_membership_request::Contact as By;
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let lookup = convert::segment_ref("segment", req.segment.as_ref())?;
        let contact = match &req.contact {
            Some(By::Email(email)) => ContactRef::Email(convert::email("email", email)?),
            Some(By::ContactId(id)) => ContactRef::Id(*id),
            None => return Err(Status::invalid_argument("contact: give the contact's email or contact_id")),
        };
        let at = self.at(&req.at)?;
        let log = self.past.as_ref().map(|p| Arc::clone(p.log()));
        let explanation =
            crate::explain::explain_membership(&self.model, log.as_deref(), &org, lookup, contact, at).await?;
        Ok(Response::new(convert::explanation(&explanation)))
    }

    async fn list_segment_versions(
        &self,
        request: Request<pb::ListSegmentVersionsRequest>,
    ) -> Result<Response<pb::ListSegmentVersionsReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let lookup = convert::segment_ref("segment", request.get_ref().segment.as_ref())?;
        self.model.read(&org, |view, sequence| {
            let def = view.segment(lookup.clone()).ok_or_else(|| not_found(&lookup))?;
            let versions =
                view.segment_versions(def.id).into_iter().map(|(v, meta)| convert::segment_version(v, meta)).collect();
            Ok(Response::new(pb::ListSegmentVersionsReply { segment_id: def.id, versions, sequence }))
        })
    }

    async fn diff_segment_versions(
        &self,
        request: Request<pb::DiffSegmentVersionsRequest>,
    ) -> Result<Response<pb::SegmentVersionDiff>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let lookup = convert::segment_ref("segment", req.segment.as_ref())?;
        if req.from_version == 0 {
            return Err(Status::invalid_argument("from_version: give the earlier version (1 or more)"));
        }
        self.model.read(&org, |view, sequence| {
            let def = view.segment(lookup.clone()).ok_or_else(|| not_found(&lookup))?;
            let versions = view.segment_versions(def.id);
            let find = |field: &str, version: u64| {
                versions.iter().find(|(v, _)| v.version == version).copied().ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "{field}: segment {} has versions 1 to {}; {version} is not one of them",
                        def.id, def.version
                    ))
                })
            };
            let from = find("from_version", req.from_version)?;
            let to = find("to_version", if req.to_version == 0 { def.version } else { req.to_version })?;
            let diff = segmentd_domain::versions::diff_versions(from.0, to.0);
            Ok(Response::new(pb::SegmentVersionDiff {
                from: Some(convert::segment_version(from.0, from.1)),
                to: Some(convert::segment_version(to.0, to.1)),
                name_changed: diff.name.is_some(),
                criteria_changed: diff.criteria.is_some(),
                removed_conditions: diff.removed,
                added_conditions: diff.added,
                regrouped: diff.regrouped,
                sequence,
            }))
        })
    }

    async fn preview_bulk_segments(
        &self,
        request: Request<pb::PreviewBulkSegmentsRequest>,
    ) -> Result<Response<pb::PreviewBulkSegmentsReply>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let field = convert::field("field", &request.get_ref().field)?;
        self.model.read(&org, |view, sequence| {
            let values = view.distinct_values(&field).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "field: bulk segments are made from text fields; {field} is a {} field",
                    field.kind()
                ))
            })?;
            Ok(Response::new(pb::PreviewBulkSegmentsReply {
                values: values.into_iter().map(|(value, count)| pb::BulkValue { value, count }).collect(),
                limit: MAX_BULK_SEGMENTS as u32,
                sequence,
            }))
        })
    }

    type ExportContactsStream = export::ExportStream;

    async fn export_contacts(
        &self,
        request: Request<pb::ExportContactsRequest>,
    ) -> Result<Response<Self::ExportContactsStream>, Status> {
        let org = self.prepare(&request, request.get_ref().min_sequence).await?;
        let req = request.get_ref();
        let lookup = convert::segment_ref("segment", req.segment.as_ref())?;
        let fields = convert::export_fields(&req.fields)?;
        let window = convert::export_window(req.date_filter.as_ref())?;
        let pinned = convert::pinned_clock(&req.at)?;
        let as_of = convert::as_of("as_of", req.as_of.as_ref())?;
        let past = self.past_state(as_of).await?;
        let at = clock_of(pinned, &past, self.model.clock());
        // The snapshot is taken here, under the read lock, and only
        // turned into text by the stream once the lock is released.
        let snapshot = self.model_of(&past).read(&org, |view, sequence| {
            let (id, criteria) = segment_criteria(view, lookup)?;
            let contacts = view.export_members(id, &criteria, at, window.as_ref());
            let header = pb::ExportHeader {
                total: contacts.len() as u64,
                sequence,
                fields: fields.iter().map(ToString::to_string).collect(),
                segment_id: id,
                segment_name: view.segment(SegmentLookup::Id(id)).map(|s| s.name.clone()).unwrap_or_default(),
                at: at.to_string(),
            };
            Ok((header, contacts))
        });
        let answer = snapshot
            .map(|(header, contacts)| Response::new(export::stream(header, contacts, fields, self.shutdown.clone())));
        mark_past(answer, &past)
    }

    type WatchMembershipStream = ReceiverStream<Result<pb::MembershipChanges, Status>>;

    async fn watch_membership(
        &self,
        request: Request<pb::WatchMembershipRequest>,
    ) -> Result<Response<Self::WatchMembershipStream>, Status> {
        let org = self.prepare(&request, 0).await?;
        let req = request.into_inner();
        convert::at_most_refs("segments", &req.segments)?;
        let lookups = req
            .segments
            .iter()
            .enumerate()
            .map(|(i, r)| convert::segment_ref(&format!("segments[{i}]"), Some(r)))
            .collect::<Result<Vec<_>, _>>()?;
        let segments = self.model.read(&org, |view, _| {
            lookups
                .iter()
                .map(|lookup| view.segment(lookup.clone()).map(|s| s.id).ok_or_else(|| not_found(lookup)))
                .collect::<Result<BTreeSet<u64>, Status>>()
        })?;
        let filter = WatchFilter { org: Some(org), segments, from: req.from_sequence };
        let watch = self.model.watch_membership(filter).map_err(crate::status::feed)?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(forward(watch, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
