//! Saved segments' members, kept current per event, and the feed of their
//! changes (`feed`).
//!
//! Each saved segment holds the bitmap of its member rows. The projector
//! keeps it exact:
//! - contact events: the rows a run of events touched are re-tested
//!   against every segment once the run is applied to the index. A few rows
//!   are tested contact by contact (`Criteria::matches`, well under a
//!   microsecond a segment); many (a bulk import, a rebuild) are evaluated
//!   on the index restricted to those rows, so the cost per segment grows
//!   with the run, not with the org. A contact changed twice in one run is
//!   reported once, with the sequence of its last event: the feed reports
//!   net changes per applied batch.
//! - segment created, given new criteria, deleted: the set is recomputed
//!   from the index and the difference reported.
//! - time: a segment with relative conditions (`within_last`, `more_than`)
//!   is re-evaluated when the clock moves, only on the rows whose date lies
//!   in the window that crossed a bound (`advance_members`).
//! - segments of segments (`in segment X`): X's criteria are evaluated in
//!   place, so a set never reads another set and stays exact whatever the
//!   order; still, sets are refreshed each after the segments it uses, so
//!   the feed reports X's change before its users'. A redefinition of X
//!   recomputes every segment that uses X through any chain, and a user
//!   moves with the clock when X does (its relative conditions include X's).
//!
//! Member sets are in memory only; at start they are computed from the
//! index for every saved segment.

mod feed;
mod timer;

pub(crate) use feed::Feed;
pub use feed::{Cause, ChangeRecord, FeedError, MemberChange, Watch, WatchFilter};
pub use timer::run_membership_clock;

use crate::index::{Evaluator, SegmentCriteria};
use crate::model::{Members, OrgView};
use crate::stored::StoredContact;
use roaring::RoaringBitmap;
use segmentd_domain::contact::{Field, FieldKind};
use segmentd_domain::criteria::{Criteria, Operator, SegmentRef};
use segmentd_domain::dependencies::dependency_order;
use segmentd_domain::time::Timestamp;
use segmentd_log::Seq;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Up to this many touched rows, each segment tests the contacts one by one
/// rather than evaluating the index over the rows.
const FEW_ROWS: usize = 16;

/// The member sets of one org's saved segments, by segment id.
#[derive(Default)]
pub(crate) struct Memberships {
    segments: BTreeMap<u64, SegmentSet>,
    /// The ids of `segments`, each after the segments it uses (`in
    /// segment`): the order sets are refreshed and changes reported in.
    order: Vec<u64>,
}

impl Memberships {
    fn reorder(&mut self, criteria: &SegmentCriteria) {
        let uses = self.segments.keys().map(|id| (*id, criteria.get(id).map(|c| c.segment_ids()).unwrap_or_default()));
        self.order = dependency_order(&uses.collect());
    }
}

struct SegmentSet {
    rows: RoaringBitmap,
    /// The sequence of the last change to `rows` (see
    /// [`OrgView::members_changed_at`]).
    changed_at: Seq,
    /// The conditions whose answer moves with the clock; empty for most.
    relative: Vec<Relative>,
}

/// `field within_last N days` (also true up to now from the future side)
/// or `field more_than N days ago`.
struct Relative {
    field: Field,
    days: i64,
    within: bool,
}

/// The relative conditions of `criteria` and of every segment it uses,
/// through any chain: the used segments' answers move with the clock too.
fn relative_conditions(criteria: &Criteria, segments: &SegmentCriteria) -> Vec<Relative> {
    let mut found = Vec::new();
    let mut stack = vec![criteria];
    let mut seen = BTreeSet::new();
    while let Some(node) = stack.pop() {
        match node {
            Criteria::All(children) | Criteria::Any(children) => stack.extend(children),
            Criteria::Not(child) => stack.push(child),
            Criteria::Condition(c) if c.field.kind() == FieldKind::Time => {
                let (days, within) = match c.op {
                    Operator::WithinLastDays(n) => (n, true),
                    Operator::MoreThanDaysAgo(n) => (n, false),
                    _ => continue,
                };
                found.push(Relative { field: c.field.clone(), days: i64::from(days), within });
            }
            Criteria::Condition(_) => {}
            Criteria::InSegment(SegmentRef::Id(id)) => {
                if seen.insert(*id)
                    && let Some(used) = segments.get(id)
                {
                    stack.push(used);
                }
            }
            Criteria::InSegment(SegmentRef::Name(_)) => {}
        }
    }
    found
}

/// The contacts a run of events created, updated or deleted, with the
/// sequence of each event: the contact after the event, or before it when
/// the event deleted it.
#[derive(Default)]
pub(crate) struct Touched {
    entries: Vec<(u32, Seq, StoredContact)>,
    /// Entries before this one have their event's sequence.
    stamped: usize,
}

impl Touched {
    /// Gives the entries added since the last call the sequence of the event
    /// that added them; whether any entries are waiting.
    pub(crate) fn stamp(&mut self, seq: Seq) -> bool {
        for e in &mut self.entries[self.stamped..] {
            e.1 = seq;
        }
        self.stamped = self.entries.len();
        !self.entries.is_empty()
    }

    /// By row, each row once with its last event.
    fn into_sorted(mut self) -> Vec<(u32, Seq, StoredContact)> {
        // Stable: a row's events stay in log order, and the last one wins.
        self.entries.sort_by_key(|e| e.0);
        let mut out: Vec<(u32, Seq, StoredContact)> = Vec::with_capacity(self.entries.len());
        for e in self.entries {
            match out.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => out.push(e),
            }
        }
        out
    }
}

impl OrgView {
    /// Whether any saved segment keeps members (else contact events need no
    /// membership work at all).
    pub(crate) fn keeps_members(&self) -> bool {
        !self.memberships.segments.is_empty()
    }

    /// Notes a contact an event changed, for [`OrgView::refresh_members`].
    pub(crate) fn touch(&mut self, row: u32, contact: StoredContact) {
        if self.keeps_members() {
            self.touched.entries.push((row, 0, contact));
        }
    }

    /// Computes every saved segment's members from the index (at load,
    /// with the model at sequence `applied`). When they last changed is not
    /// known then, so it is taken as `applied`: a preview from before the
    /// restart is refused rather than trusted.
    pub(crate) fn compute_members(&mut self, at: Timestamp, applied: Seq) {
        self.redefined.clear();
        self.touched = Touched::default();
        let ids: Vec<u64> = self.criteria.keys().copied().collect();
        for id in ids {
            let criteria = Arc::clone(&self.criteria[&id]);
            let rows = self.matching(&criteria, at);
            let relative = relative_conditions(&criteria, &self.criteria);
            self.memberships.segments.insert(id, SegmentSet { rows, changed_at: applied, relative });
        }
        self.memberships.reorder(&self.criteria);
    }

    /// Recomputes the members of the segments whose criteria the event at
    /// `seq` set or removed, and of every segment that uses one of them
    /// through any chain (their answers follow), each after those it uses;
    /// the differences.
    pub(crate) fn redefine_members(&mut self, org: &str, seq: Seq, at: Timestamp) -> Vec<ChangeRecord> {
        let mut changed: BTreeSet<u64> = std::mem::take(&mut self.redefined).into_iter().collect();
        // Called after every event: most define nothing.
        if changed.is_empty() {
            return Vec::new();
        }
        // The users of a changed segment are changed too, until none is new.
        loop {
            let users: Vec<u64> = self
                .criteria
                .iter()
                .filter(|(id, c)| !changed.contains(id) && c.segment_ids().iter().any(|u| changed.contains(u)))
                .map(|(id, _)| *id)
                .collect();
            if users.is_empty() {
                break;
            }
            changed.extend(users);
        }
        let uses: BTreeMap<u64, Vec<u64>> = changed
            .iter()
            .map(|id| (*id, self.criteria.get(id).map(|c| c.segment_ids()).unwrap_or_default()))
            .collect();
        let org: Arc<str> = Arc::from(org);
        let records = dependency_order(&uses).into_iter().filter_map(|id| self.redefine(&org, id, seq, at)).collect();
        self.memberships.reorder(&self.criteria);
        records
    }

    fn redefine(&mut self, org: &Arc<str>, id: u64, seq: Seq, at: Timestamp) -> Option<ChangeRecord> {
        let (entered, left, cause) = match self.criteria.get(&id).cloned() {
            Some(criteria) => {
                let now = self.matching(&criteria, at);
                let relative = relative_conditions(&criteria, &self.criteria);
                let mut set = SegmentSet { rows: now.clone(), changed_at: seq, relative };
                let old = self.memberships.segments.get(&id);
                // A new segment's set is new at `seq`; a redefinition that
                // keeps the same members changes nothing.
                if let Some(old) = old.filter(|old| old.rows == now) {
                    set.changed_at = old.changed_at;
                }
                let old = self.memberships.segments.insert(id, set).map(|s| s.rows).unwrap_or_default();
                (&now - &old, &old - &now, Cause::SegmentDefined)
            }
            None => {
                let old = self.memberships.segments.remove(&id)?.rows;
                (RoaringBitmap::new(), old, Cause::SegmentDeleted)
            }
        };
        let rows = &self.rows;
        record(org, id, cause, at, &entered, &left, |row| Some((seq, rows[row as usize].clone()?)))
    }

    /// Re-tests the rows that contact events touched since the last call
    /// against every saved segment; one record per segment whose members
    /// changed.
    pub(crate) fn refresh_members(&mut self, org: &str, at: Timestamp) -> Vec<ChangeRecord> {
        let mut records = Vec::new();
        let touched = std::mem::take(&mut self.touched);
        if self.memberships.segments.is_empty() || touched.entries.is_empty() {
            return records;
        }
        let org: Arc<str> = Arc::from(org);
        let org = &org;
        let entries = touched.into_sorted();
        let rows = RoaringBitmap::from_sorted_iter(entries.iter().map(|e| e.0)).expect("sorted and deduplicated");
        let live = &rows & self.index.live();
        let contact_of = |row: u32| {
            let i = entries.binary_search_by_key(&row, |e| e.0).ok()?;
            Some((entries[i].1, entries[i].2.clone()))
        };
        // The few rows tested one by one, decoded once for every segment;
        // `None` for a row deleted by the run.
        let few: Vec<(u32, Option<segmentd_domain::Contact>)> = if entries.len() <= FEW_ROWS {
            entries.iter().map(|(row, _, c)| (*row, live.contains(*row).then(|| c.to_contact()))).collect()
        } else {
            Vec::new()
        };
        let evaluator = Evaluator::new(&self.index, &self.rows, &self.criteria, at);
        let segments = |id: u64| self.criteria.get(&id).map(|c| &**c);
        for &id in &self.memberships.order {
            let Some(set) = self.memberships.segments.get_mut(&id) else { continue };
            let Some(criteria) = self.criteria.get(&id) else { continue };
            let (entered, left) = if entries.len() <= FEW_ROWS {
                let mut entered = RoaringBitmap::new();
                let mut left = RoaringBitmap::new();
                for (row, contact) in &few {
                    let row = *row;
                    let is = contact.as_ref().is_some_and(|c| criteria.matches_in(c, at, &segments));
                    match (set.rows.contains(row), is) {
                        (false, true) => entered.insert(row),
                        (true, false) => left.insert(row),
                        _ => false,
                    };
                }
                (entered, left)
            } else {
                let now = evaluator.eval(criteria, &live);
                let before = &set.rows & &rows;
                (&now - &before, &before - &now)
            };
            if entered.is_empty() && left.is_empty() {
                continue;
            }
            set.rows -= &left;
            set.rows |= &entered;
            let last = (&entered | &left).iter().filter_map(|row| contact_of(row).map(|(seq, _)| seq)).max();
            set.changed_at = set.changed_at.max(last.unwrap_or_default());
            records.extend(record(org, id, Cause::ContactChanged, at, &entered, &left, contact_of));
        }
        records
    }

    /// Moves the members of segments with relative conditions to the clock
    /// instant `to`, given that every member was last evaluated at an
    /// instant in `[low, high]`: only rows whose date lies where a bound
    /// crossed between those instants and `to` can have changed.
    pub(crate) fn advance_members(
        &mut self,
        org: &Arc<str>,
        (low, high): (Timestamp, Timestamp),
        to: Timestamp,
        seq: Seq,
    ) -> Vec<ChangeRecord> {
        let (lo, hi) = (low.min(to), high.max(to));
        let mut records = Vec::new();
        let evaluator = Evaluator::new(&self.index, &self.rows, &self.criteria, to);
        for &id in &self.memberships.order {
            let Some(set) = self.memberships.segments.get_mut(&id) else { continue };
            let Some(criteria) = self.criteria.get(&id) else { continue };
            let mut candidates = RoaringBitmap::new();
            for rel in &set.relative {
                let back = |t: Timestamp| t.minus_days(rel.days).0;
                candidates |= self.index.rows_between(&rel.field, back(lo), back(hi));
                if rel.within {
                    candidates |= self.index.rows_between(&rel.field, lo.0, hi.0);
                }
            }
            if candidates.is_empty() {
                continue;
            }
            let now = evaluator.eval(criteria, &candidates);
            let before = &set.rows & &candidates;
            let (entered, left) = (&now - &before, &before - &now);
            if entered.is_empty() && left.is_empty() {
                continue;
            }
            set.rows -= &left;
            set.rows |= &entered;
            set.changed_at = set.changed_at.max(seq);
            let rows = &self.rows;
            let contact_of = |row: u32| Some((seq, rows[row as usize].clone()?));
            records.extend(record(org, id, Cause::TimePassed, to, &entered, &left, contact_of));
        }
        records
    }

    /// How many members saved segment `id` (whose criteria are `criteria`)
    /// has at `at`: its kept set when no condition depends on the clock.
    pub fn segment_count(&self, id: u64, criteria: &Criteria, at: Timestamp) -> u64 {
        match self.kept_members(id) {
            Some(rows) => rows.len(),
            None => self.count(criteria, at),
        }
    }

    /// Every member row of saved segment `id` at `at`: its kept set when no
    /// condition depends on the clock, else evaluated on the index.
    pub(crate) fn segment_rows(&self, id: u64, criteria: &Criteria, at: Timestamp) -> Cow<'_, RoaringBitmap> {
        match self.kept_members(id) {
            Some(rows) => Cow::Borrowed(rows),
            None => Cow::Owned(self.matching(criteria, at)),
        }
    }

    /// A page of saved segment `id`'s members, like [`OrgView::members`].
    pub fn segment_members(
        &self,
        id: u64,
        criteria: &Criteria,
        at: Timestamp,
        after: Option<u32>,
        limit: usize,
    ) -> Members {
        let Some(kept) = self.kept_members(id) else { return self.members(criteria, at, after, limit) };
        let empty = Members { contacts: Vec::new(), next_after: None };
        let Some(from) = after.map_or(Some(0), |r| r.checked_add(1)) else { return empty };
        let mut rows = kept.iter();
        rows.advance_to(from);
        let rows: Vec<u32> = rows.take(limit.saturating_add(1)).collect();
        let more = rows.len() > limit;
        let rows = &rows[..rows.len().min(limit)];
        Members { contacts: self.contacts_of(rows), next_after: if more { rows.last().copied() } else { None } }
    }

    /// Whether the contact `email` is a member of saved segment `id` now, by
    /// the kept set (`None` for an unknown segment or contact).
    pub fn is_member(&self, id: u64, email: &str) -> Option<bool> {
        let set = self.memberships.segments.get(&id)?;
        let row = self.row_of(email)?;
        Some(set.rows.contains(row))
    }

    /// The sequence of the last change to saved segment `id`'s members:
    /// the contact event that made one enter or leave, or the definition
    /// that made or changed the set. A change the clock made (relative
    /// conditions) carries the sequence applied when it was noticed. After
    /// a restart, the sequence the model was loaded at. `None` for an
    /// unknown segment.
    pub fn members_changed_at(&self, id: u64) -> Option<Seq> {
        self.memberships.segments.get(&id).map(|s| s.changed_at)
    }

    /// The kept member rows of a segment whose members do not move with the clock.
    fn kept_members(&self, id: u64) -> Option<&RoaringBitmap> {
        let set = self.memberships.segments.get(&id)?;
        set.relative.is_empty().then_some(&set.rows)
    }

    /// Heap bytes of the member sets, roughly (for memory reports).
    pub fn members_bytes(&self) -> usize {
        self.memberships.segments.values().map(|s| s.rows.serialized_size()).sum()
    }
}

/// The record of `entered` and `left` rows of one segment, each with its
/// cause's sequence and contact; `None` when nothing changed.
fn record(
    org: &Arc<str>,
    segment: u64,
    cause: Cause,
    at: Timestamp,
    entered: &RoaringBitmap,
    left: &RoaringBitmap,
    contact_of: impl Fn(u32) -> Option<(Seq, StoredContact)>,
) -> Option<ChangeRecord> {
    if entered.is_empty() && left.is_empty() {
        return None;
    }
    let mut changes = Vec::with_capacity((entered.len() + left.len()) as usize);
    for (rows, entered) in [(entered, true), (left, false)] {
        changes.extend(rows.iter().filter_map(|row| {
            let (seq, contact) = contact_of(row)?;
            Some(MemberChange { contact, seq, entered })
        }));
    }
    // In log order, as a watcher expects to apply them.
    changes.sort_by_key(|c| c.seq);
    Some(ChangeRecord { org: Arc::clone(org), segment, cause, at, changes })
}
