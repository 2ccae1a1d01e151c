//! `segments.v1.Commands`: writes.

use crate::auth::ApiKeys;
use crate::convert;
use crate::jobs::{JobAnswer, JobOptions, Jobs};
use crate::write::{CommandError, CommandMeta, SegmentOutcome, Writer, command_id};
use segmentd_domain::event::JobKind;
use segmentd_domain::job::JobRequest;
use segmentd_domain::segment::{SegmentCatalog, SegmentCommand, SegmentDef, SegmentName};
use segmentd_domain::{Criteria, Field};
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::commands_server::Commands;
use segmentd_readmodel::{ReadModel, SegmentLookup};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

pub struct CommandsService {
    writer: Arc<Writer>,
    keys: ApiKeys,
    /// On nodes with a read model only: jobs take their member lists from it.
    jobs: Option<Arc<Jobs>>,
    /// This node's read model, when it runs the queries role too: what
    /// SaveSegmentAsList and CreateBulkSegments read members and values from.
    model: Option<Arc<ReadModel>>,
    max_wait: Duration,
}

impl CommandsService {
    pub fn new(writer: Arc<Writer>, keys: ApiKeys) -> Self {
        CommandsService { writer, keys, jobs: None, model: None, max_wait: Duration::from_secs(10) }
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
        options: JobOptions,
    ) -> Result<Response<pb::JobReply>, Status> {
        let meta = self.meta(request, raw_command_id)?;
        let lookup = convert::segment_ref("segment", segment)?;
        let answer = self.jobs()?.start(&meta, lookup, job, options).await?;
        Ok(Response::new(match answer {
            JobAnswer::Started(started) => pb::JobReply {
                sequence: started.seq,
                job: Some(convert::job(&started.job)),
                duplicate: started.duplicate,
                dry_run: None,
            },
            JobAnswer::DryRun(report) => pb::JobReply {
                sequence: report.position,
                job: None,
                duplicate: false,
                dry_run: Some(convert::dry_run(&report)),
            },
        }))
    }

    fn jobs(&self) -> Result<&Arc<Jobs>, Status> {
        self.jobs.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "jobs run on nodes with a read model (segmentd serve); this node runs only the commands role",
            )
        })
    }

    /// Gives the service the node's read model, waited on at most `max_wait`.
    pub fn with_read_model(mut self, model: Arc<ReadModel>, max_wait: Duration) -> Self {
        self.model = Some(model);
        self.max_wait = max_wait;
        self
    }

    /// The read model, once it has applied `min_sequence`; a command-only
    /// node has none and refuses the command.
    async fn read_model(&self, rpc: &str, min_sequence: u64) -> Result<&ReadModel, Status> {
        let model = self.model.as_deref().ok_or_else(|| {
            Status::failed_precondition(format!(
                "{rpc} reads the read model, and this node runs the commands role only; send it to a node \
                 that runs `segmentd serve`"
            ))
        })?;
        if min_sequence > 0 {
            model.wait_for(min_sequence, self.max_wait).await.map_err(crate::status::read_model)?;
        }
        Ok(model)
    }

    async fn catalog(&self, org: &str) -> Result<SegmentCatalog, Status> {
        Ok(self.writer.catalog(org).await.map_err(CommandError::from)?.1)
    }

    /// The live segment a request names, from the catalogue commands decide on.
    async fn segment_def(&self, org: &str, r: Option<&pb::SegmentRef>) -> Result<SegmentDef, Status> {
        let lookup = convert::segment_ref("segment", r)?;
        let catalog = self.catalog(org).await?;
        let def = match &lookup {
            SegmentLookup::Id(id) => catalog.segments.get(id),
            SegmentLookup::Name(name) => catalog.by_name(name),
        };
        def.cloned().ok_or_else(|| match lookup {
            SegmentLookup::Id(id) => Status::not_found(format!("segment {id} does not exist")),
            SegmentLookup::Name(name) => Status::not_found(format!("no segment is named {name:?}")),
        })
    }

    /// Topic ids for commands; names are resolved against the catalogue,
    /// ids are checked by the domain.
    async fn topic_ids(&self, org: &str, refs: &[pb::TopicRef]) -> Result<Vec<u64>, Status> {
        if refs.is_empty() {
            return Err(Status::invalid_argument("topics: give at least one topic"));
        }
        convert::at_most_refs("topics", refs)?;
        let catalog = self.catalog(org).await?;
        refs.iter()
            .enumerate()
            .map(|(i, r)| match convert::topic_ref(&format!("topics[{i}]"), Some(r))? {
                convert::Lookup::Id(id) => Ok(id),
                l @ convert::Lookup::Name(_) => {
                    convert::find_topic(&catalog, &l).map(|t| t.id).ok_or_else(|| Status::not_found(l.missing("topic")))
                }
            })
            .collect()
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

fn segment_reply(out: &SegmentOutcome) -> Response<pb::SegmentReply> {
    Response::new(pb::SegmentReply {
        sequence: out.seq,
        segment: out.segment.as_ref().map(|s| convert::segment(s, &out.catalog)),
        duplicate: out.duplicate,
    })
}

fn refused(e: segmentd_domain::DomainError) -> Status {
    CommandError::from(e).into()
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
        Ok(segment_reply(&out))
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
        Ok(segment_reply(&out))
    }

    async fn rollback_segment(
        &self,
        request: Request<pb::RollbackSegmentRequest>,
    ) -> Result<Response<pb::SegmentReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let id = self.segment_id(&meta.caller.org, req.segment.as_ref()).await?;
        if req.to_version == 0 {
            return Err(Status::invalid_argument("to_version: give the version to roll back to (1 or more)"));
        }
        let command = SegmentCommand::Rollback {
            id,
            to_version: req.to_version,
            expected_version: expected(req.expected_version),
        };
        let out = self.writer.segments(&meta, command).await?;
        Ok(segment_reply(&out))
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
        let options = JobOptions { dry_run: req.dry_run, expected_position: req.expected_position };
        self.start_job(&request, &req.command_id, req.segment.as_ref(), job, options).await
    }

    async fn delete_segment_contacts(
        &self,
        request: Request<pb::DeleteSegmentContactsRequest>,
    ) -> Result<Response<pb::JobReply>, Status> {
        let req = request.get_ref();
        let job = JobRequest { kind: JobKind::DeleteContacts, confirmed: req.confirm };
        let options = JobOptions { dry_run: req.dry_run, expected_position: req.expected_position };
        self.start_job(&request, &req.command_id, req.segment.as_ref(), job, options).await
    }

    async fn reset_scores(&self, request: Request<pb::ResetScoresRequest>) -> Result<Response<pb::JobReply>, Status> {
        let req = request.get_ref();
        let job =
            JobRequest { kind: JobKind::ResetScores { reason: req.reason.trim().to_owned() }, confirmed: req.agree };
        let options = JobOptions { dry_run: req.dry_run, expected_position: req.expected_position };
        self.start_job(&request, &req.command_id, req.segment.as_ref(), job, options).await
    }

    async fn cancel_job(&self, request: Request<pb::CancelJobRequest>) -> Result<Response<pb::JobReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let job_id = req.job_id.trim();
        if job_id.is_empty() {
            return Err(Status::invalid_argument("job_id: name the job to cancel (the command id that started it)"));
        }
        let (sequence, job) = self.jobs()?.cancel(&meta, job_id, req.reason.trim()).await?;
        Ok(Response::new(pb::JobReply { sequence, job: Some(convert::job(&job)), duplicate: false, dry_run: None }))
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

    async fn import_legacy_segment(
        &self,
        request: Request<pb::ImportLegacySegmentRequest>,
    ) -> Result<Response<pb::SegmentReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let name = SegmentName::parse(&req.name).map_err(refused)?;
        let criteria = convert::criteria("criteria", req.criteria.as_ref())?;
        let list_name = convert::name("list_name", &req.list_name)?;
        let out = self.writer.segments(&meta, SegmentCommand::ImportLegacy { name, criteria, list_name }).await?;
        Ok(segment_reply(&out))
    }

    async fn clone_segment(
        &self,
        request: Request<pb::CloneSegmentRequest>,
    ) -> Result<Response<pb::SegmentReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let name = SegmentName::parse(&req.name).map_err(refused)?;
        let criteria = match &req.criteria {
            Some(c) => Some(convert::criteria("criteria", Some(c))?),
            None => None,
        };
        let source = match convert::segment_ref("source", req.source.as_ref())? {
            SegmentLookup::Id(id) => id,
            SegmentLookup::Name(_) => self.segment_def(&meta.caller.org, req.source.as_ref()).await?.id,
        };
        let out = self.writer.segments(&meta, SegmentCommand::Clone { source, name, criteria }).await?;
        Ok(segment_reply(&out))
    }

    async fn create_topic(&self, request: Request<pb::CreateTopicRequest>) -> Result<Response<pb::TopicReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let name = convert::name("name", &request.get_ref().name)?;
        let out = self.writer.segments(&meta, SegmentCommand::CreateTopic { name }).await?;
        let topic = out.touched.topic.and_then(|id| out.catalog.extras.topics.get(&id)).map(convert::topic);
        Ok(Response::new(pb::TopicReply { sequence: out.seq, topic, duplicate: out.duplicate }))
    }

    async fn assign_topics(
        &self,
        request: Request<pb::AssignTopicsRequest>,
    ) -> Result<Response<pb::SegmentReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let segment_id = self.segment_id(&meta.caller.org, req.segment.as_ref()).await?;
        let topic_ids = self.topic_ids(&meta.caller.org, &req.topics).await?;
        let out = self.writer.segments(&meta, SegmentCommand::AssignTopics { segment_id, topic_ids }).await?;
        Ok(segment_reply(&out))
    }

    async fn unassign_topics(
        &self,
        request: Request<pb::UnassignTopicsRequest>,
    ) -> Result<Response<pb::SegmentReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let segment_id = self.segment_id(&meta.caller.org, req.segment.as_ref()).await?;
        let topic_ids = self.topic_ids(&meta.caller.org, &req.topics).await?;
        let out = self.writer.segments(&meta, SegmentCommand::UnassignTopics { segment_id, topic_ids }).await?;
        Ok(segment_reply(&out))
    }

    async fn save_segment_as_list(
        &self,
        request: Request<pb::SaveSegmentAsListRequest>,
    ) -> Result<Response<pb::ListReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let name = convert::name("list_name", &req.list_name)?;
        let segment = self.segment_def(&meta.caller.org, req.segment.as_ref()).await?;
        let model = self.read_model("SaveSegmentAsList", req.min_sequence).await?;
        let criteria = Criteria::parse(&segment.criteria)
            .map_err(|_| Status::internal(format!("segment {} has criteria this server cannot read", segment.id)))?;
        let now = crate::write::now();
        let (at_sequence, members) =
            model.read(&meta.caller.org, |view, seq| (seq, view.member_emails(&criteria, now)));
        let command = SegmentCommand::SaveAsList {
            name,
            segment_id: segment.id,
            criteria: segment.criteria,
            at_sequence,
            members,
        };
        let out = self.writer.segments(&meta, command).await?;
        let list = out.touched.list.and_then(|id| out.catalog.extras.lists.get(&id)).map(convert::static_list);
        Ok(Response::new(pb::ListReply { sequence: out.seq, list, duplicate: out.duplicate }))
    }

    async fn create_campaign(
        &self,
        request: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::CampaignReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let name = convert::name("name", &req.name)?;
        let subject = segmentd_domain::catalog::parse_subject(&req.subject).map_err(refused)?;
        let sender = convert::email("sender", &req.sender)?;
        let segment_id = self.segment_id(&meta.caller.org, req.segment.as_ref()).await?;
        let command = SegmentCommand::CreateCampaign { name, subject, sender, segment_id };
        let out = self.writer.segments(&meta, command).await?;
        let campaign = out.touched.campaign.and_then(|id| out.catalog.extras.campaigns.get(&id)).map(convert::campaign);
        Ok(Response::new(pb::CampaignReply { sequence: out.seq, campaign, duplicate: out.duplicate }))
    }

    async fn create_bulk_segments(
        &self,
        request: Request<pb::CreateBulkSegmentsRequest>,
    ) -> Result<Response<pb::CreateBulkSegmentsReply>, Status> {
        let meta = self.meta(&request, &request.get_ref().command_id)?;
        let req = request.into_inner();
        let base_name =
            SegmentName::parse(&req.base_name).map_err(|e| Status::invalid_argument(format!("base_{e}")))?;
        let field: Field = convert::field("field", &req.field)?;
        let model = self.read_model("CreateBulkSegments", req.min_sequence).await?;
        let values = model
            .read(&meta.caller.org, |view, _| view.distinct_values(&field))
            .map(|values| values.into_iter().map(|(v, _)| v).collect())
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "field: bulk segments are made from text fields; {field} is a {} field",
                    field.kind()
                ))
            })?;
        let out = self.writer.segments(&meta, SegmentCommand::CreateBulk { base_name, field, values }).await?;
        let bulk = out.touched.bulk.and_then(|id| out.catalog.extras.bulks.get(&id));
        let segments = bulk
            .map(|b| b.children.iter().filter_map(|id| out.catalog.segments.get(id)))
            .into_iter()
            .flatten()
            .map(|s| convert::segment(s, &out.catalog))
            .collect();
        Ok(Response::new(pb::CreateBulkSegmentsReply {
            sequence: out.seq,
            bulk_id: bulk.map_or(0, |b| b.id),
            segments,
            duplicate: out.duplicate,
        }))
    }
}
