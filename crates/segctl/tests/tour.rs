//! The README's tour, run for real: segctl (the binary) against a demo
//! server started in-process. The counts it prints are checked against a
//! plain pass over the demo rows.

use segmentd_server::ServeConfig;

mod common;

use common::{segctl, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_prints_the_right_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.demo = true;
    let served = segmentd_server::serve(config).await.unwrap();
    let server = format!("http://{}", served.addr);

    let expected = segmentd_server::demo::demo_contacts()
        .unwrap()
        .iter()
        .filter(|c| {
            let f = |k: &str| c.fields.get(k).map(String::as_str).unwrap_or("");
            let age: Option<i64> = f("age").parse().ok();
            let score: i64 = f("score").parse().unwrap();
            ["DE", "FR"].contains(&f("country")) && (age.is_some_and(|a| (25..=34).contains(&a)) || score >= 150)
        })
        .count();

    let criteria = r#"country in ("DE","FR") and (age between 25 and 34 or score >= 150)"#;
    let server_arg = server.clone();
    let (created, counted) = tokio::task::spawn_blocking(move || {
        let created = stdout(&segctl(&server_arg, &["segments", "create", "young-eu", "--criteria", criteria]));
        let counted = stdout(&segctl(&server_arg, &["segments", "count", "young-eu"]));
        (created, counted)
    })
    .await
    .unwrap();
    assert!(created.contains("young-eu"), "{created}");
    assert_eq!(counted.trim(), expected.to_string());

    let server_arg = server.clone();
    let (dup, json, list) = tokio::task::spawn_blocking(move || {
        let dup = segctl(&server_arg, &["segments", "create", "young-eu", "--criteria", "age > 1"]);
        let json = stdout(&segctl(&server_arg, &["--output", "json", "segments", "count", "germany"]));
        let list = stdout(&segctl(&server_arg, &["segments", "list"]));
        (dup, json, list)
    })
    .await
    .unwrap();
    assert_eq!(dup.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("ALREADY_EXISTS"));
    let json: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert!(json["count"].as_u64().unwrap() > 0);
    for name in ["germany", "north-america", "young-eu"] {
        assert!(list.contains(name), "{list}");
    }
    served.stop().await.unwrap();
}
