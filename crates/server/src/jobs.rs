//! Jobs: start one over a segment's members at a fixed log position, work
//! through it in batches through the ordinary command path, and resume every
//! unfinished job when the process starts.
//!
//! The job's own aggregate in the log is its state: `JobStarted` with the
//! member list, then one `JobProgressed` per batch, appended in the *same*
//! request as the batch's contact events under the command id
//! `job:<id>:<batch>`. A crash therefore leaves a batch either wholly
//! recorded (and counted) or not at all; a re-run batch is recognised by the
//! log's command-id check and by each contact's last command id, so every
//! contact is changed exactly once. Several processes may run the same job
//! (NATS, after restarts): they race on the job aggregate's expected
//! sequence and the loser re-reads.
//!
//! Needs the read model (member lists come from it), so jobs run only on
//! nodes with both the commands and the queries role.

use crate::auth::Caller;
use crate::metrics::JobProgress;
use crate::write::{CommandError, CommandMeta, Writer, now};
use segmentd_domain::job::{
    JOB_COMMAND_PREFIX, JobRequest, JobStart, JobState, JobStep, MemberState, Preview, batch_command_id,
    check_job_request, check_preview_request, decide_abandon, decide_batch, decide_cancel, decide_cancelled,
    decide_complete, decide_preview, decide_start,
};
use segmentd_domain::segment::SegmentDef;
use segmentd_domain::{AggregateId, Contact, Criteria, DomainError, Email};
use segmentd_log::{AppendEntry, Appended, LogError, Seq};
use segmentd_readmodel::{JobView, OrgView, ReadModel, ReadModelError, SegmentLookup, StoredContact};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How jobs pace themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobSettings {
    /// Members per batch (one append request each) for jobs started here;
    /// a job keeps the batch size it was started with.
    pub batch_size: u32,
    /// A pause after each batch, so a large job leaves room for
    /// interactive writes; zero runs flat out.
    pub pause: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings { batch_size: 256, pause: Duration::ZERO }
    }
}

/// Back-off after a job failed to read or write the log.
const RETRY: Duration = Duration::from_millis(200);
/// Attempts at recording a cancel request against a job that is busy
/// recording batches.
const CANCEL_RETRIES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    /// The segment or job does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The segment's membership changed after the position a dry run saw.
    #[error("{0}")]
    Stale(String),
}

impl From<DomainError> for JobError {
    fn from(e: DomainError) -> Self {
        JobError::Command(e.into())
    }
}

impl From<LogError> for JobError {
    fn from(e: LogError) -> Self {
        JobError::Command(e.into())
    }
}

/// The outcome of a start: the job as the read model holds it once started.
pub struct Started {
    pub seq: Seq,
    pub job: JobView,
    pub duplicate: bool,
}

/// How a job request is to be run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobOptions {
    /// Only say what the job would do; append nothing.
    pub dry_run: bool,
    /// The position a dry run answered: refuse the run if the segment's
    /// members changed after it.
    pub expected_position: Option<Seq>,
}

/// What a dry run found.
pub struct DryRunReport {
    /// The read model's sequence the preview was computed at.
    pub position: Seq,
    pub segment: SegmentDef,
    pub preview: Preview,
    /// The contacts `preview.sample` points at.
    pub sample: Vec<Arc<Contact>>,
}

/// A job request's answer.
pub enum JobAnswer {
    Started(Started),
    DryRun(DryRunReport),
}

/// Starts, runs and resumes jobs.
pub struct Jobs {
    writer: Arc<Writer>,
    model: Arc<ReadModel>,
    settings: JobSettings,
    /// How long a start waits for the read model to reach the log's end.
    wait: Duration,
    shutdown: watch::Receiver<bool>,
    tasks: Mutex<JoinSet<()>>,
    running: Arc<Mutex<HashSet<(String, String)>>>,
    /// Where running jobs' progress is shown (`segmentd_job_*` gauges).
    progress: Option<JobProgress>,
}

impl Jobs {
    pub fn new(
        writer: Arc<Writer>,
        model: Arc<ReadModel>,
        settings: JobSettings,
        wait: Duration,
        shutdown: watch::Receiver<bool>,
        progress: Option<JobProgress>,
    ) -> Arc<Self> {
        Arc::new(Jobs {
            writer,
            model,
            settings,
            wait,
            shutdown,
            tasks: Mutex::new(JoinSet::new()),
            running: Arc::new(Mutex::new(HashSet::new())),
            progress,
        })
    }

    /// Shows a running job's progress in the metrics; an ended job's
    /// series are removed (GetJob has its record).
    fn report(&self, org: &str, job_id: &str, state: &JobState) {
        let (Some(progress), Some(started)) = (&self.progress, &state.started) else { return };
        let kind = crate::event_json::job_kind_name(&started.kind);
        if state.ended() {
            progress.ended(org, job_id, kind);
        } else {
            progress.set(org, job_id, kind, state.next_index, started.member_count);
        }
    }

    /// Starts a job over the members of `segment` as the read model holds
    /// them once it has applied everything in the log at this moment. The
    /// command id is the job id: a retry answers with the same job. A dry
    /// run reads the same members at the same point and appends nothing.
    #[tracing::instrument(
        skip_all,
        fields(org = %meta.caller.org, job = %meta.command_id, dry_run = options.dry_run),
        err(level = "info")
    )]
    pub async fn start(
        self: &Arc<Self>,
        meta: &CommandMeta,
        segment: SegmentLookup<'_>,
        request: JobRequest,
        options: JobOptions,
    ) -> Result<JobAnswer, JobError> {
        if options.dry_run {
            check_preview_request(&request.kind)?;
        } else {
            check_job_request(&request)?;
        }
        let org = &meta.caller.org;
        let job_id = meta.command_id.clone();
        let aggregate = AggregateId::job(org, &job_id);
        if !options.dry_run
            && let Some(last) = self.writer.log().last_of(&aggregate).await?
        {
            self.run(org, &job_id);
            return Ok(JobAnswer::Started(self.answer(org, &job_id, last.seq, true).await?));
        }
        // Everything in the log before the request is in the member list,
        // and a membership change before it cannot be missed by the check
        // against `expected_position`.
        let head = self.writer.log().last_seq().await?;
        self.model.wait_for(head, self.wait).await?;
        let clock = now();
        if options.dry_run {
            let report = self.model.read(org, |view, seq| {
                let (def, criteria) = segment_at(view, &segment)?;
                let members = view.member_contacts(&criteria, clock);
                let preview = decide_preview(&request.kind, members.iter().map(StoredContact::to_contact), clock);
                let sample = preview.sample.iter().map(|&i| Arc::new(members[i].to_contact())).collect();
                Ok::<_, JobError>(DryRunReport { position: seq, segment: def, preview, sample })
            })?;
            return Ok(JobAnswer::DryRun(report));
        }
        let batch_size = self.settings.batch_size;
        let (position, def, members) = self.model.read(org, |view, seq| {
            let (def, criteria) = segment_at(view, &segment)?;
            if let Some(expected) = options.expected_position {
                check_unchanged(view, &def, expected, seq)?;
            }
            Ok::<_, JobError>((seq, def, view.member_emails(&criteria, clock)))
        })?;
        let start = JobStart { job_id: &job_id, request, segment: &def, position, clock, members, batch_size };
        let events = decide_start(&JobState::default(), start)?;
        let entry = self.writer.entry(meta, aggregate.clone(), 0, events, now());
        let (seq, duplicate) = match self.writer.append(meta, vec![entry]).await? {
            Some(Appended::New { last_seq }) => (last_seq, false),
            Some(Appended::Duplicate { last_seq }) => (last_seq, true),
            // Another request with this id started the job a moment ago.
            None => match self.writer.log().last_of(&aggregate).await? {
                Some(last) => (last.seq, true),
                None => return Err(CommandError::Contended("the job could not be started".into()).into()),
            },
        };
        self.run(org, &job_id);
        Ok(JobAnswer::Started(self.answer(org, &job_id, seq, duplicate).await?))
    }

    /// Asks a running job to stop (CancelJob): records who asked, then
    /// waits (at most the read-model wait) until the job has stopped, and
    /// answers with the job as the read model then holds it. Asking again
    /// records nothing more.
    #[tracing::instrument(skip_all, fields(org = %meta.caller.org, job = %job_id), err(level = "info"))]
    pub async fn cancel(
        self: &Arc<Self>,
        meta: &CommandMeta,
        job_id: &str,
        reason: &str,
    ) -> Result<(Seq, JobView), JobError> {
        let org = &meta.caller.org;
        let aggregate = AggregateId::job(org, job_id);
        let mut seq = None;
        for _ in 0..CANCEL_RETRIES {
            let mut state = JobState::default();
            let mut last = 0;
            let mut recorded = None;
            for rec in self.writer.log().read_aggregate(&aggregate, 0).await? {
                state.apply(&rec.envelope.event);
                last = rec.seq;
                if rec.envelope.command_id == meta.command_id {
                    recorded = Some(rec.seq);
                }
            }
            // A retried CancelJob finds its own event and decides nothing.
            if let Some(recorded) = recorded {
                seq = Some(recorded);
                break;
            }
            let events = decide_cancel(&state, job_id, reason)?;
            if events.is_empty() {
                seq = Some(last);
                break;
            }
            let entry = self.writer.entry(meta, aggregate.clone(), last, events, now());
            match self.writer.append(meta, vec![entry]).await? {
                Some(Appended::New { last_seq } | Appended::Duplicate { last_seq }) => {
                    seq = Some(last_seq);
                    break;
                }
                // The runner recorded a batch meanwhile: decide again.
                None => continue,
            }
        }
        let seq = seq.ok_or_else(|| CommandError::Contended(format!("job {job_id} could not be cancelled")))?;
        // The runner here stops it now; when no process runs it (say, it
        // was interrupted and not yet resumed) this one records the stop.
        self.run(org, job_id);
        let job = self.wait_stopped(org, job_id, seq).await?;
        Ok((job.last_seq.max(seq), job))
    }

    /// The job once the read model shows it ended, or as it is when that
    /// takes longer than the read-model wait.
    async fn wait_stopped(&self, org: &str, job_id: &str, seq: Seq) -> Result<JobView, JobError> {
        self.model.wait_for(seq, self.wait).await?;
        let mut notices = self.model.watch_jobs();
        let current = |model: &ReadModel| model.read(org, |view, _| view.job(job_id).cloned());
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let job =
                current(&self.model).ok_or_else(|| JobError::NotFound(format!("job {job_id:?} does not exist")))?;
            if job.ended() {
                return Ok(job);
            }
            match tokio::time::timeout_at(deadline, notices.recv()).await {
                Err(_) => return Ok(job),
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return Ok(job),
                Ok(_) => {}
            }
        }
    }

    async fn answer(&self, org: &str, job_id: &str, seq: Seq, duplicate: bool) -> Result<Started, JobError> {
        self.model.wait_for(seq, self.wait).await?;
        let job = self.model.read(org, |view, _| view.job(job_id).cloned()).ok_or_else(|| {
            CommandError::Invalid(format!("command_id: {job_id:?} was already used by a command that is not a job"))
        })?;
        Ok(Started { seq, job, duplicate })
    }

    /// Runs the job in the background unless this process already does.
    pub fn run(self: &Arc<Self>, org: &str, job_id: &str) {
        let key = (org.to_owned(), job_id.to_owned());
        if !self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone()) {
            return;
        }
        let jobs = Arc::clone(self);
        let running = Arc::clone(&self.running);
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).spawn(async move {
            jobs.drive(&key.0, &key.1).await;
            running.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        });
    }

    /// Resumes every job the read model knows as unfinished, once it has
    /// caught up with the log (so that no unfinished job is missed).
    pub async fn resume_all(self: &Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let head = match self.writer.log().last_seq().await {
                Ok(head) => head,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the log to resume jobs; retrying");
                    if pause(&mut shutdown, RETRY).await {
                        return;
                    }
                    continue;
                }
            };
            let mut applied = self.model.subscribe();
            tokio::select! {
                reached = applied.wait_for(|seq| *seq >= head) => { if reached.is_err() { return; } }
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            break;
        }
        let unfinished = self.model.unfinished_jobs();
        if !unfinished.is_empty() {
            tracing::info!(jobs = unfinished.len(), "resuming unfinished jobs");
        }
        for (org, job_id) in unfinished {
            self.run(&org, &job_id);
        }
    }

    /// Resumes unfinished jobs from a background task (see [`Jobs::resume_all`]).
    pub fn resume_in_background(self: &Arc<Self>) {
        let jobs = Arc::clone(self);
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).spawn(async move { jobs.resume_all().await });
    }

    /// Waits for every job task to stop (after shutdown was signalled),
    /// including any a stopping task started.
    pub async fn stopped(&self) {
        loop {
            let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
            if tasks.is_empty() {
                return;
            }
            while let Some(done) = tasks.join_next().await {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a job task failed");
                }
            }
        }
    }

    /// Works the job to its end, or until shutdown. Failures to reach the
    /// log are retried: the job's state is in the log, so nothing is lost by
    /// trying again.
    #[tracing::instrument(skip(self))]
    async fn drive(&self, org: &str, job_id: &str) {
        let mut shutdown = self.shutdown.clone();
        let aggregate = AggregateId::job(org, job_id);
        let mut state = JobState::default();
        let mut actor = String::new();
        let mut last = 0;
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.step(org, job_id, &aggregate, &mut state, &mut actor, &mut last).await {
                Ok(true) => return,
                Ok(false) => {
                    if !self.settings.pause.is_zero() && self.pause_between_batches(org, job_id, &mut shutdown).await {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "job step failed; retrying");
                    if pause(&mut shutdown, RETRY).await {
                        return;
                    }
                }
            }
        }
    }

    /// The pause after a batch, cut short when the job is asked to stop;
    /// true when shutdown came first.
    async fn pause_between_batches(&self, org: &str, job_id: &str, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut notices = self.model.watch_jobs();
        // Subscribed first, so a request applied from here on is seen.
        let asked = |model: &ReadModel| model.read(org, |view, _| view.job(job_id).is_some_and(|j| j.cancel.is_some()));
        if asked(&self.model) {
            return *shutdown.borrow();
        }
        let cancelled = async {
            loop {
                match notices.recv().await {
                    Ok(n) if n.org == org && n.job.id == job_id && n.job.cancel.is_some() => return,
                    Ok(_) => {}
                    // Missed notices: look at the job itself.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) if asked(&self.model) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            }
        };
        tokio::select! {
            stopped = pause(shutdown, self.settings.pause) => stopped,
            () = cancelled => *shutdown.borrow(),
        }
    }

    /// One step: catch up with the job's events, then append its next
    /// batch (or its end). `Ok(true)` once the job has ended.
    async fn step(
        &self,
        org: &str,
        job_id: &str,
        aggregate: &AggregateId,
        state: &mut JobState,
        actor: &mut String,
        last: &mut Seq,
    ) -> Result<bool, JobError> {
        for rec in self.writer.log().read_aggregate(aggregate, *last).await? {
            if matches!(rec.envelope.event, segmentd_domain::Event::JobStarted(_)) {
                actor.clone_from(&rec.envelope.actor);
            }
            state.apply(&rec.envelope.event);
            *last = rec.seq;
        }
        self.report(org, job_id, state);
        let meta = |command_id: String| CommandMeta {
            caller: Caller { org: org.to_owned(), actor: actor.clone() },
            command_id,
        };
        let now = now();
        let (meta, entries) = match state.next_step() {
            JobStep::Ended => return Ok(true),
            JobStep::Abandon(reason) => {
                tracing::warn!(%reason, "abandoning job");
                let meta = meta(format!("{JOB_COMMAND_PREFIX}{job_id}:abandoned"));
                let entry = self.writer.entry(&meta, aggregate.clone(), *last, vec![decide_abandon(reason)], now);
                (meta, vec![entry])
            }
            JobStep::Complete => {
                let meta = meta(format!("{JOB_COMMAND_PREFIX}{job_id}:completed"));
                let entry = self.writer.entry(&meta, aggregate.clone(), *last, vec![decide_complete(state)], now);
                (meta, vec![entry])
            }
            JobStep::Batch { batch, members } => {
                let meta = meta(batch_command_id(job_id, batch));
                let Some(batch) = self.batch(org, aggregate, state, *last, &meta, members, now).await? else {
                    return Ok(false);
                };
                (meta, batch.entries)
            }
            JobStep::Stop { batch, members } => {
                let batch_meta = meta(batch_command_id(job_id, batch));
                match self.batch(org, aggregate, state, *last, &batch_meta, members, now).await? {
                    // Part of the next batch landed before the request: finish it.
                    Some(batch) if batch.begun => (batch_meta, batch.entries),
                    Some(_) => {
                        tracing::info!("job cancelled");
                        let meta = meta(format!("{JOB_COMMAND_PREFIX}{job_id}:cancelled"));
                        let entry =
                            self.writer.entry(&meta, aggregate.clone(), *last, vec![decide_cancelled(state)], now);
                        (meta, vec![entry])
                    }
                    None => return Ok(false),
                }
            }
        };
        // New, duplicate or conflict alike: the next step re-reads the job.
        self.writer.append(&meta, entries).await?;
        Ok(false)
    }
}

/// One batch, decided.
struct Batch {
    /// Each member's events and, last, the job's progress.
    entries: Vec<AppendEntry>,
    /// Some member already carries the batch's command id: an earlier
    /// attempt landed in part (a log without atomic requests).
    begun: bool,
}

impl Jobs {
    /// Decides one batch; `None` when the job was abandoned instead.
    #[allow(clippy::too_many_arguments)]
    async fn batch(
        &self,
        org: &str,
        aggregate: &AggregateId,
        state: &JobState,
        last: Seq,
        meta: &CommandMeta,
        members: std::ops::Range<usize>,
        now: segmentd_domain::Timestamp,
    ) -> Result<Option<Batch>, JobError> {
        // Recorded emails were valid when recorded; one that no longer
        // parses (a stricter future rule) counts as gone.
        let emails: Vec<Option<Email>> = state.members[members].iter().map(|e| Email::parse(e).ok()).collect();
        let valid: Vec<Email> = emails.iter().flatten().cloned().collect();
        let mut loaded = self.writer.contact_states(org, valid.iter()).await?.into_iter();
        let states: Vec<Option<crate::write::ContactState>> =
            emails.iter().map(|e| e.as_ref().and_then(|_| loaded.next())).collect();
        let members: Vec<MemberState<'_>> = states
            .iter()
            .map(|s| MemberState {
                contact: s.as_ref().and_then(|s| s.contact.as_ref()),
                done_by_this_batch: s.as_ref().is_some_and(|s| s.done_by(meta)),
            })
            .collect();
        let begun = members.iter().any(|m| m.done_by_this_batch);
        let (events, progress) = match decide_batch(state, &members, now) {
            Ok(decided) => decided,
            Err(e) => {
                let entry = self.writer.entry(meta, aggregate.clone(), last, vec![decide_abandon(e.to_string())], now);
                self.writer.append(meta, vec![entry]).await?;
                return Ok(None);
            }
        };
        let mut entries = Vec::new();
        for ((email, state), events) in emails.iter().zip(&states).zip(events) {
            if let (Some(email), Some(state), false) = (email, state, events.is_empty()) {
                let contact = AggregateId::contact(org, email.as_str());
                entries.push(self.writer.entry(meta, contact, state.last_seq, events, now));
            }
        }
        let progress = segmentd_domain::Event::JobProgressed(progress);
        entries.push(self.writer.entry(meta, aggregate.clone(), last, vec![progress], now));
        Ok(Some(Batch { entries, begun }))
    }
}

/// The segment `lookup` names and its parsed criteria.
fn segment_at(view: &OrgView, lookup: &SegmentLookup<'_>) -> Result<(SegmentDef, Arc<Criteria>), JobError> {
    let def = view.segment(lookup.clone()).cloned().ok_or_else(|| JobError::NotFound(not_found(lookup)))?;
    let criteria = view.segment_criteria(def.id).cloned().ok_or_else(|| {
        JobError::Command(CommandError::Invalid(format!("segment {} has criteria this server cannot read", def.id)))
    })?;
    Ok((def, criteria))
}

/// Refuses a run whose dry run saw the segment's members at `expected`
/// when they changed since; the model is at `applied`.
fn check_unchanged(view: &OrgView, def: &SegmentDef, expected: Seq, applied: Seq) -> Result<(), JobError> {
    if expected > applied {
        return Err(CommandError::Invalid(format!(
            "expected_position: {expected} is beyond the log's position {applied}; pass the position a dry run answered"
        ))
        .into());
    }
    // Every saved segment keeps its set; none would mean it was made after
    // the dry run and its set not yet computed, which is a change too.
    let changed_at = view.members_changed_at(def.id).unwrap_or(Seq::MAX);
    if changed_at > expected {
        return Err(JobError::Stale(format!(
            "segment {} ({:?}): its members changed at sequence {changed_at}, after the dry run's position \
             {expected}; run the dry run again and confirm what it shows",
            def.id, def.name
        )));
    }
    Ok(())
}

/// Sleeps `d`; true when shutdown came first.
async fn pause(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|stop| *stop) => true,
    };
    stopped || *shutdown.borrow()
}

fn not_found(lookup: &SegmentLookup<'_>) -> String {
    match lookup {
        SegmentLookup::Id(id) => format!("segment {id} does not exist"),
        SegmentLookup::Name(name) => format!("no segment is named {name:?}"),
    }
}
