//! NatsLog against a real nats-server (testkit): append, read, conflicts,
//! idempotency inside and beyond the duplicate window and across restarts,
//! non-atomic multi-entry requests and their idempotent completion, the
//! tail, the stream's protections, races, connection loss, and durable
//! consumers.
//!
//! **Must not depend on** tonic, prost or sled.

use async_nats::jetstream::{self, ErrorCode};
use futures::StreamExt;
use segmentd_domain::AggregateId;
use segmentd_log::conformance::{contact, request};
use segmentd_log::{AppendError, AppendRequest, Appended, EventLog, LogError, Recorded, Seq};
use segmentd_log_nats::testkit::NatsServer;
use segmentd_log_nats::{COMMAND_ID_HEADER, EVENT_INDEX_HEADER, EVENT_TYPE_HEADER, NatsConfig, NatsLog};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(15);

async fn open(config: NatsConfig) -> NatsLog {
    NatsLog::connect(config).await.expect("connect to the test server")
}

fn new_seq(result: Result<Appended, AppendError>) -> Seq {
    match result {
        Ok(Appended::New { last_seq }) => last_seq,
        other => panic!("expected a new append, got {other:?}"),
    }
}

fn seqs(recs: &[Recorded]) -> Vec<Seq> {
    recs.iter().map(|r| r.seq).collect()
}

async fn js_stream(server: &NatsServer, name: &str) -> jetstream::stream::Stream {
    let client = async_nats::connect(server.url()).await.unwrap();
    jetstream::new(client).get_stream(name).await.unwrap()
}

/// Waits until JetStream has forgotten the message id of `aggregate`'s last
/// event, i.e. the duplicate window has passed for every id stored before it.
/// Probes by republishing that message with a stale expected sequence: inside
/// the window it is acknowledged as a duplicate, beyond it the expected
/// sequence refuses it. Either way nothing is stored.
async fn wait_until_forgotten(server: &NatsServer, log: &NatsLog, aggregate: &AggregateId) {
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    let stream = js.get_stream(&log.config().stream).await.unwrap();
    let subject = log.subject_of(aggregate).unwrap();
    let last = stream.get_last_raw_message_by_subject(&subject).await.unwrap();
    let id = last.headers.get("Nats-Msg-Id").expect("a message id").as_str().to_owned();
    let started = Instant::now();
    loop {
        let probe = jetstream::message::PublishMessage::build()
            .payload(last.payload.clone())
            .message_id(&id)
            .expected_last_subject_sequence(0);
        match js.send_publish(subject.clone(), probe).await.unwrap().await {
            Ok(ack) => assert!(ack.duplicate, "the probe must never be stored: {ack:?}"),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => return,
            Err(e) => panic!("probe failed: {e}"),
        }
        assert!(started.elapsed() < PATIENCE, "the duplicate window never passed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn appends_read_back_with_headers_and_hex_subjects() {
    let server = NatsServer::start().await;
    let log = open(server.log_config()).await;
    assert_eq!(log.last_seq().await.unwrap(), 0);
    let a = contact("org1", "ann.lee+x@example.com");
    let b = AggregateId::segment_catalog("org1");
    let r1 = request("org1", "cmd 1", vec![(a.clone(), 0, 3), (b.clone(), 0, 1)]);
    let s1 = new_seq(log.append(r1.clone()).await);
    assert_eq!(s1, 4);
    let all = log.read(1, 100).await.unwrap();
    assert_eq!(seqs(&all), [1, 2, 3, 4]);
    let of_a: Vec<_> = all.iter().filter(|r| r.envelope.aggregate == a).cloned().collect();
    assert_eq!(of_a.iter().map(|r| r.envelope.clone()).collect::<Vec<_>>(), r1.entries[0].events);
    assert_eq!(log.read_aggregate(&a, 0).await.unwrap(), of_a);
    assert_eq!(log.last_of(&b).await.unwrap().unwrap().envelope, r1.entries[1].events[0]);

    let subject = log.subject_of(&a).unwrap();
    assert_eq!(subject, format!("seg.evt.org1.contact.{}", hex("ann.lee+x@example.com")));
    let stream = js_stream(&server, "SEGMENTD").await;
    let last = stream.get_last_raw_message_by_subject(&subject).await.unwrap();
    let header = |name: &str| last.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header(COMMAND_ID_HEADER).as_deref(), Some("cmd%201"));
    assert_eq!(header(EVENT_TYPE_HEADER).as_deref(), Some("ContactUpdated"));
    assert_eq!(header(EVENT_INDEX_HEADER).as_deref(), Some("2/3"));
    assert_eq!(header("Nats-Expected-Last-Subject-Sequence").as_deref(), Some(of_a[1].seq.to_string().as_str()));
    assert!(header("Nats-Msg-Id").unwrap().starts_with("org1:cmd%201:"));
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn stale_expected_sequences_conflict_and_name_the_actual_one() {
    let server = NatsServer::start().await;
    let log = open(server.log_config()).await;
    let a = contact("org1", "ann@example.com");
    let s1 = new_seq(log.append(request("org1", "c1", vec![(a.clone(), 0, 1)])).await);
    let s2 = new_seq(log.append(request("org1", "c2", vec![(a.clone(), s1, 1)])).await);
    for (expected, cmd) in [(0, "c3"), (s1, "c4")] {
        match log.append(request("org1", cmd, vec![(a.clone(), expected, 1)])).await {
            Err(AppendError::Conflict { aggregate, expected: e, actual }) => {
                assert_eq!((aggregate, e, actual), (a.clone(), expected, s2));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(log.last_seq().await.unwrap(), s2);
    // A conflicted command id is not burnt: deciding again succeeds.
    assert!(new_seq(log.append(request("org1", "c3", vec![(a, s2, 1)])).await) > s2);
}

#[tokio::test]
async fn retries_are_duplicates_inside_the_window_beyond_it_and_after_a_restart() {
    let mut server = NatsServer::start().await;
    let config = NatsConfig { duplicate_window: Duration::from_secs(1), ..server.log_config() };
    let log = open(config.clone()).await;
    let a = contact("org1", "ann@example.com");
    let b = contact("org1", "bob@example.com");
    let first = request("org1", "import-7", vec![(a.clone(), 0, 2), (b.clone(), 0, 1)]);
    let s1 = new_seq(log.append(first.clone()).await);
    // Inside the window: JetStream's message ids answer.
    assert_eq!(log.append(first.clone()).await.unwrap(), Appended::Duplicate { last_seq: s1 });
    // Another command moves `a` on, so the retry's expected sequence is stale.
    let last_a = log.last_of(&a).await.unwrap().unwrap().seq;
    let s2 = new_seq(log.append(request("org1", "later", vec![(a.clone(), last_a, 1)])).await);
    assert_eq!(log.append(first.clone()).await.unwrap(), Appended::Duplicate { last_seq: s1 });

    // Beyond the window: the command id stored with the events answers,
    // for `b` (our event is its last) and `a` (someone else's event follows ours).
    wait_until_forgotten(&server, &log, &a).await;
    assert_eq!(log.append(first.clone()).await.unwrap(), Appended::Duplicate { last_seq: s1 });
    assert_eq!(log.last_seq().await.unwrap(), s2, "no retry appended anything");

    // After a server restart, too.
    server.restart().await;
    let started = Instant::now();
    let retried = loop {
        match log.append(first.clone()).await {
            Err(AppendError::Log(LogError::Unavailable(_))) if started.elapsed() < PATIENCE => continue,
            other => break other,
        }
    };
    assert_eq!(retried.unwrap(), Appended::Duplicate { last_seq: s1 });
    drop(log);
    let log = open(config).await;
    assert_eq!(log.append(first).await.unwrap(), Appended::Duplicate { last_seq: s1 });
    assert_eq!(log.last_seq().await.unwrap(), s2);
    assert_eq!(log.read(1, 100).await.unwrap().len(), 4);
}

/// An ack lost to a slow server: the publish is retried with the same
/// message id and answered as a duplicate of the attempt that timed out.
/// The request still reports that it appended (not `Duplicate`), and the
/// event is stored once.
#[tokio::test]
async fn an_append_whose_ack_timed_out_and_whose_retry_is_a_duplicate_is_new() {
    let server = NatsServer::start().await;
    let config = NatsConfig {
        request_timeout: Duration::from_millis(300),
        append_timeout: Duration::from_secs(30),
        ..server.log_config()
    };
    let log = Arc::new(open(config).await);
    let a = contact("org1", "ann@example.com");
    server.freeze();
    let appending = tokio::spawn({
        let log = Arc::clone(&log);
        let a = a.clone();
        async move { log.append(request("org1", "slow-1", vec![(a, 0, 1)])).await }
    });
    // Longer than the request timeout, so that the first attempt's ack is
    // lost whatever the scheduling: the server answers nothing while frozen.
    tokio::time::sleep(Duration::from_millis(900)).await;
    server.resume();
    let appended = appending.await.unwrap().unwrap();
    assert!(matches!(appended, Appended::New { .. }), "{appended:?}");
    assert_eq!(log.read(1, 10).await.unwrap().len(), 1, "stored once");
}

/// NATS 2.9 cannot append several subjects atomically: the entries that
/// could be appended are, the conflicting one is reported, and the retry of
/// the same command (decided again) appends only what is missing.
#[tokio::test]
async fn a_partly_conflicting_request_is_completed_by_its_retry_without_duplicates() {
    for beyond_window in [false, true] {
        let server = NatsServer::start().await;
        let log = open(NatsConfig { duplicate_window: Duration::from_secs(1), ..server.log_config() }).await;
        let a = contact("org1", "ann@example.com");
        let b = contact("org1", "bob@example.com");
        let c = contact("org1", "cy@example.com");
        let sb = new_seq(log.append(request("org1", "c1", vec![(b.clone(), 0, 1)])).await);
        let req = request("org1", "c2", vec![(a.clone(), 0, 2), (b.clone(), 0, 1), (c.clone(), 0, 1)]);
        match log.append(req.clone()).await {
            Err(AppendError::Conflict { aggregate, expected: 0, actual }) => {
                assert_eq!((aggregate, actual), (b.clone(), sb))
            }
            other => panic!("expected a conflict on {b}, got {other:?}"),
        }
        assert_eq!(log.read_aggregate(&a, 0).await.unwrap().len(), 2, "entries without a conflict were appended");
        assert_eq!(log.read_aggregate(&c, 0).await.unwrap().len(), 1);
        if beyond_window {
            wait_until_forgotten(&server, &log, &c).await;
        }
        // The writer decides again; for `a` and `c` it still has the stale view.
        let mut retry = req.clone();
        retry.entries[1].expected_last_seq = sb;
        let last = new_seq(log.append(retry.clone()).await);
        let of = |agg: &AggregateId| {
            let log = &log;
            let agg = agg.clone();
            async move { log.read_aggregate(&agg, 0).await.unwrap() }
        };
        assert_eq!(of(&a).await.len(), 2, "no duplicate of a's events (beyond window: {beyond_window})");
        assert_eq!(of(&c).await.len(), 1);
        let of_b = of(&b).await;
        assert_eq!(seqs(&of_b)[1], last);
        assert_eq!(of_b[1].envelope, retry.entries[1].events[0]);
        // And once more: everything is there now.
        assert_eq!(log.append(retry).await.unwrap(), Appended::Duplicate { last_seq: last });
        assert_eq!(log.last_seq().await.unwrap(), last);
    }
}

/// An earlier attempt that stored only the start of an entry (a crash) is
/// completed by the retry, inside the window and beyond it.
#[tokio::test]
async fn a_partly_stored_entry_is_completed_by_the_retry() {
    for beyond_window in [false, true] {
        let server = NatsServer::start().await;
        let log = open(NatsConfig { duplicate_window: Duration::from_secs(1), ..server.log_config() }).await;
        let a = contact("org1", "ann@example.com");
        let full = request("org1", "bulk", vec![(a.clone(), 0, 3)]);
        let mut partial = full.clone();
        partial.entries[0].events.truncate(1);
        let s0 = new_seq(log.append(partial).await);
        if beyond_window {
            wait_until_forgotten(&server, &log, &a).await;
        }
        let last = new_seq(log.append(full.clone()).await);
        let of_a = log.read_aggregate(&a, 0).await.unwrap();
        assert_eq!(seqs(&of_a), [s0, s0 + 1, last]);
        assert_eq!(of_a.iter().map(|r| r.envelope.clone()).collect::<Vec<_>>()[1..], full.entries[0].events[1..]);
        assert_eq!(log.append(full).await.unwrap(), Appended::Duplicate { last_seq: last });
    }
}

#[tokio::test]
async fn reads_page_through_many_events_in_order() {
    let server = NatsServer::start().await;
    let log = open(server.log_config()).await;
    // Several pull batches' worth, over many aggregates.
    let entries = (0..2500).map(|i| (contact("org1", &format!("p{i}@example.com")), 0, 1)).collect();
    let last = new_seq(log.append(request("org1", "bulk", entries)).await);
    assert_eq!(last, 2500);
    let all = log.read(1, 10_000).await.unwrap();
    assert_eq!(seqs(&all), (1..=2500).collect::<Vec<_>>());
    assert_eq!(seqs(&log.read(1234, 3).await.unwrap()), [1234, 1235, 1236]);
    assert_eq!(log.read(2499, 10).await.unwrap().len(), 2);
    assert!(log.read(2501, 10).await.unwrap().is_empty());
    assert_eq!(seqs(&log.read(0, 1).await.unwrap()), [1]);
    let mut paged = Vec::new();
    let mut next = 1;
    loop {
        let page = log.read(next, 700).await.unwrap();
        let Some(tail) = page.last() else { break };
        next = tail.seq + 1;
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

#[tokio::test]
async fn subscribers_see_appends_from_other_processes_and_after_a_restart() {
    let mut server = NatsServer::start().await;
    let watcher = open(server.log_config()).await;
    let writer = open(server.log_config()).await;
    let mut tail = watcher.subscribe();
    assert_eq!(*tail.borrow_and_update(), 0);
    let a = contact("org1", "ann@example.com");
    let s1 = new_seq(writer.append(request("org1", "c1", vec![(a.clone(), 0, 1)])).await);
    tokio::time::timeout(PATIENCE, tail.wait_for(|s| *s >= s1)).await.expect("seen in time").unwrap();

    server.restart().await;
    let started = Instant::now();
    let s2 = loop {
        match writer.append(request("org1", "c2", vec![(a.clone(), s1, 1)])).await {
            Err(AppendError::Log(LogError::Unavailable(_))) if started.elapsed() < PATIENCE => continue,
            other => break new_seq(other),
        }
    };
    tokio::time::timeout(PATIENCE, tail.wait_for(|s| *s >= s2)).await.expect("seen after the restart").unwrap();
}

#[tokio::test]
async fn the_stream_refuses_deletes_and_purges() {
    let server = NatsServer::start().await;
    let log = open(server.log_config()).await;
    let a = contact("org1", "ann@example.com");
    let s1 = new_seq(log.append(request("org1", "c1", vec![(a, 0, 1)])).await);
    let stream = js_stream(&server, "SEGMENTD").await;
    let err = stream.delete_message(s1).await.expect_err("delete must be refused");
    match err.kind() {
        jetstream::stream::DeleteMessageErrorKind::JetStream(e) => {
            assert_eq!(e.error_code(), ErrorCode(10057), "{e}")
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(stream.purge().await.is_err(), "purge must be refused");
    assert_eq!(log.read(1, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_stream_is_verified_on_connect() {
    let server = NatsServer::start().await;
    let config = server.log_config();
    drop(open(config.clone()).await);
    // A second process finds the stream as the first made it.
    let again = open(config.clone()).await;
    let info = js_stream(&server, "SEGMENTD").await.get_info().await.unwrap();
    let c = &info.config;
    assert!(c.deny_delete && c.deny_purge);
    assert_eq!(c.subjects, ["seg.evt.>"]);
    assert_eq!(c.storage, jetstream::stream::StorageType::File);
    assert_eq!(c.duplicate_window, Duration::from_secs(120));
    drop(again);

    // A different window is updated in place.
    let shorter = NatsConfig { duplicate_window: Duration::from_secs(30), ..config.clone() };
    drop(open(shorter).await);
    let info = js_stream(&server, "SEGMENTD").await.get_info().await.unwrap();
    assert_eq!(info.config.duplicate_window, Duration::from_secs(30));

    // A stream that would evict events is refused, naming the setting.
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    js.create_stream(jetstream::stream::Config {
        name: "AGED".into(),
        subjects: vec!["aged.>".into()],
        max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .unwrap();
    let aged = NatsConfig { stream: "AGED".into(), subject_prefix: "aged".into(), ..config.clone() };
    match NatsLog::connect(aged).await {
        Err(LogError::InvalidRequest(why)) => assert!(why.contains("max_age"), "{why}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a stream with max_age must be refused"),
    }
    // One without the deny flags is tightened.
    js.create_stream(jetstream::stream::Config {
        name: "LOOSE".into(),
        subjects: vec!["loose.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    drop(open(NatsConfig { stream: "LOOSE".into(), subject_prefix: "loose".into(), ..config }).await);
    let info = js.get_stream("LOOSE").await.unwrap().get_info().await.unwrap();
    assert!(info.config.deny_delete && info.config.deny_purge);
}

#[tokio::test]
async fn of_eight_racers_with_the_same_expected_sequence_one_wins() {
    let server = NatsServer::start().await;
    let log = Arc::new(open(server.log_config()).await);
    let a = contact("org1", "ann@example.com");
    let seed = new_seq(log.append(request("org1", "seed", vec![(a.clone(), 0, 1)])).await);
    // Unrelated traffic, so that sequences of `a` are not adjacent.
    new_seq(log.append(request("org1", "other", vec![(contact("org1", "x@example.com"), 0, 1)])).await);
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let log = Arc::clone(&log);
            let req = request("org1", &format!("racer-{i}"), vec![(a.clone(), seed, 2)]);
            tokio::spawn(async move { log.append(req).await })
        })
        .collect();
    let mut winners = Vec::new();
    let mut actuals = Vec::new();
    for racer in racers {
        match racer.await.unwrap() {
            Ok(Appended::New { last_seq }) => winners.push(last_seq),
            Err(AppendError::Conflict { actual, .. }) => actuals.push(actual),
            other => panic!("a racer got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(actuals.len(), 7);
    // A loser may have lost to the winner's first event (then the second
    // followed at once) or its second; either names one of the winner's.
    let of_a = log.read_aggregate(&a, 0).await.unwrap();
    assert_eq!(of_a.len(), 3, "the winner's two events and the seed");
    assert!(actuals.iter().all(|s| seqs(&of_a)[1..].contains(s)), "{actuals:?} vs {:?}", seqs(&of_a));
    assert_eq!(of_a[2].seq, winners[0]);
}

#[tokio::test]
async fn appends_fail_fast_while_the_server_is_down_and_work_after_it_returns() {
    let mut server = NatsServer::start().await;
    let log = open(server.log_config()).await;
    let a = contact("org1", "ann@example.com");
    let s1 = new_seq(log.append(request("org1", "c1", vec![(a.clone(), 0, 1)])).await);
    server.stop().await;
    let started = Instant::now();
    let req = request("org1", "c2", vec![(a.clone(), s1, 1)]);
    match log.append(req.clone()).await {
        Err(AppendError::Log(LogError::Unavailable(why))) => eprintln!("while down: {why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let took = started.elapsed();
    // reconnect_grace (0.5 s) or one request timeout (2 s) plus retries, not more.
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(matches!(log.last_seq().await, Err(LogError::Unavailable(_))));
    assert!(matches!(log.last_of(&a).await, Err(LogError::Unavailable(_))));

    server.restart().await;
    let started = Instant::now();
    let appended = loop {
        match log.append(req.clone()).await {
            Err(AppendError::Log(LogError::Unavailable(_))) if started.elapsed() < PATIENCE => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other,
        }
    };
    // "Unavailable" means the outcome is unknown: a publish that left just
    // before the connection dropped is flushed after the reconnect, and the
    // retry of the same command then finds it. Either way: exactly once.
    let s2 = match appended {
        Ok(Appended::New { last_seq } | Appended::Duplicate { last_seq }) => last_seq,
        other => panic!("expected the retry to succeed, got {other:?}"),
    };
    assert_eq!(log.read(1, 10).await.unwrap().len(), 2);
    assert_eq!(log.last_seq().await.unwrap(), s2);
}

#[tokio::test]
async fn durable_followers_resume_where_the_read_model_is() {
    let server = NatsServer::start().await;
    let log = open(server.log_config()).await;
    let entries = (0..10).map(|i| (contact("org1", &format!("p{i}@example.com")), 0, 1)).collect();
    new_seq(log.append(request("org1", "bulk", entries)).await);

    let mut follower = log.durable_follow("projector-a", 1).await.unwrap();
    for expected in 1..=10 {
        let d = tokio::time::timeout(PATIENCE, follower.next()).await.unwrap().unwrap();
        assert_eq!(d.record.seq, expected);
        d.ack().await.unwrap();
    }
    assert_eq!(follower.position(), 10);
    drop(follower);
    // Acks are fire-and-forget: wait until the server reports them all.
    let stream = js_stream(&server, "SEGMENTD").await;
    let started = Instant::now();
    loop {
        let info = stream.consumer_info("projector-a").await.unwrap();
        if info.ack_floor.stream_sequence == 10 && info.num_ack_pending == 0 {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "acks never landed: {info:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The read model applied 10 and the consumer stands there: it is kept,
    // and new events arrive on it.
    let before = stream.consumer_info("projector-a").await.unwrap().created;
    let mut follower = log.durable_follow("projector-a", 11).await.unwrap();
    assert_eq!(stream.consumer_info("projector-a").await.unwrap().created, before, "kept, not recreated");
    let s11 = new_seq(log.append(request("org1", "c-11", vec![(contact("org1", "new@example.com"), 0, 1)])).await);
    let d = tokio::time::timeout(PATIENCE, follower.next()).await.unwrap().unwrap();
    assert_eq!(d.record.seq, s11);
    // Not acknowledged: the projector "crashes" with a delivery outstanding.
    drop(d);
    drop(follower);

    // The read model lost its tail (it applied only 5): the consumer is
    // recreated there, and delivers in order from 6.
    let mut follower = log.durable_follow("projector-a", 6).await.unwrap();
    let mut got = Vec::new();
    for _ in 6..=s11 {
        let d = tokio::time::timeout(PATIENCE, follower.next()).await.unwrap().unwrap();
        d.ack().await.unwrap();
        got.push(d.record.seq);
    }
    assert_eq!(got, (6..=s11).collect::<Vec<_>>());

    // The stream form sees new events too.
    let s12 = new_seq(log.append(request("org1", "c-12", vec![(contact("org1", "newer@example.com"), 0, 1)])).await);
    let mut stream_of = follower.into_stream();
    assert_eq!(tokio::time::timeout(PATIENCE, stream_of.next()).await.unwrap().unwrap().unwrap().record.seq, s12);
    drop(stream_of);
    log.delete_durable("projector-a").await.unwrap();
    log.delete_durable("projector-a").await.unwrap();
    assert!(matches!(log.durable_follow("bad.name", 1).await, Err(LogError::InvalidRequest(_))));
}

#[tokio::test]
async fn unsafe_orgs_and_oversized_events_are_invalid() {
    let server = NatsServer::start().await;
    let log = open(server.log_config()).await;
    let bad = AggregateId::contact("org.1", "ann@example.com");
    let req = AppendRequest { org: "org.1".into(), ..request("org.1", "c1", vec![(bad.clone(), 0, 1)]) };
    assert!(matches!(log.append(req).await, Err(AppendError::Log(LogError::InvalidRequest(_)))));
    assert!(matches!(log.last_of(&bad).await, Err(LogError::InvalidRequest(_))));
    // Larger than the server's max_payload (1 MiB by default): refused
    // before anything is published, naming the limit.
    let catalog = AggregateId::segment_catalog("org1");
    let mut huge = request("org1", "c2", vec![(catalog, 0, 1)]);
    if let segmentd_domain::Event::SegmentCreated(created) = &mut huge.entries[0].events[0].event {
        created.criteria = "x".repeat(2 << 20);
    }
    match log.append(huge).await {
        Err(AppendError::Log(LogError::InvalidRequest(why))) => assert!(why.contains("at most"), "{why}"),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    assert_eq!(log.last_seq().await.unwrap(), 0);
}
