//! The index of one text field: each distinct non-empty value, lowercased
//! as criteria compare it, with the rows that hold it, and the rows that hold
//! any value at all.
//!
//! Every text operator is a predicate on the lowercased value alone
//! (`=` is equality of lowercased forms, `starts_with` a prefix of them, and
//! so on; the domain's own tests pin that), so testing each distinct value
//! once and uniting the rows of those that pass is exact. That costs one
//! string test per distinct value: cheap for country or last name, as much
//! as a row scan for a unique field like email. So once a field has more
//! than [`MANY_VALUES`] distinct values it also keeps a [`Column`], and
//! patterns read the candidate rows' values from it instead.

use super::column::Column;
use super::rows::{Rows, Union};
use roaring::RoaringBitmap;
use std::borrow::Cow;
use std::collections::HashMap;

/// The hasher of the maps of text values: foldhash, seeded per process.
/// SipHash (the std default) cost about 7 % of a rebuild in these maps.
pub(crate) type Hasher = foldhash::fast::RandomState;

/// Distinct values beyond which a field keeps a [`Column`].
pub(crate) const MANY_VALUES: usize = 1 << 16;

pub(crate) struct TextIndex {
    values: HashMap<Box<str>, Rows, Hasher>,
    present: RoaringBitmap,
    /// Built once there are more than `column_after` distinct values, then
    /// kept (a field that had that many will likely have them again).
    column: Option<Column>,
    column_after: usize,
    /// Reused for lowercasing while maintaining, so that looking up a value
    /// that is already there allocates nothing.
    scratch: String,
}

impl Default for TextIndex {
    fn default() -> Self {
        TextIndex::with_column_after(MANY_VALUES)
    }
}

impl TextIndex {
    pub(crate) fn with_column_after(distinct: usize) -> Self {
        TextIndex {
            values: HashMap::default(),
            present: RoaringBitmap::new(),
            column: None,
            column_after: distinct,
            scratch: String::new(),
        }
    }

    pub(crate) fn insert(&mut self, row: u32, value: &str) {
        if value.is_empty() {
            return;
        }
        let key = lower_in(value, &mut self.scratch);
        if let Some(column) = &mut self.column {
            column.set(row, key);
        }
        match self.values.get_mut(key) {
            Some(rows) => rows.insert(row),
            None => {
                self.values.insert(key.into(), Rows::One(row));
                if self.column.is_none() && self.values.len() > self.column_after {
                    self.column = Some(self.build_column());
                }
            }
        }
        self.present.insert(row);
    }

    /// The column of the values held now, laid out in row order.
    fn build_column(&self) -> Column {
        let mut cells: Vec<(u32, &str)> =
            self.values.iter().flat_map(|(value, rows)| rows.iter().map(move |row| (row, &**value))).collect();
        cells.sort_unstable_by_key(|(row, _)| *row);
        let mut column = Column::default();
        for (row, value) in cells {
            column.set(row, value);
        }
        column
    }

    pub(crate) fn remove(&mut self, row: u32, value: &str) {
        if value.is_empty() {
            return;
        }
        let key = lower_in(value, &mut self.scratch);
        if let Some(column) = &mut self.column {
            column.clear(row);
        }
        if let Some(rows) = self.values.get_mut(key)
            && !rows.remove(row)
        {
            self.values.remove(key);
        }
        self.present.remove(row);
    }

    /// Rows with a non-empty value.
    pub(crate) fn present(&self) -> &RoaringBitmap {
        &self.present
    }

    /// The values by row, once the field has many distinct values.
    pub(crate) fn column(&self) -> Option<&Column> {
        self.column.as_ref()
    }

    /// How many distinct (lowercased) values there are: the cost of a
    /// predicate test over all of them.
    pub(crate) fn distinct(&self) -> usize {
        self.values.len()
    }

    /// The rows of each distinct value.
    pub(crate) fn value_rows(&self) -> impl Iterator<Item = &Rows> {
        self.values.values()
    }

    /// Every distinct value with its rows.
    #[cfg(test)]
    pub(crate) fn values(&self) -> impl Iterator<Item = (&str, &Rows)> {
        self.values.iter().map(|(k, rows)| (&**k, rows))
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
        entries + heap + self.present.serialized_size() + self.column.as_ref().map_or(0, Column::approx_bytes)
    }
}

/// A text field's index gathered from rows in ascending order and built at
/// once, for the index of many contacts (loading, the end of a bulk
/// replay). Inserting row by row costs a bitmap insert per row (a search
/// of the bitmap's containers, then of a sorted array) and a lowercasing
/// and hash of every value; here a row costs a lookup of its value as
/// written (fields have few distinct spellings) and a push, and each
/// value's bitmap is made from its sorted rows in one go.
pub(crate) struct TextBuilder<'a> {
    /// Each distinct value as written → its id; dropped once it holds
    /// [`MANY_VALUES`] entries (a unique field gains nothing from it).
    raw: HashMap<&'a [u8], u32, Hasher>,
    raw_full: bool,
    /// Each distinct lowercased value → its id (spellings that differ
    /// only in case share one).
    ids: HashMap<Box<str>, u32, Hasher>,
    /// The first row of the run of rows gathered here.
    first: u32,
    /// The value id of each row of the run, [`NO_VALUE`] for an empty one:
    /// four bytes a row, allocated once.
    cells: Vec<u32>,
    scratch: String,
}

const NO_VALUE: u32 = u32::MAX;

impl<'a> TextBuilder<'a> {
    /// A builder for the `len` rows from row `first`.
    pub(crate) fn new(first: u32, len: usize) -> Self {
        TextBuilder {
            raw: HashMap::default(),
            raw_full: false,
            ids: HashMap::default(),
            first,
            cells: vec![NO_VALUE; len],
            scratch: String::new(),
        }
    }

    /// Sets `row`'s value (a row of the run, set once), given as the bytes
    /// of a stored contact's string (`RawFields`): only a spelling not seen
    /// yet is checked and lowercased.
    pub(crate) fn push(&mut self, row: u32, value: &'a [u8]) {
        if value.is_empty() {
            return;
        }
        let id = match self.raw.get(value) {
            Some(&id) => id,
            None => {
                let text = std::str::from_utf8(value).expect("stored contacts' strings are UTF-8");
                let key = lower_in(text, &mut self.scratch);
                let id = match self.ids.get(key) {
                    Some(&id) => id,
                    None => {
                        let id = self.ids.len() as u32;
                        self.ids.insert(key.into(), id);
                        id
                    }
                };
                if !self.raw_full {
                    if self.raw.len() >= MANY_VALUES {
                        self.raw = HashMap::default();
                        self.raw_full = true;
                    } else {
                        self.raw.insert(value, id);
                    }
                }
                id
            }
        };
        self.cells[(row - self.first) as usize] = id;
    }

    /// Appends what `later` gathered, the run of rows right after this one's.
    pub(crate) fn append(&mut self, later: TextBuilder<'a>) {
        debug_assert_eq!(self.first as usize + self.cells.len(), later.first as usize, "runs follow each other");
        let mut ids: Vec<u32> = vec![0; later.ids.len()];
        for (key, id) in later.ids {
            let next = self.ids.len() as u32;
            ids[id as usize] = *self.ids.entry(key).or_insert(next);
        }
        self.cells.extend(later.cells.into_iter().map(|id| if id == NO_VALUE { id } else { ids[id as usize] }));
        // Spellings seen later are found again by their lowercased form.
        self.raw.clear();
    }

    fn rows(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let first = self.first;
        self.cells.iter().enumerate().filter(|(_, id)| **id != NO_VALUE).map(move |(i, id)| (first + i as u32, *id))
    }

    /// The index of the gathered rows, as inserting them one by one into
    /// `TextIndex::with_column_after(column_after)` would make it.
    pub(crate) fn build(self, column_after: usize) -> TextIndex {
        let distinct = self.ids.len();
        // Rows grouped by value id (a counting sort), ascending within each.
        let mut start = vec![0u32; distinct + 1];
        for (_, id) in self.rows() {
            start[id as usize + 1] += 1;
        }
        for i in 0..distinct {
            start[i + 1] += start[i];
        }
        let mut next = start.clone();
        let mut grouped = vec![0u32; start[distinct] as usize];
        for (row, id) in self.rows() {
            let at = &mut next[id as usize];
            grouped[*at as usize] = row;
            *at += 1;
        }
        let present = RoaringBitmap::from_sorted_iter(self.rows().map(|(row, _)| row)).expect("rows ascend");
        let column = (distinct > column_after).then(|| {
            let mut by_id: Vec<&str> = vec![""; distinct];
            for (key, &id) in &self.ids {
                by_id[id as usize] = key;
            }
            let mut column = Column::default();
            for (row, id) in self.rows() {
                column.set(row, by_id[id as usize]);
            }
            column
        });
        let mut values = HashMap::with_capacity_and_hasher(distinct, Hasher::default());
        for (key, id) in self.ids {
            let rows = &grouped[start[id as usize] as usize..start[id as usize + 1] as usize];
            let rows = match rows {
                [one] => Rows::One(*one),
                _ => Rows::Many(Box::new(RoaringBitmap::from_sorted_iter(rows.iter().copied()).expect("rows ascend"))),
            };
            values.insert(key, rows);
        }
        TextIndex { values, present, column, column_after, scratch: String::new() }
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

/// [`lower`] into `buf`, or `s` itself when it is lowercase ASCII already.
fn lower_in<'a>(s: &'a str, buf: &'a mut String) -> &'a str {
    if s.is_ascii() && !s.bytes().any(|b| b.is_ascii_uppercase()) {
        return s;
    }
    buf.clear();
    buf.extend(s.chars().flat_map(char::to_lowercase));
    buf
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
        let mut buf = String::new();
        for s in ["MÜNCHEN", "ΣΑΣ", "İ", "\u{212A}", "plain", "Mixed"] {
            assert_eq!(lower_in(s, &mut buf), lower(s));
        }
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
