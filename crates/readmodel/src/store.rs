//! The sled layout of the read model. One tree, keys prefixed by record kind
//! and org, so a whole event batch is one atomic `sled::Batch`.
//!
//! The layout is not part of any released format: a model with another
//! `LAYOUT_VERSION` is wiped and rebuilt from the log.

use serde::Serialize;

// 2: jobs and the score-reset audit. 3: the catalogue kept as its events.
pub(crate) const LAYOUT_VERSION: u64 = 4;
pub(crate) const KEY_LAYOUT: &[u8] = b"m/layout";
pub(crate) const KEY_APPLIED: &[u8] = b"m/applied";

const CONTACT: u8 = b'c';
const NEXT_ROW: u8 = b'n';
const JOB: u8 = b'j';
const RESET: u8 = b'r';
/// Every event of an org's segment catalogue and static lists, in log order, as the log's codec encodes it: the catalogue and
/// the lists are few and small, so they are kept as their events and folded
/// again at load rather than mirrored in a storage type per record kind.
const EVENT: u8 = b'e';

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

pub(crate) fn event_key(org: &str, seq: u64) -> Vec<u8> {
    let mut k = org_key(EVENT, org);
    k.extend_from_slice(&seq.to_be_bytes());
    k
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
    Job { org: &'a str },
    Reset { org: &'a str, job: &'a str },
    Event { org: &'a str, seq: u64 },
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
        JOB => Key::Job { org },
        RESET => {
            let nul = tail.iter().position(|b| *b == 0)?;
            Key::Reset { org, job: std::str::from_utf8(&tail[..nul]).ok()? }
        }
        EVENT => Key::Event { org, seq: u64::from_be_bytes(tail.try_into().ok()?) },
        _ => return None,
    })
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
