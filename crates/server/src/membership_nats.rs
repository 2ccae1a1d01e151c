//! Publishes the membership feed on core NATS, from query nodes whose log is
//! NATS: each record of changes as JSON on `<prefix>.<org>.<segment id>`
//! (`seg.members.acme.7`), so that services can subscribe per org or per
//! segment without a gRPC stream.
//!
//! Core NATS is at most once and every query node publishes what its own
//! replica saw: subscribers that need every change, exactly, use
//! WatchMembership (which can resume from a sequence); the subject is for
//! reacting fast. A subscriber to several query nodes' publications can
//! drop repeats by (segment_id, email, sequence).

use segmentd_readmodel::{ChangeRecord, FeedError, ReadModel, Watch, WatchFilter};
use std::sync::Arc;
use tokio::sync::watch;

/// Changes per NATS message at most (a segment created over a million
/// contacts becomes many messages of this size).
const CHANGES_PER_MESSAGE: usize = 1000;

/// A watch of every org's changes from now on: create it before the
/// projector starts, so that nothing it projects is missed.
pub fn watch_all(model: &ReadModel) -> Watch {
    model
        .watch_membership(WatchFilter { org: None, segments: Default::default(), from: 0 })
        .expect("a watch from now on always starts")
}

/// Publishes `watch`'s records until `shutdown` or the feed closes.
pub async fn publish_membership(
    model: Arc<ReadModel>,
    mut watch: Watch,
    client: async_nats::Client,
    prefix: String,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            next = watch.next() => next,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match next {
            Ok(record) => {
                let subject = format!("{prefix}.{}.{}", record.org, record.segment);
                for payload in payloads(&record) {
                    if let Err(e) = client.publish(subject.clone(), payload.into()).await {
                        tracing::warn!(%subject, error = %e, "publishing membership changes failed");
                    }
                }
                // Publish promptly: a change is worth most while it is new.
                if let Err(e) = client.flush().await {
                    tracing::warn!(error = %e, "flushing membership changes to NATS failed");
                }
            }
            Err(FeedError::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "membership publisher fell behind; continuing from now");
                watch = watch_all(&model);
            }
        }
    }
}

/// The JSON messages of one record: keys written by hand (stable, like the
/// event JSON), at most [`CHANGES_PER_MESSAGE`] changes each.
fn payloads(record: &ChangeRecord) -> Vec<String> {
    let cause = match record.cause {
        segmentd_readmodel::Cause::ContactChanged => "contact_changed",
        segmentd_readmodel::Cause::SegmentDefined => "segment_defined",
        segmentd_readmodel::Cause::SegmentDeleted => "segment_deleted",
        segmentd_readmodel::Cause::TimePassed => "time_passed",
    };
    record
        .changes
        .chunks(CHANGES_PER_MESSAGE)
        .map(|chunk| {
            let changes: Vec<serde_json::Value> = chunk
                .iter()
                .map(|c| serde_json::json!({"email": c.contact.email(), "entered": c.entered, "sequence": c.seq}))
                .collect();
            serde_json::json!({
                "org": &*record.org,
                "segment_id": record.segment,
                "cause": cause,
                "at": record.at.to_string(),
                "changes": changes,
            })
            .to_string()
        })
        .collect()
}
