//! The embedded event log: one append-only file under a directory, for a
//! single process that runs with no server. It implements [`EventLog`] with
//! the same guarantees the conformance suite checks for NATS JetStream, and
//! it is durable: an append is acknowledged only after `fdatasync`.
//!
//! **Must not depend on** the read models, the API, or any other backend;
//! only on the codec and the port in this crate.
//!
//! # File format (`events.log`)
//! An 8-byte magic, then one *frame* per [`AppendRequest`]:
//! `[body length u32 LE][CRC32 of body u32 LE][body]`, where the body is
//! `[first seq u64][org len u32][org][command id len u32][command id]
//! [event count u32]` followed by each event as
//! `[previous seq of the same aggregate u64][length u32][codec bytes]`.
//! A frame is the unit of atomicity: a crash mid-write leaves a frame whose
//! length or CRC does not check, and opening drops it and everything after
//! it (never more than one group commit's worth, see [`TORN_TAIL_MAX`]).
//!
//! # Memory
//! Nothing but indexes lives in memory: the file offset of each sequence,
//! each aggregate's last sequence, and each command's last sequence. The two
//! maps are keyed by a 128-bit keyed hash (two independently keyed SipHash
//! instances) rather than by the ids themselves, so 2 million aggregates
//! cost tens of megabytes instead of hundreds. The keys are random per
//! process and the maps are rebuilt at every open, so nothing persistent
//! depends on the hash. Two distinct ids colliding needs about 2^-87 luck at
//! 2 million keys; reads still check the decoded aggregate to be safe.
//!
//! # Concurrency
//! Appends are encoded by the caller, then queued to one writer thread. The
//! writer checks idempotency and expected sequences in queue order (so the
//! checks are race-free), writes every accepted request of the queue as one
//! `write`, fsyncs once, publishes the new index and answers them all: group
//! commit. Readers use positional reads on a blocking thread and see only
//! what is durable.

use crate::codec;
use crate::{AppendError, AppendRequest, Appended, EncodedEvents, EventLog, LogError, Recorded, Seq};
use async_trait::async_trait;
use segmentd_domain::{AggregateId, AggregateKind, Envelope};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot, watch};

/// The log file inside the directory.
pub const LOG_FILE: &str = "events.log";
/// Held with an exclusive OS lock while a process has the log open.
pub const LOCK_FILE: &str = "LOCK";
/// Identifies the file format; a new frame layout gets a new magic.
const MAGIC: &[u8; 8] = b"SEGDLOG1";

/// `[length u32][crc u32]` before each frame body.
const FRAME_HEAD: usize = 8;
/// `[previous seq u64][length u32]` before each event's bytes.
const EVENT_HEAD: usize = 12;
/// The smallest body: first seq, two empty strings, a count, one empty event.
const MIN_BODY: usize = 8 + 4 + 4 + 4 + EVENT_HEAD;

/// The largest request, encoded. Bounds what a reader of a damaged length
/// field would allocate, and with the group commit limit how much a torn tail
/// can hold.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// A group commit stops taking more requests past this many bytes, so one
/// fsync does not hold every waiter for too long.
const MAX_GROUP_BYTES: usize = 16 << 20;
const MAX_GROUP_REQUESTS: usize = 4096;
/// The most bytes an unacknowledged tail can span: one group commit. Invalid
/// data further from the end than this cannot be a torn write, so opening
/// refuses it rather than silently cutting acknowledged events.
pub const TORN_TAIL_MAX: u64 = (MAX_GROUP_BYTES + MAX_FRAME_BYTES) as u64;
/// Longest org or command id a frame carries.
const MAX_ID_BYTES: usize = 4096;
/// Requests waiting for the writer; beyond this, appenders wait (backpressure).
const QUEUE_DEPTH: usize = 1024;
/// One `read` reads at most about this many bytes (always at least one event).
const MAX_READ_BYTES: u64 = 8 << 20;

/// The embedded, file-backed event log. Open it once per directory and
/// process; dropping it waits for the writer to finish what it has taken.
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    queue: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    // Declared last: it is released only after the writer has stopped, so
    // the next process cannot see a file that is still being written.
    _lock: File,
}

/// What readers and the writer share.
struct Shared {
    dir: PathBuf,
    file: File,
    keys: Keys,
    index: RwLock<Index>,
    tail: watch::Sender<Seq>,
}

/// The durable part of the log, as readers see it.
struct Index {
    /// The file offset of the record of sequence `s`, at `offsets[s - 1]`.
    offsets: Vec<u64>,
    /// Aggregate key → sequence of its last event.
    aggregates: KeyMap,
    /// The end of the last durable frame.
    end: u64,
}

impl Index {
    fn last_seq(&self) -> Seq {
        self.offsets.len() as Seq
    }

    /// The file range that holds the record of `seq` (and maybe a following
    /// frame head, which parsing ignores).
    fn span(&self, seq: Seq) -> Option<(u64, u64)> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        let start = *self.offsets.get(i)?;
        let end = self.offsets.get(i + 1).copied().unwrap_or(self.end);
        Some((start, end))
    }
}

/// A 128-bit keyed hash of an id. Two `u64`s rather than a `u128` so that a
/// map slot with a `Seq` is 24 bytes, not 32 (`u128` is 16-byte aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key(u64, u64);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already uniformly random: half of it is a perfectly good hash.
        state.write_u64(self.1);
    }
}

type KeyMap = HashMap<Key, Seq, BuildHasherDefault<PreHashed>>;

/// Passes a [`Key`]'s bits through instead of hashing them again.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is reached for `Key`s; this keeps the hasher
        // correct (if weak) for anything else.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The per-process hash keys for aggregate and command ids.
struct Keys {
    high: RandomState,
    low: RandomState,
}

impl Keys {
    fn new() -> Self {
        Keys { high: RandomState::new(), low: RandomState::new() }
    }

    fn hash<T: Hash>(&self, value: &T) -> Key {
        Key(self.high.hash_one(value), self.low.hash_one(value))
    }

    fn aggregate(&self, org: &str, kind: AggregateKind, id: &str) -> Key {
        // `str` hashes with a terminator, so the parts cannot run into each
        // other; the leading tag keeps the two key spaces apart.
        self.hash(&(b'a', org, kind.as_str(), id))
    }

    fn aggregate_id(&self, aggregate: &AggregateId) -> Key {
        self.aggregate(&aggregate.org, aggregate.kind, &aggregate.id)
    }

    fn command(&self, org: &str, command_id: &str) -> Key {
        self.hash(&(b'c', org, command_id))
    }
}

/// One request, encoded by its caller, waiting for the writer.
struct Job {
    request: Prepared,
    reply: oneshot::Sender<Result<Appended, AppendError>>,
}

/// A request as a frame whose sequences the writer fills in.
struct Prepared {
    command: Key,
    /// `[head placeholder][body]`; the writer patches the first sequence,
    /// each event's previous sequence, the length and the CRC.
    frame: Vec<u8>,
    entries: Vec<PreparedEntry>,
}

struct PreparedEntry {
    aggregate: AggregateId,
    key: Key,
    expected: Seq,
    /// Where each event's record starts within `frame`.
    records: Vec<usize>,
}

impl EmbeddedLog {
    /// Opens (or creates) the log under `dir`. Synchronous: it scans the
    /// whole file sequentially to rebuild the indexes (about a second per
    /// million events), so call it before serving or from a blocking task.
    ///
    /// Fails with [`LogError::Unavailable`] when another process (or another
    /// `EmbeddedLog` in this one) has the directory open.
    pub fn open(dir: &Path) -> Result<EmbeddedLog, LogError> {
        std::fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        start_file(dir, &file)?;
        let keys = Keys::new();
        let scan = scan(&file, &keys)?;
        let file_len = file.metadata()?.len();
        if scan.end < file_len {
            let dropped = file_len - scan.end;
            if dropped > TORN_TAIL_MAX {
                return Err(LogError::Corrupt {
                    seq: scan.offsets.len() as Seq + 1,
                    reason: format!(
                        "{} has {dropped} unreadable bytes after offset {} ({}); that is more than a torn write \
                         can leave, so the file is damaged and needs inspection",
                        path.display(),
                        scan.end,
                        scan.why_end,
                    ),
                });
            }
            tracing::warn!(
                path = %path.display(),
                offset = scan.end,
                dropped,
                reason = %scan.why_end,
                "dropping the torn tail of the event log (an append that was never acknowledged)"
            );
            file.set_len(scan.end)?;
            file.sync_all()?;
        }
        let last = scan.offsets.len() as Seq;
        tracing::info!(path = %path.display(), last_seq = last, aggregates = scan.aggregates.len(), "event log open");
        let (tail, _) = watch::channel(last);
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            file,
            keys,
            index: RwLock::new(Index { offsets: scan.offsets, aggregates: scan.aggregates, end: scan.end }),
            tail,
        });
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer { shared: Arc::clone(&shared), commands: scan.commands, end: scan.end, failed: None };
        let writer = std::thread::Builder::new().name("segmentd-log-writer".into()).spawn(move || writer.run(jobs))?;
        Ok(EmbeddedLog { shared, queue: Some(queue), writer: Some(writer), _lock: lock })
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    fn prepare(&self, request: AppendRequest) -> Result<Prepared, LogError> {
        prepare(&self.shared.keys, request)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|e| LogError::Unavailable(format!("an event log read was cancelled: {e}")))?
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        // Closing the queue ends the writer after the requests it holds.
        drop(self.queue.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(dir = %self.shared.dir.display(), "the event log writer panicked");
        }
    }
}

fn lock_dir(dir: &Path) -> Result<File, LogError> {
    let path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(LogError::Unavailable(format!(
            "the event log in {} is already open in another process (or another instance in this one): \
             {} is locked",
            dir.display(),
            path.display()
        ))),
        Err(TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Writes the magic into a new file, or checks it in an existing one.
fn start_file(dir: &Path, file: &File) -> Result<(), LogError> {
    let len = file.metadata()?.len();
    let mut head = vec![0u8; usize::try_from(len.min(MAGIC.len() as u64)).unwrap_or(0)];
    file.read_exact_at(&mut head, 0)?;
    if len >= MAGIC.len() as u64 {
        if head != MAGIC {
            return Err(LogError::Corrupt {
                seq: 0,
                reason: format!("{} is not a segmentd event log (bad magic)", dir.join(LOG_FILE).display()),
            });
        }
        return Ok(());
    }
    if !MAGIC.starts_with(&head) {
        return Err(LogError::Corrupt {
            seq: 0,
            reason: format!("{} is not a segmentd event log (bad magic)", dir.join(LOG_FILE).display()),
        });
    }
    // New, or a creation cut short by a crash: nothing was ever acknowledged.
    file.set_len(0)?;
    file.write_all_at(MAGIC, 0)?;
    file.sync_all()?;
    // The file's directory entry must be durable too, or a crash could lose
    // the whole file along with its acknowledged appends.
    File::open(dir)?.sync_all()?;
    Ok(())
}

struct Scan {
    offsets: Vec<u64>,
    aggregates: KeyMap,
    commands: KeyMap,
    /// Where the last valid frame ends.
    end: u64,
    /// Why scanning stopped before the end of the file, if it did.
    why_end: String,
}

/// Reads every frame in order, rebuilding the indexes, until the end of the
/// file or the first frame that does not check (a torn tail).
fn scan(file: &File, keys: &Keys) -> Result<Scan, LogError> {
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader.seek_relative(MAGIC.len() as i64)?;
    let mut out = Scan {
        offsets: Vec::new(),
        aggregates: KeyMap::default(),
        commands: KeyMap::default(),
        end: MAGIC.len() as u64,
        why_end: String::new(),
    };
    let mut body = Vec::new();
    loop {
        let pos = out.end;
        if pos == file_len {
            return Ok(out);
        }
        if file_len - pos < FRAME_HEAD as u64 {
            out.why_end = "a partial frame head".into();
            return Ok(out);
        }
        let mut head = [0u8; FRAME_HEAD];
        reader.read_exact(&mut head)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len < MIN_BODY {
            // Zeros where a frame should be: a file system that grew the file
            // before the data landed. (An empty body's CRC is 0, so the
            // checksum alone would let this through.)
            out.why_end = format!("a frame length of {len} bytes, too short for any frame");
            return Ok(out);
        }
        if len > MAX_FRAME_BYTES || len as u64 > file_len - pos - FRAME_HEAD as u64 {
            out.why_end = format!("a frame length of {len} bytes that the file does not hold");
            return Ok(out);
        }
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
        if crc32fast::hash(&body) != crc {
            out.why_end = "a frame whose checksum does not match".into();
            return Ok(out);
        }
        let next_seq = out.offsets.len() as Seq + 1;
        let frame = parse_frame(&body).map_err(|reason| LogError::Corrupt { seq: next_seq, reason })?;
        if frame.first_seq != next_seq {
            return Err(LogError::Corrupt {
                seq: next_seq,
                reason: format!("the frame at offset {pos} starts at sequence {}", frame.first_seq),
            });
        }
        let body_start = pos + FRAME_HEAD as u64;
        let mut seq = next_seq;
        for (record_at, prev, bytes) in frame.events {
            let (_, _, header, _) = codec::decode_header(bytes)
                .map_err(|e| LogError::Corrupt { seq, reason: format!("undecodable event header: {e}") })?;
            let kind = AggregateKind::parse(header.aggregate_kind).ok_or_else(|| LogError::Corrupt {
                seq,
                reason: format!("unknown aggregate kind {:?}", header.aggregate_kind),
            })?;
            let key = keys.aggregate(header.org, kind, header.aggregate_id);
            let known = out.aggregates.insert(key, seq).unwrap_or(0);
            if known != prev {
                return Err(LogError::Corrupt {
                    seq,
                    reason: format!("the event says its aggregate was at sequence {prev}, the log has {known}"),
                });
            }
            out.offsets.push(body_start + record_at as u64);
            seq += 1;
        }
        out.commands.insert(keys.command(frame.org, frame.command_id), seq - 1);
        out.end = body_start + len as u64;
    }
}

struct Frame<'a> {
    first_seq: Seq,
    org: &'a str,
    command_id: &'a str,
    /// (record offset within the body, previous seq, event bytes)
    events: Vec<(usize, Seq, &'a [u8])>,
}

/// Splits a frame body whose checksum matched. An error here means the
/// writer produced it wrong, not a torn write.
fn parse_frame(body: &[u8]) -> Result<Frame<'_>, String> {
    let mut at = 0;
    let first_seq = take_u64(body, &mut at)?;
    let org = take_str(body, &mut at)?;
    let command_id = take_str(body, &mut at)?;
    let count = take_u32(body, &mut at)?;
    let mut events = Vec::with_capacity((count as usize).min(body.len() / EVENT_HEAD));
    for _ in 0..count {
        let record_at = at;
        let prev = take_u64(body, &mut at)?;
        let bytes = take_bytes(body, &mut at)?;
        events.push((record_at, prev, bytes));
    }
    if count == 0 {
        return Err("a frame without events".into());
    }
    if at != body.len() {
        return Err(format!("{} bytes after the last event of a frame", body.len() - at));
    }
    Ok(Frame { first_seq, org, command_id, events })
}

fn take<'a>(buf: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let end = at.checked_add(n).filter(|end| *end <= buf.len()).ok_or_else(|| {
        format!("a record runs past its frame ({} bytes wanted at {}, frame has {})", n, at, buf.len())
    })?;
    let out = &buf[*at..end];
    *at = end;
    Ok(out)
}

fn take_u64(buf: &[u8], at: &mut usize) -> Result<u64, String> {
    let b = take(buf, at, 8)?;
    Ok(u64::from_le_bytes(b.try_into().map_err(|_| "short u64")?))
}

fn take_u32(buf: &[u8], at: &mut usize) -> Result<u32, String> {
    let b = take(buf, at, 4)?;
    Ok(u32::from_le_bytes(b.try_into().map_err(|_| "short u32")?))
}

fn take_bytes<'a>(buf: &'a [u8], at: &mut usize) -> Result<&'a [u8], String> {
    let n = take_u32(buf, at)? as usize;
    take(buf, at, n)
}

fn take_str<'a>(buf: &'a [u8], at: &mut usize) -> Result<&'a str, String> {
    std::str::from_utf8(take_bytes(buf, at)?).map_err(|e| format!("a frame string is not UTF-8: {e}"))
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Callers bound every length by MAX_FRAME_BYTES first.
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

/// Checks a request and encodes it as a frame, on the caller's task so that
/// the CPU work of many appenders runs in parallel.
///
/// Rules (the same for every backend, see the conformance suite): at least
/// one event; every entry has events; each aggregate appears in one entry
/// only (a command that appends twice to one aggregate puts the events in
/// one entry); every event belongs to its entry's aggregate, to the
/// request's org, and carries the request's command id, because that id in
/// the events is what proves idempotency later.
fn prepare(keys: &Keys, request: AppendRequest) -> Result<Prepared, LogError> {
    let invalid = |msg: String| Err(LogError::InvalidRequest(msg));
    let AppendRequest { org, command_id, entries } = request;
    if command_id.is_empty() {
        return invalid("the command id is empty".into());
    }
    if org.len() > MAX_ID_BYTES || command_id.len() > MAX_ID_BYTES {
        return invalid(format!("the org or command id is longer than {MAX_ID_BYTES} bytes"));
    }
    if entries.iter().all(|e| e.events.is_empty()) {
        return invalid(format!("command {command_id} appends no events"));
    }
    let mut seen = HashSet::with_capacity(entries.len());
    let mut frame = vec![0u8; FRAME_HEAD + 8];
    put_u32(&mut frame, org.len());
    frame.extend_from_slice(org.as_bytes());
    put_u32(&mut frame, command_id.len());
    frame.extend_from_slice(command_id.as_bytes());
    put_u32(&mut frame, entries.iter().map(|e| e.events.len()).sum());
    let mut prepared = Vec::with_capacity(entries.len());
    for entry in entries {
        let aggregate = entry.aggregate;
        if entry.events.is_empty() {
            return invalid(format!("the entry for {aggregate} has no events"));
        }
        if aggregate.org != org {
            return invalid(format!("aggregate {aggregate} is not in the request's organisation {org}"));
        }
        if !seen.insert(aggregate.clone()) {
            return invalid(format!("aggregate {aggregate} has more than one entry; put its events in one"));
        }
        let mut records = Vec::with_capacity(entry.events.len());
        for event in &entry.events {
            check_envelope(event, &aggregate, &command_id)?;
            records.push(frame.len() - FRAME_HEAD);
            frame.extend_from_slice(&[0; 8]);
            let len_at = frame.len();
            frame.extend_from_slice(&[0; 4]);
            frame = codec::encode_into(event, std::mem::take(&mut frame));
            let len = frame.len() - len_at - 4;
            if frame.len() > MAX_FRAME_BYTES + FRAME_HEAD {
                return invalid(format!(
                    "command {command_id} encodes to more than {} MiB; split it",
                    MAX_FRAME_BYTES >> 20
                ));
            }
            frame[len_at..len_at + 4].copy_from_slice(&(len as u32).to_le_bytes());
        }
        let key = keys.aggregate_id(&aggregate);
        prepared.push(PreparedEntry { aggregate, key, expected: entry.expected_last_seq, records });
    }
    Ok(Prepared { command: keys.command(&org, &command_id), frame, entries: prepared })
}

fn check_envelope(event: &Envelope, aggregate: &AggregateId, command_id: &str) -> Result<(), LogError> {
    if event.aggregate != *aggregate {
        return Err(LogError::InvalidRequest(format!(
            "an event for {} is in the entry for {aggregate}",
            event.aggregate
        )));
    }
    if event.command_id != command_id {
        return Err(LogError::InvalidRequest(format!(
            "an event carries command id {:?}, the request {command_id:?}",
            event.command_id
        )));
    }
    Ok(())
}

/// The single writer: owns the end of the file and the command index.
struct Writer {
    shared: Arc<Shared>,
    /// (org, command id) key → the last sequence that command appended.
    commands: KeyMap,
    end: u64,
    /// Set after a failed write or fsync: what the kernel did with the
    /// page cache is then unknown (a second fsync may "succeed" having
    /// dropped the data), so the log refuses appends until reopened.
    failed: Option<String>,
}

/// What one group commit has accepted so far: not durable, not visible to
/// readers, but seen by the checks of the requests after it in the queue.
#[derive(Default)]
struct Group {
    aggregates: KeyMap,
    commands: KeyMap,
    offsets: Vec<u64>,
    /// Accepted frames, in order, to be written at the end of the file.
    bytes: Vec<u8>,
    /// The sequences the group assigns start here.
    first: Seq,
    next: Seq,
}

/// An answer held back until the group commit it may depend on is durable.
struct Answer {
    reply: oneshot::Sender<Result<Appended, AppendError>>,
    result: Result<Appended, AppendError>,
}

impl Writer {
    fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch = Vec::new();
        let mut bytes = Vec::new();
        while let Some(first) = jobs.blocking_recv() {
            let mut size = first.request.frame.len();
            batch.push(first);
            // Whatever queued up during the last fsync shares the next one.
            while size < MAX_GROUP_BYTES && batch.len() < MAX_GROUP_REQUESTS {
                let Ok(job) = jobs.try_recv() else { break };
                size += job.request.frame.len();
                batch.push(job);
            }
            bytes = self.commit(&mut batch, bytes);
        }
    }

    /// Decides, writes and answers one batch; hands back its buffer for reuse.
    fn commit(&mut self, batch: &mut Vec<Job>, mut bytes: Vec<u8>) -> Vec<u8> {
        if let Some(why) = &self.failed {
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(unavailable_after(why)));
            }
            return bytes;
        }
        bytes.clear();
        let mut answers = Vec::with_capacity(batch.len());
        let mut group = {
            let index = self.shared.index.read().unwrap_or_else(|p| p.into_inner());
            let first = index.last_seq() + 1;
            let mut group = Group { bytes, first, next: first, ..Group::default() };
            for Job { request, reply } in batch.drain(..) {
                let result = self.decide(&index, &mut group, request);
                answers.push(Answer { reply, result });
            }
            group
        };
        if !group.bytes.is_empty() {
            if let Err(e) = self.write(&group.bytes) {
                self.fail(e, &group, answers);
                return group.bytes;
            }
            self.end += group.bytes.len() as u64;
            let last = {
                let mut index = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
                index.offsets.extend_from_slice(&group.offsets);
                index.aggregates.extend(group.aggregates.drain());
                index.end = self.end;
                index.last_seq()
            };
            self.commands.extend(group.commands.drain());
            self.shared.tail.send_replace(last);
        }
        for a in answers {
            // The appender may have stopped waiting; its events stay durable
            // and a retry with the same command id finds them.
            let _ = a.reply.send(a.result);
        }
        group.bytes
    }

    /// Checks one request against the durable index plus what the group has
    /// accepted so far, and frames it into the group if it is accepted.
    fn decide(&self, index: &Index, group: &mut Group, mut request: Prepared) -> Result<Appended, AppendError> {
        // Idempotency first: a retry whose expected sequence went stale in
        // the meantime is still the same command, not a conflict.
        if let Some(&last_seq) = group.commands.get(&request.command).or_else(|| self.commands.get(&request.command)) {
            return Ok(Appended::Duplicate { last_seq });
        }
        let current =
            |pending: &KeyMap, key: &Key| pending.get(key).or_else(|| index.aggregates.get(key)).copied().unwrap_or(0);
        for entry in &request.entries {
            let actual = current(&group.aggregates, &entry.key);
            if actual != entry.expected {
                return Err(AppendError::Conflict {
                    aggregate: entry.aggregate.clone(),
                    expected: entry.expected,
                    actual,
                });
            }
        }
        let frame_at = self.end + group.bytes.len() as u64;
        let body = &mut request.frame[FRAME_HEAD..];
        body[..8].copy_from_slice(&group.next.to_le_bytes());
        for entry in &request.entries {
            let mut prev = current(&group.aggregates, &entry.key);
            for &record in &entry.records {
                body[record..record + 8].copy_from_slice(&prev.to_le_bytes());
                group.offsets.push(frame_at + (FRAME_HEAD + record) as u64);
                prev = group.next;
                group.next += 1;
            }
            group.aggregates.insert(entry.key, prev);
        }
        let last_seq = group.next - 1;
        group.commands.insert(request.command, last_seq);
        let len = body.len() as u32;
        let crc = crc32fast::hash(body);
        request.frame[..4].copy_from_slice(&len.to_le_bytes());
        request.frame[4..8].copy_from_slice(&crc.to_le_bytes());
        group.bytes.extend_from_slice(&request.frame);
        Ok(Appended::New { last_seq })
    }

    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.shared.file.write_all_at(bytes, self.end)?;
        // Acknowledging promises durability (DESIGN.md): fsync comes first.
        self.shared.file.sync_data()
    }

    /// After a failed write or fsync nothing of the group is acknowledged,
    /// and the log refuses appends from now on.
    fn fail(&mut self, e: std::io::Error, group: &Group, answers: Vec<Answer>) {
        let why = format!("writing {} bytes at offset {} failed: {e}", group.bytes.len(), self.end);
        tracing::error!(
            dir = %self.shared.dir.display(),
            error = &e as &dyn std::error::Error,
            "event log write failed; appends are refused until the log is reopened"
        );
        // Best effort: cut what may have reached the file, so a reopen does
        // not depend on torn-tail detection for it.
        let _ = self.shared.file.set_len(self.end);
        for a in answers {
            let result = match a.result {
                // A duplicate of an earlier, durable group is still true.
                Ok(Appended::Duplicate { last_seq }) if last_seq < group.first => a.result,
                Ok(_) => Err(AppendError::Log(LogError::Io(std::io::Error::new(e.kind(), why.clone())))),
                Err(_) => a.result,
            };
            let _ = a.reply.send(result);
        }
        self.failed = Some(why);
    }
}

fn unavailable_after(why: &str) -> AppendError {
    AppendError::Log(LogError::Unavailable(format!(
        "the event log stopped accepting appends after a write failure ({why}); restart the process"
    )))
}

/// One event and the previous sequence of its aggregate.
fn read_record(shared: &Shared, seq: Seq) -> Result<(Seq, Envelope), LogError> {
    let span = shared.index.read().unwrap_or_else(|p| p.into_inner()).span(seq);
    let (start, end) = span.ok_or_else(|| LogError::Corrupt { seq, reason: "no such sequence in the index".into() })?;
    let mut buf = vec![0u8; (end - start) as usize];
    shared.file.read_exact_at(&mut buf, start)?;
    let (prev, envelope, _) = parse_record(&buf, seq)?;
    Ok((prev, envelope))
}

/// One event record at the start of `buf`: (previous seq, envelope, its length).
fn parse_record(buf: &[u8], seq: Seq) -> Result<(Seq, Envelope, usize), LogError> {
    let corrupt = |reason: String| LogError::Corrupt { seq, reason };
    let mut at = 0;
    let prev = take_u64(buf, &mut at).map_err(corrupt)?;
    let bytes = take_bytes(buf, &mut at).map_err(corrupt)?;
    let envelope = codec::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    Ok((prev, envelope, at))
}

/// The records of up to `max` events from `from` (bounded by
/// [`MAX_READ_BYTES`]), read at once: the file bytes from the first one's
/// start and each record's offset in them.
fn read_records(shared: &Shared, from: Seq, max: usize) -> Result<(Vec<u8>, Vec<usize>), LogError> {
    let from = from.max(1);
    let (offsets, start, end) = {
        let index = shared.index.read().unwrap_or_else(|p| p.into_inner());
        let have = index.last_seq();
        if from > have || max == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let first = (from - 1) as usize;
        let mut last = first.saturating_add(max).min(index.offsets.len());
        let start = index.offsets[first];
        let end_of = |last: usize| index.offsets.get(last).copied().unwrap_or(index.end);
        if end_of(last) - start > MAX_READ_BYTES {
            // Keep the read bounded; at least one event always fits.
            // Record k ends where k + 1 starts: count the records that end in bounds.
            let within = index.offsets[first + 1..last].partition_point(|o| *o - start <= MAX_READ_BYTES);
            last = first + within.max(1);
        }
        let offsets = index.offsets[first..last].iter().map(|o| (o - start) as usize).collect();
        (offsets, start, end_of(last))
    };
    let mut buf = vec![0u8; (end - start) as usize];
    shared.file.read_exact_at(&mut buf, start)?;
    Ok((buf, offsets))
}

fn read_range(shared: &Shared, from: Seq, max: usize) -> Result<Vec<Recorded>, LogError> {
    let (buf, offsets) = read_records(shared, from, max)?;
    let from = from.max(1);
    let mut out = Vec::with_capacity(offsets.len());
    for (i, offset) in offsets.into_iter().enumerate() {
        let seq = from + i as Seq;
        let (_, envelope, _) = parse_record(&buf[offset..], seq)?;
        out.push(Recorded { seq, envelope });
    }
    Ok(out)
}

/// [`read_range`] without decoding: each event's bytes where they lie in
/// the buffer read from the file.
fn read_range_encoded(shared: &Shared, from: Seq, max: usize) -> Result<EncodedEvents, LogError> {
    let (buf, offsets) = read_records(shared, from, max)?;
    let from = from.max(1);
    let mut spans = Vec::with_capacity(offsets.len());
    for (i, offset) in offsets.into_iter().enumerate() {
        let seq = from + i as Seq;
        let corrupt = |reason: String| LogError::Corrupt { seq, reason };
        let mut at = offset;
        take_u64(&buf, &mut at).map_err(corrupt)?;
        let len = take_u32(&buf, &mut at).map_err(corrupt)? as usize;
        take(&buf, &mut at, len).map_err(corrupt)?;
        spans.push((seq, at - len, at));
    }
    Ok(EncodedEvents::from_parts(buf, spans))
}

/// The aggregate's last sequence, or `None` if it has no events.
fn last_seq_of(shared: &Shared, aggregate: &AggregateId) -> Option<Seq> {
    let key = shared.keys.aggregate_id(aggregate);
    shared.index.read().unwrap_or_else(|p| p.into_inner()).aggregates.get(&key).copied()
}

fn check_aggregate(seq: Seq, envelope: &Envelope, aggregate: &AggregateId) -> Result<(), LogError> {
    if envelope.aggregate == *aggregate {
        return Ok(());
    }
    Err(LogError::Corrupt {
        seq,
        reason: format!("the index points {aggregate} at an event of {}", envelope.aggregate),
    })
}

#[async_trait]
impl EventLog for EmbeddedLog {
    #[tracing::instrument(
        name = "embedded_log.append",
        skip_all,
        fields(
            org = %request.org,
            command_id = %request.command_id,
            entries = request.entries.len(),
            events = request.entries.iter().map(|e| e.events.len()).sum::<usize>(),
        )
    )]
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError> {
        let result = async {
            let request = self.prepare(request)?;
            let queue = self.queue.as_ref().ok_or_else(|| LogError::Unavailable("the event log is closed".into()))?;
            let (reply, answer) = oneshot::channel();
            queue
                .send(Job { request, reply })
                .await
                .map_err(|_| LogError::Unavailable("the event log writer has stopped".into()))?;
            answer.await.map_err(|_| LogError::Unavailable("the event log writer has stopped".into()))?
        }
        .await;
        crate::trace_append(&result);
        result
    }

    async fn last_of(&self, aggregate: &AggregateId) -> Result<Option<Recorded>, LogError> {
        // Most lookups during an import are for new contacts: answer those
        // from memory without a trip to the blocking pool.
        let Some(seq) = last_seq_of(&self.shared, aggregate) else { return Ok(None) };
        let aggregate = aggregate.clone();
        self.blocking(move |shared| {
            let (_, envelope) = read_record(shared, seq)?;
            check_aggregate(seq, &envelope, &aggregate)?;
            Ok(Some(Recorded { seq, envelope }))
        })
        .await
    }

    async fn read_aggregate(&self, aggregate: &AggregateId, after: Seq) -> Result<Vec<Recorded>, LogError> {
        let Some(last) = last_seq_of(&self.shared, aggregate) else { return Ok(Vec::new()) };
        if last <= after {
            return Ok(Vec::new());
        }
        let aggregate = aggregate.clone();
        self.blocking(move |shared| {
            // Walk the per-aggregate chain backwards from the last event.
            let mut out = Vec::new();
            let mut seq = last;
            while seq > after {
                let (prev, envelope) = read_record(shared, seq)?;
                check_aggregate(seq, &envelope, &aggregate)?;
                if prev >= seq {
                    return Err(LogError::Corrupt {
                        seq,
                        reason: format!("previous sequence {prev} is not before it"),
                    });
                }
                out.push(Recorded { seq, envelope });
                seq = prev;
            }
            out.reverse();
            Ok(out)
        })
        .await
    }

    async fn read(&self, from: Seq, max: usize) -> Result<Vec<Recorded>, LogError> {
        if from > *self.shared.tail.borrow() || max == 0 {
            return Ok(Vec::new());
        }
        self.blocking(move |shared| read_range(shared, from, max)).await
    }

    async fn read_encoded(&self, from: Seq, max: usize) -> Result<EncodedEvents, LogError> {
        if from > *self.shared.tail.borrow() || max == 0 {
            return Ok(EncodedEvents::default());
        }
        self.blocking(move |shared| read_range_encoded(shared, from, max)).await
    }

    async fn last_seq(&self) -> Result<Seq, LogError> {
        Ok(*self.shared.tail.borrow())
    }

    fn subscribe(&self) -> watch::Receiver<Seq> {
        self.shared.tail.subscribe()
    }
}
