//! segmentd's production event log: the [`EventLog`] port on one NATS
//! JetStream stream ([`NatsLog`]), plus durable pull consumers for
//! projectors ([`DurableFollower`]) and, behind the `testkit` feature, a real
//! `nats-server` per test ([`testkit`]).
//!
//! **Must not depend on** tonic, prost or sled: the log knows events and
//! sequences, not the API or the read models. Events are bytes from
//! `segmentd_log::codec`; this crate never looks inside a payload beyond the
//! codec's header.
//!
//! # Layout on the server
//! One stream (default `SEGMENTD`, file storage, no limits, `deny_delete`,
//! `deny_purge`) with the subjects `<prefix>.>`; each aggregate has the
//! subject `<prefix>.<org>.<kind>.<hex of id>` and each event is one message:
//! payload `codec::encode(envelope)`, headers `Nats-Msg-Id`,
//! `Nats-Expected-Last-Subject-Sequence`, `Segmentd-Command-Id`,
//! `Segmentd-Event-Type` and `Segmentd-Event-Index` (`k/n`). A log
//! sequence is the JetStream stream sequence: increasing, and gapless
//! because nothing can be deleted.
//!
//! # Append semantics (and how they differ from the embedded log)
//! * Every entry's first event carries `Nats-Expected-Last-Subject-Sequence`
//!   = the entry's expected sequence; each further event of the entry is
//!   published after the previous one's ack, expecting that ack's sequence,
//!   so an entry's events stay contiguous on their subject. Entries are
//!   published concurrently, and every ack is awaited before `append`
//!   answers.
//! * **A request with several entries is not atomic.** JetStream 2.9 has no
//!   multi-subject transaction (atomic batch publish arrives with 2.12's
//!   ADR-50), so when one entry conflicts the others may be appended. The
//!   answer is still `Conflict` for that entry; a retry with the same command
//!   id appends only what is missing (below). A conflict *inside* a
//!   multi-event entry (another writer slipped in between two of its events,
//!   which needs that writer to have decided on the half-written entry) leaves
//!   the entry partial; it is reported as a conflict.
//! * **Idempotency.** Within the duplicate window, JetStream acknowledges a
//!   republished `Nats-Msg-Id` as a duplicate with the original sequence,
//!   even when its expected sequence is stale by then. Beyond it, an entry
//!   whose expected sequence conflicts is checked against the aggregate's
//!   events: if its last event (or, when others wrote after it, one of the
//!   events after the expected sequence) carries this command id, the entry
//!   counts as appended, and a partial entry is completed. All entries
//!   already there → [`Appended::Duplicate`].
//! * `Unavailable` means the outcome is unknown (e.g. the connection dropped
//!   after a publish left, and the client flushes it after reconnecting):
//!   retry the same command id. While disconnected, operations wait
//!   `reconnect_grace` for the connection and then fail rather than queue.
//! * Events of one request land in request order: publishes are sent in
//!   that order and only an entry's second and later events wait for the
//!   ack before them (they must expect its sequence), holding back what
//!   follows them. A request of many one-event entries is fully pipelined;
//!   a long single-aggregate entry costs one round trip per event.
//! * A retry that the writer *decides again* against state that already
//!   contains its own events (e.g. after an `Unavailable`, later than the
//!   duplicate window) expects the current sequence and does not conflict,
//!   so this log cannot recognise it; the writer can, from the command id in
//!   the `last_of` event it decided on.
//!
//! # Durability and transport
//! JetStream acknowledges before fsync unless the server runs with
//! `jetstream { sync_interval: always }`; that is a server setting (see
//! `deploy/`), and one the distribution's nats-server 2.9.10 does not know
//! (it refuses to start with "unknown field"): it needs 2.10 or later.
//! async-nats sets `TCP_NODELAY` on its connections itself, so there is no
//! Nagle delay on the publish/ack path.

mod append;
mod config;
mod durable;
mod errors;
mod read;
mod setup;
mod subject;
mod tail;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::{DEFAULT_STREAM, DEFAULT_SUBJECT_PREFIX, NatsConfig, Secret};
pub use durable::{Delivery, DurableFollower};
pub use subject::{COMMAND_ID_HEADER, EVENT_INDEX_HEADER, EVENT_TYPE_HEADER};

use async_nats::connection::State;
use async_nats::jetstream::{self, Context, stream::Stream};
use async_trait::async_trait;
use segmentd_domain::AggregateId;
use segmentd_log::{AppendError, AppendRequest, Appended, EventLog, LogError, Recorded, Seq};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The event log on a NATS JetStream stream. One per process is enough: it
/// multiplexes every call over one connection.
pub struct NatsLog {
    inner: Arc<Inner>,
    // Stops the tail follower when the log is dropped.
    _tail: AbortOnDrop,
}

/// What every operation shares; the tail task holds it too.
pub(crate) struct Inner {
    pub(crate) config: NatsConfig,
    pub(crate) client: async_nats::Client,
    pub(crate) js: Context,
    pub(crate) stream: Stream,
    /// The highest sequence known to exist; only ever moves up.
    pub(crate) tail: watch::Sender<Seq>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl NatsLog {
    /// Connects, creates or verifies the stream (see [`NatsConfig`]), reads
    /// the stream's tail and starts following it.
    ///
    /// Fails with `Unavailable` when the server cannot be reached and with
    /// `InvalidRequest` when the settings, or an existing stream of that
    /// name, cannot hold segmentd's log.
    pub async fn connect(config: NatsConfig) -> Result<NatsLog, LogError> {
        config.validate()?;
        let max_delay = config.max_reconnect_delay;
        let mut options = async_nats::ConnectOptions::new()
            .name(&config.client_name)
            .connection_timeout(config.request_timeout)
            .request_timeout(Some(config.request_timeout))
            // async-nats backs off up to 4 s by default; a shorter cap makes
            // a restarted server usable again sooner.
            .reconnect_delay_callback(move |attempts| {
                let exp = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX).min(16);
                Duration::from_millis(10u64.saturating_mul(1 << exp)).min(max_delay)
            })
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS connection (re)established"),
                    async_nats::Event::Disconnected => tracing::warn!("NATS connection lost; reconnecting"),
                    other => tracing::debug!(event = %other, "NATS client event"),
                }
            });
        if let Some(creds) = &config.credentials_file {
            options = options
                .credentials_file(creds)
                .await
                .map_err(|e| LogError::InvalidRequest(format!("NATS credentials file {}: {e}", creds.display())))?;
        }
        if let Some((user, password)) = &config.user_password {
            options = options.user_and_password(user.clone(), password.0.clone());
        }
        if let Some(token) = &config.token {
            options = options.token(token.0.clone());
        }
        if let Some(ca) = &config.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &config.tls_client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if config.require_tls {
            options = options.require_tls(true);
        }
        let client = options
            .connect(config.server_urls().as_slice())
            .await
            .map_err(|e| errors::unavailable(&format!("connecting to NATS at {}", config.url), e))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .max_ack_inflight(config.max_in_flight)
            // Wait for a permit rather than fail: appends are bounded by
            // `append_timeout` anyway.
            .backpressure_on_inflight(true)
            .build(client.clone());
        let stream = setup::ensure_stream(&js, &config).await?;
        let last = stream
            .get_info()
            .await
            .map_err(|e| errors::unavailable("reading the stream's tail", e))?
            .state
            .last_sequence;
        let (tail, _) = watch::channel(last);
        let inner = Arc::new(Inner { config, client, js, stream, tail });
        let task = tokio::spawn(tail::follow(Arc::downgrade(&inner), last));
        Ok(NatsLog { inner, _tail: AbortOnDrop(task) })
    }

    /// The settings this log was opened with.
    pub fn config(&self) -> &NatsConfig {
        &self.inner.config
    }

    /// The underlying connection, e.g. for health checks.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The subject an aggregate's events are stored under.
    pub fn subject_of(&self, aggregate: &AggregateId) -> Result<String, LogError> {
        subject::aggregate_subject(&self.inner.config.subject_prefix, aggregate)
    }

    /// Opens (or resumes) the durable pull consumer `name` so that the next
    /// event it delivers is the first with a sequence `>= from`: pass the
    /// read model's applied sequence + 1. See [`DurableFollower`].
    pub async fn durable_follow(&self, name: &str, from: Seq) -> Result<DurableFollower, LogError> {
        durable::open(&self.inner, name, from).await
    }

    /// Deletes a projector's durable consumer (e.g. when its read model is
    /// dropped for good). Deleting one that does not exist is not an error.
    pub async fn delete_durable(&self, name: &str) -> Result<(), LogError> {
        durable::delete(&self.inner, name).await
    }
}

impl Inner {
    /// Answers at once while connected; after a connection loss, waits a
    /// little for the reconnect and then reports `Unavailable` rather than
    /// letting work pile up in the client's buffers.
    pub(crate) async fn wait_connected(&self) -> Result<(), LogError> {
        if self.client.connection_state() == State::Connected {
            return Ok(());
        }
        let until = Instant::now() + self.config.reconnect_grace;
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let state = self.client.connection_state();
            if state == State::Connected {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(LogError::Unavailable(format!("not connected to NATS at {} ({state})", self.config.url)));
            }
        }
    }

    /// Moves the tail forward (never back) and wakes subscribers.
    pub(crate) fn advance_tail(&self, seq: Seq) {
        self.tail.send_if_modified(|tail| {
            let moved = seq > *tail;
            if moved {
                *tail = seq;
            }
            moved
        });
    }
}

#[async_trait]
impl EventLog for NatsLog {
    #[tracing::instrument(
        name = "nats_log.append",
        skip_all,
        fields(
            org = %request.org,
            command_id = %request.command_id,
            entries = request.entries.len(),
            events = request.entries.iter().map(|e| e.events.len()).sum::<usize>(),
        )
    )]
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError> {
        let result = append::append(&self.inner, request).await;
        segmentd_log::trace_append(&result);
        result
    }

    async fn last_of(&self, aggregate: &AggregateId) -> Result<Option<Recorded>, LogError> {
        read::last_of(&self.inner, aggregate).await
    }

    async fn read_aggregate(&self, aggregate: &AggregateId, after: Seq) -> Result<Vec<Recorded>, LogError> {
        read::read_aggregate(&self.inner, aggregate, after).await
    }

    async fn read(&self, from: Seq, max: usize) -> Result<Vec<Recorded>, LogError> {
        read::read(&self.inner, from, max).await
    }

    async fn last_seq(&self) -> Result<Seq, LogError> {
        let last = read::stream_last_seq(&self.inner).await?;
        self.inner.advance_tail(last);
        Ok(last)
    }

    fn subscribe(&self) -> watch::Receiver<Seq> {
        self.inner.tail.subscribe()
    }
}
