//! What the segment catalogue holds besides segments: topics, static lists
//! (saved from segments), campaigns and bulk segments, and the rules their
//! names follow. They live in the catalogue aggregate so that every
//! "unique per organisation" rule is decided against one sequence, and so
//! that a rule spanning them (a campaign needs a live segment) is checked
//! against the same state it is recorded on.

use crate::error::DomainError;
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// The most segments one `CreateBulkSegments` makes.
pub const MAX_BULK_SEGMENTS: usize = 100;
/// The most members a static list may hold (a list is recorded in one
/// request; see `ListMembersRecorded`).
pub const MAX_LIST_MEMBERS: usize = 200_000;
/// Emails per `ListMembersRecorded` event: keeps one event well under a
/// NATS message's size limit (1 MB by default) even with long emails.
pub const LIST_CHUNK: usize = 1000;
pub const MAX_NAME_LEN: usize = 128;
pub const MAX_SUBJECT_LEN: usize = 255;

/// A trimmed name of 1 to 128 characters without control characters;
/// `what` names the field in the error ("topic name", "list name", ...).
pub fn parse_name(what: &str, raw: &str) -> Result<String, DomainError> {
    text(what, raw, MAX_NAME_LEN)
}

/// A campaign subject: like a name, up to 255 characters.
pub fn parse_subject(raw: &str) -> Result<String, DomainError> {
    text("subject", raw, MAX_SUBJECT_LEN)
}

fn text(what: &str, raw: &str, max: usize) -> Result<String, DomainError> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(DomainError::InvalidValue(format!("{what}: must not be empty")));
    }
    if t.chars().count() > max {
        return Err(DomainError::InvalidValue(format!("{what}: at most {max} characters")));
    }
    if t.chars().any(char::is_control) {
        return Err(DomainError::InvalidValue(format!("{what}: must not contain control characters")));
    }
    Ok(t.to_owned())
}

/// Names compare case-insensitively, like segment names.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDef {
    pub id: u64,
    pub name: String,
    pub created_at: Timestamp,
}

/// A static list saved from a segment. Its members are in the list's own
/// aggregate; this is what the catalogue needs to know about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListDef {
    pub id: u64,
    pub name: String,
    pub segment_id: u64,
    /// The criteria the members were selected by (the segment's, then).
    pub criteria: String,
    /// The log position of the read model the members were read from.
    pub at_sequence: u64,
    pub member_count: u64,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignDef {
    pub id: u64,
    pub name: String,
    pub subject: String,
    pub sender: String,
    pub segment_id: u64,
    pub created_at: Timestamp,
}

/// A bulk segment: the parent of one `field = value` segment per value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkDef {
    pub id: u64,
    pub base_name: String,
    pub field: String,
    /// The child segments' ids, in the order they were made (some may have
    /// been deleted since).
    pub children: Vec<u64>,
    pub created_at: Timestamp,
}

/// The catalogue's non-segment parts, with the highest id ever given to
/// each kind (ids are never reused).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogExtras {
    pub topics: BTreeMap<u64, TopicDef>,
    pub lists: BTreeMap<u64, ListDef>,
    pub campaigns: BTreeMap<u64, CampaignDef>,
    pub bulks: BTreeMap<u64, BulkDef>,
    pub last_topic_id: u64,
    pub last_list_id: u64,
    pub last_campaign_id: u64,
    pub last_bulk_id: u64,
}

impl CatalogExtras {
    pub fn topic_by_name(&self, name: &str) -> Option<&TopicDef> {
        self.topics.values().find(|t| same_name(&t.name, name))
    }

    pub fn list_by_name(&self, name: &str) -> Option<&ListDef> {
        self.lists.values().find(|l| same_name(&l.name, name))
    }

    pub fn campaign_by_name(&self, name: &str) -> Option<&CampaignDef> {
        self.campaigns.values().find(|c| same_name(&c.name, name))
    }
}

/// The name a bulk child gets: "<base name> - <value>".
pub fn bulk_child_name(base_name: &str, value: &str) -> String {
    format!("{base_name} - {value}")
}
