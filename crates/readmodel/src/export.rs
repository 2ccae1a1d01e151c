//! Exports: a saved segment's members frozen at one position, so that a
//! file of a million rows written while contacts keep changing still holds
//! exactly the members, and their values, of one sequence.
//!
//! The snapshot is the members' contact records themselves (shared, not
//! copied: a later event replaces a row's record and leaves the one the
//! snapshot holds alone), taken under the read lock in one pass over the
//! member bitmap; the caller turns them into text chunk by chunk after the
//! lock is gone.

use crate::model::OrgView;
use segmentd_domain::contact::Field;
use segmentd_domain::criteria::Criteria;
use segmentd_domain::time::Timestamp;
use segmentd_domain::Contact;
use std::sync::Arc;

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
    ) -> Vec<Arc<Contact>> {
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
