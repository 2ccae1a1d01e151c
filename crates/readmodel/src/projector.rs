//! The projector: follows the log from the read model's applied sequence and
//! applies events in order, in batches.

use crate::model::{ReadModel, ReadModelError};
use segmentd_log::{EventLog, LogError};
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
