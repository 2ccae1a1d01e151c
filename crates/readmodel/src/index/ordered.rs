//! The index of one integer, decimal or date-time field: a [`BitSliced`]
//! index, and the value of each row in a plain array.
//!
//! Why both: a bit-sliced comparison costs a few bitmap operations per bit
//! over the candidate rows, which is cheap while they are many (operations on
//! dense bitmaps go 64 rows to a word) but adds up when a selective condition
//! left a scattered few thousand, each bit then costing a merge of sorted
//! arrays. Reading those rows' values from the array costs a few nanoseconds
//! a row. Each comparison takes the cheaper of the two.

use super::bitsliced::BitSliced;
use roaring::RoaringBitmap;
use std::ops::{Bound, RangeBounds};

pub(crate) struct OrderedIndex {
    bits: BitSliced,
    /// The value of each row in `present`; anything for other rows.
    column: Vec<i64>,
    /// Up to this many rows always read the column (tests lower it).
    column_min: u64,
}

/// Up to this many candidate rows always read the column.
const COLUMN_MIN: u64 = 4096;

impl Default for OrderedIndex {
    fn default() -> Self {
        OrderedIndex { bits: BitSliced::default(), column: Vec::new(), column_min: COLUMN_MIN }
    }
}

impl OrderedIndex {
    /// The index of the values in `column` of the rows in `present`, in
    /// ascending order (what `column` holds for other rows does not matter).
    pub(crate) fn from_column(present: &[u32], column: Vec<i64>) -> Self {
        let bits = BitSliced::build(present.iter().map(|&row| (row, column[row as usize])));
        OrderedIndex { bits, column, column_min: COLUMN_MIN }
    }

    pub(crate) fn insert(&mut self, row: u32, v: i64) {
        self.bits.insert(row, v);
        self.set(row, v);
    }

    pub(crate) fn remove(&mut self, row: u32, v: i64) {
        self.bits.remove(row, v);
    }

    pub(crate) fn replace(&mut self, row: u32, old: i64, new: i64) {
        self.bits.replace(row, old, new);
        self.set(row, new);
    }

    fn set(&mut self, row: u32, v: i64) {
        let row = row as usize;
        if self.column.len() <= row {
            self.column.resize(row + 1, 0);
        }
        self.column[row] = v;
    }

    /// Rows that have a value.
    pub(crate) fn present(&self) -> &RoaringBitmap {
        self.bits.present()
    }

    /// The bit slices, and the value of each row that has one.
    #[cfg(test)]
    pub(crate) fn parts(&self) -> (&[RoaringBitmap; 64], Vec<(u32, i64)>) {
        (self.bits.slices(), self.present().iter().map(|row| (row, self.column[row as usize])).collect())
    }

    /// Whether reading `rows` values from the column is cheaper than slicing
    /// bits over them: when they are sparse (under one in 16 of the rows
    /// they span, where roaring keeps them as sorted arrays rather than
    /// dense bitmaps), or few.
    fn read_column(&self, rows: &RoaringBitmap) -> bool {
        let span = rows.max().map_or(0, |max| u64::from(max) + 1);
        rows.len() <= self.column_min.max(span / 16)
    }

    fn filter(&self, rows: &RoaringBitmap, keep: impl Fn(i64) -> bool) -> RoaringBitmap {
        let kept = rows.iter().filter(|&row| keep(self.column[row as usize]));
        RoaringBitmap::from_sorted_iter(kept).expect("a bitmap iterates in ascending order")
    }

    /// Rows of `within` whose value is one of `values`.
    pub(crate) fn equal_any(&self, within: &RoaringBitmap, mut values: Vec<i64>) -> RoaringBitmap {
        let rows = within & self.present();
        if self.read_column(&rows) {
            values.sort_unstable();
            self.filter(&rows, |v| values.binary_search(&v).is_ok())
        } else {
            self.bits.equal_any(&rows, values)
        }
    }

    /// Rows of `within` whose value lies between the bounds.
    pub(crate) fn range(&self, within: &RoaringBitmap, low: Bound<i64>, high: Bound<i64>) -> RoaringBitmap {
        let rows = within & self.present();
        if self.read_column(&rows) {
            return self.filter(&rows, |v| (low, high).contains(&v));
        }
        let from_low = match low {
            Bound::Included(v) => self.bits.above(&rows, v, true),
            Bound::Excluded(v) => self.bits.above(&rows, v, false),
            Bound::Unbounded => rows,
        };
        match high {
            Bound::Included(v) => self.bits.below(&from_low, v, true),
            Bound::Excluded(v) => self.bits.below(&from_low, v, false),
            Bound::Unbounded => from_low,
        }
    }

    /// Heap bytes, roughly: for the memory report.
    pub(crate) fn approx_bytes(&self) -> usize {
        self.bits.approx_bytes() + self.column.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bound(spread: i64) -> impl Strategy<Value = Bound<i64>> {
        prop_oneof![
            (-3..spread + 3).prop_map(Bound::Included),
            (-3..spread + 3).prop_map(Bound::Excluded),
            Just(Bound::Unbounded),
        ]
    }

    proptest! {
        /// Reading the column (few or sparse candidates) and slicing bits
        /// (many dense ones) answer the same as testing each value.
        #[test]
        fn ranges_agree_with_plain_comparison(
            (spread, low, high) in prop_oneof![Just(4i64), Just(300), Just(1 << 40)]
                .prop_flat_map(|s| (Just(s), bound(s), bound(s))),
            seeds in prop::collection::vec(any::<u64>(), 0..300),
            list in prop::collection::vec(-2i64..300, 1..80),
            sparse in any::<bool>(),
        ) {
            // No floor: sparse candidates read the column, dense ones slice bits.
            let mut index = OrderedIndex { column_min: 0, ..OrderedIndex::default() };
            let values: Vec<i64> = seeds.iter().map(|s| (*s % spread as u64) as i64 - 1).collect();
            for (row, v) in values.iter().enumerate() {
                index.insert(row as u32, v + 1);
                index.replace(row as u32, v + 1, *v);
            }
            // Every fourth row is removed again.
            for row in (0..values.len()).step_by(4) {
                index.remove(row as u32, values[row]);
            }
            let kept = |row: usize| !row.is_multiple_of(4);
            let step = if sparse { 37 } else { 1 };
            let within: RoaringBitmap = (0..values.len() as u32).filter(|r| r.is_multiple_of(step)).collect();
            let expect = |f: &dyn Fn(i64) -> bool| -> RoaringBitmap {
                (0..values.len()).filter(|&r| kept(r) && within.contains(r as u32) && f(values[r])).map(|r| r as u32).collect()
            };
            prop_assert_eq!(index.range(&within, low, high), expect(&|v| (low, high).contains(&v)));
            prop_assert_eq!(index.equal_any(&within, list.clone()), expect(&|v| list.contains(&v)));
        }
    }
}
