//! The lowercased values of one text field laid out by row, back to back in
//! one buffer: what a pattern (`contains`, `starts_with`, `ends_with`) reads
//! when a field has too many distinct values to test them all (email).
//!
//! Why not read the contacts: each candidate row would cost two or three
//! cache misses (the contact, then its string); here the rows of a scan are
//! read in ascending order from two arrays that are mostly in row order too.

use roaring::RoaringBitmap;

/// A span packs the value's start in the buffer (high 40 bits) and its
/// length (low 24 bits); length 0 is an empty value.
const LEN_BITS: u32 = 24;
const LEN_MASK: u64 = (1 << LEN_BITS) - 1;
/// Values this long or longer (16 MiB) are not copied; their rows are
/// marked and the caller tests the contact instead.
const TOO_LONG: u64 = LEN_MASK;
/// Garbage (bytes of values since replaced) tolerated before the buffer is
/// rewritten, as a share of the buffer and as a floor.
const COMPACT_MIN_BYTES: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct Column {
    bytes: Vec<u8>,
    spans: Vec<u64>,
    garbage: usize,
}

/// What a row holds.
pub(crate) enum Cell<'a> {
    Empty,
    Value(&'a str),
    /// A value too long to keep here: ask the contact.
    Elsewhere,
}

impl Column {
    /// Sets the lowercased value of `row` (non-empty).
    pub(crate) fn set(&mut self, row: u32, lowered: &str) {
        self.clear(row);
        let row = row as usize;
        if self.spans.len() <= row {
            self.spans.resize(row + 1, 0);
        }
        let len = lowered.len() as u64;
        if len >= TOO_LONG {
            self.spans[row] = TOO_LONG;
            return;
        }
        let start = self.bytes.len() as u64;
        self.bytes.extend_from_slice(lowered.as_bytes());
        self.spans[row] = start << LEN_BITS | len;
    }

    pub(crate) fn clear(&mut self, row: u32) {
        let Some(span) = self.spans.get_mut(row as usize) else { return };
        let len = *span & LEN_MASK;
        if len != TOO_LONG {
            self.garbage += len as usize;
        }
        *span = 0;
        if self.garbage >= COMPACT_MIN_BYTES && self.garbage * 2 >= self.bytes.len() {
            self.compact();
        }
    }

    pub(crate) fn get(&self, row: u32) -> Cell<'_> {
        let span = self.spans.get(row as usize).copied().unwrap_or(0);
        let len = span & LEN_MASK;
        match len {
            0 => Cell::Empty,
            TOO_LONG => Cell::Elsewhere,
            _ => {
                let start = (span >> LEN_BITS) as usize;
                let bytes = &self.bytes[start..start + len as usize];
                // Always UTF-8: whole strings are copied in. Checking is cheap
                // next to the cache miss that fetched the bytes.
                Cell::Value(std::str::from_utf8(bytes).expect("the column holds whole strings"))
            }
        }
    }

    /// The rows of `within` whose value passes `pred`; rows whose value is
    /// kept elsewhere are decided by `elsewhere`.
    pub(crate) fn rows_where(
        &self,
        within: &RoaringBitmap,
        pred: impl Fn(&str) -> bool,
        elsewhere: impl Fn(u32) -> bool,
    ) -> RoaringBitmap {
        let matching = within.iter().filter(|&row| match self.get(row) {
            Cell::Empty => false,
            Cell::Value(v) => pred(v),
            Cell::Elsewhere => elsewhere(row),
        });
        RoaringBitmap::from_sorted_iter(matching).expect("a bitmap iterates in ascending order")
    }

    /// Rewrites the buffer without garbage, in row order.
    fn compact(&mut self) {
        let mut bytes = Vec::with_capacity(self.bytes.len() - self.garbage);
        for span in &mut self.spans {
            let len = *span & LEN_MASK;
            if len == 0 || len == TOO_LONG {
                continue;
            }
            let start = (*span >> LEN_BITS) as usize;
            let new_start = bytes.len() as u64;
            bytes.extend_from_slice(&self.bytes[start..start + len as usize]);
            *span = new_start << LEN_BITS | len;
        }
        self.bytes = bytes;
        self.garbage = 0;
    }

    /// Heap bytes: for the memory report.
    pub(crate) fn approx_bytes(&self) -> usize {
        self.bytes.capacity() + self.spans.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(c: &Column, row: u32) -> Option<&str> {
        match c.get(row) {
            Cell::Empty => None,
            Cell::Value(v) => Some(v),
            Cell::Elsewhere => Some("<elsewhere>"),
        }
    }

    #[test]
    fn values_are_replaced_cleared_and_survive_compaction() {
        let mut c = Column::default();
        c.set(3, "münchen");
        c.set(0, "a");
        assert_eq!((cell(&c, 0), cell(&c, 1), cell(&c, 3), cell(&c, 9)), (Some("a"), None, Some("münchen"), None));
        // Enough replacements to compact more than once.
        let long = "x".repeat(300_000);
        for i in 0..10 {
            c.set(1, &format!("{i}{long}"));
        }
        assert!(c.bytes.len() < 2 * COMPACT_MIN_BYTES + 2 * long.len(), "compacted: {}", c.bytes.len());
        assert_eq!(cell(&c, 1).map(|v| &v[..1]), Some("9"));
        assert_eq!((cell(&c, 0), cell(&c, 3)), (Some("a"), Some("münchen")));
        c.clear(3);
        assert_eq!(cell(&c, 3), None);
        let within: RoaringBitmap = (0..10).collect();
        assert_eq!(c.rows_where(&within, |v| v.starts_with('9'), |_| true).iter().collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_value_too_long_to_keep_is_left_to_the_caller() {
        let mut c = Column::default();
        c.set(0, &"y".repeat(TOO_LONG as usize));
        assert_eq!(cell(&c, 0), Some("<elsewhere>"));
        let within: RoaringBitmap = [0].into_iter().collect();
        assert_eq!(c.rows_where(&within, |_| false, |_| true).len(), 1);
        c.clear(0);
        assert_eq!(cell(&c, 0), None);
    }
}
