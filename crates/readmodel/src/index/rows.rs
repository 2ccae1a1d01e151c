//! The rows that hold one value of one text field. Most values of a unique
//! field (email) are held by one row, and a one-row `RoaringBitmap` costs
//! about a hundred bytes of heap; `Rows::One` costs none.

use roaring::RoaringBitmap;

#[derive(Clone, Debug)]
pub(crate) enum Rows {
    One(u32),
    /// Always two rows or more.
    Many(RoaringBitmap),
}

impl Rows {
    pub(crate) fn insert(&mut self, row: u32) {
        match self {
            Rows::One(r) if *r == row => {}
            Rows::One(r) => *self = Rows::Many([*r, row].into_iter().collect()),
            Rows::Many(b) => {
                b.insert(row);
            }
        }
    }

    /// Removes `row`; false when no row is left (the caller drops the entry).
    pub(crate) fn remove(&mut self, row: u32) -> bool {
        match self {
            Rows::One(r) => *r != row,
            Rows::Many(b) => {
                b.remove(row);
                if b.len() == 1 {
                    let last = b.min().expect("one row is left");
                    *self = Rows::One(last);
                }
                true
            }
        }
    }

    pub(crate) fn len(&self) -> u64 {
        match self {
            Rows::One(_) => 1,
            Rows::Many(b) => b.len(),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let (one, many) = match self {
            Rows::One(r) => (Some(*r), None),
            Rows::Many(b) => (None, Some(b.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// The rows that are also in `within`.
    pub(crate) fn and(&self, within: &RoaringBitmap) -> RoaringBitmap {
        match self {
            Rows::One(r) if within.contains(*r) => RoaringBitmap::from_sorted_iter([*r]).expect("one value is sorted"),
            Rows::One(_) => RoaringBitmap::new(),
            Rows::Many(b) => b & within,
        }
    }
}

/// Collects the union of many `Rows` cheaply: single rows are gathered and
/// sorted once rather than inserted one by one into a bitmap.
#[derive(Default)]
pub(crate) struct Union {
    bitmap: RoaringBitmap,
    singles: Vec<u32>,
}

impl Union {
    pub(crate) fn add(&mut self, rows: &Rows) {
        match rows {
            Rows::One(r) => self.singles.push(*r),
            Rows::Many(b) => self.bitmap |= b,
        }
    }

    pub(crate) fn finish(mut self) -> RoaringBitmap {
        self.singles.sort_unstable();
        self.singles.dedup();
        let singles = RoaringBitmap::from_sorted_iter(self.singles).expect("sorted and deduplicated");
        self.bitmap | singles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_grows_into_a_bitmap_and_shrinks_back() {
        let mut rows = Rows::One(7);
        rows.insert(7);
        assert!(matches!(rows, Rows::One(7)));
        rows.insert(3);
        assert_eq!(rows.iter().collect::<Vec<_>>(), [3, 7]);
        assert!(rows.remove(7));
        assert!(matches!(rows, Rows::One(3)));
        assert!(!rows.remove(3));
    }

    #[test]
    fn union_merges_singles_and_bitmaps() {
        let mut u = Union::default();
        u.add(&Rows::One(9));
        u.add(&Rows::Many([1, 5].into_iter().collect()));
        u.add(&Rows::One(1));
        assert_eq!(u.finish().iter().collect::<Vec<_>>(), [1, 5, 9]);
    }
}
