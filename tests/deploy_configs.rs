//! deploy/ holds what runs segmentd in production; these checks keep it
//! runnable: the real `nats-server -t` accepts every NATS config, and the
//! files agree with each other (the compose file mounts configs that exist,
//! runs the stream at R3 on the cluster the configs describe, and gives
//! 2.10+ servers the fsync-always include). deploy/check.sh runs the same
//! `-t` check plus `docker compose config` and `systemd-analyze verify`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(relative: &str) -> String {
    let path = deploy_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn nats_configs() -> Vec<PathBuf> {
    let mut configs: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("nats"))
        .expect("deploy/nats exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    configs.sort();
    configs
}

#[test]
fn nats_server_accepts_every_config_in_deploy() {
    let bin = segmentd_log_nats::testkit::server_binary();
    let configs = nats_configs();
    let names: Vec<String> = configs.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for want in ["node-1.conf", "node-2.conf", "node-3.conf", "local-1.conf", "local-2.conf", "local-3.conf"] {
        assert!(names.iter().any(|n| n == want), "deploy/nats/{want} is missing; found {names:?}");
    }
    let mut refused = Vec::new();
    for config in &configs {
        let out = Command::new(&bin).arg("-t").arg("-c").arg(config).output().expect("nats-server runs");
        if !out.status.success() {
            refused.push(format!(
                "{}: {}{}",
                config.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(refused.is_empty(), "{} refuses:\n{}", bin.display(), refused.join("\n"));
}

/// The cluster's shape, read from each node config: name, client port line,
/// routes, and the fsync include.
#[test]
fn every_node_config_is_one_of_three_in_one_cluster_with_the_fsync_include() {
    for prefix in ["node", "local"] {
        let mut route_lists = Vec::new();
        for i in 1..=3 {
            let conf = read(&format!("nats/{prefix}-{i}.conf"));
            let routes: Vec<&str> = conf.lines().map(str::trim).filter(|l| l.starts_with("nats-route://")).collect();
            assert_eq!(routes.len(), 3, "{prefix}-{i}.conf routes to every node: {routes:?}");
            route_lists.push(routes.join(","));
            assert!(conf.contains("name: segmentd"), "{prefix}-{i}.conf joins the cluster named segmentd");
            assert!(conf.contains("include \"sync.inc\""), "{prefix}-{i}.conf takes its fsync policy from sync.inc");
            assert!(conf.contains(&format!("server_name: {}-{i}", if prefix == "node" { "nats" } else { "local" })));
        }
        assert!(route_lists.windows(2).all(|w| w[0] == w[1]), "{prefix}-N.conf list the same routes");
    }
    let always = read("nats/sync-always.inc");
    assert!(always.lines().any(|l| l.trim() == "sync_interval: always"), "sync-always.inc sets sync_interval: always");
    // The 2.9 default must stay free of settings 2.9 rejects.
    let default = read("nats/sync.inc");
    assert!(default.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')), "sync.inc: {default}");
}

#[test]
fn compose_runs_the_configs_at_r3_with_fsync_always_on_a_2_10_server() {
    let compose = read("compose.yaml");
    for i in 1..=3 {
        let mount = format!("./nats/node-{i}.conf:/etc/nats/nats-server.conf:ro");
        assert!(compose.contains(&mount), "compose mounts node-{i}.conf ({mount})");
    }
    assert_eq!(
        compose.matches("./nats/sync-always.inc:/etc/nats/sync.inc:ro").count(),
        3,
        "every NATS node gets sync-always.inc as its sync.inc"
    );
    let image =
        compose.lines().find_map(|l| l.trim().strip_prefix("image: nats:")).expect("compose names a nats image");
    let mut version = image.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    assert!((major, minor) >= (2, 10), "sync_interval needs nats-server 2.10+, compose runs {image}");
    assert!(compose.contains("SEGMENTD_NATS_REPLICAS: \"3\""), "the stream runs at R3");
    for service in ["commands:", "queries-1:", "queries-2:", "nats-1:", "nats-2:", "nats-3:"] {
        assert!(compose.lines().any(|l| l == format!("  {service}")), "compose has the service {service}");
    }
    assert!(deploy_dir().join("Dockerfile").is_file(), "compose builds deploy/Dockerfile");
}
