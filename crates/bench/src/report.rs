//! The results of one `append-bench` run: a human table and one JSON
//! object with the same numbers.
//!
//! **Must not depend on** NATS or the server: it formats measurements.

use crate::command_path::CommandRun;
use crate::cpu::CpuUse;
use crate::phases;
use crate::raw::RawRun;
use crate::stats::{Summary, percentile_ms};
use crate::streams::Sample;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// The ratio the command path should reach against raw publishes.
pub const TARGET_RATIO: f64 = 0.5;

/// Everything measured, plus what it was measured on.
#[derive(Clone, Debug)]
pub struct Report {
    pub command: String,
    pub nats_url: String,
    /// "private nats-server (testkit) …" or "external (--nats-url)".
    pub nats_source: String,
    pub nats_version: String,
    pub cpus: usize,
    pub kernel: String,
    pub events: usize,
    pub batch: usize,
    pub concurrency: usize,
    pub repeat: usize,
    pub window: usize,
    pub sample: Sample,
    pub command_runs: Vec<CommandRun>,
    pub pipelined: Vec<RawRun>,
    pub concurrent: Vec<RawRun>,
    /// Raw concurrent publishes carrying the event log's headers, if run.
    pub with_headers: Vec<RawRun>,
    /// Per-subject "last message" lookups (`STREAM.MSG.GET`), if run.
    pub lookups: Vec<RawRun>,
    /// The same lookups as direct gets, if run.
    pub direct_lookups: Vec<RawRun>,
    /// Span totals over every command-path run.
    pub spans: BTreeMap<&'static str, (u64, Duration)>,
}

fn rates<T>(runs: &[T], rate: impl Fn(&T) -> f64) -> Option<Summary> {
    Summary::of(&runs.iter().map(rate).collect::<Vec<_>>())
}

/// What every run has: a count, a wall time and the CPU it took.
trait Run {
    fn count(&self) -> u64;
    fn elapsed(&self) -> Duration;
    fn cpu(&self) -> CpuUse;
}

impl Run for CommandRun {
    fn count(&self) -> u64 {
        self.events
    }
    fn elapsed(&self) -> Duration {
        self.elapsed
    }
    fn cpu(&self) -> CpuUse {
        self.cpu
    }
}

impl Run for RawRun {
    fn count(&self) -> u64 {
        self.messages
    }
    fn elapsed(&self) -> Duration {
        self.elapsed
    }
    fn cpu(&self) -> CpuUse {
        self.cpu
    }
}

/// Median CPU microseconds per event of this process and of the server, and
/// the median number of cores both kept busy.
fn cpu_medians<R: Run>(runs: &[R]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let per_event = |d: Duration, r: &R| d.as_secs_f64() * 1e6 / r.count().max(1) as f64;
    let bench: Vec<f64> = runs.iter().map(|r| per_event(r.cpu().bench, r)).collect();
    let server: Vec<f64> = runs.iter().filter_map(|r| Some(per_event(r.cpu().server?, r))).collect();
    let cores: Vec<f64> = runs
        .iter()
        .filter_map(|r| Some((r.cpu().bench + r.cpu().server?).as_secs_f64() / r.elapsed().as_secs_f64()))
        .collect();
    let med = |v: &[f64]| Summary::of(v).map(|s| s.median);
    (med(&bench), med(&server), med(&cores))
}

fn cpu_json<R: Run>(runs: &[R]) -> Value {
    let (bench, server, cores) = cpu_medians(runs);
    json!({ "bench_us_per_event": bench, "server_us_per_event": server, "cores_busy": cores })
}

fn runs_json<R: Run>(runs: &[R]) -> Vec<Value> {
    runs.iter()
        .map(|r| {
            json!({
                "count": r.count(),
                "seconds": r.elapsed().as_secs_f64(),
                "per_s": r.count() as f64 / r.elapsed().as_secs_f64(),
                "cpu_bench_s": r.cpu().bench.as_secs_f64(),
                "cpu_server_s": r.cpu().server.map(|d| d.as_secs_f64()),
            })
        })
        .collect()
}

impl Report {
    pub fn command_rate(&self) -> Option<Summary> {
        rates(&self.command_runs, CommandRun::rate)
    }

    pub fn pipelined_rate(&self) -> Option<Summary> {
        rates(&self.pipelined, RawRun::rate)
    }

    pub fn concurrent_rate(&self) -> Option<Summary> {
        rates(&self.concurrent, RawRun::rate)
    }

    fn ratio(&self, raw: Option<Summary>) -> Option<f64> {
        Some(self.command_rate()?.median / raw?.median)
    }

    /// All request latencies of the command path, sorted.
    fn latencies(&self) -> Vec<Duration> {
        let mut all: Vec<Duration> = self.command_runs.iter().flat_map(|r| r.latencies.iter().copied()).collect();
        all.sort();
        all
    }

    /// Mean per request: the client's round trip, the writer's span, the
    /// append span, and what lies between them.
    fn phases(&self) -> Vec<(&'static str, f64)> {
        let lat = self.latencies();
        let round_trip = lat.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / lat.len().max(1) as f64;
        let writer = phases::mean_ms(&self.spans, "upsert_contacts");
        let append = phases::mean_ms(&self.spans, "nats_log.append");
        let mut out = vec![("client round trip", round_trip)];
        if let Some(w) = writer {
            out.push(("  gRPC, transport, proto -> domain (round trip - writer)", round_trip - w));
            out.push(("  writer: upsert_contacts span", w));
            if let Some(a) = append {
                out.push(("    last_of lookups + decide (writer - append)", w - a));
                out.push(("    append: nats_log.append span", a));
            }
        }
        out
    }

    pub fn table(&self) -> String {
        let mut t = String::new();
        let s = &self.sample;
        let _ = writeln!(t, "append-bench: {}", self.command);
        let _ = writeln!(t, "nats-server {} at {} — {}", self.nats_version, self.nats_url, self.nats_source);
        let _ = writeln!(t, "machine: {} CPUs, Linux {}", self.cpus, self.kernel);
        let _ = writeln!(
            t,
            "dataset: {} events per measurement ({} contacts/request, {} concurrent clients), {} repetitions, alternating",
            self.events, self.batch, self.concurrency, self.repeat
        );
        let _ = writeln!(
            t,
            "message: ContactCreated payload {:.0} B mean ({}..{} B over {} sampled), event-log headers {:.0} B, subject suffix {:.0} B",
            s.payload_mean,
            s.payload_min,
            s.payload_max,
            s.payloads.len(),
            s.header_mean,
            s.subject_suffix_mean
        );
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "{:<52} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>6}",
            "measurement (per second)", "median", "min", "max", "bench", "server", "cores"
        );
        let _ = writeln!(t, "{:<52} {:>29} | {:>19} {:>6}", "", "", "CPU µs per event", "busy");
        let opt = |v: Option<f64>, prec: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.prec$}"));
        let mut row = |name: String, sum: Option<Summary>, cpu: (Option<f64>, Option<f64>, Option<f64>)| {
            if let Some(v) = sum {
                let _ = writeln!(
                    t,
                    "{name:<52} {:>9.0} {:>9.0} {:>9.0} | {:>9} {:>9} {:>6}",
                    v.median,
                    v.min,
                    v.max,
                    opt(cpu.0, 1),
                    opt(cpu.1, 1),
                    opt(cpu.2, 2)
                );
            }
        };
        row(
            "(a) gRPC UpsertContacts -> command node -> NATS".into(),
            self.command_rate(),
            cpu_medians(&self.command_runs),
        );
        row(
            format!("(b) raw publish, pipelined (window {})", self.window),
            self.pipelined_rate(),
            cpu_medians(&self.pipelined),
        );
        row(
            format!("(b) raw publish, {} tasks x {}-message batches", self.concurrency, self.batch),
            self.concurrent_rate(),
            cpu_medians(&self.concurrent),
        );
        row(
            "    same, with the event log's headers".into(),
            rates(&self.with_headers, RawRun::rate),
            cpu_medians(&self.with_headers),
        );
        row(
            "    last_of lookups as STREAM.MSG.GET, lookups/s".into(),
            rates(&self.lookups, RawRun::rate),
            cpu_medians(&self.lookups),
        );
        row(
            "    last_of lookups as DIRECT.GET, lookups/s".into(),
            rates(&self.direct_lookups, RawRun::rate),
            cpu_medians(&self.direct_lookups),
        );
        let _ = writeln!(t);
        if let Some(r) = self.ratio(self.pipelined_rate()) {
            let verdict = if r >= TARGET_RATIO { "meets" } else { "BELOW" };
            let _ = writeln!(t, "ratio (a)/(b pipelined):  {r:.3}  ({verdict} the target {TARGET_RATIO})");
        }
        if let Some(r) = self.ratio(self.concurrent_rate()) {
            let _ = writeln!(t, "ratio (a)/(b concurrent): {r:.3}");
        }
        let lat = self.latencies();
        let _ = writeln!(
            t,
            "(a) request latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests)",
            percentile_ms(&lat, 50.0),
            percentile_ms(&lat, 99.0),
            percentile_ms(&lat, 100.0),
            lat.len()
        );
        let _ = writeln!(t, "(a) where a request's time goes (mean ms per request, all runs):");
        for (name, ms) in self.phases() {
            let _ = writeln!(t, "    {name:<60} {ms:>8.1}");
        }
        t
    }

    pub fn json(&self) -> Value {
        let sum = |s: Option<Summary>| s.map_or(Value::Null, Summary::to_json);
        let lat = self.latencies();
        json!({
            "command": self.command,
            "nats": { "url": self.nats_url, "source": self.nats_source, "version": self.nats_version },
            "machine": { "cpus": self.cpus, "kernel": self.kernel },
            "events": self.events,
            "batch": self.batch,
            "concurrency": self.concurrency,
            "repeat": self.repeat,
            "window": self.window,
            "message": {
                "payload_bytes_mean": self.sample.payload_mean,
                "payload_bytes_min": self.sample.payload_min,
                "payload_bytes_max": self.sample.payload_max,
                "header_bytes_mean": self.sample.header_mean,
                "subject_suffix_bytes_mean": self.sample.subject_suffix_mean,
                "sampled": self.sample.payloads.len(),
            },
            "command_path": {
                "events_per_s": sum(self.command_rate()),
                "runs": runs_json(&self.command_runs),
                "cpu": cpu_json(&self.command_runs),
                "latency_ms": {
                    "p50": percentile_ms(&lat, 50.0), "p99": percentile_ms(&lat, 99.0), "max": percentile_ms(&lat, 100.0),
                },
                "phases_ms_mean": self.phases().into_iter().map(|(k, v)| (k.trim().to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
            },
            "raw_pipelined": {
                "events_per_s": sum(self.pipelined_rate()),
                "runs": runs_json(&self.pipelined),
                "cpu": cpu_json(&self.pipelined),
            },
            "raw_concurrent": {
                "events_per_s": sum(self.concurrent_rate()),
                "runs": runs_json(&self.concurrent),
                "cpu": cpu_json(&self.concurrent),
            },
            "raw_concurrent_with_headers": {
                "events_per_s": sum(rates(&self.with_headers, RawRun::rate)),
                "runs": runs_json(&self.with_headers),
                "cpu": cpu_json(&self.with_headers),
            },
            "lookups_msg_get": {
                "per_s": sum(rates(&self.lookups, RawRun::rate)),
                "runs": runs_json(&self.lookups),
                "cpu": cpu_json(&self.lookups),
            },
            "lookups_direct_get": {
                "per_s": sum(rates(&self.direct_lookups, RawRun::rate)),
                "runs": runs_json(&self.direct_lookups),
                "cpu": cpu_json(&self.direct_lookups),
            },
            "ratio": {
                "vs_pipelined": self.ratio(self.pipelined_rate()),
                "vs_concurrent": self.ratio(self.concurrent_rate()),
                "target": TARGET_RATIO,
            },
        })
    }
}
