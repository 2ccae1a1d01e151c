//! The sled layout of the read model. One tree, keys prefixed by record kind
//! and org, so a whole event batch is one atomic `sled::Batch`.
//!
//! The layout is not part of any released format: a model with another
//! `LAYOUT_VERSION` is wiped and rebuilt from the log.

use crate::stored::StoredContact;
use serde::Serialize;

// 2: jobs and the score-reset audit. 3: the catalogue kept as its events.
// 4: job cancellations. 5: contacts in blocks of rows, not one key each.
pub(crate) const LAYOUT_VERSION: u64 = 5;
pub(crate) const KEY_LAYOUT: &[u8] = b"m/layout";
pub(crate) const KEY_APPLIED: &[u8] = b"m/applied";

/// The contacts of [`BLOCK_ROWS`] consecutive rows in one value. Why not a
/// key per contact: sled spends about 10 µs per key, which bounds a rebuild
/// to ~100,000 contacts/s; a block costs that once for 16 contacts, and an
/// update rewrites about 3 KB instead of 200 bytes.
const BLOCK: u8 = b'b';
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

/// Rows per block. Small enough that a sled leaf (16 entries at most) of
/// blocks stays well under the size sled writes to a file of its own (a
/// quarter of its 512 KiB segment).
pub(crate) const BLOCK_ROWS: u32 = 16;

pub(crate) fn block_key(org: &str, block: u32) -> Vec<u8> {
    let mut k = org_key(BLOCK, org);
    k.extend_from_slice(&block.to_be_bytes());
    k
}

/// The stored form of a block's rows (the first row of the block first, as
/// many rows as the org has): each row is its length as a LEB128 varint,
/// then its bytes; length 0 for a row without a contact.
pub(crate) fn encode_block(rows: &[Option<StoredContact>]) -> Vec<u8> {
    let len = rows.iter().map(|r| r.as_ref().map_or(1, |c| c.bytes().len() + 3)).sum();
    let mut out = Vec::with_capacity(len);
    for row in rows {
        let bytes = row.as_ref().map_or(&[][..], StoredContact::bytes);
        let mut n = bytes.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(bytes);
    }
    out
}

/// The rows of a block, each checked to be a whole contact.
pub(crate) fn decode_block(mut bytes: &[u8]) -> Result<Vec<Option<StoredContact>>, String> {
    let mut rows = Vec::with_capacity(BLOCK_ROWS as usize);
    while !bytes.is_empty() {
        let mut len: usize = 0;
        let mut shift = 0;
        loop {
            let (&b, rest) = bytes.split_first().ok_or("a row length is cut short")?;
            bytes = rest;
            if shift > 28 {
                return Err("a row length is too long".into());
            }
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        if len > bytes.len() {
            return Err(format!("a row of {len} bytes is cut short"));
        }
        let (row, rest) = bytes.split_at(len);
        bytes = rest;
        rows.push(if len == 0 { None } else { Some(StoredContact::from_bytes(row).map_err(|e| e.to_string())?) });
    }
    if rows.len() > BLOCK_ROWS as usize {
        return Err(format!("{} rows in a block of {BLOCK_ROWS}", rows.len()));
    }
    Ok(rows)
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
    Block { org: &'a str, block: u32 },
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
        BLOCK => Key::Block { org, block: u32::from_be_bytes(tail.try_into().ok()?) },
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

#[cfg(test)]
mod tests {
    use super::*;
    use segmentd_domain::time::Timestamp;
    use segmentd_domain::{Contact, Email};

    #[test]
    fn blocks_keep_rows_and_gaps_and_refuse_damage() {
        let contact = |n: usize| {
            let mut c = Contact::new(Email::parse(&format!("c{n}@x.com")).unwrap(), Timestamp(n as i64));
            // Some rows longer than 127 bytes: two-byte lengths.
            c.company = "x".repeat(n * 20);
            StoredContact::encode(&c)
        };
        let rows: Vec<Option<StoredContact>> =
            (0..BLOCK_ROWS as usize).map(|n| (n % 3 != 1).then(|| contact(n))).collect();
        let bytes = encode_block(&rows);
        assert_eq!(decode_block(&bytes).unwrap(), rows);
        assert_eq!(decode_block(&encode_block(&rows[..5])).unwrap(), &rows[..5]);
        assert!(decode_block(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_block(&[0x80]).is_err());
        let too_many: Vec<Option<StoredContact>> = vec![None; BLOCK_ROWS as usize + 1];
        assert!(decode_block(&encode_block(&too_many)).is_err());
    }
}
