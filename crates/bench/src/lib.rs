//! Benchmarks of segmentd on its production event log, NATS JetStream.
//!
//! `append-bench` (src/bin/append_bench.rs) measures, against one
//! nats-server, how many events per second the gRPC command path appends
//! (an in-process command node answering `UpsertContacts`) next to what raw
//! async-nats JetStream publishes of the same messages achieve, and reports
//! the ratio. See `BENCHMARKS.md` at the workspace root for results.
//!
//! - [`dataset`]: realistic contacts (the demo data, scaled up) as requests.
//! - [`command_path`]: measurement (a), through gRPC and a command node.
//! - [`raw`]: measurement (b), async-nats publishes to a stream of its own.
//! - [`streams`]: creating, sampling and deleting the benchmark's streams.
//! - [`phases`]: where a command's time goes, from the product's spans.
//! - [`cpu`]: CPU time of this process and of the nats-server per run.
//! - [`stats`] and [`report`]: medians, the table and the JSON.
//!
//! **Must not depend on** any product internals: it drives segmentd only
//! through public entry points (`segmentd_server::serve`, the gRPC API, the
//! `tracing` spans it already emits) and talks to NATS with async-nats, so
//! it measures what a deployment gets. No product crate may depend on it.

pub mod command_path;
pub mod cpu;
pub mod dataset;
pub mod phases;
pub mod raw;
pub mod report;
pub mod stats;
pub mod streams;
