//! `segments.v1.Commands`: writes.

use crate::auth::ApiKeys;
use crate::convert;
use crate::jobs::Jobs;
use crate::write::{CommandMeta, Writer, command_id};
use segmentd_domain::event::JobKind;
use segmentd_domain::job::JobRequest;
use segmentd_domain::segment::{SegmentCommand, SegmentName};
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::commands_server::Commands;
use segmentd_readmodel::SegmentLookup;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct CommandsService {
    writer: Arc<Writer>,
    keys: ApiKeys,
    /// On nodes with a read model only: jobs take their member lists from it.
    jobs: Option<Arc<Jobs>>,
}

impl CommandsService {
    pub fn new(writer: Arc<Writer>, keys: ApiKeys) -> Self {
        CommandsService { writer, keys, jobs: None }
    }

    pub fn with_jobs(mut self, jobs: Arc<Jobs>) -> Self {
        self.jobs = Some(jobs);
        self
    }

    async fn start_job<T>(
        &self,
        request: &Request<T>,
        raw_command_id: &str,
        segment: Option<&pb::SegmentRef>,
        job: JobRequest,
    ) -> Result<Response<pb::JobReply>, Status> {
        let meta = self.meta(request, raw_command_id)?;
        let lookup = convert::segment_ref("segment", segment)?;
        let jobs = self.jobs.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "jobs run on nodes with a read model (segmentd serve); this node runs only the commands role",
            )
        })?;
        let started = jobs.start(&meta, lookup, job).await?;
        Ok(Response::new(pb::JobReply {
            sequence: started.seq,
            job: Some(convert::job(&started.job)),
            duplicate: started.duplicate,
        }))
    }

    fn meta<T>(&self, request: &Request<T>, raw_command_id: &str) -> Result<CommandMeta, Status> {
        let caller = self.keys.authenticate(request)?;
        Ok(CommandMeta { caller, command_id: command_id(raw_command_id)? })
    }

    /// Segment ids for commands; a name is resolved against the catalogue
    /// the command will be decided on.
    async fn segment_id(&self, org: &str, r: Option<&pb::SegmentRef>) -> Result<u64, Status> {
        match convert::segment_ref("segment", r)? {
            SegmentLookup::Id(id) => Ok(id),
            SegmentLookup::Name(name) => {
                let (_, catalog) = self.writer.catalog(org).await.map_err(crate::write::CommandError::from)?;
                catalog
                    .by_name(name)
                    .map(|s| s.id)
                    .ok_or_else(|| Status::not_found(format!("no segment is named {name:?}")))
            }
        }
    }
}

fn expected(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

#[tonic::async_trait]
impl Commands for CommandsService {
    async fn upsert_contacts(
        &self,
        request: Request<pb::UpsertContactsRequest>,
    ) -> Result<Response<pb::UpsertContactsReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let patches = req
            .contacts
            .iter()
            .enumerate()
            .map(|(i, c)| convert::contact_patch(i, c))
            .collect::<Result<Vec<_>, _>>()?;
        let out = self.writer.upsert_contacts(&meta, patches).await?;
        Ok(Response::new(pb::UpsertContactsReply {
            sequence: out.seq,
            created: out.created,
            updated: out.updated,
            unchanged: out.unchanged,
            duplicate: out.duplicate,
        }))
    }

    async fn delete_contacts(
        &self,
        request: Request<pb::DeleteContactsRequest>,
    ) -> Result<Response<pb::DeleteContactsReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let emails = req
            .emails
            .iter()
            .enumerate()
            .map(|(i, e)| convert::email(&format!("emails[{i}]"), e))
            .collect::<Result<Vec<_>, _>>()?;
        let (sequence, deleted, duplicate) = self.writer.delete_contacts(&meta, emails).await?;
        Ok(Response::new(pb::DeleteContactsReply { sequence, deleted, duplicate }))
    }

    async fn create_segment(
        &self,
        request: Request<pb::CreateSegmentRequest>,
    ) -> Result<Response<pb::SegmentReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let name = SegmentName::parse(&req.name).map_err(crate::write::CommandError::from)?;
        let criteria = convert::criteria("criteria", req.criteria.as_ref())?;
        let out = self.writer.segments(&meta, SegmentCommand::Create { name, criteria }).await?;
        Ok(Response::new(pb::SegmentReply {
            sequence: out.seq,
            segment: out.segment.as_ref().map(convert::segment),
            duplicate: out.duplicate,
        }))
    }

    async fn update_segment(
        &self,
        request: Request<pb::UpdateSegmentRequest>,
    ) -> Result<Response<pb::SegmentReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let id = self.segment_id(&meta.caller.org, req.segment.as_ref()).await?;
        let name = req.name.as_deref().map(SegmentName::parse).transpose().map_err(crate::write::CommandError::from)?;
        let criteria = match &req.criteria {
            Some(c) => Some(convert::criteria("criteria", Some(c))?),
            None => None,
        };
        let command = SegmentCommand::Update { id, expected_version: expected(req.expected_version), name, criteria };
        let out = self.writer.segments(&meta, command).await?;
        Ok(Response::new(pb::SegmentReply {
            sequence: out.seq,
            segment: out.segment.as_ref().map(convert::segment),
            duplicate: out.duplicate,
        }))
    }

    async fn delete_segment(
        &self,
        request: Request<pb::DeleteSegmentRequest>,
    ) -> Result<Response<pb::DeleteSegmentReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let id = self.segment_id(&meta.caller.org, req.segment.as_ref()).await?;
        let command = SegmentCommand::Delete { id, expected_version: expected(req.expected_version) };
        let out = self.writer.segments(&meta, command).await?;
        Ok(Response::new(pb::DeleteSegmentReply { sequence: out.seq, duplicate: out.duplicate }))
    }

    async fn mass_update(&self, request: Request<pb::MassUpdateRequest>) -> Result<Response<pb::JobReply>, Status> {
        let req = request.get_ref();
        let job = JobRequest {
            kind: JobKind::MassUpdate { field: req.field.trim().to_owned(), value: req.value.clone() },
            confirmed: true,
        };
        self.start_job(&request, &req.command_id, req.segment.as_ref(), job).await
    }

    async fn delete_segment_contacts(
        &self,
        request: Request<pb::DeleteSegmentContactsRequest>,
    ) -> Result<Response<pb::JobReply>, Status> {
        let req = request.get_ref();
        let job = JobRequest { kind: JobKind::DeleteContacts, confirmed: req.confirm };
        self.start_job(&request, &req.command_id, req.segment.as_ref(), job).await
    }

    async fn reset_scores(&self, request: Request<pb::ResetScoresRequest>) -> Result<Response<pb::JobReply>, Status> {
        let req = request.get_ref();
        let job =
            JobRequest { kind: JobKind::ResetScores { reason: req.reason.trim().to_owned() }, confirmed: req.agree };
        self.start_job(&request, &req.command_id, req.segment.as_ref(), job).await
    }

    async fn record_activity(
        &self,
        request: Request<pb::RecordActivityRequest>,
    ) -> Result<Response<pb::RecordActivityReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let email = convert::email("email", &req.email)?;
        let activity = convert::activity(&req)?;
        let at = convert::instant("time", &req.time)?.unwrap_or_else(crate::write::now);
        let (sequence, contact, duplicate) = self.writer.record_activity(&meta, email, activity, at).await?;
        Ok(Response::new(pb::RecordActivityReply {
            sequence,
            contact: contact.as_ref().map(convert::contact),
            duplicate,
        }))
    }
}
