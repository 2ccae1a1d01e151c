//! Fuzz targets for the event decoder ([`codec::decode`] and the header-only
//! readers), run as proptest properties (cargo-fuzz needs a nightly toolchain;
//! these run on stable, in `cargo test`).
//!
//! Inputs: arbitrary bytes; arbitrary bodies behind a valid prefix; and valid
//! encodings of random events of every released type, then bit-flipped,
//! truncated, extended, spliced, or with a length or count rewritten to claim
//! up to 2⁶⁴ bytes. The decoder must never panic; what it accepts must
//! re-encode to bytes that decode to the same envelope; a random event must
//! decode to itself; a strict prefix or an extension of a valid encoding must
//! be refused.
//!
//! **Memory is bounded by the allocator**: this test binary runs on an
//! allocator capped at [`MEMORY_LIMIT`], so a decoder that believed a length
//! prefix and reserved gigabytes would abort the binary (`memory allocation of
//! N bytes failed`) instead of passing.
//!
//! `FUZZ_CASES=N` runs N cases per target instead of the few hundred to a thousand that
//! keep `cargo test` short (see README, Production).

mod support;

use cap::Cap;
use proptest::prelude::*;
use proptest::sample::Index;
use segmentd_domain::event::{
    Activity, ActivityRecorded, BulkChild, BulkSegmentsCreated, CampaignCreated, Change, ContactCreated,
    ContactDeleted, ContactUpdated, JobAbandoned, JobCancelRequested, JobCancelled, JobCompleted, JobKind,
    JobMembersListed, JobProgressed, JobStarted, LegacySegmentImported, ListMembersRecorded, ScoreReset, SegmentCloned,
    SegmentCreated, SegmentDeleted, SegmentRolledBack, SegmentSavedAsList, SegmentUpdated, TopicCreated,
    TopicsAssigned, TopicsUnassigned,
};
use segmentd_domain::{AggregateId, AggregateKind, Contact, Decimal, Envelope, Event, Timestamp};
use segmentd_log::codec::{self, EVENT_TYPES, PREFIX_LEN};
use std::alloc::System;

/// Far more than decoding any input here needs (serde reserves at most 1 MiB
/// for a sequence whatever length it claims), far less than a believed
/// length prefix would take.
const MEMORY_LIMIT: usize = 256 * 1024 * 1024;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, MEMORY_LIMIT);

/// Cases per target: `FUZZ_CASES` when set (a long run), else `default`.
fn config(default: u32) -> ProptestConfig {
    let cases = match std::env::var("FUZZ_CASES") {
        Ok(n) => n.parse().unwrap_or_else(|_| panic!("FUZZ_CASES must be a whole number, not {n:?}")),
        Err(_) => default,
    };
    ProptestConfig { cases, max_shrink_iters: 4096, ..ProptestConfig::default() }
}

/// What every input must satisfy: no panic (the test would fail), readers
/// that agree with each other, and anything accepted is stable.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let header = codec::decode_header(bytes);
    let aggregate = codec::decode_aggregate(bytes);
    let decoded = codec::decode(bytes);
    if let Ok(env) = decoded {
        prop_assert_eq!(aggregate, Ok(env.aggregate.clone()));
        let (code, schema, header, _) = header.expect("decode accepted the bytes, so their header reads");
        prop_assert_eq!(code, codec::event_type_code(&env.event));
        prop_assert_eq!(schema, codec::SCHEMA_V1);
        prop_assert_eq!(header.event_id, env.event_id);
        prop_assert_eq!(header.time_ms, env.time.millis());
        let again = codec::encode(&env);
        prop_assert_eq!(codec::decode(&again), Ok(env));
    }
    Ok(())
}

// ------------------------------------------------------------ random events

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        1 => "[a-z0-9@.-]{0,24}",
        1 => prop::collection::vec(any::<char>(), 0..300).prop_map(String::from_iter),
    ]
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..12)
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    any::<i64>().prop_map(Timestamp)
}

fn contact() -> impl Strategy<Value = Contact> {
    let names = (text(), text(), text(), text(), text(), text(), text(), text(), text());
    let numbers = (
        any::<Option<i64>>(),
        any::<Option<i64>>(),
        any::<Option<i64>>(),
        any::<Option<i64>>().prop_map(|d| d.map(Decimal)),
        any::<Option<i64>>(),
    );
    let times = (
        prop::option::of(timestamp()),
        prop::option::of(timestamp()),
        timestamp(),
        timestamp(),
        prop::collection::btree_map(text(), text(), 0..6),
    );
    (text(), names, numbers, times).prop_map(
        |(
            email,
            (first_name, last_name, company, city, state, country, gender, lifecycle_stage, _),
            (contact_id, age, score, total_spent, purchase_count),
            (last_purchase_at, last_opened_at, added_at, updated_at, custom),
        )| Contact {
            email,
            contact_id,
            first_name,
            last_name,
            company,
            city,
            state,
            country,
            age,
            gender,
            score,
            lifecycle_stage,
            total_spent,
            purchase_count,
            last_purchase_at,
            last_opened_at,
            added_at,
            updated_at,
            custom,
        },
    )
}

fn change() -> impl Strategy<Value = Option<Change>> {
    prop::option::of((text(), text()).prop_map(|(from, to)| Change { from, to }))
}

fn job_kind() -> impl Strategy<Value = JobKind> {
    prop_oneof![
        (text(), text()).prop_map(|(field, value)| JobKind::MassUpdate { field, value }),
        Just(JobKind::DeleteContacts),
        text().prop_map(|reason| JobKind::ResetScores { reason }),
    ]
}

fn activity() -> impl Strategy<Value = Activity> {
    prop_oneof![
        Just(Activity::EmailOpened),
        text().prop_map(|url| Activity::LinkClicked { url }),
        any::<i64>().prop_map(|v| Activity::Purchase { amount: Decimal(v) }),
    ]
}

/// One event of every released type, with random contents.
fn event() -> impl Strategy<Value = Event> {
    let u = any::<u64>;
    prop_oneof![
        contact().prop_map(|contact| Event::ContactCreated(ContactCreated { contact })),
        (contact(), texts()).prop_map(|(contact, changed)| Event::ContactUpdated(ContactUpdated { contact, changed })),
        text().prop_map(|email| Event::ContactDeleted(ContactDeleted { email })),
        (u(), text(), text()).prop_map(|(segment_id, name, criteria)| Event::SegmentCreated(SegmentCreated {
            segment_id,
            name,
            criteria
        })),
        (u(), u(), change(), change()).prop_map(|(segment_id, version, name, criteria)| {
            Event::SegmentUpdated(SegmentUpdated { segment_id, version, name, criteria })
        }),
        (u(), u(), u(), change(), change()).prop_map(|(segment_id, version, to_version, name, criteria)| {
            Event::SegmentRolledBack(SegmentRolledBack { segment_id, version, to_version, name, criteria })
        }),
        (u(), text()).prop_map(|(segment_id, name)| Event::SegmentDeleted(SegmentDeleted { segment_id, name })),
        (text(), job_kind(), u(), text(), text(), u(), timestamp(), u(), any::<u32>()).prop_map(
            |(job_id, kind, segment_id, segment_name, criteria, position, clock, member_count, batch_size)| {
                Event::JobStarted(JobStarted {
                    job_id,
                    kind,
                    segment_id,
                    segment_name,
                    criteria,
                    position,
                    clock,
                    member_count,
                    batch_size,
                })
            }
        ),
        (u(), texts())
            .prop_map(|(first_index, emails)| Event::JobMembersListed(JobMembersListed { first_index, emails })),
        (u(), u(), u()).prop_map(|(next_index, changed, skipped)| Event::JobProgressed(JobProgressed {
            next_index,
            changed,
            skipped
        })),
        (u(), u()).prop_map(|(changed, skipped)| Event::JobCompleted(JobCompleted { changed, skipped })),
        text().prop_map(|reason| Event::JobAbandoned(JobAbandoned { reason })),
        text().prop_map(|reason| Event::JobCancelRequested(JobCancelRequested { reason })),
        (u(), u(), u()).prop_map(|(next_index, changed, skipped)| Event::JobCancelled(JobCancelled {
            next_index,
            changed,
            skipped
        })),
        (contact(), any::<Option<i64>>(), text(), text()).prop_map(|(contact, previous_score, reason, job_id)| {
            Event::ScoreReset(ScoreReset { contact, previous_score, reason, job_id })
        }),
        (contact(), activity(), timestamp())
            .prop_map(|(contact, activity, at)| Event::ActivityRecorded(ActivityRecorded { contact, activity, at })),
        (u(), text(), text(), text()).prop_map(|(segment_id, name, criteria, list_name)| {
            Event::LegacySegmentImported(LegacySegmentImported { segment_id, name, criteria, list_name })
        }),
        (u(), u(), text(), text()).prop_map(|(segment_id, source_id, name, criteria)| {
            Event::SegmentCloned(SegmentCloned { segment_id, source_id, name, criteria })
        }),
        (u(), text()).prop_map(|(topic_id, name)| Event::TopicCreated(TopicCreated { topic_id, name })),
        (u(), prop::collection::vec(u(), 0..20))
            .prop_map(|(segment_id, topic_ids)| Event::TopicsAssigned(TopicsAssigned { segment_id, topic_ids })),
        (u(), prop::collection::vec(u(), 0..20))
            .prop_map(|(segment_id, topic_ids)| Event::TopicsUnassigned(TopicsUnassigned { segment_id, topic_ids })),
        (u(), text(), u(), text(), u(), u()).prop_map(
            |(list_id, name, segment_id, criteria, at_sequence, member_count)| {
                Event::SegmentSavedAsList(SegmentSavedAsList {
                    list_id,
                    name,
                    segment_id,
                    criteria,
                    at_sequence,
                    member_count,
                })
            }
        ),
        (u(), texts())
            .prop_map(|(list_id, emails)| Event::ListMembersRecorded(ListMembersRecorded { list_id, emails })),
        (u(), text(), text(), text(), u()).prop_map(|(campaign_id, name, subject, sender, segment_id)| {
            Event::CampaignCreated(CampaignCreated { campaign_id, name, subject, sender, segment_id })
        }),
        (
            u(),
            text(),
            text(),
            prop::collection::vec(
                (u(), text(), text(), text()).prop_map(|(segment_id, name, value, criteria)| BulkChild {
                    segment_id,
                    name,
                    value,
                    criteria
                }),
                0..8
            )
        )
            .prop_map(|(bulk_id, base_name, field, children)| {
                Event::BulkSegmentsCreated(BulkSegmentsCreated { bulk_id, base_name, field, children })
            }),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    let kind = prop::sample::select(vec![
        AggregateKind::Contact,
        AggregateKind::Segments,
        AggregateKind::Job,
        AggregateKind::List,
    ]);
    (any::<u128>(), text(), (text(), kind, text()), text(), timestamp(), event()).prop_map(
        |(event_id, command_id, (org, kind, id), actor, time, event)| Envelope {
            event_id,
            command_id,
            aggregate: AggregateId { org, kind, id },
            actor,
            time,
            event,
        },
    )
}

// ---------------------------------------------------------------- mutations

/// postcard's variable-length integer: 7 bits a byte, low bits first.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Extend(Vec<u8>),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    /// Overwrites the bytes at a position with a varint: wherever it lands
    /// on a string length, a sequence count or an option tag, it claims that
    /// much.
    Claim(Index, u64),
    /// Copies a run of bytes from another position, as a torn write might.
    Splice(Index, Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let huge = prop_oneof![
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        Just(1u64 << 32),
        Just(4 * 1024 * 1024 * 1024),
        any::<u64>(),
        0u64..1024,
    ];
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Mutation::SetByte(at, b)),
        any::<Index>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..32).prop_map(Mutation::Extend),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, b)| Mutation::Insert(at, b)),
        (any::<Index>(), 1usize..16).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<Index>(), huge).prop_map(|(at, n)| Mutation::Claim(at, n)),
        (any::<Index>(), any::<Index>(), 1usize..32).prop_map(|(from, to, n)| Mutation::Splice(from, to, n)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len) };
    match m {
        Mutation::FlipBit(i, bit) if !bytes.is_empty() => {
            let i = at(i, bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Mutation::SetByte(i, b) if !bytes.is_empty() => {
            let i = at(i, bytes.len());
            bytes[i] = *b;
        }
        Mutation::FlipBit(..) | Mutation::SetByte(..) => {}
        Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len() + 1)),
        Mutation::Extend(extra) => bytes.extend_from_slice(extra),
        Mutation::Insert(i, extra) => {
            let i = at(i, bytes.len() + 1);
            bytes.splice(i..i, extra.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = at(i, bytes.len() + 1);
            bytes.drain(i..(i + n).min(bytes.len()));
        }
        Mutation::Claim(i, n) => {
            let i = at(i, bytes.len() + 1);
            let claim = varint(*n);
            let end = (i + claim.len()).min(bytes.len());
            bytes.splice(i..end, claim);
        }
        Mutation::Splice(from, to, n) => {
            let from = at(from, bytes.len());
            let run: Vec<u8> = bytes[from..(from + n).min(bytes.len())].to_vec();
            let to = at(to, bytes.len() + 1);
            let end = (to + run.len()).min(bytes.len());
            bytes.splice(to..end, run);
        }
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        check(&bytes)?;
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_prefix(
        type_index in 0..EVENT_TYPES.len(),
        body in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let code = EVENT_TYPES[type_index].0.to_le_bytes();
        let mut bytes = vec![codec::ENVELOPE_VERSION, code[0], code[1], codec::SCHEMA_V1];
        bytes.extend_from_slice(&body);
        check(&bytes)?;
    }

    #[test]
    fn mutated_golden_samples(which in 0..EVENT_TYPES.len(), mutations in prop::collection::vec(mutation(), 1..6)) {
        let mut bytes = codec::encode(&support::samples()[which]);
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        check(&bytes)?;
    }
}

proptest! {
    // A random event takes longer to generate than random bytes.
    #![proptest_config(config(256))]

    #[test]
    fn random_events_decode_to_themselves(env in envelope()) {
        let bytes = codec::encode(&env);
        prop_assert_eq!(codec::decode_aggregate(&bytes), Ok(env.aggregate.clone()));
        prop_assert_eq!(codec::decode(&bytes), Ok(env));
        check(&bytes)?;
    }

    #[test]
    fn strict_prefixes_and_extensions_of_random_events_are_refused(
        env in envelope(),
        cut in any::<Index>(),
        extra in prop::collection::vec(any::<u8>(), 1..32),
    ) {
        let bytes = codec::encode(&env);
        let cut = cut.index(bytes.len());
        prop_assert!(codec::decode(&bytes[..cut]).is_err(), "a prefix of {} of {} bytes decoded", cut, bytes.len());
        let mut longer = bytes.clone();
        longer.extend_from_slice(&extra);
        prop_assert!(codec::decode(&longer).is_err(), "{} extra bytes decoded", extra.len());
    }

    #[test]
    fn mutated_random_events(env in envelope(), mutations in prop::collection::vec(mutation(), 1..6)) {
        let mut bytes = codec::encode(&env);
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        check(&bytes)?;
    }
}

#[test]
fn the_allocator_refuses_what_a_believed_length_would_reserve() {
    // Without this the properties above would prove nothing about memory.
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve(MEMORY_LIMIT).is_err());
    assert!(v.try_reserve(1024).is_ok());
}

#[test]
fn a_string_claiming_four_gigabytes_is_refused() {
    // The command id is the header's first string, right after the event id
    // (a u128 varint); claim 4 GiB for it, then u64::MAX.
    for claim in [4 * 1024 * 1024 * 1024, u64::MAX] {
        let env = &support::samples()[0];
        let bytes = codec::encode(env);
        let mut id_len = 0;
        while bytes[PREFIX_LEN + id_len] & 0x80 != 0 {
            id_len += 1;
        }
        let at = PREFIX_LEN + id_len + 1;
        let mut bad = bytes[..at].to_vec();
        bad.extend_from_slice(&varint(claim));
        bad.extend_from_slice(&bytes[at + 1..]);
        assert!(matches!(codec::decode(&bad), Err(codec::CodecError::Header(_))), "{claim}");
        assert!(codec::decode_aggregate(&bad).is_err());
    }
}

#[test]
fn a_list_claiming_four_billion_members_is_refused() {
    // JobMembersListed: `first_index` (a varint), then the emails' count.
    let sample = support::samples().into_iter().find(|e| matches!(e.event, Event::JobMembersListed(_))).unwrap();
    let bytes = codec::encode(&sample);
    let (_, _, _, payload) = codec::decode_header(&bytes).unwrap();
    let payload_at = bytes.len() - payload.len();
    let mut index_len = 0;
    while payload[index_len] & 0x80 != 0 {
        index_len += 1;
    }
    let count_at = payload_at + index_len + 1;
    let mut bad = bytes[..count_at].to_vec();
    bad.extend_from_slice(&varint(u64::from(u32::MAX)));
    bad.extend_from_slice(&bytes[count_at + 1..]);
    assert!(matches!(codec::decode(&bad), Err(codec::CodecError::Payload { .. })));
}
