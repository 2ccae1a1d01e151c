//! The README tour's jobs part, run for real: segctl (the binary) resets the
//! scores of a demo segment, follows the job, reads the audit entry back,
//! and records activity.

mod common;

use common::{segctl, serve_demo, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_scores_then_read_the_audit_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (served, server) = serve_demo(dir.path().to_path_buf(), |_| {}).await;

    let s = server.clone();
    let (refused, reset, members, list, entry, json) = tokio::task::spawn_blocking(move || {
        let refused = segctl(&s, &["segments", "reset-scores", "germany", "--reason", "v2"]);
        let reset = stdout(&segctl(
            &s,
            &[
                "segments",
                "reset-scores",
                "germany",
                "--reason",
                "scoring model v2",
                "--agree",
                "--job-id",
                "reset-q2",
                "--wait",
            ],
        ));
        let members = stdout(&segctl(&s, &["segments", "count", "germany"]));
        let list = stdout(&segctl(&s, &["audit", "score-resets", "--segment", "germany"]));
        let entry = stdout(&segctl(&s, &["audit", "score-reset", "reset-q2", "--limit", "5"]));
        let json = stdout(&segctl(&s, &["--output", "json", "audit", "score-reset", "reset-q2"]));
        (refused, reset, members, list, entry, json)
    })
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("FAILED_PRECONDITION") && stderr.contains("agree"), "{stderr}");

    let members: u64 = members.trim().parse().unwrap();
    assert!(members > 0);
    let last = reset.lines().last().unwrap();
    assert!(last.starts_with("reset-q2 reset_scores: completed"), "{reset}");
    assert!(last.contains(&format!("{members}/{members}")), "{reset}");
    assert!(list.contains("reset-q2") && list.contains("scoring model v2"), "{list}");
    assert!(entry.contains("reason:  scoring model v2"), "{entry}");
    let rows = entry.lines().skip_while(|l| !l.starts_with("EMAIL")).skip(1).count();
    assert_eq!(rows, 5, "{entry}");
    let mut lines = json.lines();
    let summary: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(summary["affected"].as_u64(), Some(members));
    assert_eq!(lines.count() as u64, members, "every affected contact with its previous score");

    let s = server.clone();
    let (activity, job) = tokio::task::spawn_blocking(move || {
        let activity = stdout(&segctl(
            &s,
            &[
                "--output",
                "json",
                "contacts",
                "activity",
                "marco.anderson1@hotmail.com",
                "--kind",
                "purchase",
                "--amount",
                "49.90",
            ],
        ));
        let job = stdout(&segctl(&s, &["--output", "json", "jobs", "get", "reset-q2"]));
        (activity, job)
    })
    .await
    .unwrap();
    let activity: serde_json::Value = serde_json::from_str(activity.trim()).unwrap();
    assert!(activity["contact"]["fields"]["last_purchase_at"].is_string(), "{activity}");
    let job: serde_json::Value = serde_json::from_str(job.trim()).unwrap();
    assert_eq!(job["state"], "completed");
    assert_eq!(job["reason"], "scoring model v2");
    served.stop().await.unwrap();
}
