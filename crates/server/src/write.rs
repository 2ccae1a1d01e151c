//! Command handling: load the state a decision needs from the log, run the
//! pure `decide`, append the events with the sequence the decision saw.
//!
//! A conflict means another writer got there first; the command is decided
//! again on fresh state, a few times, before it is reported as ABORTED.
//! Nothing here keeps authoritative state: the segment catalogue cache is
//! only a read-through copy of the log, checked by the expected sequence.

use crate::auth::Caller;
use futures::future::try_join_all;
use segmentd_domain::activity::decide_activity;
use segmentd_domain::contact_decide::{ContactCommand, ContactPatch, apply_contact, decide_contact};
use segmentd_domain::event::Activity;
use segmentd_domain::job::JOB_COMMAND_PREFIX;
use segmentd_domain::segment::{SegmentCatalog, SegmentCommand, SegmentDef, decide_segments};
use segmentd_domain::{AggregateId, Contact, DomainError, Email, Envelope, Event, Timestamp};
use segmentd_log::{AppendEntry, AppendError, AppendRequest, Appended, EventLog, LogError, Seq};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Most contacts or emails in one command.
pub const MAX_BATCH: usize = 1000;
/// Decisions retried after an expected-sequence conflict before giving up.
const CONFLICT_RETRIES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The request itself is malformed; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Refused(#[from] DomainError),
    /// Still conflicting after retries: heavy contention on one aggregate.
    #[error("{0}; retry the command")]
    Contended(String),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The identity of one command: who sent it, and its idempotency key.
#[derive(Clone, Debug)]
pub struct CommandMeta {
    pub caller: Caller,
    pub command_id: String,
}

pub const MAX_COMMAND_ID_LEN: usize = 128;

/// A client's command id, or a fresh one; ids become message ids on NATS, so
/// they are kept to a plain alphabet.
pub fn command_id(raw: &str) -> Result<String, CommandError> {
    if raw.is_empty() {
        return Ok(uuid::Uuid::new_v4().to_string());
    }
    if raw.starts_with(JOB_COMMAND_PREFIX) {
        return Err(CommandError::Invalid(format!(
            "command_id: ids starting with {JOB_COMMAND_PREFIX:?} are reserved for the batches of jobs"
        )));
    }
    if raw.len() > MAX_COMMAND_ID_LEN
        || !raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(CommandError::Invalid(format!(
            "command_id: at most {MAX_COMMAND_ID_LEN} letters, digits, '-', '_', '.' or ':'"
        )));
    }
    Ok(raw.to_owned())
}

pub fn now() -> Timestamp {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpsertOutcome {
    pub seq: Seq,
    pub created: u32,
    pub updated: u32,
    pub unchanged: u32,
    pub duplicate: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentOutcome {
    pub seq: Seq,
    /// The segment after the command (`None` after a delete).
    pub segment: Option<SegmentDef>,
    pub duplicate: bool,
    /// What the command made or changed (for a duplicate: the first attempt).
    pub touched: Touched,
    /// The catalogue after the command.
    pub catalog: SegmentCatalog,
}

/// The ids a catalogue command made or changed, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub segment: Option<u64>,
    pub topic: Option<u64>,
    pub list: Option<u64>,
    pub campaign: Option<u64>,
    pub bulk: Option<u64>,
}

impl Touched {
    fn add(&mut self, event: &Event) {
        match event {
            Event::SegmentCreated(e) => self.segment = Some(e.segment_id),
            Event::SegmentUpdated(e) => self.segment = Some(e.segment_id),
            Event::SegmentRolledBack(e) => self.segment = Some(e.segment_id),
            Event::SegmentDeleted(e) => self.segment = Some(e.segment_id),
            Event::LegacySegmentImported(e) => self.segment = Some(e.segment_id),
            Event::SegmentCloned(e) => self.segment = Some(e.segment_id),
            Event::TopicsAssigned(e) => self.segment = Some(e.segment_id),
            Event::TopicsUnassigned(e) => self.segment = Some(e.segment_id),
            Event::TopicCreated(e) => self.topic = Some(e.topic_id),
            Event::SegmentSavedAsList(e) => self.list = Some(e.list_id),
            Event::CampaignCreated(e) => self.campaign = Some(e.campaign_id),
            Event::BulkSegmentsCreated(e) => self.bulk = Some(e.bulk_id),
            Event::ContactCreated(_)
            | Event::ContactUpdated(_)
            | Event::ContactDeleted(_)
            | Event::ListMembersRecorded(_)
            | Event::JobStarted(_)
            | Event::JobMembersListed(_)
            | Event::JobProgressed(_)
            | Event::JobCompleted(_)
            | Event::JobAbandoned(_)
            | Event::JobCancelRequested(_)
            | Event::JobCancelled(_)
            | Event::ScoreReset(_)
            | Event::ActivityRecorded(_) => {}
        }
    }
}

/// Turns commands into appended events.
pub struct Writer {
    log: Arc<dyn EventLog>,
    catalogs: Mutex<HashMap<String, CachedCatalog>>,
}

/// A read-through copy of one org's catalogue, with the command ids that
/// built it: a retried segment command is recognised by its id even after
/// the log's own deduplication window, without deciding it again.
#[derive(Clone, Default)]
struct CachedCatalog {
    seq: Seq,
    catalog: SegmentCatalog,
    commands: HashMap<String, (Seq, Touched)>,
}

pub(crate) struct ContactState {
    pub(crate) last_seq: Seq,
    pub(crate) contact: Option<Contact>,
    pub(crate) last_command_id: Option<String>,
}

impl ContactState {
    /// This command already changed the contact (an earlier attempt landed).
    pub(crate) fn done_by(&self, meta: &CommandMeta) -> bool {
        self.last_command_id.as_deref() == Some(meta.command_id.as_str())
    }
}

impl Writer {
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        Writer { log, catalogs: Mutex::new(HashMap::new()) }
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    // A refused command is the client's mistake, so `err` logs at INFO;
    // infrastructure failures are logged at ERROR where they become a status.
    #[tracing::instrument(skip_all, fields(org = %meta.caller.org, command_id = %meta.command_id, n = patches.len()), err(level = "info"))]
    pub async fn upsert_contacts(
        &self,
        meta: &CommandMeta,
        patches: Vec<ContactPatch>,
    ) -> Result<UpsertOutcome, CommandError> {
        check_batch(patches.iter().map(|p| &p.email))?;
        for _ in 0..CONFLICT_RETRIES {
            let states = self.contact_states(&meta.caller.org, patches.iter().map(|p| &p.email)).await?;
            let now = now();
            let mut outcome = UpsertOutcome::default();
            let mut entries = Vec::new();
            let mut already = 0;
            for (patch, state) in patches.iter().zip(&states) {
                outcome.seq = outcome.seq.max(state.last_seq);
                if state.done_by(meta) {
                    already += 1;
                    continue;
                }
                let events = decide_contact(state.contact.as_ref(), ContactCommand::Upsert(patch.clone()), now)?;
                match events.first() {
                    None => outcome.unchanged += 1,
                    Some(Event::ContactCreated(_)) => outcome.created += 1,
                    Some(_) => outcome.updated += 1,
                }
                if !events.is_empty() {
                    let aggregate = AggregateId::contact(&meta.caller.org, patch.email.as_str());
                    entries.push(self.entry(meta, aggregate, state.last_seq, events, now));
                }
            }
            if already == patches.len() {
                return Ok(UpsertOutcome { seq: outcome.seq, duplicate: true, ..Default::default() });
            }
            if entries.is_empty() {
                return Ok(outcome);
            }
            match self.append(meta, entries).await? {
                Some(Appended::New { last_seq }) => return Ok(UpsertOutcome { seq: last_seq, ..outcome }),
                Some(Appended::Duplicate { last_seq }) => {
                    return Ok(UpsertOutcome { seq: last_seq, duplicate: true, ..Default::default() });
                }
                None => continue,
            }
        }
        Err(CommandError::Contended("contacts kept changing while the upsert was decided".into()))
    }

    #[tracing::instrument(skip_all, fields(org = %meta.caller.org, command_id = %meta.command_id, n = emails.len()), err(level = "info"))]
    pub async fn delete_contacts(
        &self,
        meta: &CommandMeta,
        emails: Vec<Email>,
    ) -> Result<(Seq, u32, bool), CommandError> {
        check_batch(emails.iter())?;
        for _ in 0..CONFLICT_RETRIES {
            let states = self.contact_states(&meta.caller.org, emails.iter()).await?;
            let now = now();
            let mut entries = Vec::with_capacity(emails.len());
            let mut last = 0;
            for (email, state) in emails.iter().zip(&states) {
                last = last.max(state.last_seq);
                if state.done_by(meta) {
                    continue;
                }
                let events = decide_contact(state.contact.as_ref(), ContactCommand::Delete(email.clone()), now)?;
                let aggregate = AggregateId::contact(&meta.caller.org, email.as_str());
                entries.push(self.entry(meta, aggregate, state.last_seq, events, now));
            }
            if entries.is_empty() {
                return Ok((last, 0, true));
            }
            match self.append(meta, entries).await? {
                Some(Appended::New { last_seq }) => return Ok((last_seq, emails.len() as u32, false)),
                Some(Appended::Duplicate { last_seq }) => return Ok((last_seq, 0, true)),
                None => continue,
            }
        }
        Err(CommandError::Contended("contacts kept changing while the delete was decided".into()))
    }

    /// Decides a catalogue command and appends its events: the catalogue's
    /// in one entry, and a saved list's members in an entry for the list's
    /// own aggregate, placed first, so that on a log without atomic
    /// multi-aggregate requests (NATS) a list never appears in the
    /// catalogue without its members.
    #[tracing::instrument(skip_all, fields(org = %meta.caller.org, command_id = %meta.command_id), err(level = "info"))]
    pub async fn segments(&self, meta: &CommandMeta, command: SegmentCommand) -> Result<SegmentOutcome, CommandError> {
        let org = &meta.caller.org;
        let aggregate = AggregateId::segment_catalog(org);
        for _ in 0..CONFLICT_RETRIES {
            let (last_seq, mut catalog) = self.catalog(org).await?;
            if let Some((seq, touched)) = self.catalog_command(org, &meta.command_id) {
                let segment = touched.segment.and_then(|id| catalog.segments.get(&id).cloned());
                return Ok(SegmentOutcome { seq, segment, duplicate: true, touched, catalog });
            }
            let events = decide_segments(&catalog, command.clone())?;
            let now = now();
            let mut touched = Touched::default();
            events.iter().for_each(|e| touched.add(e));
            let (members, own): (Vec<Event>, Vec<Event>) =
                events.into_iter().partition(|e| matches!(e, Event::ListMembersRecorded(_)));
            let mut entries = Vec::with_capacity(2);
            if let (Some(list), false) = (touched.list, members.is_empty()) {
                entries.push(self.entry(meta, AggregateId::list(org, list), 0, members, now));
            }
            entries.push(self.entry(meta, aggregate.clone(), last_seq, own.clone(), now));
            match self.append(meta, entries).await? {
                Some(Appended::New { last_seq }) => {
                    for e in &own {
                        catalog.apply(e, now);
                    }
                    let segment = touched.segment.and_then(|id| catalog.segments.get(&id).cloned());
                    return Ok(SegmentOutcome { seq: last_seq, segment, duplicate: false, touched, catalog });
                }
                // The log knew the command id; the next round answers from the catalogue.
                Some(Appended::Duplicate { .. }) | None => continue,
            }
        }
        Err(CommandError::Contended("the segment catalogue kept changing while the command was decided".into()))
    }

    /// Records what a contact did. Answers with the contact after it.
    #[tracing::instrument(skip_all, fields(org = %meta.caller.org, command_id = %meta.command_id), err(level = "info"))]
    pub async fn record_activity(
        &self,
        meta: &CommandMeta,
        email: Email,
        activity: Activity,
        at: Timestamp,
    ) -> Result<(Seq, Option<Contact>, bool), CommandError> {
        let aggregate = AggregateId::contact(&meta.caller.org, email.as_str());
        for _ in 0..CONFLICT_RETRIES {
            let state = self.contact_states(&meta.caller.org, std::iter::once(&email)).await?.remove(0);
            if state.done_by(meta) {
                return Ok((state.last_seq, state.contact, true));
            }
            let events = decide_activity(email.as_str(), state.contact.as_ref(), activity.clone(), at)?;
            let contact = events.first().and_then(|e| apply_contact(e).flatten());
            let entry = self.entry(meta, aggregate.clone(), state.last_seq, events, now());
            match self.append(meta, vec![entry]).await? {
                Some(Appended::New { last_seq }) => return Ok((last_seq, contact, false)),
                // The next round finds the command id on the contact's last event.
                Some(Appended::Duplicate { .. }) | None => continue,
            }
        }
        Err(CommandError::Contended("the contact kept changing while the activity was recorded".into()))
    }

    /// The org's segment catalogue as of the log's latest event for it.
    pub async fn catalog(&self, org: &str) -> Result<(Seq, SegmentCatalog), LogError> {
        let aggregate = AggregateId::segment_catalog(org);
        let mut cached = self.catalogs.lock().unwrap_or_else(|p| p.into_inner()).get(org).cloned().unwrap_or_default();
        let fresh = self.log.read_aggregate(&aggregate, cached.seq).await?;
        if fresh.is_empty() {
            return Ok((cached.seq, cached.catalog));
        }
        for rec in fresh {
            cached.catalog.apply(&rec.envelope.event, rec.envelope.time);
            let entry = cached.commands.entry(rec.envelope.command_id).or_default();
            entry.0 = rec.seq;
            entry.1.add(&rec.envelope.event);
            cached.seq = rec.seq;
        }
        let answer = (cached.seq, cached.catalog.clone());
        let mut cache = self.catalogs.lock().unwrap_or_else(|p| p.into_inner());
        if cache.get(org).is_none_or(|c| c.seq < cached.seq) {
            cache.insert(org.to_owned(), cached);
        }
        Ok(answer)
    }

    /// The sequence of the command's last catalogue event and what it
    /// touched, if it was recorded.
    fn catalog_command(&self, org: &str, command_id: &str) -> Option<(Seq, Touched)> {
        self.catalogs.lock().unwrap_or_else(|p| p.into_inner()).get(org)?.commands.get(command_id).copied()
    }

    /// Each contact's last sequence, current state and the command that last
    /// changed it. Every contact event carries the whole contact, so the last
    /// event is the state.
    pub(crate) async fn contact_states<'e>(
        &self,
        org: &str,
        emails: impl Iterator<Item = &'e Email>,
    ) -> Result<Vec<ContactState>, LogError> {
        let loads = emails.map(|email| {
            let aggregate = AggregateId::contact(org, email.as_str());
            let log = Arc::clone(&self.log);
            async move {
                let last = log.last_of(&aggregate).await?;
                Ok::<_, LogError>(match last {
                    Some(rec) => ContactState {
                        last_seq: rec.seq,
                        contact: apply_contact(&rec.envelope.event).flatten(),
                        last_command_id: Some(rec.envelope.command_id),
                    },
                    None => ContactState { last_seq: 0, contact: None, last_command_id: None },
                })
            }
        });
        try_join_all(loads).await
    }

    pub(crate) fn entry(
        &self,
        meta: &CommandMeta,
        aggregate: AggregateId,
        expected: Seq,
        events: Vec<Event>,
        now: Timestamp,
    ) -> AppendEntry {
        let events = events
            .into_iter()
            .map(|event| Envelope {
                event_id: uuid::Uuid::now_v7().as_u128(),
                command_id: meta.command_id.clone(),
                aggregate: aggregate.clone(),
                actor: meta.caller.actor.clone(),
                time: now,
                event,
            })
            .collect();
        AppendEntry { aggregate, expected_last_seq: expected, events }
    }

    /// `None` on a conflict: the caller decides again.
    pub(crate) async fn append(
        &self,
        meta: &CommandMeta,
        entries: Vec<AppendEntry>,
    ) -> Result<Option<Appended>, CommandError> {
        let request = AppendRequest { org: meta.caller.org.clone(), command_id: meta.command_id.clone(), entries };
        match self.log.append(request).await {
            Ok(appended) => Ok(Some(appended)),
            Err(AppendError::Conflict { aggregate, expected, actual }) => {
                tracing::debug!(%aggregate, expected, actual, "conflict; deciding again");
                Ok(None)
            }
            Err(AppendError::Log(e)) => Err(e.into()),
        }
    }
}

fn check_batch<'e>(emails: impl ExactSizeIterator<Item = &'e Email>) -> Result<(), CommandError> {
    let n = emails.len();
    if n == 0 {
        return Err(CommandError::Invalid("the batch is empty".into()));
    }
    if n > MAX_BATCH {
        return Err(CommandError::Invalid(format!("the batch has {n} entries; at most {MAX_BATCH} are allowed")));
    }
    let mut seen = HashSet::with_capacity(n);
    for e in emails {
        if !seen.insert(e.as_str()) {
            return Err(CommandError::Invalid(format!("email {e} appears more than once in the batch")));
        }
    }
    Ok(())
}
