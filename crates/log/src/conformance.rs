//! The conformance suite every [`EventLog`] backend must pass: the embedded
//! log now, NATS JetStream later. A backend's test implements
//! [`LogFactory`] (how to make an empty log at a location it owns, and how to
//! restart one) and calls [`run_all`].
//!
//! It checks only what the port promises to every caller, not a backend's
//! internals: sequences increase but are not assumed gapless, and each case
//! starts from a fresh, empty log.
//!
//! **Must not depend on** any particular backend. Compiled only for tests
//! and with the `conformance` feature, so it costs production builds nothing.

use crate::{AppendEntry, AppendError, AppendRequest, Appended, EventLog, LogError, Recorded, Seq};
use async_trait::async_trait;
use segmentd_domain::event::{ContactCreated, ContactUpdated, Event, SegmentCreated};
use segmentd_domain::{AggregateId, AggregateKind, Contact, Email, Envelope, Timestamp};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How the suite gets logs from a backend.
#[async_trait]
pub trait LogFactory: Send {
    type Log: EventLog;

    /// Opens a log at a new, empty location that the factory owns (a fresh
    /// directory, a fresh stream name).
    async fn create(&mut self) -> Self::Log;

    /// Closes `log` as a process exit would, then opens the same location
    /// again, as the next process would.
    async fn restart(&mut self, log: Self::Log) -> Self::Log;

    /// Whether a request over several aggregates is all-or-nothing. The
    /// embedded log's is (one frame); NATS 2.9 has no multi-subject atomic
    /// publish, so there only the retry promise below holds.
    const ATOMIC_REQUESTS: bool = true;
}

/// `read_encoded` answers what `read` answers, each event as the codec
/// encodes it, with the same bounds.
pub async fn encoded_reads_are_the_encoded_events<F: LogFactory>(factory: &mut F) {
    let log = factory.create().await;
    for i in 0..10 {
        let r = request("org1", &format!("c{i}"), vec![(contact("org1", &format!("p{i}@example.com")), 0, 1 + i % 3)]);
        new_seq(log.append(r).await);
    }
    let last = log.last_seq().await.unwrap();
    for (from, max) in [(0, 1000), (1, 1000), (4, 3), (last, 10), (last + 1, 10), (1, 0), (2, 1)] {
        let decoded = log.read(from, max).await.unwrap();
        let encoded = log.read_encoded(from, max).await.unwrap();
        let mut want = crate::EncodedEvents::default();
        for rec in &decoded {
            want.push(rec.seq, &rec.envelope);
        }
        assert_eq!(encoded, want, "read_encoded({from}, {max})");
        let back: Vec<Recorded> = encoded
            .iter()
            .map(|(seq, bytes)| Recorded { seq, envelope: crate::codec::decode(bytes).unwrap() })
            .collect();
        assert_eq!(back, decoded, "read_encoded({from}, {max}) decodes to read's events");
    }
}

/// The longest the suite waits for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(10);

/// Runs every case, each on a fresh log. Panics, naming the case, on the
/// first broken promise.
pub async fn run_all<F: LogFactory>(factory: &mut F) {
    macro_rules! case {
        ($name:ident) => {
            eprintln!("conformance: {}", stringify!($name));
            $name(factory).await;
        };
    }
    case!(appends_read_back_in_order);
    case!(stale_expected_seq_conflicts_and_appends_nothing);
    case!(expected_zero_on_an_existing_aggregate_conflicts);
    case!(retried_command_is_a_duplicate_even_after_restart);
    if F::ATOMIC_REQUESTS {
        case!(multi_aggregate_request_is_atomic_on_conflict);
    }
    case!(a_conflicted_request_is_completed_by_its_retry);
    case!(a_large_request_lands_in_request_order);
    case!(read_from_the_middle_respects_max);
    case!(encoded_reads_are_the_encoded_events);
    case!(read_aggregate_filters_by_aggregate_and_after);
    case!(last_of_gives_the_aggregates_last_event);
    case!(subscribers_see_new_appends);
    case!(restart_keeps_everything);
    case!(concurrent_appends_with_the_same_expected_seq_one_wins);
    case!(invalid_requests_append_nothing);
}

pub async fn appends_read_back_in_order<F: LogFactory>(factory: &mut F) {
    let log = factory.create().await;
    assert_eq!(log.last_seq().await.unwrap(), 0, "a new log is empty");
    assert!(log.read(1, 100).await.unwrap().is_empty());
    let a = contact("org1", "ann@example.com");
    let b = contact("org1", "bob@example.com");
    let r1 = request("org1", "cmd-1", vec![(a.clone(), 0, 2)]);
    let r2 = request("org1", "cmd-2", vec![(b.clone(), 0, 1)]);
    let s1 = new_seq(log.append(r1.clone()).await);
    let s2 = new_seq(log.append(r2.clone()).await);
    assert!(s2 > s1, "later appends get later sequences ({s1} then {s2})");
    let all = log.read(0, 100).await.unwrap();
    assert_eq!(envelopes(&all), [events_of(&r1), events_of(&r2)].concat(), "read(0) returns everything in order");
    assert_eq!(log.read(1, 100).await.unwrap(), all, "read(0) and read(1) agree");
    assert_increasing(&all);
    assert_eq!(all[1].seq, s1, "an append answers the sequence of its last event");
    assert_eq!(all[2].seq, s2);
    assert_eq!(log.last_seq().await.unwrap(), s2);
}

pub async fn stale_expected_seq_conflicts_and_appends_nothing<F: LogFactory>(factory: &mut F) {
    let log = factory.create().await;
    let a = contact("org1", "ann@example.com");
    let s1 = new_seq(log.append(request("org1", "c1", vec![(a.clone(), 0, 1)])).await);
    let s2 = new_seq(log.append(request("org1", "c2", vec![(a.clone(), s1, 1)])).await);
    let stale = request("org1", "c3", vec![(a.clone(), s1, 1)]);
    match log.append(stale).await {
        Err(AppendError::Conflict { aggregate, expected, actual }) => {
            assert_eq!((aggregate, expected, actual), (a.clone(), s1, s2), "the conflict names the actual sequence");
        }
        other => panic!("a stale expected sequence must conflict, got {other:?}"),
    }
    assert_eq!(log.last_seq().await.unwrap(), s2, "a conflict appends nothing");
    assert_eq!(log.read(1, 100).await.unwrap().len(), 2);
    // The writer retries a conflicted command with the same command id after
    // deciding again: the conflict must not have recorded it.
    let s3 = new_seq(log.append(request("org1", "c3", vec![(a.clone(), s2, 1)])).await);
    assert!(s3 > s2);
}

pub async fn expected_zero_on_an_existing_aggregate_conflicts<F: LogFactory>(factory: &mut F) {
    let log = factory.create().await;
    let a = contact("org1", "ann@example.com");
    let s1 = new_seq(log.append(request("org1", "c1", vec![(a.clone(), 0, 1)])).await);
    match log.append(request("org1", "c2", vec![(a.clone(), 0, 1)])).await {
        Err(AppendError::Conflict { expected: 0, actual, .. }) => assert_eq!(actual, s1),
        other => panic!("creating an existing aggregate must conflict, got {other:?}"),
    }
    // The same aggregate id in another org is another aggregate.
    let other_org = contact("org2", "ann@example.com");
    new_seq(log.append(request("org2", "c2", vec![(other_org, 0, 1)])).await);
    assert_eq!(log.read(1, 100).await.unwrap().len(), 2);
}

pub async fn retried_command_is_a_duplicate_even_after_restart<F: LogFactory>(factory: &mut F) {
    let mut log = factory.create().await;
    let a = contact("org1", "ann@example.com");
    let b = contact("org1", "bob@example.com");
    let first = request("org1", "import-7", vec![(a.clone(), 0, 2), (b.clone(), 0, 1)]);
    let s1 = new_seq(log.append(first.clone()).await);
    let retried = log.append(first.clone()).await.unwrap();
    assert_eq!(retried, Appended::Duplicate { last_seq: s1 }, "a retry answers the original last sequence");
    assert_eq!(log.last_seq().await.unwrap(), s1, "a retry appends nothing");

    // A later command moves `a` on; the retry's expected sequence is stale by
    // then, and it is still the same command, not a conflict.
    let last_a = log.last_of(&a).await.unwrap().expect("a has events").seq;
    let s2 = new_seq(log.append(request("org1", "later", vec![(a.clone(), last_a, 1)])).await);
    assert_eq!(log.append(first.clone()).await.unwrap(), Appended::Duplicate { last_seq: s1 });

    // Idempotency is per organisation.
    let c = contact("org2", "ann@example.com");
    new_seq(log.append(request("org2", "import-7", vec![(c, 0, 1)])).await);
    let last = log.last_seq().await.unwrap();
    assert!(last > s2);

    log = factory.restart(log).await;
    assert_eq!(
        log.append(first).await.unwrap(),
        Appended::Duplicate { last_seq: s1 },
        "idempotency survives a restart"
    );
    assert_eq!(log.last_seq().await.unwrap(), last, "nothing was appended by the retry after restart");
}

pub async fn multi_aggregate_request_is_atomic_on_conflict<F: LogFactory>(factory: &mut F) {
    let log = factory.create().await;
    let a = contact("org1", "ann@example.com");
    let b = contact("org1", "bob@example.com");
    let c = contact("org1", "cy@example.com");
    let sb = new_seq(log.append(request("org1", "c1", vec![(b.clone(), 0, 1)])).await);
    // `a` and `c` are fine; `b` in the middle is stale.
    let req = request("org1", "c2", vec![(a.clone(), 0, 2), (b.clone(), 0, 1), (c.clone(), 0, 1)]);
    match log.append(req).await {
        Err(AppendError::Conflict { aggregate, actual, .. }) => {
            assert_eq!((aggregate, actual), (b.clone(), sb));
        }
        other => panic!("expected a conflict on {b}, got {other:?}"),
    }
    assert_eq!(log.last_seq().await.unwrap(), sb, "no event of a conflicting request is appended");
    assert!(log.last_of(&a).await.unwrap().is_none());
    assert!(log.last_of(&c).await.unwrap().is_none());
    let ok = request("org1", "c2", vec![(a.clone(), 0, 2), (b.clone(), sb, 1), (c.clone(), 0, 1)]);
    let last = new_seq(log.append(ok.clone()).await);
    let tail = log.read(sb + 1, 100).await.unwrap();
    assert_eq!(envelopes(&tail), events_of(&ok), "an accepted multi-aggregate request appends all its events");
    assert_eq!(tail.last().unwrap().seq, last);
}

/// Whatever part of a conflicting request a backend kept, the retry under the
/// same command id (decided again) leaves exactly one copy of every event,
/// and a further retry is a duplicate.
pub async fn a_conflicted_request_is_completed_by_its_retry<F: LogFactory>(factory: &mut F) {
    let log = factory.create().await;
    let a = contact("org1", "ann@example.com");
    let b = contact("org1", "bob@example.com");
    let c = contact("org1", "cy@example.com");
    let sb = new_seq(log.append(request("org1", "c1", vec![(b.clone(), 0, 1)])).await);
    let stale = request("org1", "c2", vec![(a.clone(), 0, 1), (b.clone(), 0, 1), (c.clone(), 0, 1)]);
    assert!(matches!(log.append(stale).await, Err(AppendError::Conflict { .. })), "b is stale");
    let fixed = request("org1", "c2", vec![(a.clone(), 0, 1), (b.clone(), sb, 1), (c.clone(), 0, 1)]);
    let last = log.append(fixed.clone()).await.expect("the retry is accepted").last_seq();
    for (aggregate, expected) in [(&a, 1), (&b, 2), (&c, 1)] {
        let events = log.read_aggregate(aggregate, 0).await.unwrap();
        assert_eq!(events.len(), expected, "{aggregate} holds each event once");
    }
    assert_eq!(log.last_seq().await.unwrap(), last);
    assert!(matches!(log.append(fixed).await, Ok(Appended::Duplicate { .. })), "a further retry appends nothing");
    assert_eq!(log.last_seq().await.unwrap(), last);
}

/// Member pages list contacts in the order they were created, on every
/// replica: that holds only if a request's events are stored in its order.
pub async fn a_large_request_lands_in_request_order<F: LogFactory>(factory: &mut F) {
    let log = factory.create().await;
    let entries = (0..500).map(|i| (contact("org1", &format!("c{i}@example.com")), 0, 1)).collect();
    let req = request("org1", "bulk", entries);
    let last = new_seq(log.append(req.clone()).await);
    let stored = log.read(1, 1000).await.unwrap();
    assert_eq!(stored.last().unwrap().seq, last);
    assert_eq!(envelopes(&stored), events_of(&req), "events are stored in request order");
}

pub async fn read_from_the_middle_respects_max<F: LogFactory>(factory: &mut F) {
    let log = factory.create().await;
    let mut requests = Vec::new();
    for i in 0..10 {
        let r = request("org1", &format!("c{i}"), vec![(contact("org1", &format!("p{i}@example.com")), 0, 1)]);
        new_seq(log.append(r.clone()).await);
        requests.push(r);
    }
    let all = log.read(1, 1000).await.unwrap();
    assert_eq!(all.len(), 10);
    let from = all[4].seq;
    let page = log.read(from, 3).await.unwrap();
    assert_eq!(page, all[4..7], "read(from, max) starts at `from` and stops after `max`");
    let rest = log.read(all[7].seq, 1000).await.unwrap();
    assert_eq!(rest, all[7..]);
    let beyond = log.read(all[9].seq + 1, 10).await.unwrap();
    assert!(beyond.is_empty(), "reading past the end gives nothing, got {beyond:?}");
    assert!(log.read(1, 0).await.unwrap().is_empty(), "max 0 gives nothing");
    // Paging with max 1 visits every event once.
    let mut paged = Vec::new();
    let mut next = 1;
    while let Some(rec) = log.read(next, 1).await.unwrap().pop() {
        next = rec.seq + 1;
        paged.push(rec);
    }
    assert_eq!(paged, all);
}

pub async fn read_aggregate_filters_by_aggregate_and_after<F: LogFactory>(factory: &mut F) {
    let log = factory.create().await;
    let a = contact("org1", "ann@example.com");
    let b = contact("org1", "bob@example.com");
    let (mut sa, mut sb) = (0, 0);
    for i in 0..4 {
        sa = new_seq(log.append(request("org1", &format!("a{i}"), vec![(a.clone(), sa, 1)])).await);
        sb = new_seq(log.append(request("org1", &format!("b{i}"), vec![(b.clone(), sb, 2)])).await);
    }
    let all = log.read(1, 1000).await.unwrap();
    let only_a: Vec<Recorded> = all.iter().filter(|r| r.envelope.aggregate == a).cloned().collect();
    assert_eq!(only_a.len(), 4);
    assert_eq!(log.read_aggregate(&a, 0).await.unwrap(), only_a, "an aggregate's events, ascending");
    assert_eq!(log.read_aggregate(&a, only_a[1].seq).await.unwrap(), only_a[2..], "only those after `after`");
    // `after` between two of the aggregate's events.
    assert_eq!(log.read_aggregate(&a, only_a[1].seq + 1).await.unwrap(), only_a[2..]);
    assert!(log.read_aggregate(&a, sa).await.unwrap().is_empty());
    let only_b: Vec<Recorded> = all.iter().filter(|r| r.envelope.aggregate == b).cloned().collect();
    assert_eq!(log.read_aggregate(&b, 0).await.unwrap(), only_b);
    assert_eq!(only_b.len(), 8);
    assert!(log.read_aggregate(&contact("org1", "nobody@example.com"), 0).await.unwrap().is_empty());
    assert!(log.read_aggregate(&contact("org2", "ann@example.com"), 0).await.unwrap().is_empty());
}

pub async fn last_of_gives_the_aggregates_last_event<F: LogFactory>(factory: &mut F) {
    let log = factory.create().await;
    let a = contact("org1", "ann@example.com");
    let b = contact("org1", "bob@example.com");
    assert!(log.last_of(&a).await.unwrap().is_none());
    let r1 = request("org1", "c1", vec![(a.clone(), 0, 3)]);
    let s1 = new_seq(log.append(r1.clone()).await);
    let s2 = new_seq(log.append(request("org1", "c2", vec![(b.clone(), 0, 1)])).await);
    let last_a = log.last_of(&a).await.unwrap().expect("a has events");
    assert_eq!(last_a.seq, s1);
    assert_eq!(&last_a.envelope, events_of(&r1).last().unwrap());
    assert_eq!(log.last_of(&b).await.unwrap().map(|r| r.seq), Some(s2));
    assert!(log.last_of(&contact("org2", "ann@example.com")).await.unwrap().is_none());
}

pub async fn subscribers_see_new_appends<F: LogFactory>(factory: &mut F) {
    let log = factory.create().await;
    let mut tail = log.subscribe();
    let before = *tail.borrow_and_update();
    assert_eq!(before, 0);
    let a = contact("org1", "ann@example.com");
    let s1 = new_seq(log.append(request("org1", "c1", vec![(a.clone(), 0, 1)])).await);
    // Copied out at once: a held `watch::Ref` would block the log's sender.
    let seen = *tokio::time::timeout(PATIENCE, tail.wait_for(|s| *s >= s1))
        .await
        .expect("the subscriber sees the append in time")
        .expect("the log keeps its tail sender");
    assert_eq!(seen, s1);
    // A waiter parked before the append wakes for it.
    let mut parked = log.subscribe();
    parked.borrow_and_update();
    let waiter = tokio::spawn(async move {
        tokio::time::timeout(PATIENCE, parked.changed()).await.is_ok_and(|r| r.is_ok()).then(|| *parked.borrow())
    });
    let s2 = new_seq(log.append(request("org1", "c2", vec![(a, s1, 1)])).await);
    let woke = waiter.await.unwrap().expect("a parked subscriber is woken by an append");
    assert!(woke >= s1 && woke <= s2, "it saw {woke}");
    let late = log.subscribe();
    assert_eq!(*late.borrow(), s2, "a new subscriber starts at the current tail");
}

pub async fn restart_keeps_everything<F: LogFactory>(factory: &mut F) {
    let mut log = factory.create().await;
    let a = contact("org1", "ann@example.com");
    let b = contact("org1", "bob@example.com");
    let cat = AggregateId::segment_catalog("org1");
    let s1 = new_seq(log.append(request("org1", "c1", vec![(a.clone(), 0, 2), (b.clone(), 0, 1)])).await);
    let s2 = new_seq(log.append(request("org1", "c2", vec![(cat.clone(), 0, 1)])).await);
    let last_a = log.last_of(&a).await.unwrap().expect("a has events").seq;
    let s3 = new_seq(log.append(request("org1", "c3", vec![(a.clone(), last_a, 1)])).await);
    let all = log.read(1, 1000).await.unwrap();
    let of_a = log.read_aggregate(&a, 0).await.unwrap();

    log = factory.restart(log).await;
    assert_eq!(log.last_seq().await.unwrap(), s3);
    assert_eq!(*log.subscribe().borrow(), s3, "the tail is known after a restart");
    assert_eq!(log.read(1, 1000).await.unwrap(), all);
    assert_eq!(log.read_aggregate(&a, 0).await.unwrap(), of_a);
    assert_eq!(log.last_of(&b).await.unwrap().map(|r| r.seq), Some(s1));
    assert_eq!(log.last_of(&cat).await.unwrap().map(|r| r.seq), Some(s2));
    // Expected sequences are checked against the state before the restart.
    assert!(matches!(
        log.append(request("org1", "c4", vec![(b.clone(), 0, 1)])).await,
        Err(AppendError::Conflict { actual, .. }) if actual == s1
    ));
    let s4 = new_seq(log.append(request("org1", "c4", vec![(a.clone(), s3, 1)])).await);
    assert!(s4 > s3, "appends continue after the restart");
    assert_eq!(log.read_aggregate(&a, 0).await.unwrap().len(), 4);
}

pub async fn concurrent_appends_with_the_same_expected_seq_one_wins<F: LogFactory>(factory: &mut F) {
    let log = Arc::new(factory.create().await);
    let a = contact("org1", "ann@example.com");
    let seed = new_seq(log.append(request("org1", "seed", vec![(a.clone(), 0, 1)])).await);
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let log = Arc::clone(&log);
            let req = request("org1", &format!("racer-{i}"), vec![(a.clone(), seed, 1)]);
            tokio::spawn(async move { log.append(req).await })
        })
        .collect();
    let mut winners = Vec::new();
    let mut actuals = Vec::new();
    for racer in racers {
        match racer.await.expect("racer task") {
            Ok(Appended::New { last_seq }) => winners.push(last_seq),
            Err(AppendError::Conflict { actual, expected, .. }) => {
                assert_eq!(expected, seed);
                actuals.push(actual);
            }
            other => panic!("a racer got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of 8 racers wins, got {winners:?}");
    assert_eq!(actuals.len(), 7);
    assert!(actuals.iter().all(|s| *s == winners[0]), "losers see the winner's sequence: {actuals:?} vs {winners:?}");
    assert_eq!(log.read_aggregate(&a, 0).await.unwrap().len(), 2);
    assert_eq!(log.last_seq().await.unwrap(), winners[0]);
}

pub async fn invalid_requests_append_nothing<F: LogFactory>(factory: &mut F) {
    let log = factory.create().await;
    let a = contact("org1", "ann@example.com");
    let b = contact("org1", "bob@example.com");
    let empty = AppendRequest { org: "org1".into(), command_id: "c1".into(), entries: vec![] };
    assert_invalid(log.append(empty).await, "a request without entries");
    let no_events = request("org1", "c1", vec![(a.clone(), 0, 0)]);
    assert_invalid(log.append(no_events).await, "a request without events");
    let twice = request("org1", "c1", vec![(a.clone(), 0, 1), (a.clone(), 0, 1)]);
    assert_invalid(log.append(twice).await, "two entries for one aggregate");
    let mut mislabeled = request("org1", "c1", vec![(a.clone(), 0, 1)]);
    mislabeled.entries[0].events[0].aggregate = b.clone();
    assert_invalid(log.append(mislabeled).await, "an event of another aggregate in an entry");
    let mut other_command = request("org1", "c1", vec![(a.clone(), 0, 1)]);
    other_command.entries[0].events[0].command_id = "c0".into();
    assert_invalid(log.append(other_command).await, "an event with another command id");
    let foreign = request("org1", "c1", vec![(contact("org2", "ann@example.com"), 0, 1)]);
    assert_invalid(log.append(foreign).await, "an aggregate of another org");
    assert_eq!(log.last_seq().await.unwrap(), 0, "invalid requests append nothing");
    // ... and do not burn their command id.
    new_seq(log.append(request("org1", "c1", vec![(a, 0, 1)])).await);
}

fn assert_invalid(result: Result<Appended, AppendError>, what: &str) {
    assert!(matches!(result, Err(AppendError::Log(LogError::InvalidRequest(_)))), "{what}: got {result:?}");
}

/// The sequence of a new append, or a panic saying what happened instead.
fn new_seq(result: Result<Appended, AppendError>) -> Seq {
    match result {
        Ok(Appended::New { last_seq }) => last_seq,
        other => panic!("expected a new append, got {other:?}"),
    }
}

fn assert_increasing(recs: &[Recorded]) {
    assert!(recs.windows(2).all(|w| w[0].seq < w[1].seq), "sequences increase: {:?}", seqs(recs));
    assert!(recs.first().is_none_or(|r| r.seq >= 1), "sequences start at 1 or later");
}

fn seqs(recs: &[Recorded]) -> Vec<Seq> {
    recs.iter().map(|r| r.seq).collect()
}

fn envelopes(recs: &[Recorded]) -> Vec<Envelope> {
    recs.iter().map(|r| r.envelope.clone()).collect()
}

fn events_of(req: &AppendRequest) -> Vec<Envelope> {
    req.entries.iter().flat_map(|e| e.events.iter().cloned()).collect()
}

pub fn contact(org: &str, email: &str) -> AggregateId {
    AggregateId::contact(org, email)
}

/// A request appending `n` events to each `(aggregate, expected seq, n)`.
/// Contact aggregates get contact events, segment catalogues segment events;
/// the content only has to round-trip.
pub fn request(org: &str, command_id: &str, entries: Vec<(AggregateId, Seq, usize)>) -> AppendRequest {
    static EVENT_IDS: AtomicU64 = AtomicU64::new(1);
    let entries = entries
        .into_iter()
        .map(|(aggregate, expected_last_seq, n)| {
            let events = (0..n)
                .map(|i| {
                    let id = EVENT_IDS.fetch_add(1, Ordering::Relaxed);
                    Envelope {
                        event_id: (u128::from(id) << 64) | 0x5e9d,
                        command_id: command_id.to_owned(),
                        aggregate: aggregate.clone(),
                        actor: "conformance".into(),
                        time: Timestamp(1_750_000_000_000 + id as i64),
                        event: sample_event(&aggregate, i),
                    }
                })
                .collect();
            AppendEntry { aggregate, expected_last_seq, events }
        })
        .collect();
    AppendRequest { org: org.to_owned(), command_id: command_id.to_owned(), entries }
}

fn sample_event(aggregate: &AggregateId, i: usize) -> Event {
    if aggregate.kind == AggregateKind::Segments {
        return Event::SegmentCreated(SegmentCreated {
            segment_id: i as u64 + 1,
            name: format!("segment {i}"),
            criteria: "score >= 100".into(),
        });
    }
    let email = Email::parse(&aggregate.id).unwrap_or_else(|_| Email::parse("x@example.com").expect("valid"));
    let mut contact = Contact::new(email, Timestamp(1_700_000_000_000));
    contact.score = Some(i as i64);
    if i == 0 {
        Event::ContactCreated(ContactCreated { contact })
    } else {
        Event::ContactUpdated(ContactUpdated { contact, changed: vec!["score".into()] })
    }
}
