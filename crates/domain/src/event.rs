//! Events: the facts segmentd records, named in the past tense, and the
//! envelope every event travels in.
//!
//! Every payload struct here is **frozen once released**: postcard has no
//! field tags, so adding, removing or reordering a field breaks the bytes
//! already in the log. Evolution adds a new payload type (`…V2`) and a new
//! event type code in the log crate's codec, which upcasts the old one. The
//! golden fixtures in `tests/fixtures/events` hold every released type.

use crate::contact::Contact;
use crate::decimal::Decimal;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What kind of aggregate an event belongs to; part of its log subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AggregateKind {
    /// One contact, keyed by its (lowercase) email.
    Contact,
    /// The organisation's segment catalogue: every segment of one org is one
    /// aggregate, so that "names are unique per org" is decided against one
    /// sequence and holds under concurrent writers.
    Segments,
    /// One job (mass update, delete a segment's contacts, reset scores):
    /// its start with the fixed member list, its progress and its end.
    Job,
    /// The members of one static list (saved from a segment), keyed by the
    /// list's id; the list itself (name, segment, position) is in the
    /// catalogue. Members live apart so the catalogue stays small to load.
    List,
}

impl AggregateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateKind::Contact => "contact",
            AggregateKind::Segments => "segments",
            AggregateKind::Job => "job",
            AggregateKind::List => "list",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "contact" => Some(AggregateKind::Contact),
            "segments" => Some(AggregateKind::Segments),
            "job" => Some(AggregateKind::Job),
            "list" => Some(AggregateKind::List),
            _ => None,
        }
    }
}

impl fmt::Display for AggregateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of the one segment-catalogue aggregate of an org.
pub const SEGMENT_CATALOG_ID: &str = "catalog";

/// Identifies one aggregate's event stream within the log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AggregateId {
    pub org: String,
    pub kind: AggregateKind,
    pub id: String,
}

impl AggregateId {
    pub fn contact(org: &str, email: &str) -> Self {
        AggregateId { org: org.to_owned(), kind: AggregateKind::Contact, id: email.to_owned() }
    }

    pub fn job(org: &str, job_id: &str) -> Self {
        AggregateId { org: org.to_owned(), kind: AggregateKind::Job, id: job_id.to_owned() }
    }

    pub fn segment_catalog(org: &str) -> Self {
        AggregateId { org: org.to_owned(), kind: AggregateKind::Segments, id: SEGMENT_CATALOG_ID.to_owned() }
    }

    /// The members of static list `list_id`.
    pub fn list(org: &str, list_id: u64) -> Self {
        AggregateId { org: org.to_owned(), kind: AggregateKind::List, id: list_id.to_string() }
    }
}

impl fmt::Display for AggregateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.org, self.kind, self.id)
    }
}

/// Who or what caused an event, and under which command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per event; chosen by the writer.
    pub event_id: u128,
    /// The client-chosen id of the command; retries reuse it.
    pub command_id: String,
    pub aggregate: AggregateId,
    /// The API key's name or the service identity that sent the command.
    pub actor: String,
    pub time: Timestamp,
    pub event: Event,
}

/// Every event type segmentd records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    ContactCreated(ContactCreated),
    ContactUpdated(ContactUpdated),
    ContactDeleted(ContactDeleted),
    SegmentCreated(SegmentCreated),
    SegmentUpdated(SegmentUpdated),
    SegmentDeleted(SegmentDeleted),
    JobStarted(JobStarted),
    JobMembersListed(JobMembersListed),
    JobProgressed(JobProgressed),
    JobCompleted(JobCompleted),
    JobAbandoned(JobAbandoned),
    ScoreReset(ScoreReset),
    ActivityRecorded(ActivityRecorded),
    LegacySegmentImported(LegacySegmentImported),
    SegmentCloned(SegmentCloned),
    TopicCreated(TopicCreated),
    TopicsAssigned(TopicsAssigned),
    TopicsUnassigned(TopicsUnassigned),
    SegmentSavedAsList(SegmentSavedAsList),
    ListMembersRecorded(ListMembersRecorded),
    CampaignCreated(CampaignCreated),
    BulkSegmentsCreated(BulkSegmentsCreated),
    JobCancelRequested(JobCancelRequested),
    JobCancelled(JobCancelled),
    SegmentRolledBack(SegmentRolledBack),
}

impl Event {
    /// The stable type name used in headers, filters and JSON renderings.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::ContactCreated(_) => "ContactCreated",
            Event::ContactUpdated(_) => "ContactUpdated",
            Event::ContactDeleted(_) => "ContactDeleted",
            Event::SegmentCreated(_) => "SegmentCreated",
            Event::SegmentUpdated(_) => "SegmentUpdated",
            Event::SegmentDeleted(_) => "SegmentDeleted",
            Event::JobStarted(_) => "JobStarted",
            Event::JobMembersListed(_) => "JobMembersListed",
            Event::JobProgressed(_) => "JobProgressed",
            Event::JobCompleted(_) => "JobCompleted",
            Event::JobAbandoned(_) => "JobAbandoned",
            Event::ScoreReset(_) => "ScoreReset",
            Event::ActivityRecorded(_) => "ActivityRecorded",
            Event::LegacySegmentImported(_) => "LegacySegmentImported",
            Event::SegmentCloned(_) => "SegmentCloned",
            Event::TopicCreated(_) => "TopicCreated",
            Event::TopicsAssigned(_) => "TopicsAssigned",
            Event::TopicsUnassigned(_) => "TopicsUnassigned",
            Event::SegmentSavedAsList(_) => "SegmentSavedAsList",
            Event::ListMembersRecorded(_) => "ListMembersRecorded",
            Event::CampaignCreated(_) => "CampaignCreated",
            Event::BulkSegmentsCreated(_) => "BulkSegmentsCreated",
            Event::JobCancelRequested(_) => "JobCancelRequested",
            Event::JobCancelled(_) => "JobCancelled",
            Event::SegmentRolledBack(_) => "SegmentRolledBack",
        }
    }
}

/// A contact appeared. Carries the whole contact, so the last event of a
/// contact is its current state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactCreated {
    pub contact: Contact,
}

/// A contact changed: its whole new state, and the names of the fields that
/// changed (so readers need not diff).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactUpdated {
    pub contact: Contact,
    pub changed: Vec<String>,
}

/// A contact was removed from the organisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactDeleted {
    pub email: String,
}

/// A segment was defined. `criteria` is the canonical text form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentCreated {
    pub segment_id: u64,
    pub name: String,
    pub criteria: String,
}

/// From what to what a segment property changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub from: String,
    pub to: String,
}

/// A segment was renamed and/or given new criteria; `version` is the
/// segment's version after the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentUpdated {
    pub segment_id: u64,
    pub version: u64,
    pub name: Option<Change>,
    pub criteria: Option<Change>,
}

/// A segment was given back the name and criteria of its earlier version
/// `to_version` (RollbackSegment); `version` is its new version, and the
/// changes say from what to what, like [`SegmentUpdated`] (`None`: that
/// part was already so).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRolledBack {
    pub segment_id: u64,
    pub version: u64,
    pub to_version: u64,
    pub name: Option<Change>,
    pub criteria: Option<Change>,
}

/// A segment was deleted; its name is free again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentDeleted {
    pub segment_id: u64,
    pub name: String,
}

/// What a job does to each member. Serialized inside [`JobStarted`]:
/// variants are positional, so new kinds are only ever appended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    /// Set `field` (its name as in criteria) to `value` (its text form, as
    /// in `UpsertContacts`) on every member.
    MassUpdate { field: String, value: String },
    /// Delete every member from the organisation.
    DeleteContacts,
    /// Set every member's score to 0, recording the previous one.
    ResetScores { reason: String },
}

/// A job began over the members of a segment as the read model held them at
/// log sequence `position` (relative dates measured at `clock`). The member
/// list itself follows in [`JobMembersListed`] events of the same append, in
/// order; `member_count` says how many emails they hold in all, so a reader
/// can tell a complete list from a torn one. Members are worked through in
/// batches of `batch_size`; batch `n` is appended with the command id
/// `job:<job_id>:<n>`, which is what makes a resumed job change each contact
/// once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStarted {
    pub job_id: String,
    pub kind: JobKind,
    pub segment_id: u64,
    pub segment_name: String,
    /// Canonical text form, as the segment had it at `position`.
    pub criteria: String,
    pub position: u64,
    pub clock: Timestamp,
    pub member_count: u64,
    pub batch_size: u32,
}

/// A slice of a job's member list: emails `first_index..` in member order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMembersListed {
    pub first_index: u64,
    pub emails: Vec<String>,
}

/// A job finished the members before `next_index`; the counts are totals so
/// far. Appended in the same request as the batch it reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgressed {
    pub next_index: u64,
    pub changed: u64,
    pub skipped: u64,
}

/// A job went through every member: `changed` contacts were changed,
/// `skipped` needed nothing (gone since the start, or already so).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCompleted {
    pub changed: u64,
    pub skipped: u64,
}

/// A job cannot go on and changed nothing more; `reason` says why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAbandoned {
    pub reason: String,
}

/// Someone asked a running job to stop (CancelJob; the envelope's actor
/// says who). The job's runner stops before its next batch and records
/// [`JobCancelled`]; `reason` is the canceller's note, possibly empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCancelRequested {
    pub reason: String,
}

/// A job stopped on request and changes nothing more: the members before
/// `next_index` were worked through, `changed` of them changed and
/// `skipped` needed nothing; the rest were left alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCancelled {
    pub next_index: u64,
    pub changed: u64,
    pub skipped: u64,
}

/// A contact's score was reset by job `job_id`: the whole contact after the
/// reset, its score before, and the reason the resetter gave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreReset {
    pub contact: Contact,
    pub previous_score: Option<i64>,
    pub reason: String,
    pub job_id: String,
}

/// Something a contact did. Serialized inside [`ActivityRecorded`]:
/// variants are positional, so new kinds are only ever appended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activity {
    EmailOpened,
    LinkClicked { url: String },
    Purchase { amount: Decimal },
}

/// A contact did something at `at`; `contact` is the whole contact with its
/// behaviour fields (last opened, purchases) brought up to date.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityRecorded {
    pub contact: Contact,
    pub activity: Activity,
    pub at: Timestamp,
}

/// A list-level segment from before org-level segments was imported. It is
/// read-only (it can be cloned) and belongs to the list `list_name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacySegmentImported {
    pub segment_id: u64,
    pub name: String,
    pub criteria: String,
    pub list_name: String,
}

/// A new org-level segment was made from `source_id` (an org-level or a
/// legacy segment); `criteria` is the source's unless new ones were given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentCloned {
    pub segment_id: u64,
    pub source_id: u64,
    pub name: String,
    pub criteria: String,
}

/// A topic segments can be filed under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicCreated {
    pub topic_id: u64,
    pub name: String,
}

/// Topics newly assigned to a segment (only those it did not have).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicsAssigned {
    pub segment_id: u64,
    pub topic_ids: Vec<u64>,
}

/// Topics taken off a segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicsUnassigned {
    pub segment_id: u64,
    pub topic_ids: Vec<u64>,
}

/// A static list was saved from a segment: its members are the segment's
/// members (by `criteria`, as the segment had them) in the read model at log
/// position `at_sequence`. The members themselves follow as
/// `ListMembersRecorded` events of the list's own aggregate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSavedAsList {
    pub list_id: u64,
    pub name: String,
    pub segment_id: u64,
    pub criteria: String,
    pub at_sequence: u64,
    pub member_count: u64,
}

/// One chunk of a static list's members (emails, in member order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListMembersRecorded {
    pub list_id: u64,
    pub emails: Vec<String>,
}

/// A campaign was created for a segment; its recipients are the segment's
/// members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignCreated {
    pub campaign_id: u64,
    pub name: String,
    pub subject: String,
    pub sender: String,
    pub segment_id: u64,
}

/// One child of a bulk segment: an ordinary `field = value` segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkChild {
    pub segment_id: u64,
    pub name: String,
    pub value: String,
    pub criteria: String,
}

/// A bulk segment: one child segment per distinct value of `field`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkSegmentsCreated {
    pub bulk_id: u64,
    pub base_name: String,
    pub field: String,
    pub children: Vec<BulkChild>,
}
