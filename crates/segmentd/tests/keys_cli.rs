//! `segmentd keys`: create prints a secret once and stores only its digest,
//! list shows keys without secrets, revoke marks a key revoked; a `serve`
//! process started on the same data directory accepts the key by its role.

use segmentd_proto::v1 as pb;
use segmentd_proto::v1::commands_client::CommandsClient;
use segmentd_proto::v1::queries_client::QueriesClient;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use tonic::Code;

fn keys(data_dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_segmentd"))
        .arg("keys")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("SEGMENTD_API_KEYS_FILE")
        .output()
        .expect("segmentd runs");
    assert!(out.status.success(), "segmentd keys {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data_dir: &Path) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_segmentd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("SEGMENTD_API_KEYS")
        .env_remove("SEGMENTD_API_KEYS_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("segmentd serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("segmentd listening on ").unwrap_or_else(|| panic!("{line:?}")).to_owned();
    (Server(child), format!("http://{addr}"))
}

fn with_key<T>(key: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("x-api-key", key.parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_listed_revoked_and_enforced_by_role() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let out = keys(data, &["create", "--org", "acme", "--name", "crm", "--role", "service"]);
    let service = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(service.starts_with("sgd_") && service.len() > 64, "{service}");
    let out = keys(data, &["create", "--org", "acme", "--name", "bi", "--role", "analyst"]);
    let analyst = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let stored = std::fs::read_to_string(data.join("api-keys.json")).unwrap();
    let secret_part = service.rsplit('_').next().unwrap();
    assert!(!stored.contains(secret_part), "the key file holds a secret");
    let list = String::from_utf8(keys(data, &["list"]).stdout).unwrap();
    assert!(list.contains("crm") && list.contains("analyst") && !list.contains(secret_part), "{list}");

    let (_server, url) = serve(data);
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let mut commands = CommandsClient::new(channel.clone());
    let mut queries = QueriesClient::new(channel);
    let create = |name: &str| pb::CreateSegmentRequest {
        command_id: String::new(),
        name: name.into(),
        criteria: Some(pb::CriteriaInput { kind: Some(pb::criteria_input::Kind::Text(r#"age > 3"#.into())) }),
    };
    commands.create_segment(with_key(&service, create("a"))).await.unwrap();
    let denied = commands.create_segment(with_key(&analyst, create("b"))).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("analyst") && denied.message().contains("CreateSegment"), "{denied:?}");
    queries
        .list_segments(with_key(&analyst, pb::ListSegmentsRequest { min_sequence: 0, ..Default::default() }))
        .await
        .unwrap();
    let anonymous =
        queries.list_segments(pb::ListSegmentsRequest { min_sequence: 0, ..Default::default() }).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    keys(data, &["revoke", "acme/bi"]);
    let list = String::from_utf8(keys(data, &["list"]).stdout).unwrap();
    let bi = list.lines().find(|l| l.contains(" bi ")).unwrap();
    assert!(!bi.trim_end().ends_with('-'), "revoked time shown: {bi}");
}
