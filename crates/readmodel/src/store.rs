//! The sled layout of the read model. One tree, keys prefixed by record kind
//! and org, so a whole event batch is one atomic `sled::Batch`.
//!
//! The layout is not part of any released format: a model with another
//! `LAYOUT_VERSION` is wiped and rebuilt from the log.

use segmentd_domain::Contact;
use segmentd_domain::segment::SegmentDef;
use segmentd_domain::time::Timestamp;
use serde::{Deserialize, Serialize};

// 2: jobs and the score-reset audit.
pub(crate) const LAYOUT_VERSION: u64 = 2;
pub(crate) const KEY_LAYOUT: &[u8] = b"m/layout";
pub(crate) const KEY_APPLIED: &[u8] = b"m/applied";

const CONTACT: u8 = b'c';
const NEXT_ROW: u8 = b'n';
const SEGMENT: u8 = b's';
const LAST_SEGMENT_ID: u8 = b'k';
const JOB: u8 = b'j';
const RESET: u8 = b'r';

fn org_key(kind: u8, org: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(org.len() + 14);
    k.push(kind);
    k.push(b'/');
    k.extend_from_slice(org.as_bytes());
    k.push(0);
    k
}

pub(crate) fn contact_key(org: &str, row: u32) -> Vec<u8> {
    let mut k = org_key(CONTACT, org);
    k.extend_from_slice(&row.to_be_bytes());
    k
}

pub(crate) fn next_row_key(org: &str) -> Vec<u8> {
    org_key(NEXT_ROW, org)
}

pub(crate) fn segment_key(org: &str, id: u64) -> Vec<u8> {
    let mut k = org_key(SEGMENT, org);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub(crate) fn last_segment_id_key(org: &str) -> Vec<u8> {
    org_key(LAST_SEGMENT_ID, org)
}

pub(crate) fn job_key(org: &str, job: &str) -> Vec<u8> {
    let mut k = org_key(JOB, org);
    k.extend_from_slice(job.as_bytes());
    k
}

/// One contact of a score reset: job id, NUL, index in big-endian (so keys
/// sort in the order the contacts were reset). Job ids are command ids,
/// which never hold NUL.
pub(crate) fn reset_key(org: &str, job: &str, index: u64) -> Vec<u8> {
    let mut k = org_key(RESET, org);
    k.extend_from_slice(job.as_bytes());
    k.push(0);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// A decoded key: which record it is and for which org.
pub(crate) enum Key<'a> {
    Contact { org: &'a str, row: u32 },
    NextRow { org: &'a str },
    Segment { org: &'a str },
    LastSegmentId { org: &'a str },
    Job { org: &'a str },
    Reset { org: &'a str, job: &'a str },
    Meta,
}

pub(crate) fn parse_key(k: &[u8]) -> Option<Key<'_>> {
    if k.starts_with(b"m/") {
        return Some(Key::Meta);
    }
    let (&kind, rest) = k.split_first()?;
    let rest = rest.strip_prefix(b"/")?;
    let nul = rest.iter().position(|b| *b == 0)?;
    let org = std::str::from_utf8(&rest[..nul]).ok()?;
    let tail = &rest[nul + 1..];
    Some(match kind {
        CONTACT => Key::Contact { org, row: u32::from_be_bytes(tail.try_into().ok()?) },
        NEXT_ROW => Key::NextRow { org },
        SEGMENT => Key::Segment { org },
        LAST_SEGMENT_ID => Key::LastSegmentId { org },
        JOB => Key::Job { org },
        RESET => {
            let nul = tail.iter().position(|b| *b == 0)?;
            Key::Reset { org, job: std::str::from_utf8(&tail[..nul]).ok()? }
        }
        _ => return None,
    })
}

/// A segment as stored (SegmentDef has no serde derive: the domain keeps its
/// state types free of storage concerns).
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredSegment {
    id: u64,
    name: String,
    criteria: String,
    version: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl From<&SegmentDef> for StoredSegment {
    fn from(s: &SegmentDef) -> Self {
        StoredSegment {
            id: s.id,
            name: s.name.clone(),
            criteria: s.criteria.clone(),
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

impl From<StoredSegment> for SegmentDef {
    fn from(s: StoredSegment) -> Self {
        SegmentDef {
            id: s.id,
            name: s.name,
            criteria: s.criteria,
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

pub(crate) fn encode_contact(c: &Contact) -> Vec<u8> {
    postcard::to_stdvec(c).expect("a Contact always serializes")
}

pub(crate) fn encode_segment(s: &SegmentDef) -> Vec<u8> {
    postcard::to_stdvec(&StoredSegment::from(s)).expect("a segment always serializes")
}

/// Read-model records that are plain serde structs (jobs, reset entries).
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("read-model records always serialize")
}

pub(crate) fn u64_value(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

pub(crate) fn u32_value(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.try_into().ok()?))
}
