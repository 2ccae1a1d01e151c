//! `segmentd`: the server binary. Parses settings (flags, each also an
//! environment variable), sets up logging, and runs a subcommand.
//!
//! **Must not** hold logic of its own beyond wiring: everything it runs
//! lives in segmentd-server, where tests can start it in-process.

use anyhow::Context;
use clap::{Parser, Subcommand};
use segmentd_server::auth::ApiKeys;
use segmentd_server::{LogBackend, NatsConfig, Roles, ServeConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
}

impl NatsOptions {
    fn config(&self, url: String) -> NatsConfig {
        let mut config = NatsConfig::new(url);
        config.stream = self.nats_stream.clone();
        config.replicas = self.nats_replicas;
        config.credentials_file = self.nats_creds.clone();
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
    /// API keys as ORG:KEY (repeat, or comma-separate in the variable). None: open access as org "default".
    #[arg(long = "api-key", env = "SEGMENTD_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    api_keys: Vec<String>,
    /// Longest a query waits for the read model to reach its min_sequence, in milliseconds.
    #[arg(long, env = "SEGMENTD_QUERY_WAIT_MS", default_value_t = 10_000)]
    query_wait_ms: u64,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "SEGMENTD_LOG_JSON")]
    log_json: bool,
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
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
            run(config, common.log_json).await
        }
        Command::Commands { common, nats } => {
            let mut config = common.config(Roles::COMMANDS)?;
            config.backend = LogBackend::Nats(Box::new(nats.options.config(nats.nats_url)));
            run(config, common.log_json).await
        }
        Command::Queries { common, nats } => {
            let mut config = common.config(Roles::QUERIES)?;
            config.backend = LogBackend::Nats(Box::new(nats.options.config(nats.nats_url)));
            run(config, common.log_json).await
        }
    }
}

impl CommonArgs {
    fn config(&self, roles: Roles) -> anyhow::Result<ServeConfig> {
        let mut config = ServeConfig::new(self.listen, self.data_dir.clone());
        config.roles = roles;
        config.api_keys = ApiKeys::parse(&self.api_keys).context("--api-key")?;
        config.query_wait = Duration::from_millis(self.query_wait_ms);
        Ok(config)
    }
}

async fn run(config: ServeConfig, log_json: bool) -> anyhow::Result<()> {
    init_logging(log_json);
    let served = segmentd_server::serve(config).await?;
    // Scripts and tests read this line to learn the port when --listen ends in :0.
    println!("segmentd listening on {}", served.addr);
    served.run_until(shutdown_signal()).await?;
    Ok(())
}
