//! A real 3-node NATS JetStream cluster for fault tests, started by
//! `deploy/nats-cluster.sh` from the committed loopback configs
//! (`deploy/nats/local-{1,2,3}.conf`), so the tests run what operators run.
//! Each cluster gets free ports (`NATS_CLUSTER_PORTS`) and its own state
//! directory (stores, logs, pid files), so clusters of parallel tests never
//! meet. Dropping the handle stops every node; a failing test prints the
//! nodes' logs.
//!
//! The binary: with `$NATS_SERVER_BIN_SYNC` (a nats-server 2.10+, as CI
//! installs it) the nodes run the production variant, `sync_interval:
//! always` (`--sync-always`); otherwise [`server_binary`] with the configs
//! as committed (2.9-valid).

use super::server_binary;
use async_nats::jetstream::stream::ClusterInfo;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;
use tempfile::TempDir;

/// Attempts at starting on fresh ports: the ports are found free, released
/// and then taken by the servers, so another process may get in between.
const START_ATTEMPTS: usize = 3;

/// A running 3-node cluster (nodes are numbered 1 to 3, as in the configs).
pub struct NatsCluster {
    script: PathBuf,
    bin: PathBuf,
    sync_always: bool,
    client_ports: [u16; 3],
    state: TempDir,
}

impl NatsCluster {
    /// Starts the three nodes and returns once each is healthy (JetStream
    /// up and current) and the cluster places R3 streams.
    pub async fn start() -> NatsCluster {
        let (bin, sync_always) = match std::env::var_os("NATS_SERVER_BIN_SYNC") {
            Some(bin) => (PathBuf::from(bin), true),
            None => (server_binary(), false),
        };
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nats-cluster.sh");
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let state = tempfile::Builder::new().prefix("nats-cluster-").tempdir().expect("a cluster state directory");
            let ports = free_ports::<9>();
            let cluster = NatsCluster {
                script: script.clone(),
                bin: bin.clone(),
                sync_always,
                client_ports: [ports[0], ports[1], ports[2]],
                state,
            };
            let list = |p: &[u16]| p.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
            let spec = format!("{} {} {}", list(&ports[0..3]), list(&ports[3..6]), list(&ports[6..9]));
            let mut args = vec!["start"];
            if sync_always {
                args.push("--sync-always");
            }
            let out = cluster.script(&args, Some(&spec)).await;
            if out.status.success() {
                match cluster.places_replicated_streams().await {
                    Ok(()) => return cluster,
                    Err(e) => failures.push(format!("{e}\nnode logs:\n{}", cluster.logs())),
                }
            } else {
                failures.push(format!("{}\nnode logs:\n{}", describe(&out), cluster.logs()));
            }
            cluster.script(&["stop"], None).await;
        }
        panic!("the NATS cluster did not start in {START_ATTEMPTS} attempts:\n{}", failures.join("\n----\n"));
    }

    /// Waits until the cluster can place an R3 stream, by creating and
    /// deleting one. Healthy nodes are not enough: right after a start the
    /// meta leader may not have heard from its peers yet and answers "no
    /// suitable peers" (10005) for a while, longer on a loaded machine.
    async fn places_replicated_streams(&self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        let mut last = String::from("never tried");
        while tokio::time::Instant::now() < deadline {
            match self.create_probe_stream().await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!("the cluster placed no R3 stream within 90 s; last answer: {last}"))
    }

    /// A JetStream context through any live node, its requests timing out
    /// after `timeout`.
    async fn jetstream(&self, timeout: Duration) -> Result<async_nats::jetstream::Context, String> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(self.urls().split(',').collect::<Vec<_>>())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut js = async_nats::jetstream::new(client);
        js.set_timeout(timeout);
        Ok(js)
    }

    async fn create_probe_stream(&self) -> Result<(), String> {
        let js = self.jetstream(Duration::from_secs(5)).await?;
        let config = async_nats::jetstream::stream::Config {
            name: "TESTKIT_READY_PROBE".to_owned(),
            subjects: vec!["testkit.ready.probe".to_owned()],
            storage: async_nats::jetstream::stream::StorageType::Memory,
            num_replicas: 3,
            ..Default::default()
        };
        js.get_or_create_stream(config).await.map_err(|e| format!("creating an R3 probe stream: {e}"))?;
        js.delete_stream("TESTKIT_READY_PROBE").await.map_err(|e| format!("deleting the probe stream: {e}"))?;
        Ok(())
    }

    /// Client URLs of all three nodes, comma separated (what `--nats-url` takes).
    pub fn urls(&self) -> String {
        self.client_ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    /// Which server and fsync policy the nodes run, for test output.
    pub fn variant(&self) -> String {
        let version = Command::new(&self.bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|e| format!("{} (--version failed: {e})", self.bin.display()));
        let policy = if self.sync_always { "sync_interval: always" } else { "default sync_interval" };
        format!("{version}, {policy}")
    }

    /// The node number (1-3) of a server name from JetStream (`local-2`).
    pub fn node_named(name: &str) -> Option<usize> {
        name.strip_prefix("local-")?.parse().ok().filter(|n| (1..=3).contains(n))
    }

    /// SIGKILLs node `node` (1-3), like a machine dying.
    pub async fn kill(&self, node: usize) {
        self.script_ok(&["kill", &node.to_string()]).await;
    }

    /// Starts node `node` again on its ports and store, once it is healthy.
    pub async fn restart(&self, node: usize) {
        self.script_ok(&["restart", &node.to_string()]).await;
    }

    /// The stream's replication state as JetStream reports it (leader,
    /// replicas), asked through any live node. Errors while no leader
    /// answers (e.g. during an election) come back as text.
    pub async fn stream_cluster(&self, stream: &str) -> Result<ClusterInfo, String> {
        let js = self.jetstream(Duration::from_secs(2)).await?;
        let mut handle = js.get_stream(stream).await.map_err(|e| format!("stream {stream}: {e}"))?;
        let info = handle.info().await.map_err(|e| format!("stream {stream} info: {e}"))?;
        info.cluster.clone().ok_or_else(|| format!("stream {stream} has no cluster information"))
    }

    /// Everything the nodes logged, node by node.
    pub fn logs(&self) -> String {
        (1..=3)
            .map(|i| {
                let path = self.state.path().join(format!("local-{i}.log"));
                format!("---- local-{i} ----\n{}", std::fs::read_to_string(path).unwrap_or_default())
            })
            .collect()
    }

    async fn script_ok(&self, args: &[&str]) {
        let out = self.script(args, None).await;
        assert!(
            out.status.success(),
            "nats-cluster.sh {args:?} failed:\n{}\nnode logs:\n{}",
            describe(&out),
            self.logs()
        );
    }

    async fn script(&self, args: &[&str], ports: Option<&str>) -> Output {
        let command = self.command(args, ports);
        tokio::task::spawn_blocking(move || run(command)).await.expect("the script runner")
    }

    fn command(&self, args: &[&str], ports: Option<&str>) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(&self.script)
            .args(args)
            .env("NATS_CLUSTER_DIR", self.state.path())
            .env("NATS_SERVER_BIN", &self.bin)
            .env_remove("NATS_CLUSTER_PORTS");
        if let Some(ports) = ports {
            command.env("NATS_CLUSTER_PORTS", ports);
        }
        command
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- NATS cluster logs ({}) ----\n{}---- end of NATS cluster logs ----",
                self.variant(),
                self.logs()
            );
        }
        let out = run(self.command(&["stop"], None));
        if !out.status.success() {
            eprintln!("stopping the NATS cluster failed: {}", describe(&out));
        }
    }
}

fn run(mut command: Command) -> Output {
    command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `N` distinct ports that were free a moment ago (all held at once, so
/// they differ).
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> =
        (0..N).map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port")).collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("a bound address").port())
}
