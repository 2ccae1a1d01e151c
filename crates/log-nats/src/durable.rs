//! Durable pull consumers with explicit acks, for projectors: each read
//! model replica follows the log through its own named consumer, which the
//! server keeps across restarts (so its lag and redeliveries are visible in
//! `nats consumer info`), and resumes from the sequence its read model has
//! applied.
//!
//! The read model's stored sequence is the truth, not the consumer's ack
//! floor: acks travel separately from the read model's atomic batch and may
//! be lost in a crash, and a read model may lose its unflushed tail. So
//! [`open`] keeps an existing consumer only when it stands exactly where the
//! read model does (everything up to `from - 1` delivered and acknowledged,
//! nothing outstanding), and otherwise recreates it at `from`. Acks then only
//! tell the server what to redeliver; a projector that skips sequences it has
//! applied is never harmed by one.
//!
//! Delivery is in stream order: redeliveries of what was already handed out
//! are skipped (and acknowledged), and a gap — a message lost in flight
//! while a later one arrived — is an error, because the stream has no gaps
//! (nothing can be deleted from it), and applying past a gap would break the
//! read model's order. The caller reopens from its applied sequence + 1.
//!
//! **Must not depend on** tonic, prost or sled. One process per consumer
//! name: two replicas sharing a name would split its messages between them.

use crate::Inner;
use crate::errors::unavailable;
use async_nats::jetstream;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::ConsumerErrorKind;
use futures::StreamExt;
use futures::stream::BoxStream;
use segmentd_log::{LogError, Recorded, Seq, codec};
use std::time::Duration;

/// How long the server waits for an ack before redelivering.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Unacknowledged messages the server hands out before it waits for acks.
const MAX_ACK_PENDING: i64 = 10_000;

/// A projector's ordered view of the log through a durable consumer.
pub struct DurableFollower {
    name: String,
    messages: pull::Stream,
    /// The last sequence handed out; the next must be `last + 1`.
    last: Seq,
    /// Set after a gap: the order is broken until the follower is reopened.
    broken: Option<String>,
}

/// One event handed to a projector. Acknowledge it once it is applied.
pub struct Delivery {
    pub record: Recorded,
    message: jetstream::Message,
}

impl Delivery {
    /// Tells the server the event is applied (fire and forget: a lost ack
    /// only causes a redelivery, which the follower skips).
    pub async fn ack(&self) -> Result<(), LogError> {
        self.message.ack().await.map_err(|e| unavailable("acknowledging a delivery", e))
    }
}

pub(crate) async fn open(inner: &Inner, name: &str, from: Seq) -> Result<DurableFollower, LogError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(LogError::InvalidRequest(format!(
            "durable consumer name {name:?} must be letters, digits, '-' or '_'"
        )));
    }
    inner.wait_connected().await?;
    let from = from.max(1);
    let filter = inner.config.all_subjects();
    let want = pull::Config {
        durable_name: Some(name.to_owned()),
        description: Some("segmentd projector".into()),
        deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from },
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        filter_subject: filter.clone(),
        num_replicas: 0,
        ..Default::default()
    };
    let consumer = match inner.stream.consumer_info(name).await {
        Ok(info) => {
            let at = |seq: u64| seq + 1 == from;
            let fits = info.config.ack_policy == AckPolicy::Explicit
                && info.config.filter_subject == filter
                && info.config.deliver_subject.is_none()
                && at(info.delivered.stream_sequence)
                && at(info.ack_floor.stream_sequence)
                && info.num_ack_pending == 0;
            if fits {
                tracing::info!(consumer = name, from, "resuming the durable consumer");
                inner.stream.get_consumer(name).await.map_err(|e| unavailable("opening the durable consumer", e))?
            } else {
                tracing::info!(
                    consumer = name,
                    from,
                    delivered = info.delivered.stream_sequence,
                    ack_floor = info.ack_floor.stream_sequence,
                    pending_acks = info.num_ack_pending,
                    "the durable consumer is not where the read model is; recreating it"
                );
                delete(inner, name).await?;
                create(inner, want).await?
            }
        }
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => create(inner, want).await?,
        Err(e) => return Err(unavailable("looking up the durable consumer", e)),
    };
    let messages = consumer.messages().await.map_err(|e| unavailable("starting the durable consumer", e))?;
    Ok(DurableFollower { name: name.to_owned(), messages, last: from - 1, broken: None })
}

async fn create(inner: &Inner, config: pull::Config) -> Result<PullConsumer, LogError> {
    inner.stream.create_consumer(config).await.map_err(|e| unavailable("creating the durable consumer", e))
}

pub(crate) async fn delete(inner: &Inner, name: &str) -> Result<(), LogError> {
    inner.wait_connected().await?;
    match inner.stream.delete_consumer(name).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind(), ConsumerErrorKind::JetStream(js) if js.error_code() == ErrorCode::CONSUMER_NOT_FOUND) => {
            Ok(())
        }
        Err(e) => Err(unavailable(&format!("deleting durable consumer {name}"), e)),
    }
}

impl DurableFollower {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last sequence handed out (the starting point − 1 before any).
    pub fn position(&self) -> Seq {
        self.last
    }

    /// Waits for the next event in log order. An `Unavailable` error from a
    /// connection hiccup can be followed by more calls; after a gap every
    /// call fails until the follower is reopened from the read model's
    /// applied sequence + 1.
    pub async fn next(&mut self) -> Result<Delivery, LogError> {
        loop {
            if let Some(why) = &self.broken {
                return Err(LogError::Unavailable(why.clone()));
            }
            let Some(item) = self.messages.next().await else {
                return Err(LogError::Unavailable(format!("durable consumer {} stopped", self.name)));
            };
            let message = item.map_err(|e| unavailable(&format!("durable consumer {}", self.name), e))?;
            let seq = message.info().map_err(|e| unavailable("reading a delivery's sequence", e))?.stream_sequence;
            if seq <= self.last {
                // Redelivered after it was handed out: the projector has it.
                let _ = message.ack().await;
                continue;
            }
            if seq != self.last + 1 {
                let why = format!(
                    "durable consumer {} skipped from sequence {} to {seq}; reopen it from the read model's sequence",
                    self.name,
                    self.last + 1
                );
                self.broken = Some(why.clone());
                return Err(LogError::Unavailable(why));
            }
            let envelope =
                codec::decode(&message.payload).map_err(|e| LogError::Corrupt { seq, reason: e.to_string() })?;
            self.last = seq;
            return Ok(Delivery { record: Recorded { seq, envelope }, message });
        }
    }

    /// The same as a `Stream` (boxed, so it is `Unpin`), for
    /// `while let Some(d) = s.next().await`. It never ends by itself.
    pub fn into_stream(self) -> BoxStream<'static, Result<Delivery, LogError>> {
        futures::stream::unfold(self, |mut follower| async move {
            let item = follower.next().await;
            Some((item, follower))
        })
        .boxed()
    }
}
