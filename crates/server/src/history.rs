//! Reading the event history straight from the log: the filtered replay of
//! an organisation's events, and the histories of one segment and one
//! contact. This is the application side of `segments.v1.Replay`; the gRPC
//! handler only parses requests and converts answers.
//!
//! The log is the source (never a read model), so every node that has a
//! log can answer, and an answer is what happened, not what a projection
//! made of it.
//!
//! **Must not depend on** tonic or prost, nor on a log backend: it talks to
//! the `EventLog` port only.

use segmentd_domain::event::{
    LegacySegmentImported, SegmentCloned, SegmentCreated, SegmentDeleted, SegmentRolledBack, SegmentUpdated,
};
use segmentd_domain::segment::{SegmentCatalog, SegmentName};
use segmentd_domain::{AggregateId, AggregateKind, Email, Envelope, Event, Timestamp};
use segmentd_log::{EventLog, LogError, Recorded, Seq};
use segmentd_readmodel::SegmentLookup;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Events read from the log per request. Bounds the memory a replay holds
/// besides what the stream's buffer does.
pub const PAGE: usize = 1000;

/// Which events a replay yields. Always scoped to one organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayFilter {
    pub org: String,
    pub aggregate_kind: Option<AggregateKind>,
    /// Only with `aggregate_kind`.
    pub aggregate_id: Option<String>,
    /// Type names ([`Event::type_name`]); empty: every type.
    pub event_types: Vec<String>,
    /// Inclusive, at least 1.
    pub from_seq: Seq,
    /// Inclusive.
    pub to_seq: Option<Seq>,
    /// Inclusive.
    pub from_time: Option<Timestamp>,
    /// Exclusive.
    pub to_time: Option<Timestamp>,
}

impl ReplayFilter {
    /// Everything of one org.
    pub fn org(org: &str) -> Self {
        ReplayFilter {
            org: org.to_owned(),
            aggregate_kind: None,
            aggregate_id: None,
            event_types: Vec::new(),
            from_seq: 1,
            to_seq: None,
            from_time: None,
            to_time: None,
        }
    }

    /// Whether a recorded event passes every filter. The org test comes
    /// first and is never skipped: it is what keeps organisations apart.
    pub fn matches(&self, rec: &Recorded) -> bool {
        let env = &rec.envelope;
        env.aggregate.org == self.org
            && rec.seq >= self.from_seq
            && self.to_seq.is_none_or(|to| rec.seq <= to)
            && self.aggregate_kind.is_none_or(|k| env.aggregate.kind == k)
            && self.aggregate_id.as_ref().is_none_or(|id| env.aggregate.id == *id)
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == env.event.type_name()))
            && self.from_time.is_none_or(|t| env.time >= t)
            && self.to_time.is_none_or(|t| env.time < t)
    }

    /// The one aggregate the filter names, when it names one: then the
    /// replay reads that aggregate's events instead of scanning the log.
    fn aggregate(&self) -> Option<AggregateId> {
        Some(AggregateId { org: self.org.clone(), kind: self.aggregate_kind?, id: self.aggregate_id.clone()? })
    }
}

/// The sequence a replay that starts now stops at: the log's last sequence,
/// or `to_seq` when that is lower. Taken once, before reading, so that a
/// replay ends even while writers keep appending.
pub async fn replay_end(log: &dyn EventLog, filter: &ReplayFilter) -> Result<Seq, LogError> {
    let last = log.last_seq().await?;
    Ok(filter.to_seq.map_or(last, |to| to.min(last)))
}

/// Sends every event that matches `filter`, with a sequence up to `end`, in
/// log order. Stops early when the receiver is gone (the client hung up);
/// a log failure is sent as the last item.
pub async fn replay(
    log: Arc<dyn EventLog>,
    filter: ReplayFilter,
    end: Seq,
    out: mpsc::Sender<Result<Recorded, LogError>>,
) {
    if let Err(e) = replay_into(&*log, &filter, end, &out).await {
        let _ = out.send(Err(e)).await;
    }
}

async fn replay_into(
    log: &dyn EventLog,
    filter: &ReplayFilter,
    end: Seq,
    out: &mpsc::Sender<Result<Recorded, LogError>>,
) -> Result<(), LogError> {
    if let Some(aggregate) = filter.aggregate() {
        for rec in log.read_aggregate(&aggregate, filter.from_seq.saturating_sub(1)).await? {
            if rec.seq > end {
                break;
            }
            if filter.matches(&rec) && out.send(Ok(rec)).await.is_err() {
                return Ok(());
            }
        }
        return Ok(());
    }
    // Time filters do not narrow the scan: writers' clocks are not ordered
    // like the log, so an event after `to_time` does not mean the rest are.
    let mut next = filter.from_seq.max(1);
    while next <= end {
        let want = usize::try_from(end - next + 1).unwrap_or(usize::MAX).min(PAGE);
        let page = log.read(next, want).await?;
        let Some(last) = page.last() else { break };
        next = last.seq + 1;
        for rec in page {
            if rec.seq > end {
                return Ok(());
            }
            if filter.matches(&rec) && out.send(Ok(rec)).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Why a history could not be given.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}")]
    NotFound(String),
    /// The request names more than one thing; the message says how to
    /// name one.
    #[error("{0}")]
    Ambiguous(String),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// A history: the events in log order, and the log's last sequence when it
/// was read (at least the last event's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    pub events: Vec<Recorded>,
    pub sequence: Seq,
}

/// Every event of the org's segment catalogue that touched one segment.
///
/// A name means the live segment of that name; when none has it (renamed
/// away, or deleted), the segment that held it last — an auditor asking
/// about "germany" after it was deleted wants that segment's story.
pub async fn segment_history(
    log: &dyn EventLog,
    org: &str,
    lookup: SegmentLookup<'_>,
) -> Result<History, HistoryError> {
    let events = log.read_aggregate(&AggregateId::segment_catalog(org), 0).await?;
    let id = match lookup {
        SegmentLookup::Id(id) => id,
        SegmentLookup::Name(name) => resolve_name(&events, name)
            .ok_or_else(|| HistoryError::NotFound(format!("no segment is or was named {name:?}")))?,
    };
    let events: Vec<Recorded> = events.into_iter().filter(|r| concerns_segment(&r.envelope, id)).collect();
    if events.is_empty() {
        return Err(HistoryError::NotFound(format!("segment {id} does not exist and never did")));
    }
    let sequence = log.last_seq().await?.max(events.last().map_or(0, |r| r.seq));
    Ok(History { events, sequence })
}

/// Every event of one contact.
pub async fn contact_history(log: &dyn EventLog, org: &str, email: &Email) -> Result<History, HistoryError> {
    let events = log.read_aggregate(&AggregateId::contact(org, email.as_str()), 0).await?;
    if events.is_empty() {
        return Err(HistoryError::NotFound(format!("contact {email} has no history")));
    }
    let sequence = log.last_seq().await?.max(events.last().map_or(0, |r| r.seq));
    Ok(History { events, sequence })
}

/// The live segment called `name`, else the last one that was called so.
fn resolve_name(events: &[Recorded], name: &str) -> Option<u64> {
    let key = SegmentName::key(name);
    let is = |n: &str| SegmentName::key(n) == key;
    let mut catalog = SegmentCatalog::default();
    let mut last_holder = None;
    for rec in events {
        catalog.apply(&rec.envelope.event, rec.envelope.time);
        let held = match &rec.envelope.event {
            Event::SegmentCreated(SegmentCreated { segment_id, name, .. })
            | Event::LegacySegmentImported(LegacySegmentImported { segment_id, name, .. })
            | Event::SegmentCloned(SegmentCloned { segment_id, name, .. })
            | Event::SegmentDeleted(SegmentDeleted { segment_id, name }) => is(name).then_some(*segment_id),
            Event::BulkSegmentsCreated(b) => b.children.iter().find(|c| is(&c.name)).map(|c| c.segment_id),
            Event::SegmentUpdated(SegmentUpdated { segment_id, name: Some(change), .. })
            | Event::SegmentRolledBack(SegmentRolledBack { segment_id, name: Some(change), .. }) => {
                (is(&change.from) || is(&change.to)).then_some(*segment_id)
            }
            _ => None,
        };
        last_holder = held.or(last_holder);
    }
    catalog.by_name(name).map(|s| s.id).or(last_holder)
}

/// Whether a catalogue event belongs to segment `id`'s history: its
/// creation (imported, cloned, made by a bulk), changes, topics, lists and
/// campaigns made from it, deletion. Exhaustive, so that a new event type
/// must say whether it belongs to a segment's history.
fn concerns_segment(env: &Envelope, id: u64) -> bool {
    match &env.event {
        Event::SegmentCreated(e) => e.segment_id == id,
        Event::SegmentUpdated(e) => e.segment_id == id,
        Event::SegmentRolledBack(e) => e.segment_id == id,
        Event::SegmentDeleted(e) => e.segment_id == id,
        Event::LegacySegmentImported(e) => e.segment_id == id,
        Event::SegmentCloned(e) => e.segment_id == id || e.source_id == id,
        Event::TopicsAssigned(e) => e.segment_id == id,
        Event::TopicsUnassigned(e) => e.segment_id == id,
        Event::SegmentSavedAsList(e) => e.segment_id == id,
        Event::CampaignCreated(e) => e.segment_id == id,
        Event::BulkSegmentsCreated(e) => e.children.iter().any(|c| c.segment_id == id),
        Event::ContactCreated(_)
        | Event::ContactUpdated(_)
        | Event::ContactDeleted(_)
        | Event::TopicCreated(_)
        | Event::ListMembersRecorded(_)
        // Jobs name a segment but belong to their own aggregate.
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

#[cfg(test)]
mod tests {
    use super::*;
    use segmentd_domain::event::{Change, ContactDeleted};

    fn rec(seq: Seq, org: &str, event: Event) -> Recorded {
        let aggregate = match &event {
            Event::ContactDeleted(e) => AggregateId::contact(org, &e.email),
            _ => AggregateId::segment_catalog(org),
        };
        Recorded {
            seq,
            envelope: Envelope {
                event_id: u128::from(seq),
                command_id: format!("c{seq}"),
                aggregate,
                actor: "a".into(),
                time: Timestamp::from_millis(i64::try_from(seq).unwrap() * 1000),
                event,
            },
        }
    }

    fn created(id: u64, name: &str) -> Event {
        Event::SegmentCreated(SegmentCreated { segment_id: id, name: name.into(), criteria: "age > 1".into() })
    }

    fn renamed(id: u64, from: &str, to: &str) -> Event {
        Event::SegmentUpdated(SegmentUpdated {
            segment_id: id,
            version: 2,
            name: Some(Change { from: from.into(), to: to.into() }),
            criteria: None,
        })
    }

    #[test]
    fn names_resolve_to_the_live_segment_else_the_last_holder() {
        let events = vec![
            rec(1, "o", created(1, "germany")),
            rec(2, "o", renamed(1, "germany", "dach")),
            rec(3, "o", created(2, "Germany")),
            rec(4, "o", Event::SegmentDeleted(SegmentDeleted { segment_id: 2, name: "Germany".into() })),
        ];
        assert_eq!(resolve_name(&events, "dach"), Some(1));
        assert_eq!(resolve_name(&events, "GERMANY"), Some(2), "the last holder, though deleted");
        assert_eq!(resolve_name(&events[..2], "germany"), Some(1), "renamed away");
        assert_eq!(resolve_name(&events, "france"), None);
    }

    #[test]
    fn filters_combine_and_never_cross_organisations() {
        let a = rec(5, "acme", created(1, "x"));
        let b = rec(6, "globex", created(1, "x"));
        let c = rec(7, "acme", Event::ContactDeleted(ContactDeleted { email: "a@x.com".into() }));
        let all = ReplayFilter::org("acme");
        assert!(all.matches(&a) && !all.matches(&b) && all.matches(&c));
        let typed = ReplayFilter { event_types: vec!["ContactDeleted".into()], ..all.clone() };
        assert!(!typed.matches(&a) && typed.matches(&c));
        let kind = ReplayFilter { aggregate_kind: Some(AggregateKind::Segments), ..all.clone() };
        assert!(kind.matches(&a) && !kind.matches(&c));
        let seqs = ReplayFilter { from_seq: 6, to_seq: Some(7), ..all.clone() };
        assert!(!seqs.matches(&a) && seqs.matches(&c));
        let times = ReplayFilter {
            from_time: Some(Timestamp::from_millis(5000)),
            to_time: Some(Timestamp::from_millis(7000)),
            ..all
        };
        assert!(times.matches(&a) && !times.matches(&c), "from inclusive, to exclusive");
    }
}
