//! The application layer and the gRPC edge of segmentd.
//!
//! - [`write`]: command handling — load the aggregate's state from the log,
//!   `decide`, append with the expected sequence, retry on conflicts.
//! - [`grpc`]: the tonic services; each handler is thin: authenticate,
//!   convert (parse, don't validate), call the application, convert back.
//! - [`history`]: the event history read from the log (filtered replay,
//!   segment and contact histories); [`event_json`]: its stable JSON form.
//! - [`jobs`]: mass update, delete a segment's contacts and score resets
//!   as jobs that survive restarts.
//! - [`convert`]: proto ⇄ domain, once; [`status`]: errors → gRPC codes, once.
//! - [`membership_nats`]: the membership feed published on core NATS.
//! - [`serve`]: assembles log, projector, read model and services.
//! - [`rebuild`]: read models up to a point of the log, in a directory of
//!   their own (the same replay answers `as_of` queries).
//!
//! **Must not** reach into a log backend's internals or sled directly: it
//! talks to the `EventLog` port and the read model's query API.

pub mod auth;
pub mod convert;
pub mod demo;
pub mod event_json;
pub mod explain;
pub mod grpc;
pub mod history;
pub mod jobs;
pub mod membership_nats;
pub mod metrics;
pub mod rebuild;
pub mod serve;
pub mod status;
pub mod write;

pub use segmentd_log_nats::{NatsConfig, Secret};
pub use segmentd_readmodel::Clock;
pub use serve::{LogBackend, Roles, ServeConfig, Served, serve};
