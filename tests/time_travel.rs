//! Time travel end to end, on the embedded log and on NATS: `as_of` (a
//! sequence or a time) on GetSegment, CountMembers and ListMembers answers
//! from the state at that point. Every answer is checked twice: against
//! what the test itself expects from the commands it sent, and against a
//! read model rebuilt up to the same point (`rebuild`, as `segmentd rebuild
//! --until` runs it) and served as a snapshot.
//!
//! Each NATS test starts its own nats-server, so tests never share a stream.

use segmentd_domain::Timestamp;
use segmentd_log_nats::testkit::NatsServer;
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::queries_client::QueriesClient;
use segmentd_proto::v1::replay_client::ReplayClient;
use segmentd_server::grpc::AS_OF_SEQUENCE_HEADER;
use segmentd_server::rebuild::{Until, rebuild};
use segmentd_server::{LogBackend, ServeConfig};
use segmentd_tests::{TestServer, by_name, contact, start_config, text};
use std::collections::BTreeMap;
use std::path::Path;
use tempfile::TempDir;
use tonic::Code;
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Nats,
}

struct Harness {
    server: TestServer,
    // Dropped after the server: the log must outlive what uses it.
    _nats: Option<NatsServer>,
    dir: TempDir,
}

async fn start(backend: Backend) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let nats = match backend {
        Backend::Embedded => None,
        Backend::Nats => Some(NatsServer::start().await),
    };
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("live"));
    if let Some(nats) = &nats {
        config.backend = LogBackend::Nats(Box::new(nats.log_config()));
    }
    let server = start_config(config).await;
    Harness { server, _nats: nats, dir }
}

/// What the test expects a point of the history to hold, kept by replaying
/// its own commands: contacts by email (age, country, the sequence of the
/// command that last changed them), and the criteria of the segment "adults" (as text and as a
/// predicate), if it exists then; and whether "touched" exists.
/// A segment's criteria as text, and as a predicate over (age, country).
type Definition = (&'static str, fn(i64, &str) -> bool);

#[derive(Clone)]
struct Expected {
    seq: u64,
    contacts: BTreeMap<String, (i64, &'static str, u64)>,
    adults: Option<Definition>,
    touched: bool,
}

impl Expected {
    fn adults(&self) -> Option<Vec<String>> {
        let (_, matches) = self.adults?;
        Some(
            self.contacts
                .iter()
                .filter(|(_, (age, country, _))| matches(*age, country))
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }

    /// The members of "touched" (`updated_at within_last 0 days`) with the
    /// clock at `clock`: the contacts whose last change was recorded then.
    fn touched(&self, events: &[(u64, Timestamp, String)], clock: Timestamp) -> Result<Vec<String>, Code> {
        if !self.touched {
            return Err(Code::NotFound);
        }
        let time_of = |seq: u64| events.iter().find(|(s, _, _)| *s == seq).map(|(_, t, _)| *t);
        Ok(self
            .contacts
            .iter()
            .filter(|(_, (_, _, changed))| time_of(*changed) == Some(clock))
            .map(|(e, _)| e.clone())
            .collect())
    }
}

fn email(i: usize) -> String {
    format!("c{i:03}@example.com")
}

fn country(i: usize) -> &'static str {
    if i.is_multiple_of(2) { "DE" } else { "FR" }
}

/// Index of each step in what `write_history` returns.
const IMPORTED: usize = 1;
const TOUCHED_CREATED: usize = 4;
const UPDATED: usize = 5;

/// Creates a segment, imports contacts, changes the criteria, deletes
/// contacts, adds a time-relative segment, updates contacts, deletes the
/// first segment. Returns what each point should hold, in log order.
async fn write_history(h: &mut Harness) -> Vec<Expected> {
    let c = &mut h.server.commands;
    let mut points = Vec::new();
    let mut now = Expected { seq: 0, contacts: BTreeMap::new(), adults: None, touched: false };

    let reply = c
        .create_segment(pb::CreateSegmentRequest {
            command_id: String::new(),
            name: "adults".into(),
            criteria: text("age >= 18"),
        })
        .await
        .unwrap()
        .into_inner();
    now.seq = reply.sequence;
    now.adults = Some(("age >= 18", |age, _| age >= 18));
    points.push(now.clone());

    let contacts: Vec<_> =
        (0..200).map(|i| contact(&email(i), &[("age", &(i % 60).to_string()), ("country", country(i))])).collect();
    let reply = c
        .upsert_contacts(pb::UpsertContactsRequest { command_id: String::new(), contacts })
        .await
        .unwrap()
        .into_inner();
    now.seq = reply.sequence;
    // A command's events share its recording time: its last one stands for all.
    for i in 0..200 {
        now.contacts.insert(email(i), ((i % 60) as i64, country(i), reply.sequence));
    }
    points.push(now.clone());

    let reply = c
        .update_segment(pb::UpdateSegmentRequest {
            command_id: String::new(),
            segment: by_name("adults"),
            expected_version: 0,
            name: None,
            criteria: text("age >= 30 and country = \"DE\""),
        })
        .await
        .unwrap()
        .into_inner();
    now.seq = reply.sequence;
    now.adults = Some(("age >= 30 and country = \"DE\"", |age, country| age >= 30 && country == "DE"));
    points.push(now.clone());

    let emails: Vec<String> = (0..40).step_by(2).map(email).collect();
    let reply = c
        .delete_contacts(pb::DeleteContactsRequest { command_id: String::new(), emails: emails.clone() })
        .await
        .unwrap()
        .into_inner();
    now.seq = reply.sequence;
    for e in &emails {
        now.contacts.remove(e);
    }
    points.push(now.clone());

    // Matches exactly the contacts whose last change was recorded at the
    // query's clock: which ones depends on the clock, so it shows which
    // clock a past answer used.
    let reply = c
        .create_segment(pb::CreateSegmentRequest {
            command_id: String::new(),
            name: "touched".into(),
            criteria: text("updated_at within_last 0 days"),
        })
        .await
        .unwrap()
        .into_inner();
    now.seq = reply.sequence;
    now.touched = true;
    points.push(now.clone());

    let contacts: Vec<_> = (100..150).map(|i| contact(&email(i), &[("age", "70")])).collect();
    let reply = c
        .upsert_contacts(pb::UpsertContactsRequest { command_id: String::new(), contacts })
        .await
        .unwrap()
        .into_inner();
    now.seq = reply.sequence;
    for i in 100..150 {
        let entry = now.contacts.get_mut(&email(i)).unwrap();
        entry.0 = 70;
        entry.2 = reply.sequence;
    }
    points.push(now.clone());

    let reply = c
        .delete_segment(pb::DeleteSegmentRequest {
            command_id: String::new(),
            segment: by_name("adults"),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    now.seq = reply.sequence;
    now.adults = None;
    points.push(now);
    points
}

fn at_seq(seq: u64) -> Option<pb::AsOf> {
    Some(pb::AsOf { point: Some(pb::as_of::Point::Sequence(seq)) })
}

fn at_time(t: &str) -> Option<pb::AsOf> {
    Some(pb::AsOf { point: Some(pb::as_of::Point::Time(t.to_owned())) })
}

/// What one server says about a segment: its definition, count and every
/// member (through pages of 7), or the code it was refused with.
#[derive(Debug, PartialEq)]
struct Answer {
    segment: Result<pb::Segment, Code>,
    count: Result<u64, Code>,
    members: Result<Vec<String>, Code>,
    /// The `x-as-of-sequence` header of each answer that had one.
    as_of_seqs: Vec<u64>,
}

fn as_of_seq(md: &tonic::metadata::MetadataMap) -> Option<u64> {
    md.get(AS_OF_SEQUENCE_HEADER).map(|v| v.to_str().unwrap().parse().unwrap())
}

/// The answer and the `x-as-of-sequence` header it had, if any.
fn split<T>(answer: Result<tonic::Response<T>, tonic::Status>) -> (Result<T, Code>, Option<u64>) {
    match answer {
        Ok(r) => {
            let seq = as_of_seq(r.metadata());
            (Ok(r.into_inner()), seq)
        }
        Err(s) => (Err(s.code()), as_of_seq(s.metadata())),
    }
}

async fn ask(q: &mut QueriesClient<Channel>, name: &str, as_of: Option<pb::AsOf>, at: &str) -> Answer {
    let mut as_of_seqs = Vec::new();
    let (segment, seq) = split(
        q.get_segment(pb::GetSegmentRequest { segment: by_name(name), min_sequence: 0, as_of: as_of.clone() }).await,
    );
    as_of_seqs.extend(seq);
    let (count, seq) = split(
        q.count_members(pb::CountMembersRequest {
            segment: by_name(name),
            min_sequence: 0,
            at: at.into(),
            as_of: as_of.clone(),
        })
        .await,
    );
    as_of_seqs.extend(seq);
    let count = count.map(|c| c.count);
    let mut members = Ok(Vec::new());
    let mut token = String::new();
    loop {
        let req = pb::ListMembersRequest {
            segment: by_name(name),
            page_size: 7,
            page_token: token.clone(),
            min_sequence: 0,
            at: at.into(),
            as_of: as_of.clone(),
            ..Default::default()
        };
        let (page, seq) = split(q.list_members(req).await);
        as_of_seqs.extend(seq);
        match page {
            Ok(page) => {
                if let Ok(m) = &mut members {
                    m.extend(page.contacts.into_iter().map(|c| c.email));
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            Err(code) => {
                members = Err(code);
                break;
            }
        }
    }
    as_of_seqs.dedup();
    Answer { segment, count, members, as_of_seqs }
}

/// Rebuilds the read model up to `until` from the live server's log into a
/// new directory, serves it as a snapshot and connects to it.
async fn snapshot(h: &Harness, until: Until, name: &str) -> (TestServer, u64) {
    let out = h.dir.path().join(name);
    let log = h.server.served.log.as_ref().unwrap();
    let reached = rebuild(&**log, &out, until, 16 << 20).await.expect("rebuild");
    (start_config(ServeConfig::snapshot("127.0.0.1:0".parse().unwrap(), out)).await, reached.seq)
}

fn without_headers(mut a: Answer) -> Answer {
    a.as_of_seqs.clear();
    a
}

async fn as_of_a_sequence_answers_from_that_point(backend: Backend) {
    let mut h = start(backend).await;
    let points = write_history(&mut h).await;
    let mut q = h.server.queries.clone();
    for (i, point) in points.iter().enumerate() {
        let got = ask(&mut q, "adults", at_seq(point.seq), "").await;
        assert_eq!(got.as_of_seqs, vec![point.seq], "point {i}: the answers name their sequence");
        match (point.adults, point.adults()) {
            (Some((criteria, _)), Some(members)) => {
                assert_eq!(got.segment.as_ref().map(|s| s.criteria_text.as_str()), Ok(criteria), "point {i}");
                assert_eq!(got.count, Ok(members.len() as u64), "point {i}");
                assert_eq!(got.members, Ok(members), "point {i}");
            }
            _ => {
                assert_eq!(
                    (got.segment.clone().err(), got.count, got.members.clone()),
                    (Some(Code::NotFound), Err(Code::NotFound), Err(Code::NotFound))
                );
            }
        }
        // The same point rebuilt on its own and served as a snapshot says the same.
        let (snap, reached) = snapshot(&h, Until::Sequence(point.seq), &format!("snap-{i}")).await;
        assert_eq!(reached, point.seq);
        let mut sq = snap.queries.clone();
        assert_eq!(without_headers(got), ask(&mut sq, "adults", None, "").await, "point {i}");
        // Listing (not part of as_of) shows the rebuilt catalogue is the whole state.
        let listed = sq
            .list_segments(pb::ListSegmentsRequest { min_sequence: 0, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.sequence, point.seq);
        snap.served.stop().await.unwrap();
    }
    // The live state is not what the past said.
    let live = ask(&mut q, "adults", None, "").await;
    assert_eq!(live.count, Err(Code::NotFound));
    h.server.served.stop().await.unwrap();
}

/// (sequence, recorded instant) of every event, read through the Replay service.
async fn event_times(h: &Harness) -> Vec<(u64, Timestamp, String)> {
    let mut replay = ReplayClient::new(h.server.channel.clone());
    let mut stream = replay.replay_events(pb::ReplayEventsRequest::default()).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        out.push((e.sequence, Timestamp::parse_rfc3339(&e.time).unwrap(), e.time));
    }
    out
}

/// The sequence a time resolves to: the end of the longest prefix of the
/// log whose events were all recorded at or before it.
fn resolve(events: &[(u64, Timestamp, String)], t: Timestamp) -> u64 {
    events.iter().take_while(|(_, time, _)| *time <= t).last().map_or(0, |(seq, _, _)| *seq)
}

async fn as_of_a_time_answers_from_the_last_point_at_or_before_it(backend: Backend) {
    let mut h = start(backend).await;
    let points = write_history(&mut h).await;
    let events = event_times(&h).await;
    let mut q = h.server.queries.clone();
    // Each command's own recording time, and one millisecond before it.
    let mut instants: Vec<Timestamp> = Vec::new();
    for point in &points {
        let (_, t, _) = events.iter().find(|(seq, _, _)| *seq == point.seq).unwrap();
        instants.extend([Timestamp(t.0 - 1), *t]);
    }
    for (n, t) in instants.iter().enumerate() {
        let want = resolve(&events, *t);
        let point = points.iter().rev().find(|p| p.seq <= want);
        let got = ask(&mut q, "adults", at_time(&t.to_string()), "").await;
        assert_eq!(got.as_of_seqs, vec![want], "instant {n} ({t}) resolves to {want}");
        let expected_count = point.and_then(Expected::adults).map(|m| m.len() as u64).ok_or(Code::NotFound);
        assert_eq!(got.count, expected_count, "instant {n} ({t})");
        // Asked by time or by the sequence it resolves to: the same state.
        if want > 0 {
            let by_seq = ask(&mut q, "adults", at_seq(want), "").await;
            assert_eq!(
                without_headers(by_seq),
                without_headers(ask(&mut q, "adults", at_time(&t.to_string()), "").await)
            );
        }
        // And `rebuild --until TIME` stops at the same sequence, with the same answers.
        let (snap, reached) = snapshot(&h, Until::Time(*t), &format!("snap-t{n}")).await;
        assert_eq!(reached, want, "instant {n}");
        let mut sq = snap.queries.clone();
        assert_eq!(without_headers(got), ask(&mut sq, "adults", None, "").await, "instant {n}");
        snap.served.stop().await.unwrap();
    }
    h.server.served.stop().await.unwrap();
}

async fn relative_criteria_use_the_as_of_instant_unless_at_is_given(backend: Backend) {
    let mut h = start(backend).await;
    let points = write_history(&mut h).await;
    let events = event_times(&h).await;
    let time_of = |seq: u64| events.iter().find(|(s, _, _)| *s == seq).map(|(_, t, _)| *t).unwrap();
    let mut q = h.server.queries.clone();
    let (created, updated) = (&points[TOUCHED_CREATED], &points[UPDATED]);
    let updated_at = time_of(updated.seq);
    // As of the updates' sequence, the clock is when they were recorded:
    // the 50 updated contacts were changed "within the last 0 days".
    let got = ask(&mut q, "touched", at_seq(updated.seq), "").await;
    let want = updated.touched(&events, updated_at);
    assert!(want.as_ref().is_ok_and(|w| w.len() >= 50), "{want:?}");
    assert_eq!(got.members, want);
    assert_eq!(got.count, want.map(|w| w.len() as u64));
    // As of a time, the clock is that time.
    let by_time = ask(&mut q, "touched", at_time(&updated_at.to_string()), "").await;
    let resolved = resolve(&events, updated_at);
    let point = points.iter().rev().find(|p| p.seq <= resolved).unwrap();
    assert_eq!(by_time.members, point.touched(&events, updated_at));
    // As of its creation, the clock is the creation's time: none of the
    // later updates count, and the imported contacts only if recorded then.
    let early = ask(&mut q, "touched", at_seq(created.seq), "").await;
    assert_eq!(early.members, created.touched(&events, time_of(created.seq)));
    // `at` overrides the as_of clock: pinned to the import, the contacts
    // imported then and not changed since.
    let imported_at = time_of(points[IMPORTED].seq);
    let pinned = ask(&mut q, "touched", at_seq(updated.seq), &imported_at.to_string()).await;
    assert_eq!(pinned.members, updated.touched(&events, imported_at));
    let future = ask(&mut q, "touched", at_seq(updated.seq), "2100-01-01T00:00:00Z").await;
    assert_eq!(future.count, Ok(0));
    // The rebuilt model, asked with the same explicit clock, agrees.
    let (snap, _) = snapshot(&h, Until::Sequence(updated.seq), "snap").await;
    let mut sq = snap.queries.clone();
    let rebuilt = ask(&mut sq, "touched", None, &updated_at.to_string()).await;
    assert_eq!(without_headers(got), rebuilt);
    snap.served.stop().await.unwrap();
    h.server.served.stop().await.unwrap();
}

async fn bad_as_of_is_refused_with_the_field_named(backend: Backend) {
    let mut h = start(backend).await;
    let points = write_history(&mut h).await;
    let last = points.last().unwrap().seq;
    let mut q = h.server.queries.clone();
    let count = |as_of: Option<pb::AsOf>| pb::CountMembersRequest {
        segment: by_name("touched"),
        min_sequence: 0,
        at: String::new(),
        as_of,
    };
    let cases = [
        (at_seq(0), Code::InvalidArgument, "as_of.sequence"),
        (at_time("yesterday"), Code::InvalidArgument, "as_of.time"),
        (at_time(""), Code::InvalidArgument, "as_of.time"),
        (Some(pb::AsOf { point: None }), Code::InvalidArgument, "as_of"),
        (at_seq(last + 1), Code::FailedPrecondition, "beyond the log's last sequence"),
        (at_time("2999-01-01T00:00:00Z"), Code::FailedPrecondition, "in the future"),
    ];
    for (as_of, code, says) in cases {
        let e = q.count_members(count(as_of.clone())).await.unwrap_err();
        assert_eq!(e.code(), code, "{as_of:?}: {}", e.message());
        assert!(e.message().contains(says), "{as_of:?}: {}", e.message());
        let e = q
            .get_segment(pb::GetSegmentRequest { segment: by_name("touched"), min_sequence: 0, as_of: as_of.clone() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{as_of:?}: {}", e.message());
    }
    assert_eq!(h.server.last_seq().await, last, "queries append nothing");
    // A snapshot has no log to travel in.
    let (snap, _) = snapshot(&h, Until::Sequence(last), "snap").await;
    let e = snap.queries.clone().count_members(count(at_seq(1))).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    assert_eq!(snap.queries.clone().count_members(count(None)).await.unwrap().into_inner().sequence, last);
    snap.served.stop().await.unwrap();
    // Rebuilding into a directory that has a read model is refused.
    let log = h.server.served.log.as_ref().unwrap();
    let e = rebuild(&**log, &h.dir.path().join("snap"), Until::Sequence(1), 1 << 20).await.unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    let e = rebuild(&**log, &h.dir.path().join("new"), Until::Sequence(last + 1), 1 << 20).await.unwrap_err();
    assert!(e.to_string().contains("beyond the log's last sequence"), "{e}");
    assert!(!Path::new(&h.dir.path().join("new")).exists(), "a refused rebuild leaves nothing behind");
    h.server.served.stop().await.unwrap();
}

macro_rules! on_both_logs {
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

on_both_logs!(
    as_of_a_sequence_answers_from_that_point,
    as_of_a_time_answers_from_the_last_point_at_or_before_it,
    relative_criteria_use_the_as_of_instant_unless_at_is_given,
    bad_as_of_is_refused_with_the_field_named,
);
