//! The README's tour, run for real: every `$` line between the README's
//! `<!-- tour` and `<!-- /tour -->` markers is run by bash, in order, in a
//! temporary directory, with `segctl` (the binary) on the PATH pointed at a
//! demo server started in-process; what it prints must be what the README
//! shows, so the README cannot drift from the product. Between commands
//! the test waits until the server's read model has applied the whole
//! log, as a person typing would.

use segmentd_server::ServeConfig;
use std::path::Path;
use std::time::Duration;

mod common;

use common::{segctl, serve_demo, stdout};

/// One `$` command of the tour and the output the README shows for it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The steps inside the tour markers, from every ```console block.
fn tour_steps(readme: &str) -> Vec<Step> {
    let start = readme.find("<!-- tour").expect("the README marks where its tour starts");
    let end = readme.find("<!-- /tour -->").expect("the README marks where its tour ends");
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    let mut continued = false;
    for line in readme[start..end].lines() {
        if line.starts_with("```") {
            in_console = line == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        if continued {
            let step = steps.last_mut().expect("a continuation follows a command");
            step.command.push('\n');
            step.command.push_str(line);
            continued = line.ends_with('\\');
        } else if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step { command: command.to_owned(), expected: Vec::new() });
            continued = line.ends_with('\\');
        } else {
            steps.last_mut().expect("output follows a command").expected.push(line.to_owned());
        }
    }
    steps
}

/// Whitespace runs count as one space: the README aligns columns with
/// spaces where segctl writes tabs.
fn squeeze(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `actual` fits `pattern`, where `…` stands for any text.
fn line_matches(pattern: &str, actual: &str) -> bool {
    let (pattern, actual) = (squeeze(pattern), squeeze(actual));
    let parts: Vec<&str> = pattern.split('…').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == actual;
    }
    if !actual.starts_with(first) || !actual[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `actual` fits `expected` line by line, where a line that is just
/// `…` stands for any number of lines.
fn lines_match(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first.trim() == "…" => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => !actual.is_empty() && line_matches(first, actual[0]) && lines_match(rest, &actual[1..]),
    }
}

#[test]
fn the_matcher_takes_ellipses_for_anything() {
    assert!(line_matches("sequence:  …", "sequence: 10006"));
    assert!(line_matches("a … b … c", "a x b y b c"));
    assert!(!line_matches("a … b", "a x c"));
    assert!(!line_matches("count: 25", "count: 250"));
    let expected: Vec<String> = ["…", "done 3/3"].iter().map(|s| s.to_string()).collect();
    assert!(lines_match(&expected, &["done 3/3"]));
    assert!(lines_match(&expected, &["1/3", "2/3", "done 3/3"]));
    assert!(!lines_match(&expected, &["done 3/3", "more"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_prints_what_the_readme_shows() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let steps = tour_steps(&readme);
    let commands: Vec<&str> = steps.iter().map(|s| s.command.as_str()).collect();
    for walk in ["segments create", "segments clone", "assign-topics", "save-as-list", "campaigns create"]
        .iter()
        .chain(&["segments export", "reset-scores", "audit score-reset "])
    {
        assert!(commands.iter().any(|c| c.contains(walk)), "the tour walks through {walk}: {commands:#?}");
    }

    // The campaign's recipient count the README shows, worked out from the
    // demo rows without the server.
    let demo = segmentd_server::demo::demo_contacts().unwrap();
    let young_de_fr = demo
        .iter()
        .filter(|c| {
            let age: Option<i64> = c.fields.get("age").and_then(|a| a.parse().ok());
            ["DE", "FR"].contains(&c.fields["country"].as_str()) && age.is_some_and(|a| (25..=34).contains(&a))
        })
        .count();
    let count_step = steps.iter().find(|s| s.command.contains("recipients \"Spring sale\" --count")).unwrap();
    assert_eq!(count_step.expected[0], young_de_fr.to_string());

    let dir = tempfile::tempdir().unwrap();
    let (served, _) = serve_demo(dir.path().join("data"), |_| {}).await;
    let model = served.model.clone().unwrap();
    let log = served.log.clone().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_segctl")).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let server = format!("http://{}", served.addr);

    for step in &steps {
        let end = log.last_seq().await.unwrap();
        model.wait_for(end, Duration::from_secs(30)).await.unwrap();
        let (command, work, path, server) = (step.command.clone(), work.clone(), path.clone(), server.clone());
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("bash")
                .arg("-c")
                .arg(&command)
                .current_dir(&work)
                .env("PATH", path)
                .env("SEGCTL_SERVER", server)
                .env_remove("SEGCTL_API_KEY")
                .env_remove("SEGCTL_OUTPUT")
                .output()
                .expect("bash runs")
        })
        .await
        .unwrap();
        let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = printed.trim_end().lines().collect();
        let refused = step.expected.first().is_some_and(|l| l.starts_with("error:"));
        assert_eq!(out.status.success(), !refused, "$ {}\n{printed}", step.command);
        assert!(
            lines_match(&step.expected, &lines),
            "$ {}\nthe README shows:\n{}\nsegctl printed:\n{printed}",
            step.command,
            step.expected.join("\n")
        );
    }
    // What the tour's export commands wrote is there, whole.
    for file in ["young-de-fr.csv", "young-de-fr.xlsx"] {
        assert!(std::fs::metadata(work.join(file)).unwrap().len() > 0, "{file}");
        assert!(!work.join(format!("{file}.partial")).exists());
    }
    served.stop().await.unwrap();
}

/// The README's dry-run and cancel section with the binary: a preview that
/// records nothing, the run that names its position, and stopping it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_dry_run_and_cancel_section_works() {
    let dir = tempfile::tempdir().unwrap();
    // One member per batch and a long pause: the job is part way when cancelled.
    let (served, server) = serve_demo(dir.path().to_path_buf(), |config| {
        config.jobs.batch_size = 1;
        config.jobs.pause = std::time::Duration::from_secs(3600);
    })
    .await;
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
    let (served, server) = serve_demo(dir.path().to_path_buf(), |_| {}).await;
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
