//! The results of one `segment-bench` run: a table for people, one JSON
//! object with the same numbers, and issue 5's targets checked against
//! them. A query whose answers disagree shows both answers and no speed.
//!
//! **Must not depend on** the server or a database: it formats results.

use super::Results;
use super::criteria_set::PUBLISHED_COUNTS_1M_SEED_42;
use super::latency::Latencies;
use super::queries::{Agreement, PAGE_SIZE, QueryRun};
use crate::stats::Summary;
use serde_json::{Value, json};
use std::fmt::Write as _;

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

/// One of issue 5's targets and whether this run met it.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub what: &'static str,
    pub goal: String,
    pub measured: String,
    /// `None`: not measurable in this run (e.g. no agreeing query).
    pub met: Option<bool>,
}

/// The medians of the count ratios, over the queries whose answers agree.
fn count_ratios(queries: &[QueryRun]) -> Vec<f64> {
    queries.iter().filter_map(|q| q.count_speed()).map(|s| s.ratio()).collect()
}

fn page_ratios(queries: &[QueryRun]) -> Vec<f64> {
    queries.iter().filter_map(|q| q.page_speed()).map(|s| s.ratio()).collect()
}

pub fn targets(r: &Results) -> Vec<Target> {
    let counts = count_ratios(&r.queries);
    let pages = page_ratios(&r.queries);
    let median = Summary::of(&counts);
    let (_, read_p99) = Latencies::p50_p99(&r.latency.readable);
    let (_, feed_p99) = Latencies::p50_p99(&r.latency.on_feed);
    let rss = r.rss_after_load.max(r.rss_after_segments).max(r.rss_at_end) as f64;
    // The RSS goal is stated for 1M contacts; a smaller run says nothing about it.
    let rss_judged = r.load.contacts >= 1_000_000;
    vec![
        Target {
            what: "counts, median query",
            goal: ">= 20x PostgreSQL".into(),
            measured: median.map(|m| format!("{:.1}x", m.median)).unwrap_or_else(|| "n/a".into()),
            met: median.map(|m| m.median >= 20.0),
        },
        Target {
            what: "counts, slowest query",
            goal: "no slower than PostgreSQL (>= 1x)".into(),
            measured: median.map(|m| format!("{:.1}x", m.min)).unwrap_or_else(|| "n/a".into()),
            met: median.map(|m| m.min >= 1.0),
        },
        Target {
            what: "first pages, slowest query",
            goal: "no slower than PostgreSQL (>= 1x)".into(),
            measured: Summary::of(&pages).map(|m| format!("{:.1}x", m.min)).unwrap_or_else(|| "n/a".into()),
            met: Summary::of(&pages).map(|m| m.min >= 1.0),
        },
        Target {
            what: "change-to-visible p99 (read)",
            goal: "<= 10 ms".into(),
            measured: format!("{read_p99:.2} ms"),
            met: (!r.latency.readable.is_empty()).then_some(read_p99 <= 10.0),
        },
        Target {
            what: "change-to-visible p99 (feed)",
            goal: "<= 10 ms".into(),
            measured: format!("{feed_p99:.2} ms"),
            met: (!r.latency.on_feed.is_empty()).then_some(feed_p99 <= 10.0),
        },
        Target {
            what: "rebuild",
            goal: ">= 200,000 events/s".into(),
            measured: format!("{:.0} events/s", r.rebuild.rate()),
            met: Some(r.rebuild.rate() >= 200_000.0),
        },
        Target {
            what: "server RSS (largest seen)",
            goal: "<= 1.5 GiB at 1M contacts".into(),
            measured: format!("{:.2} GiB", rss / GIB),
            met: rss_judged.then_some(rss <= 1.5 * GIB),
        },
    ]
}

/// Queries whose answers disagree: the run must fail.
pub fn disagreements(r: &Results) -> Vec<(String, Agreement)> {
    r.queries
        .iter()
        .filter_map(|q| match q.agreement() {
            Agreement::Agree => None,
            other => Some((q.name.clone(), other)),
        })
        .collect()
}

/// Whether the counts equal the ones published for 1M rows of seed 42;
/// `None` for another size or seed.
pub fn published_counts_match(r: &Results) -> Option<bool> {
    (r.config.contacts == 1_000_000 && r.config.seed == 42 && r.queries.len() == 12).then(|| {
        r.queries.iter().zip(PUBLISHED_COUNTS_1M_SEED_42).all(|(q, n)| q.segmentd_count == n && q.postgres_count == n)
    })
}

fn yes_no(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measurable",
    }
}

pub fn table(r: &Results) -> String {
    let mut t = String::new();
    let c = &r.config;
    let _ = writeln!(
        t,
        "segment-bench: {} contacts (gen_contacts.py --seed {}), {} cores",
        r.load.contacts,
        c.seed,
        cpus()
    );
    let _ = writeln!(t, "load average at start {}, at end {}", r.load_average_start, r.load_average_end);
    let _ = writeln!(
        t,
        "PostgreSQL {} ({})",
        r.postgres_version,
        r.postgres_settings.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(t);
    let _ = writeln!(t, "LOAD");
    let _ = writeln!(t, "  generator (to a file, not timed below)      {:>10.1} s", r.generate.as_secs_f64());
    let _ = writeln!(
        t,
        "  segmentd UpsertContacts ({} x {} in flight)  {:>10.1} s  {:>9.0} contacts/s",
        c.batch,
        c.concurrency,
        r.load.elapsed.as_secs_f64(),
        r.load.rate()
    );
    let _ = writeln!(
        t,
        "  segmentd until the read model applied it    {:>10.1} s  {:>9.0} contacts/s",
        r.load_until_applied.as_secs_f64(),
        r.load.contacts as f64 / r.load_until_applied.as_secs_f64()
    );
    if let Some(cpu) = r.load_server_cpu {
        let _ = writeln!(
            t,
            "  segmentd server CPU during the load         {:>10.1} s  {:>9.1} µs/contact",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / r.load.contacts as f64
        );
    }
    let p = &r.postgres_load;
    let _ = writeln!(
        t,
        "  PostgreSQL COPY                             {:>10.1} s  {:>9.0} rows/s",
        p.copy.as_secs_f64(),
        p.rows as f64 / p.copy.as_secs_f64()
    );
    let _ = writeln!(t, "  PostgreSQL CREATE INDEX (15 indexes)        {:>10.1} s", p.indexes.as_secs_f64());
    let _ = writeln!(t, "  PostgreSQL VACUUM ANALYZE                   {:>10.1} s", p.analyze.as_secs_f64());
    let _ = writeln!(
        t,
        "  segmentd RSS: after load {:.0} MiB, with {} segments {:.0} MiB, at end {:.0} MiB",
        r.rss_after_load as f64 / MIB,
        r.segments_created,
        r.rss_after_segments as f64 / MIB,
        r.rss_at_end as f64 / MIB
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "QUERIES (medians of {} after a warm-up, ms; ratio = PostgreSQL / segmentd, above 1 segmentd is faster)",
        c.repeat
    );
    let _ = writeln!(
        t,
        "  (pages: segmentd's rows layout vs SELECT *, every value read as text; (maps): segmentd's contacts layout; \
         (pg recv): PostgreSQL's rows arrived, unread)"
    );
    let _ = writeln!(
        t,
        "  {:<4} {:>9} {:>9} {:>9} {:>8}   {:>9} {:>9} {:>8}   {:>7} {:>9}  check",
        "", "count", "segmentd", "postgres", "ratio", "page sgd", "page pg", "ratio", "(maps)", "(pg recv)"
    );
    for q in &r.queries {
        let count = q.count_speed();
        let page = q.page_speed();
        let f = |v: Option<f64>, prec: usize| v.map(|v| format!("{v:.prec$}")).unwrap_or_else(|| "—".into());
        let check = match q.agreement() {
            Agreement::Agree => "same count, same first page".to_owned(),
            Agreement::CountsDiffer { segmentd, postgres } => {
                format!("REFUSED: counts differ (segmentd {segmentd}, PostgreSQL {postgres})")
            }
            Agreement::PagesDiffer { at, segmentd, postgres } => {
                format!("REFUSED page: differs at row {at} (segmentd {segmentd:?}, PostgreSQL {postgres:?})")
            }
        };
        let _ = writeln!(
            t,
            "  {:<4} {:>9} {:>9} {:>9} {:>8}   {:>9} {:>9} {:>8}   {:>7} {:>9}  {check}",
            q.name,
            q.segmentd_count,
            f(count.map(|s| s.segmentd_ms), 3),
            f(count.map(|s| s.postgres_ms), 2),
            f(count.map(|s| s.ratio()), 1),
            f(page.map(|s| s.segmentd_ms), 3),
            f(page.map(|s| s.postgres_ms), 2),
            f(page.map(|s| s.ratio()), 1),
            f(q.contacts_page_ms(), 3),
            f(q.postgres_received_page_ms(), 2),
        );
    }
    match published_counts_match(r) {
        Some(true) => {
            let _ = writeln!(t, "  counts equal the published ones for 1M rows of seed 42 (shared/bench/README.md)");
        }
        Some(false) => {
            let _ = writeln!(t, "  counts DIFFER from the published ones for 1M rows of seed 42");
        }
        None => {}
    }
    let _ = writeln!(t);
    let l = &r.latency;
    let _ = writeln!(
        t,
        "CHANGE TO VISIBLE ({} saved segments, {} changes in and out of Q1; ms)",
        r.segments_created,
        l.samples()
    );
    for (name, series) in [
        ("command acknowledged", &l.acknowledged),
        ("readable (CountMembers, min_sequence)", &l.readable),
        ("on the WatchMembership stream", &l.on_feed),
    ] {
        let (p50, p99) = Latencies::p50_p99(series);
        let _ = writeln!(t, "  {name:<40} p50 {p50:>7.2}   p99 {p99:>7.2}");
    }
    let _ =
        writeln!(t, "  ({} saved segments defined in {:.1} s)", r.segments_created, r.segment_creation.as_secs_f64());
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "REBUILD (segmentd rebuild, server stopped): {} events in {:.1} s = {:.0} events/s, peak RSS {:.0} MiB",
        r.rebuild.events,
        r.rebuild.elapsed.as_secs_f64(),
        r.rebuild.rate(),
        r.rebuild.peak_rss_bytes as f64 / MIB
    );
    let e = &r.export;
    let _ = writeln!(t, "EXPORT (every contact as CSV, {} rows on both sides)", e.segmentd.rows);
    for (name, side) in
        [("segmentd ExportContacts -> CSV", &e.segmentd), ("PostgreSQL COPY ... TO STDOUT CSV", &e.postgres)]
    {
        let _ = writeln!(
            t,
            "  {name:<35} {:>8.2} s  {:>9.0} rows/s  {:>6.0} MiB",
            side.elapsed.as_secs_f64(),
            side.rate(),
            side.bytes as f64 / MIB
        );
    }
    let _ = writeln!(t, "  ratio (segmentd rows/s / PostgreSQL rows/s) {:.2}", e.segmentd.rate() / e.postgres.rate());
    let _ = writeln!(t);
    let _ = writeln!(t, "TARGETS (issue 5)");
    for target in targets(r) {
        let _ =
            writeln!(t, "  {:<30} {:<36} {:>16}  {}", target.what, target.goal, target.measured, yes_no(target.met));
    }
    let refused = disagreements(r);
    if !refused.is_empty() {
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "{} of {} queries disagree with PostgreSQL: no speed is reported for them (see above).",
            refused.len(),
            r.queries.len()
        );
    }
    t
}

pub fn json(r: &Results) -> Value {
    let c = &r.config;
    let series = |s: &[std::time::Duration]| {
        let (p50, p99) = Latencies::p50_p99(s);
        json!({ "p50_ms": p50, "p99_ms": p99, "samples": s.len() })
    };
    json!({
        "contacts": r.load.contacts,
        "seed": c.seed,
        "cores": cpus(),
        "load_average": { "start": r.load_average_start, "end": r.load_average_end },
        "postgres": {
            "version": r.postgres_version,
            "settings": r.postgres_settings.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        },
        "load": {
            "generator_s": r.generate.as_secs_f64(),
            "segmentd_s": r.load.elapsed.as_secs_f64(),
            "segmentd_contacts_per_s": r.load.rate(),
            "segmentd_until_applied_s": r.load_until_applied.as_secs_f64(),
            "segmentd_server_cpu_s": r.load_server_cpu.map(|d| d.as_secs_f64()),
            "batch": c.batch,
            "concurrency": c.concurrency,
            "postgres_copy_s": r.postgres_load.copy.as_secs_f64(),
            "postgres_indexes_s": r.postgres_load.indexes.as_secs_f64(),
            "postgres_analyze_s": r.postgres_load.analyze.as_secs_f64(),
        },
        "rss_bytes": { "after_load": r.rss_after_load, "after_segments": r.rss_after_segments, "at_end": r.rss_at_end },
        "queries": r.queries.iter().map(|q| {
            let count = q.count_speed();
            let page = q.page_speed();
            json!({
                "name": q.name,
                "criteria": q.criteria,
                "sql": q.sql,
                "segmentd_count": q.segmentd_count,
                "postgres_count": q.postgres_count,
                "agreement": format!("{:?}", q.agreement()),
                "count_ms": count.map(|s| json!({ "segmentd": s.segmentd_ms, "postgres": s.postgres_ms, "ratio": s.ratio() })),
                "first_page_ms": page.map(|s| json!({ "segmentd": s.segmentd_ms, "postgres": s.postgres_ms, "ratio": s.ratio() })),
                "first_page_contacts_layout_ms": q.contacts_page_ms(),
                "first_page_postgres_received_ms": q.postgres_received_page_ms(),
                "page_size": PAGE_SIZE,
                "repeat": c.repeat,
            })
        }).collect::<Vec<_>>(),
        "change_to_visible": {
            "segments": r.segments_created,
            "segment_creation_s": r.segment_creation.as_secs_f64(),
            "acknowledged": series(&r.latency.acknowledged),
            "readable": series(&r.latency.readable),
            "on_feed": series(&r.latency.on_feed),
        },
        "rebuild": {
            "events": r.rebuild.events,
            "seconds": r.rebuild.elapsed.as_secs_f64(),
            "events_per_s": r.rebuild.rate(),
            "peak_rss_bytes": r.rebuild.peak_rss_bytes,
        },
        "export": {
            "rows": r.export.segmentd.rows,
            "segmentd": { "seconds": r.export.segmentd.elapsed.as_secs_f64(), "rows_per_s": r.export.segmentd.rate(), "bytes": r.export.segmentd.bytes },
            "postgres": { "seconds": r.export.postgres.elapsed.as_secs_f64(), "rows_per_s": r.export.postgres.rate(), "bytes": r.export.postgres.bytes },
        },
        "published_counts_match": published_counts_match(r),
        "targets": targets(r).iter().map(|t| json!({ "what": t.what, "goal": t.goal, "measured": t.measured, "met": t.met })).collect::<Vec<_>>(),
        "disagreements": disagreements(r).len(),
    })
}

fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
}
