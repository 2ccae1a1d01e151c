//! Starting the real `segmentd` binary for the tests of this folder:
//! [`spawn`] for a quick all-in-one server on a given data directory, and
//! [`Node`] ([`spawn_node`], [`spawn_node_in`]) for tests with several
//! processes or restarts, which keeps each process's stderr and prints it
//! when the test fails.
// Each test binary uses a part of this module.
#![allow(dead_code)]

use segmentd_proto::v1::commands_client::CommandsClient;
use segmentd_proto::v1::queries_client::QueriesClient;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::Status;
use tonic::transport::Channel;

pub(crate) struct Segmentd {
    pub(crate) child: Child,
    pub(crate) channel: Channel,
    /// What it printed on stdout up to "segmentd listening on …".
    pub(crate) said: Vec<String>,
}

/// Starts `segmentd serve` with `extra` flags on a free port and connects
/// once it says where it listens.
pub(crate) async fn spawn(data_dir: &Path, extra: &[&str]) -> Segmentd {
    let mut child = Command::new(env!("CARGO_BIN_EXE_segmentd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("segmentd starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (addr, said) = tokio::time::timeout(Duration::from_secs(60), async {
        let mut said = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("segmentd listening on ") {
                return (addr.to_owned(), said);
            }
            said.push(line);
        }
        panic!("segmentd exited before listening");
    })
    .await
    .expect("segmentd listens within a minute");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    Segmentd { child, channel, said }
}

/// How long a process may take to say where it listens.
pub(crate) const START_PATIENCE: Duration = Duration::from_secs(30);
/// Longest any single RPC may take before the test calls it hung. The
/// server bounds its own waits well below this (append 10 s, query 10 s).
pub(crate) const CALL_PATIENCE: Duration = Duration::from_secs(30);

/// One running `segmentd` process, killed when dropped. When the test is
/// failing, dropping it prints everything the process logged.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) channel: Channel,
    /// Holds the data directory (`data/`) and the process's stderr
    /// (`stderr.log`, appended to by every process started in it).
    dir: PathBuf,
    /// The directory, when the node owns it ([`spawn_node`]).
    _owned: Option<TempDir>,
}

impl Node {
    pub(crate) fn stderr_path(&self) -> PathBuf {
        self.dir.join("stderr.log")
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    pub(crate) fn commands(&self) -> CommandsClient<Channel> {
        CommandsClient::new(self.channel.clone())
    }

    pub(crate) fn queries(&self) -> QueriesClient<Channel> {
        QueriesClient::new(self.channel.clone())
    }

    /// Fails the test if the process has exited.
    pub(crate) fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("segmentd {} exited ({status}) while the test still needs it", self.name);
        }
    }

    /// SIGKILL, like a crash, and wait until the process is gone.
    pub(crate) async fn kill(&mut self) {
        self.child.start_kill().expect("segmentd can be killed");
        self.child.wait().await.expect("segmentd is reaped");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- segmentd {} stderr ({}) ----\n{}---- end of segmentd {} stderr ----",
                self.name,
                self.stderr_path().display(),
                self.stderr(),
                self.name
            );
        }
    }
}

/// Starts `segmentd <args> --listen 127.0.0.1:0 --data-dir <fresh dir>`,
/// waits for its "segmentd listening on ADDR" line and connects to it.
pub(crate) async fn spawn_node(name: &str, args: &[&str]) -> Node {
    let dir = tempfile::Builder::new().prefix(&format!("segmentd-{name}-")).tempdir().expect("a temporary directory");
    let mut node = spawn_node_in(name, args, dir.path()).await;
    node._owned = Some(dir);
    node
}

/// Like [`spawn_node`] with the data directory `dir/data`, which outlives
/// the process: starting again in the same `dir` is a restart.
pub(crate) async fn spawn_node_in(name: &str, args: &[&str], dir: &Path) -> Node {
    let stderr_path = dir.join("stderr.log");
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&stderr_path).expect("the stderr log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_segmentd"));
    command
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        // Debug for the writer: it logs each expected-sequence conflict.
        .env("RUST_LOG", "info,segmentd_server::write=debug")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
    // Settings from the environment of whoever runs the tests (API keys,
    // another stream) must not leak into the processes under test.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SEGMENTD_") {
            command.env_remove(key);
        }
    }
    let mut child = command.spawn().expect("segmentd starts");
    let said = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let addr = tokio::time::timeout(START_PATIENCE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.strip_prefix("segmentd listening on ") {
                return Some(addr.to_owned());
            }
        }
        None
    })
    .await;
    let addr = match addr {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            let status = child.wait().await;
            panic!("segmentd {name} ({args:?}) exited before listening ({status:?}); its stderr:\n{}", said())
        }
        Err(_) => {
            panic!("segmentd {name} ({args:?}) did not listen within {START_PATIENCE:?}; its stderr:\n{}", said())
        }
    };
    // Keep draining stdout so that the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid address")
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to segmentd {name} at {addr}: {e}; its stderr:\n{}", said()));
    Node { name: name.to_owned(), child, channel, dir: dir.to_path_buf(), _owned: None }
}

/// Awaits an RPC, failing the test if it takes longer than [`CALL_PATIENCE`].
pub(crate) async fn call<T>(
    what: &str,
    rpc: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(CALL_PATIENCE, rpc).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => panic!("{what}: no answer within {CALL_PATIENCE:?}"),
    }
}
