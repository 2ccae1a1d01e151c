//! Every error → gRPC status, in one place. Infrastructure failures are
//! logged with their source and answered without internals.

use crate::auth::AuthError;
use crate::convert::BadRequest;
use crate::history::HistoryError;
use crate::jobs::JobError;
use crate::write::CommandError;
use segmentd_domain::DomainError;
use segmentd_domain::Timestamp;
use segmentd_log::LogError;
use segmentd_readmodel::{FeedError, ProjectorError, ReadModelError};
use tonic::Status;

impl From<BadRequest> for Status {
    fn from(e: BadRequest) -> Status {
        Status::invalid_argument(e.0)
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Status {
        match &e {
            AuthError::MissingKey | AuthError::KeyNotText | AuthError::UnknownKey => {
                Status::unauthenticated(e.to_string())
            }
            AuthError::Denied { path, .. } => {
                let allowed = crate::auth::roles::allowed_roles(path)
                    .map(|roles| roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))
                    .unwrap_or_else(|| "none: the RPC is not in the role table".to_owned());
                Status::permission_denied(format!("{e} (allowed: {allowed})"))
            }
            AuthError::NoMethod => Status::permission_denied(e.to_string()),
        }
    }
}

impl From<CommandError> for Status {
    fn from(e: CommandError) -> Status {
        match e {
            CommandError::Invalid(msg) => Status::invalid_argument(msg),
            CommandError::Refused(d) => domain(d),
            CommandError::Contended(msg) => Status::aborted(msg),
            CommandError::Log(l) => log(l),
        }
    }
}

impl From<JobError> for Status {
    fn from(e: JobError) -> Status {
        match e {
            JobError::Command(c) => c.into(),
            JobError::ReadModel(r) => read_model(r),
            JobError::NotFound(msg) => Status::not_found(msg),
            JobError::Stale(msg) => Status::aborted(msg),
        }
    }
}

impl From<HistoryError> for Status {
    fn from(e: HistoryError) -> Status {
        match e {
            HistoryError::NotFound(msg) => Status::not_found(msg),
            HistoryError::Ambiguous(msg) => Status::failed_precondition(msg),
            HistoryError::Log(l) => log(l),
        }
    }
}

pub fn read_model(e: ReadModelError) -> Status {
    match e {
        ReadModelError::Lagging { .. } => Status::unavailable(e.to_string()),
        ReadModelError::Storage(_) | ReadModelError::Corrupt { .. } => {
            tracing::error!(error = %e, "read model failure");
            Status::internal("the read model failed; see the server log")
        }
    }
}

/// Building a past state for `as_of` failed.
pub fn past(e: ProjectorError) -> Status {
    match e {
        ProjectorError::BeyondLog { wanted, last } => Status::failed_precondition(format!(
            "as_of.sequence: {wanted} is beyond the log's last sequence {last}; the past cannot be ahead of the log"
        )),
        ProjectorError::Log(l) => log(l),
        ProjectorError::ReadModel(r) => read_model(r),
        ProjectorError::NotEmpty { .. } => {
            tracing::error!(error = %e, "past state built into a used model");
            Status::internal("rebuilding the past state failed; see the server log")
        }
    }
}

/// `as_of.time` is later than the server's clock: the state then is not known yet.
pub fn as_of_in_future(asked: Timestamp, now: Timestamp) -> Status {
    Status::failed_precondition(format!("as_of.time: {asked} is in the future (the server's clock says {now})"))
}

/// A time-travel query on a node that has no log to replay.
pub fn as_of_without_log() -> Status {
    Status::failed_precondition("as_of: this node serves a rebuilt snapshot and has no log to replay")
}

pub fn feed(e: FeedError) -> Status {
    match e {
        FeedError::TooOld { .. } | FeedError::FellBehind => Status::failed_precondition(e.to_string()),
        FeedError::Closed => Status::unavailable(e.to_string()),
    }
}

pub fn domain(e: DomainError) -> Status {
    let msg = e.to_string();
    match e {
        DomainError::SegmentNameTaken(_)
        | DomainError::TopicNameTaken(_)
        | DomainError::ListNameTaken(_)
        | DomainError::CampaignNameTaken(_) => Status::already_exists(msg),
        DomainError::SegmentNotFound(_)
        | DomainError::ContactNotFound(_)
        | DomainError::TopicNotFound(_)
        | DomainError::JobNotFound(_)
        | DomainError::UnknownSegmentName(_)
        | DomainError::UsedSegmentMissing(_) => Status::not_found(msg),
        DomainError::StaleVersion { .. } => Status::aborted(msg),
        DomainError::NothingToUpdate | DomainError::InvalidValue(_) | DomainError::SegmentCycle(_) => {
            Status::invalid_argument(msg)
        }
        DomainError::NotConfirmed(_)
        | DomainError::LegacySegmentReadOnly { .. }
        | DomainError::TopicsAlreadyAssigned { .. }
        | DomainError::TopicsNotAssigned { .. }
        | DomainError::ListTooLarge { .. }
        | DomainError::TooManyBulkValues { .. }
        | DomainError::NoBulkValues(_)
        | DomainError::JobEnded { .. }
        | DomainError::SegmentInUse { .. }
        | DomainError::NothingToRollBack(_) => Status::failed_precondition(msg),
    }
}

pub fn log(e: LogError) -> Status {
    match e {
        LogError::Unavailable(_) => Status::unavailable(e.to_string()),
        LogError::InvalidRequest(_) => Status::invalid_argument(e.to_string()),
        LogError::Io(_) | LogError::Corrupt { .. } => {
            tracing::error!(error = %e, "event log failure");
            Status::internal("the event log failed; see the server log")
        }
    }
}

/// Longest `grpc-message` the server sends, in bytes of its percent-encoded
/// form. Messages quote the offending input ("unknown field \"…\"") and
/// the input may be megabytes long; clients refuse headers past a few
/// kilobytes (hyper's default: 16 KiB for all of them) and drop the whole
/// connection, so the answer, and every call sharing the connection, would
/// be lost.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Cuts an over-long `grpc-message` of a trailers-only answer (every
/// refusal before a reply or stream starts) to [`MAX_MESSAGE_BYTES`] and
/// marks the cut with `…`. A tower layer applies it to every answer.
pub fn bound_message(headers: &mut http::HeaderMap) {
    let Some(value) = headers.get("grpc-message") else { return };
    let bytes = value.as_bytes();
    if bytes.len() <= MAX_MESSAGE_BYTES {
        return;
    }
    let mut cut = MAX_MESSAGE_BYTES;
    // Never split a %XX escape (the value is percent-encoded).
    if let Some(percent) = bytes[cut - 2..cut].iter().position(|&b| b == b'%') {
        cut = cut - 2 + percent;
    }
    let mut bounded = bytes[..cut].to_vec();
    bounded.extend_from_slice(b"%E2%80%A6");
    if let Ok(value) = http::HeaderValue::from_bytes(&bounded) {
        headers.insert("grpc-message", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_after(raw: &str) -> String {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-message", http::HeaderValue::from_str(raw).unwrap());
        bound_message(&mut headers);
        headers["grpc-message"].to_str().unwrap().to_owned()
    }

    #[test]
    fn long_messages_are_cut_and_marked_and_short_ones_kept() {
        assert_eq!(message_after("name: too long"), "name: too long");
        let long = "x".repeat(70_000);
        let cut = message_after(&long);
        assert_eq!(cut.len(), MAX_MESSAGE_BYTES + "%E2%80%A6".len());
        assert!(cut.ends_with("x%E2%80%A6"), "{}", &cut[cut.len() - 20..]);
        // An escape across the limit is dropped whole, never split.
        for shift in 0..3 {
            let raw = format!("{}{}", "y".repeat(MAX_MESSAGE_BYTES - shift), "%22".repeat(100));
            let cut = message_after(&raw);
            let kept = cut.strip_suffix("%E2%80%A6").unwrap();
            assert!(kept.len() <= MAX_MESSAGE_BYTES);
            assert!(kept.ends_with('y') || kept.ends_with("%22"), "{shift}: {}", &kept[kept.len() - 6..]);
        }
    }
}
