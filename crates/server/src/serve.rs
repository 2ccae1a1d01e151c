//! Assembles one segmentd process: the log, the projector, the read model
//! and the gRPC services (with health and reflection), and stops it cleanly.

use crate::auth::{ApiKeys, AuthLayer};
use crate::grpc::{CommandsService, QueriesService, ReplayService};
use crate::jobs::{JobSettings, Jobs};
use crate::write::Writer;
use segmentd_log::EventLog;
use segmentd_log::embedded::EmbeddedLog;
use segmentd_log_nats::{NatsConfig, NatsLog};
use segmentd_proto::v1::commands_server::CommandsServer;
use segmentd_proto::v1::queries_server::QueriesServer;
use segmentd_proto::v1::replay_server::ReplayServer;
use segmentd_readmodel::{CATCH_UP_MIN, Clock, PastModels, ReadModel, run_membership_clock, run_projector};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

/// Where the event log lives.
#[derive(Clone, Debug)]
pub enum LogBackend {
    /// A file log under `<data_dir>/log`, in this process only.
    Embedded,
    /// A NATS JetStream stream, shared by any number of processes.
    Nats(Box<NatsConfig>),
}

/// Which parts one process runs. Query nodes each keep their own read model
/// (and projector) under their data directory; command nodes keep nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    pub commands: bool,
    pub queries: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { commands: true, queries: true };
    pub const COMMANDS: Roles = Roles { commands: true, queries: false };
    pub const QUERIES: Roles = Roles { commands: false, queries: true };
}

/// Everything `serve` needs, validated by the binary before it starts.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub backend: LogBackend,
    pub roles: Roles,
    pub api_keys: ApiKeys,
    pub demo: bool,
    /// The longest a query waits for its `min_sequence`.
    pub query_wait: Duration,
    /// sled's page cache for the read model.
    pub cache_bytes: u64,
    /// How many past states (`as_of`) a query node keeps in memory.
    pub as_of_cache: usize,
    /// Serve the read model under `data_dir` as it is (e.g. one built by
    /// `rebuild`): Queries only, no log, no projector, no `as_of`.
    pub snapshot: bool,
    pub jobs: JobSettings,
    /// Where to serve Prometheus metrics (`/metrics`); none: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// The clock relative criteria are kept against (tests pin it).
    pub clock: Clock,
    /// How often segments with relative conditions are moved with the clock.
    pub membership_tick: Duration,
    /// On NATS, query nodes publish membership changes on
    /// `<membership_subject>.<org>.<segment id>`; empty: they do not.
    pub membership_subject: String,
    /// The largest request message accepted, in bytes (larger: the call
    /// fails with OUT_OF_RANGE before any handler runs). Batches are also
    /// bounded by count (`write::MAX_BATCH`).
    pub max_request_bytes: usize,
    /// Serve gRPC over TLS; `None`: plaintext (behind a TLS-terminating
    /// proxy, or on loopback).
    pub tls: Option<TlsSettings>,
}

/// The server's certificate and key (PEM) and, for mutual TLS, the CA that
/// client certificates must chain to.
#[derive(Clone)]
pub struct TlsSettings {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsSettings {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings").field("client_auth", &self.client_ca_pem.is_some()).finish_non_exhaustive()
    }
}

/// tonic's default too, said out loud: a full batch of contacts fits many
/// times over, and nothing legitimate needs more.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 << 20;

pub const DEFAULT_MEMBERSHIP_SUBJECT: &str = "seg.members";

impl ServeConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        ServeConfig {
            listen,
            data_dir,
            backend: LogBackend::Embedded,
            roles: Roles::ALL,
            api_keys: ApiKeys::default(),
            demo: false,
            query_wait: Duration::from_secs(10),
            cache_bytes: 64 << 20,
            as_of_cache: 2,
            snapshot: false,
            jobs: JobSettings::default(),
            metrics_listen: None,
            clock: Clock::system(),
            membership_tick: Duration::from_secs(1),
            membership_subject: DEFAULT_MEMBERSHIP_SUBJECT.to_owned(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            tls: None,
        }
    }

    /// Serves the read model under `data_dir` as it is: Queries only.
    pub fn snapshot(listen: SocketAddr, data_dir: PathBuf) -> Self {
        ServeConfig { roles: Roles::QUERIES, snapshot: true, ..ServeConfig::new(listen, data_dir) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the event log in {dir}: {source}")]
    Log { dir: PathBuf, source: segmentd_log::LogError },
    #[error("cannot open the read model in {dir}: {source}")]
    ReadModel { dir: PathBuf, source: segmentd_readmodel::ReadModelError },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("the demo needs the commands role")]
    DemoWithoutCommands,
    #[error("a snapshot is served read-only: only the queries role, no demo")]
    SnapshotWithCommands,
    #[error("no read model in {0}: build one with `segmentd rebuild`")]
    NoSnapshot(PathBuf),
    #[error("loading the demo data failed: {0}")]
    Demo(#[from] crate::demo::DemoError),
    #[error("the projector stopped: {0}")]
    Projector(#[from] segmentd_readmodel::ProjectorError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("a server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A running server.
pub struct Served {
    pub addr: SocketAddr,
    /// The read model, on query nodes.
    pub model: Option<Arc<ReadModel>>,
    /// The event log; absent when serving a snapshot.
    pub log: Option<Arc<dyn EventLog>>,
    /// Jobs, on nodes with both roles.
    pub jobs: Option<Arc<Jobs>>,
    /// This process's metrics, and where they are served (if anywhere).
    pub metrics: Arc<crate::metrics::Metrics>,
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    projector: Option<JoinHandle<Result<(), segmentd_readmodel::ProjectorError>>>,
    /// The membership clock and the NATS publisher, on query nodes.
    helpers: Vec<JoinHandle<()>>,
}

impl Served {
    /// Stops accepting requests, finishes the ones in flight, stops the
    /// projector and flushes the read model.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.shutdown.send_replace(true);
        self.finish().await
    }

    /// Runs until `signal` resolves, then stops.
    /// Runs until `signal` resolves, then stops. A projector that gives up
    /// (its read model cannot be written) stops the process too, so that a
    /// supervisor restarts it rather than it serving ever staler reads.
    pub async fn run_until(mut self, signal: impl std::future::Future<Output = ()>) -> Result<(), ServeError> {
        let mut shutdown = self.shutdown.subscribe();
        let projector_ended = async {
            match self.projector.as_mut() {
                Some(task) => Some(task.await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = signal => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
            ended = projector_ended => {
                self.projector = None;
                self.shutdown.send_replace(true);
                let result = self.finish().await;
                return match ended {
                    Some(Ok(Err(e))) => Err(e.into()),
                    Some(Err(join)) => Err(join.into()),
                    _ => result,
                };
            }
        }
        self.stop().await
    }

    async fn finish(self) -> Result<(), ServeError> {
        // Membership watches never end by themselves; the server waits for
        // its streams to finish.
        if let Some(model) = &self.model {
            model.close_feed();
        }
        let served = self.server.await?;
        for task in self.helpers {
            task.await?;
        }
        // Jobs stop between batches; their state is in the log, and the next
        // start resumes them.
        if let Some(jobs) = &self.jobs {
            jobs.stopped().await;
        }
        if let Some(projector) = self.projector {
            projector.await??;
        }
        served?;
        if let Some(model) = &self.model
            && let Err(e) = model.flush().await
        {
            tracing::warn!(error = %e, "read model flush at shutdown failed; it will catch up from the log");
        }
        Ok(())
    }
}

/// Opens the event log: the embedded one under `<data_dir>/log`, or NATS.
pub async fn open_log(backend: &LogBackend, data_dir: &std::path::Path) -> Result<Arc<dyn EventLog>, ServeError> {
    Ok(open_log_and_client(backend, data_dir).await?.0)
}

/// The log, and its NATS connection when it is NATS (for publishing the
/// membership feed).
async fn open_log_and_client(
    backend: &LogBackend,
    data_dir: &std::path::Path,
) -> Result<(Arc<dyn EventLog>, Option<async_nats::Client>), ServeError> {
    Ok(match backend {
        LogBackend::Embedded => {
            let dir = data_dir.join("log");
            (Arc::new(EmbeddedLog::open(&dir).map_err(|source| ServeError::Log { dir, source })?), None)
        }
        LogBackend::Nats(nats) => {
            let log = NatsLog::connect((**nats).clone())
                .await
                .map_err(|source| ServeError::Log { dir: PathBuf::from(&nats.url), source })?;
            let client = log.client().clone();
            (Arc::new(log), Some(client))
        }
    })
}

/// Where a data directory keeps its read model.
pub fn read_model_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("readmodel")
}

/// Opens the configured log and starts serving the configured roles; with
/// `snapshot`, serves the read model under the data directory alone.
pub async fn serve(config: ServeConfig) -> Result<Served, ServeError> {
    if config.snapshot {
        return serve_parts(config, None, None).await;
    }
    let (log, nats) = open_log_and_client(&config.backend, &config.data_dir).await?;
    serve_parts(config, Some(log), nats).await
}

/// Starts serving on any log backend.
pub async fn serve_with_log(config: ServeConfig, log: Arc<dyn EventLog>) -> Result<Served, ServeError> {
    serve_parts(config, Some(log), None).await
}

/// `nats`: the log's connection, when it is NATS, for publishing the
/// membership feed.
async fn serve_parts(
    config: ServeConfig,
    log: Option<Arc<dyn EventLog>>,
    nats: Option<async_nats::Client>,
) -> Result<Served, ServeError> {
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut helpers = Vec::new();
    let model_dir = read_model_dir(&config.data_dir);
    let open_model = || {
        ReadModel::open_with_clock(&model_dir, config.cache_bytes, config.clock.clone())
            .map(Arc::new)
            .map_err(|source| ServeError::ReadModel { dir: model_dir.clone(), source })
    };
    let (model, projector, past) = match &log {
        Some(log) if config.roles.queries => {
            let model = open_model()?;
            // Far behind the log (a first start over a long log, a dropped
            // model): catch up in bulk while nobody reads the model yet.
            if let Err(e) = segmentd_readmodel::catch_up(&**log, &model, CATCH_UP_MIN).await {
                tracing::warn!(error = %e, "bulk catch-up stopped early; the projector goes on event by event");
            }
            // Watching before the projector starts, so it misses nothing.
            let watch = nats
                .filter(|_| !config.membership_subject.is_empty())
                .map(|client| (client, crate::membership_nats::watch_all(&model)));
            let projector = tokio::spawn(run_projector(Arc::clone(log), Arc::clone(&model), shutdown_rx.clone()));
            if let Some((client, watch)) = watch {
                helpers.push(tokio::spawn(crate::membership_nats::publish_membership(
                    Arc::clone(&model),
                    watch,
                    client,
                    config.membership_subject.clone(),
                    shutdown_rx.clone(),
                )));
            }
            helpers.push(tokio::spawn(run_membership_clock(
                Arc::clone(&model),
                config.membership_tick,
                shutdown_rx.clone(),
            )));
            let past = Arc::new(PastModels::new(Arc::clone(log), config.as_of_cache));
            (Some(model), Some(projector), Some(past))
        }
        Some(_) => (None, None, None),
        None => {
            if config.roles != Roles::QUERIES || config.demo {
                return Err(ServeError::SnapshotWithCommands);
            }
            // Opening would create an empty model: a typo in the path must
            // not look like a snapshot of nothing.
            if !model_dir.is_dir() {
                return Err(ServeError::NoSnapshot(model_dir));
            }
            let model = open_model()?;
            helpers.push(tokio::spawn(run_membership_clock(
                Arc::clone(&model),
                config.membership_tick,
                shutdown_rx.clone(),
            )));
            (Some(model), None, None)
        }
    };
    let writer = match &log {
        Some(log) if config.roles.commands => Some(Arc::new(Writer::new(Arc::clone(log)))),
        _ => None,
    };

    if config.api_keys.is_open() {
        tracing::warn!("no API keys configured: every request is accepted as organisation \"default\"");
    }
    if config.demo {
        let writer = writer.as_ref().ok_or(ServeError::DemoWithoutCommands)?;
        let seq = crate::demo::load(writer, crate::auth::DEFAULT_ORG).await?;
        if let Some(model) = &model {
            model
                .wait_for(seq, Duration::from_secs(120))
                .await
                .map_err(|source| ServeError::ReadModel { dir: config.data_dir.join("readmodel"), source })?;
        }
        tracing::info!(seq, "demo data loaded into organisation \"default\"");
    }

    let listener =
        TcpListener::bind(config.listen).await.map_err(|source| ServeError::Listen { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen { addr: config.listen, source })?;

    let (health_reporter, health) = tonic_health::server::health_reporter();
    if writer.is_some() {
        health_reporter.set_serving::<CommandsServer<CommandsService>>().await;
    }
    if model.is_some() {
        health_reporter.set_serving::<QueriesServer<QueriesService>>().await;
    }
    // Every role has the log, so every node can replay it (a snapshot has none).
    if log.is_some() {
        health_reporter.set_serving::<ReplayServer<ReplayService>>().await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(segmentd_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(segmentd_proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    // Created before the jobs, which report their progress through it.
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let jobs = match (&writer, &model) {
        (Some(w), Some(m)) => {
            let jobs = Jobs::new(
                Arc::clone(w),
                Arc::clone(m),
                config.jobs,
                config.query_wait,
                shutdown_rx.clone(),
                Some(metrics.jobs()),
            );
            jobs.resume_in_background();
            Some(jobs)
        }
        _ => None,
    };
    let commands = writer.map(|w| {
        let service = CommandsService::new(w, config.api_keys.clone());
        let service = match &jobs {
            Some(jobs) => service.with_jobs(Arc::clone(jobs)),
            None => service,
        };
        // A node with a read model reads members and values for commands
        // (SaveSegmentAsList, CreateBulkSegments) from it.
        let service = match &model {
            Some(m) => service.with_read_model(Arc::clone(m), config.query_wait),
            None => service,
        };
        CommandsServer::new(service).max_decoding_message_size(config.max_request_bytes)
    });
    let queries = model.as_ref().map(|m| {
        let service = QueriesService::new(Arc::clone(m), config.api_keys.clone(), config.query_wait)
            .with_shutdown(shutdown_rx.clone());
        QueriesServer::new(match &past {
            Some(past) => service.with_past(Arc::clone(past)),
            None => service,
        })
        .max_decoding_message_size(config.max_request_bytes)
    });
    let replay = log.as_ref().map(|log| {
        ReplayServer::new(ReplayService::new(Arc::clone(log), config.api_keys.clone()))
            .max_decoding_message_size(config.max_request_bytes)
    });
    if config.api_keys.file().is_some() {
        tokio::spawn(crate::auth::follow_key_file(config.api_keys.clone(), KEY_FILE_POLL, shutdown_rx.clone()));
    }
    let metrics_addr = match config.metrics_listen {
        Some(listen) => {
            let endpoint = crate::metrics::serve_metrics(
                listen,
                Arc::clone(&metrics),
                log.clone(),
                model.clone(),
                shutdown_rx.clone(),
            )
            .await?;
            Some(endpoint.addr)
        }
        None => None,
    };
    let mut stop = shutdown_rx.clone();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        let mut server_tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem));
        if let Some(ca) = &tls.client_ca_pem {
            server_tls = server_tls.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        builder = builder.tls_config(server_tls)?;
    }
    let router = builder
        .tcp_nodelay(true)
        // Outermost: every refusal, auth's too, gets a bounded message.
        .layer(tower::util::MapResponseLayer::new(|mut answer: http::Response<tonic::body::Body>| {
            crate::status::bound_message(answer.headers_mut());
            answer
        }))
        // Outside auth, so refusals by auth are measured too.
        .layer(crate::metrics::RpcMetricsLayer::new(Arc::clone(&metrics)))
        .layer(AuthLayer::new(config.api_keys.clone()))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_optional_service(commands)
        .add_optional_service(queries)
        .add_optional_service(replay);
    // tonic's own tcp_nodelay only applies to listeners it binds itself.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn {
            let _ = stream.set_nodelay(true);
        }
        conn
    });
    let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    tracing::info!(%addr, roles = ?config.roles, backend = ?config.backend, tls = config.tls.is_some(), "segmentd serving");
    Ok(Served { addr, model, log, jobs, metrics, metrics_addr, shutdown, server, projector, helpers })
}

/// How often a server looks for changes to its API key file: the longest a
/// revoked key keeps working.
pub const KEY_FILE_POLL: Duration = Duration::from_secs(2);

pub const DEFAULT_NATS_STREAM: &str = segmentd_log_nats::DEFAULT_STREAM;
