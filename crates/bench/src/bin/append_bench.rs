//! `append-bench`: events per second through segmentd's gRPC command path
//! against raw JetStream publishes of the same messages, on one
//! nats-server, alternating the two `--repeat` times; prints a table (or,
//! with `--json`, one JSON object) with medians, extremes and the ratio.
//!
//! Build with `--release`. Without `--nats-url` it starts a private
//! nats-server (the log-nats testkit) on a temporary store, with
//! `--nats-config` if given (e.g. `crates/bench/config/sync-always.conf`).
//!
//! **Must not depend on** product internals: only `segmentd_server::serve`,
//! the gRPC API, the product's span names and plain async-nats.

use anyhow::Context as _;
use clap::Parser;
use segmentd_bench::command_path;
use segmentd_bench::phases::SpanTimes;
use segmentd_bench::raw::{self, Lookup, Shape};
use segmentd_bench::report::Report;
use segmentd_bench::streams::{self, RunNames, StreamName};
use segmentd_log_nats::testkit::NatsServer;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

#[derive(Parser, Debug)]
#[command(name = "append-bench", about = "gRPC command path vs raw JetStream publishes, events/s")]
struct Args {
    /// NATS server to use; without it a private nats-server is started on a
    /// temporary store (and removed at exit).
    #[arg(long, env = "SEGMENTD_BENCH_NATS_URL")]
    nats_url: Option<String>,
    /// A nats-server configuration file for the private server, e.g. one
    /// holding `jetstream { sync_interval: always }` to measure fsync before
    /// every acknowledgement (nats-server 2.10+: choose the binary with
    /// `NATS_SERVER_BIN`). Port, address and store stay the testkit's.
    #[arg(long, env = "SEGMENTD_BENCH_NATS_CONFIG", conflicts_with = "nats_url")]
    nats_config: Option<std::path::PathBuf>,
    /// Events (= new contacts = messages) per measurement.
    #[arg(long, env = "SEGMENTD_BENCH_EVENTS", default_value_t = 200_000)]
    events: usize,
    /// Contacts per UpsertContacts request, and messages per raw batch.
    #[arg(long, env = "SEGMENTD_BENCH_BATCH", default_value_t = 500)]
    batch: usize,
    /// Concurrent gRPC clients, and concurrent raw publishing tasks.
    #[arg(long, env = "SEGMENTD_BENCH_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
    /// Repetitions of each measurement (alternating), for median/min/max.
    #[arg(long, env = "SEGMENTD_BENCH_REPEAT", default_value_t = 5)]
    repeat: usize,
    /// Acks outstanding in the pipelined raw publish (the event log's
    /// default `max_in_flight`).
    #[arg(long, env = "SEGMENTD_BENCH_WINDOW", default_value_t = 16_384)]
    window: usize,
    /// Also publish raw with the event log's headers (Nats-Msg-Id, expected
    /// subject sequence, Segmentd-*), concurrent shape.
    #[arg(long, env = "SEGMENTD_BENCH_RAW_HEADERS")]
    raw_headers: bool,
    /// Also time per-subject "last message" lookups like the writer's
    /// `last_of`, one per event, concurrent shape: as JetStream API requests
    /// (what the event log does) and as direct gets.
    #[arg(long, env = "SEGMENTD_BENCH_LOOKUPS")]
    lookups: bool,
    /// Keep the benchmark's streams instead of deleting each after use.
    #[arg(long, env = "SEGMENTD_BENCH_KEEP_STREAMS")]
    keep_streams: bool,
    /// Print one JSON object instead of the table.
    #[arg(long, env = "SEGMENTD_BENCH_JSON")]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.events > 0 && args.batch > 0 && args.concurrency > 0 && args.repeat > 0,
        "counts must be positive"
    );
    anyhow::ensure!(
        args.batch <= segmentd_server::write::MAX_BATCH,
        "--batch is at most {}",
        segmentd_server::write::MAX_BATCH
    );
    let spans = SpanTimes::default();
    tracing_subscriber::registry()
        .with(spans.clone().with_filter(filter_fn(SpanTimes::is_timed)))
        .with(fmt::layer().with_writer(std::io::stderr).with_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,segmentd_server::serve=error")),
        ))
        .init();

    // Kept alive until the end: dropping it kills the server.
    let (url, source, server_pid, _private) = match &args.nats_url {
        Some(url) => (url.clone(), "external server (--nats-url)".to_owned(), None, None),
        None => {
            let (server, config) = match &args.nats_config {
                Some(path) => {
                    let config = std::fs::read_to_string(path)
                        .with_context(|| format!("reading the nats-server config {}", path.display()))?;
                    // Named with its content in the report: the config is what is measured.
                    let shown = config
                        .lines()
                        .filter(|l| !l.trim_start().starts_with('#'))
                        .flat_map(str::split_whitespace)
                        .collect::<Vec<_>>()
                        .join(" ");
                    (NatsServer::start_with_config(&config).await, format!(", config {}: {shown}", path.display()))
                }
                None => (NatsServer::start().await, String::new()),
            };
            let source = format!(
                "private nats-server started by the testkit, store {} (removed at exit){config}",
                server.store_dir().display()
            );
            let pid = segmentd_bench::cpu::find_server(&server.store_dir().to_string_lossy());
            (server.url(), source, pid, Some(server))
        }
    };
    eprintln!("nats: {source} at {url}");
    let admin = async_nats::ConnectOptions::new().name("segmentd-bench-admin").connect(&url).await?;
    let admin_js = raw::context(admin.clone(), 1024);
    let publisher = async_nats::ConnectOptions::new().name("segmentd-bench-raw").connect(&url).await?;
    let js = raw::context(publisher, args.window);
    let version = admin.server_info().version;

    let prepared = Instant::now();
    let contacts = segmentd_bench::dataset::contacts(args.events)?;
    eprintln!("dataset: {} contacts prepared in {:.1?}", contacts.len(), prepared.elapsed());

    let names = RunNames::new();
    let mut sample = None;
    let (mut command_runs, mut pipelined, mut concurrent) = (Vec::new(), Vec::new(), Vec::new());
    let (mut with_headers, mut lookups, mut direct_lookups) = (Vec::new(), Vec::new(), Vec::new());
    let mut span_totals: BTreeMap<&'static str, (u64, Duration)> = BTreeMap::new();
    let keep = args.keep_streams;
    for rep in 0..args.repeat {
        // (a) the command path.
        let name = names.stream("cmd", rep);
        let requests = segmentd_bench::dataset::requests(&contacts, args.batch, &format!("bench-{}-{rep}", names.run));
        spans.take();
        let run = command_path::run(&url, &name, requests, args.concurrency, server_pid.as_deref()).await?;
        for (k, (n, d)) in spans.take() {
            let e = span_totals.entry(k).or_default();
            e.0 += n;
            e.1 += d;
        }
        let stored = streams::message_count(&admin_js, &name.stream).await?;
        anyhow::ensure!(stored == run.events, "stream {} holds {stored} messages, {} events", name.stream, run.events);
        eprintln!("[{rep}] (a) command path: {} events in {:.2?} = {:.0}/s", run.events, run.elapsed, run.rate());
        if sample.is_none() {
            let s = streams::sample(&admin_js, &name, run.events.min(1000)).await?;
            eprintln!(
                "message size: {:.0} B payload mean ({}..{}), {:.0} B headers",
                s.payload_mean, s.payload_min, s.payload_max, s.header_mean
            );
            sample = Some(s);
        }
        command_runs.push(run);
        cleanup(&admin_js, &name, keep).await?;
        let sample = sample.as_ref().context("no sample of the command path's messages")?;

        // (b) raw publishes, pipelined and with the command path's shape.
        let concurrent_shape = Shape::Concurrent { concurrency: args.concurrency, batch: args.batch };
        let mut variants = vec![("rawp", Shape::Pipelined { window: args.window }, false)];
        variants.push(("rawc", concurrent_shape, false));
        if args.raw_headers {
            variants.push(("rawh", concurrent_shape, true));
        }
        for (tag, shape, headers) in variants {
            let name = names.stream(tag, rep);
            streams::create_like_event_log(&admin_js, &name).await?;
            let messages = raw::messages(&name, sample, args.events, headers, args.batch);
            let run = raw::publish(&js, messages, shape, server_pid.as_deref()).await?;
            let stored = streams::message_count(&admin_js, &name.stream).await?;
            anyhow::ensure!(
                stored == run.messages,
                "stream {} holds {stored} of {} messages",
                name.stream,
                run.messages
            );
            eprintln!("[{rep}] (b) {tag} {shape:?} headers={headers}: {:.0}/s", run.rate());
            match tag {
                "rawp" => pipelined.push(run),
                "rawc" => {
                    concurrent.push(run);
                    if args.lookups {
                        let (n, c, b, pid) = (args.events, args.concurrency, args.batch, server_pid.as_deref());
                        let l = raw::lookups(&js, &name, sample, n, c, b, Lookup::MsgGet, pid).await?;
                        eprintln!("[{rep}] msg-get lookups on a stream of {stored}: {:.0}/s", l.rate());
                        lookups.push(l);
                        streams::allow_direct(&admin_js, &name.stream).await?;
                        let l = raw::lookups(&js, &name, sample, n, c, b, Lookup::DirectGet, pid).await?;
                        eprintln!("[{rep}] direct-get lookups on a stream of {stored}: {:.0}/s", l.rate());
                        direct_lookups.push(l);
                    }
                }
                _ => with_headers.push(run),
            }
            cleanup(&admin_js, &name, keep).await?;
        }
    }

    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        nats_url: url,
        nats_source: source,
        nats_version: version,
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        events: args.events,
        batch: args.batch,
        concurrency: args.concurrency,
        repeat: args.repeat,
        window: args.window,
        sample: sample.context("nothing was measured")?,
        command_runs,
        pipelined,
        concurrent,
        with_headers,
        lookups,
        direct_lookups,
        spans: span_totals,
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

async fn cleanup(js: &async_nats::jetstream::Context, name: &StreamName, keep: bool) -> anyhow::Result<()> {
    if !keep {
        streams::delete(js, &name.stream).await?;
    }
    Ok(())
}
