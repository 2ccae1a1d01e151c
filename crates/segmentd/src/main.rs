//! `segmentd`: the server binary. Parses settings (flags, each also an
//! environment variable), sets up logging, and runs a subcommand.
//!
//! **Must not** hold logic of its own beyond wiring: everything it runs
//! lives in segmentd-server, where tests can start it in-process.

use anyhow::Context;
use clap::{Parser, Subcommand};
use segmentd_server::auth::{ApiKeys, KeyFile, Role, key_file};
use segmentd_server::jobs::JobSettings;
use segmentd_server::rebuild::Until;
use segmentd_server::serve::TlsSettings;
use segmentd_server::{LogBackend, NatsConfig, Roles, Secret, ServeConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// glibc's allocator spent most of a member page's time consolidating its
/// free lists (`malloc_consolidate`, `unlink_chunk`) in a heap of millions
/// of small contact records; mimalloc keeps small frees in per-page lists
/// and has no such pass (BENCHMARKS.md, issue 5).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "segmentd", version, about = "Event-sourced contact segmentation over gRPC")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Commands, projector and queries in one process: on the embedded event
    /// log by default, on NATS JetStream with --nats-url.
    Serve {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        nats: NatsArgs,
        /// Load 10,000 sample contacts and a few segments into org "default" (idempotent).
        #[arg(long, env = "SEGMENTD_DEMO")]
        demo: bool,
    },
    /// A stateless command node on NATS JetStream (no read model).
    Commands {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        nats: RequiredNatsArgs,
    },
    /// A query node on NATS JetStream: its own projector and read model under --data-dir.
    Queries {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        nats: RequiredNatsArgs,
    },
    /// Builds the read models as they were at a point of the log into a new
    /// data directory (then `serve-snapshot` serves them).
    Rebuild {
        /// A log sequence (e.g. 1200), or an RFC 3339 instant: the state
        /// after the longest prefix of the log recorded at or before it.
        #[arg(long, value_parser = segmentd_server::rebuild::parse_until)]
        until: Until,
        /// The directory to build into; it must not hold a read model yet.
        #[arg(long)]
        data_dir: PathBuf,
        /// The data directory whose embedded log to read (its server must be
        /// stopped: the embedded log belongs to one process at a time).
        #[arg(long, required_unless_present = "nats_url", conflicts_with = "nats_url")]
        log_data_dir: Option<PathBuf>,
        #[command(flatten)]
        nats: NatsArgs,
        /// Log format on stderr (see serve --help).
        #[arg(long, env = "SEGMENTD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Serves a read model as it is (e.g. one built by `rebuild`): the
    /// Queries service only, without a log, a projector or `as_of`.
    ServeSnapshot {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Manage API keys: the key file holds only SHA-256 digests; a new key's
    /// secret is printed once, by `create`.
    Keys {
        #[command(flatten)]
        file: KeyFileArgs,
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(clap::Args)]
struct KeyFileArgs {
    /// The data directory whose api-keys.json to edit (what `serve --data-dir` uses).
    #[arg(long, env = "SEGMENTD_DATA_DIR", default_value = "segmentd-data")]
    data_dir: PathBuf,
    /// The key file itself, instead of <data-dir>/api-keys.json.
    #[arg(long, env = "SEGMENTD_API_KEYS_FILE")]
    api_keys_file: Option<PathBuf>,
}

impl KeyFileArgs {
    fn path(&self) -> PathBuf {
        self.api_keys_file.clone().unwrap_or_else(|| self.data_dir.join(key_file::DEFAULT_FILE_NAME))
    }
}

#[derive(Subcommand)]
enum KeysAction {
    /// Creates a key and prints its secret (shown only this once).
    Create {
        /// The organisation the key reads and writes.
        #[arg(long)]
        org: String,
        /// A name for the key, unique among the org's active keys; recorded as the actor of its commands.
        #[arg(long)]
        name: String,
        /// admin, service (writes and reads), analyst (reads, replay) or auditor (replay, audit trail).
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Lists every key (active and revoked), without secrets.
    List,
    /// Revokes a key by id, or by ORG/NAME; running servers stop accepting it within seconds.
    Revoke { key: String },
}

fn parse_role(raw: &str) -> Result<Role, String> {
    Role::parse(raw).ok_or_else(|| format!("{raw:?} is not a role; use admin, service, analyst or auditor"))
}

#[derive(clap::Args)]
struct NatsArgs {
    /// NATS server URL(s), comma separated; without it, serve uses the embedded log.
    #[arg(long, env = "SEGMENTD_NATS_URL")]
    nats_url: Option<String>,
    #[command(flatten)]
    options: NatsOptions,
}

#[derive(clap::Args)]
struct RequiredNatsArgs {
    /// NATS server URL(s), comma separated.
    #[arg(long, env = "SEGMENTD_NATS_URL")]
    nats_url: String,
    #[command(flatten)]
    options: NatsOptions,
}

#[derive(clap::Args)]
struct NatsOptions {
    /// The JetStream stream that holds every event.
    #[arg(long, env = "SEGMENTD_NATS_STREAM", default_value = segmentd_server::serve::DEFAULT_NATS_STREAM)]
    nats_stream: String,
    /// Stream replicas: 1 on one machine, 3 in a cluster.
    #[arg(long, env = "SEGMENTD_NATS_REPLICAS", default_value_t = 1)]
    nats_replicas: usize,
    /// A NATS .creds file (JWT + NKey seed).
    #[arg(long, env = "SEGMENTD_NATS_CREDS")]
    nats_creds: Option<PathBuf>,
    /// NATS user name (with --nats-password).
    #[arg(long, env = "SEGMENTD_NATS_USER", requires = "nats_password")]
    nats_user: Option<String>,
    /// NATS password (prefer the environment variable).
    #[arg(long, env = "SEGMENTD_NATS_PASSWORD", hide_env_values = true, requires = "nats_user")]
    nats_password: Option<String>,
    /// NATS authorization token (prefer the environment variable).
    #[arg(long, env = "SEGMENTD_NATS_TOKEN", hide_env_values = true)]
    nats_token: Option<String>,
    /// PEM file of the CA that signs the NATS servers' certificates; turns TLS on.
    #[arg(long, env = "SEGMENTD_NATS_TLS_CA")]
    nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS servers that verify clients (with --nats-tls-key).
    #[arg(long, env = "SEGMENTD_NATS_TLS_CERT", requires = "nats_tls_key")]
    nats_tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "SEGMENTD_NATS_TLS_KEY", requires = "nats_tls_cert")]
    nats_tls_key: Option<PathBuf>,
    /// Refuse NATS connections without TLS.
    #[arg(long, env = "SEGMENTD_NATS_REQUIRE_TLS")]
    nats_require_tls: bool,
}

impl NatsOptions {
    fn config(&self, url: String) -> NatsConfig {
        let mut config = NatsConfig::new(url);
        config.stream = self.nats_stream.clone();
        config.replicas = self.nats_replicas;
        config.credentials_file = self.nats_creds.clone();
        config.user_password = self.nats_user.clone().zip(self.nats_password.clone().map(Secret));
        config.token = self.nats_token.clone().map(Secret);
        config.tls_ca = self.nats_tls_ca.clone();
        config.tls_client_cert = self.nats_tls_cert.clone().zip(self.nats_tls_key.clone());
        config.require_tls = self.nats_require_tls;
        config
    }
}

#[derive(clap::Args)]
struct CommonArgs {
    /// Address the gRPC server listens on.
    #[arg(long, env = "SEGMENTD_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Directory for the embedded event log and the read models.
    #[arg(long, env = "SEGMENTD_DATA_DIR", default_value = "segmentd-data")]
    data_dir: PathBuf,
    /// API keys as ORG:KEY, each an admin of ORG (repeat, or comma-separate in the variable); for
    /// development — production keys live in the key file. No keys at all: open access as org "default".
    #[arg(long = "api-key", env = "SEGMENTD_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    api_keys: Vec<String>,
    /// Serve gRPC over TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "SEGMENTD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "SEGMENTD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "SEGMENTD_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// The largest request message accepted, in bytes.
    #[arg(long, env = "SEGMENTD_MAX_REQUEST_BYTES", default_value_t = segmentd_server::serve::DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
    /// The API key file (managed by `segmentd keys`); default <data-dir>/api-keys.json. Re-read when it changes.
    #[arg(long, env = "SEGMENTD_API_KEYS_FILE")]
    api_keys_file: Option<PathBuf>,
    /// Longest a query waits for the read model to reach its min_sequence, in milliseconds.
    #[arg(long, env = "SEGMENTD_QUERY_WAIT_MS", default_value_t = 10_000)]
    query_wait_ms: u64,
    /// Past states (`as_of` queries) kept in memory; each is as large as the
    /// read model was at that point.
    #[arg(long, env = "SEGMENTD_AS_OF_CACHE", default_value_t = 2)]
    as_of_cache: usize,
    /// Members per batch of a job (mass update, delete contacts, reset scores).
    #[arg(long, env = "SEGMENTD_JOB_BATCH_SIZE", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    job_batch_size: u32,
    /// Pause after each job batch, in milliseconds, to leave room for interactive writes.
    #[arg(long, env = "SEGMENTD_JOB_PAUSE_MS", default_value_t = 0)]
    job_pause_ms: u64,
    /// Serve Prometheus metrics (text format) at http://ADDR/metrics.
    #[arg(long, env = "SEGMENTD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Log format on stderr: `text` for people, `json` (one object per line,
    /// with the enclosing spans' fields: org, command id, ...) for collectors.
    #[arg(long, env = "SEGMENTD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Same as --log-format json (kept for existing scripts).
    #[arg(long, env = "SEGMENTD_LOG_JSON", hide = true)]
    log_json: bool,
    /// On NATS, query nodes publish membership changes on SUBJECT.<org>.<segment id>; "" turns that off.
    #[arg(long, env = "SEGMENTD_MEMBERSHIP_SUBJECT", default_value = segmentd_server::serve::DEFAULT_MEMBERSHIP_SUBJECT)]
    membership_subject: String,
    /// How often segments with relative conditions ("within the last 30 days") follow the clock, in milliseconds.
    #[arg(long, env = "SEGMENTD_MEMBERSHIP_TICK_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    membership_tick_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        // The current span and its parents go into every line, so a line
        // logged while handling a command carries that command's org and id.
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { common, nats, demo } => {
            let mut config = common.config(Roles::ALL)?;
            if let Some(url) = nats.nats_url {
                config.backend = LogBackend::Nats(Box::new(nats.options.config(url)));
            }
            config.demo = demo;
            run(config, common.log_format()).await
        }
        Command::Commands { common, nats } => {
            let mut config = common.config(Roles::COMMANDS)?;
            config.backend = LogBackend::Nats(Box::new(nats.options.config(nats.nats_url)));
            run(config, common.log_format()).await
        }
        Command::Queries { common, nats } => {
            let mut config = common.config(Roles::QUERIES)?;
            config.backend = LogBackend::Nats(Box::new(nats.options.config(nats.nats_url)));
            run(config, common.log_format()).await
        }
        Command::Rebuild { until, data_dir, log_data_dir, nats, log_format } => {
            init_logging(log_format);
            let (backend, log_dir) = match (nats.nats_url, log_data_dir) {
                (Some(url), _) => (LogBackend::Nats(Box::new(nats.options.config(url))), PathBuf::new()),
                (None, Some(dir)) => {
                    // Opening would create an empty log: a mistyped path must
                    // not look like a history with nothing in it.
                    anyhow::ensure!(dir.join("log").is_dir(), "--log-data-dir {}: no event log in it", dir.display());
                    (LogBackend::Embedded, dir)
                }
                (None, None) => anyhow::bail!("give --log-data-dir or --nats-url"),
            };
            let log = segmentd_server::serve::open_log(&backend, &log_dir).await?;
            let started = std::time::Instant::now();
            let reached = segmentd_server::rebuild::rebuild(&*log, &data_dir, until, 64 << 20).await?;
            let when = reached.seq_time.map(|t| format!(" (recorded {t})")).unwrap_or_default();
            println!(
                "rebuilt up to sequence {}{when} into {} in {:.1?}",
                reached.seq,
                segmentd_server::serve::read_model_dir(&data_dir).display(),
                started.elapsed()
            );
            Ok(())
        }
        Command::ServeSnapshot { common } => {
            let mut config = common.config(Roles::QUERIES)?;
            config.snapshot = true;
            run(config, common.log_format()).await
        }
        Command::Keys { file, action } => keys(&file.path(), action),
    }
}

fn keys(path: &std::path::Path, action: KeysAction) -> anyhow::Result<()> {
    match action {
        KeysAction::Create { org, name, role } => {
            let new = KeyFile::create_key(path, &org, &name, role)?;
            eprintln!(
                "created key {} ({}/{}, role {}) in {}; the secret below is not stored anywhere — keep it now:",
                new.record.id,
                new.record.org,
                new.record.name,
                new.record.role,
                path.display()
            );
            println!("{}", new.secret);
        }
        KeysAction::List => {
            println!("{:<16}  {:<20}  {:<24}  {:<8}  {:<24}  REVOKED", "ID", "ORG", "NAME", "ROLE", "CREATED");
            for k in KeyFile::list(path)? {
                println!(
                    "{:<16}  {:<20}  {:<24}  {:<8}  {:<24}  {}",
                    k.id,
                    k.org,
                    k.name,
                    k.role,
                    k.created_at,
                    k.revoked_at.as_deref().unwrap_or("-")
                );
            }
        }
        KeysAction::Revoke { key } => {
            let k = KeyFile::revoke(path, &key)?;
            eprintln!("revoked key {} ({}/{}, role {})", k.id, k.org, k.name, k.role);
        }
    }
    Ok(())
}

impl CommonArgs {
    fn log_format(&self) -> LogFormat {
        if self.log_json { LogFormat::Json } else { self.log_format }
    }

    fn config(&self, roles: Roles) -> anyhow::Result<ServeConfig> {
        let mut config = ServeConfig::new(self.listen, self.data_dir.clone());
        config.roles = roles;
        let key_file = self.api_keys_file.clone().unwrap_or_else(|| self.data_dir.join(key_file::DEFAULT_FILE_NAME));
        config.api_keys = ApiKeys::parse(&self.api_keys)
            .context("--api-key")?
            .with_file(&key_file)
            .with_context(|| format!("API key file {}", key_file.display()))?;
        config.query_wait = Duration::from_millis(self.query_wait_ms);
        config.max_request_bytes = self.max_request_bytes;
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            config.tls = Some(TlsSettings {
                cert_pem: read(cert)?,
                key_pem: read(key)?,
                client_ca_pem: self.tls_client_ca.as_ref().map(read).transpose()?,
            });
        }
        config.as_of_cache = self.as_of_cache;
        config.jobs = JobSettings { batch_size: self.job_batch_size, pause: Duration::from_millis(self.job_pause_ms) };
        config.metrics_listen = self.metrics_listen;
        config.membership_subject = self.membership_subject.clone();
        config.membership_tick = Duration::from_millis(self.membership_tick_ms);
        Ok(config)
    }
}

async fn run(config: ServeConfig, log_format: LogFormat) -> anyhow::Result<()> {
    init_logging(log_format);
    let served = segmentd_server::serve(config).await?;
    // Scripts and tests read these lines to learn the ports when an address
    // ends in :0; the metrics line comes first, so that reading up to the
    // listening line has seen it.
    if let Some(addr) = served.metrics_addr {
        println!("segmentd metrics on http://{addr}/metrics");
    }
    println!("segmentd listening on {}", served.addr);
    served.run_until(shutdown_signal()).await?;
    Ok(())
}
