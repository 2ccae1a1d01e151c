//! CPU time spent by this process and by the nats-server during a
//! measurement, from `/proc/<pid>/stat` (user + system, all threads). On a
//! small machine this tells whether a rate is bound by CPU (the two
//! together near `cores × wall time`) or by waiting, and who spends it.
//!
//! **Must not depend on** anything but `/proc`: no libc, no unsafe. Off
//! Linux, or for a server in another host, the numbers are simply absent.

use std::path::Path;
use std::time::Duration;

/// Linux reports `/proc/<pid>/stat` times in USER_HZ, 100 on every
/// architecture Rust targets.
const USER_HZ: u64 = 100;

/// User + system CPU time of process `pid` (`"self"` for this one).
pub fn process_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")).ok()?;
    parse_stat(&stat)
}

/// Fields 14 and 15 (utime, stime) of a `stat` line; the command name (field
/// 2, in parentheses) may itself contain spaces or parentheses.
fn parse_stat(stat: &str) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// The pid of the nats-server whose command line contains `needle` (its
/// store directory, which is unique to the private server).
pub fn find_server(needle: &str) -> Option<String> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("nats-server") && cmdline.contains(needle) {
            return Some(pid);
        }
    }
    None
}

/// CPU used by this process and by the server between two readings.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuUse {
    pub bench: Duration,
    pub server: Option<Duration>,
}

/// Reads both clocks now.
#[derive(Clone, Debug)]
pub struct CpuMeter {
    server_pid: Option<String>,
    bench: Option<Duration>,
    server: Option<Duration>,
}

impl CpuMeter {
    pub fn start(server_pid: Option<&str>) -> CpuMeter {
        CpuMeter {
            server_pid: server_pid.map(str::to_owned),
            bench: process_time("self"),
            server: server_pid.and_then(process_time),
        }
    }

    pub fn stop(&self) -> CpuUse {
        let since = |before: Option<Duration>, now: Option<Duration>| Some(now?.saturating_sub(before?));
        CpuUse {
            bench: since(self.bench, process_time("self")).unwrap_or_default(),
            server: since(self.server, self.server_pid.as_deref().and_then(process_time)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_read_after_the_command_name() {
        let line = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1 1 1";
        assert_eq!(parse_stat(line), Some(Duration::from_secs(3)));
        assert!(process_time("self").is_some());
    }
}
