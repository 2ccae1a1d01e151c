//! The README's segments-of-segments commands, run for real: segctl (the
//! binary) defines segments that use another, shows who uses whom, counts
//! the members through the chain, and is refused deleting a used segment.

mod common;

use common::{segctl, serve_demo, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_using_a_segment_are_shown_counted_and_protect_it() {
    let dir = tempfile::tempdir().unwrap();
    let (served, server) = serve_demo(dir.path().to_path_buf(), |_| {}).await;

    let s = server.clone();
    let (buyers, de_buyers, counts, refused) = tokio::task::spawn_blocking(move || {
        stdout(&segctl(&s, &["segments", "create", "buyers", "--criteria", "purchase_count > 0"]));
        let user = r#"in segment "buyers" and country = "DE""#;
        stdout(&segctl(&s, &["segments", "create", "de-buyers", "--criteria", user]));
        let user = r#"country = "DE" and not in segment "buyers""#;
        stdout(&segctl(&s, &["segments", "create", "de-prospects", "--criteria", user]));
        let buyers = stdout(&segctl(&s, &["segments", "get", "buyers"]));
        let de_buyers = stdout(&segctl(&s, &["segments", "get", "de-buyers"]));
        let counts: Vec<u64> = ["de-buyers", "de-prospects", "germany"]
            .iter()
            .map(|name| stdout(&segctl(&s, &["segments", "count", name])).trim().parse().unwrap())
            .collect();
        let refused = segctl(&s, &["segments", "delete", "buyers"]);
        (buyers, de_buyers, counts, refused)
    })
    .await
    .unwrap();
    let id = |text: &str| text.lines().next().unwrap().trim_start_matches("id:").trim().to_owned();
    let (buyers_id, de_buyers_id) = (id(&buyers), id(&de_buyers));
    assert!(buyers.contains(&format!("used by:   de-buyers ({de_buyers_id}), de-prospects (")), "{buyers}");
    assert!(de_buyers.contains(&format!("criteria:  in segment {buyers_id} and country = \"DE\"")), "{de_buyers}");
    assert!(de_buyers.contains(&format!("uses:      buyers ({buyers_id})")), "{de_buyers}");
    // Every German is a buyer or a prospect, and some of each.
    assert!(counts[0] > 0 && counts[1] > 0, "{counts:?}");
    assert_eq!(counts[0] + counts[1], counts[2], "{counts:?}");
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("FAILED_PRECONDITION") && stderr.contains("\"de-buyers\""), "{stderr}");
    served.stop().await.unwrap();
}
