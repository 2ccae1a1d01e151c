//! `segment-bench`: issue 5's benchmark of the membership engine against
//! PostgreSQL, in one run. See `segmentd_bench::segments` for what it
//! measures and BENCHMARKS.md for results.
//!
//! ```text
//! cargo run --release -p segmentd-bench --bin segment-bench -- --contacts 1000000
//! ```
//!
//! Exits non-zero when any query's answer differs between segmentd and
//! PostgreSQL (no speed is reported for it), or when a step fails.

use anyhow::{Context as _, ensure};
use clap::Parser;
use segmentd_bench::segments::{self, Config, criteria_set, report};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "segment-bench", about = "segmentd's membership engine against PostgreSQL, in one run")]
struct Args {
    /// Contacts to generate and load into both systems.
    #[arg(long, default_value_t = 1_000_000)]
    contacts: u64,
    /// The generator's seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// gen_contacts.py (default: ../shared/bench/gen_contacts.py beside the workspace).
    #[arg(long)]
    generator: Option<PathBuf>,
    #[arg(long, default_value = "python3")]
    python: String,
    /// The segmentd binary to run. Default: `cargo build --release -p segmentd`
    /// first, then that binary, so the server measured is the current source.
    #[arg(long)]
    segmentd: Option<PathBuf>,
    /// PostgreSQL connection (libpq key=value or URL); the run creates and drops a schema of its own.
    #[arg(long, env = "SEGMENT_BENCH_POSTGRES", default_value = "host=127.0.0.1 port=5432 user=postgres dbname=test")]
    postgres: String,
    /// Saved segments defined for the change-to-visible measurement (Q1–Q12 included).
    #[arg(long, default_value_t = 1000)]
    segments: usize,
    /// Timed changes (half into the watched segment, half out).
    #[arg(long, default_value_t = 400)]
    latency_samples: usize,
    /// Timed repetitions of each query after one warm-up.
    #[arg(long, default_value_t = 7)]
    repeat: usize,
    /// Contacts per UpsertContacts request (at most 1000).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// UpsertContacts requests in flight during the load, one connection each.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// The clock of relative criteria (Q7), on both sides.
    #[arg(long, default_value = criteria_set::REFERENCE_AT)]
    at: String,
    /// Where the temporary CSV files and the server's data directory go.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
    /// Also write the results as one JSON object to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The workspace this program was built from.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the release server and returns its path (next to this program,
/// or in `target/release` when this program is a debug build).
fn build_segmentd() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building the server: cargo build --release -p segmentd");
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "-p", "segmentd"])
        .current_dir(workspace())
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "cargo build --release -p segmentd failed");
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("this program's directory")?;
    let release = if dir.file_name().is_some_and(|n| n == "release") { dir.to_owned() } else { dir.join("../release") };
    let binary = release.join("segmentd");
    ensure!(binary.exists(), "{} was not built", binary.display());
    Ok(binary)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!((1..=1000).contains(&args.batch), "--batch must be 1 to 1000");
    ensure!(args.segments >= criteria_set::STANDARD.len(), "--segments must be at least 12 (Q1–Q12)");
    let segmentd = match args.segmentd {
        Some(path) => path,
        None => build_segmentd()?,
    };
    let generator = args.generator.unwrap_or_else(|| workspace().join("../shared/bench/gen_contacts.py"));
    ensure!(generator.exists(), "{} not found (give --generator)", generator.display());
    let config = Config {
        contacts: args.contacts,
        seed: args.seed,
        generator,
        python: args.python,
        segmentd,
        postgres_url: args.postgres,
        segments: args.segments,
        latency_samples: args.latency_samples,
        repeat: args.repeat.max(1),
        batch: args.batch,
        concurrency: args.concurrency.max(1),
        at: args.at,
        work_dir: args.work_dir,
    };
    let results = segments::run(config).await?;
    print!("{}", report::table(&results));
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report::json(&results))?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let refused = report::disagreements(&results);
    if !refused.is_empty() {
        anyhow::bail!("{} queries disagree with PostgreSQL: {refused:?}", refused.len());
    }
    Ok(())
}
