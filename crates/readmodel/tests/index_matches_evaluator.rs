//! The membership index against the plain evaluator: random contacts from
//! small value domains (empty values, case and Unicode variants, boundary
//! dates and numbers), random sequences of creates, updates and deletes
//! applied through `ReadModel::apply`, then random criteria trees. Counts and
//! every member page must equal filtering the live contacts with
//! `Criteria::matches`, before and after the model is reopened (which
//! rebuilds the index from sled).
//!
//! Then saved segments' kept members (and the membership feed) against the
//! same evaluator, under random steps that mix contact changes, segment
//! definitions (some using the other segments: `in segment`, in chains)
//! and moves of a pinned clock.

use proptest::prelude::*;
use segmentd_domain::contact::{Contact, Email, Field, FieldKind};
use segmentd_domain::criteria::{Condition, Criteria, Operator, SegmentRef, Value};
use segmentd_domain::decimal::Decimal;
use segmentd_domain::event::{ContactCreated, ContactDeleted, ContactUpdated};
use segmentd_domain::time::{MILLIS_PER_DAY, Timestamp};
use segmentd_domain::{AggregateId, Envelope, Event};
use segmentd_log::Recorded;
use segmentd_readmodel::{OrgView, ReadModel};
use std::collections::BTreeMap;
use std::path::Path;

const ORG: &str = "acme";

/// The pinned clock of every query.
fn at() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-01T00:00:00Z").unwrap()
}

const TEXTS: &[&str] = &[
    "",
    "",
    "a",
    "A",
    "ab",
    "München",
    "MÜNCHEN",
    "münchen",
    "İstanbul",
    "istanbul",
    "ΣΑΣ",
    "σας",
    "\u{212A}",
    "k",
    "ß",
    "SS",
    "x y",
];
const PATTERNS: &[&str] =
    &["", "a", "A", "ün", "ÜN", "MÜ", "CHEN", "i", "İ", "\u{307}", "σ", "Σ", "ς", "\u{212A}", "s", "SS", "x ", "zz"];
const NAMES: &[&str] = &["ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal"];

fn text() -> impl Strategy<Value = String> {
    prop::sample::select(TEXTS).prop_map(str::to_owned)
}

fn integer() -> impl Strategy<Value = i64> {
    prop_oneof![4 => -2i64..4, 1 => prop::sample::select(vec![i64::MIN, i64::MAX])]
}

fn decimal() -> impl Strategy<Value = Decimal> {
    prop::sample::select(vec![-1_500_000i64, 0, 1_000_000_000, 1_000_010_000, i64::MAX]).prop_map(Decimal)
}

/// Instants around the query clock, on and beside whole-day boundaries.
fn instant() -> impl Strategy<Value = Timestamp> {
    let at = at().0;
    let day = MILLIS_PER_DAY;
    prop::sample::select(vec![at, at + 1, at - 1, at - day, at - day - 1, at - 2 * day, at - 30 * day, 0, -1])
        .prop_map(Timestamp)
}

fn contact(name: &'static str) -> impl Strategy<Value = Contact> {
    let texts = prop::collection::vec(text(), 8);
    let numbers = (
        prop::option::of(integer()),
        prop::option::of(integer()),
        prop::option::of(integer()),
        prop::option::of(integer()),
        prop::option::of(decimal()),
    );
    let times = (prop::option::of(instant()), prop::option::of(instant()), instant(), instant());
    let custom = prop::collection::btree_map(prop::sample::select(vec!["plan", "industry"]), text(), 0..3);
    (texts, numbers, times, custom).prop_map(move |(t, n, d, custom)| {
        let mut c = Contact::new(Email::parse(&format!("{name}@x.com")).unwrap(), d.2);
        [c.first_name, c.last_name, c.company, c.city, c.state, c.country, c.gender, c.lifecycle_stage] =
            t.try_into().unwrap();
        (c.contact_id, c.age, c.score, c.purchase_count, c.total_spent) = n;
        (c.last_purchase_at, c.last_opened_at, c.updated_at) = (d.0, d.1, d.3);
        c.custom = custom.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<BTreeMap<_, _>>();
        c
    })
}

#[derive(Clone, Debug)]
enum Change {
    Upsert(Box<Contact>),
    Delete(&'static str),
}

fn change() -> impl Strategy<Value = Change> {
    prop::sample::select(NAMES)
        .prop_flat_map(|name| prop_oneof![3 => contact(name).prop_map(|c| Change::Upsert(Box::new(c))), 1 => Just(Change::Delete(name))])
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        4 => prop::sample::select(Field::BUILTIN.to_vec()),
        1 => prop::sample::select(vec!["plan", "industry", "never"]).prop_map(|n| Field::Custom(n.to_owned())),
    ]
}

fn value(kind: FieldKind) -> BoxedStrategy<Value> {
    match kind {
        FieldKind::Text => text().prop_map(Value::Text).boxed(),
        FieldKind::Integer => integer().prop_map(Value::Integer).boxed(),
        FieldKind::Decimal => {
            prop_oneof![decimal().prop_map(Value::Decimal), integer().prop_map(Value::Integer)].boxed()
        }
        FieldKind::Time => instant().prop_map(Value::Time).boxed(),
    }
}

/// The operators a kind of field takes, or with `any` every operator.
fn operator(kind: FieldKind, any: bool) -> BoxedStrategy<Operator> {
    use Operator as O;
    let v = move || value(kind);
    let list = move || prop::collection::vec(value(kind), 1..4);
    let pattern = || prop::sample::select(PATTERNS).prop_map(str::to_owned);
    let common = prop_oneof![
        v().prop_map(O::Eq),
        v().prop_map(O::Ne),
        list().prop_map(O::In),
        list().prop_map(O::NotIn),
        Just(O::IsEmpty),
        Just(O::IsNotEmpty),
    ];
    let text = prop_oneof![
        pattern().prop_map(O::Contains),
        pattern().prop_map(O::NotContains),
        pattern().prop_map(O::StartsWith),
        pattern().prop_map(O::EndsWith),
    ];
    let ordered = prop_oneof![
        v().prop_map(O::Lt),
        v().prop_map(O::Le),
        v().prop_map(O::Gt),
        v().prop_map(O::Ge),
        (v(), v()).prop_map(|(a, b)| O::Between(a, b)),
    ];
    let time = prop_oneof![
        instant().prop_map(O::Before),
        instant().prop_map(O::After),
        (0u32..3).prop_map(O::WithinLastDays),
        (0u32..3).prop_map(O::MoreThanDaysAgo),
    ];
    match kind {
        _ if any => prop_oneof![common, text, ordered, time].boxed(),
        FieldKind::Text => prop_oneof![common, text].boxed(),
        FieldKind::Integer | FieldKind::Decimal => prop_oneof![common, ordered].boxed(),
        FieldKind::Time => prop_oneof![common, ordered, time].boxed(),
    }
}

/// Mostly conditions `Condition::new` accepts; some hand-built ones whose
/// operator or operand does not fit the field, which the evaluator still
/// answers (false, or true for the negative operators).
fn condition() -> impl Strategy<Value = Criteria> {
    let kinds = prop::sample::select(vec![FieldKind::Text, FieldKind::Integer, FieldKind::Decimal, FieldKind::Time]);
    (field(), kinds, 0..10u8).prop_flat_map(|(field, other_kind, roll)| {
        // One in ten picks any operator with operands of any kind.
        let (kind, any) = if roll == 0 { (other_kind, true) } else { (field.kind(), false) };
        operator(kind, any).prop_map(move |op| {
            let c = Condition::new(field.clone(), op.clone()).unwrap_or(Condition { field: field.clone(), op });
            Criteria::Condition(c)
        })
    })
}

fn criteria() -> impl Strategy<Value = Criteria> {
    condition().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Criteria::All),
            prop::collection::vec(inner.clone(), 1..4).prop_map(Criteria::Any),
            inner.prop_map(|c| Criteria::Not(Box::new(c))),
        ]
    })
}

/// The live contacts in member order, kept by hand: a new email takes the
/// next row, an update keeps its row, a delete frees it for good.
#[derive(Default)]
struct Expected {
    rows: Vec<Option<Contact>>,
}

impl Expected {
    fn row_of(&self, email: &str) -> Option<usize> {
        self.rows.iter().position(|c| c.as_ref().is_some_and(|c| c.email == email))
    }

    /// The event this change records, if it records one.
    fn apply(&mut self, change: &Change) -> Option<Event> {
        match change {
            Change::Upsert(c) => match self.row_of(&c.email) {
                Some(row) => {
                    self.rows[row] = Some((**c).clone());
                    Some(Event::ContactUpdated(ContactUpdated { contact: (**c).clone(), changed: vec![] }))
                }
                None => {
                    self.rows.push(Some((**c).clone()));
                    Some(Event::ContactCreated(ContactCreated { contact: (**c).clone() }))
                }
            },
            Change::Delete(name) => {
                let email = format!("{name}@x.com");
                let row = self.row_of(&email)?;
                self.rows[row] = None;
                Some(Event::ContactDeleted(ContactDeleted { email }))
            }
        }
    }

    fn matching(&self, criteria: &Criteria) -> Vec<String> {
        self.rows.iter().flatten().filter(|c| criteria.matches(c, at())).map(|c| c.email.clone()).collect()
    }
}

fn recorded(seq: u64, event: Event) -> Recorded {
    let email = match &event {
        Event::ContactCreated(e) => e.contact.email.clone(),
        Event::ContactUpdated(e) => e.contact.email.clone(),
        Event::ContactDeleted(e) => e.email.clone(),
        _ => unreachable!("only contact events are generated"),
    };
    Recorded {
        seq,
        envelope: Envelope {
            event_id: u128::from(seq),
            command_id: format!("cmd-{seq}"),
            aggregate: AggregateId::contact(ORG, &email),
            actor: "proptest".into(),
            time: Timestamp(1_750_000_000_000 + seq as i64),
            event,
        },
    }
}

/// Every page of `page` members, in order, as emails.
fn all_pages(view: &OrgView, criteria: &Criteria, page: usize) -> Result<Vec<String>, TestCaseError> {
    let mut emails = Vec::new();
    let mut after = None;
    loop {
        let members = view.members(criteria, at(), after, page);
        prop_assert!(members.contacts.len() <= page);
        emails.extend(members.contacts.iter().map(|c| c.email().to_owned()));
        match members.next_after {
            Some(row) => {
                prop_assert_eq!(members.contacts.len(), page, "a page short of full says no more follow");
                prop_assert!(after.is_none_or(|a| row > a), "paging goes forward");
                after = Some(row);
            }
            None => return Ok(emails),
        }
    }
}

fn check(model: &ReadModel, expected: &Expected, queries: &[Criteria], page: usize) -> Result<(), TestCaseError> {
    model.read(ORG, |view, _| {
        prop_assert_eq!(view.contact_count(), expected.rows.iter().flatten().count());
        for c in expected.rows.iter().flatten() {
            prop_assert_eq!(view.contact(&c.email), Some(c.clone()));
        }
        for q in queries {
            let want = expected.matching(q);
            prop_assert_eq!(view.count(q, at()), want.len() as u64, "count of {}", q);
            prop_assert_eq!(all_pages(view, q, page)?, want, "members of {}", q);
        }
        Ok(())
    })
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn index_answers_what_the_plain_evaluator_answers(
        changes in prop::collection::vec(change(), 0..40),
        batch in 1usize..8,
        queries in prop::collection::vec(criteria(), 1..8),
        page in 1usize..5,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Expected::default();
        let events: Vec<Recorded> = changes
            .iter()
            .filter_map(|ch| expected.apply(ch))
            .enumerate()
            .map(|(i, e)| recorded(i as u64 + 1, e))
            .collect();
        {
            let model = ReadModel::open(dir.path(), 1 << 20).unwrap();
            for chunk in events.chunks(batch) {
                model.apply(chunk).unwrap();
            }
            check(&model, &expected, &queries, page)?;
        }
        // Dropping the model flushed everything to disk, but a sled worker
        // thread may hold the directory's lock a moment longer: open a copy.
        // The index is rebuilt from what sled holds.
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let model = ReadModel::open(copy.path(), 1 << 20).unwrap();
        check(&model, &expected, &queries, page)?;
    }
}

/// A step of the membership property: a contact change, a saved segment
/// defined (created, or given new criteria) or deleted, or the clock moved.
#[derive(Clone, Debug)]
enum Step {
    Contact(Change),
    Define(usize, Criteria),
    Drop(usize),
    /// Milliseconds to move the pinned clock by (either way).
    Clock(i64),
}

/// Criteria a segment can store: their text form parses back. `in
/// segment J` here means the segment in slot J (see [`bind`]).
fn storable() -> impl Strategy<Value = Criteria> {
    let leaf = prop_oneof![
        4 => condition(),
        1 => (0u64..3).prop_map(|slot| Criteria::InSegment(SegmentRef::Id(slot))),
    ];
    let tree = leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Criteria::All),
            prop::collection::vec(inner.clone(), 1..4).prop_map(Criteria::Any),
            inner.prop_map(|c| Criteria::Not(Box::new(c))),
        ]
    });
    tree.prop_filter_map("stored as text", |c| Criteria::parse(&c.to_string()).ok())
}

/// The criteria to store in slot `slot`: `in segment J` becomes the id of
/// the segment in slot J when J is a lower slot that holds one (so no
/// cycle can form, as the catalogue ensures), else an id no segment has
/// (which matches no one).
fn bind(c: &Criteria, slot: usize, slots: &Slots) -> Criteria {
    match c {
        Criteria::All(children) => Criteria::All(children.iter().map(|c| bind(c, slot, slots)).collect()),
        Criteria::Any(children) => Criteria::Any(children.iter().map(|c| bind(c, slot, slots)).collect()),
        Criteria::Not(child) => Criteria::Not(Box::new(bind(child, slot, slots))),
        Criteria::InSegment(SegmentRef::Id(j)) => {
            let j = *j as usize;
            let id = match slots.get(j) {
                Some(Some((id, _, _))) if j < slot => *id,
                _ => 10_000 + j as u64,
            };
            Criteria::InSegment(SegmentRef::Id(id))
        }
        other => other.clone(),
    }
}

/// What the plain evaluator needs for `in segment`: the slots' criteria by id.
fn matches(c: &Contact, criteria: &Criteria, slots: &Slots, now: Timestamp) -> bool {
    let lookup = |id: u64| slots.iter().flatten().find(|(i, _, _)| *i == id).map(|(_, _, c)| c);
    criteria.matches_in(c, now, &lookup)
}

fn step() -> impl Strategy<Value = Step> {
    let day = MILLIS_PER_DAY;
    prop_oneof![
        6 => change().prop_map(Step::Contact),
        2 => (0usize..3, storable()).prop_map(|(slot, c)| Step::Define(slot, c)),
        1 => (0usize..3).prop_map(Step::Drop),
        2 => prop::sample::select(vec![1, -1, day, day + 1, 2 * day, -day, 30 * day]).prop_map(Step::Clock),
    ]
}

/// The segments the steps have defined, by slot: (id, name, criteria).
type Slots = [Option<(u64, String, Criteria)>; 3];

fn segment_event(seq: u64, event: Event) -> Recorded {
    Recorded {
        seq,
        envelope: Envelope {
            event_id: u128::from(seq),
            command_id: format!("cmd-{seq}"),
            aggregate: AggregateId::segment_catalog(ORG),
            actor: "proptest".into(),
            time: Timestamp(1_750_000_000_000 + seq as i64),
            event,
        },
    }
}

/// Replays a watch into member sets, checking each change names an event
/// that could have caused it.
fn replay_feed(
    watch: &mut segmentd_readmodel::Watch,
    log: &[Recorded],
    members: &mut BTreeMap<u64, std::collections::BTreeSet<String>>,
) -> Result<(), TestCaseError> {
    use segmentd_readmodel::Cause;
    while let Some(record) = watch.try_next().unwrap() {
        prop_assert_eq!(&*record.org, ORG);
        let set = members.entry(record.segment).or_default();
        for change in &record.changes {
            let email = change.contact.email().to_owned();
            let cause = log.iter().find(|r| r.seq == change.seq);
            match record.cause {
                Cause::ContactChanged => {
                    let cause = cause.expect("a contact change names a recorded event");
                    prop_assert_eq!(&cause.envelope.aggregate, &AggregateId::contact(ORG, &email));
                }
                Cause::SegmentDefined | Cause::SegmentDeleted => {
                    let cause = cause.expect("a definition change names a recorded event");
                    prop_assert_eq!(&cause.envelope.aggregate, &AggregateId::segment_catalog(ORG));
                }
                Cause::TimePassed => {}
            }
            if change.entered {
                prop_assert!(set.insert(email), "entered twice");
            } else {
                prop_assert!(set.remove(&email), "left without being a member");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    /// Saved segments' kept members equal the plain evaluator at the pinned
    /// clock after every batch of events and every move of the clock, and
    /// the change feed, replayed from the start, arrives at the same sets.
    #[test]
    fn kept_members_follow_every_event_and_the_clock(
        steps in prop::collection::vec(step(), 0..48),
        // 64: whole runs of contact events go through the index at once.
        batch in prop_oneof![1usize..6, Just(64)],
        page in 1usize..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let clock = segmentd_readmodel::Clock::pinned(at());
        let model = ReadModel::open_with_clock(dir.path(), 1 << 20, clock.clone()).unwrap();
        let filter = segmentd_readmodel::WatchFilter { org: Some(ORG.into()), segments: Default::default(), from: 1 };
        let mut watch = model.watch_membership(filter).unwrap();
        let mut expected = Expected::default();
        let mut slots: Slots = Default::default();
        let mut next_id = 0u64;
        let mut log: Vec<Recorded> = Vec::new();
        let mut unapplied: Vec<Recorded> = Vec::new();
        let mut fed: BTreeMap<u64, std::collections::BTreeSet<String>> = BTreeMap::new();
        let check_all = |model: &ReadModel, expected: &Expected, slots: &Slots| -> Result<(), TestCaseError> {
            let now = clock.now();
            model.read(ORG, |view, _| {
                for (id, _, criteria) in slots.iter().flatten() {
                    let want: Vec<String> = expected
                        .rows.iter().flatten().filter(|c| matches(c, criteria, slots, now)).map(|c| c.email.clone()).collect();
                    prop_assert_eq!(view.segment_count(*id, criteria, now), want.len() as u64, "count of {}", criteria);
                    let mut got = Vec::new();
                    let mut after = None;
                    loop {
                        let members = view.segment_members(*id, criteria, now, after, page);
                        got.extend(members.contacts.iter().map(|c| c.email().to_owned()));
                        match members.next_after {
                            Some(row) => after = Some(row),
                            None => break,
                        }
                    }
                    prop_assert_eq!(&got, &want, "members of {}", criteria);
                    for c in expected.rows.iter().flatten() {
                        prop_assert_eq!(view.is_member(*id, &c.email), Some(want.contains(&c.email)));
                    }
                }
                Ok(())
            })
        };
        let flush = |model: &ReadModel, unapplied: &mut Vec<Recorded>| {
            for chunk in unapplied.chunks(batch) {
                model.apply(chunk).unwrap();
            }
            unapplied.clear();
        };
        for step in steps {
            let seq = log.len() as u64 + 1;
            let event = match step {
                Step::Contact(change) => expected.apply(&change).map(|e| recorded(seq, e)),
                Step::Define(slot, criteria) => {
                    let criteria = bind(&criteria, slot, &slots);
                    let text = criteria.to_string();
                    Some(match &mut slots[slot] {
                        Some((id, _, old)) => {
                            let from = old.to_string();
                            *old = criteria;
                            segment_event(seq, Event::SegmentUpdated(segmentd_domain::event::SegmentUpdated {
                                segment_id: *id,
                                version: seq,
                                name: None,
                                criteria: Some(segmentd_domain::event::Change { from, to: text }),
                            }))
                        }
                        empty => {
                            next_id += 1;
                            let name = format!("s{next_id}");
                            *empty = Some((next_id, name.clone(), criteria));
                            segment_event(seq, Event::SegmentCreated(segmentd_domain::event::SegmentCreated {
                                segment_id: next_id,
                                name,
                                criteria: text,
                            }))
                        }
                    })
                }
                // The catalogue refuses to delete a segment others use.
                Step::Drop(slot)
                    if slots[slot].as_ref().is_some_and(|(id, _, _)| {
                        slots.iter().flatten().any(|(_, _, c)| c.segment_ids().contains(id))
                    }) =>
                {
                    None
                }
                Step::Drop(slot) => slots[slot].take().map(|(id, name, _)| {
                    segment_event(seq, Event::SegmentDeleted(segmentd_domain::event::SegmentDeleted { segment_id: id, name }))
                }),
                Step::Clock(ms) => {
                    flush(&model, &mut unapplied);
                    clock.set(Timestamp(clock.now().0 + ms));
                    model.advance_clock();
                    check_all(&model, &expected, &slots)?;
                    None
                }
            };
            if let Some(rec) = event {
                log.push(rec.clone());
                unapplied.push(rec);
            }
        }
        flush(&model, &mut unapplied);
        check_all(&model, &expected, &slots)?;
        replay_feed(&mut watch, &log, &mut fed)?;
        let now = clock.now();
        for (id, _, criteria) in slots.iter().flatten() {
            let want: std::collections::BTreeSet<String> =
                expected.rows.iter().flatten().filter(|c| matches(c, criteria, &slots, now)).map(|c| c.email.clone()).collect();
            prop_assert_eq!(fed.remove(id).unwrap_or_default(), want, "feed of segment {}", id);
        }
        // Deleted segments' members all left.
        prop_assert!(fed.values().all(|s| s.is_empty()), "deleted segments keep no members: {:?}", fed);
    }
}
