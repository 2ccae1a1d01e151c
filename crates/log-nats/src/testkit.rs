//! A real `nats-server` with JetStream for tests (feature `testkit`): each
//! [`NatsServer`] runs its own process on a free port with its own store
//! directory, can be stopped and started again on the same port and store
//! (connection-loss and restart tests), is killed when dropped, and prints
//! its log when a test fails while it runs. [`NatsCluster`] is a 3-node
//! cluster from the deploy/ configs, for fault tests.
//!
//! The binary is `$NATS_SERVER_BIN`, else `nats-server` on `PATH`, else
//! `/usr/sbin/nats-server` (Debian's package). Nothing here sleeps for a
//! fixed time: startup is awaited by watching the server's log for its
//! port and then polling a connection.
//!
//! **Must not depend on** tonic, prost or sled; test support only, never
//! compiled into the service.

mod cluster;

pub use cluster::NatsCluster;

use crate::NatsConfig;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a server may take to start listening.
const START_PATIENCE: Duration = Duration::from_secs(20);

/// A running (or stopped) test server. Killed on drop.
pub struct NatsServer {
    bin: PathBuf,
    port: Option<u16>,
    store: TempDir,
    log_path: PathBuf,
    child: Option<Child>,
    /// A server configuration file (`-c`), for auth and TLS tests.
    config_file: Option<PathBuf>,
    // Keeps the log file's directory alive as long as the server handle.
    _log_dir: TempDir,
}

impl NatsServer {
    /// Starts a server on a free port with a fresh store directory, and
    /// returns once it accepts connections.
    pub async fn start() -> NatsServer {
        NatsServer::start_with_config("").await
    }

    /// Like [`NatsServer::start`], with `config` (nats-server configuration
    /// syntax, e.g. an `authorization { … }` or `tls { … }` block) in a
    /// configuration file. Port, address and store stay set by the kit.
    pub async fn start_with_config(config: &str) -> NatsServer {
        let bin = server_binary();
        let store = tempfile::Builder::new().prefix("nats-store-").tempdir().expect("a temporary store directory");
        let log_dir = tempfile::Builder::new().prefix("nats-log-").tempdir().expect("a temporary log directory");
        let log_path = log_dir.path().join("nats-server.log");
        let config_file = (!config.is_empty()).then(|| {
            let path = log_dir.path().join("nats-server.conf");
            std::fs::write(&path, config).expect("the server configuration file");
            path
        });
        let mut server = NatsServer { bin, port: None, store, log_path, child: None, config_file, _log_dir: log_dir };
        server.launch().await;
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port())
    }

    pub fn port(&self) -> u16 {
        self.port.expect("the server has started once")
    }

    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Settings for a [`crate::NatsLog`] on this server, with timeouts short
    /// enough for tests to observe failures quickly.
    pub fn log_config(&self) -> NatsConfig {
        NatsConfig {
            request_timeout: Duration::from_secs(2),
            append_timeout: Duration::from_secs(5),
            reconnect_grace: Duration::from_millis(500),
            max_reconnect_delay: Duration::from_millis(100),
            ..NatsConfig::new(self.url())
        }
    }

    /// Kills the server (SIGKILL: like a crash of the process; what it
    /// wrote is in the page cache and survives) and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is
    /// answered, what is sent waits in its socket until [`NatsServer::resume`].
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server is running").id();
        let status = Command::new("kill").arg(signal).arg(pid.to_string()).status().expect("kill runs");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Starts the server again on the same port and store directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Everything the server has logged, over all its runs.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    async fn launch(&mut self) {
        let mut log = OpenOptions::new().create(true).append(true).open(&self.log_path).expect("the server log file");
        let _ = writeln!(log, "=== starting {} ===", self.bin.display());
        let log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        // `-p -1` lets the server pick a free port itself, which cannot race
        // with another test the way "bind :0, close, pass the port" can; a
        // restart then asks for that same port again.
        let port = self.port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut command = Command::new(&self.bin);
        if let Some(config) = &self.config_file {
            command.arg("-c").arg(config);
        }
        let child = command
            .args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd"])
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(clone_file(&log))
            .stderr(clone_file(&log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let started = Instant::now();
        let port = loop {
            if let Some(port) = listening_port(&self.log(), log_offset) {
                break port;
            }
            self.check_alive(started);
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        self.port = Some(port);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            self.check_alive(started);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn check_alive(&mut self, started: Instant) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("nats-server exited while starting ({status}); its log:\n{}", self.log());
        }
        if started.elapsed() > START_PATIENCE {
            panic!("nats-server did not start listening within {START_PATIENCE:?}; its log:\n{}", self.log());
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- nats-server log ({}) ----\n{}---- end of nats-server log ----",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// A throw-away certificate authority with a server certificate for
/// `localhost`/127.0.0.1 and a client certificate, as PEM files in a
/// temporary directory (for TLS tests of NATS and of gRPC).
pub struct TestPki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    dir: TempDir,
}

impl TestPki {
    pub fn generate() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.distinguished_name.push(DnType::CommonName, "segmentd test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("the CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, cn: &str| {
            let key = KeyPair::generate().expect("a key");
            let mut params = CertificateParams::new(names).expect("certificate params");
            params.distinguished_name.push(DnType::CommonName, cn);
            let cert = params.signed_by(&key, &issuer).expect("a signed certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert_pem, server_key_pem) = leaf(vec!["localhost".into(), "127.0.0.1".into()], "localhost");
        let (client_cert_pem, client_key_pem) = leaf(vec!["client.test".into()], "segmentd test client");
        let dir = tempfile::Builder::new().prefix("test-pki-").tempdir().expect("a PKI directory");
        let pki =
            TestPki { ca_pem: ca_cert.pem(), server_cert_pem, server_key_pem, client_cert_pem, client_key_pem, dir };
        for (name, pem) in [
            ("ca.pem", &pki.ca_pem),
            ("server.pem", &pki.server_cert_pem),
            ("server-key.pem", &pki.server_key_pem),
            ("client.pem", &pki.client_cert_pem),
            ("client-key.pem", &pki.client_key_pem),
        ] {
            std::fs::write(pki.dir.path().join(name), pem).expect("a PEM file");
        }
        pki
    }

    /// One of `ca.pem`, `server.pem`, `server-key.pem`, `client.pem`, `client-key.pem`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn clone_file(file: &File) -> Stdio {
    Stdio::from(file.try_clone().expect("a second handle on the server log"))
}

/// The client port from "Listening for client connections on 127.0.0.1:PORT",
/// looking only at what this run logged.
fn listening_port(log: &str, from: u64) -> Option<u16> {
    let run = log.get(usize::try_from(from).ok()?..)?;
    let line = run.lines().find(|l| l.contains("Listening for client connections on"))?;
    line.rsplit(':').next()?.trim().parse().ok()
}

/// The `nats-server` binary tests run (see the module docs for where it is looked for).
pub fn server_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let debian = PathBuf::from("/usr/sbin/nats-server");
    if debian.is_file() {
        return debian;
    }
    panic!("nats-server not found: install it (apt-get install nats-server) or set NATS_SERVER_BIN");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_read_from_this_runs_log_only() {
        let log = "[1] Listening for client connections on 127.0.0.1:4222\n=== starting ===\n[2] Listening for client connections on 127.0.0.1:39011\n";
        assert_eq!(listening_port(log, 0), Some(4222));
        let second = log.find("===").unwrap() as u64;
        assert_eq!(listening_port(log, second), Some(39011));
        assert_eq!(listening_port("nothing yet", 0), None);
    }
}
