//! Matching a contact against criteria: the empty-value rules, inclusive
//! ranges, relative dates against a pinned clock, and case-insensitive text
//! comparison that allocates only for non-ASCII substring search.

use super::MAX_SEGMENT_NESTING;
use super::ast::{Condition, Criteria, Operator, SegmentRef, Value};
use crate::contact::{Contact, FieldValue};
use crate::time::Timestamp;
use std::cmp::Ordering;

/// The criteria of saved segments by id, for `in segment` conditions.
pub type SegmentCriteria<'s> = dyn Fn(u64) -> Option<&'s Criteria> + 's;

impl Criteria {
    /// Whether `contact` matches, with relative dates (`within_last`,
    /// `more_than … ago`) measured back from `at`. An `in segment`
    /// condition is false here: see [`Criteria::matches_in`].
    pub fn matches(&self, contact: &Contact, at: Timestamp) -> bool {
        self.matches_in(contact, at, &|_| None)
    }

    /// [`Criteria::matches`], with `in segment X` true when `segments(X)`'s
    /// criteria match. An unknown segment, or one nested deeper than
    /// [`MAX_SEGMENT_NESTING`] (only a cycle the catalogue should have
    /// refused gets there), matches no one.
    pub fn matches_in<'s>(&self, contact: &Contact, at: Timestamp, segments: &SegmentCriteria<'s>) -> bool {
        self.matches_nested(contact, at, segments, 0)
    }

    fn matches_nested<'s>(
        &self,
        contact: &Contact,
        at: Timestamp,
        segments: &SegmentCriteria<'s>,
        depth: usize,
    ) -> bool {
        let child = |c: &Criteria| c.matches_nested(contact, at, segments, depth);
        match self {
            Criteria::All(children) => children.iter().all(child),
            Criteria::Any(children) => children.iter().any(child),
            Criteria::Not(c) => !child(c.as_ref()),
            Criteria::Condition(c) => c.matches(contact, at),
            Criteria::InSegment(SegmentRef::Id(id)) if depth < MAX_SEGMENT_NESTING => {
                segments(*id).is_some_and(|c| c.matches_nested(contact, at, segments, depth + 1))
            }
            Criteria::InSegment(_) => false,
        }
    }
}

impl Condition {
    /// Whether the contact's value of the field satisfies the operator.
    pub fn matches(&self, contact: &Contact, at: Timestamp) -> bool {
        holds(contact.value(&self.field), &self.op, at)
    }
}

fn holds(v: FieldValue<'_>, op: &Operator, at: Timestamp) -> bool {
    use Operator as O;
    let empty = v.is_empty();
    match op {
        O::IsEmpty => empty,
        O::IsNotEmpty => !empty,
        // The negative operators are true on an empty value, like SQL's
        // `country <> 'US'` over '' (citext columns hold '' for empty text).
        O::Ne(x) => empty || !equals(v, x),
        O::NotIn(xs) => empty || !xs.iter().any(|x| equals(v, x)),
        O::NotContains(s) => empty || !text(v).is_some_and(|t| contains_ci(t, s)),
        _ if empty => false,
        O::Eq(x) => equals(v, x),
        O::In(xs) => xs.iter().any(|x| equals(v, x)),
        O::Contains(s) => text(v).is_some_and(|t| contains_ci(t, s)),
        O::StartsWith(s) => text(v).is_some_and(|t| starts_with_ci(t, s)),
        O::EndsWith(s) => text(v).is_some_and(|t| ends_with_ci(t, s)),
        O::Lt(x) => compare(v, x) == Some(Ordering::Less),
        O::Le(x) => matches!(compare(v, x), Some(Ordering::Less | Ordering::Equal)),
        O::Gt(x) => compare(v, x) == Some(Ordering::Greater),
        O::Ge(x) => matches!(compare(v, x), Some(Ordering::Greater | Ordering::Equal)),
        O::Between(low, high) => {
            matches!(compare(v, low), Some(Ordering::Greater | Ordering::Equal))
                && matches!(compare(v, high), Some(Ordering::Less | Ordering::Equal))
        }
        O::Before(t) => time(v).is_some_and(|v| v < *t),
        O::After(t) => time(v).is_some_and(|v| v > *t),
        O::WithinLastDays(n) => time(v).is_some_and(|v| at.minus_days(i64::from(*n)) <= v && v <= at),
        O::MoreThanDaysAgo(n) => time(v).is_some_and(|v| v < at.minus_days(i64::from(*n))),
    }
}

fn text<'a>(v: FieldValue<'a>) -> Option<&'a str> {
    match v {
        FieldValue::Text(t) => Some(t),
        _ => None,
    }
}

fn time(v: FieldValue<'_>) -> Option<Timestamp> {
    match v {
        FieldValue::Time(t) => t,
        _ => None,
    }
}

/// `None` when the value is empty or of another kind than the operand, which
/// only a tree that skipped `check_limits` can have; such a comparison is false.
fn compare(v: FieldValue<'_>, x: &Value) -> Option<Ordering> {
    match (v, x) {
        (FieldValue::Integer(Some(a)), Value::Integer(b)) => Some(a.cmp(b)),
        (FieldValue::Decimal(Some(a)), Value::Decimal(b)) => Some(a.cmp(b)),
        (FieldValue::Time(Some(a)), Value::Time(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn equals(v: FieldValue<'_>, x: &Value) -> bool {
    match (v, x) {
        (FieldValue::Text(a), Value::Text(b)) => eq_ci(a, b),
        _ => compare(v, x) == Some(Ordering::Equal),
    }
}

/// Char-wise lowercase rather than `str::to_lowercase`, because the latter's
/// final-sigma rule depends on context and would make `contains` disagree
/// with `=`; citext's `lower()` is char-wise too.
fn lower(s: &str) -> impl DoubleEndedIterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

pub(crate) fn eq_ci(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() { a.eq_ignore_ascii_case(b) } else { lower(a).eq(lower(b)) }
}

pub(crate) fn starts_with_ci(haystack: &str, prefix: &str) -> bool {
    if haystack.is_ascii() && prefix.is_ascii() {
        haystack.len() >= prefix.len() && haystack.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    } else {
        let mut h = lower(haystack);
        lower(prefix).all(|c| h.next() == Some(c))
    }
}

pub(crate) fn ends_with_ci(haystack: &str, suffix: &str) -> bool {
    if haystack.is_ascii() && suffix.is_ascii() {
        haystack.len() >= suffix.len()
            && haystack.as_bytes()[haystack.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    } else {
        // Reversing the lowercased stream, not the chars before lowercasing:
        // one char may lowercase to several (İ -> i̇).
        let mut h = lower(haystack).rev();
        lower(suffix).rev().all(|c| h.next() == Some(c))
    }
}

pub(crate) fn contains_ci(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if haystack.is_ascii() && needle.is_ascii() {
        haystack.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    } else {
        let h: String = lower(haystack).collect();
        let n: String = lower(needle).collect();
        h.contains(&n)
    }
}
