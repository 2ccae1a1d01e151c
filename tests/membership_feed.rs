//! WatchMembership end to end, on the embedded log and on a real
//! nats-server: a contact update makes it enter or leave a saved segment
//! with the sequence of that update; segment definitions, deletions and the
//! (pinned) clock move members too; a watch can start from a past sequence
//! the server still holds, and says so when it does not. On NATS the same
//! changes arrive on `seg.members.<org>.<segment id>`.

use futures::StreamExt;
use segmentd_domain::Timestamp;
use segmentd_log_nats::testkit::NatsServer;
use segmentd_proto::v1 as pb;
use segmentd_server::{Clock, LogBackend, ServeConfig};
use segmentd_tests::{TestServer, by_name, contact, start_config, text};
use std::time::Duration;
use tempfile::TempDir;
use tonic::Code;
use tonic::codec::Streaming;

const PATIENCE: Duration = Duration::from_secs(20);
const T0: &str = "2026-11-01T00:00:00Z";
const DAY_MS: i64 = 86_400_000;

fn t0() -> Timestamp {
    Timestamp::parse_rfc3339(T0).unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Nats,
}

struct Harness {
    server: TestServer,
    clock: Clock,
    nats: Option<NatsServer>,
    dir: TempDir,
}

fn config(dir: &TempDir, clock: &Clock, nats: Option<&NatsServer>) -> ServeConfig {
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.clock = clock.clone();
    // Only moves of the pinned clock should move members in these tests.
    config.membership_tick = Duration::from_secs(3600);
    if let Some(nats) = nats {
        config.backend = LogBackend::Nats(Box::new(nats.log_config()));
    }
    config
}

async fn start(backend: Backend) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let nats = match backend {
        Backend::Embedded => None,
        Backend::Nats => Some(NatsServer::start().await),
    };
    let clock = Clock::pinned(t0());
    let server = start_config(config(&dir, &clock, nats.as_ref())).await;
    Harness { server, clock, nats, dir }
}

impl Harness {
    async fn upsert(&mut self, email: &str, fields: &[(&str, &str)]) -> u64 {
        let request = pb::UpsertContactsRequest { command_id: String::new(), contacts: vec![contact(email, fields)] };
        self.server.commands.upsert_contacts(request).await.unwrap().into_inner().sequence
    }

    async fn create(&mut self, name: &str, criteria: &str) -> (u64, u64) {
        let request =
            pb::CreateSegmentRequest { command_id: String::new(), name: name.into(), criteria: text(criteria) };
        let reply = self.server.commands.create_segment(request).await.unwrap().into_inner();
        (reply.segment.unwrap().id, reply.sequence)
    }

    /// Member emails of a segment read at `min_sequence`, and the sequence
    /// the answer reflects.
    async fn members(&mut self, name: &str, min_sequence: u64) -> (Vec<String>, u64) {
        let request = pb::ListMembersRequest {
            segment: by_name(name),
            page_size: 1000,
            page_token: String::new(),
            min_sequence,
            at: String::new(),
            ..Default::default()
        };
        let reply = self.server.queries.list_members(request).await.unwrap().into_inner();
        (reply.contacts.into_iter().map(|c| c.email).collect(), reply.sequence)
    }

    async fn watch(
        &mut self,
        names: &[&str],
        from_sequence: u64,
    ) -> Result<Streaming<pb::MembershipChanges>, tonic::Status> {
        let request =
            pb::WatchMembershipRequest { segments: names.iter().map(|n| by_name(n).unwrap()).collect(), from_sequence };
        self.server.queries.watch_membership(request).await.map(|r| r.into_inner())
    }
}

/// The next `n` changes of a watch, waiting (bounded) for them.
async fn next_changes(stream: &mut Streaming<pb::MembershipChanges>, n: usize) -> Vec<pb::MembershipChange> {
    let mut changes = Vec::new();
    while changes.len() < n {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("membership changes arrive in time")
            .expect("the watch goes on")
            .expect("the watch goes on");
        changes.extend(message.changes);
    }
    assert_eq!(changes.len(), n, "no more changes than expected: {changes:?}");
    changes
}

/// A change without its `at`, for comparing.
fn change(
    segment_id: u64,
    email: &str,
    entered: bool,
    sequence: u64,
    cause: pb::MembershipCause,
) -> (u64, String, bool, u64, i32) {
    (segment_id, email.to_owned(), entered, sequence, cause as i32)
}

fn plain(changes: &[pb::MembershipChange]) -> Vec<(u64, String, bool, u64, i32)> {
    changes.iter().map(|c| (c.segment_id, c.email.clone(), c.entered, c.sequence, c.cause)).collect()
}

use pb::MembershipCause as C;

async fn contact_updates_enter_and_leave_with_their_sequence(backend: Backend) {
    let mut h = start(backend).await;
    // On NATS, subscribe to the membership subject before anything happens.
    let mut subject = match &h.nats {
        Some(nats) => {
            let client = async_nats::connect(nats.url()).await.unwrap();
            let sub = client.subscribe("seg.members.default.>").await.unwrap();
            client.flush().await.unwrap();
            Some((client, sub))
        }
        None => None,
    };
    h.upsert("ann@x.com", &[("country", "DE")]).await;
    h.upsert("bob@x.com", &[("country", "FR")]).await;
    let (de, _) = h.create("germans", r#"country = "DE""#).await;
    let (others, created) = h.create("french", r#"country = "FR""#).await;
    let (members, read_at) = h.members("germans", created).await;
    assert_eq!(members, ["ann@x.com"]);
    let mut watch = h.watch(&["germans"], read_at + 1).await.unwrap();
    let mut everything = h.watch(&[], read_at + 1).await.unwrap();

    let bob_moves = h.upsert("bob@x.com", &[("country", "DE")]).await;
    let ann_moves = h.upsert("ann@x.com", &[("country", "AT")]).await;
    let got = next_changes(&mut watch, 2).await;
    assert_eq!(
        plain(&got),
        [
            change(de, "bob@x.com", true, bob_moves, C::ContactChanged),
            change(de, "ann@x.com", false, ann_moves, C::ContactChanged)
        ]
    );
    assert_eq!(got[0].at, T0, "evaluated at the pinned clock");
    // The change is readable once seen.
    assert_eq!(h.members("germans", 0).await.0, ["bob@x.com"]);
    // A watch of every segment sees bob leave the French too.
    let mut all = plain(&next_changes(&mut everything, 3).await);
    all.sort();
    let mut want = vec![
        change(others, "bob@x.com", false, bob_moves, C::ContactChanged),
        change(de, "bob@x.com", true, bob_moves, C::ContactChanged),
        change(de, "ann@x.com", false, ann_moves, C::ContactChanged),
    ];
    want.sort();
    assert_eq!(all, want);

    if let Some((_, sub)) = &mut subject {
        // Creation of the two segments, then the three changes above.
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let msg = tokio::time::timeout(PATIENCE, sub.next()).await.expect("published in time").unwrap();
            let body: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
            let segment = body["segment_id"].as_u64().unwrap();
            assert_eq!(msg.subject.as_str(), format!("seg.members.default.{segment}"));
            for c in body["changes"].as_array().unwrap() {
                seen.push((
                    segment,
                    body["cause"].as_str().unwrap().to_owned(),
                    c["email"].as_str().unwrap().to_owned(),
                    c["entered"].as_bool().unwrap(),
                    c["sequence"].as_u64().unwrap(),
                ));
            }
        }
        let tail: Vec<_> = seen[2..].to_vec();
        assert!(seen[..2].iter().all(|s| s.1 == "segment_defined" && s.3), "{seen:?}");
        assert!(tail.contains(&(de, "contact_changed".into(), "bob@x.com".into(), true, bob_moves)), "{seen:?}");
        assert!(tail.contains(&(others, "contact_changed".into(), "bob@x.com".into(), false, bob_moves)), "{seen:?}");
        assert!(tail.contains(&(de, "contact_changed".into(), "ann@x.com".into(), false, ann_moves)), "{seen:?}");
    }

    // Deleting the contact: it leaves; deleting the segment: all leave.
    let deleted = h
        .server
        .commands
        .delete_contacts(pb::DeleteContactsRequest { command_id: String::new(), emails: vec!["bob@x.com".into()] })
        .await
        .unwrap()
        .into_inner()
        .sequence;
    assert_eq!(plain(&next_changes(&mut watch, 1).await), [change(de, "bob@x.com", false, deleted, C::ContactChanged)]);
    let cy = h.upsert("cy@x.com", &[("country", "de")]).await;
    assert_eq!(plain(&next_changes(&mut watch, 1).await), [change(de, "cy@x.com", true, cy, C::ContactChanged)]);
    let dropped = h
        .server
        .commands
        .delete_segment(pb::DeleteSegmentRequest {
            command_id: String::new(),
            segment: by_name("germans"),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .sequence;
    assert_eq!(plain(&next_changes(&mut watch, 1).await), [change(de, "cy@x.com", false, dropped, C::SegmentDeleted)]);

    // From a past sequence: the same changes again, in the same order.
    let mut again = h.watch(&[], read_at + 1).await.unwrap();
    let replayed = plain(&next_changes(&mut again, 6).await);
    assert_eq!(replayed.iter().filter(|c| c.0 == de).count(), 5, "{replayed:?}");
    assert_eq!(replayed.last(), Some(&change(de, "cy@x.com", false, dropped, C::SegmentDeleted)));
    h.server.served.stop().await.unwrap();
    drop(h.nats);
    drop(h.dir);
}

async fn relative_segments_move_with_the_clock(backend: Backend) {
    let mut h = start(backend).await;
    let opened = |days_ago: i64| Timestamp(t0().0 - days_ago * DAY_MS).to_string();
    h.upsert("recent@x.com", &[("last_opened_at", &opened(29))]).await;
    h.upsert("older@x.com", &[("last_opened_at", &opened(40))]).await;
    h.upsert("never@x.com", &[("country", "DE")]).await;
    let (active, _) = h.create("active", "last_opened_at within_last 30 days").await;
    let (lapsed, created) = h.create("lapsed", "last_opened_at more_than 35 days ago").await;
    let (members, read_at) = h.members("active", created).await;
    assert_eq!(members, ["recent@x.com"]);
    assert_eq!(h.members("lapsed", read_at).await.0, ["older@x.com"]);
    let mut watch = h.watch(&["active", "lapsed"], read_at + 1).await.unwrap();

    // Two days later "recent" opened 31 days ago: out of "active". Nobody
    // else crosses a bound, so that is the only change.
    h.clock.set(Timestamp(t0().0 + 2 * DAY_MS));
    let got = next_changes(&mut watch, 1).await;
    assert_eq!(plain(&got), [change(active, "recent@x.com", false, read_at, C::TimePassed)]);
    assert_eq!(got[0].at, "2026-11-03T00:00:00Z");
    assert!(h.members("active", 0).await.0.is_empty());
    // Five more days: 36 days ago, so "lapsed" now.
    h.clock.set(Timestamp(t0().0 + 7 * DAY_MS));
    assert_eq!(
        plain(&next_changes(&mut watch, 1).await),
        [change(lapsed, "recent@x.com", true, read_at, C::TimePassed)]
    );
    // An update brings it back at once, at its own sequence.
    let now = h.clock.now().to_string();
    let back = h.upsert("recent@x.com", &[("last_opened_at", &now)]).await;
    let mut got = plain(&next_changes(&mut watch, 2).await);
    got.sort();
    let mut want = vec![
        change(active, "recent@x.com", true, back, C::ContactChanged),
        change(lapsed, "recent@x.com", false, back, C::ContactChanged),
    ];
    want.sort();
    assert_eq!(got, want);
    h.server.served.stop().await.unwrap();
}

async fn bad_watches_are_refused(backend: Backend) {
    let mut h = start(backend).await;
    h.upsert("ann@x.com", &[("country", "DE")]).await;
    let (_, created) = h.create("germans", r#"country = "DE""#).await;
    let err = h.watch(&["nobody"], 0).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("nobody"), "{err:?}");
    let request = pb::WatchMembershipRequest { segments: vec![pb::SegmentRef { by: None }], from_sequence: 0 };
    let err = h.server.queries.watch_membership(request).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("segments[0]"), "{err:?}");

    // After a restart the server holds only what it projected since.
    h.members("germans", created).await;
    let dir = h.dir;
    h.server.served.stop().await.unwrap();
    let mut h2 = Harness {
        server: start_config(config(&dir, &h.clock, h.nats.as_ref())).await,
        clock: h.clock,
        nats: h.nats,
        dir,
    };
    let err = h2.watch(&[], 1).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("no longer held"), "{err:?}");
    // From now on is always possible, and follows new changes.
    let mut watch = h2.watch(&["germans"], 0).await.unwrap();
    let seq = h2.upsert("bob@x.com", &[("country", "DE")]).await;
    assert_eq!(next_changes(&mut watch, 1).await[0].sequence, seq);
    h2.server.served.stop().await.unwrap();
}

/// One test per scenario and backend: `embedded::<scenario>`, `nats::<scenario>`.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Backend::Embedded).await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Backend::Nats).await;
                }
            )*
        }
    };
}

on_both_backends!(
    contact_updates_enter_and_leave_with_their_sequence,
    relative_segments_move_with_the_clock,
    bad_watches_are_refused,
);
