//! How a [`NatsLog`](crate::NatsLog) reaches its server and what stream it
//! keeps there: plain settings with production defaults, checked once at
//! connect so that a bad name fails at startup, not at the first append.
//!
//! **Must not depend on** tonic, prost or sled; nor on the CLI: the binary
//! maps its flags onto this struct.

use segmentd_log::LogError;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of the NATS JetStream event log.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    /// Server URL(s), comma separated, e.g. `nats://10.0.0.1:4222,nats://10.0.0.2:4222`.
    pub url: String,
    /// The one stream that holds every event.
    pub stream: String,
    /// Subjects are `<prefix>.<org>.<aggregate kind>.<hex of the aggregate id>`.
    pub subject_prefix: String,
    /// Stream replicas: 1 on one machine, 3 in a cluster. Updated in place
    /// when an existing stream has another count.
    pub replicas: usize,
    /// How long JetStream remembers `Nats-Msg-Id`s. It only absorbs fast
    /// retries; idempotency beyond it comes from the command id stored in
    /// every event (see the crate docs).
    pub duplicate_window: Duration,
    /// A `.creds` file (JWT + NKey seed) for decentralised auth.
    pub credentials_file: Option<PathBuf>,
    /// User and password, for servers with an `authorization` block.
    pub user_password: Option<(String, Secret)>,
    /// An authorization token.
    pub token: Option<Secret>,
    /// PEM file of the CA(s) that sign the server's certificate; setting it
    /// (or `require_tls`) makes the connection TLS.
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate and key files for servers that verify clients.
    pub tls_client_cert: Option<(PathBuf, PathBuf)>,
    /// Refuse to talk to a server without TLS.
    pub require_tls: bool,
    /// Bounds each JetStream API request and each publish acknowledgement.
    pub request_timeout: Duration,
    /// How long one append keeps retrying retryable failures (timeouts,
    /// "temporarily unavailable") before it answers `Unavailable`.
    pub append_timeout: Duration,
    /// How long an operation waits for a lost connection to come back before
    /// it answers `Unavailable`. Short: the caller (gRPC client) retries.
    pub reconnect_grace: Duration,
    /// Longest pause between two reconnect attempts (async-nats backs off
    /// exponentially up to this).
    pub max_reconnect_delay: Duration,
    /// Publishes whose acknowledgement is outstanding, per `NatsLog`; more
    /// wait. Pipelining is what makes appends fast, this bounds its memory.
    pub max_in_flight: usize,
    /// Shown by the server's connection monitoring.
    pub client_name: String,
}

/// A password or token: printed as `***` so that settings can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

pub const DEFAULT_STREAM: &str = "SEGMENTD";
pub const DEFAULT_SUBJECT_PREFIX: &str = "seg.evt";

impl NatsConfig {
    pub fn new(url: impl Into<String>) -> Self {
        NatsConfig {
            url: url.into(),
            stream: DEFAULT_STREAM.to_owned(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            credentials_file: None,
            user_password: None,
            token: None,
            tls_ca: None,
            tls_client_cert: None,
            require_tls: false,
            request_timeout: Duration::from_secs(5),
            append_timeout: Duration::from_secs(10),
            reconnect_grace: Duration::from_secs(1),
            max_reconnect_delay: Duration::from_secs(2),
            max_in_flight: 16_384,
            client_name: "segmentd".to_owned(),
        }
    }

    /// Each URL of [`NatsConfig::url`]: async-nats parses a string as one
    /// URL, so a cluster's list is split here.
    pub fn server_urls(&self) -> Vec<&str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
    }

    /// The stream's one subject filter, `<prefix>.>`.
    pub fn all_subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }

    pub(crate) fn validate(&self) -> Result<(), LogError> {
        let bad = |what: String| Err(LogError::InvalidRequest(format!("NATS log settings: {what}")));
        if self.server_urls().is_empty() {
            return bad("the server URL is empty".into());
        }
        // JetStream names become subject tokens of its API, so the same
        // characters are refused there.
        if self.stream.is_empty() || !self.stream.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return bad(format!("stream name {:?} must be letters, digits, '-' or '_'", self.stream));
        }
        if self.subject_prefix.split('.').any(|t| !is_plain_token(t)) {
            return bad(format!(
                "subject prefix {:?} must be dot-separated tokens of letters, digits, '-' or '_'",
                self.subject_prefix
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return bad(format!("replicas must be 1 to 5, not {}", self.replicas));
        }
        if self.duplicate_window.is_zero() {
            return bad("the duplicate window must be positive".into());
        }
        if self.request_timeout.is_zero() || self.append_timeout.is_zero() {
            return bad("timeouts must be positive".into());
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight must be positive".into());
        }
        Ok(())
    }
}

/// A subject token that needs no escaping anywhere: what org names are.
pub(crate) fn is_plain_token(t: &str) -> bool {
    !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_names_are_refused() {
        let ok = NatsConfig::new("nats://127.0.0.1:4222");
        ok.validate().unwrap();
        assert_eq!(ok.all_subjects(), "seg.evt.>");
        for bad in [
            NatsConfig { stream: "a.b".into(), ..ok.clone() },
            NatsConfig { subject_prefix: "seg.*".into(), ..ok.clone() },
            NatsConfig { subject_prefix: "seg..evt".into(), ..ok.clone() },
            NatsConfig { replicas: 0, ..ok.clone() },
            NatsConfig { duplicate_window: Duration::ZERO, ..ok.clone() },
            NatsConfig { url: " , ".into(), ..ok.clone() },
        ] {
            assert!(matches!(bad.validate(), Err(LogError::InvalidRequest(_))), "{bad:?}");
        }
    }

    #[test]
    fn a_list_of_urls_is_every_server_of_a_cluster() {
        let cluster = NatsConfig::new("nats://10.0.0.1:4222, nats://10.0.0.2:4222,nats://10.0.0.3:4222,");
        assert_eq!(cluster.server_urls(), ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222"]);
        assert_eq!(NatsConfig::new("nats://one:4222").server_urls(), ["nats://one:4222"]);
    }
}
