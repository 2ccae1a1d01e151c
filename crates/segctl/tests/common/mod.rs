//! What the segctl end-to-end tests share: running the real binary against
//! a server and reading what it printed.

use segmentd_server::{ServeConfig, Served};
use std::path::PathBuf;
use std::process::Output;

/// A server with the demo data (`serve --demo`) on a free port, its data in
/// `data`, as `adjust` configures it; and its address for `--server`.
pub(crate) async fn serve_demo(data: PathBuf, adjust: impl FnOnce(&mut ServeConfig)) -> (Served, String) {
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), data);
    config.demo = true;
    adjust(&mut config);
    let served = segmentd_server::serve(config).await.expect("the demo server starts");
    let server = format!("http://{}", served.addr);
    (served, server)
}

/// Runs `segctl --server <server> <args>` to completion.
pub(crate) fn segctl(server: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_segctl"))
        .arg("--server")
        .arg(server)
        .args(args)
        .output()
        .expect("segctl runs")
}

/// Its standard output, after checking it succeeded (else its stderr).
pub(crate) fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "segctl failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}
