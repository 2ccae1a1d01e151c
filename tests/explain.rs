//! ExplainMembership end to end, on the embedded log and on a real
//! nats-server: the criteria tree with the contact's values and each
//! condition's and group's result, and the event since which the contact
//! is (or is not) a member — its own update, the segment's redefinition,
//! or the clock moving a relative condition.

use segmentd_domain::Timestamp;
use segmentd_proto::v1 as pb;
use segmentd_server::Clock;
use segmentd_server::auth::ApiKeys;
use segmentd_tests::{Backend, TestServer, by_name, config_on, contact, start_config, text, with_key};
use tonic::Code;

const KEY_1: &str = "acme-key-one-0123456789";
const KEY_2: &str = "acme-key-two-0123456789";
const DAY_MS: i64 = 86_400_000;
const YOUNG_EU: &str = r#"country in ("DE", "FR") and (age between 25 and 34 or score > 200)"#;

fn now() -> Timestamp {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    Timestamp(i64::try_from(since.as_millis()).unwrap())
}

async fn upsert(s: &mut TestServer, key: &str, fields: &[(&str, &str)]) -> u64 {
    let req = pb::UpsertContactsRequest { command_id: String::new(), contacts: vec![contact("anna@acme.com", fields)] };
    s.commands.upsert_contacts(with_key(key, req)).await.unwrap().into_inner().sequence
}

async fn explain(
    s: &mut TestServer,
    segment: &str,
    who: pb::explain_membership_request::Contact,
    min_sequence: u64,
) -> Result<pb::MembershipExplanation, tonic::Status> {
    let req =
        pb::ExplainMembershipRequest { segment: by_name(segment), contact: Some(who), at: String::new(), min_sequence };
    s.queries.explain_membership(with_key(KEY_1, req)).await.map(|r| r.into_inner())
}

fn anna() -> pb::explain_membership_request::Contact {
    pb::explain_membership_request::Contact::Email("anna@acme.com".into())
}

/// The conditions of a tree, depth first: (condition, value, result).
fn conditions(node: &pb::ExplainedNode) -> Vec<(String, String, bool)> {
    if node.kind == "condition" {
        return vec![(node.condition.clone(), node.value.clone(), node.result)];
    }
    node.children.iter().flat_map(conditions).collect()
}

async fn explain_membership(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let nats = backend.log_server().await;
    let clock = Clock::pinned(now());
    let mut config = config_on(dir.path(), nats.as_ref());
    config.api_keys = ApiKeys::parse(&[format!("acme:{KEY_1}"), format!("acme:{KEY_2}")]).unwrap();
    config.clock = clock.clone();
    let mut s = start_config(config).await;

    upsert(&mut s, KEY_1, &[("country", "FR"), ("age", "40"), ("score", "100"), ("contact_id", "7")]).await;
    let req = pb::CreateSegmentRequest { command_id: String::new(), name: "young-eu".into(), criteria: text(YOUNG_EU) };
    let created = s.commands.create_segment(with_key(KEY_1, req)).await.unwrap().into_inner().sequence;

    // Not a member, never was: every condition with its value and result.
    let e = explain(&mut s, "young-eu", anna(), created).await.unwrap();
    assert!(!e.member && e.since.is_none() && e.history_note.is_empty(), "{e:?}");
    let tree = e.tree.unwrap();
    assert_eq!((tree.kind.as_str(), tree.result), ("all", false));
    assert_eq!((tree.children[1].kind.as_str(), tree.children[1].result), ("any", false));
    assert_eq!(
        conditions(&tree),
        [
            (r#"country in ("DE", "FR")"#.to_owned(), "FR".to_owned(), true),
            ("age between 25 and 34".to_owned(), "40".to_owned(), false),
            ("score > 200".to_owned(), "100".to_owned(), false),
        ]
    );

    // The contact's update made it a member: that event, with its actor.
    let entered = upsert(&mut s, KEY_2, &[("score", "250")]).await;
    let e = explain(&mut s, "young-eu", anna(), entered).await.unwrap();
    assert!(e.member);
    let since = e.since.unwrap();
    assert_eq!(since.cause, pb::MembershipCause::ContactChanged as i32);
    assert_eq!(
        (since.sequence, since.event_type.as_str(), since.actor.as_str()),
        (entered, "ContactUpdated", "acme/key-2")
    );
    // The same contact by its contact_id.
    let by_id = explain(&mut s, "young-eu", pb::explain_membership_request::Contact::ContactId(7), entered).await;
    assert_eq!(by_id.unwrap().email, "anna@acme.com");
    // A change that moves nothing is not the cause.
    upsert(&mut s, KEY_1, &[("city", "Lyon")]).await;

    // The segment's redefinition left it out.
    let req = pb::UpdateSegmentRequest {
        command_id: String::new(),
        segment: by_name("young-eu"),
        expected_version: 0,
        name: None,
        criteria: text(r#"country in ("DE", "FR") and score > 300"#),
    };
    let redefined = s.commands.update_segment(with_key(KEY_1, req)).await.unwrap().into_inner().sequence;
    let e = explain(&mut s, "young-eu", anna(), redefined).await.unwrap();
    assert!(!e.member);
    let since = e.since.unwrap();
    assert_eq!(since.cause, pb::MembershipCause::SegmentDefined as i32);
    assert_eq!((since.sequence, since.event_type.as_str()), (redefined, "SegmentUpdated"));

    // A relative condition: a member since the open, out once a week passed.
    let req = pb::CreateSegmentRequest {
        command_id: String::new(),
        name: "recent".into(),
        criteria: text("last_opened_at within_last 7 days"),
    };
    s.commands.create_segment(with_key(KEY_1, req)).await.unwrap();
    let open = pb::RecordActivityRequest {
        command_id: String::new(),
        email: "anna@acme.com".into(),
        kind: pb::ActivityKind::EmailOpened.into(),
        time: Timestamp(now().0 - DAY_MS).to_string(),
        ..Default::default()
    };
    let opened = s.commands.record_activity(with_key(KEY_1, open)).await.unwrap().into_inner().sequence;
    let e = explain(&mut s, "recent", anna(), opened).await.unwrap();
    let since = e.since.unwrap();
    assert!(e.member);
    assert_eq!((since.cause, since.sequence), (pb::MembershipCause::ContactChanged as i32, opened));
    clock.set(Timestamp(now().0 + 10 * DAY_MS));
    let e = explain(&mut s, "recent", anna(), opened).await.unwrap();
    assert!(!e.member);
    let since = e.since.unwrap();
    assert_eq!((since.cause, since.sequence), (pb::MembershipCause::TimePassed as i32, opened), "{since:?}");

    // Refusals name what is missing.
    let e = explain(&mut s, "young-eu", pb::explain_membership_request::Contact::Email("x@acme.com".into()), 0).await;
    assert_eq!(e.unwrap_err().code(), Code::NotFound);
    let e = explain(&mut s, "young-eu", pb::explain_membership_request::Contact::ContactId(8), 0).await;
    assert_eq!(e.unwrap_err().code(), Code::NotFound);
    assert_eq!(explain(&mut s, "nowhere", anna(), 0).await.unwrap_err().code(), Code::NotFound);
    let e = explain(&mut s, "young-eu", pb::explain_membership_request::Contact::Email("not an email".into()), 0).await;
    assert_eq!(e.unwrap_err().code(), Code::InvalidArgument);
    let req = pb::ExplainMembershipRequest { segment: by_name("young-eu"), ..Default::default() };
    let e = s.queries.explain_membership(with_key(KEY_1, req)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("contact"), "{e:?}");
    s.served.stop().await.unwrap();
}

#[tokio::test]
async fn embedded_explain_membership() {
    explain_membership(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_explain_membership() {
    explain_membership(Backend::Nats).await;
}
