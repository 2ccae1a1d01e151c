//! Segments of segments end to end, on the embedded log and on a real
//! nats-server: `in segment "Name"` (text) and `in_segment` (tree) are
//! saved by id; a user segment's members follow the used segment's
//! contacts and its redefinition; PreviewCriteria and ExplainMembership
//! follow the chain; a cycle, an unknown segment and deleting a segment in
//! use are refused with the right code, naming what is wrong, and append
//! nothing; after a restart the members are the same.

use segmentd_proto::v1 as pb;
use segmentd_tests::{Backend, OnBackend, TestServer, by_name, contact, import, on_both_logs, start_on, text};
use tonic::Code;

fn by_id(id: u64) -> Option<pb::SegmentRef> {
    Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Id(id)) })
}

async fn create(s: &mut TestServer, name: &str, criteria: Option<pb::CriteriaInput>) -> Result<u64, tonic::Status> {
    let req = pb::CreateSegmentRequest { command_id: String::new(), name: name.into(), criteria };
    s.commands.create_segment(req).await.map(|r| r.into_inner().sequence)
}

async fn redefine(s: &mut TestServer, id: u64, criteria: &str) -> Result<u64, tonic::Status> {
    let req = pb::UpdateSegmentRequest {
        command_id: String::new(),
        segment: by_id(id),
        expected_version: 0,
        name: None,
        criteria: text(criteria),
    };
    s.commands.update_segment(req).await.map(|r| r.into_inner().sequence)
}

/// The members' emails, all pages.
async fn members(s: &mut TestServer, segment: &str, min_sequence: u64) -> Vec<String> {
    let mut emails = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = pb::ListMembersRequest {
            segment: by_name(segment),
            page_size: 2,
            page_token: page_token.clone(),
            min_sequence,
            ..Default::default()
        };
        let page = s.queries.list_members(req).await.unwrap().into_inner();
        emails.extend(page.contacts.into_iter().map(|c| c.email));
        if page.next_page_token.is_empty() {
            return emails;
        }
        page_token = page.next_page_token;
    }
}

async fn count(s: &mut TestServer, segment: &str, min_sequence: u64) -> u64 {
    let req = pb::CountMembersRequest { segment: by_name(segment), min_sequence, ..Default::default() };
    s.queries.count_members(req).await.unwrap().into_inner().count
}

fn people() -> Vec<pb::ContactInput> {
    vec![
        contact("ann@x.com", &[("age", "25"), ("country", "DE")]),
        contact("bob@x.com", &[("age", "35"), ("country", "DE")]),
        contact("cem@x.com", &[("age", "22"), ("country", "FR")]),
        contact("dan@x.com", &[("age", "28"), ("country", "DE")]),
    ]
}

async fn members_follow_the_segments_they_use(backend: Backend) {
    let OnBackend { server: mut s, nats, dir } = start_on(backend, |_| {}).await;
    import(&mut s.commands, people()).await;
    create(&mut s, "Young", text("age < 30")).await.unwrap();
    let seq = create(&mut s, "Young DE", text(r#"in segment "young" and country = "DE""#)).await.unwrap();
    // The tree form, by name, negated: the Germans who are not young.
    let tree = pb::Criteria {
        node: Some(pb::criteria::Node::All(pb::Group {
            children: vec![
                pb::Criteria {
                    node: Some(pb::criteria::Node::Not(Box::new(pb::Criteria {
                        node: Some(pb::criteria::Node::InSegment(by_name("Young").unwrap())),
                    }))),
                },
                pb::Criteria {
                    node: Some(pb::criteria::Node::Condition(pb::Condition {
                        field: "country".into(),
                        operator: pb::Operator::Equals as i32,
                        values: vec![pb::Value { kind: Some(pb::value::Kind::Text("DE".into())) }],
                        days: 0,
                    })),
                },
            ],
        })),
    };
    let tree = Some(pb::CriteriaInput { kind: Some(pb::criteria_input::Kind::Tree(tree)) });
    create(&mut s, "Older DE", tree).await.unwrap();

    // Saved by id: a rename of the used segment changes nothing.
    let req = pb::GetSegmentRequest { segment: by_name("Young DE"), min_sequence: seq, as_of: None };
    let got = s.queries.get_segment(req).await.unwrap().into_inner();
    assert_eq!(got.criteria_text, r#"in segment 1 and country = "DE""#);
    let req = pb::UpdateSegmentRequest {
        command_id: String::new(),
        segment: by_id(1),
        expected_version: 0,
        name: Some("Under 30".into()),
        criteria: None,
    };
    let seq = s.commands.update_segment(req).await.unwrap().into_inner().sequence;
    assert_eq!(members(&mut s, "Young DE", seq).await, ["ann@x.com", "dan@x.com"]);
    assert_eq!(members(&mut s, "Older DE", seq).await, ["bob@x.com"]);

    // A contact's change moves it through the chain.
    let req =
        pb::UpsertContactsRequest { command_id: String::new(), contacts: vec![contact("ann@x.com", &[("age", "31")])] };
    let seq = s.commands.upsert_contacts(req).await.unwrap().into_inner().sequence;
    assert_eq!(members(&mut s, "Young DE", seq).await, ["dan@x.com"]);
    assert_eq!(members(&mut s, "Older DE", seq).await, ["ann@x.com", "bob@x.com"]);

    // Redefining the used segment moves its users' members.
    let seq = redefine(&mut s, 1, "age < 40").await.unwrap();
    assert_eq!(members(&mut s, "Young DE", seq).await, ["ann@x.com", "bob@x.com", "dan@x.com"]);
    assert_eq!(count(&mut s, "Older DE", seq).await, 0);

    // A preview may use saved segments by name too, through the chain.
    let req = pb::PreviewCriteriaRequest {
        criteria: text(r#"in segment "Young DE" and age > 30"#),
        page_size: 10,
        min_sequence: seq,
        at: String::new(),
    };
    let preview = s.queries.preview_criteria(req).await.unwrap().into_inner();
    assert_eq!((preview.count, preview.criteria_text.as_str()), (2, "in segment 2 and age > 30"));
    let req = pb::PreviewCriteriaRequest { criteria: text(r#"in segment "Nobody""#), ..Default::default() };
    let err = s.queries.preview_criteria(req).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("\"Nobody\""), "{}", err.message());

    // Explain shows the used segment's tree under the condition.
    let req = pb::ExplainMembershipRequest {
        segment: by_name("Young DE"),
        contact: Some(pb::explain_membership_request::Contact::Email("bob@x.com".into())),
        min_sequence: seq,
        ..Default::default()
    };
    let explained = s.queries.explain_membership(req).await.unwrap().into_inner();
    assert!(explained.member);
    let tree = explained.tree.unwrap();
    let used = &tree.children[0];
    assert_eq!((used.kind.as_str(), used.segment_id, used.segment_name.as_str()), ("segment", 1, "Under 30"));
    assert_eq!((used.result, used.children[0].condition.as_str()), (true, "age < 40"));

    // After a restart the members are computed again, the same.
    s.served.stop().await.unwrap();
    let mut s = segmentd_tests::start_config(segmentd_tests::config_on(dir.path(), nats.as_ref())).await;
    let head = s.last_seq().await;
    assert_eq!(members(&mut s, "Young DE", head).await, ["ann@x.com", "bob@x.com", "dan@x.com"]);
    s.served.stop().await.unwrap();
}

async fn cycles_unknown_segments_and_deleting_a_used_segment_are_refused(backend: Backend) {
    let OnBackend { server: mut s, nats: _nats, dir: _dir } = start_on(backend, |_| {}).await;
    import(&mut s.commands, people()).await;
    create(&mut s, "A", text("age < 30")).await.unwrap();
    create(&mut s, "B", text(r#"in segment "A" and country = "DE""#)).await.unwrap();
    create(&mut s, "C", text(r#"in segment "B" or age > 60"#)).await.unwrap();
    let head = s.last_seq().await;

    let err = redefine(&mut s, 1, "not in segment 3").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains(r#""A" (1) → "C" (3) → "B" (2) → "A" (1)"#), "{}", err.message());

    let err = create(&mut s, "D", text(r#"in segment "Z""#)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("\"Z\""), "{}", err.message());
    let err = create(&mut s, "D", text("in segment 99")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let req = pb::DeleteSegmentRequest { command_id: String::new(), segment: by_name("A"), expected_version: 0 };
    let err = s.commands.delete_segment(req).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(r#"used by the criteria of "B" (2)"#), "{}", err.message());
    assert_eq!(s.last_seq().await, head, "refusals append nothing");

    // Once no one uses it, it can go.
    redefine(&mut s, 2, r#"country = "DE""#).await.unwrap();
    let req = pb::DeleteSegmentRequest { command_id: String::new(), segment: by_name("A"), expected_version: 0 };
    s.commands.delete_segment(req).await.unwrap();
    s.served.stop().await.unwrap();
}

on_both_logs!(members_follow_the_segments_they_use, cycles_unknown_segments_and_deleting_a_used_segment_are_refused);
