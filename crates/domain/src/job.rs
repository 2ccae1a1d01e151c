//! Jobs: mass update, delete a segment's contacts, reset scores. A job runs
//! over a segment's members as they were at one log position; the member
//! list is recorded when the job starts, so a job resumed after a crash
//! works through exactly the same contacts.
//!
//! Exactly once per contact: members are worked through in fixed batches;
//! batch `n` is appended with the command id [`batch_command_id`] together
//! with the job's [`JobProgressed`], so a batch either counts and changes
//! its contacts or does neither, and a retried batch is recognised by its
//! command id (by the log, and on each contact's last event).
//!
//! Pure like the rest of the domain: the caller loads the state and passes
//! the clock.

use crate::Email;
use crate::contact::{Contact, Field};
use crate::contact_decide::{ContactCommand, ContactPatch, FieldInput, MAX_TEXT_FIELD_LEN, decide_contact};
use crate::error::DomainError;
use crate::event::{
    ContactDeleted, Event, JobAbandoned, JobCancelRequested, JobCancelled, JobCompleted, JobKind, JobMembersListed,
    JobProgressed, JobStarted, ScoreReset,
};
use crate::segment::SegmentDef;
use crate::time::Timestamp;
use std::ops::Range;

/// Emails per [`JobMembersListed`] event: small enough for one NATS message.
pub const MEMBERS_PER_EVENT: usize = 4096;
/// The most members one job may cover: the member list is one append.
pub const MAX_JOB_MEMBERS: usize = 1_000_000;
/// The score a reset leaves.
pub const RESET_SCORE: i64 = 0;
/// Prefix of the command ids jobs append batches with; refused from clients.
pub const JOB_COMMAND_PREFIX: &str = "job:";

/// The command id batch `batch` of job `job_id` is appended with.
pub fn batch_command_id(job_id: &str, batch: u64) -> String {
    format!("{JOB_COMMAND_PREFIX}{job_id}:{batch}")
}

/// A request to start a job: what it does and the confirmation the client gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRequest {
    pub kind: JobKind,
    /// `confirm` of DeleteSegmentContacts, `agree` of ResetScores.
    pub confirmed: bool,
}

/// Checks a job request before anything is looked up: bad values are
/// INVALID_ARGUMENT, a missing confirmation FAILED_PRECONDITION.
pub fn check_job_request(request: &JobRequest) -> Result<(), DomainError> {
    match &request.kind {
        JobKind::MassUpdate { .. } => {
            // Runs the contact rules (age range, no empty added_at, ...) on a
            // probe, so a bad value is refused before the job starts rather
            // than on its first member.
            let probe = Contact::new(Email::parse("probe@example.com").expect("a valid literal"), Timestamp(0));
            decide_member(&request.kind, "", Some(&probe), Timestamp(0)).map(|_| ())
        }
        JobKind::DeleteContacts => {
            if request.confirmed {
                Ok(())
            } else {
                Err(DomainError::NotConfirmed(
                    "confirm: deleting every contact of a segment from the organisation needs confirm=true".into(),
                ))
            }
        }
        JobKind::ResetScores { reason } => {
            if reason.trim().is_empty() {
                return Err(DomainError::InvalidValue("reason: a score reset needs a non-empty reason".into()));
            }
            if reason.len() > MAX_TEXT_FIELD_LEN || reason.chars().any(char::is_control) {
                return Err(DomainError::InvalidValue(format!(
                    "reason: at most {MAX_TEXT_FIELD_LEN} bytes, no control characters"
                )));
            }
            if request.confirmed {
                Ok(())
            } else {
                Err(DomainError::NotConfirmed(
                    "agree: resetting the scores of a segment's contacts needs agree=true".into(),
                ))
            }
        }
    }
}

/// Checks a dry run of a job: everything that describes the request (the
/// field and value, the reason), but not the confirmation, which is the
/// user's consent to what the dry run is there to show them first.
pub fn check_preview_request(kind: &JobKind) -> Result<(), DomainError> {
    check_job_request(&JobRequest { kind: kind.clone(), confirmed: true })
}

/// Contacts shown in a dry run's sample.
pub const PREVIEW_SAMPLE: usize = 20;

/// What a job would do to a segment's members (a dry run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preview {
    pub members: u64,
    /// Members the job would change; the others it would skip (a mass
    /// update skips those that already have the value).
    pub affected: u64,
    /// Indexes (into the members) of the first [`PREVIEW_SAMPLE`] affected.
    pub sample: Vec<usize>,
}

/// Decides what a job of `kind` would do to `members` (in member order) at
/// `now`, with the same per-member rule the job applies.
/// Members may be owned or borrowed: a read model may decode them one at a
/// time rather than hold them all decoded.
pub fn decide_preview<C: std::borrow::Borrow<Contact>>(
    kind: &JobKind,
    members: impl IntoIterator<Item = C>,
    now: Timestamp,
) -> Preview {
    let mut preview = Preview { members: 0, affected: 0, sample: Vec::new() };
    for (i, contact) in members.into_iter().enumerate() {
        preview.members += 1;
        let changes = decide_member(kind, "", Some(contact.borrow()), now).is_ok_and(|events| !events.is_empty());
        if changes {
            preview.affected += 1;
            if preview.sample.len() < PREVIEW_SAMPLE {
                preview.sample.push(i);
            }
        }
    }
    preview
}

fn mass_update_patch(field: &str, value: &str, email: &str) -> Result<ContactPatch, DomainError> {
    let field = Field::parse(field).map_err(|e| DomainError::InvalidValue(format!("field: {e}")))?;
    if field == Field::Email {
        return Err(DomainError::InvalidValue(
            "field: the email identifies a contact and cannot be mass-updated".into(),
        ));
    }
    let value = FieldInput::parse(&field, value).map_err(|e| DomainError::InvalidValue(format!("value: {e}")))?;
    let email = Email::parse(email).map_err(|e| DomainError::InvalidValue(e.to_string()))?;
    Ok(ContactPatch { email, set: vec![(field, value)] })
}

/// Where a job starts: the segment and its members at `position`.
#[derive(Clone, Debug)]
pub struct JobStart<'a> {
    pub job_id: &'a str,
    pub request: JobRequest,
    pub segment: &'a SegmentDef,
    pub position: u64,
    pub clock: Timestamp,
    pub members: Vec<String>,
    pub batch_size: u32,
}

/// Decides a job's start: [`JobStarted`] and the member list. `existing` is
/// the job as recorded, if its id was used before.
pub fn decide_start(existing: &JobState, start: JobStart<'_>) -> Result<Vec<Event>, DomainError> {
    check_job_request(&start.request)?;
    if existing.started.is_some() {
        return Err(DomainError::InvalidValue(format!("command_id: job {} already exists", start.job_id)));
    }
    if start.members.len() > MAX_JOB_MEMBERS {
        return Err(DomainError::InvalidValue(format!(
            "segment: {} has {} members; a job covers at most {MAX_JOB_MEMBERS}",
            start.segment.name,
            start.members.len()
        )));
    }
    if start.batch_size == 0 {
        return Err(DomainError::InvalidValue("batch size: must be at least 1".into()));
    }
    let mut events = vec![Event::JobStarted(JobStarted {
        job_id: start.job_id.to_owned(),
        kind: start.request.kind,
        segment_id: start.segment.id,
        segment_name: start.segment.name.clone(),
        criteria: start.segment.criteria.clone(),
        position: start.position,
        clock: start.clock,
        member_count: start.members.len() as u64,
        batch_size: start.batch_size,
    })];
    for (i, chunk) in start.members.chunks(MEMBERS_PER_EVENT).enumerate() {
        events.push(Event::JobMembersListed(JobMembersListed {
            first_index: (i * MEMBERS_PER_EVENT) as u64,
            emails: chunk.to_vec(),
        }));
    }
    Ok(events)
}

/// A job as its events say. Fold with [`JobState::apply`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobState {
    pub started: Option<JobStarted>,
    pub members: Vec<String>,
    pub next_index: u64,
    pub changed: u64,
    pub skipped: u64,
    pub completed: bool,
    pub abandoned: Option<String>,
    /// Someone asked the job to stop; it stops before its next batch.
    pub cancel_requested: bool,
    /// The job stopped on request.
    pub cancelled: bool,
}

/// What one batch of a job does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobStep {
    /// Nothing: the job has ended.
    Ended,
    /// The member list is incomplete (a torn start on a log without atomic
    /// requests); the job must be abandoned. No contact was changed yet.
    Abandon(String),
    /// Work through `members` (indexes into the member list) as batch `batch`.
    /// Members that are gone, already so, or refuse the change are skipped.
    Batch { batch: u64, members: Range<usize> },
    /// Every member is done.
    Complete,
    /// The job was asked to stop: record that it stopped, unless some
    /// members of the next batch (`batch`, `members`) already changed — a
    /// batch torn on a log without atomic requests — in which case that
    /// batch is finished first, so no batch is left half-applied.
    Stop { batch: u64, members: Range<usize> },
}

impl JobState {
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::JobStarted(e) => self.started = Some(e.clone()),
            // A slice out of order would misplace members; it is left out,
            // and the count check in `next_step` abandons the job instead.
            Event::JobMembersListed(e) if e.first_index == self.members.len() as u64 => {
                self.members.extend(e.emails.iter().cloned());
            }
            Event::JobProgressed(e) => {
                self.next_index = e.next_index;
                self.changed = e.changed;
                self.skipped = e.skipped;
            }
            Event::JobCompleted(e) => {
                self.completed = true;
                self.changed = e.changed;
                self.skipped = e.skipped;
            }
            Event::JobAbandoned(e) => self.abandoned = Some(e.reason.clone()),
            Event::JobCancelRequested(_) => self.cancel_requested = true,
            Event::JobCancelled(e) => {
                self.cancelled = true;
                self.next_index = e.next_index;
                self.changed = e.changed;
                self.skipped = e.skipped;
            }
            _ => {}
        }
    }

    pub fn ended(&self) -> bool {
        self.completed || self.abandoned.is_some() || self.cancelled
    }

    /// How the job ended, in words; `None` while it runs.
    pub fn end(&self) -> Option<&'static str> {
        if self.completed {
            Some("completed")
        } else if self.cancelled {
            Some("been cancelled")
        } else if self.abandoned.is_some() {
            Some("been abandoned")
        } else {
            None
        }
    }

    pub fn next_step(&self) -> JobStep {
        let Some(started) = &self.started else {
            return JobStep::Abandon("the job has no JobStarted event".into());
        };
        if self.ended() {
            return JobStep::Ended;
        }
        if self.members.len() as u64 != started.member_count {
            return JobStep::Abandon(format!(
                "the recorded member list holds {} of {} emails",
                self.members.len(),
                started.member_count
            ));
        }
        let from = (self.next_index as usize).min(self.members.len());
        let size = started.batch_size.max(1) as usize;
        let to = (from + size).min(self.members.len());
        let batch = self.next_index / size as u64;
        if self.cancel_requested {
            return JobStep::Stop { batch, members: from..to };
        }
        if from >= self.members.len() {
            return JobStep::Complete;
        }
        JobStep::Batch { batch, members: from..to }
    }
}

/// Asks job `job_id` to stop (CancelJob). A job that was already asked
/// needs nothing more: the answer is no event. `reason` is an optional note.
pub fn decide_cancel(job: &JobState, job_id: &str, reason: &str) -> Result<Vec<Event>, DomainError> {
    if reason.len() > MAX_TEXT_FIELD_LEN || reason.chars().any(char::is_control) {
        return Err(DomainError::InvalidValue(format!(
            "reason: at most {MAX_TEXT_FIELD_LEN} bytes, no control characters"
        )));
    }
    if job.started.is_none() {
        return Err(DomainError::JobNotFound(job_id.to_owned()));
    }
    if let Some(how) = job.end() {
        return Err(DomainError::JobEnded { id: job_id.to_owned(), how });
    }
    if job.cancel_requested {
        return Ok(Vec::new());
    }
    Ok(vec![Event::JobCancelRequested(JobCancelRequested { reason: reason.to_owned() })])
}

/// The end of a job that was asked to stop: what it did until then.
pub fn decide_cancelled(job: &JobState) -> Event {
    Event::JobCancelled(JobCancelled { next_index: job.next_index, changed: job.changed, skipped: job.skipped })
}

/// One member as a batch sees it.
#[derive(Clone, Copy, Debug)]
pub struct MemberState<'a> {
    pub contact: Option<&'a Contact>,
    /// The contact's last event was appended by this very batch (an earlier
    /// attempt landed): count it as changed, change nothing.
    pub done_by_this_batch: bool,
}

/// Decides one batch: the events for each member (empty: nothing to do) and
/// the job's progress after it.
pub fn decide_batch(
    job: &JobState,
    members: &[MemberState<'_>],
    now: Timestamp,
) -> Result<(Vec<Vec<Event>>, JobProgressed), DomainError> {
    let started = job.started.as_ref().ok_or_else(|| DomainError::InvalidValue("the job has not started".into()))?;
    let mut changed = job.changed;
    let mut skipped = job.skipped;
    let mut out = Vec::with_capacity(members.len());
    for m in members {
        if m.done_by_this_batch {
            changed += 1;
            out.push(Vec::new());
            continue;
        }
        // A member that refuses the change (say, a custom field past the
        // limit) is skipped rather than stopping the job for everyone.
        let events = decide_member(&started.kind, &started.job_id, m.contact, now).unwrap_or_default();
        if events.is_empty() {
            skipped += 1;
        } else {
            changed += 1;
        }
        out.push(events);
    }
    let progress = JobProgressed { next_index: job.next_index + members.len() as u64, changed, skipped };
    Ok((out, progress))
}

/// What a job does to one member; nothing for a contact that is gone.
pub fn decide_member(
    kind: &JobKind,
    job_id: &str,
    contact: Option<&Contact>,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    let Some(contact) = contact else { return Ok(Vec::new()) };
    match kind {
        JobKind::MassUpdate { field, value } => {
            let patch = mass_update_patch(field, value, &contact.email)?;
            decide_contact(Some(contact), ContactCommand::Upsert(patch), now)
        }
        JobKind::DeleteContacts => Ok(vec![Event::ContactDeleted(ContactDeleted { email: contact.email.clone() })]),
        JobKind::ResetScores { reason } => {
            let mut after = contact.clone();
            after.score = Some(RESET_SCORE);
            after.updated_at = now;
            Ok(vec![Event::ScoreReset(ScoreReset {
                contact: after,
                previous_score: contact.score,
                reason: reason.clone(),
                job_id: job_id.to_owned(),
            })])
        }
    }
}

/// The end of a job whose every member is done.
pub fn decide_complete(job: &JobState) -> Event {
    Event::JobCompleted(JobCompleted { changed: job.changed, skipped: job.skipped })
}

pub fn decide_abandon(reason: String) -> Event {
    Event::JobAbandoned(JobAbandoned { reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    fn segment() -> SegmentDef {
        SegmentDef {
            id: 7,
            name: "germany".into(),
            criteria: "country = \"DE\"".into(),
            version: 1,
            created_at: t(0),
            updated_at: t(0),
            legacy_list: None,
            topics: Default::default(),
            bulk_parent: None,
            cloned_from: None,
        }
    }

    fn contact(email: &str, score: Option<i64>) -> Contact {
        Contact { score, ..Contact::new(Email::parse(email).unwrap(), t(0)) }
    }

    fn reset(reason: &str, agree: bool) -> JobRequest {
        JobRequest { kind: JobKind::ResetScores { reason: reason.into() }, confirmed: agree }
    }

    fn started(request: JobRequest, members: usize, batch_size: u32) -> JobState {
        let segment = segment();
        let start = JobStart {
            job_id: "j1",
            request,
            segment: &segment,
            position: 42,
            clock: t(5),
            members: (0..members).map(|i| format!("c{i}@x.com")).collect(),
            batch_size,
        };
        let mut state = JobState::default();
        for e in decide_start(&JobState::default(), start).unwrap() {
            state.apply(&e);
        }
        state
    }

    #[test]
    fn given_a_reset_without_reason_or_agreement_when_started_then_refused_naming_the_flag() {
        let e = check_job_request(&reset("  ", true)).unwrap_err();
        assert!(matches!(&e, DomainError::InvalidValue(m) if m.starts_with("reason")), "{e}");
        let e = check_job_request(&reset("GDPR request", false)).unwrap_err();
        assert!(matches!(&e, DomainError::NotConfirmed(m) if m.starts_with("agree")), "{e}");
        assert_eq!(check_job_request(&reset("GDPR request", true)), Ok(()));
    }

    #[test]
    fn given_a_delete_without_confirm_when_started_then_refused() {
        let req = JobRequest { kind: JobKind::DeleteContacts, confirmed: false };
        let e = check_job_request(&req).unwrap_err();
        assert!(matches!(&e, DomainError::NotConfirmed(m) if m.starts_with("confirm")), "{e}");
    }

    #[test]
    fn given_a_mass_update_with_a_bad_field_or_value_when_started_then_refused_naming_it() {
        let mass = |f: &str, v: &str| JobRequest {
            kind: JobKind::MassUpdate { field: f.into(), value: v.into() },
            confirmed: false,
        };
        for (f, v, named) in [("shoe_size", "4", "field"), ("email", "a@b.com", "field"), ("age", "old", "value")] {
            let e = check_job_request(&mass(f, v)).unwrap_err();
            assert!(matches!(&e, DomainError::InvalidValue(m) if m.starts_with(named)), "{f}={v}: {e}");
        }
        assert!(check_job_request(&mass("age", "200")).is_err());
        assert_eq!(check_job_request(&mass("lifecycle_stage", "customer")), Ok(()));
    }

    #[test]
    fn given_members_when_a_job_starts_then_the_list_is_recorded_in_chunks_with_its_position() {
        let state = started(reset("r", true), MEMBERS_PER_EVENT + 3, 100);
        let s = state.started.as_ref().unwrap();
        assert_eq!((s.position, s.member_count, s.segment_id), (42, MEMBERS_PER_EVENT as u64 + 3, 7));
        assert_eq!(state.members.len(), MEMBERS_PER_EVENT + 3);
        assert_eq!(state.members[MEMBERS_PER_EVENT + 2], format!("c{}@x.com", MEMBERS_PER_EVENT + 2));
        assert_eq!(state.next_step(), JobStep::Batch { batch: 0, members: 0..100 });
    }

    #[test]
    fn given_a_started_job_when_started_again_then_refused() {
        let state = started(reset("r", true), 1, 10);
        let segment = segment();
        let again = JobStart {
            job_id: "j1",
            request: reset("r", true),
            segment: &segment,
            position: 1,
            clock: t(0),
            members: vec![],
            batch_size: 10,
        };
        assert!(decide_start(&state, again).is_err());
    }

    #[test]
    fn given_a_torn_member_list_when_resumed_then_the_job_is_abandoned() {
        let mut state = started(reset("r", true), 10, 4);
        state.members.truncate(5);
        assert!(matches!(state.next_step(), JobStep::Abandon(_)));
    }

    #[test]
    fn given_a_reset_batch_when_decided_then_each_member_keeps_its_previous_score_and_gone_ones_are_skipped() {
        let state = started(reset("GDPR", true), 3, 3);
        let a = contact("c0@x.com", Some(120));
        let b = contact("c2@x.com", None);
        let members = [
            MemberState { contact: Some(&a), done_by_this_batch: false },
            MemberState { contact: None, done_by_this_batch: false },
            MemberState { contact: Some(&b), done_by_this_batch: false },
        ];
        let (events, progress) = decide_batch(&state, &members, t(9)).unwrap();
        let Event::ScoreReset(r) = &events[0][0] else { panic!("{events:?}") };
        assert_eq!(
            (r.previous_score, r.contact.score, r.reason.as_str(), r.job_id.as_str()),
            (Some(120), Some(0), "GDPR", "j1")
        );
        assert!(events[1].is_empty());
        let Event::ScoreReset(r) = &events[2][0] else { panic!("{events:?}") };
        assert_eq!(r.previous_score, None);
        assert_eq!(progress, JobProgressed { next_index: 3, changed: 2, skipped: 1 });
    }

    #[test]
    fn given_a_batch_that_already_landed_when_decided_again_then_nothing_changes_twice() {
        let state = started(reset("r", true), 2, 2);
        let a = contact("c0@x.com", Some(0));
        let members = [
            MemberState { contact: Some(&a), done_by_this_batch: true },
            MemberState { contact: Some(&a), done_by_this_batch: true },
        ];
        let (events, progress) = decide_batch(&state, &members, t(9)).unwrap();
        assert!(events.iter().all(Vec::is_empty));
        assert_eq!(progress.changed, 2);
    }

    #[test]
    fn given_progress_when_every_member_is_done_then_the_job_completes_and_ends() {
        let mut state = started(reset("r", true), 5, 2);
        state.apply(&Event::JobProgressed(JobProgressed { next_index: 4, changed: 3, skipped: 1 }));
        assert_eq!(state.next_step(), JobStep::Batch { batch: 2, members: 4..5 });
        state.apply(&Event::JobProgressed(JobProgressed { next_index: 5, changed: 4, skipped: 1 }));
        assert_eq!(state.next_step(), JobStep::Complete);
        state.apply(&decide_complete(&state));
        assert_eq!(state.next_step(), JobStep::Ended);
        assert_eq!((state.changed, state.skipped), (4, 1));
    }

    #[test]
    fn given_a_mass_update_when_a_member_already_has_the_value_then_it_is_skipped() {
        let kind = JobKind::MassUpdate { field: "city".into(), value: "Bonn".into() };
        let mut c = contact("c0@x.com", None);
        let events = decide_member(&kind, "j", Some(&c), t(1)).unwrap();
        let [Event::ContactUpdated(u)] = events.as_slice() else { panic!("{events:?}") };
        assert_eq!(u.contact.city, "Bonn");
        c.city = "Bonn".into();
        assert!(decide_member(&kind, "j", Some(&c), t(1)).unwrap().is_empty());
    }

    #[test]
    fn given_a_delete_job_when_a_member_exists_then_it_is_deleted() {
        let c = contact("c0@x.com", None);
        let events = decide_member(&JobKind::DeleteContacts, "j", Some(&c), t(1)).unwrap();
        assert_eq!(events, vec![Event::ContactDeleted(ContactDeleted { email: "c0@x.com".into() })]);
    }

    #[test]
    fn given_a_running_job_when_cancelled_then_the_request_is_recorded_once() {
        let mut state = started(reset("r", true), 5, 2);
        let events = decide_cancel(&state, "j1", "wrong segment").unwrap();
        assert_eq!(events, vec![Event::JobCancelRequested(JobCancelRequested { reason: "wrong segment".into() })]);
        state.apply(&events[0]);
        assert_eq!(decide_cancel(&state, "j1", "again").unwrap(), Vec::<Event>::new(), "asked once is enough");
    }

    #[test]
    fn given_no_job_or_an_ended_one_when_cancelled_then_refused_saying_why() {
        assert_eq!(decide_cancel(&JobState::default(), "nope", ""), Err(DomainError::JobNotFound("nope".into())));
        let mut state = started(reset("r", true), 1, 1);
        state.apply(&decide_complete(&state));
        let e = decide_cancel(&state, "j1", "").unwrap_err();
        assert_eq!(e, DomainError::JobEnded { id: "j1".into(), how: "completed" });
        let mut state = started(reset("r", true), 1, 1);
        state.apply(&decide_abandon("torn".into()));
        assert!(matches!(decide_cancel(&state, "j1", ""), Err(DomainError::JobEnded { how: "been abandoned", .. })));
        let e = decide_cancel(&started(reset("r", true), 1, 1), "j1", "a\u{7}b").unwrap_err();
        assert!(matches!(&e, DomainError::InvalidValue(m) if m.starts_with("reason")), "{e}");
    }

    #[test]
    fn given_a_cancel_request_when_the_runner_steps_then_it_stops_before_the_next_batch_with_the_counts_so_far() {
        let mut state = started(reset("r", true), 5, 2);
        state.apply(&Event::JobProgressed(JobProgressed { next_index: 2, changed: 1, skipped: 1 }));
        state.apply(&decide_cancel(&state, "j1", "").unwrap()[0]);
        assert_eq!(state.next_step(), JobStep::Stop { batch: 1, members: 2..4 });
        let cancelled = decide_cancelled(&state);
        assert_eq!(cancelled, Event::JobCancelled(JobCancelled { next_index: 2, changed: 1, skipped: 1 }));
        state.apply(&cancelled);
        assert!(state.ended());
        assert_eq!(state.next_step(), JobStep::Ended, "a cancelled job never resumes");
        assert!(matches!(decide_cancel(&state, "j1", ""), Err(DomainError::JobEnded { how: "been cancelled", .. })));
    }

    #[test]
    fn given_every_member_done_when_cancel_was_asked_before_completion_then_the_job_stops_as_cancelled() {
        let mut state = started(reset("r", true), 2, 2);
        state.apply(&Event::JobProgressed(JobProgressed { next_index: 2, changed: 2, skipped: 0 }));
        state.apply(&decide_cancel(&state, "j1", "").unwrap()[0]);
        assert_eq!(state.next_step(), JobStep::Stop { batch: 1, members: 2..2 });
    }

    #[test]
    fn given_members_when_a_mass_update_is_previewed_then_those_with_the_value_already_are_not_affected() {
        let kind = JobKind::MassUpdate { field: "city".into(), value: "Bonn".into() };
        let mut members: Vec<Contact> = (0..30).map(|i| contact(&format!("c{i}@x.com"), None)).collect();
        members[0].city = "Bonn".into();
        members[5].city = "bonn".into();
        let preview = decide_preview(&kind, &members, t(1));
        assert_eq!((preview.members, preview.affected), (30, 29), "\"bonn\" is not \"Bonn\": it changes");
        assert_eq!(preview.sample.len(), PREVIEW_SAMPLE);
        assert_eq!(&preview.sample[..3], &[1, 2, 3]);
    }

    #[test]
    fn given_members_when_a_delete_or_reset_is_previewed_then_every_member_is_affected() {
        let members = [contact("a@x.com", Some(5)), contact("b@x.com", None)];
        let delete = decide_preview(&JobKind::DeleteContacts, &members, t(1));
        assert_eq!((delete.members, delete.affected, delete.sample), (2, 2, vec![0, 1]));
        let reset = decide_preview(&JobKind::ResetScores { reason: "r".into() }, &members, t(1));
        assert_eq!(reset.affected, 2);
    }

    #[test]
    fn given_a_dry_run_without_confirmation_when_checked_then_only_the_request_itself_is_checked() {
        assert_eq!(check_preview_request(&JobKind::DeleteContacts), Ok(()));
        assert_eq!(check_preview_request(&JobKind::ResetScores { reason: "GDPR".into() }), Ok(()));
        let e = check_preview_request(&JobKind::ResetScores { reason: " ".into() }).unwrap_err();
        assert!(matches!(&e, DomainError::InvalidValue(m) if m.starts_with("reason")), "{e}");
        let e = check_preview_request(&JobKind::MassUpdate { field: "age".into(), value: "old".into() }).unwrap_err();
        assert!(matches!(&e, DomainError::InvalidValue(m) if m.starts_with("value")), "{e}");
    }

    #[test]
    fn batch_command_ids_name_job_and_batch() {
        assert_eq!(batch_command_id("abc", 3), "job:abc:3");
    }
}
