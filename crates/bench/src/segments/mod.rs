//! `segment-bench`: segmentd's membership engine against an indexed
//! PostgreSQL on the same machine, in one run (issue 5's benchmark):
//! loading the generated contacts, Q1–Q12 counts and first pages,
//! change-to-visible latency with many saved segments, and rebuilding the
//! exporting every contact as CSV, and rebuilding the read models from the
//! log. [`run`] does it all in that order; the parts are:
//!
//! - [`criteria_set`]: Q1–Q12 and the further saved segments;
//! - [`sql`]: criteria → PostgreSQL `WHERE`, with segmentd's semantics;
//! - [`load`]: the generator's CSV through the command path;
//! - [`postgres`]: the scratch schema, COPY, indexes, timed queries;
//! - [`server`]: the segmentd process under test;
//! - [`queries`], [`latency`], [`export`], [`rebuild`]: the measurements;
//! - [`report`]: the table, the JSON and the targets of issue 5.
//!
//! **Must not depend on** segmentd's server crates: segmentd is a separate
//! process driven over gRPC (and its `rebuild` subcommand). The domain
//! crate is used only to parse criteria text into the tree that [`sql`]
//! translates, the same parser the server uses.

pub mod criteria_set;
pub mod export;
pub mod latency;
pub mod load;
pub mod postgres;
pub mod queries;
pub mod rebuild;
pub mod report;
pub mod server;
pub mod sql;

use anyhow::Context as _;
use segmentd_domain::{Criteria, Timestamp};
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::commands_client::CommandsClient;
use segmentd_proto::v1::queries_client::QueriesClient;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// What to run, from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    pub contacts: u64,
    pub seed: u64,
    pub generator: PathBuf,
    pub python: String,
    pub segmentd: PathBuf,
    pub postgres_url: String,
    /// Saved segments defined for the latency measurement (Q1–Q12 included).
    pub segments: usize,
    pub latency_samples: usize,
    pub repeat: usize,
    pub batch: usize,
    pub concurrency: usize,
    /// The clock relative criteria are evaluated at, on both sides.
    pub at: String,
    /// Where the temporary files and the data directory go.
    pub work_dir: PathBuf,
}

/// Everything measured.
#[derive(Debug)]
pub struct Results {
    pub config: Config,
    pub load_average_start: String,
    pub load_average_end: String,
    pub generate: Duration,
    pub load: load::Loaded,
    /// From the first request until the read model had applied the last
    /// event (`ListSegments` with `min_sequence`).
    pub load_until_applied: Duration,
    pub load_server_cpu: Option<Duration>,
    pub rss_after_load: u64,
    pub rss_after_segments: u64,
    pub rss_at_end: u64,
    pub postgres_version: String,
    pub postgres_settings: Vec<(String, String)>,
    pub postgres_load: postgres::PgLoad,
    pub queries: Vec<queries::QueryRun>,
    pub segments_created: usize,
    pub segment_creation: Duration,
    pub latency: latency::Latencies,
    pub export: export::Exported,
    pub rebuild: rebuild::Rebuilt,
}

/// Runs every measurement. The PostgreSQL scratch schema is dropped and the
/// server stopped whatever happens.
pub async fn run(config: Config) -> anyhow::Result<Results> {
    let at = Timestamp::parse_rfc3339(&config.at).map_err(|e| anyhow::anyhow!("--at: {e}"))?;
    // Fail on a bad criterion before spending minutes loading.
    let standard: Vec<(&str, &str, String)> = criteria_set::STANDARD
        .iter()
        .map(|(name, text)| {
            let tree = Criteria::parse(text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            Ok((*name, *text, sql::where_clause(&tree, at)?))
        })
        .collect::<anyhow::Result<_>>()?;
    let load_average_start = load_average();
    let work = tempfile::Builder::new().prefix("segment-bench-").tempdir_in(&config.work_dir)?;
    let csv = work.path().join("contacts.csv");
    eprintln!("generating {} contacts (seed {})…", config.contacts, config.seed);
    let generate = load::generate(&config.python, &config.generator, config.contacts, config.seed, &csv).await?;
    let pg = postgres::Postgres::connect(&config.postgres_url).await?;
    eprintln!("PostgreSQL {}: scratch schema {}", pg.version, pg.schema);
    let result = measure(&config, &pg, &csv, work.path(), standard).await;
    let dropped = pg.drop_schema().await;
    let mut partial = result?;
    dropped?;
    partial.generate = generate;
    partial.load_average_start = load_average_start;
    partial.load_average_end = load_average();
    Ok(partial)
}

async fn measure(
    config: &Config,
    pg: &postgres::Postgres,
    csv: &std::path::Path,
    work: &std::path::Path,
    standard: Vec<(&str, &str, String)>,
) -> anyhow::Result<Results> {
    let data_dir = work.join("segmentd-data");
    let server = server::Server::start(&config.segmentd, &data_dir).await?;
    eprintln!("segmentd (pid {}) listening on {}", server.pid, server.addr);

    eprintln!("loading into segmentd…");
    let mut clients = Vec::new();
    for _ in 0..config.concurrency.max(1) {
        clients.push(server.commands().await?);
    }
    let cpu_before = crate::cpu::process_time(&server.pid.to_string());
    let probe_every = (config.contacts / (config.latency_samples as u64 + 1)).max(1);
    let load_started = Instant::now();
    let loaded = load::into_segmentd(csv, clients, config.batch, probe_every).await?;
    let mut queries = server.queries().await?;
    wait_applied(&mut queries, loaded.last_seq).await?;
    let load_until_applied = load_started.elapsed();
    let load_server_cpu = crate::cpu::process_time(&server.pid.to_string())
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let rss_after_load = server.rss_bytes()?;
    eprintln!("loaded {} contacts in {:.1?} ({:.0}/s)", loaded.contacts, loaded.elapsed, loaded.rate());

    eprintln!("loading into PostgreSQL…");
    let pg_csv = work.join("contacts-postgres.csv");
    load::write_postgres_csv(csv, &loaded.placed, &pg_csv)?;
    let postgres_load = pg.load(&pg_csv).await?;
    postgres::ensure_loaded(&postgres_load, loaded.contacts)?;
    std::fs::remove_file(&pg_csv)?;

    let mut commands = server.commands().await?;
    let mut ids = Vec::new();
    let mut seq = loaded.last_seq;
    for (i, (name, text, _)) in standard.iter().enumerate() {
        let (id, s) = create_segment(&mut commands, &format!("bench {name}"), text, i).await?;
        ids.push(id);
        seq = seq.max(s);
    }
    eprintln!("Q1–Q12…");
    let saved: Vec<_> = ids.iter().copied().zip(standard).collect();
    let runs = tokio::task::block_in_place(|| measure_queries(config, &server, pg, saved, seq))?;

    eprintln!("defining {} saved segments…", config.segments);
    let all = criteria_set::segment_criteria(config.segments);
    let started = Instant::now();
    for (i, text) in all.iter().enumerate().skip(ids.len()) {
        let (_, s) = create_segment(&mut commands, &format!("bench segment {i}"), text, i).await?;
        seq = seq.max(s);
    }
    let segment_creation = started.elapsed();
    wait_applied(&mut queries, seq).await?;
    let rss_after_segments = server.rss_bytes()?;

    eprintln!("change-to-visible latency ({} samples)…", config.latency_samples);
    let watched = *ids.first().context("no Q1 segment")?;
    let latency =
        latency::measure(&mut commands, &mut queries, watched, &loaded.probes, config.latency_samples).await?;
    let rss_at_end = server.rss_bytes()?;

    eprintln!("exporting every contact as CSV…");
    let (everyone, s) = create_segment(&mut commands, "bench everyone", export::EVERYONE, all.len()).await?;
    let export = export::measure(&mut queries, pg, everyone, s, loaded.contacts).await?;

    // The read models' last sequence is the log's: every reply so far said so.
    let last = queries.list_segments(pb::ListSegmentsRequest::default()).await?.into_inner().sequence;
    drop((commands, queries));
    server.stop().await?;
    eprintln!("rebuilding the read models from the log (up to sequence {last})…");
    let rebuild = rebuild::run(&config.segmentd, &data_dir, &work.join("rebuilt"), last).await?;

    Ok(Results {
        config: config.clone(),
        load_average_start: String::new(),
        load_average_end: String::new(),
        generate: Duration::ZERO,
        load_until_applied,
        load_server_cpu,
        rss_after_load,
        rss_after_segments,
        rss_at_end,
        postgres_version: pg.version.clone(),
        postgres_settings: pg.settings().await?,
        postgres_load,
        queries: runs,
        segments_created: all.len(),
        segment_creation,
        latency,
        export,
        rebuild,
        load: loaded,
    })
}

/// Q1–Q12 (segment id, name, criteria, SQL) on a runtime of one thread of
/// their own, with connections of their own: no request then waits for a
/// wake-up on another worker (a CountMembers round trip takes about 40 µs
/// on one thread, 54–159 µs on the default runtime), for both systems
/// alike. The other phases keep the default runtime, as segctl does: an
/// export decodes on one worker while it writes CSV on the other.
fn measure_queries(
    config: &Config,
    server: &server::Server,
    pg: &postgres::Postgres,
    saved: Vec<(u64, (&str, &str, String))>,
    seq: u64,
) -> anyhow::Result<Vec<queries::QueryRun>> {
    let on_one_thread = || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let mut queries = server.queries().await?;
            let pg = pg.another(&config.postgres_url).await?;
            let mut runs = Vec::new();
            for (id, q) in saved {
                runs.push(queries::measure(&mut queries, &pg, id, seq, &config.at, config.repeat, q).await?);
            }
            anyhow::Ok(runs)
        })
    };
    std::thread::scope(|scope| scope.spawn(on_one_thread).join())
        .map_err(|_| anyhow::anyhow!("the Q1–Q12 thread panicked"))?
}

async fn create_segment(
    commands: &mut CommandsClient<Channel>,
    name: &str,
    text: &str,
    i: usize,
) -> anyhow::Result<(u64, u64)> {
    let reply = commands
        .create_segment(pb::CreateSegmentRequest {
            command_id: format!("segment-bench-segment-{i}"),
            name: name.to_owned(),
            criteria: Some(pb::CriteriaInput { kind: Some(pb::criteria_input::Kind::Text(text.to_owned())) }),
        })
        .await
        .with_context(|| format!("CreateSegment {name}: {text}"))?
        .into_inner();
    let segment = reply.segment.context("CreateSegment answered no segment")?;
    Ok((segment.id, reply.sequence))
}

/// Waits until the read model has applied `seq`. A query gives up with
/// UNAVAILABLE after the server's `--query-wait-ms`; a projector still busy
/// with a million contacts may need several of those.
async fn wait_applied(queries: &mut QueriesClient<Channel>, seq: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let request = pb::ListSegmentsRequest { min_sequence: seq, ..Default::default() };
        match queries.list_segments(request).await {
            Ok(_) => return Ok(()),
            Err(status) if status.code() == tonic::Code::Unavailable && Instant::now() < deadline => {}
            Err(status) => return Err(status).context(format!("waiting for the read model to apply {seq}")),
        }
    }
}

/// `/proc/loadavg`'s first three fields, e.g. "3.12 2.80 2.41".
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
