//! The rows that hold one value of one text field. Most values of a unique
//! field (email) are held by one row, and a one-row `RoaringBitmap` costs
//! about a hundred bytes of heap; `Rows::One` costs none. The bitmap is boxed
//! so that a `Rows` is 16 bytes rather than 24: a million email entries.

use roaring::{MultiOps, RoaringBitmap};

#[derive(Clone, Debug)]
pub(crate) enum Rows {
    One(u32),
    /// Always two rows or more.
    Many(Box<RoaringBitmap>),
}

impl Rows {
    pub(crate) fn insert(&mut self, row: u32) {
        match self {
            Rows::One(r) if *r == row => {}
            Rows::One(r) => *self = Rows::Many(Box::new([*r, row].into_iter().collect())),
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
            Rows::Many(b) => &**b & within,
        }
    }
}

/// Collects the union of many `Rows` cheaply: bitmaps are united in one
/// pass (roaring's `MultiOps`, which promotes containers to dense ones as they
/// fill, instead of merging sorted arrays again at every step), and single
/// rows are gathered and sorted once.
#[derive(Default)]
pub(crate) struct Union<'a> {
    bitmaps: Vec<&'a RoaringBitmap>,
    singles: Vec<u32>,
}

impl<'a> Union<'a> {
    pub(crate) fn add(&mut self, rows: &'a Rows) {
        match rows {
            Rows::One(r) => self.singles.push(*r),
            Rows::Many(b) => self.bitmaps.push(b),
        }
    }

    pub(crate) fn finish(mut self) -> RoaringBitmap {
        self.singles.sort_unstable();
        self.singles.dedup();
        let singles = RoaringBitmap::from_sorted_iter(self.singles).expect("sorted and deduplicated");
        if self.bitmaps.is_empty() {
            return singles;
        }
        self.bitmaps.into_iter().union() | singles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_take_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Rows>(), 16);
    }

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
        let (nine, many, one) = (Rows::One(9), Rows::Many(Box::new([1, 5].into_iter().collect())), Rows::One(1));
        let mut u = Union::default();
        u.add(&nine);
        u.add(&many);
        u.add(&one);
        assert_eq!(u.finish().iter().collect::<Vec<_>>(), [1, 5, 9]);
    }
}
