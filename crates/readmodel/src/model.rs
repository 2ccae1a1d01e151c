//! The read model: durable in sled, served from memory. Queries take a
//! consistent view (all of a batch or none of it) under a read lock, and are
//! answered by the org's membership index (`crate::index`), which the same
//! write that changes a contact keeps current.

use crate::clock::Clock;
use crate::index::{ContactIndex, Evaluator};
use crate::jobs::{AffectedContact, JobNotice, JobView, apply_job_event};
use crate::membership::{ChangeRecord, Feed, FeedError, Memberships, Touched, Watch, WatchFilter};
use crate::projector::Replayed;
use crate::store::{self, Key};
use crate::stored::StoredContact;
use roaring::RoaringBitmap;
use segmentd_domain::contact::{FieldKind, FieldValue};
use segmentd_domain::criteria::Criteria;
use segmentd_domain::segment::{SegmentCatalog, SegmentDef};
use segmentd_domain::time::Timestamp;
use segmentd_domain::versions::SegmentVersion;
use segmentd_domain::{AggregateKind, Contact, Envelope, Event, Field};
use segmentd_log::{Recorded, Seq};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Job notices buffered for slow watchers; one that falls further behind
/// re-reads the jobs' state instead (see `ReadModel::watch_jobs`).
const JOB_NOTICES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    #[error("read model storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("read model record {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("the read model is at sequence {applied}; sequence {wanted} was not applied within {waited:?}")]
    Lagging { applied: Seq, wanted: Seq, waited: Duration },
}

/// How a query names a segment.
#[derive(Clone, Debug)]
pub enum SegmentLookup<'a> {
    Id(u64),
    Name(&'a str),
}

/// One organisation's data. Contacts sit in rows numbered in the order they
/// were first created; the row number is the stable order of member pages
/// and is the same on every replica, because every replica applies the same
/// log in the same order.
#[derive(Default)]
pub struct OrgView {
    pub(crate) rows: Vec<Option<StoredContact>>,
    /// Also the email → row lookup: a separate map would hold every email a
    /// second time (about 80 MB at a million contacts).
    pub(crate) index: ContactIndex,
    catalog: SegmentCatalog,
    jobs: BTreeMap<String, JobView>,
    /// Per score-reset job, the contacts it reset in log order.
    resets: HashMap<String, Vec<AffectedContact>>,
    /// The members (emails, in member order) of each static list.
    list_members: HashMap<u64, Vec<String>>,
    pub(crate) criteria: HashMap<u64, Arc<Criteria>>,
    /// Saved segments' members, kept per event (`crate::membership`).
    pub(crate) memberships: Memberships,
    /// Contacts changed since the member sets were last brought up to date.
    pub(crate) touched: Touched,
    /// Segments whose criteria were set or removed since then.
    pub(crate) redefined: Vec<u64>,
    /// True while a bulk replay folds contacts into `rows` keeping only the
    /// index's email entries (`ReadModel::apply_bulk`).
    bulk: bool,
    /// Who made each version of a live segment, by (segment, version).
    version_meta: HashMap<(u64, u64), VersionMeta>,
}

/// The recording of one segment version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionMeta {
    pub seq: Seq,
    /// The envelope's actor: the API key that sent the command.
    pub actor: String,
    /// The event that made the version (SegmentCreated, SegmentUpdated,
    /// SegmentRolledBack, SegmentCloned, …).
    pub event_type: &'static str,
}

/// Rows evaluated at once for a member page, at first; the window doubles
/// while the page is not full, so a page of common members looks at few rows
/// and a page of rare ones at most twice as many as a full count would.
const FIRST_WINDOW: u32 = 1 << 16;

/// A page of members and where the next one starts.
pub struct Members {
    /// As stored: the gRPC edge reads their fields in place
    /// (`StoredContact::fields`) rather than decoding whole contacts.
    pub contacts: Vec<StoredContact>,
    /// The row to continue after, when more members follow.
    pub next_after: Option<u32>,
}

impl OrgView {
    pub fn contact(&self, email: &str) -> Option<Contact> {
        let row = self.row_of(email)?;
        self.rows[row as usize].as_ref().map(StoredContact::to_contact)
    }

    pub fn contact_count(&self) -> usize {
        self.index.live().len() as usize
    }

    /// Heap bytes of the membership index, roughly (for memory reports).
    pub fn index_bytes(&self) -> usize {
        self.index.approx_bytes()
    }

    /// The row of the contact whose email is exactly `email`.
    pub(crate) fn row_of(&self, email: &str) -> Option<u32> {
        self.index
            .rows_with_email(email)
            .find(|&row| self.rows.get(row as usize).and_then(Option::as_ref).is_some_and(|c| c.email() == email))
    }

    pub fn segment(&self, lookup: SegmentLookup<'_>) -> Option<&SegmentDef> {
        match lookup {
            SegmentLookup::Id(id) => self.catalog.segments.get(&id),
            SegmentLookup::Name(name) => self.catalog.by_name(name),
        }
    }

    pub fn segments(&self) -> impl Iterator<Item = &SegmentDef> {
        self.catalog.segments.values()
    }

    /// Every version of live segment `id`, oldest first, with who made it.
    pub fn segment_versions(&self, id: u64) -> Vec<(&SegmentVersion, Option<&VersionMeta>)> {
        let versions = self.catalog.versions.of(id);
        versions.iter().map(|v| (v, self.version_meta.get(&(id, v.version)))).collect()
    }

    /// The whole catalogue: segments, topics, lists, campaigns, bulks.
    pub fn catalog(&self) -> &SegmentCatalog {
        &self.catalog
    }

    /// Up to `limit` emails of static list `list_id` after position `after`.
    pub fn list_members(&self, list_id: u64, after: usize, limit: usize) -> &[String] {
        let all = self.list_members.get(&list_id).map_or(&[][..], Vec::as_slice);
        let from = after.min(all.len());
        &all[from..(from + limit).min(all.len())]
    }

    /// How many members static list `list_id` holds here.
    pub fn list_len(&self, list_id: u64) -> usize {
        self.list_members.get(&list_id).map_or(0, Vec::len)
    }

    /// The distinct values of a text field with how many contacts hold
    /// each (values compared case-insensitively, as `=` compares them; each
    /// shown as the first contact holding it writes it), ordered by value.
    /// `None` when `field` is not a text field.
    pub fn distinct_values(&self, field: &Field) -> Option<Vec<(String, u64)>> {
        if field.kind() != FieldKind::Text {
            return None;
        }
        let mut values: Vec<(String, u64)> = self
            .index
            .text_values(field)
            .filter_map(|(rows, count)| {
                let first = rows.and_then(|row| self.rows[row as usize].as_ref())?;
                match first.fields().value(field) {
                    FieldValue::Text(t) => Some((t.to_owned(), count)),
                    _ => None,
                }
            })
            .collect();
        values.sort_by(|a, b| a.0.to_lowercase().cmp(&b.0.to_lowercase()).then_with(|| a.0.cmp(&b.0)));
        Some(values)
    }

    /// The parsed criteria of a live segment.
    pub fn segment_criteria(&self, id: u64) -> Option<&Arc<Criteria>> {
        self.criteria.get(&id)
    }

    pub fn job(&self, id: &str) -> Option<&JobView> {
        self.jobs.get(id)
    }

    /// Every job of the org, by id.
    pub fn jobs(&self) -> impl Iterator<Item = &JobView> {
        self.jobs.values()
    }

    /// The contacts score reset `job_id` reset so far, in log order.
    pub fn reset_contacts(&self, job_id: &str) -> &[AffectedContact] {
        self.resets.get(job_id).map_or(&[], Vec::as_slice)
    }

    /// Every member's email, in member order, with relative dates measured
    /// back from `at`: the member list a job starts from.
    pub fn member_emails(&self, criteria: &Criteria, at: Timestamp) -> Vec<String> {
        self.matching(criteria, at)
            .iter()
            .filter_map(|r| self.rows.get(r as usize).and_then(Option::as_ref).map(|c| c.email().to_owned()))
            .collect()
    }

    /// Every member, in member order, as [`OrgView::member_emails`] lists
    /// them: what a job's dry run looks at.
    pub fn member_contacts(&self, criteria: &Criteria, at: Timestamp) -> Vec<StoredContact> {
        self.matching(criteria, at).iter().filter_map(|r| self.rows.get(r as usize).and_then(Option::clone)).collect()
    }

    /// How many contacts match, with relative dates measured back from `at`.
    pub fn count(&self, criteria: &Criteria, at: Timestamp) -> u64 {
        self.matching(criteria, at).len()
    }

    /// The rows of every matching contact, in member order.
    pub(crate) fn matching(&self, criteria: &Criteria, at: Timestamp) -> RoaringBitmap {
        Evaluator::new(&self.index, &self.rows, &self.criteria, at).eval(criteria, self.index.live())
    }

    /// Up to `limit` matching contacts in row order, starting after row `after`.
    pub fn members(&self, criteria: &Criteria, at: Timestamp, after: Option<u32>, limit: usize) -> Members {
        self.page(criteria, at, after, limit, FIRST_WINDOW)
    }

    fn page(&self, criteria: &Criteria, at: Timestamp, after: Option<u32>, limit: usize, first_window: u32) -> Members {
        let empty = Members { contacts: Vec::new(), next_after: None };
        let Some(mut from) = after.map_or(Some(0), |r| r.checked_add(1)) else { return empty };
        if limit == 0 {
            return empty;
        }
        let end = self.rows.len() as u64;
        let evaluator = Evaluator::new(&self.index, &self.rows, &self.criteria, at);
        // One member more than the page, to know whether another page follows.
        let mut rows = Vec::with_capacity(limit.min(1024) + 1);
        let mut width = first_window.max(1);
        while u64::from(from) < end && rows.len() <= limit {
            let to = (u64::from(from) + u64::from(width)).min(end) as u32;
            let mut window = RoaringBitmap::new();
            window.insert_range(from..to);
            window &= self.index.live();
            rows.extend(evaluator.eval(criteria, &window).iter().take(limit + 1 - rows.len()));
            from = to;
            width = width.saturating_mul(2);
        }
        let more = rows.len() > limit;
        rows.truncate(limit);
        Members { contacts: self.contacts_of(&rows), next_after: if more { rows.last().copied() } else { None } }
    }
}

impl OrgView {
    /// The contacts of `rows` (live rows), shared.
    pub(crate) fn contacts_of(&self, rows: &[u32]) -> Vec<StoredContact> {
        rows.iter().filter_map(|&r| self.rows[r as usize].clone()).collect()
    }
}

#[derive(Default)]
struct State {
    applied: Seq,
    orgs: HashMap<String, OrgView>,
    /// The earliest and latest clock instants memberships were evaluated at
    /// since the last `advance_clock`.
    evaluated: Option<(Timestamp, Timestamp)>,
}

impl State {
    fn evaluated_at(&mut self, at: Timestamp) {
        let (low, high) = self.evaluated.unwrap_or((at, at));
        self.evaluated = Some((low.min(at), high.max(at)));
    }
}

pub struct ReadModel {
    /// `None` for a model that lives in memory only (a past state built for
    /// a time-travel query): nothing to persist, nothing to encode.
    store: Option<Store>,
    state: RwLock<State>,
    applied: watch::Sender<Seq>,
    jobs: broadcast::Sender<JobNotice>,
    clock: Clock,
    feed: Arc<Feed>,
    /// False for in-memory past states: saved segments' members are not kept.
    keeps_members: bool,
}

struct Store {
    tree: sled::Tree,
    // Kept so the database outlives the tree handle and can be flushed.
    db: sled::Db,
}

/// Where an applied event's durable changes go: a sled batch, or nowhere
/// for a model in memory. Keys and values are built only when they are kept.
struct Writes {
    batch: Option<sled::Batch>,
    /// The contact blocks changed, by org: encoded once, from the rows as
    /// they stand after the whole batch (`Writes::finish`).
    blocks: HashMap<String, Vec<u32>>,
}

impl Writes {
    fn new(durable: bool) -> Self {
        Writes { batch: durable.then(sled::Batch::default), blocks: HashMap::new() }
    }

    fn insert(&mut self, key: impl FnOnce() -> Vec<u8>, value: impl FnOnce() -> Vec<u8>) {
        if let Some(batch) = &mut self.batch {
            batch.insert(key(), value());
        }
    }

    fn contact_changed(&mut self, org: &str, row: u32) {
        if self.batch.is_none() {
            return;
        }
        let block = row / store::BLOCK_ROWS;
        match self.blocks.get_mut(org) {
            Some(blocks) if blocks.last() == Some(&block) => {}
            Some(blocks) => blocks.push(block),
            None => {
                self.blocks.insert(org.to_owned(), vec![block]);
            }
        }
    }

    /// The batch, with every changed block as `orgs` hold it now.
    fn finish(self, orgs: &HashMap<String, OrgView>) -> Option<sled::Batch> {
        let mut batch = self.batch?;
        for (org, mut blocks) in self.blocks {
            let Some(view) = orgs.get(&org) else { continue };
            blocks.sort_unstable();
            blocks.dedup();
            for block in blocks {
                let from = (block * store::BLOCK_ROWS) as usize;
                let to = (from + store::BLOCK_ROWS as usize).min(view.rows.len());
                batch.insert(store::block_key(&org, block), store::encode_block(&view.rows[from..to]));
            }
        }
        Some(batch)
    }
}

/// One event to apply: decoded, or a contact's new state already in its
/// stored form (`Replayed::Contact`).
enum Step<'e> {
    Event(&'e Recorded),
    Contact { seq: Seq, org: &'e str, contact: &'e StoredContact },
}

impl Step<'_> {
    fn seq(&self) -> Seq {
        match self {
            Step::Event(rec) => rec.seq,
            Step::Contact { seq, .. } => *seq,
        }
    }
}

impl<'a> Replayed<'a> {
    fn step(&self) -> Step<'_> {
        match self {
            Replayed::Event(rec) => Step::Event(rec),
            Replayed::Contact { seq, org, contact, .. } => Step::Contact { seq: *seq, org, contact },
        }
    }
}

impl ReadModel {
    /// Opens (or creates) the read model under `dir` and loads it into
    /// memory, with relative memberships on the system clock.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<ReadModel, ReadModelError> {
        ReadModel::open_with_clock(dir, cache_bytes, Clock::system())
    }

    /// [`ReadModel::open`], measuring relative memberships with `clock`.
    pub fn open_with_clock(dir: &Path, cache_bytes: u64, clock: Clock) -> Result<ReadModel, ReadModelError> {
        let db = open_db(dir, cache_bytes)?;
        let tree = db.open_tree("readmodel")?;
        let layout = tree.get(store::KEY_LAYOUT)?.and_then(|v| store::u64_value(&v));
        if layout != Some(store::LAYOUT_VERSION) {
            if layout.is_some() {
                tracing::warn!(?layout, "read model has another layout; rebuilding it from the log");
            }
            tree.clear()?;
            tree.insert(store::KEY_LAYOUT, &store::LAYOUT_VERSION.to_be_bytes())?;
        }
        let mut state = load(&tree)?;
        let now = clock.now();
        let applied = state.applied;
        for view in state.orgs.values_mut() {
            view.compute_members(now, applied);
        }
        state.evaluated_at(now);
        let (applied, _) = watch::channel(state.applied);
        tracing::info!(applied = state.applied, orgs = state.orgs.len(), "read model loaded");
        let (jobs, _) = broadcast::channel(JOB_NOTICES);
        let feed = Arc::new(Feed::new(state.applied));
        Ok(ReadModel {
            store: Some(Store { tree, db }),
            state: RwLock::new(state),
            applied,
            clock,
            feed,
            keeps_members: true,
            jobs,
        })
    }

    /// An empty model that is never written to disk, for states that are
    /// rebuilt on demand and dropped (time travel). It keeps no member sets
    /// and no feed: its counts are evaluated on the index.
    pub fn in_memory() -> ReadModel {
        let (applied, _) = watch::channel(0);
        let (jobs, _) = broadcast::channel(JOB_NOTICES);
        ReadModel {
            store: None,
            state: RwLock::new(State::default()),
            applied,
            clock: Clock::system(),
            feed: Arc::new(Feed::new(0)),
            keeps_members: false,
            jobs,
        }
    }

    /// The clock relative memberships are kept against.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Follows the membership changes `filter` selects.
    pub fn watch_membership(&self, filter: WatchFilter) -> Result<Watch, FeedError> {
        self.feed.watch(filter)
    }

    /// Ends every membership watch (at shutdown, so their streams finish).
    pub fn close_feed(&self) {
        self.feed.close();
    }

    /// Re-evaluates the members of segments with relative conditions at the
    /// clock's current instant and publishes what changed (cause
    /// `TimePassed`, with the sequence applied so far).
    pub fn advance_clock(&self) {
        let to = self.clock.now();
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let since = state.evaluated.unwrap_or((to, to));
        let seq = state.applied;
        let mut records = Vec::new();
        for (org_id, org) in &mut state.orgs {
            if org.keeps_members() {
                records.extend(org.advance_members(&Arc::from(org_id.as_str()), since, to, seq));
            }
        }
        state.evaluated = Some((to, to));
        drop(state);
        self.feed.push(records);
    }

    pub fn applied_seq(&self) -> Seq {
        *self.applied.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<Seq> {
        self.applied.subscribe()
    }

    /// Waits until the model has applied `seq`, at most `timeout`.
    pub async fn wait_for(&self, seq: Seq, timeout: Duration) -> Result<Seq, ReadModelError> {
        let mut rx = self.applied.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= seq)).await;
        match waited {
            Ok(Ok(applied)) => Ok(*applied),
            _ => Err(ReadModelError::Lagging { applied: self.applied_seq(), wanted: seq, waited: timeout }),
        }
    }

    /// Job changes as they are applied. Subscribe before reading the current
    /// state, and drop notices at or below the state's `last_seq`.
    pub fn watch_jobs(&self) -> broadcast::Receiver<JobNotice> {
        self.jobs.subscribe()
    }

    /// Every job not yet completed or abandoned, as `(org, job id)`.
    pub fn unfinished_jobs(&self) -> Vec<(String, String)> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (org, view) in &state.orgs {
            out.extend(view.jobs.values().filter(|j| !j.ended()).map(|j| (org.clone(), j.id.clone())));
        }
        out
    }

    /// Runs `f` on a consistent view of `org` and the sequence it reflects.
    pub fn read<R>(&self, org: &str, f: impl FnOnce(&OrgView, Seq) -> R) -> R {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let empty = OrgView::default();
        f(state.orgs.get(org).unwrap_or(&empty), state.applied)
    }

    /// Applies recorded events in order, durably and atomically with the
    /// sequence of the last one. Events at or below the applied sequence are
    /// skipped, so re-delivery after a restart is harmless.
    ///
    /// Saved segments' members follow in the same step (see
    /// `crate::membership`), and their changes go to the membership feed
    /// once the batch is visible to queries.
    ///
    /// A segment's definition can move every contact of its org in or out,
    /// so a batch is applied in runs that each end at a catalogue event:
    /// the changes held before they go to the feed (which keeps a bounded
    /// number) are then about one definition's, not a whole batch of
    /// definitions' (1,000 segments defined at once over a million
    /// contacts held gigabytes).
    pub fn apply(&self, events: &[Recorded]) -> Result<Seq, ReadModelError> {
        let mut runs = events.split_inclusive(|r| r.envelope.aggregate.kind == AggregateKind::Segments);
        let mut applied = self.apply_events(runs.next().unwrap_or_default(), false)?;
        for run in runs {
            applied = self.apply_events(run, false)?;
        }
        Ok(applied)
    }

    /// Applies a long run of events (a replay from the start, a catch-up
    /// far behind) as `apply` does, durably, but cheaper per event: contact
    /// events only fold into the rows and the email lookup; the rest of the
    /// index and the saved segments' member sets are built once, by
    /// [`ReadModel::finish_bulk`], and no membership changes are fed.
    ///
    /// Until `finish_bulk`, answers would come from a stale index and the
    /// applied sequence is not announced: only a model that nobody reads
    /// yet may be fed this way.
    ///
    /// Contacts' new states come as the projector took them from the log's
    /// bytes ([`Replayed`]), without being decoded and encoded again.
    pub(crate) fn apply_bulk(&self, events: &[Replayed<'_>]) -> Result<Seq, ReadModelError> {
        self.apply_steps(events.iter().map(Replayed::step), true)
    }

    /// Ends bulk replays: builds the index of every org replayed in bulk,
    /// computes saved segments' members, and announces the applied sequence.
    /// The membership feed starts after it (a watch from before is refused:
    /// those changes were never computed).
    pub(crate) fn finish_bulk(&self) {
        let at = self.clock.now();
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let mut rebuilt = false;
        let applied = state.applied;
        for org in state.orgs.values_mut().filter(|o| o.bulk) {
            org.bulk = false;
            org.index.rebuild_keeping_emails(&org.rows);
            org.memberships = Memberships::default();
            if self.keeps_members {
                org.compute_members(at, applied);
            } else {
                org.redefined.clear();
            }
            rebuilt = true;
        }
        if rebuilt {
            state.evaluated_at(at);
            self.feed.skip_to(applied);
        }
        drop(state);
        self.applied.send_replace(applied);
    }

    fn apply_events(&self, events: &[Recorded], bulk: bool) -> Result<Seq, ReadModelError> {
        self.apply_steps(events.iter().map(Step::Event), bulk)
    }

    fn apply_steps<'e>(&self, events: impl Iterator<Item = Step<'e>>, bulk: bool) -> Result<Seq, ReadModelError> {
        let at = self.clock.now();
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let mut writes = Writes::new(self.store.is_some());
        let start = state.applied;
        let mut applied = start;
        let mut notices = Vec::new();
        let mut records: Vec<ChangeRecord> = Vec::new();
        // Orgs with contact changes not yet tested against the saved segments.
        let mut pending: Vec<String> = Vec::new();
        for step in events.filter(|s| s.seq() > start) {
            let (seq, org_id) = match &step {
                Step::Event(rec) => (rec.seq, rec.envelope.aggregate.org.as_str()),
                Step::Contact { seq, org, .. } => (*seq, *org),
            };
            // Looked up before inserting: a key allocated per event shows.
            if !state.orgs.contains_key(org_id) {
                state.orgs.insert(org_id.to_owned(), OrgView::default());
            }
            let org = state.orgs.get_mut(org_id).expect("inserted above");
            org.bulk |= bulk;
            match step {
                Step::Event(rec) => {
                    let env = &rec.envelope;
                    if let Some(job) = apply_job_records(org, rec, &mut writes) {
                        notices.push(JobNotice { org: env.aggregate.org.clone(), job });
                    }
                    if is_catalog_event(&env.event) {
                        writes.insert(|| store::event_key(org_id, seq), || segmentd_log::codec::encode(env));
                    }
                    if env.aggregate.kind == AggregateKind::Segments {
                        // Contacts changed before a definition changes are judged by
                        // the definitions they were applied under. (Only the cause a
                        // change is reported with depends on this: a redefinition
                        // recomputes the whole set anyway.)
                        records.extend(org.refresh_members(org_id, at));
                    }
                    apply_event(org, org_id, &env.event, env.time, &mut writes);
                    note_versions(org, env, seq);
                }
                // What the arm above does with a contact's new state (a
                // contact aggregate's event: no job, catalogue or version).
                Step::Contact { contact, .. } => put_stored(org, org_id, contact.clone(), &mut writes),
            }
            if org.touched.stamp(seq) && !pending.iter().any(|o| o == org_id) {
                pending.push(org_id.to_owned());
            }
            if self.keeps_members && !org.bulk {
                records.extend(org.redefine_members(org_id, seq, at));
            } else {
                org.redefined.clear();
            }
            applied = seq;
        }
        if applied == state.applied {
            return Ok(applied);
        }
        for org_id in pending {
            if let Some(org) = state.orgs.get_mut(&org_id) {
                records.extend(org.refresh_members(&org_id, at));
            }
        }
        state.evaluated_at(at);
        if let (Some(durable), Some(mut batch)) = (&self.store, writes.finish(&state.orgs)) {
            batch.insert(store::KEY_APPLIED, &applied.to_be_bytes());
            // If this fails the in-memory view is ahead of sled; the caller
            // stops projecting and a restart reloads the durable state.
            durable.tree.apply_batch(batch)?;
        }
        state.applied = applied;
        drop(state);
        self.feed.push(records);
        if !bulk {
            self.applied.send_replace(applied);
        }
        for notice in notices {
            // No receiver is not an error: nobody is watching.
            let _ = self.jobs.send(notice);
        }
        Ok(applied)
    }

    /// Forces buffered writes to disk (sled otherwise flushes every 500 ms).
    pub async fn flush(&self) -> Result<(), ReadModelError> {
        if let Some(durable) = &self.store {
            durable.db.flush_async().await?;
        }
        Ok(())
    }
}

/// Jobs and the reset audit; returns the job a job event changed.
fn apply_job_records(org: &mut OrgView, rec: &Recorded, writes: &mut Writes) -> Option<JobView> {
    let env = &rec.envelope;
    let org_id = &env.aggregate.org;
    match &env.event {
        Event::ScoreReset(e) => {
            let list = org.resets.entry(e.job_id.clone()).or_default();
            let entry = crate::jobs::affected(e);
            let index = list.len() as u64;
            writes.insert(|| store::reset_key(org_id, &e.job_id, index), || store::encode(&entry));
            list.push(entry);
            None
        }
        Event::JobStarted(_)
        | Event::JobMembersListed(_)
        | Event::JobProgressed(_)
        | Event::JobCompleted(_)
        | Event::JobAbandoned(_)
        | Event::JobCancelRequested(_)
        | Event::JobCancelled(_) => {
            let id = &env.aggregate.id;
            let mut job = org.jobs.remove(id);
            let changed = apply_job_event(&mut job, rec);
            let job = job?;
            org.jobs.insert(id.clone(), job.clone());
            if !changed {
                return None;
            }
            writes.insert(|| store::job_key(org_id, id), || store::encode(&job));
            Some(job)
        }
        _ => None,
    }
}

fn apply_event(org: &mut OrgView, org_id: &str, event: &Event, time: Timestamp, writes: &mut Writes) {
    match event {
        Event::ContactCreated(e) => put_contact(org, org_id, &e.contact, writes),
        Event::ContactUpdated(e) => put_contact(org, org_id, &e.contact, writes),
        Event::ScoreReset(e) => put_contact(org, org_id, &e.contact, writes),
        Event::ActivityRecorded(e) => put_contact(org, org_id, &e.contact, writes),
        // Folded by `apply_job_records`.
        Event::JobStarted(_)
        | Event::JobMembersListed(_)
        | Event::JobProgressed(_)
        | Event::JobCompleted(_)
        | Event::JobAbandoned(_)
        | Event::JobCancelRequested(_)
        | Event::JobCancelled(_) => {}
        Event::ContactDeleted(e) => {
            if let Some(row) = org.row_of(&e.email) {
                match org.rows[row as usize].take() {
                    Some(old) if org.bulk => org.index.remove_email(row, old.email()),
                    Some(old) => {
                        org.index.remove(row, &old.fields());
                        org.touch(row, old);
                    }
                    None => {}
                }
                writes.contact_changed(org_id, row);
            }
        }
        Event::ListMembersRecorded(e) => {
            org.list_members.entry(e.list_id).or_default().extend(e.emails.iter().cloned());
        }
        // The catalogue's events; the caller stores them as they are.
        Event::SegmentCreated(_)
        | Event::SegmentUpdated(_)
        | Event::SegmentRolledBack(_)
        | Event::SegmentDeleted(_)
        | Event::LegacySegmentImported(_)
        | Event::SegmentCloned(_)
        | Event::TopicCreated(_)
        | Event::TopicsAssigned(_)
        | Event::TopicsUnassigned(_)
        | Event::SegmentSavedAsList(_)
        | Event::CampaignCreated(_)
        | Event::BulkSegmentsCreated(_) => {
            org.catalog.apply(event, time);
            for id in criteria_changed(event) {
                cache_criteria(org, id);
            }
        }
    }
}

/// Events of the segment catalogue and of static lists: the ones kept in
/// sled as they are (`store::event_key`) and folded again at load.
fn is_catalog_event(event: &Event) -> bool {
    match event {
        Event::SegmentCreated(_)
        | Event::SegmentUpdated(_)
        | Event::SegmentRolledBack(_)
        | Event::SegmentDeleted(_)
        | Event::LegacySegmentImported(_)
        | Event::SegmentCloned(_)
        | Event::TopicCreated(_)
        | Event::TopicsAssigned(_)
        | Event::TopicsUnassigned(_)
        | Event::SegmentSavedAsList(_)
        | Event::ListMembersRecorded(_)
        | Event::CampaignCreated(_)
        | Event::BulkSegmentsCreated(_) => true,
        Event::ContactCreated(_)
        | Event::ContactUpdated(_)
        | Event::ContactDeleted(_)
        | Event::JobStarted(_)
        | Event::JobMembersListed(_)
        | Event::JobProgressed(_)
        | Event::JobCompleted(_)
        | Event::JobAbandoned(_)
        | Event::JobCancelRequested(_)
        | Event::JobCancelled(_)
        | Event::ScoreReset(_)
        | Event::ActivityRecorded(_) => false,
    }
}

/// Who made the versions a catalogue event made, and at which sequence.
fn note_versions(org: &mut OrgView, env: &Envelope, seq: Seq) {
    for id in criteria_changed(&env.event) {
        let Some(def) = org.catalog.segments.get(&id) else {
            org.version_meta.retain(|(segment, _), _| *segment != id);
            continue;
        };
        let meta = VersionMeta { seq, actor: env.actor.clone(), event_type: env.event.type_name() };
        org.version_meta.insert((id, def.version), meta);
    }
}

/// The segments whose criteria an event defines, changes or removes.
fn criteria_changed(event: &Event) -> Vec<u64> {
    match event {
        Event::SegmentCreated(e) => vec![e.segment_id],
        Event::SegmentUpdated(e) => vec![e.segment_id],
        Event::SegmentRolledBack(e) => vec![e.segment_id],
        Event::SegmentDeleted(e) => vec![e.segment_id],
        Event::LegacySegmentImported(e) => vec![e.segment_id],
        Event::SegmentCloned(e) => vec![e.segment_id],
        Event::BulkSegmentsCreated(e) => e.children.iter().map(|c| c.segment_id).collect(),
        _ => Vec::new(),
    }
}

fn put_contact(org: &mut OrgView, org_id: &str, contact: &Contact, writes: &mut Writes) {
    put_stored(org, org_id, StoredContact::encode(contact), writes);
}

/// A contact's new state, as stored.
fn put_stored(org: &mut OrgView, org_id: &str, new: StoredContact, writes: &mut Writes) {
    let email = new.email();
    let row = match org.row_of(email) {
        Some(row) => row,
        None => {
            let row = org.rows.len() as u32;
            org.rows.push(None);
            writes.insert(|| store::next_row_key(org_id), || (row + 1).to_be_bytes().to_vec());
            row
        }
    };
    writes.contact_changed(org_id, row);
    let old = org.rows[row as usize].replace(new.clone());
    if org.bulk {
        // A row's email never changes: only a new row is a new entry.
        if old.is_none() {
            org.index.insert_email(row, email);
        }
        return;
    }
    match old {
        Some(old) => org.index.replace(row, &old.fields(), &new.fields()),
        None => org.index.insert(row, &new.fields()),
    }
    org.touch(row, new);
}

/// Criteria are stored as text in events; parse once per definition change.
fn cache_criteria(org: &mut OrgView, id: u64) {
    // Deleted or (re)defined, its member set is recomputed.
    org.redefined.push(id);
    let Some(def) = org.catalog.segments.get(&id) else {
        org.criteria.remove(&id);
        return;
    };
    match Criteria::parse(&def.criteria) {
        Ok(c) => {
            org.criteria.insert(id, Arc::new(c));
        }
        Err(e) => {
            // Only text that parsed was ever recorded; failing here means the
            // parser lost backwards compatibility, which the golden tests guard.
            tracing::error!(segment = id, error = %e, "recorded criteria no longer parse");
            org.criteria.remove(&id);
        }
    }
}

fn load(tree: &sled::Tree) -> Result<State, ReadModelError> {
    let mut state = State::default();
    let corrupt =
        |k: &[u8], reason: String| ReadModelError::Corrupt { key: String::from_utf8_lossy(k).into_owned(), reason };
    for kv in tree.iter() {
        let (k, v) = kv?;
        match store::parse_key(&k) {
            Some(Key::Meta) => {
                if &*k == store::KEY_APPLIED {
                    state.applied = store::u64_value(&v).ok_or_else(|| corrupt(&k, "bad sequence".into()))?;
                }
            }
            Some(Key::Block { org, block }) => {
                let rows = store::decode_block(&v).map_err(|e| corrupt(&k, e))?;
                let view = state.orgs.entry(org.to_owned()).or_default();
                let from = (block * store::BLOCK_ROWS) as usize;
                if view.rows.len() < from + rows.len() {
                    view.rows.resize(from + rows.len(), None);
                }
                for (i, row) in rows.into_iter().enumerate() {
                    view.rows[from + i] = row;
                }
            }
            Some(Key::NextRow { org }) => {
                let next = store::u32_value(&v).ok_or_else(|| corrupt(&k, "bad row".into()))?;
                let view = state.orgs.entry(org.to_owned()).or_default();
                if view.rows.len() < next as usize {
                    view.rows.resize(next as usize, None);
                }
            }
            Some(Key::Event { org, seq }) => {
                let env = segmentd_log::codec::decode(&v).map_err(|e| corrupt(&k, e.to_string()))?;
                let view = state.orgs.entry(org.to_owned()).or_default();
                let mut unused = Writes::new(false);
                apply_event(view, org, &env.event, env.time, &mut unused);
                note_versions(view, &env, seq);
            }
            Some(Key::Job { org }) => {
                let job: JobView = postcard::from_bytes(&v).map_err(|e| corrupt(&k, e.to_string()))?;
                state.orgs.entry(org.to_owned()).or_default().jobs.insert(job.id.clone(), job);
            }
            Some(Key::Reset { org, job }) => {
                let entry: AffectedContact = postcard::from_bytes(&v).map_err(|e| corrupt(&k, e.to_string()))?;
                // Keys sort by index within a job, so pushing keeps log order.
                let view = state.orgs.entry(org.to_owned()).or_default();
                view.resets.entry(job.to_owned()).or_default().push(entry);
            }
            None => return Err(corrupt(&k, "unknown key".into())),
        }
    }
    for view in state.orgs.values_mut() {
        view.index = ContactIndex::build(&view.rows);
    }
    Ok(state)
}

/// How long `open` waits for a previous holder of the directory to let go.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens sled, waiting (bounded) while the directory is still locked: sled's
/// background flusher keeps the lock for a moment after a model in this
/// process is dropped, so a restart in the same process would otherwise fail.
fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db, ReadModelError> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match sled::Config::new().path(dir).cache_capacity(cache_bytes).flush_every_ms(Some(500)).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segmentd_domain::Email;
    use segmentd_domain::event::{ContactCreated, ContactDeleted};

    /// Forty contacts with ages 0..40; every fifth deleted.
    fn view() -> OrgView {
        let mut view = OrgView::default();
        let mut batch = Writes::new(true);
        let now = Timestamp(0);
        for i in 0..40 {
            let mut c = Contact::new(Email::parse(&format!("c{i}@x.com")).unwrap(), now);
            c.age = Some(i);
            apply_event(&mut view, "o", &Event::ContactCreated(ContactCreated { contact: c }), now, &mut batch);
        }
        for i in (0..40).step_by(5) {
            let email = format!("c{i}@x.com");
            apply_event(&mut view, "o", &Event::ContactDeleted(ContactDeleted { email }), now, &mut batch);
        }
        view
    }

    fn ages(m: &Members) -> Vec<i64> {
        m.contacts.iter().map(|c| c.to_contact().age.unwrap()).collect()
    }

    #[test]
    fn given_any_window_size_when_paging_then_pages_are_the_same() {
        let view = view();
        let odd = Criteria::parse("age >= 3 and not (age = 7)").unwrap();
        for window in [1, 2, 3, 7, FIRST_WINDOW] {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let page = view.page(&odd, Timestamp(0), after, 4, window);
                seen.extend(ages(&page));
                match page.next_after {
                    Some(row) => after = Some(row),
                    None => break,
                }
            }
            let want: Vec<i64> = (3..40).filter(|a| a % 5 != 0 && *a != 7).collect();
            assert_eq!(seen, want, "window {window}");
        }
    }

    #[test]
    fn given_the_last_member_on_a_page_then_no_next_page_is_offered() {
        let view = view();
        let few = Criteria::parse("age between 36 and 39").unwrap();
        let page = view.members(&few, Timestamp(0), None, 4);
        assert_eq!((ages(&page), page.next_after), (vec![36, 37, 38, 39], None));
        let page = view.members(&few, Timestamp(0), None, 3);
        assert_eq!((ages(&page), page.next_after), (vec![36, 37, 38], Some(38)));
        assert!(view.members(&few, Timestamp(0), Some(u32::MAX), 3).contacts.is_empty());
        assert!(view.members(&few, Timestamp(0), None, 0).contacts.is_empty());
    }

    #[test]
    fn given_contacts_deleted_when_looked_up_by_email_then_only_live_ones_are_found() {
        let view = view();
        assert_eq!(view.contact_count(), 32);
        assert!(view.contact("c5@x.com").is_none());
        assert_eq!(view.contact("c6@x.com").and_then(|c| c.age), Some(6));
    }
}
