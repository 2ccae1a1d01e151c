//! Follows the stream's tail for [`EventLog::subscribe`]: an ordered push
//! consumer on `<prefix>.>` that delivers headers only (the sequence is all
//! it needs), so other processes' appends wake this process's waiters with
//! push latency rather than a polling interval. Appends made through this
//! `NatsLog` move the tail themselves, before they return.
//!
//! The consumer is ordered: async-nats recreates it after a gap, a missed
//! heartbeat or a reconnect, starting after the last sequence it saw. If its
//! stream still ends or fails, this task starts a new one after a pause, and
//! re-reads the stream's last sequence so that a tail moved during the
//! outage is seen at once.
//!
//! [`EventLog::subscribe`]: segmentd_log::EventLog::subscribe
//!
//! **Must not depend on** tonic, prost or sled.

use crate::Inner;
use async_nats::jetstream::consumer::{DeliverPolicy, push};
use futures::StreamExt;
use segmentd_log::Seq;
use std::sync::Weak;
use std::time::Duration;

const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Runs until the log is dropped (the log also aborts it).
pub(crate) async fn follow(inner: Weak<Inner>, start_after: Seq) {
    let mut pause = Duration::from_millis(50);
    let mut after = start_after;
    loop {
        let Some(log) = inner.upgrade() else { return };
        match follow_once(&log, &mut after).await {
            Ok(()) => tracing::debug!("tail consumer ended; starting another"),
            Err(e) => tracing::debug!(error = %e, "tail consumer failed; starting another"),
        }
        drop(log);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
        if let Some(log) = inner.upgrade()
            && let Ok(info) = log.stream.get_info().await
        {
            log.advance_tail(info.state.last_sequence);
            after = after.max(info.state.last_sequence);
            pause = Duration::from_millis(50);
        }
    }
}

async fn follow_once(log: &Inner, after: &mut Seq) -> Result<(), String> {
    log.wait_connected().await.map_err(|e| e.to_string())?;
    let consumer = log
        .stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: log.client.new_inbox(),
            filter_subject: log.config.all_subjects(),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: *after + 1 },
            headers_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| e.to_string())?;
        let seq = msg.info().map_err(|e| e.to_string())?.stream_sequence;
        *after = (*after).max(seq);
        log.advance_tail(seq);
    }
    Ok(())
}
