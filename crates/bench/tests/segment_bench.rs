//! `segment-bench` end to end at a small size: the real program, the real
//! `segmentd` binary (the debug build next to this test's target directory,
//! which `cargo test --workspace` builds for segmentd's own tests) and the
//! machine's PostgreSQL at 127.0.0.1:5432, in a scratch schema the program
//! creates and drops. Checks that both systems agreed on every query, that
//! every measurement produced numbers, and that nothing was left behind in
//! PostgreSQL. Speeds are printed, never asserted.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn segmentd_binary() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_segment-bench"));
    let binary = bench.with_file_name("segmentd");
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p segmentd` (cargo test --workspace does)",
        binary.display()
    );
    binary
}

fn scratch_schemas() -> usize {
    let url = "host=127.0.0.1 port=5432 user=postgres dbname=test";
    let out = Command::new("psql")
        .args([url, "-At", "-c", "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'segbench\\_%'"])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a count")
}

/// The generator and how many contacts to ask of it. Without the sibling
/// `shared/bench` (a clone elsewhere, as CI may make), the committed sample
/// stands in: it is the generator's output for `--count 10000 --seed 42`
/// (tests/criteria_counts.rs checks that whenever the generator is there),
/// replayed by a script that refuses any other arguments.
fn generator(dir: &std::path::Path) -> (PathBuf, u32) {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = std::env::var_os("SEGMENTD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../../shared/bench"))
        .join("gen_contacts.py");
    if script.exists() {
        return (script, 3000);
    }
    let sample = manifest.join("../server/demo/contacts-10k-seed42.csv.gz");
    let replay = dir.join("committed_sample.py");
    let text = format!(
        r#"import gzip, shutil, sys
args = sys.argv[1:]
def arg(name):
    return args[args.index(name) + 1]
if (arg("--count"), arg("--seed")) != ("10000", "42"):
    sys.exit("the committed sample is --count 10000 --seed 42 only")
with gzip.open({sample:?}) as src, open(arg("--out"), "wb") as dst:
    shutil.copyfileobj(src, dst)
"#,
        sample = sample.display().to_string()
    );
    std::fs::write(&replay, text).unwrap();
    (replay, 10_000)
}

#[test]
fn a_small_run_agrees_with_postgres_on_every_query_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("results.json");
    let (generator, contacts) = generator(dir.path());
    let before = scratch_schemas();
    let out = Command::new(env!("CARGO_BIN_EXE_segment-bench"))
        .args(["--contacts", &contacts.to_string(), "--segments", "60", "--latency-samples", "20", "--repeat", "2"])
        .arg("--generator")
        .arg(&generator)
        .arg("--segmentd")
        .arg(segmentd_binary())
        .arg("--work-dir")
        .arg(dir.path())
        .arg("--json")
        .arg(&json_path)
        .output()
        .expect("segment-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "segment-bench failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    println!("{stdout}");

    let json: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(json["contacts"], contacts);
    assert_eq!(json["disagreements"], 0);
    let queries = json["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 12);
    for q in queries {
        assert_eq!(q["segmentd_count"], q["postgres_count"], "{q}");
        assert_eq!(q["agreement"], "Agree", "{q}");
        assert!(q["count_ms"]["segmentd"].as_f64().unwrap() > 0.0, "{q}");
        assert!(q["first_page_ms"]["postgres"].as_f64().unwrap() > 0.0, "{q}");
    }
    // Q10 (gender known) holds most rows and Q11 (a needle) few: a table of
    // zeros would agree too, so the counts must be plausible for the rows.
    let count = |i: usize| queries[i]["segmentd_count"].as_u64().unwrap();
    let rows = u64::from(contacts);
    assert!(count(9) > rows * 5 / 6 && count(9) < rows, "Q10: {}", count(9));
    assert!(count(0) > 0 && count(1) > count(0), "Q1 {} Q2 {}", count(0), count(1));

    let latency = &json["change_to_visible"];
    assert_eq!(latency["segments"], 60);
    assert_eq!(latency["readable"]["samples"], 20);
    assert_eq!(latency["on_feed"]["samples"], 20);
    // The contacts, 60 segments and 2 changes per sample (plus a warm-up) were logged.
    assert!(json["rebuild"]["events"].as_u64().unwrap() >= rows + 60 + 20);
    assert!(json["rss_bytes"]["after_load"].as_u64().unwrap() > 0);
    assert_eq!(scratch_schemas(), before, "the scratch schema was not dropped");
}
