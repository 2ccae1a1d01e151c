//! Exports: a saved segment's members frozen at one position, so that a
//! file of a million rows written while contacts keep changing still holds
//! exactly the members, and their values, of one sequence.
//!
//! The snapshot is the members' stored records themselves (shared, not
//! copied: a later event replaces a row's record and leaves the one the
//! snapshot holds alone), taken under the read lock in one pass over the
//! member bitmap; the caller turns them into text chunk by chunk after the
//! lock is gone.

use crate::model::OrgView;
use crate::stored::StoredContact;
use segmentd_domain::contact::Field;
use segmentd_domain::criteria::Criteria;
use segmentd_domain::time::Timestamp;

/// Members whose date-time field `field` lies in `[from, to)`; an absent
/// bound is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    pub field: Field,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

impl OrgView {
    /// Saved segment `id`'s members at `at` (relative conditions), within
    /// `window` if given, in member order.
    pub fn export_members(
        &self,
        id: u64,
        criteria: &Criteria,
        at: Timestamp,
        window: Option<&TimeWindow>,
    ) -> Vec<StoredContact> {
        let members = self.segment_rows(id, criteria, at);
        let within;
        let rows = match window {
            None => &*members,
            Some(w) => {
                let low = w.from.map_or(i64::MIN, |t| t.0);
                // `to` is exclusive; the index's range is inclusive.
                let high = match w.to {
                    None => i64::MAX,
                    Some(t) => match t.0.checked_sub(1) {
                        Some(high) => high,
                        None => return Vec::new(),
                    },
                };
                if low > high {
                    return Vec::new();
                }
                within = &*members & &self.index.rows_between(&w.field, low, high);
                &within
            }
        };
        let mut contacts = Vec::with_capacity(rows.len() as usize);
        contacts.extend(rows.iter().filter_map(|row| self.rows.get(row as usize)?.clone()));
        contacts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ReadModel, SegmentLookup};
    use segmentd_domain::event::{ContactCreated, ContactUpdated, SegmentCreated};
    use segmentd_domain::{AggregateId, Contact, Email, Envelope, Event};
    use segmentd_log::Recorded;

    fn recorded(seq: u64, aggregate: AggregateId, event: Event) -> Recorded {
        let time = Timestamp(1_750_000_000_000 + seq as i64);
        let envelope = Envelope {
            event_id: u128::from(seq),
            command_id: format!("c{seq}"),
            aggregate,
            actor: "t".into(),
            time,
            event,
        };
        Recorded { seq, envelope }
    }

    fn person(i: i64, city: &str) -> Contact {
        let mut c = Contact::new(Email::parse(&format!("p{i}@x.com")).unwrap(), Timestamp(i * 1000));
        c.country = "DE".into();
        c.city = city.into();
        c
    }

    fn contact_event(seq: u64, event: Event, email: &str) -> Recorded {
        recorded(seq, AggregateId::contact("o", email), event)
    }

    /// A kept model (member sets on) with five German contacts added at
    /// 0, 1, 2, 3 and 4 seconds and segment 1 `country = "DE"`.
    fn model(dir: &std::path::Path) -> ReadModel {
        let model = ReadModel::open(dir, 1 << 20).unwrap();
        let mut events: Vec<Recorded> = (0..5)
            .map(|i| {
                let c = person(i, "Old");
                let email = c.email.clone();
                contact_event(i as u64 + 1, Event::ContactCreated(ContactCreated { contact: c }), &email)
            })
            .collect();
        let created = SegmentCreated { segment_id: 1, name: "de".into(), criteria: r#"country = "DE""#.into() };
        events.push(recorded(6, AggregateId::segment_catalog("o"), Event::SegmentCreated(created)));
        model.apply(&events).unwrap();
        model
    }

    fn export(model: &ReadModel, window: Option<&TimeWindow>) -> Vec<Contact> {
        model.read("o", |view, _| {
            let criteria = view.segment_criteria(1).cloned().unwrap();
            assert!(view.segment(SegmentLookup::Id(1)).is_some());
            view.export_members(1, &criteria, Timestamp(0), window).iter().map(StoredContact::to_contact).collect()
        })
    }

    #[test]
    fn given_a_snapshot_when_its_contacts_change_then_it_still_holds_their_values_then() {
        let dir = tempfile::tempdir().unwrap();
        let model = model(dir.path());
        let snapshot = export(&model, None);
        let mut moved = person(2, "New");
        moved.country = "FR".into();
        let update = ContactUpdated { contact: moved, changed: vec!["city".into(), "country".into()] };
        model.apply(&[contact_event(7, Event::ContactUpdated(update), "p2@x.com")]).unwrap();

        let cities: Vec<(&str, &str)> = snapshot.iter().map(|c| (c.email.as_str(), c.city.as_str())).collect();
        assert_eq!(
            cities,
            [("p0@x.com", "Old"), ("p1@x.com", "Old"), ("p2@x.com", "Old"), ("p3@x.com", "Old"), ("p4@x.com", "Old")]
        );
        let now: Vec<String> = export(&model, None).iter().map(|c| c.email.clone()).collect();
        assert_eq!(now, ["p0@x.com", "p1@x.com", "p3@x.com", "p4@x.com"]);
    }

    #[test]
    fn given_a_window_then_only_members_inside_it_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        let model = model(dir.path());
        let window = |from: Option<i64>, to: Option<i64>| TimeWindow {
            field: Field::AddedAt,
            from: from.map(Timestamp),
            to: to.map(Timestamp),
        };
        let emails =
            |w: TimeWindow| -> Vec<String> { export(&model, Some(&w)).iter().map(|c| c.email.clone()).collect() };
        assert_eq!(emails(window(Some(1000), Some(3000))), ["p1@x.com", "p2@x.com"]);
        assert_eq!(emails(window(Some(3000), None)), ["p3@x.com", "p4@x.com"]);
        assert_eq!(emails(window(None, Some(1))), ["p0@x.com"]);
        assert!(emails(window(None, Some(i64::MIN))).is_empty());
        assert!(emails(window(Some(2000), Some(2000))).is_empty());
    }
}
