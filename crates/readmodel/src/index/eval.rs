//! Evaluating a criteria tree on the index: `eval(node, within)` is exactly
//! the rows of `within` whose contact `node.matches(…, at)`, for any
//! `within` (a subset of the live rows). Passing the candidates down is what
//! keeps a selective `all` group cheap, and what lets a member page evaluate
//! one window of rows at a time.

use super::rows::Rows;
use super::text::{TextIndex, lower};
use super::{ContactIndex, OrderedIndex};
use crate::stored::StoredContact;
use roaring::RoaringBitmap;
use segmentd_domain::contact::FieldKind;
use segmentd_domain::criteria::{Condition, Criteria, MAX_SEGMENT_NESTING, Operator, SegmentRef, Value};
use segmentd_domain::time::Timestamp;
use std::cell::Cell;
use std::collections::HashMap;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::sync::Arc;

/// Testing a candidate row's contact costs about this many distinct-value
/// tests: a row test chases the contact's pointers, a value test reads one
/// string.
const ROW_TEST_COST: u64 = 4;

/// Saved segments' criteria by id, for `in segment` conditions.
pub(crate) type SegmentCriteria = HashMap<u64, Arc<Criteria>>;

pub(crate) struct Evaluator<'a> {
    index: &'a ContactIndex,
    rows: &'a [Option<StoredContact>],
    segments: &'a SegmentCriteria,
    at: Timestamp,
    /// How many `in segment` links deep the evaluation is.
    nesting: Cell<usize>,
}

impl<'a> Evaluator<'a> {
    /// `rows` are the contacts the index was built from, by row; `segments`
    /// what `in segment` conditions refer to.
    pub(crate) fn new(
        index: &'a ContactIndex,
        rows: &'a [Option<StoredContact>],
        segments: &'a SegmentCriteria,
        at: Timestamp,
    ) -> Self {
        Evaluator { index, rows, segments, at, nesting: Cell::new(0) }
    }

    /// The rows of `within` that match `node`.
    pub(crate) fn eval(&self, node: &Criteria, within: &RoaringBitmap) -> RoaringBitmap {
        match node {
            Criteria::All(children) => {
                let mut order: Vec<&Criteria> = children.iter().collect();
                order.sort_by_cached_key(|c| self.estimate(c));
                let mut narrowed: Option<RoaringBitmap> = None;
                for child in order {
                    let rows = narrowed.as_ref().unwrap_or(within);
                    if rows.is_empty() {
                        break;
                    }
                    narrowed = Some(self.eval(child, rows));
                }
                narrowed.unwrap_or_else(|| within.clone())
            }
            Criteria::Any(children) => {
                let mut order: Vec<&Criteria> = children.iter().collect();
                order.sort_by_cached_key(|c| self.estimate(c).0);
                let mut found = RoaringBitmap::new();
                // The rows no child has matched yet: later children test only those.
                let mut rest: Option<RoaringBitmap> = None;
                for child in order {
                    let rows = rest.as_ref().unwrap_or(within);
                    if rows.is_empty() {
                        break;
                    }
                    let matched = self.eval(child, rows);
                    rest = Some(rows - &matched);
                    found |= matched;
                }
                found
            }
            Criteria::Not(child) => within - &self.eval(child, within),
            Criteria::Condition(c) => {
                let indexed = match c.field.kind() {
                    FieldKind::Text => self.text_condition(c, within),
                    _ => self.ordered_condition(c, within),
                };
                indexed.unwrap_or_else(|| self.scan(c, within))
            }
            // The used segment's criteria, evaluated here rather than read
            // from its kept member set: exact at any clock instant, and
            // whatever order the kept sets are refreshed in. The nesting
            // limit (as `Criteria::matches_in`) only stops a cycle that
            // the catalogue should have refused.
            Criteria::InSegment(SegmentRef::Id(id)) if self.nesting.get() < MAX_SEGMENT_NESTING => {
                let Some(used) = self.segments.get(id) else { return RoaringBitmap::new() };
                self.nesting.set(self.nesting.get() + 1);
                let rows = self.eval(used, within);
                self.nesting.set(self.nesting.get() - 1);
                rows
            }
            Criteria::InSegment(_) => RoaringBitmap::new(),
        }
    }

    /// Sort key for the children of an `all` group: lookups with a known,
    /// small result first, then bounded-cost index work, then groups, then
    /// row scans.
    fn estimate(&self, node: &Criteria) -> (u8, u64) {
        use Operator as O;
        let Criteria::Condition(c) = node else { return (2, 0) };
        let live = self.index.live().len();
        if c.field.kind() != FieldKind::Text {
            let present = self.index.ordered(&c.field).map_or(0, |b| b.present().len());
            return match c.op {
                O::IsEmpty => (0, live - present),
                O::IsNotEmpty => (0, present),
                _ => (1, 0),
            };
        }
        let empty = TextIndex::default();
        let index = self.index.text(&c.field).unwrap_or(&empty);
        // The rows an equality touches; `None` for an operand that is not text.
        let equal = |vs: &[Value]| -> Option<u64> {
            vs.iter().map(|v| text(v).map(|t| index.rows_equal(t).map_or(0, Rows::len))).sum()
        };
        let present = index.present().len();
        match &c.op {
            O::IsEmpty => (0, live - present),
            O::IsNotEmpty => (0, present),
            O::Eq(v) => equal(std::slice::from_ref(v)).map_or((3, 0), |n| (0, n)),
            O::In(vs) => equal(vs).map_or((3, 0), |n| (0, n)),
            O::Ne(v) => equal(std::slice::from_ref(v)).map_or((3, 0), |n| (0, live.saturating_sub(n))),
            O::NotIn(vs) => equal(vs).map_or((3, 0), |n| (0, live.saturating_sub(n))),
            // With a column, a pattern costs a test per candidate row: let
            // everything else narrow the rows first.
            O::Contains(_) | O::NotContains(_) | O::StartsWith(_) | O::EndsWith(_) if index.column().is_none() => {
                (1, 0)
            }
            _ => (3, 0),
        }
    }

    /// `None` when the index cannot answer: an operand that is not text.
    fn text_condition(&self, c: &Condition, within: &RoaringBitmap) -> Option<RoaringBitmap> {
        use Operator as O;
        let empty = TextIndex::default();
        let index = self.index.text(&c.field).unwrap_or(&empty);
        let equal_any = |vs: &[Value]| -> Option<RoaringBitmap> {
            let texts = vs.iter().map(text).collect::<Option<Vec<_>>>()?;
            Some(index.rows_equal_any(texts) & within)
        };
        Some(match &c.op {
            O::IsEmpty => within - index.present(),
            O::IsNotEmpty => within & index.present(),
            O::Eq(v) => index.rows_equal(text(v)?).map_or_else(RoaringBitmap::new, |rows| rows.and(within)),
            O::Ne(v) => within - &index.rows_equal(text(v)?).map_or_else(RoaringBitmap::new, |rows| rows.and(within)),
            O::In(vs) => equal_any(vs)?,
            O::NotIn(vs) => within - &equal_any(vs)?,
            O::Contains(s) => {
                let s = lower(s);
                self.pattern(index, c, within, |v| v.contains(&*s))
            }
            O::NotContains(s) => {
                let contains = Condition { field: c.field.clone(), op: O::Contains(s.clone()) };
                let s = lower(s);
                within - &self.pattern(index, &contains, within, |v| v.contains(&*s))
            }
            O::StartsWith(p) => {
                let p = lower(p);
                self.pattern(index, c, within, |v| v.starts_with(&*p))
            }
            O::EndsWith(s) => {
                let s = lower(s);
                self.pattern(index, c, within, |v| v.ends_with(&*s))
            }
            _ => return None,
        })
    }

    /// The rows of `within` whose value is non-empty and whose lowercased
    /// value passes `pred`, which is what `c` tests: from the column when
    /// the field has one, else by testing each distinct value or each
    /// candidate row's contact, whichever is fewer tests.
    fn pattern(
        &self,
        index: &TextIndex,
        c: &Condition,
        within: &RoaringBitmap,
        pred: impl Fn(&str) -> bool,
    ) -> RoaringBitmap {
        if let Some(column) = index.column() {
            column.rows_where(within, pred, |row| self.contact_matches(c, row))
        } else if index.distinct() as u64 <= within.len().saturating_mul(ROW_TEST_COST) {
            index.rows_where(pred) & within
        } else {
            self.scan(c, within)
        }
    }

    /// `None` when the index cannot answer: an operand of another kind than
    /// the field, or a date operator on a number.
    fn ordered_condition(&self, c: &Condition, within: &RoaringBitmap) -> Option<RoaringBitmap> {
        use Operator as O;
        let kind = c.field.kind();
        let index: &OrderedIndex = self.index.ordered(&c.field)?;
        let value = |v: &Value| operand(kind, v);
        let values = |vs: &[Value]| vs.iter().map(value).collect::<Option<Vec<_>>>();
        let time = kind == FieldKind::Time;
        Some(match &c.op {
            O::IsEmpty => within - index.present(),
            O::IsNotEmpty => within & index.present(),
            O::Eq(v) => index.equal_any(within, vec![value(v)?]),
            O::Ne(v) => within - &index.equal_any(within, vec![value(v)?]),
            O::In(vs) => index.equal_any(within, values(vs)?),
            O::NotIn(vs) => within - &index.equal_any(within, values(vs)?),
            O::Lt(v) => index.range(within, Unbounded, Excluded(value(v)?)),
            O::Le(v) => index.range(within, Unbounded, Included(value(v)?)),
            O::Gt(v) => index.range(within, Excluded(value(v)?), Unbounded),
            O::Ge(v) => index.range(within, Included(value(v)?), Unbounded),
            O::Between(low, high) => index.range(within, Included(value(low)?), Included(value(high)?)),
            O::Before(t) if time => index.range(within, Unbounded, Excluded(t.0)),
            O::After(t) if time => index.range(within, Excluded(t.0), Unbounded),
            O::WithinLastDays(n) if time => {
                let from = self.at.minus_days(i64::from(*n));
                index.range(within, Included(from.0), Included(self.at.0))
            }
            O::MoreThanDaysAgo(n) if time => {
                index.range(within, Unbounded, Excluded(self.at.minus_days(i64::from(*n)).0))
            }
            _ => return None,
        })
    }

    /// The rows of `within` whose contact matches `c`, tested one by one.
    fn scan(&self, c: &Condition, within: &RoaringBitmap) -> RoaringBitmap {
        let matching = within.iter().filter(|&row| self.contact_matches(c, row));
        RoaringBitmap::from_sorted_iter(matching).expect("a bitmap iterates in ascending order")
    }

    /// Decodes the whole contact: this is the rare path (an operand the
    /// index cannot use, or a pattern over few candidate rows).
    fn contact_matches(&self, c: &Condition, row: u32) -> bool {
        self.rows.get(row as usize).and_then(Option::as_ref).is_some_and(|s| c.matches(&s.to_contact(), self.at))
    }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::Text(t) => Some(t),
        _ => None,
    }
}

/// The operand as the `i64` the field's index holds, when it is of the
/// field's kind (the evaluator compares nothing else: such a comparison is false).
fn operand(kind: FieldKind, v: &Value) -> Option<i64> {
    match (kind, v) {
        (FieldKind::Integer, Value::Integer(n)) => Some(*n),
        (FieldKind::Decimal, Value::Decimal(d)) => Some(d.0),
        (FieldKind::Time, Value::Time(t)) => Some(t.0),
        _ => None,
    }
}
