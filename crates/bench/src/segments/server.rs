//! The segmentd server under test: the release binary, run as its own
//! process (`segmentd serve`, embedded log, a temporary data directory, a
//! free port on 127.0.0.1, no API keys so org "default"), as a deployment
//! would run it. Its resident memory is read from `/proc/<pid>/status`.
//!
//! **Must not depend on** the server's crates: it starts a binary and
//! connects gRPC clients to what it says it listens on.

use anyhow::{Context as _, bail, ensure};
use segmentd_proto::v1::commands_client::CommandsClient;
use segmentd_proto::v1::queries_client::QueriesClient;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};

/// Replies of a million-contact page or export are large.
const MAX_MESSAGE: usize = 64 << 20;

pub struct Server {
    child: Child,
    pub pid: u32,
    pub addr: String,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts `binary serve` on `data_dir` and waits until it listens.
    pub async fn start(binary: &Path, data_dir: &Path) -> anyhow::Result<Server> {
        let mut child = Command::new(binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .env_remove("SEGMENTD_API_KEYS")
            .env_remove("SEGMENTD_NATS_URL")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("segmentd has no pid")?;
        let stdout = child.stdout.take().context("segmentd's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("segmentd listening on ") {
                    return Ok(addr.trim().to_owned());
                }
            }
            bail!("segmentd exited before listening")
        })
        .await
        .context("segmentd did not listen within 120 s")??;
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server { child, pid, addr, data_dir: data_dir.to_owned() })
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Endpoint::from_shared(format!("http://{}", self.addr))?
            .tcp_nodelay(true)
            .connect()
            .await
            .context("connecting to segmentd")
    }

    pub async fn commands(&self) -> anyhow::Result<CommandsClient<Channel>> {
        Ok(CommandsClient::new(self.channel().await?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    pub async fn queries(&self) -> anyhow::Result<QueriesClient<Channel>> {
        Ok(QueriesClient::new(self.channel().await?).max_decoding_message_size(MAX_MESSAGE))
    }

    /// Resident memory now (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_bytes(self.pid)
    }

    /// Stops the server the way its service manager would (SIGTERM), and
    /// waits for it to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status().await?;
        ensure!(status.success(), "kill -TERM {} failed", self.pid);
        match tokio::time::timeout(Duration::from_secs(120), self.child.wait()).await {
            Ok(status) => {
                status?;
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("segmentd did not stop within 120 s of SIGTERM")
            }
        }
    }
}

/// VmRSS of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).context("no VmRSS line in /proc/PID/status")
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kibibytes() {
        let status = "Name:\tsegmentd\nVmPeak:\t  999 kB\nVmRSS:\t  123456 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss(status), Some(123_456 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }
}
