//! `segctl events` and the history commands, run for real (the binary)
//! against a demo server started in-process: the whole demo history as JSON
//! lines, one object per event, then a filtered CSV export to a file and
//! the histories of a segment and a contact.

mod common;

use common::{segctl, serve_demo, stdout};

async fn run(server: &str, args: &[&str]) -> String {
    let server = server.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        stdout(&segctl(&server, &args))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_on_the_demo_data_print_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let (served, server) = serve_demo(dir.path().to_path_buf(), |_| {}).await;
    let last_seq = served.log.as_ref().unwrap().last_seq().await.unwrap();
    let demo_events = segmentd_server::demo::demo_contacts().unwrap().len() + segmentd_server::demo::SEGMENTS.len();
    assert_eq!(last_seq, demo_events as u64, "one event per demo contact and segment");

    let jsonl = run(&server, &["events", "--format", "jsonl"]).await;
    let lines: Vec<&str> = jsonl.lines().collect();
    assert_eq!(lines.len() as u64, last_seq, "every event, once");
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}: {line}", i + 1));
        assert_eq!(v["sequence"], i as u64 + 1, "log order");
        assert_eq!(v["org"], "default");
        assert!(v["data"].is_object());
    }

    let csv_path = dir.path().join("segments.csv");
    let csv_arg = csv_path.to_str().unwrap();
    let summary = run(&server, &["events", "--type", "SegmentCreated", "--format", "csv", "--out", csv_arg]).await;
    assert_eq!(summary.trim(), format!("wrote 5 events to {csv_arg}"));
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["sequence", "time", "type", "org", "aggregate_type", "aggregate_id", "actor", "command_id", "data"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 5);
    for row in &rows {
        assert_eq!(&row[2], "SegmentCreated");
        let data: serde_json::Value = serde_json::from_str(&row[8]).unwrap();
        assert!(data["criteria"].is_string(), "{data}");
    }

    let ranged = run(&server, &["events", "--from", "3", "--to", "5"]).await;
    let seqs: Vec<u64> = ranged
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);

    let history = run(&server, &["segments", "history", "germany"]).await;
    assert_eq!(history.lines().count(), 1, "{history}");
    assert!(
        history.contains("SegmentCreated") && history.contains(r#"created "germany" with criteria: country = "DE""#)
    );
    let history = run(&server, &["--output", "json", "contacts", "history", "marco.anderson1@hotmail.com"]).await;
    let v: serde_json::Value = serde_json::from_str(history.trim()).unwrap();
    assert_eq!(v["type"], "ContactCreated");
    assert_eq!(v["aggregate_id"], "marco.anderson1@hotmail.com");
    served.stop().await.unwrap();
}
