//! Why a contact is or is not a member of a segment: the criteria tree
//! evaluated for that contact (each condition with the contact's value and
//! its result, each group with its result), and, from the history, the
//! event since which the answer has been what it is.
//!
//! Pure like the rest of the domain: the caller passes the contact, the
//! clock and the recorded events.

use crate::contact::Contact;
use crate::contact_decide::apply_contact;
use crate::criteria::{Criteria, MAX_SEGMENT_NESTING, SegmentRef};
use crate::event::Event;
use crate::segment::SegmentCatalog;
use crate::time::Timestamp;
use std::collections::HashMap;

/// One node of the criteria tree, evaluated for one contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Explained {
    Group {
        kind: GroupKind,
        result: bool,
        children: Vec<Explained>,
    },
    Condition {
        /// The condition's text form, e.g. `age between 25 and 34`.
        condition: String,
        field: String,
        /// The contact's value in the text form of the API; `None` when empty.
        value: Option<String>,
        result: bool,
    },
    /// `in segment X`: whether the contact is in X, with X's criteria
    /// evaluated for it.
    InSegment {
        /// The condition's text form, e.g. `in segment 12`.
        condition: String,
        /// X's id and name; `None` for a segment that does not exist.
        segment: Option<(u64, String)>,
        result: bool,
        tree: Option<Box<Explained>>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    All,
    Any,
    Not,
}

impl GroupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::All => "all",
            GroupKind::Any => "any",
            GroupKind::Not => "not",
        }
    }
}

impl Explained {
    pub fn result(&self) -> bool {
        match self {
            Explained::Group { result, .. }
            | Explained::Condition { result, .. }
            | Explained::InSegment { result, .. } => *result,
        }
    }
}

/// The name and criteria of saved segments by id, for `in segment` nodes.
pub type NamedSegments<'s> = dyn Fn(u64) -> Option<(&'s str, &'s Criteria)> + 's;

/// Evaluates every node of `criteria` for `contact`, relative dates measured
/// back from `at`, and an `in segment` node with the used segment's tree
/// (from `segments`) under it. Every child is evaluated (no short cut), so
/// the answer shows each condition; the results are those of
/// [`Criteria::matches_in`].
pub fn explain<'s>(criteria: &Criteria, contact: &Contact, at: Timestamp, segments: &NamedSegments<'s>) -> Explained {
    explain_nested(criteria, contact, at, segments, 0)
}

fn explain_nested<'s>(
    criteria: &Criteria,
    contact: &Contact,
    at: Timestamp,
    segments: &NamedSegments<'s>,
    depth: usize,
) -> Explained {
    let group = |kind: GroupKind, children: &[Criteria]| {
        let children: Vec<Explained> =
            children.iter().map(|c| explain_nested(c, contact, at, segments, depth)).collect();
        let result = match kind {
            GroupKind::All => children.iter().all(Explained::result),
            _ => children.iter().any(Explained::result),
        };
        Explained::Group { kind, result, children }
    };
    match criteria {
        Criteria::All(children) => group(GroupKind::All, children),
        Criteria::Any(children) => group(GroupKind::Any, children),
        Criteria::Not(child) => {
            let child = explain_nested(child, contact, at, segments, depth);
            Explained::Group { kind: GroupKind::Not, result: !child.result(), children: vec![child] }
        }
        Criteria::Condition(c) => Explained::Condition {
            condition: criteria.to_string(),
            field: c.field.to_string(),
            value: contact.value(&c.field).text(),
            result: c.matches(contact, at),
        },
        Criteria::InSegment(r) => {
            let used = match r {
                SegmentRef::Id(id) if depth < MAX_SEGMENT_NESTING => segments(*id).map(|s| (*id, s)),
                _ => None,
            };
            let tree = used.map(|(_, (_, c))| Box::new(explain_nested(c, contact, at, segments, depth + 1)));
            Explained::InSegment {
                condition: criteria.to_string(),
                segment: used.map(|(id, (name, _))| (id, name.to_owned())),
                result: tree.as_ref().is_some_and(|t| t.result()),
                tree,
            }
        }
    }
}

/// What last made a contact's membership what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Since {
    /// The event at `index` (into the events given) made it so: the
    /// contact's own change, or the segment's (re)definition.
    Event { index: usize, member: bool },
    /// The events leave the answer the other way: the clock moved a
    /// relative condition (`within_last`, `more_than … ago`) since the
    /// event at `index`, the last that concerned either.
    TimePassed { after: Option<usize> },
    /// Nothing ever made it a member.
    Never,
}

/// Replays the contact's and the segment catalogue's events (merged, in
/// log order; each with its recording time) and finds the last one that
/// changed whether the contact `email` is a member of segment `segment_id`,
/// each event judged at its own time. `member_now` is the answer now.
pub fn since<'e>(events: impl IntoIterator<Item = (&'e Event, Timestamp)>, segment_id: u64, member_now: bool) -> Since {
    let mut catalog = SegmentCatalog::default();
    let mut contact: Option<Contact> = None;
    // Every live segment's criteria (the one explained and those it uses),
    // parsed once per definition, not per event.
    let mut parsed: HashMap<u64, (String, Option<Criteria>)> = HashMap::new();
    let mut member = false;
    let mut last_flip = None;
    let mut last = None;
    for (index, (event, time)) in events.into_iter().enumerate() {
        match apply_contact(event) {
            Some(state) => contact = state,
            None => {
                catalog.apply(event, time);
                parsed.retain(|id, _| catalog.segments.contains_key(id));
                for def in catalog.segments.values() {
                    if parsed.get(&def.id).is_none_or(|(text, _)| *text != def.criteria) {
                        parsed.insert(def.id, (def.criteria.clone(), Criteria::parse(&def.criteria).ok()));
                    }
                }
            }
        }
        let segments = |id: u64| parsed.get(&id).and_then(|(_, c)| c.as_ref());
        let is = match (segments(segment_id), &contact) {
            (Some(c), Some(contact)) => c.matches_in(contact, time, &segments),
            _ => false,
        };
        if is != member {
            member = is;
            last_flip = Some(index);
        }
        last = Some(index);
    }
    match (member == member_now, last_flip) {
        (false, _) => Since::TimePassed { after: last },
        (true, Some(index)) => Since::Event { index, member },
        (true, None) => Since::Never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Email;
    use crate::event::{Change, ContactCreated, ContactUpdated, SegmentCreated, SegmentUpdated};

    fn t(day: i64) -> Timestamp {
        Timestamp(day * 86_400_000)
    }

    fn contact(country: &str, age: Option<i64>) -> Contact {
        Contact { country: country.into(), age, ..Contact::new(Email::parse("a@x.com").unwrap(), t(0)) }
    }

    #[test]
    fn given_a_contact_when_explained_then_every_condition_shows_its_value_and_result() {
        let criteria =
            Criteria::parse(r#"country in ("DE", "FR") and (age between 25 and 34 or not city = "Bonn")"#).unwrap();
        let e = explain(&criteria, &contact("de", Some(40)), t(1), &|_| None);
        let Explained::Group { kind: GroupKind::All, result: true, children } = &e else { panic!("{e:?}") };
        assert_eq!(
            children[0],
            Explained::Condition {
                condition: r#"country in ("DE", "FR")"#.into(),
                field: "country".into(),
                value: Some("de".into()),
                result: true
            }
        );
        let Explained::Group { kind: GroupKind::Any, result: true, children } = &children[1] else { panic!("{e:?}") };
        assert!(matches!(&children[0], Explained::Condition { value: Some(v), result: false, .. } if v == "40"));
        let Explained::Group { kind: GroupKind::Not, result: true, children } = &children[1] else { panic!("{e:?}") };
        assert!(matches!(&children[0], Explained::Condition { value: None, result: false, .. }), "empty city");
        assert_eq!(e.result(), criteria.matches(&contact("de", Some(40)), t(1)));
    }

    fn created(c: Contact) -> Event {
        Event::ContactCreated(ContactCreated { contact: c })
    }

    fn updated(c: Contact) -> Event {
        Event::ContactUpdated(ContactUpdated { contact: c, changed: vec![] })
    }

    fn segment(criteria: &str) -> Event {
        Event::SegmentCreated(SegmentCreated { segment_id: 1, name: "s".into(), criteria: criteria.into() })
    }

    fn redefined(from: &str, to: &str) -> Event {
        Event::SegmentUpdated(SegmentUpdated {
            segment_id: 1,
            version: 2,
            name: None,
            criteria: Some(Change { from: from.into(), to: to.into() }),
        })
    }

    #[test]
    fn given_a_contact_that_moved_in_when_asked_since_when_then_the_update_that_made_it_a_member() {
        let events = [
            segment(r#"country = "DE""#),
            created(contact("FR", None)),
            updated(contact("DE", None)),
            updated(contact("DE", Some(3))),
        ];
        let timed: Vec<(&Event, Timestamp)> = events.iter().map(|e| (e, t(1))).collect();
        assert_eq!(since(timed.clone(), 1, true), Since::Event { index: 2, member: true });
        assert_eq!(since(timed[..2].to_vec(), 1, false), Since::Never);
    }

    #[test]
    fn given_a_redefinition_that_left_the_contact_out_then_it_is_the_cause() {
        let events =
            [created(contact("DE", None)), segment(r#"country = "DE""#), redefined(r#"country = "DE""#, "age > 3")];
        let timed: Vec<(&Event, Timestamp)> = events.iter().map(|e| (e, t(1))).collect();
        assert_eq!(since(timed.clone(), 1, false), Since::Event { index: 2, member: false });
        assert_eq!(since(timed[..2].to_vec(), 1, true), Since::Event { index: 1, member: true });
    }

    #[test]
    fn given_a_relative_condition_when_time_moved_the_answer_then_time_passed() {
        let mut c = contact("DE", None);
        c.last_opened_at = Some(t(10));
        let events = [segment("last_opened_at within_last 7 days"), created(c)];
        let timed: Vec<(&Event, Timestamp)> = events.iter().map(|e| (e, t(11))).collect();
        assert_eq!(since(timed.clone(), 1, true), Since::Event { index: 1, member: true });
        assert_eq!(since(timed, 1, false), Since::TimePassed { after: Some(1) }, "asked 30 days later");
    }
}
