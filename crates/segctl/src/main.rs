//! `segctl`, the command-line client of segmentd: import contacts from CSV,
//! manage segments (legacy imports, clones, topics, bulk segments), count
//! and list their members, export them to CSV, JSON lines or Excel
//! files, save them as static lists, create campaigns,
//! preview criteria, run jobs (mass update, delete contacts, reset scores)
//! and follow them, read the score-reset audit, record activity, replay the
//! event history and show a segment's or a contact's history.
//!
//! **Must not depend on** any segmentd server crate (domain, log, readmodel,
//! server): it speaks the wire API only, through the generated gRPC client
//! in segmentd-proto, exactly like any other client of the service.

mod client;
mod events;
mod explain;
mod export;
mod import;
mod jobs;
mod ops;
mod output;
mod versions;

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use client::{Api, command_id, with_segment};
use output::{
    ContactPages, DEFAULT_FIELDS, contact_json, contact_row, contact_text, history_text, segment_json, segment_text,
    segments_table,
};
use segmentd_proto::v1 as pb;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "segctl", version, about = "The segmentd client: contacts, segments, members, event history", long_about = None)]
struct Cli {
    /// The segmentd gRPC endpoint.
    #[arg(long, global = true, env = "SEGCTL_SERVER", default_value = "http://127.0.0.1:50051", value_name = "URL")]
    server: String,

    /// API key, sent as `x-api-key` metadata; it selects the organisation.
    #[arg(long, global = true, env = "SEGCTL_API_KEY", hide_env_values = true, value_name = "KEY")]
    api_key: Option<String>,

    /// Output format: text for people, json for scripts.
    #[arg(long, global = true, env = "SEGCTL_OUTPUT", value_enum, default_value_t = Output::Text)]
    output: Output,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Import and look up contacts.
    #[command(subcommand)]
    Contacts(ContactsCommand),
    /// Create, change, delete and query segments.
    #[command(subcommand)]
    Segments(SegmentsCommand),
    /// Follow jobs (mass update, delete contacts, reset scores).
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Score resets for auditors: who reset whose score, when and why.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Replay the organisation's event history in log order, as JSON lines or CSV.
    Events(events::EventsArgs),
    /// Create and list topics (assign them with `segments assign-topics`).
    #[command(subcommand)]
    Topics(ops::TopicsCommand),
    /// Static lists saved from segments (`segments save-as-list`).
    #[command(subcommand)]
    Lists(ops::ListsCommand),
    /// Campaigns for segments: create, list, recipients.
    #[command(subcommand)]
    Campaigns(ops::CampaignsCommand),
    /// Count and show the contacts criteria would match, without saving a segment.
    Preview {
        /// Criteria in the text form, e.g. 'country = "DE" and age >= 30'.
        #[arg(long)]
        criteria: String,
        /// Contacts to show (0: just the count).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1000))]
        limit: u32,
        #[command(flatten)]
        read: ReadOptions,
        /// Columns to print (comma-separated) [default: email,first_name,last_name,country].
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ContactsCommand {
    /// Upsert contacts from a CSV file with a header: `email` is the key,
    /// every other column a field (first_name, age, custom.plan, ...).
    Import {
        #[arg(value_name = "FILE.csv")]
        file: PathBuf,
        /// Contacts per UpsertContacts request.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=i64::from(import::MAX_BATCH)))]
        batch_size: u32,
    },
    /// Show one contact.
    Get {
        email: String,
        /// Wait until the server has applied this log sequence.
        #[arg(long, default_value_t = 0)]
        min_sequence: u64,
    },
    /// Every event of one contact, oldest first: who changed what, from what to what.
    History { email: String },
    /// Record what a contact did; updates last_opened_at, purchase_count,
    /// total_spent and last_purchase_at.
    Activity {
        email: String,
        #[arg(long, value_enum)]
        kind: ActivityKind,
        /// The purchase amount, e.g. 49.90 (purchase only).
        #[arg(long, required_if_eq("kind", "purchase"))]
        amount: Option<String>,
        /// The link clicked (clicked only).
        #[arg(long)]
        url: Option<String>,
        /// When it happened (RFC 3339); default now.
        #[arg(long, value_name = "RFC3339")]
        time: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ActivityKind {
    Opened,
    Clicked,
    Purchase,
}

#[derive(Subcommand, Debug)]
enum JobsCommand {
    /// Show a job's state and counts.
    Get {
        #[arg(value_name = "JOB_ID")]
        id: String,
        /// Wait until the server has applied this log sequence.
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_sequence: u64,
    },
    /// Print a job's progress until it ends; without an id, every job of the
    /// organisation until interrupted.
    Watch {
        #[arg(value_name = "JOB_ID")]
        id: Option<String>,
    },
    /// Stop a running job before its next batch; prints what it did.
    Cancel {
        #[arg(value_name = "JOB_ID")]
        id: String,
        /// A note kept with the job.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// List score resets, newest first.
    ScoreResets {
        #[command(flatten)]
        filter: jobs::ResetFilter,
    },
    /// One score reset with every contact it reset and the score it had.
    ScoreReset {
        #[arg(value_name = "JOB_ID")]
        id: String,
        /// Contacts to print; 0 prints all of them.
        #[arg(long, default_value_t = 0)]
        limit: u64,
    },
}

/// How a job command starts and follows its job.
#[derive(clap::Args, Debug)]
struct JobOptions {
    /// The job's id (its command id); a retry with the same id answers with
    /// the same job [default: a fresh one].
    #[arg(long, value_name = "ID")]
    job_id: Option<String>,
    /// Follow the job, printing its progress, until it ends.
    #[arg(long)]
    wait: bool,
    /// Only show how many contacts the job would change, with a sample and
    /// the position it saw; record nothing.
    #[arg(long, conflicts_with = "wait")]
    dry_run: bool,
    /// The position a dry run printed: refuse to run if the segment's
    /// members changed since.
    #[arg(long, value_name = "N", conflicts_with = "dry_run")]
    expected_position: Option<u64>,
}

impl JobOptions {
    fn run(&self) -> jobs::Run {
        jobs::Run { dry_run: self.dry_run, expected_position: self.expected_position, wait: self.wait }
    }
}

/// The clock and consistency of a read.
#[derive(clap::Args, Debug)]
struct ReadOptions {
    /// Evaluate relative dates as of this RFC 3339 instant (default: now).
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Wait until the server has applied this log sequence (from a write).
    #[arg(long, default_value_t = 0, value_name = "N")]
    min_sequence: u64,
}

#[derive(Subcommand, Debug)]
enum SegmentsCommand {
    /// Create a segment.
    Create {
        name: String,
        /// Criteria in the text form, e.g. 'country in ("DE","FR") and age between 25 and 34'.
        #[arg(long)]
        criteria: String,
    },
    /// Rename a segment and/or give it new criteria.
    #[command(group(ArgGroup::new("change").required(true).multiple(true).args(["name", "criteria"])))]
    Update {
        #[arg(value_name = "NAME|ID")]
        segment: String,
        /// The new name.
        #[arg(long)]
        name: Option<String>,
        /// The new criteria.
        #[arg(long)]
        criteria: Option<String>,
        /// Refuse (ABORTED) unless the segment is at this version.
        #[arg(long, value_name = "N")]
        expected_version: Option<u64>,
    },
    /// Delete a segment.
    Delete {
        #[arg(value_name = "NAME|ID")]
        segment: String,
        /// Refuse (ABORTED) unless the segment is at this version.
        #[arg(long, value_name = "N")]
        expected_version: Option<u64>,
    },
    /// List the segments.
    List {
        /// Wait until the server has applied this log sequence.
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_sequence: u64,
        /// Only legacy (imported, list-level) segments.
        #[arg(long, conflicts_with = "org_level")]
        legacy: bool,
        /// Only org-level segments.
        #[arg(long)]
        org_level: bool,
        /// Only segments with this topic.
        #[arg(long, value_name = "TOPIC")]
        topic: Option<String>,
        /// Only the children of this bulk segment.
        #[arg(long, value_name = "ID")]
        bulk: Option<u64>,
    },
    /// Show one segment.
    Get {
        #[arg(value_name = "NAME|ID")]
        segment: String,
        /// Wait until the server has applied this log sequence.
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_sequence: u64,
        #[command(flatten)]
        past: PastOption,
    },
    /// Count a segment's members; text output is just the number.
    Count {
        #[arg(value_name = "NAME|ID")]
        segment: String,
        #[command(flatten)]
        read: ReadOptions,
        #[command(flatten)]
        past: PastOption,
    },
    /// Every event of one segment, oldest first: who changed it, when, from
    /// what to what. A name finds the segment that has it now, else the one
    /// that had it last (renamed or deleted).
    History {
        #[arg(value_name = "NAME|ID")]
        segment: String,
    },
    /// Set one field to one value on every member (a job).
    MassUpdate {
        #[arg(value_name = "NAME|ID")]
        segment: String,
        #[arg(long)]
        field: String,
        /// The value in the same text form as an import; "" clears the field.
        #[arg(long)]
        value: String,
        #[command(flatten)]
        job: JobOptions,
    },
    /// Delete every member from the organisation, not only from the segment (a job).
    DeleteContacts {
        #[arg(value_name = "NAME|ID")]
        segment: String,
        /// Required: the contacts are deleted from the organisation.
        #[arg(long)]
        confirm: bool,
        #[command(flatten)]
        job: JobOptions,
    },
    /// Reset every member's score to 0, recording why and each previous score (a job).
    ResetScores {
        #[arg(value_name = "NAME|ID")]
        segment: String,
        /// Why; shown to auditors.
        #[arg(long)]
        reason: String,
        /// Required: you agree that every member's score is reset.
        #[arg(long)]
        agree: bool,
        #[command(flatten)]
        job: JobOptions,
    },
    #[command(flatten)]
    Ops(ops::SegmentOps),
    #[command(flatten)]
    Versions(versions::VersionOps),
    /// Whether a contact is a member and why: the criteria tree with the
    /// contact's values and ✓/✗ per condition, and the event since when.
    #[command(group(ArgGroup::new("who").required(true).args(["contact", "contact_id"])))]
    Explain {
        #[arg(value_name = "NAME|ID")]
        segment: String,
        /// The contact's email.
        #[arg(long, value_name = "EMAIL")]
        contact: Option<String>,
        /// The contact's contact_id field instead.
        #[arg(long, value_name = "N")]
        contact_id: Option<i64>,
        /// Measure relative conditions from this RFC 3339 instant [default: now].
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
    },
    /// Write a segment's members to a file (csv, jsonl or xlsx) with the
    /// columns you choose, from one consistent snapshot, with a progress bar.
    Export(export::ExportArgs),
    /// List a segment's members, one per line (text: tab-separated; json: JSON lines).
    Members {
        #[arg(value_name = "NAME|ID")]
        segment: String,
        /// Members to print; 0 prints all of them.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Members per request [default: the limit, at most 1000].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        page_size: Option<u32>,
        /// Columns to print (comma-separated) [default: email,first_name,last_name,country].
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        #[command(flatten)]
        read: ReadOptions,
        #[command(flatten)]
        past: PastOption,
    },
}

/// Time travel: answer from the state at a point of the log's history.
#[derive(clap::Args, Debug)]
struct PastOption {
    /// A log sequence (e.g. 1200) or an RFC 3339 instant; relative dates are
    /// then measured from that point unless --at is given.
    #[arg(long, value_name = "SEQ|RFC3339")]
    as_of: Option<String>,
}

impl PastOption {
    /// Digits are a sequence; anything else is sent as a time for the
    /// server to parse (and refuse, naming the field).
    fn as_of(&self) -> Option<pb::AsOf> {
        let raw = self.as_of.as_deref()?.trim();
        let point = match raw.parse::<u64>() {
            Ok(seq) => pb::as_of::Point::Sequence(seq),
            Err(_) => pb::as_of::Point::Time(raw.to_owned()),
        };
        Some(pb::AsOf { point: Some(point) })
    }
}

/// Writes to stdout; a closed pipe (`segctl … | head`) surfaces as an
/// error that `main` treats as a quiet end.
pub(crate) fn emit(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

pub(crate) fn emit_json(value: &serde_json::Value) -> std::io::Result<()> {
    emit(&format!("{value}\n"))
}

/// `--fields`, or the default columns; blanks dropped.
fn columns(fields: &[String]) -> Vec<String> {
    let chosen: Vec<String> = fields.iter().map(|f| f.trim().to_owned()).filter(|f| !f.is_empty()).collect();
    if chosen.is_empty() { DEFAULT_FIELDS.iter().map(|f| (*f).to_owned()).collect() } else { chosen }
}

fn criteria(text: String) -> Option<pb::CriteriaInput> {
    Some(pb::CriteriaInput { kind: Some(pb::criteria_input::Kind::Text(text)) })
}

fn default_page_size(limit: u64) -> u32 {
    if limit == 0 { 1000 } else { u32::try_from(limit.min(1000)).unwrap_or(1000) }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let api = Api::connect(&cli.server, cli.api_key.as_deref())?;
    let out = cli.output;
    match cli.command {
        Command::Contacts(ContactsCommand::Import { file, batch_size }) => {
            emit(&import::run(&api, &file, batch_size, out).await?)?;
        }
        Command::Contacts(ContactsCommand::Get { email, min_sequence }) => {
            let contact = api.get_contact(pb::GetContactRequest { email, min_sequence }).await?;
            match out {
                Output::Text => emit(&contact_text(&contact))?,
                Output::Json => emit_json(&contact_json::<&str>(&contact, None))?,
            }
        }
        Command::Contacts(ContactsCommand::History { email }) => {
            let reply = api.contact_history(pb::ContactHistoryRequest { email }).await?;
            print_history(out, &reply)?;
        }
        Command::Contacts(ContactsCommand::Activity { email, kind, amount, url, time }) => {
            let kind = match kind {
                ActivityKind::Opened => pb::ActivityKind::EmailOpened,
                ActivityKind::Clicked => pb::ActivityKind::LinkClicked,
                ActivityKind::Purchase => pb::ActivityKind::Purchase,
            };
            let reply = api
                .record_activity(pb::RecordActivityRequest {
                    command_id: command_id(),
                    email,
                    kind: kind.into(),
                    amount: amount.unwrap_or_default(),
                    url: url.unwrap_or_default(),
                    time: time.unwrap_or_default(),
                })
                .await?;
            let contact = reply.contact.unwrap_or_default();
            match out {
                Output::Text => emit(&format!("{}sequence: {}\n", contact_text(&contact), reply.sequence))?,
                Output::Json => emit_json(&json!({
                    "contact": contact_json::<&str>(&contact, None),
                    "sequence": reply.sequence,
                    "duplicate": reply.duplicate,
                }))?,
            }
        }
        Command::Jobs(JobsCommand::Get { id, min_sequence }) => jobs::get(&api, out, id, min_sequence).await?,
        Command::Jobs(JobsCommand::Watch { id }) => jobs::watch(&api, out, id, 0).await?,
        Command::Jobs(JobsCommand::Cancel { id, reason }) => jobs::cancel(&api, out, id, reason).await?,
        Command::Audit(AuditCommand::ScoreResets { filter }) => jobs::list_resets(&api, out, filter).await?,
        Command::Audit(AuditCommand::ScoreReset { id, limit }) => jobs::show_reset(&api, out, id, limit).await?,
        Command::Segments(command) => segments(&api, out, command).await?,
        Command::Events(args) => events::run(&api, args, out).await?,
        Command::Topics(command) => ops::topics(&api, out, command).await?,
        Command::Lists(command) => ops::lists(&api, out, command).await?,
        Command::Campaigns(command) => ops::campaigns(&api, out, command).await?,
        Command::Preview { criteria: text, limit, read, fields } => {
            let reply = api
                .preview_criteria(pb::PreviewCriteriaRequest {
                    criteria: criteria(text),
                    page_size: limit.max(1),
                    min_sequence: read.min_sequence,
                    at: read.at.unwrap_or_default(),
                })
                .await?;
            let shown = &reply.contacts[..reply.contacts.len().min(limit as usize)];
            let fields = columns(&fields);
            match out {
                Output::Text => {
                    let mut text = format!("criteria: {}\ncount: {}\n", reply.criteria_text, reply.count);
                    for c in shown {
                        text.push_str(&contact_row(c, &fields));
                        text.push('\n');
                    }
                    emit(&text)?;
                }
                Output::Json => emit_json(&json!({
                    "criteria_text": reply.criteria_text,
                    "count": reply.count,
                    "sequence": reply.sequence,
                    "contacts": shown.iter().map(|c| contact_json::<&str>(c, None)).collect::<Vec<_>>(),
                }))?,
            }
        }
    }
    Ok(())
}

async fn segments(api: &Api, out: Output, command: SegmentsCommand) -> anyhow::Result<()> {
    match command {
        SegmentsCommand::Create { name, criteria: text } => {
            let reply = api
                .create_segment(pb::CreateSegmentRequest { command_id: command_id(), name, criteria: criteria(text) })
                .await?;
            print_segment_reply(out, &reply)?;
        }
        SegmentsCommand::Update { segment, name, criteria: text, expected_version } => {
            let (reply, _) = with_segment(&segment, |r| {
                api.update_segment(pb::UpdateSegmentRequest {
                    command_id: command_id(),
                    segment: Some(r),
                    expected_version: expected_version.unwrap_or(0),
                    name: name.clone(),
                    criteria: text.clone().and_then(criteria),
                })
            })
            .await?;
            print_segment_reply(out, &reply)?;
        }
        SegmentsCommand::Delete { segment, expected_version } => {
            let (reply, _) = with_segment(&segment, |r| {
                api.delete_segment(pb::DeleteSegmentRequest {
                    command_id: command_id(),
                    segment: Some(r),
                    expected_version: expected_version.unwrap_or(0),
                })
            })
            .await?;
            match out {
                Output::Text => emit(&format!("deleted segment {segment}\nsequence: {}\n", reply.sequence))?,
                Output::Json => emit_json(&json!({
                    "segment": segment,
                    "deleted": true,
                    "sequence": reply.sequence,
                    "duplicate": reply.duplicate,
                }))?,
            }
        }
        SegmentsCommand::List { min_sequence, legacy, org_level, topic, bulk } => {
            let legacy = match (legacy, org_level) {
                (true, _) => pb::LegacyFilter::Legacy,
                (_, true) => pb::LegacyFilter::OrgLevel,
                _ => pb::LegacyFilter::All,
            };
            let reply = api
                .list_segments(pb::ListSegmentsRequest {
                    min_sequence,
                    legacy: legacy as i32,
                    topic: topic.map(|name| pb::TopicRef { by: Some(pb::topic_ref::By::Name(name)) }),
                    bulk_parent_id: bulk.unwrap_or(0),
                })
                .await?;
            match out {
                Output::Text => emit(&segments_table(&reply.segments))?,
                Output::Json => emit_json(&json!({
                    "segments": reply.segments.iter().map(segment_json).collect::<Vec<_>>(),
                    "sequence": reply.sequence,
                }))?,
            }
        }
        SegmentsCommand::Get { segment, min_sequence, past } => {
            let as_of = past.as_of();
            let (found, _) = with_segment(&segment, |r| {
                api.get_segment(pb::GetSegmentRequest { segment: Some(r), min_sequence, as_of: as_of.clone() })
            })
            .await?;
            match out {
                Output::Text => emit(&segment_text(&found, None))?,
                Output::Json => emit_json(&segment_json(&found))?,
            }
        }
        SegmentsCommand::Count { segment, read, past } => {
            let at = read.at.unwrap_or_default();
            let as_of = past.as_of();
            let (reply, _) = with_segment(&segment, |r| {
                api.count_members(pb::CountMembersRequest {
                    segment: Some(r),
                    min_sequence: read.min_sequence,
                    at: at.clone(),
                    as_of: as_of.clone(),
                })
            })
            .await?;
            match out {
                Output::Text => emit(&format!("{}\n", reply.count))?,
                Output::Json => {
                    emit_json(&json!({"segment": segment, "count": reply.count, "sequence": reply.sequence}))?
                }
            }
        }
        SegmentsCommand::History { segment } => {
            let (reply, _) =
                with_segment(&segment, |r| api.segment_history(pb::SegmentHistoryRequest { segment: Some(r) })).await?;
            print_history(out, &reply)?;
        }
        SegmentsCommand::MassUpdate { segment, field, value, job } => {
            let what = jobs::Start::MassUpdate { field, value };
            jobs::start(api, out, &segment, job.job_id.clone(), what, job.run()).await?;
        }
        SegmentsCommand::DeleteContacts { segment, confirm, job } => {
            let what = jobs::Start::DeleteContacts { confirm };
            jobs::start(api, out, &segment, job.job_id.clone(), what, job.run()).await?;
        }
        SegmentsCommand::ResetScores { segment, reason, agree, job } => {
            let what = jobs::Start::ResetScores { reason, agree };
            jobs::start(api, out, &segment, job.job_id.clone(), what, job.run()).await?;
        }
        SegmentsCommand::Ops(op) => ops::segment_op(api, out, op).await?,
        SegmentsCommand::Versions(op) => versions::version_op(api, out, op).await?,
        SegmentsCommand::Explain { segment, contact, contact_id, at } => {
            explain::explain(api, out, &segment, explain::Who { email: contact, contact_id, at }).await?;
        }
        SegmentsCommand::Export(args) => export::run(api, out, args).await?,
        SegmentsCommand::Members { segment, limit, page_size, fields, read, past } => {
            let page_size = page_size.unwrap_or(default_page_size(limit));
            members(api, out, &segment, (limit, page_size), &fields, read, past.as_of()).await?;
        }
    }
    Ok(())
}

/// A history: aligned lines for people, or the events' JSON lines.
fn print_history(out: Output, reply: &pb::HistoryReply) -> std::io::Result<()> {
    match out {
        Output::Text => emit(&history_text(&reply.events)),
        Output::Json => emit(&reply.events.iter().map(|e| format!("{}\n", e.json)).collect::<String>()),
    }
}

fn print_segment_reply(out: Output, reply: &pb::SegmentReply) -> std::io::Result<()> {
    let segment = reply.segment.clone().unwrap_or_default();
    match out {
        Output::Text => emit(&segment_text(&segment, Some(reply.sequence))),
        Output::Json => emit_json(&json!({
            "segment": segment_json(&segment),
            "sequence": reply.sequence,
            "duplicate": reply.duplicate,
        })),
    }
}

/// Prints members page by page, following page tokens until the limit (or
/// the last page). Later pages read at least at the first page's sequence.
async fn members(
    api: &Api,
    out: Output,
    segment: &str,
    (limit, page_size): (u64, u32),
    fields: &[String],
    read: ReadOptions,
    as_of: Option<pb::AsOf>,
) -> anyhow::Result<()> {
    let at = read.at.unwrap_or_default();
    let mut pages = ContactPages::new(out, fields, limit);
    let request =
        |segment: pb::SegmentRef, page_token: String, min_sequence: u64, page_size: u32| pb::ListMembersRequest {
            segment: Some(segment),
            page_size,
            page_token,
            min_sequence,
            at: at.clone(),
            as_of: as_of.clone(),
            ..Default::default()
        };
    let first = pages.page_size(page_size);
    let (mut reply, by) =
        with_segment(segment, |r| api.list_members(request(r, String::new(), read.min_sequence, first))).await?;
    let min_sequence = read.min_sequence.max(reply.sequence);
    while pages.print(&reply.contacts, &reply.next_page_token)? {
        let token = std::mem::take(&mut reply.next_page_token);
        reply = api.list_members(request(by.clone(), token, min_sequence, pages.page_size(page_size))).await?;
    }
    Ok(())
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// The line printed for a failure: `error: CODE: message` for a gRPC status.
fn error_line(err: &anyhow::Error) -> String {
    match err.downcast_ref::<tonic::Status>() {
        Some(status) => format!("error: {}", output::status_line(status)),
        None => format!("error: {err:#}"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}", error_line(&err));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("segctl").chain(args.iter().copied()))
    }

    #[test]
    fn options_parse_and_usage_errors_are_refused() {
        let cli = parse(&["segments", "count", "germany", "--output", "json", "--at", "2025-01-01T00:00:00Z"]).unwrap();
        assert_eq!(cli.output, Output::Json);
        let cli = parse(&["contacts", "import", "x.csv"]).unwrap();
        assert!(matches!(cli.command, Command::Contacts(ContactsCommand::Import { batch_size: 500, .. })));
        assert!(parse(&["contacts", "import", "x.csv", "--batch-size", "1001"]).is_err());
        assert!(parse(&["contacts", "import", "x.csv", "--batch-size", "0"]).is_err());
        assert!(parse(&["segments", "update", "x"]).is_err(), "update needs --name or --criteria");
        assert!(parse(&["segments", "update", "x", "--name", "y"]).is_ok());
        assert!(parse(&["segments", "members", "x", "--page-size", "0"]).is_err());
        let cli = parse(&["segments", "members", "x", "--fields", "email,country"]).unwrap();
        let Command::Segments(SegmentsCommand::Members { fields, limit, .. }) = cli.command else { panic!("members") };
        assert_eq!(fields, ["email", "country"]);
        assert_eq!(limit, 100);
        assert_eq!(parse(&["--output", "xml", "segments", "list"]).unwrap_err().exit_code(), 2);
        let cli = parse(&["events", "--type", "SegmentUpdated,ContactCreated", "--type", "ContactDeleted"]).unwrap();
        let Command::Events(args) = cli.command else { panic!("events") };
        assert_eq!(args.types, ["SegmentUpdated", "ContactCreated", "ContactDeleted"]);
        assert_eq!(args.format, events::Format::Jsonl);
        assert!(parse(&["events", "--format", "csv", "--out", "x.csv", "--from", "3", "--to", "9"]).is_ok());
        assert!(parse(&["events", "--from", "0"]).is_err(), "sequences start at 1");
        assert!(parse(&["events", "--aggregate-id", "a@x.com"]).is_err(), "an id needs its aggregate type");
        assert!(parse(&["events", "--aggregate-type", "segment"]).is_err());
        assert!(parse(&["segments", "history", "germany"]).is_ok());
        assert!(parse(&["contacts", "history", "a@x.com"]).is_ok());
        assert!(parse(&["segments", "reset-scores", "germany", "--reason", "v2", "--agree", "--wait"]).is_ok());
        assert!(parse(&["segments", "delete-contacts", "germany", "--confirm", "--job-id", "d1"]).is_ok());
        assert!(parse(&["segments", "mass-update", "germany", "--field", "city", "--value", ""]).is_ok());
        assert!(parse(&["segments", "delete-contacts", "germany", "--dry-run"]).is_ok());
        assert!(parse(&["segments", "delete-contacts", "g", "--dry-run", "--expected-position", "9"]).is_err());
        assert!(
            parse(&["segments", "reset-scores", "g", "--reason", "r", "--agree", "--expected-position", "9"]).is_ok()
        );
        assert!(parse(&["jobs", "cancel", "reset-q2", "--reason", "wrong segment"]).is_ok());
        assert!(parse(&["segments", "versions", "germany"]).is_ok());
        assert!(parse(&["segments", "explain", "germany", "--contact", "a@x.com"]).is_ok());
        assert!(parse(&["segments", "explain", "germany", "--contact-id", "7"]).is_ok());
        assert!(parse(&["segments", "explain", "germany"]).is_err(), "a contact is needed");
        assert!(parse(&["segments", "diff", "germany", "1"]).is_ok());
        assert!(parse(&["segments", "diff", "germany", "1", "3"]).is_ok());
        assert!(parse(&["segments", "rollback", "germany", "--to-version", "0"]).is_err());
        assert!(parse(&["segments", "rollback", "germany", "--to-version", "2", "--expected-version", "4"]).is_ok());
        assert!(
            parse(&["contacts", "activity", "a@x.com", "--kind", "purchase"]).is_err(),
            "a purchase needs an amount"
        );
        assert!(parse(&["contacts", "activity", "a@x.com", "--kind", "purchase", "--amount", "9.5"]).is_ok());
        assert!(parse(&["audit", "score-resets", "--since", "2025-01-01T00:00:00Z", "--actor", "acme/key-1"]).is_ok());
        assert!(parse(&["audit", "score-reset", "reset-q2"]).is_ok());
        assert!(parse(&["jobs", "watch"]).is_ok());
        assert!(parse(&["jobs", "get", "reset-q2"]).is_ok());
        let export = ["segments", "export", "germany", "--fields", "email,age", "--out", "de.xlsx"];
        assert!(parse(&export).is_ok());
        assert!(parse(&[&export[..], &["--added-between", "2025-01-01T00:00:00Z", ""]].concat()).is_ok());
        assert!(parse(&[&export[..], &["--added-between", "2025-01-01T00:00:00Z"]].concat()).is_err(), "two bounds");
        let both = ["--since", "2025-01-01T00:00:00Z", "--updated-between", "a", "b"];
        assert!(parse(&[&export[..], &both[..]].concat()).is_err(), "one date filter");
        assert!(parse(&[&export[..], &["--format", "pdf"]].concat()).is_err());
    }

    #[test]
    fn pages_stop_at_the_limit() {
        assert_eq!(default_page_size(0), 1000);
        assert_eq!(default_page_size(5), 5);
        assert_eq!(default_page_size(5000), 1000);
    }

    #[test]
    fn columns_default_and_trim() {
        assert_eq!(columns(&[]), DEFAULT_FIELDS);
        assert_eq!(columns(&[" email".into(), String::new(), "age ".into()]), ["email", "age"]);
    }

    #[test]
    fn errors_print_the_grpc_code() {
        let err = anyhow::Error::from(tonic::Status::aborted("segment 3 is at version 2, not 1"));
        assert_eq!(error_line(&err), "error: ABORTED: segment 3 is at version 2, not 1");
        let err = anyhow::anyhow!("cannot open x.csv");
        assert_eq!(error_line(&err), "error: cannot open x.csv");
        let pipe = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&pipe));
    }
}
