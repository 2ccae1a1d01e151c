//! The event log: the only source of truth. This crate owns the port every
//! backend implements ([`EventLog`]), the byte encoding of events
//! ([`codec`]), and the embedded backend that needs no server
//! ([`embedded`]).
//!
//! **Must not depend on** tonic, prost or sled: the log knows events and
//! sequences, not the API or the read models.

pub mod codec;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod embedded;

use async_trait::async_trait;
use segmentd_domain::{AggregateId, Envelope};
use tokio::sync::watch;

/// A log sequence: 1 for the first event, gapless in the embedded log.
pub type Seq = u64;

/// An event as the log holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub seq: Seq,
    pub envelope: Envelope,
}

/// Events as [`codec::encode`] writes them, in sequence order, in one
/// buffer: what [`EventLog::read_encoded`] answers.
#[derive(Clone, Debug, Default)]
pub struct EncodedEvents {
    bytes: Vec<u8>,
    /// Each event's sequence and where its bytes start and end in `bytes`.
    spans: Vec<(Seq, usize, usize)>,
}

impl EncodedEvents {
    /// Events whose bytes are `bytes[start..end]` for each `(seq, start, end)`.
    pub(crate) fn from_parts(bytes: Vec<u8>, spans: Vec<(Seq, usize, usize)>) -> Self {
        debug_assert!(spans.iter().all(|&(_, start, end)| start <= end && end <= bytes.len()));
        EncodedEvents { bytes, spans }
    }

    /// Appends `envelope`, encoded, as the event at `seq`.
    pub fn push(&mut self, seq: Seq, envelope: &Envelope) {
        let start = self.bytes.len();
        self.bytes = codec::encode_into(envelope, std::mem::take(&mut self.bytes));
        self.spans.push((seq, start, self.bytes.len()));
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The event at `i`: its sequence and its bytes.
    pub fn get(&self, i: usize) -> Option<(Seq, &[u8])> {
        self.spans.get(i).map(|&(seq, start, end)| (seq, &self.bytes[start..end]))
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (Seq, &[u8])> + '_ {
        self.spans.iter().map(|&(seq, start, end)| (seq, &self.bytes[start..end]))
    }
}

/// The same events with the same bytes, wherever they lie in the buffers.
impl PartialEq for EncodedEvents {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for EncodedEvents {}

/// The events one command appends to one aggregate, and the aggregate's last
/// sequence that the decision was made against (0: the aggregate has no events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendEntry {
    pub aggregate: AggregateId,
    pub expected_last_seq: Seq,
    pub events: Vec<Envelope>,
}

/// Everything one command appends. Idempotent on `(org, command_id)`: a retry
/// appends nothing and answers with the first attempt's sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRequest {
    pub org: String,
    pub command_id: String,
    pub entries: Vec<AppendEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// The events are durable; `last_seq` is the sequence of the last one.
    New { last_seq: Seq },
    /// The command id was seen before; nothing was appended.
    Duplicate { last_seq: Seq },
}

impl Appended {
    pub fn last_seq(self) -> Seq {
        match self {
            Appended::New { last_seq } | Appended::Duplicate { last_seq } => last_seq,
        }
    }
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended to the aggregate since the decision was made;
    /// nothing of the request was appended. Re-read and decide again.
    #[error("aggregate {aggregate} is at sequence {actual}, not the expected {expected}")]
    Conflict { aggregate: AggregateId, expected: Seq, actual: Seq },
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    #[error("event log I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("event log corrupt at sequence {seq}: {reason}")]
    Corrupt { seq: Seq, reason: String },
    #[error("the request is invalid for the log: {0}")]
    InvalidRequest(String),
}

/// The port every log backend implements and one conformance suite checks.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends all entries atomically where the backend can, or not at all on
    /// a conflict; returns only once the events are durable.
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError>;

    /// The aggregate's last event, if it has any.
    async fn last_of(&self, aggregate: &AggregateId) -> Result<Option<Recorded>, LogError>;

    /// The aggregate's events with a sequence above `after`, in order.
    async fn read_aggregate(&self, aggregate: &AggregateId, after: Seq) -> Result<Vec<Recorded>, LogError>;

    /// Up to `max` events with sequence `>= from`, in order.
    async fn read(&self, from: Seq, max: usize) -> Result<Vec<Recorded>, LogError>;

    /// [`EventLog::read`], each event as the bytes [`codec::encode`] makes:
    /// for a replay that decodes only what it needs (the read model takes
    /// a contact's stored form straight from these bytes instead of
    /// decoding and encoding it again). The bytes are not checked here; the
    /// caller decodes them. The default encodes what `read` answers; a log
    /// that keeps the bytes hands them over.
    async fn read_encoded(&self, from: Seq, max: usize) -> Result<EncodedEvents, LogError> {
        let mut out = EncodedEvents::default();
        for rec in self.read(from, max).await? {
            out.push(rec.seq, &rec.envelope);
        }
        Ok(out)
    }

    /// The sequence of the last event in the log (0 when empty).
    async fn last_seq(&self) -> Result<Seq, LogError>;

    /// Follows the tail: the receiver sees the last sequence whenever it moves.
    /// Copy the value out of `borrow()` at once: a `watch::Ref` held across
    /// an await blocks the backend from publishing the next sequence.
    fn subscribe(&self) -> watch::Receiver<Seq>;
}

/// Logs an append's outcome the same way for every backend: refusals and
/// conflicts are normal answers (debug/warn), failures are errors.
pub fn trace_append(result: &Result<Appended, AppendError>) {
    match result {
        Ok(Appended::New { last_seq }) => tracing::debug!(last_seq, "appended"),
        Ok(Appended::Duplicate { last_seq }) => tracing::debug!(last_seq, "duplicate command; nothing appended"),
        Err(AppendError::Conflict { aggregate, expected, actual }) => {
            tracing::debug!(%aggregate, expected, actual, "expected sequence conflict")
        }
        Err(AppendError::Log(e @ LogError::InvalidRequest(_))) => {
            tracing::warn!(error = e as &dyn std::error::Error, "append refused")
        }
        Err(AppendError::Log(e)) => tracing::error!(error = e as &dyn std::error::Error, "append failed"),
    }
}
