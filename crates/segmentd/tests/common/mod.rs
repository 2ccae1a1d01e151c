//! Starting the real `segmentd` binary for the tests of this folder.
// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
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
