//! The membership index of one organisation: which rows match a criteria
//! tree, answered with bitmap algebra instead of testing every contact.
//!
//! Rows are the `u32` row numbers of `OrgView` (contacts in the order they
//! were first created), so a bitmap iterates in member-page order.
//!
//! - `live`: every row that holds a contact.
//! - Text fields (built-in and each custom field): a [`TextIndex`], lowercase
//!   value → rows, plus the rows with a value. `=`, `!=`, `in`, `not_in`,
//!   `is_empty` are lookups; `contains`, `starts_with`, `ends_with` test each
//!   distinct value once; a field with very many distinct values (email)
//!   also keeps its values by row in one buffer, and patterns read the
//!   candidate rows there. The email entries double as the email → row
//!   lookup of `OrgView`.
//! - Integer, decimal and date-time fields: an [`OrderedIndex`], a
//!   bit-sliced index (every comparison, range and relative date is at most
//!   64 steps of bitmap operations over the rows still in play) plus each
//!   row's value in an array, read instead when the candidates are few.
//!
//! Evaluation (`eval.rs`) passes the candidate rows down the tree: an `all`
//! group runs its cheapest, most selective children first and narrows the
//! candidates as it goes, `any` tests each child only on rows not yet
//! matched, `not` is candidates minus its child. A condition the index cannot
//! answer (one whose operand is of another kind than its field, which only an
//! unchecked tree has) is tested with `Condition::matches` on the candidate
//! rows only, so the index always answers exactly what `Criteria::matches`
//! answers.
//!
//! Maintained per event: a created contact is inserted, an updated one
//! changes only the fields whose values differ, a deleted one is removed
//! with the values it held. At start the index is rebuilt from the contacts
//! loaded from sled; it is never stored.

mod bitsliced;
mod column;
mod eval;
mod ordered;
mod rows;
#[cfg(test)]
mod tests;
mod text;

pub(crate) use eval::{Evaluator, SegmentCriteria};

use crate::stored::{ContactFields, StoredContact};
use ordered::OrderedIndex;
use roaring::RoaringBitmap;
use segmentd_domain::contact::{Field, FieldKind, FieldValue};
use std::collections::{BTreeMap, HashMap};
use text::{TextBuilder, TextIndex};

pub(crate) struct ContactIndex {
    /// How many distinct values a text field has before it keeps a column.
    column_after: usize,
    live: RoaringBitmap,
    /// The built-in text fields, in `Field::BUILTIN` order.
    text: Vec<(Field, TextIndex)>,
    /// By custom field name; a field no contact ever had is absent (all empty).
    custom: HashMap<String, TextIndex>,
    /// The built-in integer, decimal and date-time fields.
    ordered: Vec<(Field, OrderedIndex)>,
}

impl Default for ContactIndex {
    fn default() -> Self {
        ContactIndex::with_column_after(text::MANY_VALUES)
    }
}

impl ContactIndex {
    /// Tests use a small `distinct` so that a handful of contacts exercise
    /// the text columns.
    pub(crate) fn with_column_after(distinct: usize) -> Self {
        let builtin = || Field::BUILTIN.iter().cloned();
        let text = || TextIndex::with_column_after(distinct);
        ContactIndex {
            column_after: distinct,
            live: RoaringBitmap::new(),
            text: builtin().filter(|f| f.kind() == FieldKind::Text).map(|f| (f, text())).collect(),
            custom: HashMap::new(),
            ordered: builtin().filter(|f| f.kind() != FieldKind::Text).map(|f| (f, OrderedIndex::default())).collect(),
        }
    }

    /// The index of `rows` (contacts by row number), built at once: what
    /// loading from sled does.
    pub(crate) fn build(rows: &[Option<StoredContact>]) -> Self {
        let mut index = ContactIndex::default();
        index.fill(rows, true);
        index
    }

    /// Rebuilds everything but the email entries from `rows`: the end of a
    /// bulk replay, which kept only those (`insert_email`, `remove_email`)
    /// because they are the email → row lookup.
    pub(crate) fn rebuild_keeping_emails(&mut self, rows: &[Option<StoredContact>]) {
        let mut fresh = ContactIndex::with_column_after(self.column_after);
        for ((field, kept), (_, new)) in self.text.iter_mut().zip(&mut fresh.text) {
            if *field == Field::Email {
                std::mem::swap(kept, new);
            }
        }
        fresh.fill(rows, false);
        *self = fresh;
    }

    /// Adds every contact of `rows` (to an empty index); emails too when
    /// `emails`. Split over the cores (`parts`).
    fn fill(&mut self, rows: &[Option<StoredContact>], emails: bool) {
        // Below this, starting threads costs more than it saves.
        const SPLIT_FROM: usize = 1 << 16;
        let parts = if rows.len() < SPLIT_FROM {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_PARTS)
        };
        self.fill_in(rows, emails, parts);
    }

    /// [`ContactIndex::fill`] in `parts` runs of rows. Each run's contacts
    /// are read once, on a thread of their own, into per-field gatherings
    /// (a text field's values, a number field's column and present rows);
    /// then each field's structure is built from the runs' gatherings in
    /// row order, fields shared out among the threads. Every field is
    /// built from the same rows in the same order whatever the split, so
    /// the index is the same.
    pub(crate) fn fill_in(&mut self, rows: &[Option<StoredContact>], emails: bool, parts: usize) {
        self.live = RoaringBitmap::from_sorted_iter(
            rows.iter().enumerate().filter(|(_, c)| c.is_some()).map(|(row, _)| row as u32),
        )
        .expect("rows ascend");
        let text: Vec<(usize, Field)> = (self.text.iter().enumerate())
            .filter(|(_, (field, _))| emails || *field != Field::Email)
            .map(|(i, (field, _))| (i, field.clone()))
            .collect();
        let ordered: Vec<Field> = self.ordered.iter().map(|(field, _)| field.clone()).collect();
        // Numbers go to the columns the ordered indexes keep anyway; each
        // run writes its own rows' stretch of them.
        let mut columns: Vec<Vec<i64>> = ordered.iter().map(|_| vec![0; rows.len()]).collect();
        let run = rows.len().div_ceil(parts.max(1)).max(1);
        let mut stretches: Vec<Vec<&mut [i64]>> = rows.chunks(run).map(|_| Vec::new()).collect();
        for column in &mut columns {
            for (stretch, piece) in stretches.iter_mut().zip(column.chunks_mut(run)) {
                stretch.push(piece);
            }
        }
        let runs: Vec<Gathered<'_>> =
            on_threads(rows.chunks(run).zip(stretches).enumerate().map(|(k, (part, stretch))| {
                let (text, ordered) = (&text, &ordered);
                move || gather(part, k * run, text, ordered, stretch)
            }));
        let count = runs.len();
        let mut runs_text: Vec<Vec<Option<TextBuilder<'_>>>> = text.iter().map(|_| Vec::new()).collect();
        let mut runs_custom: BTreeMap<&[u8], Vec<Option<TextBuilder<'_>>>> = BTreeMap::new();
        let mut runs_present: Vec<Vec<Vec<u32>>> = ordered.iter().map(|_| Vec::new()).collect();
        for (k, gathered) in runs.into_iter().enumerate() {
            for (all, one) in runs_text.iter_mut().zip(gathered.text) {
                all.push(Some(one));
            }
            for (name, one) in gathered.custom {
                runs_custom.entry(name).or_insert_with(|| (0..count).map(|_| None).collect())[k] = Some(one);
            }
            for (all, one) in runs_present.iter_mut().zip(gathered.present) {
                all.push(one);
            }
        }
        let (column_after, total) = (self.column_after, rows.len());
        let text_jobs = text
            .iter()
            .zip(runs_text)
            .map(move |((slot, _), runs)| move || Built::Text(*slot, merged(runs, run, total).build(column_after)));
        let custom_jobs = runs_custom.into_iter().map(move |(name, runs)| {
            let name = std::str::from_utf8(name).expect("stored contacts' strings are UTF-8").to_owned();
            move || Built::Custom(name, merged(runs, run, total).build(column_after))
        });
        let ordered_jobs = runs_present.into_iter().zip(columns).enumerate().map(|(slot, (present, column))| {
            move || Built::Ordered(slot, Box::new(OrderedIndex::from_column(&present.concat(), column)))
        });
        let jobs: Vec<Box<dyn FnOnce() -> Built + Send + '_>> =
            (ordered_jobs.map(boxed)).chain(text_jobs.map(boxed)).chain(custom_jobs.map(boxed)).collect();
        for built in shared_out(jobs, parts) {
            match built {
                Built::Text(slot, index) => self.text[slot].1 = index,
                Built::Custom(name, index) => {
                    self.custom.insert(name, index);
                }
                Built::Ordered(slot, index) => self.ordered[slot].1 = *index,
            }
        }
    }

    /// Only the email entry of a contact (the row lookup), during a bulk replay.
    pub(crate) fn insert_email(&mut self, row: u32, email: &str) {
        self.emails_mut().insert(row, email);
    }

    /// Only the email entry of a contact, during a bulk replay.
    pub(crate) fn remove_email(&mut self, row: u32, email: &str) {
        self.emails_mut().remove(row, email);
    }

    fn emails_mut(&mut self) -> &mut TextIndex {
        self.text.iter_mut().find(|(f, _)| *f == Field::Email).map(|(_, t)| t).expect("email is a built-in text field")
    }

    /// Every row holding a contact.
    pub(crate) fn live(&self) -> &RoaringBitmap {
        &self.live
    }

    /// The index of a text field; `None` for a custom field no contact has had.
    fn text(&self, field: &Field) -> Option<&TextIndex> {
        match field {
            Field::Custom(name) => self.custom.get(name),
            _ => self.text.iter().find(|(f, _)| f == field).map(|(_, t)| t),
        }
    }

    fn ordered(&self, field: &Field) -> Option<&OrderedIndex> {
        self.ordered.iter().find(|(f, _)| f == field).map(|(_, b)| b)
    }

    /// The rows whose value of date-time (or number) field `field` lies in
    /// `[low, high]`: the rows a moving clock can carry across a relative
    /// condition's bound.
    pub(crate) fn rows_between(&self, field: &Field, low: i64, high: i64) -> RoaringBitmap {
        use std::ops::Bound::Included;
        self.ordered(field).map(|o| o.range(&self.live, Included(low), Included(high))).unwrap_or_default()
    }

    /// The rows whose email is `email` ignoring case (in practice one row:
    /// emails are stored lowercase and are a contact's identity).
    pub(crate) fn rows_with_email(&self, email: &str) -> impl Iterator<Item = u32> + '_ {
        self.text(&Field::Email).and_then(|t| t.rows_equal(email)).into_iter().flat_map(|rows| rows.iter())
    }

    /// Each distinct value of a text field: its first row and how many
    /// rows hold it. Empty for a custom field no contact has had.
    pub(crate) fn text_values(&self, field: &Field) -> impl Iterator<Item = (Option<u32>, u64)> + '_ {
        self.text(field).into_iter().flat_map(TextIndex::value_rows).map(|rows| (rows.iter().next(), rows.len()))
    }

    pub(crate) fn insert(&mut self, row: u32, c: &ContactFields<'_>) {
        self.live.insert(row);
        for (field, index) in &mut self.text {
            index.insert(row, text_value(c, field));
        }
        for (name, value) in c.customs() {
            self.custom_mut(name).insert(row, value);
        }
        for (field, index) in &mut self.ordered {
            if let Some(v) = ordered_value(c.value(field)) {
                index.insert(row, v);
            }
        }
    }

    pub(crate) fn remove(&mut self, row: u32, c: &ContactFields<'_>) {
        self.live.remove(row);
        for (field, index) in &mut self.text {
            index.remove(row, text_value(c, field));
        }
        for (name, value) in c.customs() {
            self.custom_mut(name).remove(row, value);
        }
        for (field, index) in &mut self.ordered {
            if let Some(v) = ordered_value(c.value(field)) {
                index.remove(row, v);
            }
        }
    }

    /// Moves `row` from the values of `old` to those of `new`, touching only
    /// the fields that changed: an update usually changes one or two.
    pub(crate) fn replace(&mut self, row: u32, old: &ContactFields<'_>, new: &ContactFields<'_>) {
        for (field, index) in &mut self.text {
            let (a, b) = (text_value(old, field), text_value(new, field));
            if a != b {
                index.remove(row, a);
                index.insert(row, b);
            }
        }
        for (name, a) in old.customs() {
            if new.custom(name) != Some(a) {
                self.custom_mut(name).remove(row, a);
            }
        }
        for (name, b) in new.customs() {
            if old.custom(name) != Some(b) {
                self.custom_mut(name).insert(row, b);
            }
        }
        for (field, index) in &mut self.ordered {
            match (ordered_value(old.value(field)), ordered_value(new.value(field))) {
                (Some(a), Some(b)) if a != b => index.replace(row, a, b),
                (Some(a), None) => index.remove(row, a),
                (None, Some(b)) => index.insert(row, b),
                _ => {}
            }
        }
    }

    fn custom_mut(&mut self, name: &str) -> &mut TextIndex {
        // Look up before inserting, so the common case allocates no key.
        if !self.custom.contains_key(name) {
            self.custom.insert(name.to_owned(), TextIndex::with_column_after(self.column_after));
        }
        self.custom.get_mut(name).expect("inserted above")
    }

    /// Heap bytes held by the index, roughly (hash table slots, keys and
    /// bitmaps; not allocator overhead).
    pub(crate) fn approx_bytes(&self) -> usize {
        self.live.serialized_size()
            + self.text.iter().map(|(_, t)| t.approx_bytes()).sum::<usize>()
            + self.custom.values().map(TextIndex::approx_bytes).sum::<usize>()
            + self.ordered.iter().map(|(_, b)| b.approx_bytes()).sum::<usize>()
    }
}

/// Most threads one index build uses.
const MAX_PARTS: usize = 4;

/// What one run of consecutive rows gathers for the index.
struct Gathered<'a> {
    /// Per text field being filled, in the order given.
    text: Vec<TextBuilder<'a>>,
    /// By name, as stored.
    custom: HashMap<&'a [u8], TextBuilder<'a>>,
    /// Per ordered field, the rows with a value.
    present: Vec<Vec<u32>>,
}

/// Reads the contacts of `rows` (row numbers from `first`) once each.
fn gather<'a>(
    rows: &'a [Option<StoredContact>],
    first: usize,
    text: &[(usize, Field)],
    ordered: &[Field],
    mut columns: Vec<&mut [i64]>,
) -> Gathered<'a> {
    let builder = || TextBuilder::new(first as u32, rows.len());
    let mut gathered = Gathered {
        text: text.iter().map(|_| builder()).collect(),
        custom: HashMap::new(),
        present: ordered.iter().map(|_| Vec::new()).collect(),
    };
    for (i, c) in rows.iter().enumerate() {
        let Some(c) = c else { continue };
        let row = (first + i) as u32;
        let c = c.raw_fields();
        for ((field, present), column) in ordered.iter().zip(&mut gathered.present).zip(&mut columns) {
            if let Some(v) = c.number(field) {
                present.push(row);
                column[i] = v;
            }
        }
        for ((_, field), builder) in text.iter().zip(&mut gathered.text) {
            builder.push(row, c.text(field));
        }
        for (name, value) in c.customs() {
            gathered.custom.entry(name).or_insert_with(builder).push(row, value);
        }
    }
    gathered
}

/// The runs' gatherings of one field as one, in row order; `runs` holds
/// the gathering of every run of `run` rows (the last one maybe shorter)
/// of `total`, `None` where a run had no such field.
fn merged(runs: Vec<Option<TextBuilder<'_>>>, run: usize, total: usize) -> TextBuilder<'_> {
    let mut all = TextBuilder::new(0, 0);
    for (k, gathered) in runs.into_iter().enumerate() {
        // A run without the field is a run of rows without a value.
        let first = k * run;
        all.append(gathered.unwrap_or_else(|| TextBuilder::new(first as u32, run.min(total - first))));
    }
    all
}

/// A field's index, built, and where it goes.
enum Built {
    Text(usize, TextIndex),
    Custom(String, TextIndex),
    Ordered(usize, Box<OrderedIndex>),
}

fn boxed<'a, T>(job: impl FnOnce() -> T + Send + 'a) -> Box<dyn FnOnce() -> T + Send + 'a> {
    Box::new(job)
}

/// Runs each job on a thread of its own (the first on this one); the
/// results in the jobs' order.
fn on_threads<T: Send>(jobs: impl Iterator<Item = impl FnOnce() -> T + Send>) -> Vec<T> {
    let mut jobs = jobs;
    let Some(first) = jobs.next() else { return Vec::new() };
    std::thread::scope(|s| {
        let others: Vec<_> = jobs.map(|job| s.spawn(job)).collect();
        let mut out = vec![first()];
        out.extend(others.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
        out
    })
}

/// Runs `jobs` on `threads` threads (this one among them), each taking the
/// next job left; the results in the jobs' order.
fn shared_out<'a, T: Send>(jobs: Vec<Box<dyn FnOnce() -> T + Send + 'a>>, threads: usize) -> Vec<T> {
    let count = jobs.len();
    let queue = std::sync::Mutex::new(jobs.into_iter().enumerate());
    let work = || {
        let mut done = Vec::new();
        loop {
            let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
            let Some((i, job)) = next else { return done };
            done.push((i, job()));
        }
    };
    let mut all: Vec<(usize, T)> =
        on_threads((0..threads.clamp(1, count.max(1))).map(|_| &work)).into_iter().flatten().collect();
    all.sort_unstable_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

fn text_value<'c>(c: &ContactFields<'c>, field: &Field) -> &'c str {
    match c.value(field) {
        FieldValue::Text(t) => t,
        _ => unreachable!("{field} is a text field"),
    }
}

/// The value of an integer, decimal or date-time field as the `i64` it is.
fn ordered_value(v: FieldValue<'_>) -> Option<i64> {
    match v {
        FieldValue::Integer(v) => v,
        FieldValue::Decimal(v) => v.map(|d| d.0),
        FieldValue::Time(v) => v.map(|t| t.0),
        FieldValue::Text(_) => None,
    }
}
