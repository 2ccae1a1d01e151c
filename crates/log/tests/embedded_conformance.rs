//! The embedded log against the shared conformance suite, plus what only a
//! file-backed log has: gapless sequences, torn tails cut at open, the
//! directory lock, and reads bounded in size.

use async_trait::async_trait;
use segmentd_domain::event::{ContactCreated, Event};
use segmentd_domain::{AggregateId, Contact, Email, Envelope, Timestamp};
use segmentd_log::conformance::{self, LogFactory, contact, request};
use segmentd_log::embedded::{EmbeddedLog, LOG_FILE};
use segmentd_log::{AppendEntry, AppendRequest, Appended, EventLog, LogError, Seq};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Each log in its own directory under one temporary root.
struct Dirs {
    root: tempfile::TempDir,
    made: usize,
}

#[async_trait]
impl LogFactory for Dirs {
    type Log = EmbeddedLog;

    async fn create(&mut self) -> EmbeddedLog {
        self.made += 1;
        EmbeddedLog::open(&self.root.path().join(format!("log-{}", self.made))).expect("a new log opens")
    }

    async fn restart(&mut self, log: EmbeddedLog) -> EmbeddedLog {
        let dir = log.dir().to_owned();
        drop(log);
        EmbeddedLog::open(&dir).expect("the log reopens")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_log_passes_the_conformance_suite() {
    let mut dirs = Dirs { root: tempfile::tempdir().unwrap(), made: 0 };
    conformance::run_all(&mut dirs).await;
}

fn new_seq(result: Result<Appended, segmentd_log::AppendError>) -> Seq {
    match result {
        Ok(Appended::New { last_seq }) => last_seq,
        other => panic!("expected a new append, got {other:?}"),
    }
}

fn log_file(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

fn file_len(dir: &Path) -> u64 {
    std::fs::metadata(log_file(dir)).unwrap().len()
}

async fn all_seqs(log: &EmbeddedLog) -> Vec<Seq> {
    log.read(1, usize::MAX).await.unwrap().iter().map(|r| r.seq).collect()
}

#[tokio::test]
async fn sequences_are_gapless_from_one_across_conflicts_duplicates_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    let a = contact("o", "a@example.com");
    assert_eq!(new_seq(log.append(request("o", "c1", vec![(a.clone(), 0, 3)])).await), 3);
    assert!(log.append(request("o", "c2", vec![(a.clone(), 0, 1)])).await.is_err());
    assert!(matches!(log.append(request("o", "c1", vec![(a.clone(), 0, 3)])).await, Ok(Appended::Duplicate { .. })));
    assert_eq!(new_seq(log.append(request("o", "c2", vec![(a.clone(), 3, 2)])).await), 5);
    drop(log);
    let log = EmbeddedLog::open(dir.path()).unwrap();
    assert_eq!(new_seq(log.append(request("o", "c3", vec![(a.clone(), 5, 1)])).await), 6);
    assert_eq!(all_seqs(&log).await, (1..=6).collect::<Vec<_>>());
}

/// Three requests, then whatever `damage` does to the file; the log must
/// reopen with the first `kept` requests' events and carry on gaplessly.
async fn survives(damage: impl FnOnce(&Path, &[u64]), kept: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut ends = Vec::new();
    let mut seqs = Vec::new();
    let reqs: Vec<AppendRequest> = (0..3)
        .map(|i| request("o", &format!("c{i}"), vec![(contact("o", &format!("p{i}@example.com")), 0, i + 1)]))
        .collect();
    {
        let log = EmbeddedLog::open(dir.path()).unwrap();
        ends.push(file_len(dir.path()));
        for r in &reqs {
            seqs.push(new_seq(log.append(r.clone()).await));
            ends.push(file_len(dir.path()));
        }
    }
    damage(dir.path(), &ends);
    let log = EmbeddedLog::open(dir.path()).expect("a torn tail does not stop the log from opening");
    let last = if kept == 0 { 0 } else { seqs[kept - 1] };
    assert_eq!(log.last_seq().await.unwrap(), last);
    assert_eq!(all_seqs(&log).await, (1..=last).collect::<Vec<_>>());
    assert_eq!(file_len(dir.path()), ends[kept], "the torn tail was cut off the file");
    // The lost request was never acknowledged, so its command id is free;
    // the kept ones are still known.
    for (i, r) in reqs.iter().enumerate() {
        let again = log.append(r.clone()).await.unwrap();
        if i < kept {
            assert_eq!(again, Appended::Duplicate { last_seq: seqs[i] });
        } else {
            assert!(matches!(again, Appended::New { .. }), "request {i} was lost and appends anew: {again:?}");
        }
    }
    let total = log.last_seq().await.unwrap();
    drop(log);
    let log = EmbeddedLog::open(dir.path()).unwrap();
    assert_eq!(all_seqs(&log).await, (1..=total).collect::<Vec<_>>(), "appends after the cut are durable");
}

#[tokio::test]
async fn garbage_after_the_last_frame_is_dropped() {
    survives(
        |dir, _| {
            let mut f = std::fs::OpenOptions::new().append(true).open(log_file(dir)).unwrap();
            f.write_all(&[0xAB; 100]).unwrap();
        },
        3,
    )
    .await;
}

#[tokio::test]
async fn zeros_after_the_last_frame_are_dropped() {
    survives(
        |dir, _| {
            let mut f = std::fs::OpenOptions::new().append(true).open(log_file(dir)).unwrap();
            f.write_all(&[0; 4096]).unwrap();
        },
        3,
    )
    .await;
}

#[tokio::test]
async fn a_frame_cut_mid_write_is_dropped() {
    survives(
        |dir, ends| {
            let f = std::fs::OpenOptions::new().write(true).open(log_file(dir)).unwrap();
            f.set_len(ends[2] + (ends[3] - ends[2]) / 2).unwrap();
        },
        2,
    )
    .await;
}

#[tokio::test]
async fn a_frame_cut_inside_its_head_is_dropped() {
    survives(
        |dir, ends| {
            let f = std::fs::OpenOptions::new().write(true).open(log_file(dir)).unwrap();
            f.set_len(ends[2] + 5).unwrap();
        },
        2,
    )
    .await;
}

#[tokio::test]
async fn a_last_frame_with_a_bad_checksum_is_dropped() {
    survives(
        |dir, ends| {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().read(true).write(true).open(log_file(dir)).unwrap();
            let at = ends[3] - 3;
            let mut b = [0u8];
            f.read_exact_at(&mut b, at).unwrap();
            f.write_all_at(&[b[0] ^ 0x10], at).unwrap();
        },
        2,
    )
    .await;
}

#[tokio::test]
async fn a_crash_while_creating_the_file_leaves_an_empty_log() {
    survives(
        |dir, _| {
            let f = std::fs::OpenOptions::new().write(true).open(log_file(dir)).unwrap();
            f.set_len(3).unwrap();
        },
        0,
    )
    .await;
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let first = EmbeddedLog::open(dir.path()).unwrap();
    match EmbeddedLog::open(dir.path()) {
        Err(LogError::Unavailable(msg)) => assert!(msg.contains("already open"), "{msg}"),
        Err(other) => panic!("expected Unavailable, got {other}"),
        Ok(_) => panic!("a second open of a locked log succeeded"),
    }
    new_seq(first.append(request("o", "c", vec![(contact("o", "a@example.com"), 0, 1)])).await);
    drop(first);
    let second = EmbeddedLog::open(dir.path()).expect("the lock is released on drop");
    assert_eq!(second.last_seq().await.unwrap(), 1);
}

#[tokio::test]
async fn a_file_that_is_not_a_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(log_file(dir.path()), b"hello, this is not an event log").unwrap();
    match EmbeddedLog::open(dir.path()) {
        Err(LogError::Corrupt { reason, .. }) => assert!(reason.contains("not a segmentd event log"), "{reason}"),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("opened a file that is not a log"),
    }
    assert_eq!(std::fs::read(log_file(dir.path())).unwrap(), b"hello, this is not an event log", "left untouched");
}

fn big_contact_request(command_id: &str, from: usize, n: usize, padding: usize) -> AppendRequest {
    let entries = (from..from + n)
        .map(|i| {
            let email = format!("bulk{i}@example.com");
            let aggregate = AggregateId::contact("o", &email);
            let mut contact = Contact::new(Email::parse(&email).unwrap(), Timestamp(i as i64));
            contact.custom.insert("blob".into(), "x".repeat(padding));
            let event = Envelope {
                event_id: i as u128,
                command_id: command_id.into(),
                aggregate: aggregate.clone(),
                actor: "test".into(),
                time: Timestamp(i as i64),
                event: Event::ContactCreated(ContactCreated { contact }),
            };
            AppendEntry { aggregate, expected_last_seq: 0, events: vec![event] }
        })
        .collect();
    AppendRequest { org: "o".into(), command_id: command_id.into(), entries }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_bulk_appends_are_all_durable_and_gapless() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(dir.path()).unwrap());
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                for r in 0..10 {
                    let from = (t * 10 + r) * 100;
                    new_seq(log.append(big_contact_request(&format!("t{t}-r{r}"), from, 100, 10)).await);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(log.last_seq().await.unwrap(), 16_000);
    let log = Arc::into_inner(log).unwrap();
    drop(log);
    let log = EmbeddedLog::open(dir.path()).unwrap();
    let mut next = 1;
    loop {
        let page = log.read(next, 5000).await.unwrap();
        let Some(last) = page.last() else { break };
        assert_eq!(page.first().unwrap().seq, next);
        assert!(page.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        next = last.seq + 1;
    }
    assert_eq!(next, 16_001);
    let one = log.last_of(&AggregateId::contact("o", "bulk1234@example.com")).await.unwrap().unwrap();
    assert_eq!(one.envelope.event_id, 1234);
}

#[tokio::test]
async fn a_huge_read_is_cut_into_bounded_pages_that_cover_everything() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    // About 12 MiB of events: more than one read returns.
    for r in 0..12 {
        new_seq(log.append(big_contact_request(&format!("r{r}"), r * 100, 100, 10_000)).await);
    }
    let first = log.read(1, usize::MAX).await.unwrap();
    assert!(!first.is_empty() && first.len() < 1200, "one read is bounded, got {}", first.len());
    let mut seen = first.len() as Seq;
    while let Some(last) = log.read(seen + 1, usize::MAX).await.unwrap().last() {
        seen = last.seq;
    }
    assert_eq!(seen, 1200);
    let huge_one = big_contact_request("huge", 5000, 1, 9 << 20);
    let s = new_seq(log.append(huge_one).await);
    assert_eq!(log.read(s, 10).await.unwrap().len(), 1, "one event larger than the read bound still reads");
    assert_eq!(log.read(s - 1, 10).await.unwrap().len(), 1, "and is not read together with the one before");
}
