//! SIGKILL in the middle of a score-reset job: after a restart the job
//! resumes by itself, completes, and every member's score was reset exactly
//! once (one `ScoreReset` event per contact in the log, each with the score
//! the contact had before). Runs the real binary, so the crash is a real
//! process death; on the embedded log and on a real nats-server.

mod common;

use segmentd_proto::v1 as pb;
use segmentd_proto::v1::commands_client::CommandsClient;
use segmentd_proto::v1::queries_client::QueriesClient;
use segmentd_proto::v1::replay_client::ReplayClient;
use std::collections::BTreeMap;
use std::time::Duration;

const CONTACTS: usize = 2000;
const JOB: &str = "reset-before-crash";

use common::spawn;

fn score(i: usize) -> i64 {
    (i % 500) as i64 + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_score_reset_job_resets_every_member_exactly_once_after_restart() {
    crash_mid_job(&[]).await;
}

/// The same on NATS, where one batch is several messages: a kill can land
/// between them, and the re-run must complete the batch without repeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_sigkill_during_a_score_reset_job_resets_every_member_exactly_once_after_restart() {
    let nats = segmentd_log_nats::testkit::NatsServer::start().await;
    let url = nats.url();
    crash_mid_job(&["--nats-url", &url]).await;
}

async fn crash_mid_job(backend: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    // Small, paced batches so that the kill lands mid-job.
    let first: Vec<&str> = backend.iter().copied().chain(["--job-batch-size", "20", "--job-pause-ms", "25"]).collect();
    let mut server = spawn(dir.path(), &first).await;
    let mut commands = CommandsClient::new(server.channel.clone());
    for batch in 0..CONTACTS / 1000 {
        let contacts = (batch * 1000..batch * 1000 + 1000)
            .map(|i| pb::ContactInput {
                email: format!("k{i}@example.com"),
                fields: [("score".to_string(), score(i).to_string())].into(),
            })
            .collect();
        commands
            .upsert_contacts(pb::UpsertContactsRequest { command_id: format!("import-{batch}"), contacts })
            .await
            .unwrap();
    }
    commands
        .create_segment(pb::CreateSegmentRequest {
            command_id: String::new(),
            name: "everyone".into(),
            criteria: Some(pb::CriteriaInput {
                kind: Some(pb::criteria_input::Kind::Text("email is_not_empty".into())),
            }),
        })
        .await
        .unwrap();
    let started = commands
        .reset_scores(pb::ResetScoresRequest {
            command_id: JOB.into(),
            segment: Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Name("everyone".into())) }),
            reason: "crash drill".into(),
            agree: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.job.unwrap().total, CONTACTS as u64);

    // Kill once a few batches are recorded and many are not.
    let mut queries = QueriesClient::new(server.channel.clone());
    let mut watch =
        queries.watch_jobs(pb::WatchJobsRequest { job_id: JOB.into(), min_sequence: 0 }).await.unwrap().into_inner();
    let at_kill = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let job = watch.message().await.unwrap().expect("the stream lasts until the job ends");
            assert_eq!(job.state, pb::JobState::Running as i32, "the job ended before the kill: {job:?}");
            if job.processed >= 100 {
                return job;
            }
        }
    })
    .await
    .expect("the job makes progress");
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    assert!(at_kill.processed < CONTACTS as u64, "{at_kill:?}");

    // The restarted process resumes the job by itself.
    let server = spawn(dir.path(), backend).await;
    // The read model may have lost its tail with the kill; a write after the
    // restart gives a sequence past everything the job recorded before.
    let after_restart = CommandsClient::new(server.channel.clone())
        .upsert_contacts(pb::UpsertContactsRequest {
            command_id: String::new(),
            contacts: vec![pb::ContactInput { email: "marker@after.example".into(), fields: Default::default() }],
        })
        .await
        .unwrap()
        .into_inner()
        .sequence;
    let mut queries = QueriesClient::new(server.channel.clone());
    let mut watch = queries
        .watch_jobs(pb::WatchJobsRequest { job_id: JOB.into(), min_sequence: after_restart })
        .await
        .unwrap()
        .into_inner();
    let done = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let job = watch.message().await.unwrap().expect("the stream lasts until the job ends");
            if job.state != pb::JobState::Running as i32 {
                return job;
            }
        }
    })
    .await
    .expect("the resumed job completes within two minutes");
    assert_eq!(done.state, pb::JobState::Completed as i32, "{done:?}");
    assert_eq!((done.processed, done.changed, done.skipped), (CONTACTS as u64, CONTACTS as u64, 0));

    // Exactly one ScoreReset per contact in the log.
    let mut replay = ReplayClient::new(server.channel.clone());
    let mut events = replay
        .replay_events(pb::ReplayEventsRequest { event_types: vec!["ScoreReset".into()], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut per_contact: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(event) = events.message().await.unwrap() {
        *per_contact.entry(event.aggregate_id).or_default() += 1;
    }
    assert_eq!(per_contact.len(), CONTACTS, "every member was reset");
    let twice: Vec<_> = per_contact.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "contacts reset more than once: {twice:?}");

    // The audit holds each contact's score from before the reset.
    let mut previous = BTreeMap::new();
    let mut token = String::new();
    loop {
        let page = queries
            .get_score_reset(pb::GetScoreResetRequest {
                job_id: JOB.into(),
                page_size: 1000,
                page_token: token,
                min_sequence: done.sequence,
            })
            .await
            .unwrap()
            .into_inner();
        previous.extend(page.contacts.into_iter().map(|c| (c.email, c.previous_score)));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(previous.len(), CONTACTS);
    for i in 0..CONTACTS {
        assert_eq!(previous[&format!("k{i}@example.com")], Some(score(i)), "k{i}");
    }
    let contact = queries
        .get_contact(pb::GetContactRequest { email: "k7@example.com".into(), min_sequence: done.sequence })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(contact.fields["score"], "0");
}
