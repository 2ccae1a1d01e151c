//! segmentd's domain: contacts, segments, criteria, commands and events, and
//! the pure `decide` / `apply` functions that turn commands into events and
//! events into state.
//!
//! **Must not depend on** anything that does I/O or knows a wire format:
//! no tokio, tonic, prost, sled, async-nats, postcard. serde derives are here
//! only so the log crate can encode payloads; the encoding lives there.

pub mod activity;
pub mod catalog;
pub mod contact;
pub mod contact_decide;
pub mod criteria;
pub mod decimal;
pub mod dependencies;
pub mod error;
pub mod event;
pub mod explain;
pub mod job;
pub mod segment;
pub mod time;
pub mod versions;

pub use contact::{Contact, Email, Field, FieldKind, FieldValue};
pub use criteria::Criteria;
pub use decimal::Decimal;
pub use error::DomainError;
pub use event::{AggregateId, AggregateKind, Envelope, Event};
pub use time::Timestamp;
