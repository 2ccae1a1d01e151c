//! What the segctl end-to-end tests share: running the real binary against
//! a server and reading what it printed.

use std::process::Output;

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
