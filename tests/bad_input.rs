//! Bad input gets the right gRPC code, a message naming the problem, and
//! appends nothing to the log.

use segmentd_proto::v1 as pb;
use segmentd_tests::{TestServer, by_name, contact, start, text};
use tonic::Code;

async fn create(server: &mut TestServer, name: &str, criteria: &str) -> Result<pb::SegmentReply, tonic::Status> {
    server
        .commands
        .create_segment(pb::CreateSegmentRequest {
            command_id: String::new(),
            name: name.into(),
            criteria: text(criteria),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_criteria_names_and_batches_are_refused_and_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    let ok = create(&mut s, "germany", r#"country = "DE""#).await.unwrap();
    assert_eq!(ok.segment.as_ref().unwrap().version, 1);

    let cases: Vec<(&str, &str, Code, Vec<&str>)> = vec![
        ("unknown field", r#"shoe_size = 42"#, Code::InvalidArgument, vec!["shoe_size"]),
        ("wrong type for operator", r#"age contains "3""#, Code::InvalidArgument, vec!["age"]),
        ("wrong value type", r#"age = "thirty""#, Code::InvalidArgument, vec!["age"]),
        ("unbalanced parentheses", r#"(country = "DE" and age > 3"#, Code::InvalidArgument, vec![")"]),
        ("stray closing parenthesis", r#"country = "DE")"#, Code::InvalidArgument, vec![")"]),
        ("bad date", r#"added_at > "last tuesday""#, Code::InvalidArgument, vec!["added_at"]),
    ];
    for (what, criteria, code, needles) in cases {
        let before = s.last_seq().await;
        let status = create(&mut s, what, criteria).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {}", status.message());
        for n in needles {
            assert!(status.message().contains(n), "{what}: {:?} lacks {n:?}", status.message());
        }
        assert_eq!(s.last_seq().await, before, "{what} appended");
    }

    let long = "x".repeat(200);
    for (what, name, code) in [
        ("empty name", "", Code::InvalidArgument),
        ("blank name", "   ", Code::InvalidArgument),
        ("over-long name", long.as_str(), Code::InvalidArgument),
        ("duplicate name", "germany", Code::AlreadyExists),
        ("duplicate name, other case", "GERMANY", Code::AlreadyExists),
    ] {
        let before = s.last_seq().await;
        let status = create(&mut s, name, r#"country = "FR""#).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {}", status.message());
        assert!(status.message().contains("name"), "{what}: {}", status.message());
        assert_eq!(s.last_seq().await, before, "{what} appended");
    }

    // Stale expected version.
    let before = s.last_seq().await;
    let status = s
        .commands
        .update_segment(pb::UpdateSegmentRequest {
            command_id: String::new(),
            segment: by_name("germany"),
            expected_version: 7,
            name: Some("deutschland".into()),
            criteria: None,
        })
        .await
        .expect_err("stale version");
    assert_eq!(status.code(), Code::Aborted, "{}", status.message());
    assert!(status.message().contains("version"), "{}", status.message());
    assert_eq!(s.last_seq().await, before);

    // Oversized batch.
    let big: Vec<_> = (0..1001).map(|i| contact(&format!("c{i}@example.com"), &[])).collect();
    let status = s
        .commands
        .upsert_contacts(pb::UpsertContactsRequest { command_id: String::new(), contacts: big })
        .await
        .expect_err("oversized batch");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("1000"), "{}", status.message());
    assert_eq!(s.last_seq().await, before);

    // Invalid email, in the middle of an otherwise good batch.
    let batch = vec![contact("good@example.com", &[]), contact("not-an-email", &[("country", "DE")])];
    let status = s
        .commands
        .upsert_contacts(pb::UpsertContactsRequest { command_id: String::new(), contacts: batch })
        .await
        .expect_err("invalid email");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("contacts[1].email"), "{}", status.message());
    assert_eq!(s.last_seq().await, before);

    // A field value of the wrong type.
    let batch = vec![contact("good@example.com", &[("age", "old")])];
    let status = s
        .commands
        .upsert_contacts(pb::UpsertContactsRequest { command_id: String::new(), contacts: batch })
        .await
        .expect_err("bad age");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("age"), "{}", status.message());
    assert_eq!(s.last_seq().await, before);

    // The same email twice in one batch.
    let batch = vec![contact("twice@example.com", &[]), contact("TWICE@example.com", &[])];
    let status = s
        .commands
        .upsert_contacts(pb::UpsertContactsRequest { command_id: String::new(), contacts: batch })
        .await
        .expect_err("duplicate email");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("twice@example.com"), "{}", status.message());
    assert_eq!(s.last_seq().await, before);

    // Unknown segment.
    let status = s
        .queries
        .count_members(pb::CountMembersRequest {
            segment: by_name("nope"),
            min_sequence: 0,
            at: String::new(),
            ..Default::default()
        })
        .await
        .expect_err("unknown segment");
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("nope"));
}
