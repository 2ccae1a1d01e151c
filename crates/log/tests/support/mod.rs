//! One realistic, deterministic sample envelope per released event type,
//! shared by the golden fixture test and the codec property tests. Changing
//! a sample changes its golden bytes: add new samples, never edit old ones.

use segmentd_domain::event::{
    Activity, ActivityRecorded, BulkChild, BulkSegmentsCreated, CampaignCreated, Change, ContactCreated,
    ContactDeleted, ContactUpdated, JobAbandoned, JobCancelRequested, JobCancelled, JobCompleted, JobKind,
    JobMembersListed, JobProgressed, JobStarted, LegacySegmentImported, ListMembersRecorded, ScoreReset, SegmentCloned,
    SegmentCreated, SegmentDeleted, SegmentRolledBack, SegmentSavedAsList, SegmentUpdated, TopicCreated,
    TopicsAssigned, TopicsUnassigned,
};
use segmentd_domain::{AggregateId, Contact, Decimal, Envelope, Event, Timestamp};
use std::collections::BTreeMap;

const ORG: &str = "acme-gmbh";
const EMAIL: &str = "zoe.lukasiewicz@example.de";
const JOB: &str = "reset-2025-06-02.q2";
const CRITERIA: &str = r#"country in ("DE", "FR") and (age between 25 and 34 or score >= 150)"#;
const CRITERIA_2: &str = r#"country in ("DE", "FR", "AT") and (age between 25 and 34 or score >= 150)"#;

fn at(rfc3339: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).expect("sample timestamps are valid")
}

fn contact() -> Contact {
    Contact {
        email: EMAIL.into(),
        contact_id: Some(100_042),
        first_name: "Zoë".into(),
        last_name: "Łukasiewicz-Øster".into(),
        company: "Müller & Söhne GmbH".into(),
        city: "München".into(),
        state: "Bayern".into(),
        country: "DE".into(),
        age: Some(31),
        gender: "female".into(),
        score: Some(150),
        lifecycle_stage: "customer".into(),
        total_spent: Some(Decimal::parse("1234.56").expect("valid decimal")),
        purchase_count: Some(7),
        last_purchase_at: Some(at("2025-03-14T15:09:26.535Z")),
        last_opened_at: Some(at("2025-06-01T08:30:00+02:00")),
        added_at: at("2023-11-05T10:00:00Z"),
        updated_at: at("2025-06-02T12:00:00Z"),
        custom: BTreeMap::from([
            ("plan".into(), "pro".into()),
            ("favourite_emoji".into(), "🦀".into()),
            ("notes".into(), "日本語のメモ, \"quoted\" and a\nnewline".into()),
            ("discount-rate".into(), "-0.125".into()),
        ]),
    }
}

fn envelope(n: u128, aggregate: AggregateId, event: Event) -> Envelope {
    Envelope {
        // A UUIDv7-shaped id, distinct per sample.
        event_id: 0x0197_2a4c_5e10_7b3d_9f21_6c8e_4d00_0000 | n,
        command_id: format!("9c1f7a2e-golden-{n:04}"),
        aggregate,
        actor: "api-key:crm-sync".into(),
        time: at("2025-06-02T12:00:00.123Z"),
        event,
    }
}

/// Every released event type once, in [`segmentd_log::codec::EVENT_TYPES`] order.
pub(crate) fn samples() -> Vec<Envelope> {
    let person = || AggregateId::contact(ORG, EMAIL);
    let catalog = || AggregateId::segment_catalog(ORG);
    let job = || AggregateId::job(ORG, JOB);
    let mut reset = contact();
    reset.score = Some(0);
    reset.updated_at = at("2025-06-02T12:00:00.123Z");
    let mut bought = contact();
    bought.purchase_count = Some(8);
    bought.total_spent = Some(Decimal::parse("1284.46").expect("valid decimal"));
    bought.last_purchase_at = Some(at("2025-06-02T11:58:00Z"));
    let mut updated = contact();
    updated.score = Some(175);
    updated.custom.insert("plan".into(), "enterprise".into());
    updated.updated_at = at("2025-06-03T09:15:00Z");
    vec![
        envelope(1, person(), Event::ContactCreated(ContactCreated { contact: contact() })),
        envelope(
            2,
            person(),
            Event::ContactUpdated(ContactUpdated {
                contact: updated,
                changed: vec!["score".into(), "custom.plan".into()],
            }),
        ),
        envelope(3, person(), Event::ContactDeleted(ContactDeleted { email: EMAIL.into() })),
        envelope(
            4,
            catalog(),
            Event::SegmentCreated(SegmentCreated {
                segment_id: 42,
                name: "Young high scorers (DE/FR)".into(),
                criteria: CRITERIA.into(),
            }),
        ),
        envelope(
            5,
            catalog(),
            Event::SegmentUpdated(SegmentUpdated {
                segment_id: 42,
                version: 2,
                name: Some(Change {
                    from: "Young high scorers (DE/FR)".into(),
                    to: "Junge Vielpunkter – DACH/FR".into(),
                }),
                criteria: Some(Change { from: CRITERIA.into(), to: CRITERIA_2.into() }),
            }),
        ),
        envelope(
            6,
            catalog(),
            Event::SegmentDeleted(SegmentDeleted { segment_id: 42, name: "Junge Vielpunkter – DACH/FR".into() }),
        ),
        envelope(
            7,
            job(),
            Event::JobStarted(JobStarted {
                job_id: JOB.into(),
                kind: JobKind::ResetScores { reason: "Scoring model v2 – Übergang, ticket #4711".into() },
                segment_id: 42,
                segment_name: "Young high scorers (DE/FR)".into(),
                criteria: CRITERIA.into(),
                position: 1_234_567,
                clock: at("2025-06-02T12:00:00.100Z"),
                member_count: 3,
                batch_size: 256,
            }),
        ),
        envelope(
            8,
            job(),
            Event::JobMembersListed(JobMembersListed {
                first_index: 0,
                emails: vec![EMAIL.into(), "ann@example.com".into(), "bob+news@example.org".into()],
            }),
        ),
        envelope(9, job(), Event::JobProgressed(JobProgressed { next_index: 2, changed: 1, skipped: 1 })),
        envelope(10, job(), Event::JobCompleted(JobCompleted { changed: 2, skipped: 1 })),
        envelope(
            11,
            job(),
            Event::JobAbandoned(JobAbandoned { reason: "the recorded member list holds 2 of 3 emails".into() }),
        ),
        envelope(
            12,
            person(),
            Event::ScoreReset(ScoreReset {
                contact: reset,
                previous_score: Some(150),
                reason: "Scoring model v2 – Übergang, ticket #4711".into(),
                job_id: JOB.into(),
            }),
        ),
        envelope(
            13,
            person(),
            Event::ActivityRecorded(ActivityRecorded {
                contact: bought,
                activity: Activity::Purchase { amount: Decimal::parse("49.90").expect("valid decimal") },
                at: at("2025-06-02T11:58:00Z"),
            }),
        ),
        envelope(
            113,
            catalog(),
            Event::LegacySegmentImported(LegacySegmentImported {
                segment_id: 43,
                name: "Alte Liste: Großkunden".into(),
                criteria: r#"lifecycle_stage = "customer" and total_spent >= 1000"#.into(),
                list_name: "Newsletter DE (2019)".into(),
            }),
        ),
        envelope(
            114,
            catalog(),
            Event::SegmentCloned(SegmentCloned {
                segment_id: 44,
                source_id: 43,
                name: "Großkunden – org-weit".into(),
                criteria: r#"lifecycle_stage = "customer" and total_spent >= 1500"#.into(),
            }),
        ),
        envelope(115, catalog(), Event::TopicCreated(TopicCreated { topic_id: 3, name: "Frühjahrsaktion".into() })),
        envelope(116, catalog(), Event::TopicsAssigned(TopicsAssigned { segment_id: 44, topic_ids: vec![3, 5] })),
        envelope(117, catalog(), Event::TopicsUnassigned(TopicsUnassigned { segment_id: 44, topic_ids: vec![5] })),
        envelope(
            118,
            catalog(),
            Event::SegmentSavedAsList(SegmentSavedAsList {
                list_id: 7,
                name: "Großkunden Juni 2025".into(),
                segment_id: 44,
                criteria: r#"lifecycle_stage = "customer" and total_spent >= 1500"#.into(),
                at_sequence: 1_234_567,
                member_count: 2,
            }),
        ),
        envelope(
            119,
            AggregateId::list(ORG, 7),
            Event::ListMembersRecorded(ListMembersRecorded {
                list_id: 7,
                emails: vec![EMAIL.into(), "o'brien+news@example.ie".into()],
            }),
        ),
        envelope(
            130,
            catalog(),
            Event::CampaignCreated(CampaignCreated {
                campaign_id: 2,
                name: "Sommer-Sale 2025".into(),
                subject: "Nur heute: 20 % auf alles – für Sie, Zoë".into(),
                sender: "news@acme-gmbh.example".into(),
                segment_id: 44,
            }),
        ),
        envelope(
            131,
            catalog(),
            Event::BulkSegmentsCreated(BulkSegmentsCreated {
                bulk_id: 1,
                base_name: "Nach Land".into(),
                field: "country".into(),
                children: vec![
                    BulkChild {
                        segment_id: 45,
                        name: "Nach Land - DE".into(),
                        value: "DE".into(),
                        criteria: r#"country = "DE""#.into(),
                    },
                    BulkChild {
                        segment_id: 46,
                        name: "Nach Land - Österreich".into(),
                        value: "Österreich".into(),
                        criteria: r#"country = "Österreich""#.into(),
                    },
                ],
            }),
        ),
        envelope(
            132,
            job(),
            Event::JobCancelRequested(JobCancelRequested { reason: "wrong segment – Kampagne gestoppt".into() }),
        ),
        envelope(133, job(), Event::JobCancelled(JobCancelled { next_index: 2, changed: 1, skipped: 1 })),
        envelope(
            134,
            catalog(),
            Event::SegmentRolledBack(SegmentRolledBack {
                segment_id: 42,
                version: 4,
                to_version: 1,
                name: Some(Change { from: "Junge Kunden (DE/FR/AT)".into(), to: "Young high scorers (DE/FR)".into() }),
                criteria: Some(Change { from: CRITERIA_2.into(), to: CRITERIA.into() }),
            }),
        ),
    ]
}
