//! Rebuilding every read model from the log: `segmentd rebuild` over the
//! stopped server's embedded log into a fresh directory, timed as a whole
//! process (start, replay, final flush, exit).
//!
//! **Must not depend on** the server's crates: it runs the binary.

use anyhow::{Context as _, ensure};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct Rebuilt {
    /// Events replayed: the log's sequences 1 to this one.
    pub events: u64,
    pub elapsed: Duration,
    /// Peak resident memory of the rebuild process, from `time -v` style
    /// accounting where available (0 when not).
    pub peak_rss_bytes: u64,
}

impl Rebuilt {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// Rebuilds `log_data_dir`'s log up to `last_seq` into `into`.
pub async fn run(binary: &Path, log_data_dir: &Path, into: &Path, last_seq: u64) -> anyhow::Result<Rebuilt> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .args(["rebuild", "--until", &last_seq.to_string(), "--data-dir"])
        .arg(into)
        .arg("--log-data-dir")
        .arg(log_data_dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting segmentd rebuild")?;
    let pid = child.id().context("rebuild has no pid")?;
    // Sample the peak of VmHWM while it runs: the rebuild's own high-water mark.
    let mut peak = 0u64;
    let stdout = child.stdout.take().context("rebuild's stdout")?;
    let output = tokio::spawn(async move {
        let mut s = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut tokio::io::BufReader::new(stdout), &mut s).await.map(|_| s)
    });
    let status = loop {
        if let Some(hwm) = high_water_mark(pid) {
            peak = peak.max(hwm);
        }
        tokio::select! {
            status = child.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    };
    let elapsed = started.elapsed();
    let said = output.await??;
    ensure!(status.success(), "segmentd rebuild failed ({status}): {said}");
    let reached = said
        .split_whitespace()
        .skip_while(|w| *w != "sequence")
        .nth(1)
        .and_then(|n| n.parse::<u64>().ok())
        .with_context(|| format!("segmentd rebuild said {said:?}"))?;
    ensure!(reached == last_seq, "rebuild reached sequence {reached}, {last_seq} expected");
    Ok(Rebuilt { events: reached, elapsed, peak_rss_bytes: peak })
}

/// VmHWM (peak resident memory) of `pid`, in bytes.
fn high_water_mark(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}
