//! The twelve standard criteria (../shared/bench/criteria.md) over the first
//! 10,000 contacts of `gen_contacts.py --seed 42`, imported through gRPC:
//! every count the server gives must equal the count of a deliberately plain
//! evaluator over the same rows that shares no code with the engine.

use segmentd_proto::v1 as pb;
use segmentd_tests::{by_name, import, start, text};
use std::collections::HashMap;

type Row = HashMap<String, String>;

fn rows(inputs: &[pb::ContactInput]) -> Vec<Row> {
    inputs
        .iter()
        .map(|c| {
            let mut r = c.fields.clone();
            r.insert("email".into(), c.email.clone());
            r
        })
        .collect()
}

fn s<'r>(r: &'r Row, f: &str) -> &'r str {
    r.get(f).map(String::as_str).unwrap_or("")
}

fn lower(r: &Row, f: &str) -> String {
    s(r, f).to_lowercase()
}

fn int(r: &Row, f: &str) -> Option<i64> {
    s(r, f).parse().ok()
}

/// total_spent in cents: the generator writes exactly two decimals.
fn cents(r: &Row, f: &str) -> Option<i64> {
    let v = s(r, f);
    let (a, b) = v.split_once('.')?;
    Some(a.parse::<i64>().ok()? * 100 + b.parse::<i64>().ok()?)
}

/// The generator writes UTC instants in one fixed-width form, so text order is time order.
fn time<'r>(r: &'r Row, f: &str) -> Option<&'r str> {
    Some(s(r, f)).filter(|v| !v.is_empty())
}

type Plain = fn(&Row) -> bool;

const CRITERIA: [(&str, &str, Plain); 12] = [
    ("q1", r#"country = "DE""#, |r| lower(r, "country") == "de"),
    ("q2", r#"country in ("US","CA","MX")"#, |r| ["us", "ca", "mx"].contains(&lower(r, "country").as_str())),
    ("q3", "age between 25 and 34", |r| int(r, "age").is_some_and(|a| (25..=34).contains(&a))),
    ("q4", r#"country = "US" and lifecycle_stage = "customer" and score > 200"#, |r| {
        lower(r, "country") == "us"
            && lower(r, "lifecycle_stage") == "customer"
            && int(r, "score").is_some_and(|s| s > 200)
    }),
    ("q5", r#"country in ("DE","FR") and (age between 25 and 34 or score >= 150)"#, |r| {
        ["de", "fr"].contains(&lower(r, "country").as_str())
            && (int(r, "age").is_some_and(|a| (25..=34).contains(&a)) || int(r, "score").is_some_and(|s| s >= 150))
    }),
    ("q6", r#"email ends_with "@gmail.com" and company starts_with "acme""#, |r| {
        lower(r, "email").ends_with("@gmail.com") && lower(r, "company").starts_with("acme")
    }),
    ("q7", r#"last_opened_at >= "2026-08-03T00:00:00Z" and lifecycle_stage != "subscriber""#, |r| {
        time(r, "last_opened_at").is_some_and(|t| t >= "2026-08-03T00:00:00Z")
            && lower(r, "lifecycle_stage") != "subscriber"
    }),
    ("q8", "company is_not_empty and age is_empty", |r| !s(r, "company").is_empty() && s(r, "age").is_empty()),
    ("q9", r#"custom.plan = "enterprise" and custom.industry in ("software","finance")"#, |r| {
        lower(r, "custom.plan") == "enterprise"
            && ["software", "finance"].contains(&lower(r, "custom.industry").as_str())
    }),
    ("q10", r#"gender != "unknown""#, |r| lower(r, "gender") != "unknown"),
    ("q11", r#"country = "JP" and purchase_count >= 5 and total_spent > 1000"#, |r| {
        lower(r, "country") == "jp"
            && int(r, "purchase_count").is_some_and(|n| n >= 5)
            && cents(r, "total_spent").is_some_and(|c| c > 100_000)
    }),
    (
        "q12",
        r#"last_name contains "son" and added_at between "2025-01-01T00:00:00Z" and "2025-12-31T23:59:59Z" and not (country = "US")"#,
        |r| {
            lower(r, "last_name").contains("son")
                && time(r, "added_at").is_some_and(|t| ("2025-01-01T00:00:00Z"..="2025-12-31T23:59:59Z").contains(&t))
                && lower(r, "country") != "us"
        },
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_of_the_twelve_standard_criteria_match_a_plain_evaluator() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path()).await;
    let contacts = segmentd_server::demo::demo_contacts().unwrap();
    assert_eq!(contacts.len(), 10_000);
    let rows = rows(&contacts);
    let seq = import(&mut server.commands, contacts).await;

    for (name, criteria, plain) in CRITERIA {
        let expected = rows.iter().filter(|r| plain(r)).count() as u64;
        assert!(expected > 0, "{name}: the plain evaluator found nothing; the check would be vacuous");
        let created = server
            .commands
            .create_segment(pb::CreateSegmentRequest {
                command_id: String::new(),
                name: name.into(),
                criteria: text(criteria),
            })
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .into_inner();
        let count = server
            .queries
            .count_members(pb::CountMembersRequest {
                segment: by_name(name),
                min_sequence: created.sequence.max(seq),
                at: String::new(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .count;
        assert_eq!(count, expected, "{name}: {criteria}");

        let preview = server
            .queries
            .preview_criteria(pb::PreviewCriteriaRequest {
                criteria: text(criteria),
                page_size: 5,
                min_sequence: seq,
                at: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(preview.count, expected, "{name} preview");
        for c in &preview.contacts {
            let mut row = c.fields.clone();
            row.insert("email".into(), c.email.clone());
            assert!(plain(&row), "{name}: preview returned non-member {}", c.email);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relative_form_of_q7_at_the_reference_instant_matches_the_absolute_form() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path()).await;
    let contacts = segmentd_server::demo::demo_contacts().unwrap();
    let seq = import(&mut server.commands, contacts).await;
    let count = |criteria: &'static str| {
        let mut q = server.queries.clone();
        async move {
            q.preview_criteria(pb::PreviewCriteriaRequest {
                criteria: text(criteria),
                page_size: 1,
                min_sequence: seq,
                at: "2026-11-01T00:00:00Z".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .count
        }
    };
    let absolute = count(r#"last_opened_at >= "2026-08-03T00:00:00Z" and lifecycle_stage != "subscriber""#).await;
    let relative = count(r#"last_opened_at within_last 90 days and lifecycle_stage != "subscriber""#).await;
    assert!(absolute > 0);
    assert_eq!(relative, absolute);
}

/// The committed sample must be exactly what the generator writes; checked
/// whenever the generator is where the workspace's sibling `shared/` has it.
#[test]
fn the_committed_sample_is_the_generators_output() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = std::env::var_os("SEGMENTD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/bench"))
        .join("gen_contacts.py");
    if !script.exists() {
        eprintln!("{} not found; comparing the sample's shape only", script.display());
    }
    let contacts = segmentd_server::demo::demo_contacts().unwrap();
    assert_eq!(contacts.len(), 10_000);
    assert_eq!(contacts[0].email, "marco.anderson1@hotmail.com");
    if script.exists() {
        let out = std::process::Command::new("python3")
            .arg(&script)
            .args(["--count", "10000", "--seed", "42"])
            .output()
            .expect("python3 runs the generator");
        assert!(out.status.success());
        let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
        let headers = reader.headers().unwrap().clone();
        for (row, ours) in reader.records().zip(&contacts) {
            let row = row.unwrap();
            for (h, v) in headers.iter().zip(row.iter()) {
                let mine = if h == "email" { Some(&ours.email) } else { ours.fields.get(h) };
                assert_eq!(mine.map(String::as_str), Some(v), "{} column {h}", ours.email);
            }
        }
    }
}
