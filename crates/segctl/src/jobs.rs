//! Jobs (mass update, delete a segment's contacts, reset scores), following
//! them to their end, and the auditors' view of score resets.

use crate::client::{Api, command_id, with_segment};
use crate::{Output, emit, emit_json};
use segmentd_proto::v1 as pb;
use serde_json::json;

/// What to start, with the segment it runs over.
#[derive(Debug)]
pub(crate) enum Start {
    MassUpdate { field: String, value: String },
    DeleteContacts { confirm: bool },
    ResetScores { reason: String, agree: bool },
}

/// How to run a job command.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    pub(crate) dry_run: bool,
    pub(crate) expected_position: Option<u64>,
    /// Follow the job to its end.
    pub(crate) wait: bool,
}

/// Starts a job over `segment` (or previews it); with `wait`, follows it
/// to its end.
pub(crate) async fn start(
    api: &Api,
    out: Output,
    segment: &str,
    job_id: Option<String>,
    what: Start,
    run: Run,
) -> anyhow::Result<()> {
    let command_id = job_id.unwrap_or_else(command_id);
    let what = &what;
    let Run { dry_run, expected_position, wait } = run;
    let (reply, _) = with_segment(segment, |r| {
        let command_id = command_id.clone();
        async move {
            match &what {
                Start::MassUpdate { field, value } => {
                    api.mass_update(pb::MassUpdateRequest {
                        command_id,
                        segment: Some(r),
                        field: field.clone(),
                        value: value.clone(),
                        dry_run,
                        expected_position,
                    })
                    .await
                }
                Start::DeleteContacts { confirm } => {
                    api.delete_segment_contacts(pb::DeleteSegmentContactsRequest {
                        command_id,
                        segment: Some(r),
                        confirm: *confirm,
                        dry_run,
                        expected_position,
                    })
                    .await
                }
                Start::ResetScores { reason, agree } => {
                    api.reset_scores(pb::ResetScoresRequest {
                        command_id,
                        segment: Some(r),
                        reason: reason.clone(),
                        agree: *agree,
                        dry_run,
                        expected_position,
                    })
                    .await
                }
            }
        }
    })
    .await?;
    if let Some(preview) = &reply.dry_run {
        return print_dry_run(out, what, preview);
    }
    let job = reply.job.unwrap_or_default();
    if wait {
        return watch(api, out, Some(job.id), reply.sequence).await;
    }
    print_job(out, &job)
}

fn start_name(what: &Start) -> &'static str {
    match what {
        Start::MassUpdate { .. } => "mass-update",
        Start::DeleteContacts { .. } => "delete-contacts",
        Start::ResetScores { .. } => "reset-scores",
    }
}

fn print_dry_run(out: Output, what: &Start, d: &pb::DryRun) -> anyhow::Result<()> {
    let sample: Vec<&str> = d.sample.iter().map(|c| c.email.as_str()).collect();
    match out {
        Output::Json => emit_json(&json!({
            "dry_run": start_name(what),
            "segment_id": d.segment_id,
            "segment_name": d.segment_name,
            "criteria": d.criteria_text,
            "position": d.position,
            "members": d.members,
            "affected": d.affected,
            "sample": sample,
        }))?,
        Output::Text => {
            let mut text = format!(
                "dry run of {} on segment {} ({}) at position {}; nothing was recorded
members:   {}
affected:  {}
",
                start_name(what),
                d.segment_name,
                d.segment_id,
                d.position,
                d.members,
                d.affected
            );
            if !sample.is_empty() {
                text.push_str(&format!(
                    "first {} affected:
",
                    sample.len()
                ));
                for email in &sample {
                    text.push_str(&format!("  {email}\n"));
                }
            }
            text.push_str(&format!(
                "to run exactly this, repeat the command without --dry-run and with --expected-position {}\n",
                d.position
            ));
            emit(&text)?;
        }
    }
    Ok(())
}

/// Asks a job to stop and prints it as it ended.
pub(crate) async fn cancel(api: &Api, out: Output, id: String, reason: String) -> anyhow::Result<()> {
    let reply = api.cancel_job(pb::CancelJobRequest { command_id: command_id(), job_id: id, reason }).await?;
    print_job(out, &reply.job.unwrap_or_default())
}

pub(crate) async fn get(api: &Api, out: Output, id: String, min_sequence: u64) -> anyhow::Result<()> {
    let job = api.get_job(pb::GetJobRequest { job_id: id, min_sequence }).await?;
    print_job(out, &job)
}

/// Prints each state the server reports until the job ends (or, for every
/// job, until interrupted).
pub(crate) async fn watch(api: &Api, out: Output, id: Option<String>, min_sequence: u64) -> anyhow::Result<()> {
    let mut stream =
        api.watch_jobs(pb::WatchJobsRequest { job_id: id.clone().unwrap_or_default(), min_sequence }).await?;
    let mut last = None;
    while let Some(job) = stream.message().await? {
        match out {
            Output::Text => emit(&format!("{}\n", progress_line(&job)))?,
            Output::Json => emit_json(&job_json(&job))?,
        }
        last = Some(job);
    }
    if let (Some(id), Some(job)) = (id, last)
        && job.state == pb::JobState::Abandoned as i32
    {
        anyhow::bail!("job {id} was abandoned: {}", job.abandon_reason);
    }
    Ok(())
}

fn kind_name(kind: i32) -> &'static str {
    match pb::JobKind::try_from(kind) {
        Ok(pb::JobKind::MassUpdate) => "mass_update",
        Ok(pb::JobKind::DeleteContacts) => "delete_contacts",
        Ok(pb::JobKind::ResetScores) => "reset_scores",
        _ => "unknown",
    }
}

fn state_name(state: i32) -> &'static str {
    match pb::JobState::try_from(state) {
        Ok(pb::JobState::Running) => "running",
        Ok(pb::JobState::Completed) => "completed",
        Ok(pb::JobState::Abandoned) => "abandoned",
        Ok(pb::JobState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

fn progress_line(job: &pb::Job) -> String {
    format!(
        "{} {}: {} {}/{} (changed {}, skipped {})",
        job.id,
        kind_name(job.kind),
        state_name(job.state),
        job.processed,
        job.total,
        job.changed,
        job.skipped
    )
}

fn job_json(job: &pb::Job) -> serde_json::Value {
    json!({
        "id": job.id,
        "kind": kind_name(job.kind),
        "state": state_name(job.state),
        "segment_id": job.segment_id,
        "segment_name": job.segment_name,
        "criteria": job.criteria_text,
        "position": job.position,
        "total": job.total,
        "processed": job.processed,
        "changed": job.changed,
        "skipped": job.skipped,
        "actor": job.actor,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "field": job.field,
        "value": job.value,
        "reason": job.reason,
        "abandon_reason": job.abandon_reason,
        "sequence": job.sequence,
        "cancel_requested": job.cancel_requested,
        "cancelled_by": job.cancelled_by,
        "cancel_requested_at": job.cancel_requested_at,
        "cancel_reason": job.cancel_reason,
    })
}

fn print_job(out: Output, job: &pb::Job) -> anyhow::Result<()> {
    match out {
        Output::Json => emit_json(&job_json(job))?,
        Output::Text => {
            let mut text = format!(
                "job:       {}\nkind:      {}\nstate:     {}\nsegment:   {} ({})\nposition:  {}\nprogress:  {}/{} (changed {}, skipped {})\nactor:     {}\nstarted:   {}\n",
                job.id,
                kind_name(job.kind),
                state_name(job.state),
                job.segment_name,
                job.segment_id,
                job.position,
                job.processed,
                job.total,
                job.changed,
                job.skipped,
                job.actor,
                job.started_at,
            );
            if !job.finished_at.is_empty() {
                text.push_str(&format!("finished:  {}\n", job.finished_at));
            }
            if !job.field.is_empty() {
                text.push_str(&format!("set:       {} = {:?}\n", job.field, job.value));
            }
            if !job.reason.is_empty() {
                text.push_str(&format!("reason:    {}\n", job.reason));
            }
            if !job.abandon_reason.is_empty() {
                text.push_str(&format!("abandoned: {}\n", job.abandon_reason));
            }
            if job.cancel_requested {
                let note =
                    if job.cancel_reason.is_empty() { String::new() } else { format!(": {}", job.cancel_reason) };
                text.push_str(&format!(
                    "cancel:    asked by {} at {}{note}\n",
                    job.cancelled_by, job.cancel_requested_at
                ));
            }
            emit(&text)?;
        }
    }
    Ok(())
}

/// Filters of `audit score-resets`.
#[derive(clap::Args, Debug)]
pub(crate) struct ResetFilter {
    /// Resets started at or after this RFC 3339 instant.
    #[arg(long, value_name = "RFC3339")]
    since: Option<String>,
    /// Resets started before this RFC 3339 instant.
    #[arg(long, value_name = "RFC3339")]
    until: Option<String>,
    /// Only resets of this segment (by the name it had then, or its id).
    #[arg(long, value_name = "NAME|ID")]
    segment: Option<String>,
    /// Only resets by this actor (the API key's name, e.g. acme/key-1).
    #[arg(long)]
    actor: Option<String>,
}

fn summary_json(r: &pb::ScoreResetSummary) -> serde_json::Value {
    json!({
        "job_id": r.job_id,
        "actor": r.actor,
        "time": r.time,
        "reason": r.reason,
        "segment_id": r.segment_id,
        "segment_name": r.segment_name,
        "affected": r.affected,
        "state": state_name(r.state),
        "position": r.position,
    })
}

pub(crate) async fn list_resets(api: &Api, out: Output, filter: ResetFilter) -> anyhow::Result<()> {
    use pb::segment_ref::By;
    // A deleted segment is no longer found by name, so the filter is sent
    // as given: digits as an id, anything else as the name it had.
    let segment = filter.segment.map(|s| match s.trim().parse::<u64>() {
        Ok(id) if id > 0 => pb::SegmentRef { by: Some(By::Id(id)) },
        _ => pb::SegmentRef { by: Some(By::Name(s)) },
    });
    let reply = api
        .list_score_resets(pb::ListScoreResetsRequest {
            since: filter.since.unwrap_or_default(),
            until: filter.until.unwrap_or_default(),
            segment,
            actor: filter.actor.unwrap_or_default(),
            min_sequence: 0,
        })
        .await?;
    match out {
        Output::Json => emit_json(&json!({
            "resets": reply.resets.iter().map(summary_json).collect::<Vec<_>>(),
            "sequence": reply.sequence,
        }))?,
        Output::Text => {
            let mut text = String::from("JOB\tTIME\tACTOR\tSEGMENT\tAFFECTED\tSTATE\tREASON\n");
            for r in &reply.resets {
                text.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    r.job_id,
                    r.time,
                    r.actor,
                    r.segment_name,
                    r.affected,
                    state_name(r.state),
                    r.reason
                ));
            }
            emit(&text)?;
        }
    }
    Ok(())
}

/// One reset with every affected contact (0 = all) and its previous score.
pub(crate) async fn show_reset(api: &Api, out: Output, id: String, limit: u64) -> anyhow::Result<()> {
    let mut token = String::new();
    let mut printed = 0u64;
    let mut first = true;
    loop {
        let page = api
            .get_score_reset(pb::GetScoreResetRequest {
                job_id: id.clone(),
                page_size: 1000,
                page_token: token,
                min_sequence: 0,
            })
            .await?;
        let mut text = String::new();
        if first {
            let r = page.reset.clone().unwrap_or_default();
            match out {
                Output::Json => text.push_str(&format!("{}\n", summary_json(&r))),
                Output::Text => text.push_str(&format!(
                    "score reset {} by {} at {}\nsegment: {} ({})\nreason:  {}\naffected: {} ({})\nEMAIL\tPREVIOUS_SCORE\n",
                    r.job_id,
                    r.actor,
                    r.time,
                    r.segment_name,
                    r.segment_id,
                    r.reason,
                    r.affected,
                    state_name(r.state)
                )),
            }
            first = false;
        }
        for c in &page.contacts {
            if limit != 0 && printed >= limit {
                break;
            }
            let previous = c.previous_score.map(|s| s.to_string());
            match out {
                Output::Json => {
                    text.push_str(&format!("{}\n", json!({"email": c.email, "previous_score": c.previous_score})))
                }
                Output::Text => text.push_str(&format!("{}\t{}\n", c.email, previous.as_deref().unwrap_or("-"))),
            }
            printed += 1;
        }
        emit(&text)?;
        if page.next_page_token.is_empty() || (limit != 0 && printed >= limit) {
            return Ok(());
        }
        token = page.next_page_token;
    }
}
