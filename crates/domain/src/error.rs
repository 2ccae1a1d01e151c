//! Why the domain refuses a command. "Refused" is a normal answer, kept apart
//! from "could not be recorded" (the log's errors), so callers map each to the
//! right gRPC code.

/// A command the domain refuses; nothing is appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("a segment named {0:?} already exists in this organisation")]
    SegmentNameTaken(String),
    #[error("segment {0} does not exist")]
    SegmentNotFound(u64),
    #[error("contact {0} does not exist")]
    ContactNotFound(String),
    #[error("segment {id} is at version {actual}, not the expected version {expected}")]
    StaleVersion { id: u64, expected: u64, actual: u64 },
    #[error("the update changes nothing: give a new name and/or new criteria")]
    NothingToUpdate,
    /// A destructive command was sent without its explicit confirmation;
    /// the message names the flag.
    #[error("{0}")]
    NotConfirmed(String),
    /// The command carries a value the domain cannot accept; the message names it.
    #[error("{0}")]
    InvalidValue(String),
}
