//! Past states for time travel, on a real embedded log whose events carry
//! chosen recording times (including a writer with a late clock): which
//! sequence an instant resolves to, the clock a past answer uses, and the
//! cache (hits build nothing, least recently used goes first, concurrent
//! requests share one build, a state at the log's end learns of later events).

use segmentd_domain::event::ContactCreated;
use segmentd_domain::{AggregateId, Contact, Email, Envelope, Event, Timestamp};
use segmentd_log::embedded::EmbeddedLog;
use segmentd_log::{AppendEntry, AppendRequest, EventLog};
use segmentd_readmodel::{PastModels, PastView, ProjectorError, Until};
use std::sync::Arc;

/// Recording times of events 1..=6: the fourth comes from a writer whose
/// clock is behind (logged after 3000, stamped 2500).
const TIMES: [i64; 6] = [1000, 2000, 3000, 2500, 4000, 5000];

async fn append(log: &EmbeddedLog, i: usize, time: i64) -> u64 {
    let email = format!("c{i}@example.com");
    let mut contact = Contact::new(Email::parse(&email).unwrap(), Timestamp(time));
    contact.age = Some(i as i64);
    let aggregate = AggregateId::contact("o", &email);
    let envelope = Envelope {
        event_id: i as u128 + 1,
        command_id: format!("cmd-{i}"),
        aggregate: aggregate.clone(),
        actor: "test".into(),
        time: Timestamp(time),
        event: Event::ContactCreated(ContactCreated { contact }),
    };
    let request = AppendRequest {
        org: "o".into(),
        command_id: format!("cmd-{i}"),
        entries: vec![AppendEntry { aggregate, expected_last_seq: 0, events: vec![envelope] }],
    };
    log.append(request).await.unwrap().last_seq()
}

async fn log_with_history() -> (tempfile::TempDir, Arc<EmbeddedLog>) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("log")).unwrap());
    for (i, t) in TIMES.iter().enumerate() {
        assert_eq!(append(&log, i + 1, *t).await, i as u64 + 1);
    }
    (dir, log)
}

fn contacts(view: &PastView) -> (u64, usize) {
    view.state.model().read("o", |v, seq| (seq, v.contact_count()))
}

#[tokio::test]
async fn given_a_sequence_then_the_state_holds_exactly_the_events_up_to_it() {
    let (_dir, log) = log_with_history().await;
    let past = PastModels::new(log, 8);
    for seq in 1..=6u64 {
        let view = past.at(Until::Sequence(seq)).await.unwrap();
        assert_eq!(contacts(&view), (seq, seq as usize));
        assert_eq!(view.clock, Timestamp(TIMES[seq as usize - 1]), "the clock is when that event was recorded");
    }
    match past.at(Until::Sequence(7)).await {
        Err(ProjectorError::BeyondLog { wanted: 7, last: 6 }) => {}
        other => panic!("expected BeyondLog, got {:?}", other.map(|v| v.state.seq())),
    }
}

#[tokio::test]
async fn given_an_instant_then_the_state_is_the_longest_prefix_recorded_by_then() {
    let (_dir, log) = log_with_history().await;
    // Nothing cached, so each instant is resolved by a replay of its own.
    let past = PastModels::new(log, 0);
    for (t, seq) in [(999, 0), (1000, 1), (2999, 2), (2600, 2), (3000, 4), (3500, 4), (4999, 5), (9999, 6)] {
        let view = past.at(Until::Time(Timestamp(t))).await.unwrap();
        assert_eq!(contacts(&view), (seq, seq as usize), "instant {t}");
        assert_eq!(view.clock, Timestamp(t), "the clock is the instant asked for");
    }
}

#[tokio::test]
async fn given_cached_states_then_instants_they_cover_build_nothing() {
    let (_dir, log) = log_with_history().await;
    let past = PastModels::new(log, 2);
    past.at(Until::Sequence(2)).await.unwrap();
    past.at(Until::Sequence(4)).await.unwrap();
    assert_eq!((past.built(), past.cached()), (2, vec![2, 4]));
    // State 2 covers [2000, 3000): every event in it is at or before, the next after.
    for t in [2000, 2600, 2999] {
        assert_eq!(past.at(Until::Time(Timestamp(t))).await.unwrap().state.seq(), 2, "instant {t}");
    }
    // State 4 holds an event stamped 3000 and, after it, one stamped 2500:
    // it covers [3000, 4000). No instant resolves to 3.
    for t in [3000, 3500, 3999] {
        assert_eq!(past.at(Until::Time(Timestamp(t))).await.unwrap().state.seq(), 4, "instant {t}");
    }
    assert_eq!(past.built(), 2, "every instant was answered from the cache");
    past.at(Until::Sequence(3)).await.unwrap();
    assert_eq!(past.built(), 3);
    assert_eq!(past.cached(), vec![4, 3], "least recently used (2) evicted");
}

#[tokio::test]
async fn given_a_state_at_the_end_of_the_log_then_later_events_end_what_it_covers() {
    let (_dir, log) = log_with_history().await;
    let past = PastModels::new(Arc::clone(&log) as Arc<dyn EventLog>, 4);
    past.at(Until::Sequence(6)).await.unwrap();
    assert_eq!(past.at(Until::Time(Timestamp(7000))).await.unwrap().state.seq(), 6);
    assert_eq!(past.built(), 1, "the end of the log covers any instant after its last event");
    append(&log, 7, 6000).await;
    assert_eq!(past.at(Until::Time(Timestamp(5500))).await.unwrap().state.seq(), 6);
    assert_eq!(past.built(), 1);
    let later = past.at(Until::Time(Timestamp(7000))).await.unwrap();
    assert_eq!((later.state.seq(), past.built()), (7, 2), "the new event is in, from a new build");
}

#[tokio::test]
async fn given_concurrent_requests_for_one_sequence_then_it_is_built_once() {
    let (_dir, log) = log_with_history().await;
    let past = PastModels::new(log, 2);
    let (a, b, c) = tokio::join!(past.at(Until::Sequence(5)), past.at(Until::Sequence(5)), past.at(Until::Sequence(5)));
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert!(Arc::ptr_eq(&a.state, &b.state) && Arc::ptr_eq(&b.state, &c.state));
    assert_eq!(past.built(), 1);
}
