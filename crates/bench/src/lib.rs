//! Benchmarks of segmentd, each measuring its peer in the same run. See
//! `BENCHMARKS.md` at the workspace root for results.
//!
//! `append-bench` (src/bin/append_bench.rs) measures, against one
//! nats-server, how many events per second the gRPC command path appends
//! (an in-process command node answering `UpsertContacts`) next to what raw
//! async-nats JetStream publishes of the same messages achieve, and reports
//! the ratio. Its parts:
//!
//! - [`dataset`]: realistic contacts (the demo data, scaled up) as requests.
//! - [`command_path`]: measurement (a), through gRPC and a command node.
//! - [`raw`]: measurement (b), async-nats publishes to a stream of its own.
//! - [`streams`]: creating, sampling and deleting the benchmark's streams.
//! - [`phases`]: where a command's time goes, from the product's spans.
//! - [`cpu`]: CPU time of this process and of the nats-server per run.
//! - [`stats`] and [`report`]: medians, the table and the JSON.
//!
//! `segment-bench` (src/bin/segment_bench.rs, module [`segments`]) runs the
//! release `segmentd` binary as a separate process and measures loading,
//! Q1–Q12 counts and first pages, change-to-visible latency and rebuild
//! against PostgreSQL on the same machine, refusing to report a speed for
//! an answer the two disagree on.
//!
//! **Must not depend on** any product internals: it drives segmentd only
//! through public entry points (`segmentd_server::serve`, the `segmentd`
//! binary, the gRPC API, the `tracing` spans it already emits, the domain's
//! criteria parser) and talks to NATS with async-nats and to PostgreSQL with
//! tokio-postgres, so it measures what a deployment gets. No product crate
//! may depend on it.

pub mod command_path;
pub mod cpu;
pub mod dataset;
pub mod phases;
pub mod raw;
pub mod report;
pub mod segments;
pub mod stats;
pub mod streams;
