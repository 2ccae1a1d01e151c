//! Fuzz target for the embedded log's file reader ([`EmbeddedLog::open`]
//! scans every frame: length, CRC, frame body, event headers), run as a
//! proptest property beside the event decoder's (see fuzz_decoder.rs).
//!
//! A log of a few requests is written once; each case damages a copy of its
//! file (bit flips, truncations, insertions, deletions, lengths claiming up
//! to 4 GiB) and opens it. Damage the CRCs catch must cost only a tail: the
//! log opens with a prefix of the events it held, in order. Then the same
//! damage with every walkable frame's CRC recomputed, so that the frame and
//! event parsers behind the checksum see the bytes: the log opens or is
//! refused as corrupt, and what it opens with reads back without a panic and
//! the same after a reopen. Runs on an allocator capped at
//! [`MEMORY_LIMIT`], so a believed length aborts the binary.
//!
//! `FUZZ_CASES=N` runs N cases instead of the hundred or so that keep
//! `cargo test` short (see README, Production).

use cap::Cap;
use proptest::prelude::*;
use proptest::sample::Index;
use segmentd_log::conformance::{contact, request};
use segmentd_log::embedded::{EmbeddedLog, LOG_FILE};
use segmentd_log::{EventLog, Recorded};
use std::alloc::System;
use std::sync::OnceLock;

const MEMORY_LIMIT: usize = 256 * 1024 * 1024;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, MEMORY_LIMIT);

/// The file's magic number, before the first frame.
const MAGIC_LEN: usize = 8;
/// `[body length u32][CRC u32]` before each frame body.
const FRAME_HEAD: usize = 8;

fn config(default: u32) -> ProptestConfig {
    let cases = match std::env::var("FUZZ_CASES") {
        Ok(n) => n.parse().unwrap_or_else(|_| panic!("FUZZ_CASES must be a whole number, not {n:?}")),
        Err(_) => default,
    };
    ProptestConfig { cases, max_shrink_iters: 1024, ..ProptestConfig::default() }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

/// A log of four requests (one to four events each, two aggregates), as
/// file bytes, and the events it holds.
fn pristine() -> &'static (Vec<u8>, Vec<Recorded>) {
    static PRISTINE: OnceLock<(Vec<u8>, Vec<Recorded>)> = OnceLock::new();
    PRISTINE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let rt = runtime();
        let log = EmbeddedLog::open(dir.path()).expect("a new log opens");
        let (a, b) = (contact("o", "a@example.com"), contact("o", "b@example.com"));
        let requests = [
            request("o", "c1", vec![(a.clone(), 0, 1)]),
            request("o", "c2", vec![(b.clone(), 0, 2), (a.clone(), 1, 1)]),
            request("o", "c3", vec![(a.clone(), 4, 3)]),
            request("o", "c4", vec![(b, 3, 1)]),
        ];
        for r in requests {
            rt.block_on(log.append(r)).expect("the pristine log takes every request");
        }
        let events = rt.block_on(log.read(1, usize::MAX)).expect("the pristine log reads");
        drop(log);
        (std::fs::read(dir.path().join(LOG_FILE)).expect("the log file"), events)
    })
}

#[derive(Clone, Debug)]
enum Damage {
    FlipBit(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    /// A little-endian u32 written over four bytes: on a frame head it is a
    /// length (up to 4 GiB) or a CRC; inside a body, a string length or an
    /// event count.
    SetU32(Index, u32),
}

fn damage() -> impl Strategy<Value = Damage> {
    let u32s = prop_oneof![Just(u32::MAX), Just(u32::MAX / 2), Just(64 << 20), any::<u32>(), 0u32..64];
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Damage::FlipBit(at, bit)),
        any::<Index>().prop_map(Damage::Truncate),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..24)).prop_map(|(at, b)| Damage::Insert(at, b)),
        (any::<Index>(), 1usize..24).prop_map(|(at, n)| Damage::Delete(at, n)),
        (any::<Index>(), u32s).prop_map(|(at, n)| Damage::SetU32(at, n)),
    ]
}

/// Applies `d` past the magic number (damage to the magic number is a file
/// that is not a log, which its own test covers).
fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    let span = bytes.len() - MAGIC_LEN;
    let at = |i: &Index, extra: usize| MAGIC_LEN + i.index(span + extra);
    match d {
        Damage::FlipBit(i, bit) if span > 0 => {
            let i = at(i, 0);
            bytes[i] ^= 1 << bit;
        }
        Damage::FlipBit(..) => {}
        Damage::Truncate(i) => bytes.truncate(at(i, 1)),
        Damage::Insert(i, extra) => {
            let i = at(i, 1);
            bytes.splice(i..i, extra.iter().copied());
        }
        Damage::Delete(i, n) => {
            let i = at(i, 1);
            bytes.drain(i..(i + n).min(bytes.len()));
        }
        Damage::SetU32(i, n) => {
            let i = at(i, 1);
            let end = (i + 4).min(bytes.len());
            bytes.splice(i..end, n.to_le_bytes());
        }
    }
}

/// Recomputes the CRC of every frame that the lengths lead to and the file
/// holds, so that what follows the checksum gets parsed.
fn recompute_crcs(bytes: &mut [u8]) {
    let mut pos = MAGIC_LEN;
    while pos + FRAME_HEAD <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("four bytes")) as usize;
        let body = pos + FRAME_HEAD;
        let Some(end) = body.checked_add(len).filter(|end| *end <= bytes.len()) else { break };
        let crc = crc32fast::hash(&bytes[body..end]);
        bytes[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

/// Opens `bytes` as a log: `None` if refused, else what it reads (or the
/// read's refusal) and its last sequence after a second open.
fn open(bytes: &[u8]) -> Option<(Result<Vec<Recorded>, String>, u64, u64)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join(LOG_FILE), bytes).expect("the damaged file");
    let rt = runtime();
    let log = EmbeddedLog::open(dir.path()).ok()?;
    let last = rt.block_on(log.last_seq()).expect("last_seq of an open log");
    let read = rt.block_on(log.read(1, usize::MAX)).map_err(|e| e.to_string());
    drop(log);
    let log = EmbeddedLog::open(dir.path()).expect("a log that opened once opens again");
    let again = rt.block_on(log.last_seq()).expect("last_seq of an open log");
    Some((read, last, again))
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn damage_the_checksums_catch_costs_only_a_tail(damages in prop::collection::vec(damage(), 1..4)) {
        let (pristine, events) = pristine();
        let mut bytes = pristine.clone();
        for d in &damages {
            apply(&mut bytes, d);
        }
        if let Some((read, last, again)) = open(&bytes) {
            let read = read.map_err(TestCaseError::fail)?;
            prop_assert_eq!(read.len() as u64, last);
            prop_assert_eq!(&read[..], &events[..read.len()]);
            prop_assert_eq!(again, last);
        }
    }

    #[test]
    fn damage_behind_a_valid_checksum_never_panics(damages in prop::collection::vec(damage(), 1..4)) {
        let (pristine, _) = pristine();
        let mut bytes = pristine.clone();
        for d in &damages {
            apply(&mut bytes, d);
        }
        recompute_crcs(&mut bytes);
        if let Some((read, last, again)) = open(&bytes) {
            if let Ok(read) = read {
                prop_assert_eq!(read.len() as u64, last);
                prop_assert!(read.iter().zip(1..).all(|(r, seq)| r.seq == seq), "sequences are gapless from one");
            }
            prop_assert_eq!(again, last);
        }
    }
}

#[test]
fn the_pristine_log_reads_back_whole() {
    // Without this the properties above could pass on an empty log.
    let (bytes, events) = pristine();
    assert_eq!(events.len(), 8);
    let (read, last, again) = open(bytes).expect("the pristine log opens");
    assert_eq!(read.as_deref(), Ok(&events[..]));
    assert_eq!((last, again), (8, 8));
}

#[test]
fn a_frame_length_of_four_gigabytes_costs_the_tail_only() {
    let (pristine, events) = pristine();
    let mut bytes = pristine.clone();
    // The first frame's length.
    bytes[MAGIC_LEN..MAGIC_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let (read, last, _) = open(&bytes).expect("a torn first frame leaves an empty log");
    assert_eq!((read.map(|r| r.len()), last), (Ok(0), 0));
    assert_eq!(events.len(), 8);
}
