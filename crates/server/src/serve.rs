//! Assembles one segmentd process: the log, the projector, the read model
//! and the gRPC services (with health and reflection), and stops it cleanly.

use crate::auth::ApiKeys;
use crate::grpc::{CommandsService, QueriesService};
use crate::write::Writer;
use segmentd_log::EventLog;
use segmentd_log::embedded::EmbeddedLog;
use segmentd_proto::v1::commands_server::CommandsServer;
use segmentd_proto::v1::queries_server::QueriesServer;
use segmentd_readmodel::{ReadModel, run_projector};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

/// Everything `serve` needs, validated by the binary before it starts.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub api_keys: ApiKeys,
    pub demo: bool,
    /// The longest a query waits for its `min_sequence`.
    pub query_wait: Duration,
    /// sled's page cache for the read model.
    pub cache_bytes: u64,
}

impl ServeConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        ServeConfig {
            listen,
            data_dir,
            api_keys: ApiKeys::default(),
            demo: false,
            query_wait: Duration::from_secs(10),
            cache_bytes: 64 << 20,
        }
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
    #[error("loading the demo data failed: {0}")]
    Demo(#[from] crate::demo::DemoError),
    #[error("the projector stopped: {0}")]
    Projector(#[from] segmentd_readmodel::ProjectorError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A running server.
pub struct Served {
    pub addr: SocketAddr,
    pub model: Arc<ReadModel>,
    pub log: Arc<dyn EventLog>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    projector: JoinHandle<Result<(), segmentd_readmodel::ProjectorError>>,
}

impl Served {
    /// Stops accepting requests, finishes the ones in flight, stops the
    /// projector and flushes the read model.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.shutdown.send_replace(true);
        self.finish().await
    }

    /// Runs until `signal` resolves, then stops.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) -> Result<(), ServeError> {
        let mut shutdown = self.shutdown.subscribe();
        tokio::select! {
            _ = signal => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        self.stop().await
    }

    async fn finish(self) -> Result<(), ServeError> {
        let joined =
            |e: tokio::task::JoinError| ServeError::Listen { addr: self.addr, source: std::io::Error::other(e) };
        let served = self.server.await.map_err(joined)?;
        let projected = self.projector.await.map_err(joined)?;
        served?;
        projected?;
        if let Err(e) = self.model.flush().await {
            tracing::warn!(error = %e, "read model flush at shutdown failed; it will catch up from the log");
        }
        Ok(())
    }
}

/// Starts serving on the embedded log under `config.data_dir`.
pub async fn serve_embedded(config: ServeConfig) -> Result<Served, ServeError> {
    let log_dir = config.data_dir.join("log");
    let log = EmbeddedLog::open(&log_dir).map_err(|source| ServeError::Log { dir: log_dir.clone(), source })?;
    serve_with_log(config, Arc::new(log)).await
}

/// Starts serving on any log backend.
pub async fn serve_with_log(config: ServeConfig, log: Arc<dyn EventLog>) -> Result<Served, ServeError> {
    let model_dir = config.data_dir.join("readmodel");
    let model = ReadModel::open(&model_dir, config.cache_bytes)
        .map_err(|source| ServeError::ReadModel { dir: model_dir.clone(), source })?;
    let model = Arc::new(model);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let projector = tokio::spawn(run_projector(Arc::clone(&log), Arc::clone(&model), shutdown_rx.clone()));
    let writer = Arc::new(Writer::new(Arc::clone(&log)));

    if config.api_keys.is_open() {
        tracing::warn!("no API keys configured: every request is accepted as organisation \"default\"");
    }
    if config.demo {
        let seq = crate::demo::load(&writer, crate::auth::DEFAULT_ORG).await?;
        model
            .wait_for(seq, Duration::from_secs(120))
            .await
            .map_err(|source| ServeError::ReadModel { dir: model_dir.clone(), source })?;
        tracing::info!(seq, "demo data loaded into organisation \"default\"");
    }

    let listener =
        TcpListener::bind(config.listen).await.map_err(|source| ServeError::Listen { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen { addr: config.listen, source })?;

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<CommandsServer<CommandsService>>().await;
    health_reporter.set_serving::<QueriesServer<QueriesService>>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(segmentd_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(segmentd_proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let commands = CommandsService::new(Arc::clone(&writer), config.api_keys.clone());
    let queries = QueriesService::new(Arc::clone(&model), config.api_keys.clone(), config.query_wait);
    let mut stop = shutdown_rx.clone();
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(CommandsServer::new(commands))
        .add_service(QueriesServer::new(queries));
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
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "segmentd serving on the embedded log");
    Ok(Served { addr, model, log, shutdown, server, projector })
}
