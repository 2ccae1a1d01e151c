//! Jobs and the score-reset audit as queries see them: each job's state and
//! counts (GetJob, WatchJobs) and, per score reset, every affected contact
//! with its previous score (ListScoreResets, GetScoreReset).
//!
//! Folded from the job aggregates' events and the `ScoreReset` contact
//! events, in the same atomic batch as everything else the projector writes.

use segmentd_domain::event::{JobKind, ScoreReset};
use segmentd_domain::{Event, Timestamp};
use segmentd_log::{Recorded, Seq};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    Running,
    Completed,
    Abandoned,
    /// Stopped on request (CancelJob) before its end.
    Cancelled,
}

/// One job as the read model knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    pub id: String,
    pub kind: JobKind,
    pub segment_id: u64,
    pub segment_name: String,
    pub criteria: String,
    /// The log sequence the member list was taken at.
    pub position: Seq,
    pub clock: Timestamp,
    /// Who started it (the Envelope's actor).
    pub actor: String,
    pub started_at: Timestamp,
    pub total: u64,
    /// Members worked through so far.
    pub processed: u64,
    pub changed: u64,
    pub skipped: u64,
    pub status: JobStatus,
    /// Why it was abandoned; empty otherwise.
    pub abandon_reason: String,
    pub finished_at: Option<Timestamp>,
    /// Who asked the job to stop, and their note; set while it stops and
    /// after it has stopped.
    pub cancel: Option<CancelRequest>,
    /// The sequence of the job's last event.
    pub last_seq: Seq,
}

/// A request to stop a job (`JobCancelRequested`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    pub actor: String,
    pub at: Timestamp,
    pub reason: String,
}

impl JobView {
    pub fn ended(&self) -> bool {
        self.status != JobStatus::Running
    }

    /// The reason of a score reset.
    pub fn reset_reason(&self) -> Option<&str> {
        match &self.kind {
            JobKind::ResetScores { reason } => Some(reason),
            _ => None,
        }
    }
}

/// A contact a score reset touched, and its score before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedContact {
    pub email: String,
    pub previous_score: Option<i64>,
}

/// A change to a job, sent to watchers once it is applied.
#[derive(Clone, Debug)]
pub struct JobNotice {
    pub org: String,
    pub job: JobView,
}

/// Folds a job event into `job` (`None` before its start). Returns whether
/// the job changed.
pub(crate) fn apply_job_event(job: &mut Option<JobView>, rec: &Recorded) -> bool {
    let env = &rec.envelope;
    match (&env.event, job.as_mut()) {
        (Event::JobStarted(e), None) => {
            *job = Some(JobView {
                id: e.job_id.clone(),
                kind: e.kind.clone(),
                segment_id: e.segment_id,
                segment_name: e.segment_name.clone(),
                criteria: e.criteria.clone(),
                position: e.position,
                clock: e.clock,
                actor: env.actor.clone(),
                started_at: env.time,
                total: e.member_count,
                processed: 0,
                changed: 0,
                skipped: 0,
                status: JobStatus::Running,
                abandon_reason: String::new(),
                finished_at: None,
                cancel: None,
                last_seq: rec.seq,
            });
            true
        }
        (Event::JobProgressed(e), Some(j)) => {
            j.processed = e.next_index;
            j.changed = e.changed;
            j.skipped = e.skipped;
            j.last_seq = rec.seq;
            true
        }
        (Event::JobCompleted(e), Some(j)) => {
            j.processed = j.total;
            j.changed = e.changed;
            j.skipped = e.skipped;
            j.status = JobStatus::Completed;
            j.finished_at = Some(env.time);
            j.last_seq = rec.seq;
            true
        }
        (Event::JobAbandoned(e), Some(j)) => {
            j.status = JobStatus::Abandoned;
            j.abandon_reason = e.reason.clone();
            j.finished_at = Some(env.time);
            j.last_seq = rec.seq;
            true
        }
        (Event::JobCancelRequested(e), Some(j)) => {
            j.cancel = Some(CancelRequest { actor: env.actor.clone(), at: env.time, reason: e.reason.clone() });
            j.last_seq = rec.seq;
            true
        }
        (Event::JobCancelled(e), Some(j)) => {
            j.processed = e.next_index;
            j.changed = e.changed;
            j.skipped = e.skipped;
            j.status = JobStatus::Cancelled;
            j.finished_at = Some(env.time);
            j.last_seq = rec.seq;
            true
        }
        _ => false,
    }
}

pub(crate) fn affected(e: &ScoreReset) -> AffectedContact {
    AffectedContact { email: e.contact.email.clone(), previous_score: e.previous_score }
}
