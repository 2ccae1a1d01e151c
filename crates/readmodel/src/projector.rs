//! The projector: follows the log from the read model's applied sequence and
//! applies events in order, in batches; or replays it up to a point
//! ([`project_until`]) for rebuilt and past states.

use crate::model::{ReadModel, ReadModelError};
use crate::stored::StoredContact;
use segmentd_domain::AggregateKind;
use segmentd_domain::time::Timestamp;
use segmentd_log::{EncodedEvents, EventLog, LogError, Recorded, Seq, codec};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::watch;

/// Most events read and applied as one atomic batch.
const BATCH: usize = 2048;
/// Back-off bounds while the log is unavailable.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    #[error("sequence {wanted} is beyond the log's last sequence {last}")]
    BeyondLog { wanted: Seq, last: Seq },
    #[error("a replay up to a point needs an empty read model; this one is at sequence {applied}")]
    NotEmpty { applied: Seq },
}

/// Applies the log to `model` until `shutdown` turns true. Returns an error
/// only when it cannot go on (the caller decides whether to restart it).
#[tracing::instrument(skip_all, err)]
pub async fn run_projector(
    log: Arc<dyn EventLog>,
    model: Arc<ReadModel>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ProjectorError> {
    let mut tail = log.subscribe();
    let mut outage = Duration::ZERO;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let from = model.applied_seq() + 1;
        let events = match log.read(from, BATCH).await {
            Ok(events) => {
                outage = Duration::ZERO;
                events
            }
            // The log's server is away (NATS restarting, a network blip):
            // keep the read model as it is and try again, backing off.
            Err(LogError::Unavailable(why)) => {
                outage = (outage * 2).clamp(RETRY_MIN, RETRY_MAX);
                tracing::warn!(%why, retry_in = ?outage, "event log unavailable; projector waiting");
                tokio::select! {
                    _ = tokio::time::sleep(outage) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if events.is_empty() {
            // Mark the current tail as seen before waiting, so an append that
            // lands between the read and the wait still wakes us.
            let seen = *tail.borrow_and_update();
            if seen >= from {
                continue;
            }
            tokio::select! {
                changed = tail.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let applied = model.apply(&events)?;
        tracing::debug!(applied, events = events.len(), "projected");
    }
}

/// How far a replay of the log goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// Up to and including this sequence, which the log must already hold.
    Sequence(Seq),
    /// The longest prefix of the log whose events were all recorded at or
    /// before this instant: the first event recorded later ends it, even if
    /// events after that one carry earlier times (writers' clocks need not
    /// follow log order, and a state must be a prefix of the log).
    Time(Timestamp),
}

/// Where a replay up to a point stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reached {
    /// The last sequence applied; 0 when the point is before the first event.
    pub seq: Seq,
    /// When the event at `seq` was recorded.
    pub seq_time: Option<Timestamp>,
    /// The latest recording time among the applied events.
    pub latest_time: Option<Timestamp>,
    /// When the event after `seq` was recorded, if the log held one.
    pub next_time: Option<Timestamp>,
}

/// Events read and applied at once by a replay up to a point; larger than
/// the follower's batch because nothing waits on a replay's progress.
const REPLAY_BATCH: usize = 8192;

/// Replays the log from its first event into `model`, which must be empty,
/// up to `until`. A sequence beyond the log's last one is refused
/// ([`ProjectorError::BeyondLog`]) rather than waited for.
///
/// The replay is a bulk one ([`ReadModel::apply_bulk`]): the index and the
/// member sets are built once at the end, which is why the model must not
/// be read before this returns.
#[tracing::instrument(skip(log, model), err)]
pub async fn project_until(log: &dyn EventLog, model: &ReadModel, until: Until) -> Result<Reached, ProjectorError> {
    if model.applied_seq() != 0 {
        return Err(ProjectorError::NotEmpty { applied: model.applied_seq() });
    }
    if let Until::Sequence(wanted) = until {
        let last = log.last_seq().await?;
        if wanted > last {
            return Err(ProjectorError::BeyondLog { wanted, last });
        }
    }
    let replayed = replay(log, model, until).await;
    // Also after a failure: whatever was applied is answered consistently.
    model.finish_bulk();
    replayed
}

async fn replay(log: &dyn EventLog, model: &ReadModel, until: Until) -> Result<Reached, ProjectorError> {
    let mut reached = Reached { seq: 0, seq_time: None, latest_time: None, next_time: None };
    let mut reading = Some(ReadAhead::start(log, 1).await);
    // Until a batch holds the first event not to apply, or the log ends.
    while let Some(read) = reading.take() {
        let encoded = read.finish().await?;
        let events = decode(&encoded)?;
        let Some(newest) = events.last() else { break };
        let keep = events
            .iter()
            .position(|rec| match until {
                Until::Sequence(last) => rec.seq() > last,
                Until::Time(t) => rec.time() > t,
            })
            .unwrap_or(events.len());
        let (applied, rest) = events.split_at(keep);
        if rest.is_empty() {
            // The next batch is read while this one is applied.
            reading = Some(ReadAhead::start(log, newest.seq() + 1).await);
        }
        if let Some(last) = applied.last() {
            model.apply_bulk(applied)?;
            reached.seq = last.seq();
            reached.seq_time = Some(last.time());
            let latest = applied.iter().map(Replayed::time).max();
            reached.latest_time = reached.latest_time.max(latest);
        }
        if let Some(next) = rest.first() {
            reached.next_time = Some(next.time());
        }
    }
    Ok(reached)
}

/// A read of the log started before its events are needed: the embedded
/// log reads on a blocking thread, so the next batch is read from the file
/// while this one is applied. Other logs at least have the request out.
struct ReadAhead<'a> {
    pending: Pin<Box<dyn Future<Output = Result<EncodedEvents, LogError>> + Send + 'a>>,
    /// The answer, when the first poll already had it.
    ready: Option<Result<EncodedEvents, LogError>>,
}

impl<'a> ReadAhead<'a> {
    async fn start(log: &'a dyn EventLog, from: Seq) -> ReadAhead<'a> {
        let mut pending = log.read_encoded(from, REPLAY_BATCH);
        let ready = std::future::poll_fn(|cx| Poll::Ready(pending.as_mut().poll(cx))).await;
        ReadAhead { pending, ready: if let Poll::Ready(r) = ready { Some(r) } else { None } }
    }

    async fn finish(self) -> Result<EncodedEvents, LogError> {
        match self.ready {
            Some(r) => r,
            None => self.pending.await,
        }
    }
}

/// An event of a bulk replay: decoded, or, for a contact's new state, taken
/// as stored straight from the event's bytes.
pub(crate) enum Replayed<'a> {
    /// Boxed: most events of a replay are the other kind, a tenth its size.
    Event(Box<Recorded>),
    Contact {
        seq: Seq,
        time: Timestamp,
        org: &'a str,
        contact: StoredContact,
    },
}

impl Replayed<'_> {
    pub(crate) fn seq(&self) -> Seq {
        match self {
            Replayed::Event(rec) => rec.seq,
            Replayed::Contact { seq, .. } => *seq,
        }
    }

    pub(crate) fn time(&self) -> Timestamp {
        match self {
            Replayed::Event(rec) => rec.envelope.time,
            Replayed::Contact { time, .. } => *time,
        }
    }
}

/// Events from this many on are decoded on two threads, half each.
const DECODE_SPLIT_FROM: usize = 1024;

/// Decodes a batch read for a bulk replay. A contact's new state
/// (`ContactCreated`, `ContactUpdated`) is the contact's bytes at the front
/// of the event's payload, exactly its stored form: it is checked and
/// taken as it is, instead of decoded into a `Contact` (a dozen
/// allocations) and encoded again. Anything else, or anything that does not
/// check, is decoded in full, which also reports a damaged event as
/// `read` would.
fn decode(encoded: &EncodedEvents) -> Result<Vec<Replayed<'_>>, LogError> {
    let one = |i: usize| {
        let (seq, bytes) = encoded.get(i).expect("i < len");
        match as_stored(bytes) {
            Some((time, org, contact)) => Ok(Replayed::Contact { seq, time, org, contact }),
            None => codec::decode(bytes)
                .map(|envelope| Replayed::Event(Box::new(Recorded { seq, envelope })))
                .map_err(|e| LogError::Corrupt { seq, reason: e.to_string() }),
        }
    };
    let len = encoded.len();
    if len < DECODE_SPLIT_FROM {
        return (0..len).map(one).collect();
    }
    let half = len / 2;
    std::thread::scope(|s| {
        let later = s.spawn(|| (half..len).map(one).collect::<Result<Vec<_>, _>>());
        let mut events = (0..half).map(one).collect::<Result<Vec<_>, _>>();
        let later = later.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        if let Ok(events) = &mut events {
            events.extend(later?);
        }
        events
    })
}

/// A contact event's time, org and contact as stored, when the bytes are
/// one that decodes (in full) to exactly that.
fn as_stored(bytes: &[u8]) -> Option<(Timestamp, &str, StoredContact)> {
    let (code, schema, header, payload) = codec::decode_header(bytes).ok()?;
    if schema != codec::SCHEMA_V1 || AggregateKind::parse(header.aggregate_kind) != Some(AggregateKind::Contact) {
        return None;
    }
    let (contact, rest) = StoredContact::from_prefix(payload)?;
    let whole = match code {
        codec::CONTACT_CREATED => rest.is_empty(),
        // `changed`, the names of the fields that changed.
        codec::CONTACT_UPDATED => postcard::take_from_bytes::<Vec<&str>>(rest).is_ok_and(|(_, rest)| rest.is_empty()),
        _ => false,
    };
    whole.then(|| (Timestamp::from_millis(header.time_ms), header.org, contact))
}

/// A model this far behind the log at start catches up in bulk
/// ([`catch_up`]) rather than event by event.
pub const CATCH_UP_MIN: Seq = 100_000;

/// Brings a model that nobody reads yet up to the log's end in bulk, when
/// it is at least `min_behind` events behind ([`CATCH_UP_MIN`] in `serve`) (a first start over a long
/// log, a model dropped for a rebuild, a node back after long downtime);
/// the index and member sets are then built once instead of kept per event.
/// Every batch is durable with its sequence, as `run_projector` writes
/// them, so a crash during catch-up resumes from the last one. Returns the
/// sequence applied.
#[tracing::instrument(skip_all, err)]
pub async fn catch_up(log: &dyn EventLog, model: &ReadModel, min_behind: Seq) -> Result<Seq, ProjectorError> {
    let last = log.last_seq().await?;
    let behind = last.saturating_sub(model.applied_seq());
    if behind == 0 || behind < min_behind {
        return Ok(model.applied_seq());
    }
    tracing::info!(from = model.applied_seq(), to = last, "read model far behind the log: catching up in bulk");
    let caught_up = bulk_until(log, model, last).await;
    model.finish_bulk();
    caught_up
}

async fn bulk_until(log: &dyn EventLog, model: &ReadModel, last: Seq) -> Result<Seq, ProjectorError> {
    let mut applied = model.applied_seq();
    let mut reading = ReadAhead::start(log, applied + 1).await;
    while applied < last {
        let encoded = reading.finish().await?;
        let events = decode(&encoded)?;
        let Some(newest) = events.last() else { break };
        reading = ReadAhead::start(log, newest.seq() + 1).await;
        applied = model.apply_bulk(&events)?;
    }
    Ok(applied)
}
