//! `model-bench`: the read model at scale, on the embedded log. Measures,
//! each phase in a process of its own (so resident memory is the phase's
//! alone):
//!
//! - `rebuild`: `segmentd rebuild`'s code path (`segmentd_server::rebuild`)
//!   from a prepared log into a new directory: events/s, CPU time, peak RSS;
//! - `open`: opening that read model as `serve` does (load from sled, build
//!   the index, compute kept member sets): seconds, RSS after opening; then
//!   answers Q1–Q12 of `../shared/bench/criteria.md` (counts, first pages of
//!   100, kept sets of the same criteria saved as segments) and prints a
//!   digest of every answer, so two builds can be checked to answer alike.
//!
//! `prepare` writes the log once: the contacts of a `gen_contacts.py` CSV
//! through the command path's `Writer` (1,000 per request, as
//! `UpsertContacts` would) and Q1–Q12 saved as segments. `run` prepares
//! (unless the log exists), then repeats rebuild + open and prints medians.
//!
//! **Must not depend on** product internals beyond public entry points:
//! `segmentd_server::{write, rebuild, demo, convert}` and `ReadModel`'s
//! public query API, which is what `serve` uses.

use anyhow::{Context as _, bail, ensure};
use clap::{Parser, Subcommand};
use segmentd_bench::cpu::process_time;
use segmentd_bench::stats::Summary;
use segmentd_domain::Criteria;
use segmentd_domain::segment::{SegmentCommand, SegmentName};
use segmentd_domain::time::Timestamp;
use segmentd_readmodel::ReadModel;
use segmentd_server::auth::Caller;
use segmentd_server::rebuild::Until;
use segmentd_server::serve::{LogBackend, open_log, read_model_dir};
use segmentd_server::write::{CommandMeta, MAX_BATCH, Writer};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The server's allocator (`crates/segmentd`), so that this process
/// measures the read model as `serve` and `rebuild` run it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ORG: &str = "bench";
/// sled's page cache, as `serve` sets it by default.
const CACHE_BYTES: u64 = 64 << 20;
/// Q7's reference instant (criteria.md): every relative answer is pinned to it.
const AT: &str = "2026-11-01T00:00:00Z";

/// Q1–Q12 of criteria.md, in segmentd's text form (Q7 relative, at `AT`).
const QUERIES: [&str; 12] = [
    r#"country = "DE""#,
    r#"country in ("US","CA","MX")"#,
    "age between 25 and 34",
    r#"country = "US" and lifecycle_stage = "customer" and score > 200"#,
    r#"country in ("DE","FR") and (age between 25 and 34 or score >= 150)"#,
    r#"email ends_with "@gmail.com" and company starts_with "acme""#,
    r#"last_opened_at within_last 90 days and lifecycle_stage != "subscriber""#,
    "company is_not_empty and age is_empty",
    r#"custom.plan = "enterprise" and custom.industry in ("software","finance")"#,
    r#"gender != "unknown""#,
    r#"country = "JP" and purchase_count >= 5 and total_spent > 1000"#,
    r#"last_name contains "son" and added_at between "2025-01-01T00:00:00Z" and "2025-12-31T23:59:59Z" and not (country = "US")"#,
];

#[derive(Parser)]
#[command(name = "model-bench", about = "read model rebuild events/s, open time and RSS at scale")]
struct Args {
    #[command(subcommand)]
    phase: Phase,
}

#[derive(Subcommand)]
enum Phase {
    /// Writes the contacts of CSV (and Q1–Q12 as saved segments) into the
    /// embedded log of DATA_DIR.
    Prepare {
        #[arg(long)]
        csv: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Rebuilds the read model of LOG_DATA_DIR's log into INTO (new); one JSON line.
    Rebuild {
        #[arg(long)]
        log_data_dir: PathBuf,
        #[arg(long)]
        into: PathBuf,
    },
    /// Opens the read model in DATA_DIR, answers Q1–Q12; one JSON line.
    Open {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Prepare if needed, then `repeat` × (rebuild, open), each in a child
    /// process; prints each result and the medians.
    Run {
        #[arg(long)]
        csv: PathBuf,
        /// Where the prepared log is kept (reused when it exists).
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().phase {
        Phase::Prepare { csv, data_dir } => runtime()?.block_on(prepare(&csv, &data_dir)),
        Phase::Rebuild { log_data_dir, into } => runtime()?.block_on(rebuild(&log_data_dir, &into)),
        Phase::Open { data_dir } => open(&data_dir),
        Phase::Run { csv, data_dir, repeat } => run(&csv, &data_dir, repeat),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

async fn prepare(csv: &Path, data_dir: &Path) -> anyhow::Result<()> {
    ensure!(!data_dir.join("log").exists(), "{} already holds a log", data_dir.display());
    let text = std::fs::read(csv).with_context(|| format!("reading {}", csv.display()))?;
    let inputs = segmentd_server::demo::contact_inputs(text.as_slice()).map_err(anyhow::Error::msg)?;
    let log = open_log(&LogBackend::Embedded, data_dir).await?;
    let writer = Writer::new(log);
    let caller = Caller { org: ORG.to_owned(), actor: "model-bench".to_owned() };
    let started = Instant::now();
    for (n, chunk) in inputs.chunks(MAX_BATCH).enumerate() {
        let patches = chunk
            .iter()
            .enumerate()
            .map(|(i, c)| segmentd_server::convert::contact_patch(i, c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("row {}: {}", n * MAX_BATCH, e.0))?;
        let meta = CommandMeta { caller: caller.clone(), command_id: format!("bench-contacts-{n}") };
        writer.upsert_contacts(&meta, patches).await?;
    }
    for (i, text) in QUERIES.iter().enumerate() {
        let meta = CommandMeta { caller: caller.clone(), command_id: format!("bench-segment-{i}") };
        let command = SegmentCommand::Create {
            name: SegmentName::parse(&format!("q{}", i + 1))?,
            criteria: Criteria::parse(text).map_err(|e| anyhow::anyhow!("Q{}: {e}", i + 1))?,
        };
        writer.segments(&meta, command).await?;
    }
    let last = writer.log().last_seq().await?;
    eprintln!("prepared {} contacts, log at sequence {last}, in {:.1?}", inputs.len(), started.elapsed());
    Ok(())
}

async fn rebuild(log_data_dir: &Path, into: &Path) -> anyhow::Result<()> {
    let log = open_log(&LogBackend::Embedded, log_data_dir).await?;
    let last = log.last_seq().await?;
    let cpu = process_time("self").unwrap_or_default();
    let started = Instant::now();
    let reached = segmentd_server::rebuild::rebuild(&*log, into, Until::Sequence(last), CACHE_BYTES).await?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = process_time("self").unwrap_or_default().saturating_sub(cpu).as_secs_f64();
    ensure!(reached.seq == last, "rebuilt to {} of {last}", reached.seq);
    let out = serde_json::json!({
        "phase": "rebuild",
        "events": last,
        "seconds": secs,
        "events_per_s": last as f64 / secs,
        "cpu_seconds": cpu,
        "cpu_us_per_event": cpu * 1e6 / last as f64,
        "peak_rss_mib": status_kib("VmHWM").unwrap_or(0) as f64 / 1024.0,
        "model_bytes": dir_bytes(&read_model_dir(into)),
    });
    println!("{out}");
    Ok(())
}

fn open(data_dir: &Path) -> anyhow::Result<()> {
    let at = Timestamp::parse_rfc3339(AT)?;
    let cpu = process_time("self").unwrap_or_default();
    let started = Instant::now();
    let model = ReadModel::open(&read_model_dir(data_dir), CACHE_BYTES)?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = process_time("self").unwrap_or_default().saturating_sub(cpu).as_secs_f64();
    let rss = status_kib("VmRSS").unwrap_or(0) as f64 / 1024.0;
    let peak = status_kib("VmHWM").unwrap_or(0) as f64 / 1024.0;
    let mut answers = Vec::new();
    let mut digest = DefaultHasher::new();
    model.read(ORG, |view, seq| -> anyhow::Result<()> {
        seq.hash(&mut digest);
        view.contact_count().hash(&mut digest);
        for (i, text) in QUERIES.iter().enumerate() {
            let criteria = Criteria::parse(text).map_err(|e| anyhow::anyhow!("Q{}: {e}", i + 1))?;
            let count = view.count(&criteria, at);
            let page = view.members(&criteria, at, None, 100);
            let emails: Vec<&str> = page.contacts.iter().map(|c| c.email()).collect();
            // The whole first contact, every field, not only its email.
            let first = page.contacts.first().map(|c| format!("{c:?}"));
            let Some(segment) = view.segments().find(|s| s.name == format!("q{}", i + 1)) else {
                bail!("segment q{} is missing: was the log prepared by this program?", i + 1)
            };
            let kept = view.segment_count(segment.id, &criteria, at);
            let kept_page = view.segment_members(segment.id, &criteria, at, None, 100);
            let kept_emails: Vec<&str> = kept_page.contacts.iter().map(|c| c.email()).collect();
            ensure!(kept_emails == emails, "Q{}: the kept set's first page differs", i + 1);
            (count, &emails, &first, kept, page.next_after).hash(&mut digest);
            // In-process times, without gRPC: what a first page and a
            // count cost in the model itself (median of 7).
            let micros = |f: &dyn Fn()| {
                let times: Vec<f64> = (0..7)
                    .map(|_| {
                        let started = Instant::now();
                        f();
                        started.elapsed().as_secs_f64() * 1e6
                    })
                    .collect();
                Summary::of(&times).map_or(0.0, |s| s.median)
            };
            let page_us = micros(&|| drop(view.members(&criteria, at, None, 100)));
            let kept_page_us = micros(&|| drop(view.segment_members(segment.id, &criteria, at, None, 100)));
            let count_us = micros(&|| {
                std::hint::black_box(view.count(&criteria, at));
            });
            answers.push(serde_json::json!({
                "q": i + 1, "count": count, "kept": kept,
                "page_us": page_us, "kept_page_us": kept_page_us, "count_us": count_us,
            }));
        }
        if let Some(c) = view.contact("anna.muller1000@gmx.de") {
            format!("{c:?}").hash(&mut digest);
        }
        Ok(())
    })?;
    let out = serde_json::json!({
        "phase": "open",
        "seconds": secs,
        "cpu_seconds": cpu,
        "rss_mib": rss,
        "peak_rss_mib": peak,
        "applied": model.applied_seq(),
        "answers": answers,
        "digest": format!("{:016x}", digest.finish()),
    });
    println!("{out}");
    Ok(())
}

fn run(csv: &Path, data_dir: &Path, repeat: usize) -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    if !data_dir.join("log").exists() {
        child(&me, &["prepare", "--csv", &csv.display().to_string(), "--data-dir", &data_dir.display().to_string()])?;
    }
    let mut results: Vec<(serde_json::Value, serde_json::Value)> = Vec::new();
    for _ in 0..repeat.max(1) {
        let into = tempfile::tempdir_in(data_dir.parent().unwrap_or(Path::new(".")))?;
        let into_s = into.path().display().to_string();
        let rebuilt = child(&me, &["rebuild", "--log-data-dir", &data_dir.display().to_string(), "--into", &into_s])?;
        let opened = child(&me, &["open", "--data-dir", &into_s])?;
        println!("{rebuilt}\n{opened}");
        results.push((rebuilt, opened));
    }
    let digests: std::collections::BTreeSet<String> =
        results.iter().map(|(_, o)| o["digest"].as_str().unwrap_or_default().to_owned()).collect();
    ensure!(digests.len() == 1, "answers differ between runs: {digests:?}");
    let median = |phase: usize, key: &str| {
        let values: Vec<f64> =
            results.iter().filter_map(|r| if phase == 0 { &r.0 } else { &r.1 }[key].as_f64()).collect();
        Summary::of(&values).map(Summary::to_json)
    };
    let summary = serde_json::json!({
        "runs": results.len(),
        "load_average": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "rebuild_events_per_s": median(0, "events_per_s"),
        "rebuild_cpu_us_per_event": median(0, "cpu_us_per_event"),
        "rebuild_peak_rss_mib": median(0, "peak_rss_mib"),
        "open_seconds": median(1, "seconds"),
        "open_cpu_seconds": median(1, "cpu_seconds"),
        "open_rss_mib": median(1, "rss_mib"),
        "open_peak_rss_mib": median(1, "peak_rss_mib"),
        "digest": digests.into_iter().next(),
    });
    println!("{summary}");
    Ok(())
}

/// Runs this program with `args`; its last stdout line, as JSON.
fn child(me: &Path, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = std::process::Command::new(me).args(args).stderr(std::process::Stdio::inherit()).output()?;
    ensure!(out.status.success(), "model-bench {args:?} failed: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or("null");
    Ok(serde_json::from_str(last).unwrap_or(serde_json::Value::Null))
}

/// A `/proc/self/status` memory line (`VmRSS`, `VmHWM`), in KiB.
fn status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
