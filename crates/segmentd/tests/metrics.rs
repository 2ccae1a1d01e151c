//! `--metrics-listen`: the real binary serves Prometheus text at /metrics,
//! and the named metrics move after commands and queries.

mod common;

use common::{Segmentd, spawn};
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::commands_client::CommandsClient;
use segmentd_proto::v1::queries_client::QueriesClient;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `url` (`http://host:port/metrics`) with a plain HTTP/1.0 request.
async fn scrape(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_once('/').expect("a path");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("the metrics endpoint accepts");
    stream.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("the scrape answers")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

/// The value of the sample line that starts with `series` (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A running `segmentd serve` with metrics on, and its metrics URL.
async fn start(dir: &tempfile::TempDir, extra: &[&str]) -> (Segmentd, String) {
    let server = spawn(dir.path(), &[&["--metrics-listen", "127.0.0.1:0"], extra].concat()).await;
    let url = server
        .said
        .iter()
        .find_map(|line| line.strip_prefix("segmentd metrics on "))
        .expect("the metrics line comes before the listening one")
        .to_owned();
    (server, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_after_commands_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let (Segmentd { mut child, channel, .. }, metrics_url) = start(&dir, &[]).await;
    let before = scrape(&metrics_url).await;
    assert_eq!(value(&before, "segmentd_log_last_sequence"), Some(0.0), "{before}");
    assert_eq!(value(&before, "segmentd_command_duration_seconds_count{rpc=\"UpsertContacts\"}"), None);

    let mut commands = CommandsClient::new(channel.clone());
    let contacts =
        (0..5).map(|i| pb::ContactInput { email: format!("m{i}@example.com"), fields: Default::default() }).collect();
    let upserted = commands
        .upsert_contacts(pb::UpsertContactsRequest { command_id: String::new(), contacts })
        .await
        .unwrap()
        .into_inner();
    let create = || pb::CreateSegmentRequest {
        command_id: String::new(),
        name: "all".into(),
        criteria: Some(pb::CriteriaInput { kind: Some(pb::criteria_input::Kind::Text("email is_not_empty".into())) }),
    };
    let created = commands.create_segment(create()).await.unwrap().into_inner();
    let refused = commands.create_segment(create()).await.expect_err("the name is taken");
    assert_eq!(refused.code(), tonic::Code::AlreadyExists);
    let mut queries = QueriesClient::new(channel);
    let count = queries
        .count_members(pb::CountMembersRequest {
            segment: Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Name("all".into())) }),
            min_sequence: created.sequence,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count.count, 5);
    assert!(created.sequence > upserted.sequence);

    let after = scrape(&metrics_url).await;
    assert_eq!(value(&after, "segmentd_command_duration_seconds_count{rpc=\"UpsertContacts\"}"), Some(1.0), "{after}");
    assert_eq!(value(&after, "segmentd_command_duration_seconds_count{rpc=\"CreateSegment\"}"), Some(2.0), "{after}");
    assert_eq!(
        value(
            &after,
            "segmentd_grpc_requests_total{code=\"ALREADY_EXISTS\",rpc=\"CreateSegment\",service=\"Commands\"}"
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        value(&after, "segmentd_query_duration_seconds_count{rpc=\"CountMembers\",service=\"Queries\"}"),
        Some(1.0),
        "{after}"
    );
    let last = created.sequence as f64;
    assert_eq!(value(&after, "segmentd_log_last_sequence"), Some(last), "{after}");
    assert_eq!(value(&after, "segmentd_readmodel_applied_sequence{model=\"main\"}"), Some(last), "{after}");
    assert_eq!(value(&after, "segmentd_projector_lag_events"), Some(0.0), "{after}");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_shows_its_progress() {
    // One member per batch and a long pause after each: the job stays
    // running, part way, for as long as the test looks at it.
    let dir = tempfile::tempdir().unwrap();
    let (Segmentd { mut child, channel, .. }, metrics_url) =
        start(&dir, &["--job-batch-size", "1", "--job-pause-ms", "600000"]).await;
    let mut commands = CommandsClient::new(channel);
    let contacts =
        (0..3).map(|i| pb::ContactInput { email: format!("j{i}@example.com"), fields: Default::default() }).collect();
    commands.upsert_contacts(pb::UpsertContactsRequest { command_id: String::new(), contacts }).await.unwrap();
    commands
        .create_segment(pb::CreateSegmentRequest {
            command_id: String::new(),
            name: "all".into(),
            criteria: Some(pb::CriteriaInput {
                kind: Some(pb::criteria_input::Kind::Text("email is_not_empty".into())),
            }),
        })
        .await
        .unwrap();
    commands
        .reset_scores(pb::ResetScoresRequest {
            command_id: "reset-1".into(),
            segment: Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Name("all".into())) }),
            reason: "metrics test".into(),
            agree: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let members = "segmentd_job_members{job=\"reset-1\",kind=\"reset_scores\",org=\"default\"}";
    let processed = "segmentd_job_processed{job=\"reset-1\",kind=\"reset_scores\",org=\"default\"}";
    let text = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let text = scrape(&metrics_url).await;
            if value(&text, members).is_some() {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the job's gauges appear");
    assert_eq!(value(&text, members), Some(3.0), "{text}");
    let done = value(&text, processed).expect("processed is shown with members");
    assert!(done < 3.0, "the paused job is part way: {text}");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}
