//! A bit-sliced index of one integer, decimal or date-time field: bitmap
//! `i` holds the rows whose value has bit `i` set, after mapping the `i64`
//! to a `u64` that sorts the same way (flipping the sign bit).
//!
//! Why bit slices rather than a bitmap per distinct value: timestamps and
//! money have about as many distinct values as rows, so a range would unite
//! up to a million bitmaps; here any comparison is at most 64 steps of two
//! bitmap operations (O'Neil and Quass, "Improved query performance with
//! variant indexes", 1997), and every step works only on rows still in play,
//! so a comparison restricted to a few candidate rows costs little. The
//! memory is one bitmap per bit that varies across values; bits that are
//! zero everywhere cost nothing.

use roaring::RoaringBitmap;

/// Rows compared with a value: the equal ones, and the ones on one side.
enum Split {
    Below { below: RoaringBitmap, equal: RoaringBitmap },
    Above { above: RoaringBitmap, equal: RoaringBitmap },
}

pub(crate) struct BitSliced {
    /// Rows that have a value.
    present: RoaringBitmap,
    slices: [RoaringBitmap; 64],
}

impl Default for BitSliced {
    fn default() -> Self {
        BitSliced { present: RoaringBitmap::new(), slices: std::array::from_fn(|_| RoaringBitmap::new()) }
    }
}

/// Order-preserving: `a < b` exactly when `key(a) < key(b)`.
pub(crate) fn key(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// The positions of the one bits of `k`.
fn ones(mut k: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if k == 0 {
            return None;
        }
        let i = k.trailing_zeros() as usize;
        k &= k - 1;
        Some(i)
    })
}

impl BitSliced {
    /// The index of `values`, (row, value) in ascending row order, in one
    /// pass: each slice's bits are set in a plain bitset (one bit per row up
    /// to the last), which becomes a bitmap at once. Inserting row by row
    /// searches a bitmap per set bit, appending pushes per set bit (not O(1)
    /// on a dense container), and a pass per slice reads every value up to
    /// 64 times.
    pub(crate) fn build(values: impl Iterator<Item = (u32, i64)> + Clone) -> Self {
        let present =
            RoaringBitmap::from_sorted_iter(values.clone().map(|(row, _)| row)).expect("rows come in ascending order");
        let bytes = present.max().map_or(0, |max| max as usize / 8 + 1);
        // Allocated for the bits some value has: most keys leave high bits alone.
        let mut bits: [Vec<u8>; 64] = std::array::from_fn(|_| Vec::new());
        for (row, v) in values {
            let (byte, bit) = (row as usize / 8, 1u8 << (row % 8));
            for i in ones(key(v)) {
                if bits[i].is_empty() {
                    bits[i] = vec![0; bytes];
                }
                bits[i][byte] |= bit;
            }
        }
        let slices =
            bits.map(|b| if b.is_empty() { RoaringBitmap::new() } else { RoaringBitmap::from_lsb0_bytes(0, &b) });
        BitSliced { present, slices }
    }

    pub(crate) fn insert(&mut self, row: u32, v: i64) {
        self.present.insert(row);
        for i in ones(key(v)) {
            self.slices[i].insert(row);
        }
    }

    pub(crate) fn remove(&mut self, row: u32, v: i64) {
        self.present.remove(row);
        for i in ones(key(v)) {
            self.slices[i].remove(row);
        }
    }

    /// Changes a row's value, touching only the bits that differ.
    pub(crate) fn replace(&mut self, row: u32, old: i64, new: i64) {
        let new_key = key(new);
        for i in ones(key(old) ^ new_key) {
            if new_key >> i & 1 == 1 {
                self.slices[i].insert(row);
            } else {
                self.slices[i].remove(row);
            }
        }
    }

    /// Rows that have a value.
    pub(crate) fn present(&self) -> &RoaringBitmap {
        &self.present
    }

    #[cfg(test)]
    pub(crate) fn slices(&self) -> &[RoaringBitmap; 64] {
        &self.slices
    }

    /// Rows of `within` whose value is above `v` (or equal to it, when
    /// `or_equal`). Rows without a value are never above anything.
    pub(crate) fn above(&self, within: &RoaringBitmap, v: i64, or_equal: bool) -> RoaringBitmap {
        let (w, split) = self.split(within, key(v));
        match (split, or_equal) {
            (Split::Above { above, .. }, false) => above,
            (Split::Above { above, equal }, true) => above | equal,
            (Split::Below { below, equal }, false) => w - below - equal,
            (Split::Below { below, .. }, true) => w - below,
        }
    }

    /// Rows of `within` whose value is below `v` (or equal to it, when `or_equal`).
    pub(crate) fn below(&self, within: &RoaringBitmap, v: i64, or_equal: bool) -> RoaringBitmap {
        let (w, split) = self.split(within, key(v));
        match (split, or_equal) {
            (Split::Below { below, .. }, false) => below,
            (Split::Below { below, equal }, true) => below | equal,
            (Split::Above { above, equal }, false) => w - above - equal,
            (Split::Above { above, .. }, true) => w - above,
        }
    }

    /// The rows of `within` that have a value, and how they compare with
    /// `c`. Going down the bits, `equal` keeps the rows that agree with c so
    /// far; a row leaves it below c where c has a one and the row a zero, and
    /// above c where it is the other way round. Only one of the two sides is
    /// gathered (the other is what is left), because gathering costs two more
    /// bitmap operations on the rows still in play at each bit that decides
    /// rows for that side. The rows in play shrink as bits go down (about by
    /// half, on spread-out values), so the high bits weigh most: the side
    /// gathered is the one whose deciding bits weigh less.
    fn split(&self, within: &RoaringBitmap, c: u64) -> (RoaringBitmap, Split) {
        let w = within & &self.present;
        let total = self.present.len();
        // A slice holding every row (the sign bit of non-negative values)
        // or none decides nothing and costs nothing.
        let varies = |i: usize| !self.slices[i].is_empty() && self.slices[i].len() != total;
        let (mut weight, mut below_cost, mut above_cost) = (1.0f64, 0.0, 0.0);
        for i in (0..64).rev().filter(|&i| varies(i)) {
            if c >> i & 1 == 1 {
                below_cost += weight;
            } else {
                above_cost += weight;
            }
            weight *= 0.6;
        }
        let gather_below = below_cost <= above_cost;
        let mut equal = w.clone();
        let mut decided = RoaringBitmap::new();
        for i in (0..64).rev() {
            if equal.is_empty() {
                break;
            }
            let slice = &self.slices[i];
            let one = c >> i & 1 == 1;
            if slice.is_empty() {
                if one {
                    // Every row has a zero here: all of them are below c.
                    if gather_below {
                        decided |= &equal;
                    }
                    equal.clear();
                }
            } else if slice.len() == total {
                if !one {
                    if !gather_below {
                        decided |= &equal;
                    }
                    equal.clear();
                }
            } else if one {
                if gather_below {
                    decided |= &equal - slice;
                }
                equal &= slice;
            } else {
                if !gather_below {
                    decided |= &equal & slice;
                }
                equal -= slice;
            }
        }
        let split =
            if gather_below { Split::Below { below: decided, equal } } else { Split::Above { above: decided, equal } };
        (w, split)
    }

    /// Rows of `within` whose value is one of `values`, in one descent that
    /// splits the rows in play wherever the values' bits part ways: the rows
    /// at each level are disjoint, so a long list costs about one pass.
    pub(crate) fn equal_any(&self, within: &RoaringBitmap, values: impl IntoIterator<Item = i64>) -> RoaringBitmap {
        let mut keys: Vec<u64> = values.into_iter().map(key).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut out = RoaringBitmap::new();
        self.descend(within & &self.present, &keys, 63, &mut out);
        out
    }

    /// `rows` agree with every key of `keys` on the bits above `bit`.
    fn descend(&self, mut rows: RoaringBitmap, keys: &[u64], mut bit: i32, out: &mut RoaringBitmap) {
        loop {
            if rows.is_empty() || keys.is_empty() {
                return;
            }
            if bit < 0 {
                // All bits agree: the keys have collapsed to the one value these rows hold.
                *out |= rows;
                return;
            }
            let slice = &self.slices[bit as usize];
            // Keys sharing their higher bits are sorted by the rest, so the
            // ones with this bit clear come first.
            let split = keys.partition_point(|k| k >> bit & 1 == 0);
            let (zeros, ones) = keys.split_at(split);
            let full = slice.len() == self.present.len();
            if ones.is_empty() {
                if full {
                    return;
                }
                rows -= slice;
            } else if zeros.is_empty() {
                if !full {
                    rows &= slice;
                }
            } else {
                let with_one = &rows & slice;
                self.descend(with_one, ones, bit - 1, out);
                rows -= slice;
                return self.descend(rows, zeros, bit - 1, out);
            }
            bit -= 1;
        }
    }

    /// Heap bytes, roughly: for the memory report.
    pub(crate) fn approx_bytes(&self) -> usize {
        self.present.serialized_size() + self.slices.iter().map(RoaringBitmap::serialized_size).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bitmap(rows: impl IntoIterator<Item = u32>) -> RoaringBitmap {
        rows.into_iter().collect()
    }

    /// Dense containers (over 4,096 rows each) and rows across several
    /// containers, with gaps: building at once holds the same rows as
    /// inserting one by one.
    #[test]
    fn building_dense_slices_at_once_holds_the_rows_inserts_would() {
        let values: Vec<(u32, i64)> =
            (0..150_000u32).filter(|r| r % 5 != 3).map(|r| (r, i64::from(r) * 7919 % 2001 - 1000)).collect();
        let built = BitSliced::build(values.iter().copied());
        let mut inserted = BitSliced::default();
        for (row, v) in &values {
            inserted.insert(*row, *v);
        }
        assert_eq!(built.present, inserted.present);
        for (i, (a, b)) in built.slices.iter().zip(&inserted.slices).enumerate() {
            assert!(a.iter().eq(b.iter()), "slice {i}");
        }
        let within: RoaringBitmap = (0..150_000).collect();
        assert_eq!(built.below(&within, -3, true), inserted.below(&within, -3, true));
    }

    proptest! {
        #[test]
        fn comparisons_agree_with_plain_integers(
            values in prop::collection::vec(
                prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(-1i64), Just(0i64), -4i64..4, any::<i64>()],
                0..40,
            ),
            probe in prop_oneof![Just(i64::MIN), Just(i64::MAX), -5i64..5, any::<i64>()],
            list in prop::collection::vec(-5i64..5, 1..6),
            within_mask in any::<u64>(),
        ) {
            let built = BitSliced::build(values.iter().enumerate().map(|(row, v)| (row as u32, *v)));
            let mut index = BitSliced::default();
            // Rows 0..n hold the values; every third row is replaced once to
            // exercise `replace`, and row n has no value.
            for (row, v) in values.iter().enumerate() {
                index.insert(row as u32, v.wrapping_add(1));
                if row % 3 == 0 {
                    index.replace(row as u32, v.wrapping_add(1), *v);
                } else {
                    index.remove(row as u32, v.wrapping_add(1));
                    index.insert(row as u32, *v);
                }
            }
            let within = bitmap((0..=values.len() as u32).filter(|r| within_mask >> (r % 64) & 1 == 1));
            let expect = |f: &dyn Fn(i64) -> bool| {
                bitmap(values.iter().enumerate().filter(|(r, v)| within.contains(*r as u32) && f(**v)).map(|(r, _)| r as u32))
            };
            prop_assert_eq!(index.above(&within, probe, false), expect(&|v| v > probe));
            prop_assert_eq!(index.above(&within, probe, true), expect(&|v| v >= probe));
            prop_assert_eq!(index.below(&within, probe, false), expect(&|v| v < probe));
            prop_assert_eq!(index.below(&within, probe, true), expect(&|v| v <= probe));
            prop_assert_eq!(index.equal_any(&within, [probe]), expect(&|v| v == probe));
            prop_assert_eq!(index.equal_any(&within, list.iter().copied()), expect(&|v| list.contains(&v)));
            prop_assert_eq!(&built.present, &index.present);
            prop_assert_eq!(&built.slices, &index.slices, "built at once or row by row, the same bitmaps");
        }
    }
}
