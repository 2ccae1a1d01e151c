//! One realistic, deterministic sample envelope per released event type,
//! shared by the golden fixture test and the codec property tests. Changing
//! a sample changes its golden bytes: add new samples, never edit old ones.

use segmentd_domain::event::{
    Change, ContactCreated, ContactDeleted, ContactUpdated, SegmentCreated, SegmentDeleted, SegmentUpdated,
};
use segmentd_domain::{AggregateId, Contact, Decimal, Envelope, Event, Timestamp};
use std::collections::BTreeMap;

const ORG: &str = "acme-gmbh";
const EMAIL: &str = "zoe.lukasiewicz@example.de";
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
    ]
}
