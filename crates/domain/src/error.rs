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
    #[error(
        "segment {id} ({name:?}) is a legacy segment of list {list:?}: legacy segments cannot be {action}; \
         clone it into an org-level segment (CloneSegment) and change the clone"
    )]
    LegacySegmentReadOnly { id: u64, name: String, list: String, action: &'static str },
    #[error("topic {0} does not exist")]
    TopicNotFound(u64),
    #[error("a topic named {0:?} already exists in this organisation")]
    TopicNameTaken(String),
    #[error("segment {segment_id} already has topic(s) {topics:?}; nothing to assign")]
    TopicsAlreadyAssigned { segment_id: u64, topics: Vec<u64> },
    #[error("topic(s) {topics:?} are not assigned to segment {segment_id}")]
    TopicsNotAssigned { segment_id: u64, topics: Vec<u64> },
    #[error("a list named {0:?} already exists in this organisation")]
    ListNameTaken(String),
    #[error("the segment has {count} members; a static list holds at most {limit}")]
    ListTooLarge { count: usize, limit: usize },
    #[error("a campaign named {0:?} already exists in this organisation")]
    CampaignNameTaken(String),
    #[error("field {field} has {count} distinct values; a bulk segment makes at most {limit} segments")]
    TooManyBulkValues { field: String, count: usize, limit: usize },
    #[error("no contact has a value for field {0}; a bulk segment needs at least one value")]
    NoBulkValues(String),
    /// A rollback that would change nothing; the message says why.
    #[error("{0}")]
    NothingToRollBack(String),
    #[error("criteria: no segment is named {0:?} (in segment \"{0}\")")]
    UnknownSegmentName(String),
    #[error("criteria: segment {0} (in segment {0}) does not exist")]
    UsedSegmentMissing(u64),
    /// The message names the segments of the cycle in order.
    #[error("criteria: segments would use each other in a cycle: {0}")]
    SegmentCycle(String),
    #[error(
        "segment {segment} is used by the criteria of {users}; change their criteria (in segment) or delete them first"
    )]
    SegmentInUse { segment: String, users: String },
    #[error("job {0:?} does not exist")]
    JobNotFound(String),
    /// The job has already ended; `how` says how (completed, abandoned,
    /// cancelled).
    #[error("job {id:?} has already {how}; only a running job can be cancelled")]
    JobEnded { id: String, how: &'static str },
}
