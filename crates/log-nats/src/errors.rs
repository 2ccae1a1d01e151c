//! What async-nats failures mean to segmentd: which publish failures are a
//! conflict, which are worth retrying, and how everything else becomes a
//! [`LogError`]. Kept in one place so that "only `WrongLastSequence` is a
//! conflict" is decided exactly once.
//!
//! **Must not depend on** tonic, prost or sled: the gRPC layer maps
//! `LogError` to status codes, not this crate.

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use segmentd_log::LogError;
use std::error::Error as _;

/// What to do after a failed publish.
#[derive(Debug)]
pub(crate) enum PublishFailure {
    /// `Nats-Expected-Last-Subject-Sequence` did not hold (JetStream 10071).
    WrongLastSequence,
    /// Transient: publishing again with the same `Nats-Msg-Id` is safe.
    Retryable(String),
    /// The request can never succeed (e.g. larger than the server allows).
    Invalid(String),
    /// Anything else: not a conflict, not worth retrying here.
    Fatal(String),
}

pub(crate) fn classify_publish(err: &PublishError) -> PublishFailure {
    match err.kind() {
        PublishErrorKind::WrongLastSequence => PublishFailure::WrongLastSequence,
        // A lost ack or a dropped connection: the message may or may not be
        // stored, and a retry with the same message id finds out.
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
            PublishFailure::Retryable(err.to_string())
        }
        // "No responders": JetStream is not (yet) listening, e.g. while a
        // restarted server recovers its streams or a leader is elected.
        PublishErrorKind::StreamNotFound => PublishFailure::Retryable(err.to_string()),
        PublishErrorKind::MaxPayloadExceeded => PublishFailure::Invalid(err.to_string()),
        PublishErrorKind::WrongLastMessageId => PublishFailure::Fatal(err.to_string()),
        PublishErrorKind::Other => match jetstream_error(err) {
            Some(js) => classify_jetstream(js, err.to_string()),
            // No server answer behind it (a client-side hiccup or an
            // unreadable ack): retrying is safe and cheap.
            None => PublishFailure::Retryable(err.to_string()),
        },
    }
}

/// Server-side refusals reported as `Other`. Newer clustered servers answer
/// expected-sequence publishes with "temporarily unavailable" or "in
/// process" while they catch up; those pass, the rest do not.
fn classify_jetstream(js: &async_nats::jetstream::Error, text: String) -> PublishFailure {
    let code = js.error_code();
    let lower = text.to_ascii_lowercase();
    if code == ErrorCode::STREAM_WRONG_LAST_SEQUENCE {
        PublishFailure::WrongLastSequence
    } else if code == ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM {
        PublishFailure::Invalid(text)
    } else if code == ErrorCode::CLUSTER_NOT_AVAILABLE
        || lower.contains("temporarily unavailable")
        || lower.contains("in process")
        || lower.contains("timeout")
        || lower.contains("timed out")
        || lower.contains("no suitable peers")
        || lower.contains("not leader")
    {
        PublishFailure::Retryable(text)
    } else {
        PublishFailure::Fatal(text)
    }
}

fn jetstream_error(err: &PublishError) -> Option<&async_nats::jetstream::Error> {
    let mut source = err.source();
    while let Some(s) = source {
        if let Some(js) = s.downcast_ref::<async_nats::jetstream::Error>() {
            return Some(js);
        }
        source = s.source();
    }
    None
}

/// Any failure to talk to the server, as the port reports it.
pub(crate) fn unavailable(what: &str, err: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(format!("{what}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wrong_last_sequence_is_a_conflict() {
        let wrong = PublishError::new(PublishErrorKind::WrongLastSequence);
        assert!(matches!(classify_publish(&wrong), PublishFailure::WrongLastSequence));
        for kind in [PublishErrorKind::TimedOut, PublishErrorKind::BrokenPipe, PublishErrorKind::StreamNotFound] {
            assert!(matches!(classify_publish(&PublishError::new(kind)), PublishFailure::Retryable(_)));
        }
        assert!(matches!(
            classify_publish(&PublishError::new(PublishErrorKind::MaxPayloadExceeded)),
            PublishFailure::Invalid(_)
        ));
        assert!(matches!(
            classify_publish(&PublishError::new(PublishErrorKind::WrongLastMessageId)),
            PublishFailure::Fatal(_)
        ));
    }
}
