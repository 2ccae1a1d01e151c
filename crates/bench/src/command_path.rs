//! Measurement (a): events per second appended through the gRPC command
//! path. A segmentd command node (`Roles::COMMANDS`, its log on NATS, a
//! stream of its own) runs in this process; `concurrency` client tasks,
//! each on its own HTTP/2 connection, send the prepared `UpsertContacts`
//! requests from a shared queue. Every contact is new, so events = contacts
//! created, and the clock runs from the first send to the last reply.
//!
//! **Must not depend on** the server's internals: it starts the node with
//! `segmentd_server::serve` and speaks gRPC like any client.

use crate::cpu::{CpuMeter, CpuUse};
use crate::streams::StreamName;
use anyhow::{Context as _, ensure};
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::commands_client::CommandsClient;
use segmentd_server::{LogBackend, NatsConfig, Roles, ServeConfig};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Barrier;
use tonic::transport::{Channel, Endpoint};

/// One run of the command path.
#[derive(Clone, Debug)]
pub struct CommandRun {
    /// Contacts created, as the replies count them.
    pub events: u64,
    pub requests: usize,
    pub elapsed: Duration,
    /// Per request, from send to reply, sorted.
    pub latencies: Vec<Duration>,
    /// CPU of this process (clients and command node) and of the server.
    pub cpu: CpuUse,
}

impl CommandRun {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// Starts a command node on `url` storing into `name`, sends `requests`
/// with `concurrency` clients, and stops the node.
pub async fn run(
    url: &str,
    name: &StreamName,
    requests: Vec<pb::UpsertContactsRequest>,
    concurrency: usize,
    server_pid: Option<&str>,
) -> anyhow::Result<CommandRun> {
    let data_dir = tempfile::Builder::new().prefix("segmentd-bench-").tempdir()?;
    let mut config = ServeConfig::new(([127, 0, 0, 1], 0).into(), data_dir.path().to_owned());
    let mut nats = NatsConfig::new(url);
    nats.stream.clone_from(&name.stream);
    nats.subject_prefix.clone_from(&name.prefix);
    nats.client_name = "segmentd-bench-command-node".into();
    config.backend = LogBackend::Nats(Box::new(nats));
    config.roles = Roles::COMMANDS;
    let served = segmentd_server::serve(config).await.context("starting the command node")?;
    let result = drive(served.addr, requests, concurrency, server_pid).await;
    served.stop().await.context("stopping the command node")?;
    result
}

async fn drive(
    addr: std::net::SocketAddr,
    requests: Vec<pb::UpsertContactsRequest>,
    concurrency: usize,
    server_pid: Option<&str>,
) -> anyhow::Result<CommandRun> {
    let total_requests = requests.len();
    let expected: u64 = requests.iter().map(|r| r.contacts.len() as u64).sum();
    // Popped from the back: reverse so that requests go out in order.
    let queue = Arc::new(Mutex::new(requests.into_iter().rev().collect::<Vec<_>>()));
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true);
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let channel: Channel = endpoint.connect().await.context("connecting to the command node")?;
        clients.push(CommandsClient::new(channel).max_decoding_message_size(64 << 20));
    }
    let start_line = Arc::new(Barrier::new(clients.len() + 1));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let queue = Arc::clone(&queue);
            let start_line = Arc::clone(&start_line);
            tokio::spawn(async move {
                let mut created = 0u64;
                let mut latencies = Vec::new();
                start_line.wait().await;
                loop {
                    let Some(request) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else { break };
                    let n = request.contacts.len();
                    let sent = Instant::now();
                    let reply = client.upsert_contacts(request).await?.into_inner();
                    latencies.push(sent.elapsed());
                    ensure!(
                        reply.created as usize == n && !reply.duplicate,
                        "a request of {n} new contacts created {} (updated {}, unchanged {}, duplicate {})",
                        reply.created,
                        reply.updated,
                        reply.unchanged,
                        reply.duplicate
                    );
                    created += u64::from(reply.created);
                }
                Ok::<_, anyhow::Error>((created, latencies, Instant::now()))
            })
        })
        .collect();
    let meter = CpuMeter::start(server_pid);
    start_line.wait().await;
    let started = Instant::now();
    let mut events = 0;
    let mut latencies = Vec::with_capacity(total_requests);
    let mut last_reply = started;
    for task in tasks {
        let (created, mut lat, ended) = task.await??;
        events += created;
        latencies.append(&mut lat);
        last_reply = last_reply.max(ended);
    }
    let cpu = meter.stop();
    ensure!(events == expected, "{events} contacts created, {expected} sent");
    latencies.sort();
    Ok(CommandRun { events, requests: total_requests, elapsed: last_reply - started, latencies, cpu })
}
