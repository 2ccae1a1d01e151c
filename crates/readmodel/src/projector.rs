//! The projector: follows the log from the read model's applied sequence and
//! applies events in order, in batches; or replays it up to a point
//! ([`project_until`]) for rebuilt and past states.

use crate::model::{ReadModel, ReadModelError};
use segmentd_domain::time::Timestamp;
use segmentd_log::{EventLog, LogError, Seq};
use std::sync::Arc;
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
    loop {
        let events = log.read(reached.seq + 1, REPLAY_BATCH).await?;
        if events.is_empty() {
            return Ok(reached);
        }
        let keep = events
            .iter()
            .position(|rec| match until {
                Until::Sequence(last) => rec.seq > last,
                Until::Time(t) => rec.envelope.time > t,
            })
            .unwrap_or(events.len());
        let (applied, rest) = events.split_at(keep);
        if let Some(last) = applied.last() {
            model.apply_bulk(applied)?;
            reached.seq = last.seq;
            reached.seq_time = Some(last.envelope.time);
            let latest = applied.iter().map(|r| r.envelope.time).max();
            reached.latest_time = reached.latest_time.max(latest);
        }
        if let Some(next) = rest.first() {
            reached.next_time = Some(next.envelope.time);
            return Ok(reached);
        }
    }
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
    while applied < last {
        let events = log.read(applied + 1, REPLAY_BATCH).await?;
        if events.is_empty() {
            break;
        }
        applied = model.apply_bulk(&events)?;
    }
    Ok(applied)
}
