//! Reading the stream: an aggregate's last event (one direct message
//! request), and ranges (one short-lived pull consumer fetched in batches,
//! never one request per message).
//!
//! Ranges have a known end, taken before reading (the stream's or the
//! subject's last sequence), so a read never waits on a timeout to learn it
//! is finished, and it does not chase events appended while it runs.
//!
//! **Must not depend on** tonic, prost or sled.

use crate::Inner;
use crate::errors::unavailable;
use crate::subject::aggregate_subject;
use async_nats::HeaderMap;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;
use futures::StreamExt;
use segmentd_domain::AggregateId;
use segmentd_log::{LogError, Recorded, Seq, codec};
use std::time::Duration;

/// Messages asked for per pull request.
const FETCH_BATCH: usize = 1000;
/// Pull requests in a row that may come back empty before a read that knows
/// more messages exist gives up (the consumer can lag its creation briefly).
const MAX_EMPTY_FETCHES: u32 = 50;

/// A stored message, before decoding.
pub(crate) struct RawEvent {
    pub(crate) seq: Seq,
    pub(crate) payload: Bytes,
    pub(crate) headers: Option<HeaderMap>,
}

impl RawEvent {
    pub(crate) fn decode(self) -> Result<Recorded, LogError> {
        let envelope =
            codec::decode(&self.payload).map_err(|e| LogError::Corrupt { seq: self.seq, reason: e.to_string() })?;
        Ok(Recorded { seq: self.seq, envelope })
    }
}

pub(crate) async fn stream_last_seq(inner: &Inner) -> Result<Seq, LogError> {
    inner.wait_connected().await?;
    let info = inner.stream.get_info().await.map_err(|e| unavailable("reading stream info", e))?;
    Ok(info.state.last_sequence)
}

/// The last message on `subject`, if any. Asks the stream leader (not a
/// possibly lagging replica): its answer decides conflicts.
pub(crate) async fn last_raw(inner: &Inner, subject: &str) -> Result<Option<RawEvent>, LogError> {
    inner.wait_connected().await?;
    match inner.stream.get_last_raw_message_by_subject(subject).await {
        Ok(msg) => Ok(Some(RawEvent { seq: msg.sequence, payload: msg.payload, headers: Some(msg.headers) })),
        Err(e) => match e.kind() {
            LastRawMessageErrorKind::NoMessageFound => Ok(None),
            LastRawMessageErrorKind::JetStream(js) if js.error_code() == ErrorCode::NO_MESSAGE_FOUND => Ok(None),
            _ => Err(unavailable(&format!("reading the last message of {subject}"), e)),
        },
    }
}

pub(crate) async fn last_of(inner: &Inner, aggregate: &AggregateId) -> Result<Option<Recorded>, LogError> {
    let subject = aggregate_subject(&inner.config.subject_prefix, aggregate)?;
    let Some(raw) = last_raw(inner, &subject).await? else { return Ok(None) };
    let rec = raw.decode()?;
    check_aggregate(&rec, aggregate)?;
    Ok(Some(rec))
}

pub(crate) async fn read_aggregate(
    inner: &Inner,
    aggregate: &AggregateId,
    after: Seq,
) -> Result<Vec<Recorded>, LogError> {
    let subject = aggregate_subject(&inner.config.subject_prefix, aggregate)?;
    // The last event bounds the read, and answers the common "nothing new"
    // case without creating a consumer.
    let Some(last) = last_raw(inner, &subject).await? else { return Ok(Vec::new()) };
    if last.seq <= after {
        return Ok(Vec::new());
    }
    let raws = scan(inner, &subject, after + 1, last.seq, usize::MAX).await?;
    let mut out = Vec::with_capacity(raws.len());
    for raw in raws {
        let rec = raw.decode()?;
        check_aggregate(&rec, aggregate)?;
        out.push(rec);
    }
    Ok(out)
}

pub(crate) async fn read(inner: &Inner, from: Seq, max: usize) -> Result<Vec<Recorded>, LogError> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let from = from.max(1);
    let last = stream_last_seq(inner).await?;
    inner.advance_tail(last);
    if from > last {
        return Ok(Vec::new());
    }
    let filter = inner.config.all_subjects();
    scan(inner, &filter, from, last, max).await?.into_iter().map(RawEvent::decode).collect()
}

/// The messages on `filter` with sequences in `from..=until`, at most `max`,
/// in order, through one ephemeral pull consumer.
pub(crate) async fn scan(
    inner: &Inner,
    filter: &str,
    from: Seq,
    until: Seq,
    max: usize,
) -> Result<Vec<RawEvent>, LogError> {
    if from > until || max == 0 {
        return Ok(Vec::new());
    }
    inner.wait_connected().await?;
    let consumer = inner
        .stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from },
            ack_policy: AckPolicy::None,
            filter_subject: filter.to_owned(),
            // Reads are short; if the delete below is lost the server drops
            // the consumer on its own soon after.
            inactive_threshold: Duration::from_secs(10),
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable("creating a read consumer", e))?;
    let name = consumer.cached_info().name.clone();
    let result = fetch_range(inner, &consumer, until, max).await;
    // Ephemeral consumers cost the server memory and timers; drop it now
    // rather than after the inactivity threshold, without making the reader
    // wait for it.
    let stream = inner.stream.clone();
    tokio::spawn(async move {
        if let Err(e) = stream.delete_consumer(&name).await {
            tracing::debug!(consumer = %name, error = %e, "could not delete a read consumer; it will expire");
        }
    });
    result
}

async fn fetch_range(
    inner: &Inner,
    consumer: &PullConsumer,
    until: Seq,
    max: usize,
) -> Result<Vec<RawEvent>, LogError> {
    let bound = usize::try_from(until).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(max.min(bound).min(FETCH_BATCH));
    let mut empty = 0;
    loop {
        let want = (max - out.len()).min(FETCH_BATCH);
        let mut batch =
            consumer.fetch().max_messages(want).messages().await.map_err(|e| unavailable("requesting messages", e))?;
        let mut got = 0;
        while let Some(msg) = tokio::time::timeout(inner.config.request_timeout, batch.next())
            .await
            .map_err(|_| LogError::Unavailable("timed out waiting for stream messages".into()))?
        {
            let msg = msg.map_err(|e| unavailable("receiving stream messages", e))?;
            let seq = msg.info().map_err(|e| unavailable("reading a message's sequence", e))?.stream_sequence;
            got += 1;
            let message = msg.message;
            out.push(RawEvent { seq, payload: message.payload, headers: message.headers });
            if seq >= until || out.len() >= max {
                return Ok(out);
            }
        }
        if got == 0 {
            empty += 1;
            if empty > MAX_EMPTY_FETCHES {
                return Err(LogError::Unavailable(format!(
                    "the stream stopped delivering before sequence {until} (got {} messages)",
                    out.len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(2 * u64::from(empty))).await;
        } else {
            empty = 0;
        }
    }
}

fn check_aggregate(rec: &Recorded, aggregate: &AggregateId) -> Result<(), LogError> {
    if rec.envelope.aggregate != *aggregate {
        return Err(LogError::Corrupt {
            seq: rec.seq,
            reason: format!("the event on {aggregate}'s subject belongs to {}", rec.envelope.aggregate),
        });
    }
    Ok(())
}
