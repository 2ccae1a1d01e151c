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

/// The README's segment-operations tour: clone → topics → save as list →
/// campaign, then legacy segments and bulk segments, with the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_segment_operations_tour_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.demo = true;
    let served = segmentd_server::serve(config).await.unwrap();
    let server = format!("http://{}", served.addr);
    let contacts = segmentd_server::demo::demo_contacts().unwrap();
    let field = |c: &segmentd_proto::v1::ContactInput, k: &str| c.fields.get(k).cloned().unwrap_or_default();
    let young_de_fr = contacts
        .iter()
        .filter(|c| {
            let age: Option<i64> = field(c, "age").parse().ok();
            ["DE", "FR"].contains(&field(c, "country").as_str()) && age.is_some_and(|a| (25..=34).contains(&a))
        })
        .count();
    let mut stages: Vec<String> = contacts.iter().map(|c| field(c, "lifecycle_stage")).collect();
    stages.sort();
    stages.dedup();

    tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| stdout(&segctl(&server, args));
        let json = |args: &[&str]| -> serde_json::Value {
            let mut all = vec!["--output", "json"];
            all.extend_from_slice(args);
            serde_json::from_str(run(&all).trim()).unwrap()
        };
        run(&["segments", "create", "young-de", "--criteria", r#"country = "DE" and age between 25 and 34"#]);
        let clone = json(&[
            "segments",
            "clone",
            "young-de",
            "young-de-fr",
            "--criteria",
            r#"country in ("DE","FR") and age between 25 and 34"#,
        ]);
        assert!(clone["segment"]["cloned_from_id"].as_u64().unwrap() > 0, "{clone}");
        run(&["topics", "create", "Spring sale"]);
        let assigned = json(&["segments", "assign-topics", "young-de-fr", "Spring sale"]);
        let seq = assigned["sequence"].as_u64().unwrap().to_string();
        let by_topic = run(&["segments", "list", "--topic", "Spring sale", "--min-sequence", &seq]);
        assert!(by_topic.contains("young-de-fr") && !by_topic.contains("young-de "), "{by_topic}");

        let saved = json(&["segments", "save-as-list", "young-de-fr", "Young DE/FR in spring"]);
        assert_eq!(saved["list"]["member_count"].as_u64().unwrap() as usize, young_de_fr);
        let seq = saved["sequence"].as_u64().unwrap().to_string();
        let members = run(&["lists", "members", "Young DE/FR in spring", "--limit", "0", "--min-sequence", &seq]);
        assert_eq!(members.lines().count(), young_de_fr);

        let campaign = json(&[
            "campaigns",
            "create",
            "Spring sale",
            "--subject",
            "Spring is here",
            "--sender",
            "news@shop.example",
            "--segment",
            "young-de-fr",
        ]);
        let seq = campaign["sequence"].as_u64().unwrap().to_string();
        let count = run(&["campaigns", "recipients", "Spring sale", "--count", "--min-sequence", &seq]);
        assert_eq!(count.trim(), young_de_fr.to_string());
        let five = run(&["campaigns", "recipients", "Spring sale", "--limit", "5", "--min-sequence", &seq]);
        assert_eq!(five.lines().count(), 5);

        let legacy = json(&[
            "segments",
            "import-legacy",
            "Old newsletter DE",
            "--criteria",
            r#"country = "DE""#,
            "--list",
            "Newsletter 2019",
        ]);
        let seq = legacy["sequence"].as_u64().unwrap().to_string();
        let listed = run(&["segments", "list", "--legacy", "--min-sequence", &seq]);
        assert!(listed.contains("Old newsletter DE") && !listed.contains("young-de"), "{listed}");
        let refused = segctl(&server, &["segments", "delete", "Old newsletter DE"]);
        assert_eq!(refused.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("FAILED_PRECONDITION") && stderr.contains("legacy"), "{stderr}");
        run(&["segments", "clone", "Old newsletter DE", "Newsletter DE"]);

        let preview = json(&["segments", "bulk-preview", "lifecycle_stage"]);
        assert_eq!(preview["values"].as_array().unwrap().len(), stages.len());
        let bulk = json(&["segments", "bulk-create", "Stage", "--field", "lifecycle_stage"]);
        let names: Vec<&str> =
            bulk["segments"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names.len(), stages.len());
        assert!(names.contains(&"Stage - customer"), "{names:?}");
        let companies = json(&["segments", "bulk-preview", "company"]);
        let n = companies["values"].as_array().unwrap().len();
        assert!(n > 100, "{n}");
        let too_many = segctl(&server, &["segments", "bulk-create", "Firms", "--field", "company"]);
        let stderr = String::from_utf8_lossy(&too_many.stderr);
        assert!(
            stderr.contains(&format!("field company has {n} distinct values")) && stderr.contains("at most 100"),
            "{stderr}"
        );
    })
    .await
    .unwrap();
    served.stop().await.unwrap();
}

/// The README's dry-run and cancel section with the binary: a preview that
/// records nothing, the run that names its position, and stopping it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_dry_run_and_cancel_section_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.demo = true;
    // One member per batch and a long pause: the job is part way when cancelled.
    config.jobs.batch_size = 1;
    config.jobs.pause = std::time::Duration::from_secs(3600);
    let served = segmentd_server::serve(config).await.unwrap();
    let server = format!("http://{}", served.addr);
    let log = served.log.clone().unwrap();
    let before = log.last_seq().await.unwrap();

    let (preview, text) = tokio::task::spawn_blocking({
        let server = server.clone();
        move || {
            let json =
                stdout(&segctl(&server, &["--output", "json", "segments", "delete-contacts", "germany", "--dry-run"]));
            let text =
                stdout(&segctl(&server, &["segments", "reset-scores", "germany", "--reason", "v2", "--dry-run"]));
            (serde_json::from_str::<serde_json::Value>(json.trim()).unwrap(), text)
        }
    })
    .await
    .unwrap();
    let members = preview["members"].as_u64().unwrap();
    assert!(members > 20 && preview["affected"].as_u64() == Some(members), "{preview}");
    assert_eq!(preview["sample"].as_array().unwrap().len(), 20);
    let position = preview["position"].as_u64().unwrap();
    assert!(
        text.contains("nothing was recorded") && text.contains(&format!("--expected-position {position}")),
        "{text}"
    );
    assert_eq!(log.last_seq().await.unwrap(), before, "dry runs record nothing");

    let cancelled = tokio::task::spawn_blocking(move || {
        let position = position.to_string();
        let started = stdout(&segctl(
            &server,
            &[
                "segments",
                "delete-contacts",
                "germany",
                "--confirm",
                "--expected-position",
                &position,
                "--job-id",
                "purge-de",
            ],
        ));
        assert!(started.contains("purge-de"), "{started}");
        // The first batch may still be running; the cancel waits for the stop.
        let json =
            stdout(&segctl(&server, &["--output", "json", "jobs", "cancel", "purge-de", "--reason", "wrong segment"]));
        serde_json::from_str::<serde_json::Value>(json.trim()).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["cancel_reason"], "wrong segment");
    assert!(cancelled["processed"].as_u64().unwrap() <= 1, "{cancelled}");
    assert_eq!(cancelled["total"].as_u64(), Some(members));
    served.stop().await.unwrap();
}

/// The README's definition-history section with the binary: versions, a
/// diff, a rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_history_and_rollback_section_works() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    let served = segmentd_server::serve(config).await.unwrap();
    let server = format!("http://{}", served.addr);
    tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| stdout(&segctl(&server, args));
        run(&["segments", "create", "de-young", "--criteria", r#"country = "DE" and age < 30"#]);
        let updated = run(&[
            "--output",
            "json",
            "segments",
            "update",
            "de-young",
            "--name",
            "dach-young",
            "--criteria",
            r#"country in ("DE","AT","CH") and age < 30"#,
        ]);
        assert!(updated.contains("dach-young"), "{updated}");
        let versions = run(&["segments", "versions", "dach-young"]);
        let lines: Vec<&str> = versions.lines().collect();
        assert_eq!(lines.len(), 2, "{versions}");
        assert!(lines[0].starts_with("v1\t") && lines[0].contains("SegmentCreated"), "{versions}");
        let diff = run(&["segments", "diff", "dach-young", "1"]);
        assert!(
            diff.contains("- \"de-young\"\n+ \"dach-young\"")
                && diff.contains("conditions:\n- country = \"DE\"\n+ country in (\"DE\", \"AT\", \"CH\")\n"),
            "{diff}"
        );
        let rolled = run(&["segments", "rollback", "dach-young", "--to-version", "1", "--expected-version", "2"]);
        assert!(rolled.contains("de-young"), "{rolled}");
        let again = segctl(&server, &["segments", "rollback", "de-young", "--to-version", "3"]);
        assert_eq!(again.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&again.stderr).contains("FAILED_PRECONDITION"));
        let history = run(&["segments", "history", "de-young"]);
        assert!(history.contains("SegmentRolledBack") && history.contains("rolled back to version 1"), "{history}");
    })
    .await
    .unwrap();
    served.stop().await.unwrap();
}

/// The README's explain example with the binary, on the demo data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_explain_example_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.demo = true;
    let served = segmentd_server::serve(config).await.unwrap();
    let server = format!("http://{}", served.addr);
    tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| stdout(&segctl(&server, args));
        let first = run(&["--output", "json", "segments", "members", "germany", "--limit", "1"]);
        let member: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
        let email = member["email"].as_str().unwrap().to_owned();
        let text = run(&["segments", "explain", "germany", "--contact", &email]);
        assert!(text.starts_with(&format!("{email} is a member of \"germany\"")), "{text}");
        assert!(text.contains("✓ country = \"DE\"    [country = DE]"), "{text}");
        assert!(text.contains("since: sequence "), "{text}");
        let json = run(&["--output", "json", "segments", "explain", "germany", "--contact", &email]);
        let json: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(json["member"], true, "{json}");
    })
    .await
    .unwrap();
    served.stop().await.unwrap();
}
