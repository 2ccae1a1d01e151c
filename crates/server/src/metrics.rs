//! Prometheus metrics of one segmentd process, served as text on
//! `--metrics-listen ADDR` at `/metrics`. Every name starts with `segmentd_`:
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `segmentd_command_duration_seconds` | histogram | `rpc` | time to answer a `segments.v1.Commands` call |
//! | `segmentd_query_duration_seconds` | histogram | `service`, `rpc` | the same for `Queries` and `Replay` (streams: time to the response's start) |
//! | `segmentd_grpc_requests_total` | counter | `service`, `rpc`, `code` | answered calls by gRPC status code |
//! | `segmentd_log_last_sequence` | gauge | | the event log's last sequence, read at scrape time |
//! | `segmentd_log_reachable` | gauge | | 1 if that read succeeded at the last scrape, else 0 |
//! | `segmentd_readmodel_applied_sequence` | gauge | `model` | the last log sequence a read model has applied |
//! | `segmentd_projector_lag_events` | gauge | | log last sequence minus the read model's applied one |
//! | `segmentd_job_processed` | gauge | `org`, `job`, `kind` | members a running job has worked through |
//! | `segmentd_job_members` | gauge | `org`, `job`, `kind` | members the job covers |
//!
//! Request metrics come from a tower layer in front of every service
//! ([`RpcMetricsLayer`]), so an RPC added later is measured with no code of
//! its own. Log and read-model positions are read when scraped, so they are
//! never older than the scrape. Job gauges are set through [`JobProgress`]
//! by whoever drives jobs, and removed when the job ends, so finished jobs do
//! not pile up as series.
//!
//! Nothing here is global: [`Metrics`] is created by `serve` and passed down.
//!
//! **Must not depend on** the services' types: it sees request paths,
//! response headers, the `EventLog` port and the read model's position.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use segmentd_log::EventLog;
use segmentd_readmodel::ReadModel;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The label value of the one read model a query node keeps (contacts,
/// segments, jobs and audit views, applied in one sled batch).
pub const MAIN_MODEL: &str = "main";
/// How long a scrape waits for the log's last sequence.
const LOG_PATIENCE: Duration = Duration::from_secs(2);
/// The gRPC package whose services are measured by name; any other path
/// (health, reflection) is measured as `service="other"`.
const API_PREFIX: &str = "/segments.v1.";

/// Latency buckets in seconds: 0.5 ms to 10 s (the append timeout).
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// All metrics of one process.
pub struct Metrics {
    registry: Registry,
    command_seconds: HistogramVec,
    query_seconds: HistogramVec,
    requests: IntCounterVec,
    log_last: IntGauge,
    log_reachable: IntGauge,
    applied: IntGaugeVec,
    lag: IntGauge,
    jobs: JobProgress,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let h = HistogramVec::new(opts, labels).expect("a valid histogram definition");
            registry.register(Box::new(h.clone())).expect("each metric is registered once");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("a valid gauge definition");
            registry.register(Box::new(g.clone())).expect("each metric is registered once");
            g
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid gauge definition");
            registry.register(Box::new(g.clone())).expect("each metric is registered once");
            g
        };
        let command_seconds = histogram(
            "segmentd_command_duration_seconds",
            "Time to answer a segments.v1.Commands call, by RPC.",
            &["rpc"],
        );
        let query_seconds = histogram(
            "segmentd_query_duration_seconds",
            "Time to answer (streams: to start answering) a Queries or Replay call, by service and RPC.",
            &["service", "rpc"],
        );
        let requests = IntCounterVec::new(
            Opts::new("segmentd_grpc_requests_total", "Answered gRPC calls, by service, RPC and status code."),
            &["service", "rpc", "code"],
        )
        .expect("a valid counter definition");
        registry.register(Box::new(requests.clone())).expect("each metric is registered once");
        let log_last = gauge("segmentd_log_last_sequence", "The event log's last sequence, read at scrape time.");
        let log_reachable = gauge("segmentd_log_reachable", "1 if the event log answered at the last scrape, else 0.");
        let applied = gauge_vec(
            "segmentd_readmodel_applied_sequence",
            "The last event log sequence applied to a read model.",
            &["model"],
        );
        let lag = gauge("segmentd_projector_lag_events", "Events in the log that the read model has not applied yet.");
        let jobs = JobProgress {
            processed: gauge_vec(
                "segmentd_job_processed",
                "Members a running job has worked through.",
                &["org", "job", "kind"],
            ),
            members: gauge_vec("segmentd_job_members", "Members a running job covers.", &["org", "job", "kind"]),
        };
        Metrics { registry, command_seconds, query_seconds, requests, log_last, log_reachable, applied, lag, jobs }
    }

    /// The handle that job runners report progress through.
    pub fn jobs(&self) -> JobProgress {
        self.jobs.clone()
    }

    /// Records one answered call. `path` is the gRPC path
    /// (`/segments.v1.Commands/UpsertContacts`).
    pub fn observe_rpc(&self, path: &str, code: tonic::Code, took: Duration) {
        let (service, rpc) = rpc_labels(path, code);
        let seconds = took.as_secs_f64();
        if service == "Commands" {
            self.command_seconds.with_label_values(&[rpc]).observe(seconds);
        } else if service != "other" {
            self.query_seconds.with_label_values(&[service, rpc]).observe(seconds);
        }
        self.requests.with_label_values(&[service, rpc, code_name(code)]).inc();
    }

    /// Reads the positions that are cheaper to ask for than to track.
    pub async fn refresh(&self, log: Option<&dyn EventLog>, model: Option<&ReadModel>) {
        let applied = model.map(ReadModel::applied_seq);
        if let Some(applied) = applied {
            self.applied.with_label_values(&[MAIN_MODEL]).set(clamp(applied));
        }
        let Some(log) = log else { return };
        match tokio::time::timeout(LOG_PATIENCE, log.last_seq()).await {
            Ok(Ok(last)) => {
                self.log_last.set(clamp(last));
                self.log_reachable.set(1);
                if let Some(applied) = applied {
                    self.lag.set(clamp(last.saturating_sub(applied)));
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "metrics: the log's last sequence is unavailable");
                self.log_reachable.set(0);
            }
            Err(_) => self.log_reachable.set(0),
        }
    }

    /// Everything, in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec fails only on invalid metric families, which
        // `new` rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Progress of running jobs as gauges. Cheap to clone; every clone sets the
/// same series.
///
/// ```text
/// progress.set(org, job_id, "reset_scores", processed, members); // after each batch
/// progress.ended(org, job_id, "reset_scores");                   // when it completes or is abandoned
/// ```
#[derive(Clone)]
pub struct JobProgress {
    processed: IntGaugeVec,
    members: IntGaugeVec,
}

impl JobProgress {
    pub fn set(&self, org: &str, job: &str, kind: &str, processed: u64, members: u64) {
        self.processed.with_label_values(&[org, job, kind]).set(clamp(processed));
        self.members.with_label_values(&[org, job, kind]).set(clamp(members));
    }

    /// Removes the job's series: an ended job is read through GetJob.
    pub fn ended(&self, org: &str, job: &str, kind: &str) {
        // Absent series (a job that ended before this process saw it run)
        // are not an error.
        let _ = self.processed.remove_label_values(&[org, job, kind]);
        let _ = self.members.remove_label_values(&[org, job, kind]);
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `(service, rpc)` for a path. Only paths of segmentd's own API that a
/// service implements are labelled by name: an unimplemented method would
/// let any client mint new series.
fn rpc_labels(path: &str, code: tonic::Code) -> (&str, &str) {
    let Some(rest) = path.strip_prefix(API_PREFIX) else { return ("other", "other") };
    let Some((service, rpc)) = rest.split_once('/') else { return ("other", "other") };
    if code == tonic::Code::Unimplemented || !matches!(service, "Commands" | "Queries" | "Replay") {
        return (if matches!(service, "Commands" | "Queries" | "Replay") { service } else { "other" }, "unknown");
    }
    (service, rpc)
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Measures every call that passes through it (see the module docs).
#[derive(Clone)]
pub struct RpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl RpcMetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        RpcMetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> RpcMetricsService<S> {
        RpcMetricsService { inner, metrics: Arc::clone(&self.metrics) }
    }
}

#[derive(Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for RpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let metrics = Arc::clone(&self.metrics);
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            // A unary error (and any refusal before a stream starts) is a
            // "trailers-only" answer: the code is in the headers. Without
            // one the call started a normal answer, whose status follows in
            // the trailers: OK for a unary call that got this far.
            let code = match &answer {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from),
                Err(_) => tonic::Code::Unknown,
            };
            metrics.observe_rpc(&path, code, started.elapsed());
            answer
        })
    }
}

/// The `/metrics` endpoint, until `shutdown` turns true.
pub struct MetricsEndpoint {
    pub addr: SocketAddr,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds `listen` and serves `GET /metrics` from there.
pub async fn serve_metrics(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    log: Option<Arc<dyn EventLog>>,
    model: Option<Arc<ReadModel>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<MetricsEndpoint, MetricsError> {
    let listener = TcpListener::bind(listen).await.map_err(|source| MetricsError::Listen { addr: listen, source })?;
    let addr = listener.local_addr().map_err(|source| MetricsError::Listen { addr: listen, source })?;
    let scrape = move || {
        let (metrics, log, model) = (Arc::clone(&metrics), log.clone(), model.clone());
        async move {
            metrics.refresh(log.as_deref(), model.as_deref()).await;
            ([(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], metrics.render())
        }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(scrape));
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await
    });
    Ok(MetricsEndpoint { addr, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_are_labelled_by_service_and_rpc_and_nothing_else_mints_series() {
        let ok = tonic::Code::Ok;
        assert_eq!(rpc_labels("/segments.v1.Commands/UpsertContacts", ok), ("Commands", "UpsertContacts"));
        assert_eq!(rpc_labels("/segments.v1.Queries/CountMembers", ok), ("Queries", "CountMembers"));
        assert_eq!(rpc_labels("/segments.v1.Commands/Made-Up", tonic::Code::Unimplemented), ("Commands", "unknown"));
        assert_eq!(rpc_labels("/segments.v1.Nope/X", tonic::Code::Unimplemented), ("other", "unknown"));
        assert_eq!(rpc_labels("/grpc.health.v1.Health/Check", ok), ("other", "other"));
        assert_eq!(rpc_labels("garbage", ok), ("other", "other"));
    }

    #[test]
    fn rendered_text_holds_the_observed_values() {
        let metrics = Metrics::new();
        metrics.observe_rpc(
            "/segments.v1.Commands/CreateSegment",
            tonic::Code::AlreadyExists,
            Duration::from_millis(3),
        );
        metrics.jobs().set("acme", "job-1", "reset_scores", 40, 100);
        let text = metrics.render();
        assert!(text.contains("segmentd_command_duration_seconds_count{rpc=\"CreateSegment\"} 1"), "{text}");
        assert!(
            text.contains(
                "segmentd_grpc_requests_total{code=\"ALREADY_EXISTS\",rpc=\"CreateSegment\",service=\"Commands\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("segmentd_job_processed{job=\"job-1\",kind=\"reset_scores\",org=\"acme\"} 40"), "{text}");
        metrics.jobs().ended("acme", "job-1", "reset_scores");
        assert!(!metrics.render().contains("job-1"), "an ended job's series are gone");
    }
}
