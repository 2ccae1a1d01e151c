//! Moves relative memberships with the clock: a periodic tick on the system
//! clock, and at once whenever a pinned clock is moved.

use crate::model::ReadModel;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Calls [`ReadModel::advance_clock`] every `period` (and whenever a pinned
/// clock moves) until `shutdown` turns true. A tick costs about nothing for
/// segments without relative conditions, and for the others work in
/// proportion to the contacts whose dates a bound crossed since the last tick.
pub async fn run_membership_clock(model: Arc<ReadModel>, period: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut moves = model.clock().moves();
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let moved = async {
            match moves.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            alive = moved => {
                if !alive {
                    moves = None;
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        model.advance_clock();
    }
}
