//! `segmentd rebuild --until` and `segmentd serve-snapshot` as an operator
//! runs them: the real binary, on the embedded log of a stopped server. The
//! snapshot answers like the server did at that point (`as_of`), and a
//! point beyond the log is refused with a message and a failing exit.

use segmentd_proto::v1 as pb;
use segmentd_proto::v1::commands_client::CommandsClient;
use segmentd_proto::v1::queries_client::QueriesClient;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

/// Runs `segmentd ARGS…` until it prints where it listens, and connects.
async fn spawn(args: &[&str], data_dir: &Path) -> (Child, Channel) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_segmentd"))
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("segmentd starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("segmentd listening on ") {
                return addr.to_owned();
            }
        }
        panic!("segmentd {args:?} exited before listening");
    })
    .await
    .expect("segmentd listens within a minute");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    (child, channel)
}

async fn rebuild(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_segmentd"))
        .arg("rebuild")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("segmentd rebuild runs")
}

fn contacts(from: usize, to: usize, country: &str) -> pb::UpsertContactsRequest {
    pb::UpsertContactsRequest {
        command_id: String::new(),
        contacts: (from..to)
            .map(|i| pb::ContactInput {
                email: format!("r{i}@example.com"),
                fields: [("country".to_string(), country.to_string())].into(),
            })
            .collect(),
    }
}

fn germany() -> Option<pb::SegmentRef> {
    Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Name("germany".into())) })
}

async fn count(channel: &Channel, as_of: Option<u64>) -> (u64, u64) {
    let as_of = as_of.map(|seq| pb::AsOf { point: Some(pb::as_of::Point::Sequence(seq)) });
    let reply = QueriesClient::new(channel.clone())
        .count_members(pb::CountMembersRequest { segment: germany(), as_of, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    (reply.count, reply.sequence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_point_is_served_as_the_server_answered_as_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let (mut server, channel) = spawn(&["serve"], &live).await;
    let mut c = CommandsClient::new(channel.clone());
    let criteria = Some(pb::CriteriaInput { kind: Some(pb::criteria_input::Kind::Text("country = \"DE\"".into())) });
    c.create_segment(pb::CreateSegmentRequest { command_id: String::new(), name: "germany".into(), criteria })
        .await
        .unwrap();
    let point = c.upsert_contacts(contacts(0, 30, "DE")).await.unwrap().into_inner().sequence;
    c.upsert_contacts(contacts(20, 50, "DE")).await.unwrap();
    let last = c.upsert_contacts(contacts(0, 10, "FR")).await.unwrap().into_inner().sequence;
    assert_eq!(count(&channel, Some(point)).await, (30, point));
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    let out = dir.path().join("at-point");
    let (live_arg, out_arg) = (live.to_str().unwrap(), out.to_str().unwrap());
    let done = rebuild(&["--until", &point.to_string(), "--log-data-dir", live_arg, "--data-dir", out_arg]).await;
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{said}{}", String::from_utf8_lossy(&done.stderr));
    assert!(said.contains(&format!("rebuilt up to sequence {point} ")), "{said}");

    let (_snapshot, snap) = spawn(&["serve-snapshot"], &out).await;
    assert_eq!(count(&snap, None).await, (30, point));

    let beyond =
        rebuild(&["--until", &(last + 1).to_string(), "--log-data-dir", live_arg, "--data-dir", out_arg]).await;
    assert!(!beyond.status.success());
    let said = String::from_utf8_lossy(&beyond.stderr);
    assert!(said.contains("already exists"), "{said}");
    let fresh = dir.path().join("fresh");
    let beyond = rebuild(&[
        "--until",
        &(last + 1).to_string(),
        "--log-data-dir",
        live_arg,
        "--data-dir",
        fresh.to_str().unwrap(),
    ])
    .await;
    assert!(!beyond.status.success());
    let said = String::from_utf8_lossy(&beyond.stderr);
    assert!(said.contains("beyond the log's last sequence"), "{said}");
}
