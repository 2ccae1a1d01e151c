//! `segmentd`: the server binary. Parses settings (flags, each also an
//! environment variable), sets up logging, and runs a subcommand.
//!
//! **Must not** hold logic of its own beyond wiring: everything it runs
//! lives in segmentd-server, where tests can start it in-process.

use anyhow::Context;
use clap::{Parser, Subcommand};
use segmentd_server::ServeConfig;
use segmentd_server::auth::ApiKeys;
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
    /// Commands, projector and queries in one process, on the embedded event log.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Load 10,000 sample contacts and a few segments into org "default" (idempotent).
    #[arg(long, env = "SEGMENTD_DEMO")]
    demo: bool,
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
        Command::Serve(args) => {
            init_logging(args.log_json);
            let mut config = ServeConfig::new(args.listen, args.data_dir);
            config.api_keys = ApiKeys::parse(&args.api_keys).context("--api-key")?;
            config.demo = args.demo;
            config.query_wait = Duration::from_millis(args.query_wait_ms);
            let served = segmentd_server::serve_embedded(config).await?;
            println!("segmentd listening on {}", served.addr);
            served.run_until(shutdown_signal()).await?;
        }
    }
    Ok(())
}
