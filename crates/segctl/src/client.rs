//! The connection to segmentd: one tonic channel shared by the Commands,
//! Queries and Replay clients, the `x-api-key` interceptor, retries on
//! UNAVAILABLE, and the NAME|ID rule for naming a segment on the command line.

use segmentd_proto::v1 as pb;
use segmentd_proto::v1::commands_client::CommandsClient;
use segmentd_proto::v1::queries_client::QueriesClient;
use segmentd_proto::v1::replay_client::ReplayClient;
use std::future::Future;
use std::time::Duration;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};

/// The metadata key segmentd reads the API key from.
const API_KEY_HEADER: &str = "x-api-key";
/// The response header in which ReplayEvents says where its stream ends.
const END_SEQUENCE_HEADER: &str = "x-end-sequence";

/// Attempts per call when the server answers UNAVAILABLE (down, restarting,
/// or a read model that has not caught up yet).
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Adds `x-api-key` to every request when a key was given.
#[derive(Clone)]
struct ApiKey(Option<AsciiMetadataValue>);

impl Interceptor for ApiKey {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(key) = &self.0 {
            request.metadata_mut().insert(API_KEY_HEADER, key.clone());
        }
        Ok(request)
    }
}

type Transport = InterceptedService<Channel, ApiKey>;

/// The gRPC clients over one channel. Cloning is cheap.
#[derive(Clone)]
pub(crate) struct Api {
    commands: CommandsClient<Transport>,
    queries: QueriesClient<Transport>,
    replay: ReplayClient<Transport>,
}

/// `127.0.0.1:50051` → `http://127.0.0.1:50051`; URLs with a scheme stay.
pub(crate) fn server_url(raw: &str) -> String {
    let raw = raw.trim();
    if raw.contains("://") { raw.to_owned() } else { format!("http://{raw}") }
}

impl Api {
    /// Connects lazily: a server that is down shows up as UNAVAILABLE on the
    /// first call, after its retries.
    pub(crate) fn connect(server: &str, api_key: Option<&str>) -> anyhow::Result<Api> {
        let url = server_url(server);
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| anyhow::anyhow!("--server {url:?} is not a URL: {e}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5));
        let key = match api_key {
            None => None,
            Some(k) => Some(
                AsciiMetadataValue::try_from(k.trim())
                    .map_err(|_| anyhow::anyhow!("the API key must be printable ASCII"))?,
            ),
        };
        let channel = endpoint.connect_lazy();
        let interceptor = ApiKey(key);
        Ok(Api {
            commands: CommandsClient::with_interceptor(channel.clone(), interceptor.clone()),
            queries: QueriesClient::with_interceptor(channel.clone(), interceptor.clone()),
            replay: ReplayClient::with_interceptor(channel, interceptor),
        })
    }

    /// Opens an event replay: the stream, and the sequence the server said
    /// it will end at (for progress), if it said. Only opening is retried;
    /// a stream that breaks midway is reported, not silently restarted.
    pub(crate) async fn replay_events(
        &self,
        request: pb::ReplayEventsRequest,
    ) -> Result<(Option<u64>, Streaming<pb::RecordedEvent>), Status> {
        let response = retry(|| {
            let mut client = self.replay.clone();
            let request = request.clone();
            async move { client.replay_events(request).await }
        })
        .await?;
        let end = response.metadata().get(END_SEQUENCE_HEADER).and_then(|v| v.to_str().ok()?.parse().ok());
        Ok((end, response.into_inner()))
    }
}

impl Api {
    /// Opens a WatchJobs stream; only opening is retried.
    pub(crate) async fn watch_jobs(&self, request: pb::WatchJobsRequest) -> Result<Streaming<pb::Job>, Status> {
        retry(|| {
            let mut client = self.queries.clone();
            let request = request.clone();
            async move { client.watch_jobs(request).await.map(tonic::Response::into_inner) }
        })
        .await
    }
}

impl Api {
    /// Opens an ExportContacts stream; only opening is retried (a stream
    /// broken midway is reported: the caller cannot splice two snapshots).
    pub(crate) async fn export_contacts(
        &self,
        request: pb::ExportContactsRequest,
    ) -> Result<Streaming<pb::ExportContactsReply>, Status> {
        retry(|| {
            let mut client = self.queries.clone();
            let request = request.clone();
            async move { client.export_contacts(request).await.map(tonic::Response::into_inner) }
        })
        .await
    }
}

/// Runs `call` until it answers something other than UNAVAILABLE, at most
/// [`ATTEMPTS`] times, backing off exponentially. Writes are safe to retry
/// because every request carries the same command id on each attempt.
pub(crate) async fn retry<T, F, Fut>(call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    retry_with(FIRST_BACKOFF, call).await
}

async fn retry_with<T, F, Fut>(first_backoff: Duration, mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut delay = first_backoff;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(status) if status.code() == Code::Unavailable && attempt < ATTEMPTS => {
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            answer => return answer,
        }
    }
}

macro_rules! rpcs {
    ($($client:ident . $method:ident ($request:ty) -> $reply:ty;)*) => {
        impl Api {
            $(
                pub(crate) async fn $method(&self, request: $request) -> Result<$reply, Status> {
                    retry(|| {
                        let mut client = self.$client.clone();
                        let request = request.clone();
                        async move { client.$method(request).await.map(tonic::Response::into_inner) }
                    })
                    .await
                }
            )*
        }
    };
}

rpcs! {
    commands.upsert_contacts(pb::UpsertContactsRequest) -> pb::UpsertContactsReply;
    commands.create_segment(pb::CreateSegmentRequest) -> pb::SegmentReply;
    commands.update_segment(pb::UpdateSegmentRequest) -> pb::SegmentReply;
    commands.delete_segment(pb::DeleteSegmentRequest) -> pb::DeleteSegmentReply;
    queries.get_contact(pb::GetContactRequest) -> pb::Contact;
    queries.get_segment(pb::GetSegmentRequest) -> pb::Segment;
    queries.list_segments(pb::ListSegmentsRequest) -> pb::ListSegmentsReply;
    queries.count_members(pb::CountMembersRequest) -> pb::CountMembersReply;
    queries.list_members(pb::ListMembersRequest) -> pb::ListMembersReply;
    queries.preview_criteria(pb::PreviewCriteriaRequest) -> pb::PreviewCriteriaReply;
    commands.import_legacy_segment(pb::ImportLegacySegmentRequest) -> pb::SegmentReply;
    commands.clone_segment(pb::CloneSegmentRequest) -> pb::SegmentReply;
    commands.create_topic(pb::CreateTopicRequest) -> pb::TopicReply;
    commands.assign_topics(pb::AssignTopicsRequest) -> pb::SegmentReply;
    commands.unassign_topics(pb::UnassignTopicsRequest) -> pb::SegmentReply;
    commands.save_segment_as_list(pb::SaveSegmentAsListRequest) -> pb::ListReply;
    commands.create_campaign(pb::CreateCampaignRequest) -> pb::CampaignReply;
    commands.create_bulk_segments(pb::CreateBulkSegmentsRequest) -> pb::CreateBulkSegmentsReply;
    queries.list_topics(pb::ListTopicsRequest) -> pb::ListTopicsReply;
    queries.get_list(pb::GetListRequest) -> pb::StaticList;
    queries.list_lists(pb::ListListsRequest) -> pb::ListListsReply;
    queries.list_list_members(pb::ListListMembersRequest) -> pb::ListListMembersReply;
    queries.get_campaign(pb::GetCampaignRequest) -> pb::Campaign;
    queries.list_campaigns(pb::ListCampaignsRequest) -> pb::ListCampaignsReply;
    queries.count_campaign_recipients(pb::CountCampaignRecipientsRequest) -> pb::CountMembersReply;
    queries.list_campaign_recipients(pb::ListCampaignRecipientsRequest) -> pb::ListMembersReply;
    queries.preview_bulk_segments(pb::PreviewBulkSegmentsRequest) -> pb::PreviewBulkSegmentsReply;
    replay.segment_history(pb::SegmentHistoryRequest) -> pb::HistoryReply;
    replay.contact_history(pb::ContactHistoryRequest) -> pb::HistoryReply;
    commands.mass_update(pb::MassUpdateRequest) -> pb::JobReply;
    commands.delete_segment_contacts(pb::DeleteSegmentContactsRequest) -> pb::JobReply;
    commands.reset_scores(pb::ResetScoresRequest) -> pb::JobReply;
    commands.cancel_job(pb::CancelJobRequest) -> pb::JobReply;
    commands.rollback_segment(pb::RollbackSegmentRequest) -> pb::SegmentReply;
    queries.list_segment_versions(pb::ListSegmentVersionsRequest) -> pb::ListSegmentVersionsReply;
    queries.diff_segment_versions(pb::DiffSegmentVersionsRequest) -> pb::SegmentVersionDiff;
    queries.explain_membership(pb::ExplainMembershipRequest) -> pb::MembershipExplanation;
    commands.record_activity(pb::RecordActivityRequest) -> pb::RecordActivityReply;
    queries.get_job(pb::GetJobRequest) -> pb::Job;
    queries.list_score_resets(pb::ListScoreResetsRequest) -> pb::ListScoreResetsReply;
    queries.get_score_reset(pb::GetScoreResetRequest) -> pb::GetScoreResetReply;
}

/// A fresh command id for one write; retries of that write reuse it.
pub(crate) fn command_id() -> String {
    format!("segctl-{}", uuid::Uuid::new_v4())
}

/// The refs a NAME|ID argument may mean, in the order to try them: always
/// the name first (a segment may be named "42"), then, when the argument is
/// all digits, the id.
pub(crate) fn segment_refs(arg: &str) -> Vec<pb::SegmentRef> {
    use pb::segment_ref::By;
    let mut refs = vec![pb::SegmentRef { by: Some(By::Name(arg.to_owned())) }];
    let digits = arg.trim();
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(id) = digits.parse::<u64>()
        && id != 0
    {
        refs.push(pb::SegmentRef { by: Some(By::Id(id)) });
    }
    refs
}

/// Calls `call` with each ref [`segment_refs`] gives for `arg`, moving on to
/// the next only when the server answers NOT_FOUND. Returns the answer and
/// the ref that found the segment, so follow-up calls can use it directly.
pub(crate) async fn with_segment<T, F, Fut>(arg: &str, mut call: F) -> Result<(T, pb::SegmentRef), Status>
where
    F: FnMut(pb::SegmentRef) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut misses: Vec<String> = Vec::new();
    for r in segment_refs(arg) {
        match call(r.clone()).await {
            Ok(answer) => return Ok((answer, r)),
            Err(status) if status.code() == Code::NotFound => misses.push(status.message().to_owned()),
            Err(status) => return Err(status),
        }
    }
    Err(Status::not_found(misses.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::segment_ref::By;
    use std::sync::{Arc, Mutex};

    fn by(r: &pb::SegmentRef) -> By {
        r.by.clone().expect("a ref")
    }

    #[test]
    fn names_come_first_and_digits_also_try_the_id() {
        let refs: Vec<By> = segment_refs("42").iter().map(by).collect();
        assert_eq!(refs, vec![By::Name("42".into()), By::Id(42)]);
        let refs: Vec<By> = segment_refs("young-eu").iter().map(by).collect();
        assert_eq!(refs, vec![By::Name("young-eu".into())]);
        for not_an_id in ["0", "", "-3", "4 2", "1e3", "99999999999999999999999"] {
            assert_eq!(segment_refs(not_an_id).len(), 1, "{not_an_id:?}");
        }
    }

    /// A fake server holding segments by (name, id).
    fn lookup(known: &[(&str, u64)], r: &pb::SegmentRef) -> Result<u64, Status> {
        let hit = known.iter().find(|(name, id)| match &r.by {
            Some(By::Name(n)) => n == name,
            Some(By::Id(i)) => i == id,
            None => false,
        });
        match (hit, &r.by) {
            (Some((_, id)), _) => Ok(*id),
            (None, Some(By::Id(i))) => Err(Status::not_found(format!("segment {i} does not exist"))),
            (None, _) => Err(Status::not_found("no segment is named")),
        }
    }

    async fn resolve(known: &[(&str, u64)], arg: &str) -> (Result<u64, Status>, Vec<By>) {
        let tried = Arc::new(Mutex::new(Vec::new()));
        let answer = with_segment(arg, |r| {
            tried.lock().unwrap().push(by(&r));
            let answer = lookup(known, &r);
            async move { answer }
        })
        .await
        .map(|(id, _)| id);
        let tried = tried.lock().unwrap().clone();
        (answer, tried)
    }

    #[tokio::test]
    async fn a_segment_named_like_a_number_wins_over_the_id() {
        let known = [("42", 7), ("other", 42)];
        let (answer, tried) = resolve(&known, "42").await;
        assert_eq!(answer.unwrap(), 7);
        assert_eq!(tried, vec![By::Name("42".into())]);
    }

    #[tokio::test]
    async fn digits_fall_back_to_the_id_only_on_not_found() {
        let known = [("other", 42)];
        let (answer, tried) = resolve(&known, "42").await;
        assert_eq!(answer.unwrap(), 42);
        assert_eq!(tried, vec![By::Name("42".into()), By::Id(42)]);

        let (answer, tried) = resolve(&known, "43").await;
        let status = answer.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().contains("segment 43 does not exist"), "{}", status.message());
        assert_eq!(tried.len(), 2);

        let (answer, tried) = resolve(&known, "nope").await;
        assert_eq!(answer.unwrap_err().code(), Code::NotFound);
        assert_eq!(tried.len(), 1);
    }

    #[tokio::test]
    async fn other_errors_stop_the_search() {
        let tried = Arc::new(Mutex::new(0));
        let answer: Result<(u64, _), _> = with_segment("42", |_| {
            *tried.lock().unwrap() += 1;
            async { Err(Status::permission_denied("no")) }
        })
        .await;
        assert_eq!(answer.unwrap_err().code(), Code::PermissionDenied);
        assert_eq!(*tried.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn unavailable_is_retried_then_given_up() {
        let calls = Arc::new(Mutex::new(0));
        let answer: Result<(), Status> = retry_with(Duration::ZERO, || {
            *calls.lock().unwrap() += 1;
            async { Err(Status::unavailable("down")) }
        })
        .await;
        assert_eq!(answer.unwrap_err().code(), Code::Unavailable);
        assert_eq!(*calls.lock().unwrap(), ATTEMPTS);

        let calls = Arc::new(Mutex::new(0));
        let answer = retry_with(Duration::ZERO, || {
            let n = {
                let mut c = calls.lock().unwrap();
                *c += 1;
                *c
            };
            async move { if n < 3 { Err(Status::unavailable("down")) } else { Ok(n) } }
        })
        .await;
        assert_eq!(answer.unwrap(), 3);
    }

    #[test]
    fn server_urls_get_a_scheme() {
        assert_eq!(server_url("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(server_url("http://h:1"), "http://h:1");
        assert_eq!(server_url(" https://h "), "https://h");
    }
}
