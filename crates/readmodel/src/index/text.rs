//! The index of one text field: each distinct non-empty value, lowercased
//! as criteria compare it, with the rows that hold it, and the rows that hold
//! any value at all.
//!
//! Every text operator is a predicate on the lowercased value alone
//! (`=` is equality of lowercased forms, `starts_with` a prefix of them, and
//! so on; the domain's own tests pin that), so testing each distinct value
//! once and uniting the rows of those that pass is exact. That costs one
//! string test per distinct value: cheap for country or last name, as much
//! as a row scan for a unique field like email, where the evaluator scans
//! the candidate rows instead when there are fewer of them.

use super::rows::{Rows, Union};
use roaring::RoaringBitmap;
use std::borrow::Cow;
use std::collections::HashMap;

#[derive(Default)]
pub(crate) struct TextIndex {
    values: HashMap<Box<str>, Rows>,
    present: RoaringBitmap,
}

impl TextIndex {
    pub(crate) fn insert(&mut self, row: u32, value: &str) {
        if value.is_empty() {
            return;
        }
        let key = lower(value);
        match self.values.get_mut(&*key) {
            Some(rows) => rows.insert(row),
            None => {
                self.values.insert(key.into_owned().into_boxed_str(), Rows::One(row));
            }
        }
        self.present.insert(row);
    }

    pub(crate) fn remove(&mut self, row: u32, value: &str) {
        if value.is_empty() {
            return;
        }
        let key = lower(value);
        if let Some(rows) = self.values.get_mut(&*key)
            && !rows.remove(row)
        {
            self.values.remove(&*key);
        }
        self.present.remove(row);
    }

    /// Rows with a non-empty value.
    pub(crate) fn present(&self) -> &RoaringBitmap {
        &self.present
    }

    /// How many distinct (lowercased) values there are: the cost of a
    /// predicate test over all of them.
    pub(crate) fn distinct(&self) -> usize {
        self.values.len()
    }

    /// The rows whose value equals `value` ignoring case.
    pub(crate) fn rows_equal(&self, value: &str) -> Option<&Rows> {
        self.values.get(&*lower(value))
    }

    /// The rows whose value equals any of `values` ignoring case.
    pub(crate) fn rows_equal_any<'a>(&self, values: impl IntoIterator<Item = &'a str>) -> RoaringBitmap {
        let mut union = Union::default();
        for v in values {
            if let Some(rows) = self.rows_equal(v) {
                union.add(rows);
            }
        }
        union.finish()
    }

    /// The rows whose lowercased value satisfies `pred`, testing each
    /// distinct value once.
    pub(crate) fn rows_where(&self, pred: impl Fn(&str) -> bool) -> RoaringBitmap {
        let mut union = Union::default();
        for (value, rows) in &self.values {
            if pred(value) {
                union.add(rows);
            }
        }
        union.finish()
    }

    /// Heap bytes, roughly: for the memory report.
    pub(crate) fn approx_bytes(&self) -> usize {
        let entries = self.values.capacity() * (std::mem::size_of::<(Box<str>, Rows)>() + 1);
        let heap: usize = self
            .values
            .iter()
            .map(|(k, rows)| {
                k.len()
                    + match rows {
                        Rows::One(_) => 0,
                        Rows::Many(b) => b.serialized_size(),
                    }
            })
            .sum();
        entries + heap + self.present.serialized_size()
    }
}

/// Lowercases char by char, exactly as the criteria evaluator does (not
/// `str::to_lowercase`, whose final-sigma rule depends on context);
/// borrows when the text is ASCII without capitals, the common case.
pub(crate) fn lower(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(s.to_ascii_lowercase()) } else { Cow::Borrowed(s) }
    } else {
        Cow::Owned(s.chars().flat_map(char::to_lowercase).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_char_by_char_like_the_evaluator() {
        assert_eq!(lower("MÜNCHEN"), "münchen");
        assert_eq!(lower("ΣΑΣ"), "σασ", "no final sigma");
        assert_eq!(lower("İ"), "i\u{307}");
        assert_eq!(lower("\u{212A}"), "k", "the Kelvin sign is a capital K");
        assert!(matches!(lower("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn values_differing_only_in_case_share_one_entry() {
        let mut t = TextIndex::default();
        t.insert(1, "München");
        t.insert(2, "MÜNCHEN");
        t.insert(3, "");
        assert_eq!(t.distinct(), 1);
        assert_eq!(t.rows_equal("münchen").map(|r| r.iter().collect::<Vec<_>>()), Some(vec![1, 2]));
        assert_eq!(t.present().iter().collect::<Vec<_>>(), [1, 2]);
        t.remove(1, "München");
        t.remove(2, "MÜNCHEN");
        assert_eq!(t.distinct(), 0);
        assert!(t.present().is_empty());
    }
}
