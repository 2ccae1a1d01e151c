//! Change-to-visible latency: with every saved segment defined, a contact
//! is moved into a watched segment (`country = "DE"`, Q1) and back out by
//! `UpsertContacts`, one change at a time, and each change is timed from
//! sending the command until
//!
//! - **readable**: `CountMembers` with the reply's sequence as
//!   `min_sequence` answers the new count (checked: one more, or one fewer);
//! - **on the feed**: a `WatchMembership` stream opened before the first
//!   change delivers that contact's entered / left change for the segment.
//!
//! **Must not depend on** the server's crates: gRPC only.

use crate::segments::load::Probe;
use crate::stats::percentile_ms;
use anyhow::{Context as _, bail, ensure};
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::commands_client::CommandsClient;
use segmentd_proto::v1::queries_client::QueriesClient;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// The value probes are moved to; the watched segment is `country = "DE"`.
pub const WATCHED_COUNTRY: &str = "DE";

#[derive(Clone, Debug, Default)]
pub struct Latencies {
    /// Command sent → reply (the write alone).
    pub acknowledged: Vec<Duration>,
    /// Command sent → the count with `min_sequence` shows the change.
    pub readable: Vec<Duration>,
    /// Command sent → the change arrives on the WatchMembership stream.
    pub on_feed: Vec<Duration>,
}

impl Latencies {
    pub fn samples(&self) -> usize {
        self.readable.len()
    }

    /// (p50, p99) in milliseconds of one of the series.
    pub fn p50_p99(series: &[Duration]) -> (f64, f64) {
        let mut v = series.to_vec();
        v.sort();
        (percentile_ms(&v, 50.0), percentile_ms(&v, 99.0))
    }
}

/// Moves each probe not already in the segment into it and back: two
/// samples per probe, after one untimed warm-up round trip.
pub async fn measure(
    commands: &mut CommandsClient<Channel>,
    queries: &mut QueriesClient<Channel>,
    segment_id: u64,
    probes: &[Probe],
    samples: usize,
) -> anyhow::Result<Latencies> {
    let segment = pb::SegmentRef { by: Some(pb::segment_ref::By::Id(segment_id)) };
    let stream = queries
        .watch_membership(pb::WatchMembershipRequest { segments: vec![segment.clone()], from_sequence: 0 })
        .await
        .context("WatchMembership")?
        .into_inner();
    let (tx, mut changes) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut stream = stream;
        while let Ok(Some(batch)) = stream.message().await {
            let arrived = Instant::now();
            for change in batch.changes {
                if tx.send((change, arrived)).is_err() {
                    return;
                }
            }
        }
    });
    let candidates: Vec<&Probe> = probes.iter().filter(|p| !p.country.eq_ignore_ascii_case(WATCHED_COUNTRY)).collect();
    ensure!(!candidates.is_empty(), "no contact outside country {WATCHED_COUNTRY} to move");
    let count_now = |min_sequence: u64, queries: &mut QueriesClient<Channel>| {
        let request =
            pb::CountMembersRequest { segment: Some(segment.clone()), min_sequence, at: String::new(), as_of: None };
        let mut queries = queries.clone();
        async move { Ok::<_, anyhow::Error>(queries.count_members(request).await?.into_inner().count) }
    };
    let mut count = count_now(0, queries).await?;
    let mut out = Latencies::default();
    let mut step = 0usize;
    // +1: the first round trip warms up and proves the stream is live.
    'outer: for probe in candidates.iter().cycle().take(samples.div_ceil(2) + 1) {
        for (country, entered) in [(WATCHED_COUNTRY, true), (probe.country.as_str(), false)] {
            let warm_up = step < 2;
            step += 1;
            let request = pb::UpsertContactsRequest {
                command_id: format!("segment-bench-latency-{step}"),
                contacts: vec![pb::ContactInput {
                    email: probe.email.clone(),
                    fields: HashMap::from([("country".to_owned(), country.to_owned())]),
                }],
            };
            let sent = Instant::now();
            let reply = commands.upsert_contacts(request).await.context("UpsertContacts")?.into_inner();
            let acknowledged = sent.elapsed();
            ensure!(reply.updated == 1, "moving {} to {country} updated nothing", probe.email);
            let new_count = count_now(reply.sequence, queries).await?;
            let readable = sent.elapsed();
            let expected = if entered { count + 1 } else { count - 1 };
            ensure!(
                new_count == expected,
                "after moving {} to {country}: count {new_count}, {expected} expected",
                probe.email
            );
            count = new_count;
            let on_feed = loop {
                let next = tokio::time::timeout(Duration::from_secs(30), changes.recv()).await;
                let Ok(Some((change, arrived))) = next else {
                    bail!("no membership change for {} within 30 s", probe.email)
                };
                if change.email == probe.email && change.entered == entered && change.sequence == reply.sequence {
                    break arrived.saturating_duration_since(sent);
                }
            };
            if warm_up {
                continue;
            }
            out.acknowledged.push(acknowledged);
            out.readable.push(readable);
            out.on_feed.push(on_feed);
            if out.samples() >= samples {
                break 'outer;
            }
        }
    }
    reader.abort();
    Ok(out)
}
