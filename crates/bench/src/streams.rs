//! The benchmark's streams on the server: names that cannot collide with
//! another run or with production (`BENCH_<run>_…`, subjects `bench.<run>.…`),
//! creation of the raw-publish streams with the event log's own settings,
//! counting, sampling what the command path stored, and deletion.
//!
//! **Must not depend on** segmentd-log-nats' internals: the event stream is
//! created by the command node itself; here it is only read, through the
//! ordinary JetStream API.

use anyhow::{Context as _, bail};
use async_nats::HeaderMap;
use async_nats::jetstream::Context;
use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A stream name and the subject prefix of its messages.
#[derive(Clone, Debug)]
pub struct StreamName {
    pub stream: String,
    pub prefix: String,
}

/// Names for one run of the benchmark process.
#[derive(Clone, Debug)]
pub struct RunNames {
    pub run: String,
}

impl RunNames {
    /// A run id from the clock and the process id: distinct per run.
    pub fn new() -> Self {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        RunNames { run: format!("{ms:x}{:x}", std::process::id()) }
    }

    /// `what` is a short tag: `cmd`, `rawp`, `rawc`… `rep` the repetition.
    pub fn stream(&self, what: &str, rep: usize) -> StreamName {
        StreamName {
            stream: format!("BENCH_{}_{}_{rep}", self.run, what.to_ascii_uppercase()),
            prefix: format!("bench.{}.{what}{rep}", self.run),
        }
    }
}

impl Default for RunNames {
    fn default() -> Self {
        Self::new()
    }
}

/// Creates a stream shaped like segmentd's event stream (file storage,
/// limits retention without limits, the same duplicate window, delete and
/// purge denied), so raw publishes pay what appends pay on the server.
pub async fn create_like_event_log(js: &Context, name: &StreamName) -> anyhow::Result<()> {
    js.create_stream(Config {
        name: name.stream.clone(),
        description: Some("segmentd-bench: raw publishes; safe to delete".into()),
        subjects: vec![format!("{}.>", name.prefix)],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_age: Duration::ZERO,
        discard: DiscardPolicy::Old,
        num_replicas: 1,
        duplicate_window: Duration::from_secs(120),
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating stream {}", name.stream))?;
    Ok(())
}

/// Turns on `allow_direct` (direct gets) on an existing stream.
pub async fn allow_direct(js: &Context, stream: &str) -> anyhow::Result<()> {
    let s = js.get_stream(stream).await.with_context(|| format!("looking up stream {stream}"))?;
    let mut config = s.cached_info().config.clone();
    config.allow_direct = true;
    js.update_stream(config).await.with_context(|| format!("allowing direct gets on {stream}"))?;
    Ok(())
}

/// Messages stored in the stream.
pub async fn message_count(js: &Context, stream: &str) -> anyhow::Result<u64> {
    let s = js.get_stream(stream).await.with_context(|| format!("looking up stream {stream}"))?;
    Ok(s.get_info().await.with_context(|| format!("reading stream {stream}"))?.state.messages)
}

/// Deletes a stream (deleting a stream is allowed even with deny_delete,
/// which only protects single messages).
pub async fn delete(js: &Context, stream: &str) -> anyhow::Result<()> {
    js.delete_stream(stream).await.with_context(|| format!("deleting stream {stream}"))?;
    Ok(())
}

/// What the first messages of the command path's stream look like.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The stored payloads: encoded `ContactCreated` envelopes.
    pub payloads: Vec<Bytes>,
    pub payload_mean: f64,
    pub payload_min: usize,
    pub payload_max: usize,
    /// NATS headers as they travel (`NATS/1.0` line, `Name: value` lines).
    pub header_mean: f64,
    /// Subject length minus the stream's prefix (`.default.contact.<hex>`).
    pub subject_suffix_mean: f64,
}

/// Reads the first `max` messages of `name` and checks that every one is a
/// `ContactCreated` event.
pub async fn sample(js: &Context, name: &StreamName, max: u64) -> anyhow::Result<Sample> {
    let stream = js.get_stream(&name.stream).await.with_context(|| format!("looking up stream {}", name.stream))?;
    let messages: Vec<_> = futures::stream::iter(1..=max)
        .map(|seq| {
            let stream = &stream;
            async move { stream.get_raw_message(seq).await.with_context(|| format!("reading message {seq}")) }
        })
        .buffered(64)
        .try_collect()
        .await?;
    if messages.is_empty() {
        bail!("stream {} holds no messages to sample", name.stream);
    }
    let n = messages.len() as f64;
    let mut payloads = Vec::with_capacity(messages.len());
    let (mut header_bytes, mut suffix_bytes) = (0usize, 0usize);
    for m in messages {
        let (code, ..) = segmentd_log::codec::decode_header(&m.payload)
            .with_context(|| format!("message {} is not a segmentd event", m.sequence))?;
        if code != segmentd_log::codec::CONTACT_CREATED {
            bail!("message {} has event type code {code}, not ContactCreated", m.sequence);
        }
        header_bytes += header_wire_len(&m.headers);
        suffix_bytes += m.subject.len().saturating_sub(name.prefix.len());
        payloads.push(m.payload);
    }
    let payload_min = payloads.iter().map(Bytes::len).min().unwrap_or(0);
    let payload_max = payloads.iter().map(Bytes::len).max().unwrap_or(0);
    let payload_mean = payloads.iter().map(Bytes::len).sum::<usize>() as f64 / n;
    Ok(Sample {
        payloads,
        payload_mean,
        payload_min,
        payload_max,
        header_mean: header_bytes as f64 / n,
        subject_suffix_mean: suffix_bytes as f64 / n,
    })
}

/// Bytes of a header block on the wire: `NATS/1.0\r\n`, one
/// `Name: value\r\n` per value, and a closing `\r\n`.
pub fn header_wire_len(headers: &HeaderMap) -> usize {
    let mut len = "NATS/1.0\r\n\r\n".len();
    for (name, values) in headers.iter() {
        for v in values {
            len += AsRef::<str>::as_ref(name).len() + 2 + v.as_str().len() + 2;
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_distinct_per_measurement() {
        let names = RunNames { run: "abc".into() };
        let a = names.stream("cmd", 0);
        let b = names.stream("rawp", 0);
        assert_eq!(a.stream, "BENCH_abc_CMD_0");
        assert_eq!(a.prefix, "bench.abc.cmd0");
        assert_ne!(a.stream, b.stream);
        assert_ne!(a.prefix, names.stream("cmd", 1).prefix);
    }

    #[test]
    fn header_length_counts_the_wire_form() {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", "x");
        assert_eq!(header_wire_len(&h), 12 + "Nats-Msg-Id: x\r\n".len());
    }
}
