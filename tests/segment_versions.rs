//! A segment's definition history end to end, on the embedded log and on a
//! real nats-server: every version with who made it and when, a diff
//! between two versions, RollbackSegment as an ordinary audited command
//! (with its refusals, which append nothing), the segment's members
//! following the rollback, and the history surviving a restart.

use segmentd_proto::v1 as pb;
use segmentd_server::auth::ApiKeys;
use segmentd_tests::{Backend, TestServer, by_name, config_on, contact, start_config, text, with_key};
use tempfile::TempDir;
use tonic::Code;

const KEY_1: &str = "acme-key-one-0123456789";
const KEY_2: &str = "acme-key-two-0123456789";

async fn start(dir: &TempDir, nats: Option<&segmentd_log_nats::testkit::NatsServer>) -> TestServer {
    let mut config = config_on(dir.path(), nats);
    config.api_keys = ApiKeys::parse(&[format!("acme:{KEY_1}"), format!("acme:{KEY_2}")]).unwrap();
    start_config(config).await
}

async fn update(s: &mut TestServer, key: &str, name: Option<&str>, criteria: Option<&str>) -> u64 {
    let req = pb::UpdateSegmentRequest {
        command_id: String::new(),
        segment: Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Id(1)) }),
        expected_version: 0,
        name: name.map(str::to_owned),
        criteria: criteria.and_then(text),
    };
    s.commands.update_segment(with_key(key, req)).await.unwrap().into_inner().sequence
}

async fn versions(s: &mut TestServer, segment: &str, min_sequence: u64) -> Vec<pb::SegmentVersion> {
    let req = pb::ListSegmentVersionsRequest { segment: by_name(segment), min_sequence };
    s.queries.list_segment_versions(with_key(KEY_1, req)).await.unwrap().into_inner().versions
}

async fn rollback(
    s: &mut TestServer,
    key: &str,
    to_version: u64,
    expected_version: u64,
) -> Result<pb::SegmentReply, tonic::Status> {
    let req = pb::RollbackSegmentRequest {
        command_id: String::new(),
        segment: Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Id(1)) }),
        to_version,
        expected_version,
    };
    s.commands.rollback_segment(with_key(key, req)).await.map(|r| r.into_inner())
}

async fn count(s: &mut TestServer, segment: &str, min_sequence: u64) -> u64 {
    let req = pb::CountMembersRequest { segment: by_name(segment), min_sequence, ..Default::default() };
    s.queries.count_members(with_key(KEY_1, req)).await.unwrap().into_inner().count
}

async fn versions_diff_and_rollback(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let nats = backend.log_server().await;
    let mut s = start(&dir, nats.as_ref()).await;
    let contacts =
        vec![contact("de@example.com", &[("country", "DE")]), contact("at@example.com", &[("country", "AT")])];
    let req = pb::UpsertContactsRequest { command_id: String::new(), contacts };
    s.commands.upsert_contacts(with_key(KEY_1, req)).await.unwrap();
    let req = pb::CreateSegmentRequest {
        command_id: String::new(),
        name: "germany".into(),
        criteria: text(r#"country = "DE""#),
    };
    s.commands.create_segment(with_key(KEY_1, req)).await.unwrap();
    update(&mut s, KEY_2, Some("dach"), None).await;
    let seq = update(&mut s, KEY_1, None, Some(r#"country in ("DE", "AT")"#)).await;
    assert_eq!(count(&mut s, "dach", seq).await, 2);

    // Every version, with who made it, when and with which event.
    let listed = versions(&mut s, "dach", seq).await;
    let summary: Vec<(u64, &str, &str, &str, &str)> = listed
        .iter()
        .map(|v| (v.version, v.name.as_str(), v.criteria_text.as_str(), v.actor.as_str(), v.event_type.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, "germany", r#"country = "DE""#, "acme/key-1", "SegmentCreated"),
            (2, "dach", r#"country = "DE""#, "acme/key-2", "SegmentUpdated"),
            (3, "dach", r#"country in ("DE", "AT")"#, "acme/key-1", "SegmentUpdated"),
        ]
    );
    assert!(listed.windows(2).all(|w| w[0].sequence < w[1].sequence && !w[1].time.is_empty()), "{listed:?}");
    assert_eq!(listed[2].sequence, seq);

    // A diff: from version 1 to the current one.
    let req =
        pb::DiffSegmentVersionsRequest { segment: by_name("dach"), from_version: 1, to_version: 0, min_sequence: seq };
    let d = s.queries.diff_segment_versions(with_key(KEY_1, req)).await.unwrap().into_inner();
    assert!(d.name_changed && d.criteria_changed && !d.regrouped, "{d:?}");
    assert_eq!(d.removed_conditions, [r#"country = "DE""#]);
    assert_eq!(d.added_conditions, [r#"country in ("DE", "AT")"#]);
    assert_eq!((d.from.unwrap().version, d.to.unwrap().version), (1, 3));
    let req =
        pb::DiffSegmentVersionsRequest { segment: by_name("dach"), from_version: 2, to_version: 9, min_sequence: 0 };
    let e = s.queries.diff_segment_versions(with_key(KEY_1, req)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("to_version"), "{e:?}");

    // Refusals name what is wrong and append nothing.
    let before = s.last_seq().await;
    let e = rollback(&mut s, KEY_2, 1, 2).await.unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "stale expected_version: {e:?}");
    let e = rollback(&mut s, KEY_2, 3, 0).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "the current version: {e:?}");
    assert!(e.message().contains("version 3 already"), "{e:?}");
    for to in [0, 9] {
        let e = rollback(&mut s, KEY_2, to, 0).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{to}: {e:?}");
        assert!(e.message().starts_with("to_version"), "{e:?}");
    }
    assert_eq!(s.last_seq().await, before);

    // The rollback: a fourth version with the first one's name and criteria.
    let reply = rollback(&mut s, KEY_2, 1, 3).await.unwrap();
    let segment = reply.segment.unwrap();
    assert_eq!((segment.name.as_str(), segment.version), ("germany", 4));
    assert_eq!(count(&mut s, "germany", reply.sequence).await, 1, "members follow the restored criteria");
    let listed = versions(&mut s, "germany", reply.sequence).await;
    let v4 = &listed[3];
    assert_eq!(
        (v4.version, v4.name.as_str(), v4.criteria_text.as_str(), v4.actor.as_str()),
        (4, "germany", r#"country = "DE""#, "acme/key-2")
    );
    assert_eq!((v4.event_type.as_str(), v4.rolled_back_to, v4.sequence), ("SegmentRolledBack", 1, reply.sequence));
    // The segment's history shows it with its actor.
    let mut replay = pb::replay_client::ReplayClient::new(s.channel.clone());
    let req = pb::SegmentHistoryRequest { segment: by_name("germany") };
    let history = replay.segment_history(with_key(KEY_1, req)).await.unwrap().into_inner();
    let last = history.events.last().unwrap();
    assert_eq!((last.r#type.as_str(), last.actor.as_str()), ("SegmentRolledBack", "acme/key-2"));

    // A name another segment holds now cannot be restored.
    let req = pb::CreateSegmentRequest { command_id: String::new(), name: "DACH".into(), criteria: text("age > 1") };
    s.commands.create_segment(with_key(KEY_1, req)).await.unwrap();
    assert_eq!(rollback(&mut s, KEY_1, 2, 0).await.unwrap_err().code(), Code::AlreadyExists);

    // The history is rebuilt from the stored events after a restart.
    s.served.stop().await.unwrap();
    let mut s = start(&dir, nats.as_ref()).await;
    let head = s.last_seq().await;
    assert_eq!(versions(&mut s, "germany", head).await, listed);
    s.served.stop().await.unwrap();
}

#[tokio::test]
async fn embedded_versions_diff_and_rollback() {
    versions_diff_and_rollback(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_versions_diff_and_rollback() {
    versions_diff_and_rollback(Backend::Nats).await;
}
