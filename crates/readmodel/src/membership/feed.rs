//! The membership change feed: every change of a saved segment's members
//! (who entered, who left, at which log sequence, why), kept in memory for a
//! while so that watchers can start a little in the past and slow watchers
//! can catch up.
//!
//! Records are appended by the projector after the change is visible to
//! queries (so a watcher that sees a change can read it), in the order the
//! model made them. The feed holds at most [`MAX_ENTRIES`] changes; older
//! records are dropped whole, and a watcher that wanted them is told so
//! rather than silently skipped. It is not stored: after a restart it starts
//! at the sequence the read model resumed from.

use crate::stored::StoredContact;
use segmentd_domain::time::Timestamp;
use segmentd_log::Seq;
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Changes (contact × segment) kept at most; about 16 bytes each plus the
/// contacts they keep alive.
pub(crate) const MAX_ENTRIES: usize = 1 << 21;

/// Why members changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Contacts were created, updated or deleted.
    ContactChanged,
    /// The segment was created or given new criteria.
    SegmentDefined,
    SegmentDeleted,
    /// A relative condition ("within the last 30 days") moved with the clock.
    TimePassed,
}

/// One contact entering or leaving one segment.
#[derive(Clone, Debug)]
pub struct MemberChange {
    /// The contact as it was when the change was made (before its deletion,
    /// if it was deleted).
    pub contact: StoredContact,
    /// The log sequence that caused the change; for [`Cause::TimePassed`],
    /// the sequence the model had applied when the clock moved.
    pub seq: Seq,
    pub entered: bool,
}

/// The changes of one segment made at once.
#[derive(Clone, Debug)]
pub struct ChangeRecord {
    pub org: Arc<str>,
    pub segment: u64,
    pub cause: Cause,
    /// The clock instant the members were evaluated at.
    pub at: Timestamp,
    pub changes: Vec<MemberChange>,
}

/// What a watcher gets: records of its org (and segments, if it named any).
#[derive(Clone, Debug)]
pub struct WatchFilter {
    /// `None`: every org (the NATS publisher of a query node).
    pub org: Option<String>,
    /// Empty: every segment, including ones created later.
    pub segments: BTreeSet<u64>,
    /// Only changes caused at this sequence or later; 0: from now on.
    pub from: Seq,
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(
        "membership changes before sequence {oldest} are no longer held (asked from {wanted}); \
         read the members (ListMembers) and watch from the sequence of that answer"
    )]
    TooOld { wanted: Seq, oldest: Seq },
    #[error(
        "this watcher fell more than {MAX_ENTRIES} changes behind and missed some; \
         read the members again and watch from the sequence of that answer"
    )]
    FellBehind,
    #[error("the server is stopping")]
    Closed,
}

struct Ring {
    records: VecDeque<Arc<ChangeRecord>>,
    /// The position of `records[0]`; positions count every record ever held.
    first: u64,
    entries: usize,
    /// Every change caused at this sequence or later is still held.
    covered_from: Seq,
    closed: bool,
}

pub(crate) struct Feed {
    ring: Mutex<Ring>,
    /// The position after the last record, and whether the feed closed.
    end: watch::Sender<(u64, bool)>,
}

impl Feed {
    /// A feed of the changes after `applied`, the sequence the model resumed from.
    pub(crate) fn new(applied: Seq) -> Feed {
        let ring = Ring { records: VecDeque::new(), first: 0, entries: 0, covered_from: applied + 1, closed: false };
        Feed { ring: Mutex::new(ring), end: watch::channel((0, false)).0 }
    }

    pub(crate) fn push(&self, records: Vec<ChangeRecord>) {
        if records.is_empty() {
            return;
        }
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        for record in records {
            ring.entries += record.changes.len();
            ring.records.push_back(Arc::new(record));
        }
        // The newest record always stays, however large.
        while ring.entries > MAX_ENTRIES && ring.records.len() > 1 {
            let old = ring.records.pop_front().expect("more than one record");
            ring.first += 1;
            ring.entries -= old.changes.len();
            let newest = old.changes.iter().map(|c| c.seq).max().unwrap_or(0);
            ring.covered_from = ring.covered_from.max(newest + 1);
        }
        let end = ring.first + ring.records.len() as u64;
        drop(ring);
        self.end.send_replace((end, false));
    }

    /// Changes up to `seq` were applied without being fed (a bulk replay):
    /// a watch from before it is refused like one from before the feed began.
    pub(crate) fn skip_to(&self, seq: Seq) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.covered_from = ring.covered_from.max(seq + 1);
    }

    /// Ends every watch (at shutdown): their streams finish.
    pub(crate) fn close(&self) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.closed = true;
        let end = ring.first + ring.records.len() as u64;
        drop(ring);
        self.end.send_replace((end, true));
    }

    pub(crate) fn watch(self: &Arc<Self>, filter: WatchFilter) -> Result<Watch, FeedError> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let end = ring.first + ring.records.len() as u64;
        let cursor = if filter.from == 0 {
            end
        } else if filter.from < ring.covered_from {
            return Err(FeedError::TooOld { wanted: filter.from, oldest: ring.covered_from });
        } else {
            ring.first
        };
        drop(ring);
        Ok(Watch { feed: Arc::clone(self), end: self.end.subscribe(), cursor, filter })
    }
}

/// One watcher's place in the feed.
pub struct Watch {
    feed: Arc<Feed>,
    end: watch::Receiver<(u64, bool)>,
    cursor: u64,
    filter: WatchFilter,
}

impl Watch {
    /// The next record for this watcher, waiting for one if need be.
    pub async fn next(&mut self) -> Result<Arc<ChangeRecord>, FeedError> {
        loop {
            if let Some(record) = self.try_next()? {
                return Ok(record);
            }
            let cursor = self.cursor;
            if self.end.wait_for(|(end, closed)| *end > cursor || *closed).await.is_err() {
                return Err(FeedError::Closed);
            }
        }
    }

    /// The next record for this watcher if one is there already.
    pub fn try_next(&mut self) -> Result<Option<Arc<ChangeRecord>>, FeedError> {
        let ring = self.feed.ring.lock().unwrap_or_else(|p| p.into_inner());
        if self.cursor < ring.first {
            return Err(FeedError::FellBehind);
        }
        while let Some(record) = ring.records.get((self.cursor - ring.first) as usize) {
            self.cursor += 1;
            if let Some(record) = self.select(record) {
                return Ok(Some(record));
            }
        }
        if ring.closed { Err(FeedError::Closed) } else { Ok(None) }
    }

    /// The part of `record` this watcher wants, if any.
    fn select(&self, record: &Arc<ChangeRecord>) -> Option<Arc<ChangeRecord>> {
        let f = &self.filter;
        if f.org.as_deref().is_some_and(|org| org != &*record.org)
            || (!f.segments.is_empty() && !f.segments.contains(&record.segment))
        {
            return None;
        }
        // A change the clock made while the model stood at sequence S came
        // after the state at S, so a watch from S + 1 (after reading at S)
        // gets it.
        let from = if record.cause == Cause::TimePassed { f.from.saturating_sub(1) } else { f.from };
        if record.changes.iter().all(|c| c.seq >= from) {
            return Some(Arc::clone(record));
        }
        let changes: Vec<MemberChange> = record.changes.iter().filter(|c| c.seq >= from).cloned().collect();
        (!changes.is_empty()).then(|| {
            Arc::new(ChangeRecord {
                org: Arc::clone(&record.org),
                segment: record.segment,
                cause: record.cause,
                at: record.at,
                changes,
            })
        })
    }
}
