//! The byte encoding of one event, as every log backend stores it.
//!
//! Layout: `[envelope format version u8][event type code u16 LE][payload
//! schema version u8]`, then postcard of the frozen [`HeaderV1`], then
//! postcard of the payload struct. The type and its schema version travel
//! *outside* postcard because postcard has no field tags and no variant
//! names: the prefix is what lets a reader pick the right frozen struct.
//!
//! **Must not depend on** any log backend, tokio, or I/O: this is a pure
//! function of the domain types, shared by the embedded log and NATS.
//!
//! # Evolution
//! Every payload struct in `segmentd_domain::event` and [`HeaderV1`] is
//! frozen once released: adding, removing or reordering a field, or a
//! variant of an enum inside it, changes the meaning of bytes already in the
//! log. To change a payload, add a `…V2` struct (kept here or in the domain),
//! encode new events as `(code, 2)`, and keep decoding `(code, 1)` through an
//! upcaster that turns the V1 struct into the current domain type. A new
//! header means envelope format version 2, decoded beside version 1. Every
//! released `(code, schema)` has a golden fixture in `tests/fixtures/events`,
//! and `tests/golden.rs` fails if one is missing or no longer decodes.

use segmentd_domain::{AggregateId, AggregateKind, Envelope, Event, Timestamp};
use serde::{Deserialize, Serialize};

/// The envelope format this module writes: the prefix layout plus [`HeaderV1`].
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes before the postcard header: envelope version, type code, schema version.
pub const PREFIX_LEN: usize = 4;

// Type codes are explicit and never derived from the position of a variant
// in `Event`: reordering that enum must not change a single stored byte.
pub const CONTACT_CREATED: u16 = 1;
pub const CONTACT_UPDATED: u16 = 2;
pub const CONTACT_DELETED: u16 = 3;
pub const SEGMENT_CREATED: u16 = 10;
pub const SEGMENT_UPDATED: u16 = 11;
pub const SEGMENT_DELETED: u16 = 12;
pub const JOB_STARTED: u16 = 50;
pub const JOB_MEMBERS_LISTED: u16 = 51;
pub const JOB_PROGRESSED: u16 = 52;
pub const JOB_COMPLETED: u16 = 53;
pub const JOB_ABANDONED: u16 = 54;
pub const SCORE_RESET: u16 = 55;
pub const ACTIVITY_RECORDED: u16 = 56;
pub const LEGACY_SEGMENT_IMPORTED: u16 = 13;
pub const SEGMENT_CLONED: u16 = 14;
pub const TOPIC_CREATED: u16 = 15;
pub const TOPICS_ASSIGNED: u16 = 16;
pub const TOPICS_UNASSIGNED: u16 = 17;
pub const SEGMENT_SAVED_AS_LIST: u16 = 18;
pub const LIST_MEMBERS_RECORDED: u16 = 19;
pub const CAMPAIGN_CREATED: u16 = 30;
pub const BULK_SEGMENTS_CREATED: u16 = 31;
pub const SEGMENT_ROLLED_BACK: u16 = 20;
pub const JOB_CANCEL_REQUESTED: u16 = 57;
pub const JOB_CANCELLED: u16 = 58;

/// The payload schema version every released type is written with today.
pub const SCHEMA_V1: u8 = 1;

/// Every released event type: its code and its stable name
/// ([`Event::type_name`]). Each has a golden fixture `<name>.v1.bin`; a type
/// is released by adding it here, which makes the fixture test demand one.
pub const EVENT_TYPES: &[(u16, &str)] = &[
    (CONTACT_CREATED, "ContactCreated"),
    (CONTACT_UPDATED, "ContactUpdated"),
    (CONTACT_DELETED, "ContactDeleted"),
    (SEGMENT_CREATED, "SegmentCreated"),
    (SEGMENT_UPDATED, "SegmentUpdated"),
    (SEGMENT_DELETED, "SegmentDeleted"),
    (JOB_STARTED, "JobStarted"),
    (JOB_MEMBERS_LISTED, "JobMembersListed"),
    (JOB_PROGRESSED, "JobProgressed"),
    (JOB_COMPLETED, "JobCompleted"),
    (JOB_ABANDONED, "JobAbandoned"),
    (SCORE_RESET, "ScoreReset"),
    (ACTIVITY_RECORDED, "ActivityRecorded"),
    (LEGACY_SEGMENT_IMPORTED, "LegacySegmentImported"),
    (SEGMENT_CLONED, "SegmentCloned"),
    (TOPIC_CREATED, "TopicCreated"),
    (TOPICS_ASSIGNED, "TopicsAssigned"),
    (TOPICS_UNASSIGNED, "TopicsUnassigned"),
    (SEGMENT_SAVED_AS_LIST, "SegmentSavedAsList"),
    (LIST_MEMBERS_RECORDED, "ListMembersRecorded"),
    (CAMPAIGN_CREATED, "CampaignCreated"),
    (BULK_SEGMENTS_CREATED, "BulkSegmentsCreated"),
    (JOB_CANCEL_REQUESTED, "JobCancelRequested"),
    (JOB_CANCELLED, "JobCancelled"),
    (SEGMENT_ROLLED_BACK, "SegmentRolledBack"),
];

/// The envelope's metadata as stored. Frozen: see the module doc.
///
/// Fields borrow from the input so that scanning a log (which needs only
/// the aggregate) allocates nothing; `&str` and `String` have the same
/// postcard encoding, so this is byte-for-byte the owned
/// `HeaderV1 { event_id: u128, command_id: String, org: String,
/// aggregate_kind: String, aggregate_id: String, actor: String, time_ms: i64 }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderV1<'a> {
    pub event_id: u128,
    pub command_id: &'a str,
    pub org: &'a str,
    /// [`AggregateKind::as_str`], not the enum: a text tag survives a
    /// reordering of the enum's variants.
    pub aggregate_kind: &'a str,
    pub aggregate_id: &'a str,
    pub actor: &'a str,
    pub time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("event is {len} bytes, shorter than the {PREFIX_LEN}-byte prefix")]
    TooShort { len: usize },
    #[error("unknown envelope format version {0} (this build reads version {ENVELOPE_VERSION})")]
    UnknownEnvelopeVersion(u8),
    #[error("unknown event type code {code} with payload schema version {schema}")]
    UnknownType { code: u16, schema: u8 },
    #[error("bad event header: {0}")]
    Header(postcard::Error),
    #[error("unknown aggregate kind {0:?} in the event header")]
    UnknownAggregateKind(String),
    #[error("bad {type_name} payload (schema {schema}): {source}")]
    Payload { type_name: &'static str, schema: u8, source: postcard::Error },
    #[error("{count} unexpected bytes after the {type_name} payload")]
    TrailingBytes { type_name: &'static str, count: usize },
}

/// The type code an event is written with.
pub fn event_type_code(event: &Event) -> u16 {
    match event {
        Event::ContactCreated(_) => CONTACT_CREATED,
        Event::ContactUpdated(_) => CONTACT_UPDATED,
        Event::ContactDeleted(_) => CONTACT_DELETED,
        Event::SegmentCreated(_) => SEGMENT_CREATED,
        Event::SegmentUpdated(_) => SEGMENT_UPDATED,
        Event::SegmentDeleted(_) => SEGMENT_DELETED,
        Event::JobStarted(_) => JOB_STARTED,
        Event::JobMembersListed(_) => JOB_MEMBERS_LISTED,
        Event::JobProgressed(_) => JOB_PROGRESSED,
        Event::JobCompleted(_) => JOB_COMPLETED,
        Event::JobAbandoned(_) => JOB_ABANDONED,
        Event::ScoreReset(_) => SCORE_RESET,
        Event::ActivityRecorded(_) => ACTIVITY_RECORDED,
        Event::LegacySegmentImported(_) => LEGACY_SEGMENT_IMPORTED,
        Event::SegmentCloned(_) => SEGMENT_CLONED,
        Event::TopicCreated(_) => TOPIC_CREATED,
        Event::TopicsAssigned(_) => TOPICS_ASSIGNED,
        Event::TopicsUnassigned(_) => TOPICS_UNASSIGNED,
        Event::SegmentSavedAsList(_) => SEGMENT_SAVED_AS_LIST,
        Event::ListMembersRecorded(_) => LIST_MEMBERS_RECORDED,
        Event::CampaignCreated(_) => CAMPAIGN_CREATED,
        Event::BulkSegmentsCreated(_) => BULK_SEGMENTS_CREATED,
        Event::JobCancelRequested(_) => JOB_CANCEL_REQUESTED,
        Event::JobCancelled(_) => JOB_CANCELLED,
        Event::SegmentRolledBack(_) => SEGMENT_ROLLED_BACK,
    }
}

pub fn encode(env: &Envelope) -> Vec<u8> {
    encode_into(env, Vec::with_capacity(256))
}

/// Appends the encoding of `env` to `out`, so a log can build a frame of many
/// events without a buffer per event.
pub fn encode_into(env: &Envelope, mut out: Vec<u8>) -> Vec<u8> {
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&event_type_code(&env.event).to_le_bytes());
    out.push(SCHEMA_V1);
    let header = HeaderV1 {
        event_id: env.event_id,
        command_id: &env.command_id,
        org: &env.aggregate.org,
        aggregate_kind: env.aggregate.kind.as_str(),
        aggregate_id: &env.aggregate.id,
        actor: &env.actor,
        time_ms: env.time.millis(),
    };
    let out = append(&header, out);
    match &env.event {
        Event::ContactCreated(p) => append(p, out),
        Event::ContactUpdated(p) => append(p, out),
        Event::ContactDeleted(p) => append(p, out),
        Event::SegmentCreated(p) => append(p, out),
        Event::SegmentUpdated(p) => append(p, out),
        Event::SegmentDeleted(p) => append(p, out),
        Event::JobStarted(p) => append(p, out),
        Event::JobMembersListed(p) => append(p, out),
        Event::JobProgressed(p) => append(p, out),
        Event::JobCompleted(p) => append(p, out),
        Event::JobAbandoned(p) => append(p, out),
        Event::ScoreReset(p) => append(p, out),
        Event::ActivityRecorded(p) => append(p, out),
        Event::LegacySegmentImported(p) => append(p, out),
        Event::SegmentCloned(p) => append(p, out),
        Event::TopicCreated(p) => append(p, out),
        Event::TopicsAssigned(p) => append(p, out),
        Event::TopicsUnassigned(p) => append(p, out),
        Event::SegmentSavedAsList(p) => append(p, out),
        Event::ListMembersRecorded(p) => append(p, out),
        Event::CampaignCreated(p) => append(p, out),
        Event::BulkSegmentsCreated(p) => append(p, out),
        Event::JobCancelRequested(p) => append(p, out),
        Event::JobCancelled(p) => append(p, out),
        Event::SegmentRolledBack(p) => append(p, out),
    }
}

fn append<T: Serialize>(value: &T, out: Vec<u8>) -> Vec<u8> {
    // Writing plain structs of strings and integers into a growable Vec has
    // no failure mode; an error here would be a bug in postcard or serde.
    postcard::to_extend(value, out).expect("postcard encodes into a Vec without error")
}

/// Reads the prefix and the header only: what a log needs to index an event
/// without paying for its payload. Returns `(type code, schema, header, payload bytes)`.
pub fn decode_header(bytes: &[u8]) -> Result<(u16, u8, HeaderV1<'_>, &[u8]), CodecError> {
    let (code, schema, rest) = split_prefix(bytes)?;
    let (header, payload) = postcard::take_from_bytes::<HeaderV1<'_>>(rest).map_err(CodecError::Header)?;
    Ok((code, schema, header, payload))
}

fn split_prefix(bytes: &[u8]) -> Result<(u16, u8, &[u8]), CodecError> {
    let Some((prefix, rest)) = bytes.split_first_chunk::<PREFIX_LEN>() else {
        return Err(CodecError::TooShort { len: bytes.len() });
    };
    let [version, c0, c1, schema] = *prefix;
    if version != ENVELOPE_VERSION {
        return Err(CodecError::UnknownEnvelopeVersion(version));
    }
    Ok((u16::from_le_bytes([c0, c1]), schema, rest))
}

/// The aggregate an encoded event belongs to, without decoding its payload.
pub fn decode_aggregate(bytes: &[u8]) -> Result<AggregateId, CodecError> {
    let (_, _, header, _) = decode_header(bytes)?;
    aggregate_of(&header)
}

fn aggregate_of(header: &HeaderV1<'_>) -> Result<AggregateId, CodecError> {
    let kind = AggregateKind::parse(header.aggregate_kind)
        .ok_or_else(|| CodecError::UnknownAggregateKind(header.aggregate_kind.to_owned()))?;
    Ok(AggregateId { org: header.org.to_owned(), kind, id: header.aggregate_id.to_owned() })
}

pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
    // An unknown type is reported as such, before its header can fail to parse.
    let (code, schema, _) = split_prefix(bytes)?;
    if !is_known(code, schema) {
        return Err(CodecError::UnknownType { code, schema });
    }
    let (code, schema, header, payload) = decode_header(bytes)?;
    // The (code, schema) match is exhaustive over what was ever released; an
    // upcaster for an old schema goes here as one more arm.
    let event = match (code, schema) {
        (CONTACT_CREATED, SCHEMA_V1) => Event::ContactCreated(payload_of("ContactCreated", schema, payload)?),
        (CONTACT_UPDATED, SCHEMA_V1) => Event::ContactUpdated(payload_of("ContactUpdated", schema, payload)?),
        (CONTACT_DELETED, SCHEMA_V1) => Event::ContactDeleted(payload_of("ContactDeleted", schema, payload)?),
        (SEGMENT_CREATED, SCHEMA_V1) => Event::SegmentCreated(payload_of("SegmentCreated", schema, payload)?),
        (SEGMENT_UPDATED, SCHEMA_V1) => Event::SegmentUpdated(payload_of("SegmentUpdated", schema, payload)?),
        (SEGMENT_DELETED, SCHEMA_V1) => Event::SegmentDeleted(payload_of("SegmentDeleted", schema, payload)?),
        (JOB_STARTED, SCHEMA_V1) => Event::JobStarted(payload_of("JobStarted", schema, payload)?),
        (JOB_MEMBERS_LISTED, SCHEMA_V1) => Event::JobMembersListed(payload_of("JobMembersListed", schema, payload)?),
        (JOB_PROGRESSED, SCHEMA_V1) => Event::JobProgressed(payload_of("JobProgressed", schema, payload)?),
        (JOB_COMPLETED, SCHEMA_V1) => Event::JobCompleted(payload_of("JobCompleted", schema, payload)?),
        (JOB_ABANDONED, SCHEMA_V1) => Event::JobAbandoned(payload_of("JobAbandoned", schema, payload)?),
        (SCORE_RESET, SCHEMA_V1) => Event::ScoreReset(payload_of("ScoreReset", schema, payload)?),
        (ACTIVITY_RECORDED, SCHEMA_V1) => Event::ActivityRecorded(payload_of("ActivityRecorded", schema, payload)?),
        (LEGACY_SEGMENT_IMPORTED, SCHEMA_V1) => {
            Event::LegacySegmentImported(payload_of("LegacySegmentImported", schema, payload)?)
        }
        (SEGMENT_CLONED, SCHEMA_V1) => Event::SegmentCloned(payload_of("SegmentCloned", schema, payload)?),
        (TOPIC_CREATED, SCHEMA_V1) => Event::TopicCreated(payload_of("TopicCreated", schema, payload)?),
        (TOPICS_ASSIGNED, SCHEMA_V1) => Event::TopicsAssigned(payload_of("TopicsAssigned", schema, payload)?),
        (TOPICS_UNASSIGNED, SCHEMA_V1) => Event::TopicsUnassigned(payload_of("TopicsUnassigned", schema, payload)?),
        (SEGMENT_SAVED_AS_LIST, SCHEMA_V1) => {
            Event::SegmentSavedAsList(payload_of("SegmentSavedAsList", schema, payload)?)
        }
        (LIST_MEMBERS_RECORDED, SCHEMA_V1) => {
            Event::ListMembersRecorded(payload_of("ListMembersRecorded", schema, payload)?)
        }
        (CAMPAIGN_CREATED, SCHEMA_V1) => Event::CampaignCreated(payload_of("CampaignCreated", schema, payload)?),
        (BULK_SEGMENTS_CREATED, SCHEMA_V1) => {
            Event::BulkSegmentsCreated(payload_of("BulkSegmentsCreated", schema, payload)?)
        }
        (JOB_CANCEL_REQUESTED, SCHEMA_V1) => {
            Event::JobCancelRequested(payload_of("JobCancelRequested", schema, payload)?)
        }
        (JOB_CANCELLED, SCHEMA_V1) => Event::JobCancelled(payload_of("JobCancelled", schema, payload)?),
        (SEGMENT_ROLLED_BACK, SCHEMA_V1) => Event::SegmentRolledBack(payload_of("SegmentRolledBack", schema, payload)?),
        _ => return Err(CodecError::UnknownType { code, schema }),
    };
    Ok(Envelope {
        event_id: header.event_id,
        command_id: header.command_id.to_owned(),
        aggregate: aggregate_of(&header)?,
        actor: header.actor.to_owned(),
        time: Timestamp::from_millis(header.time_ms),
        event,
    })
}

fn is_known(code: u16, schema: u8) -> bool {
    schema == SCHEMA_V1 && EVENT_TYPES.iter().any(|(c, _)| *c == code)
}

fn payload_of<'de, T: Deserialize<'de>>(
    type_name: &'static str,
    schema: u8,
    bytes: &'de [u8],
) -> Result<T, CodecError> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|source| CodecError::Payload { type_name, schema, source })?;
    // postcard stops where the struct ends; bytes after it mean the record
    // is not what its prefix claims, which must not pass silently.
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes { type_name, count: rest.len() });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_code_is_listed_once() {
        let mut codes: Vec<u16> = EVENT_TYPES.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), EVENT_TYPES.len());
    }

    #[test]
    fn unknown_types_and_versions_are_named() {
        let e = decode(&[1, 99, 0, 1]).unwrap_err();
        assert_eq!(e, CodecError::UnknownType { code: 99, schema: 1 });
        assert!(e.to_string().contains("99"), "{e}");
        assert!(matches!(decode(&[1, 1, 0, 2]), Err(CodecError::UnknownType { code: 1, schema: 2 })));
        assert!(matches!(decode(&[2, 1, 0, 1]), Err(CodecError::UnknownEnvelopeVersion(2))));
        assert!(matches!(decode(&[1, 1]), Err(CodecError::TooShort { len: 2 })));
    }
}
