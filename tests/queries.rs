//! Commands and queries end to end: read-your-writes, paging, segment
//! lifecycle, idempotency, org isolation, restart and rebuild, health and
//! reflection.

use segmentd_proto::v1 as pb;
use segmentd_server::auth::{API_KEY_HEADER, ApiKeys};
use segmentd_tests::{TestServer, by_name, contact, import, start, start_with, text};
use tonic::Code;

async fn upsert(s: &mut TestServer, command_id: &str, contacts: Vec<pb::ContactInput>) -> pb::UpsertContactsReply {
    s.commands
        .upsert_contacts(pb::UpsertContactsRequest { command_id: command_id.into(), contacts })
        .await
        .unwrap()
        .into_inner()
}

async fn get(s: &mut TestServer, email: &str, min_sequence: u64) -> Result<pb::Contact, tonic::Status> {
    s.queries.get_contact(pb::GetContactRequest { email: email.into(), min_sequence }).await.map(|r| r.into_inner())
}

async fn create(s: &mut TestServer, name: &str, criteria: &str) -> pb::SegmentReply {
    s.commands
        .create_segment(pb::CreateSegmentRequest {
            command_id: String::new(),
            name: name.into(),
            criteria: text(criteria),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn count(s: &mut TestServer, name: &str, min_sequence: u64) -> u64 {
    s.queries
        .count_members(pb::CountMembersRequest {
            segment: by_name(name),
            min_sequence,
            at: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .count
}

async fn all_members(s: &mut TestServer, name: &str, page_size: u32, min_sequence: u64) -> Vec<String> {
    let mut emails = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .queries
            .list_members(pb::ListMembersRequest {
                segment: by_name(name),
                page_size,
                page_token: token.clone(),
                min_sequence,
                at: String::new(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.contacts.len() <= page_size as usize);
        emails.extend(page.contacts.into_iter().map(|c| c.email));
        if page.next_page_token.is_empty() {
            return emails;
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_are_readable_at_their_sequence_and_keep_unnamed_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    let r =
        upsert(&mut s, "", vec![contact("Ann@Example.com", &[("country", "DE"), ("city", "München"), ("age", "31")])])
            .await;
    assert_eq!((r.created, r.updated), (1, 0));
    let c = get(&mut s, "ann@example.com", r.sequence).await.unwrap();
    assert_eq!(c.email, "ann@example.com");
    assert_eq!(c.fields["city"], "München");
    assert_eq!(c.fields["age"], "31");

    let r = upsert(&mut s, "", vec![contact("ann@example.com", &[("age", ""), ("custom.plan", "pro")])]).await;
    assert_eq!((r.created, r.updated), (0, 1));
    let c = get(&mut s, "ann@example.com", r.sequence).await.unwrap();
    assert!(!c.fields.contains_key("age"), "age was cleared");
    assert_eq!(c.fields["country"], "DE", "unnamed fields are kept");
    assert_eq!(c.fields["custom.plan"], "pro");

    let same = upsert(&mut s, "", vec![contact("ann@example.com", &[("country", "DE")])]).await;
    assert_eq!(same.unchanged, 1);
    assert_eq!(same.sequence, r.sequence, "a no-op upsert answers with the contact's sequence");

    let seg = create(&mut s, "munich", r#"city = "münchen""#).await;
    assert_eq!(count(&mut s, "munich", seg.sequence).await, 1, "text compares case-insensitively");

    let del = s
        .commands
        .delete_contacts(pb::DeleteContactsRequest {
            command_id: String::new(),
            emails: vec!["ann@example.com".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(del.deleted, 1);
    assert_eq!(get(&mut s, "ann@example.com", del.sequence).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(count(&mut s, "munich", del.sequence).await, 0);
    let again = s
        .commands
        .delete_contacts(pb::DeleteContactsRequest {
            command_id: String::new(),
            emails: vec!["ann@example.com".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_command_id_records_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    let first = upsert(&mut s, "batch-1", vec![contact("a@x.com", &[("score", "5")])]).await;
    let before = s.last_seq().await;
    let retry = upsert(&mut s, "batch-1", vec![contact("a@x.com", &[("score", "6")])]).await;
    assert!(retry.duplicate);
    assert_eq!(retry.sequence, first.sequence);
    assert_eq!(s.last_seq().await, before);

    let created = s
        .commands
        .create_segment(pb::CreateSegmentRequest {
            command_id: "mk-seg".into(),
            name: "s".into(),
            criteria: text("score > 1"),
        })
        .await
        .unwrap()
        .into_inner();
    let retried = s
        .commands
        .create_segment(pb::CreateSegmentRequest {
            command_id: "mk-seg".into(),
            name: "s".into(),
            criteria: text("score > 1"),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(retried.duplicate);
    assert_eq!(retried.sequence, created.sequence);
    assert_eq!(retried.segment.unwrap().id, created.segment.unwrap().id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_pages_cover_every_member_once_in_a_stable_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    let contacts: Vec<_> =
        (0..2500).map(|i| contact(&format!("p{i}@example.com"), &[("score", &(i % 10).to_string())])).collect();
    let seq = import(&mut s.commands, contacts).await;
    let seg = create(&mut s, "high", "score >= 5").await;
    let seq = seq.max(seg.sequence);
    let pages_of_7 = all_members(&mut s, "high", 7, seq).await;
    let pages_of_1000 = all_members(&mut s, "high", 1000, seq).await;
    assert_eq!(pages_of_7.len(), 1250);
    assert_eq!(pages_of_7, pages_of_1000, "paging does not change the order");
    let expected: Vec<String> = (0..2500).filter(|i| i % 10 >= 5).map(|i| format!("p{i}@example.com")).collect();
    assert_eq!(pages_of_7, expected, "members come in the order contacts were created");
    let bad = s
        .queries
        .list_members(pb::ListMembersRequest {
            segment: by_name("high"),
            page_size: 10,
            page_token: "garbage".into(),
            min_sequence: 0,
            at: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("page_token"));
}

async fn page(
    s: &mut TestServer,
    seq: u64,
    layout: pb::PageLayout,
    fields: &[&str],
    token: &str,
) -> pb::ListMembersReply {
    let request = pb::ListMembersRequest {
        segment: by_name("plans"),
        page_size: 2,
        page_token: token.into(),
        min_sequence: seq,
        layout: layout.into(),
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        ..Default::default()
    };
    s.queries.list_members(request).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_pages_come_as_rows_of_the_fields_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    import(
        &mut s.commands,
        vec![
            contact("a@example.com", &[("custom.plan", "pro"), ("age", "31"), ("city", "Paris")]),
            contact("b@example.com", &[("custom.plan", "free")]),
            contact("c@example.com", &[("custom.plan", "pro"), ("added_at", "2025-03-01T12:00:00.250Z")]),
        ],
    )
    .await;
    let seq = create(&mut s, "plans", "custom.plan is not empty").await.sequence;

    // Every built-in field by default, in the column order of an export;
    // the same members, values and paging as the contacts layout.
    let contacts = page(&mut s, seq, pb::PageLayout::Contacts, &[], "").await;
    let rows = page(&mut s, seq, pb::PageLayout::Rows, &[], "").await;
    assert!(rows.contacts.is_empty() && contacts.rows.is_empty() && contacts.fields.is_empty());
    assert_eq!(rows.fields[..3], ["contact_id", "email", "first_name"]);
    assert!(!rows.fields.iter().any(|f| f.starts_with("custom.")), "{:?}", rows.fields);
    assert_eq!(rows.next_page_token, contacts.next_page_token);
    assert_eq!(rows.rows.len(), 2);
    for (row, contact) in rows.rows.iter().zip(&contacts.contacts) {
        assert_eq!(row.values.len(), rows.fields.len());
        for (field, value) in rows.fields.iter().zip(&row.values) {
            let expected = if field == "email" { Some(&contact.email) } else { contact.fields.get(field) };
            assert_eq!(expected.map_or("", String::as_str), value, "{field} of {}", contact.email);
        }
    }

    // Chosen columns, custom ones too, in the order asked; the last page.
    let chosen = ["custom.plan", "email", "added_at", "age"];
    let last = page(&mut s, seq, pb::PageLayout::Rows, &chosen, &rows.next_page_token).await;
    assert_eq!(last.fields, chosen);
    assert_eq!(last.rows.len(), 1);
    assert_eq!(last.rows[0].values, ["pro", "c@example.com", "2025-03-01T12:00:00.250Z", ""]);
    assert!(last.next_page_token.is_empty());
    let first = page(&mut s, seq, pb::PageLayout::Rows, &chosen[..2], "").await;
    let values: Vec<_> = first.rows.iter().map(|r| r.values.join(" ")).collect();
    assert_eq!(values, ["pro a@example.com", "free b@example.com"]);

    let refused = |layout: i32, fields: &[&str]| pb::ListMembersRequest {
        segment: by_name("plans"),
        min_sequence: seq,
        layout,
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        ..Default::default()
    };
    for (request, named) in [
        (refused(pb::PageLayout::Contacts.into(), &["email"]), "fields"),
        (refused(pb::PageLayout::Rows.into(), &["email", "shoe_size"]), "fields[1]"),
        (refused(pb::PageLayout::Rows.into(), &["age", "age"]), "fields[1]"),
        (refused(7, &[]), "layout"),
    ] {
        let err = s.queries.list_members(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with(named), "{named}: {}", err.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_are_renamed_redefined_and_deleted_with_versions() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    let seq =
        upsert(&mut s, "", vec![contact("de@x.com", &[("country", "DE")]), contact("fr@x.com", &[("country", "FR")])])
            .await
            .sequence;
    let seg = create(&mut s, "germany", r#"country = "DE""#).await;
    assert_eq!(count(&mut s, "germany", seg.sequence.max(seq)).await, 1);

    let updated = s
        .commands
        .update_segment(pb::UpdateSegmentRequest {
            command_id: String::new(),
            segment: by_name("germany"),
            expected_version: 1,
            name: Some("dach-fr".into()),
            criteria: text(r#"country in ("DE", "AT", "CH", "FR")"#),
        })
        .await
        .unwrap()
        .into_inner();
    let def = updated.segment.unwrap();
    assert_eq!((def.version, def.name.as_str()), (2, "dach-fr"));
    assert_eq!(def.criteria_text, r#"country in ("DE", "AT", "CH", "FR")"#);
    assert!(def.criteria.is_some(), "the tree form travels too");
    assert_eq!(count(&mut s, "dach-fr", updated.sequence).await, 2);
    let gone = s
        .queries
        .get_segment(pb::GetSegmentRequest {
            segment: by_name("germany"),
            min_sequence: updated.sequence,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    let deleted = s
        .commands
        .delete_segment(pb::DeleteSegmentRequest {
            command_id: String::new(),
            segment: by_name("dach-fr"),
            expected_version: 2,
        })
        .await
        .unwrap()
        .into_inner();
    let list = s
        .queries
        .list_segments(pb::ListSegmentsRequest { min_sequence: deleted.sequence, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(list.segments.is_empty());
    let again = create(&mut s, "dach-fr", r#"country = "FR""#).await;
    assert_ne!(again.segment.unwrap().id, def.id, "ids are never reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn criteria_can_be_sent_as_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    let seq = upsert(&mut s, "", vec![contact("a@x.com", &[("age", "30"), ("country", "DE")])]).await.sequence;
    let cond = |field: &str, op: pb::Operator, values: Vec<pb::value::Kind>| pb::Criteria {
        node: Some(pb::criteria::Node::Condition(pb::Condition {
            field: field.into(),
            operator: op as i32,
            values: values.into_iter().map(|k| pb::Value { kind: Some(k) }).collect(),
            days: 0,
        })),
    };
    let tree = pb::Criteria {
        node: Some(pb::criteria::Node::All(pb::Group {
            children: vec![
                cond("country", pb::Operator::Equals, vec![pb::value::Kind::Text("de".into())]),
                cond("age", pb::Operator::Between, vec![pb::value::Kind::Integer(25), pb::value::Kind::Integer(34)]),
            ],
        })),
    };
    let preview = s
        .queries
        .preview_criteria(pb::PreviewCriteriaRequest {
            criteria: Some(pb::CriteriaInput { kind: Some(pb::criteria_input::Kind::Tree(tree)) }),
            page_size: 10,
            min_sequence: seq,
            at: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.count, 1);
    assert_eq!(preview.criteria_text, r#"country = "de" and age between 25 and 34"#);

    let bad = pb::Criteria {
        node: Some(pb::criteria::Node::Condition(pb::Condition {
            field: "age".into(),
            operator: 99,
            values: vec![],
            days: 0,
        })),
    };
    let status = s
        .queries
        .preview_criteria(pb::PreviewCriteriaRequest {
            criteria: Some(pb::CriteriaInput { kind: Some(pb::criteria_input::Kind::Tree(bad)) }),
            page_size: 10,
            min_sequence: 0,
            at: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("operator"), "{}", status.message());
}

fn with_key<T>(key: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(API_KEY_HEADER, key.parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_query_sees_another_organisations_data() {
    const ACME: &str = "acme-key-0123456789";
    const GLOBEX: &str = "globex-key-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let keys = ApiKeys::parse(&[format!("acme:{ACME}"), format!("globex:{GLOBEX}")]).unwrap();
    let s = start_with(dir.path(), keys).await;
    let mut c = s.commands.clone();
    let mut q = s.queries.clone();

    let seq = c
        .upsert_contacts(with_key(
            ACME,
            pb::UpsertContactsRequest {
                command_id: String::new(),
                contacts: vec![contact("a@acme.com", &[("country", "DE")])],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .sequence;
    let seg = c
        .create_segment(with_key(
            ACME,
            pb::CreateSegmentRequest {
                command_id: String::new(),
                name: "de".into(),
                criteria: text(r#"country = "DE""#),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let seq = seq.max(seg.sequence);
    let acme_count = q
        .count_members(with_key(
            ACME,
            pb::CountMembersRequest {
                segment: by_name("de"),
                min_sequence: seq,
                at: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(acme_count, 1);

    let e = q
        .get_contact(with_key(GLOBEX, pb::GetContactRequest { email: "a@acme.com".into(), min_sequence: seq }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = q
        .count_members(with_key(
            GLOBEX,
            pb::CountMembersRequest {
                segment: by_name("de"),
                min_sequence: seq,
                at: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let list = q
        .list_segments(with_key(GLOBEX, pb::ListSegmentsRequest { min_sequence: seq, ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert!(list.segments.is_empty());
    let preview = q
        .preview_criteria(with_key(
            GLOBEX,
            pb::PreviewCriteriaRequest {
                criteria: text(r#"country = "DE""#),
                page_size: 10,
                min_sequence: seq,
                at: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.count, 0);
    // Globex may use the same segment name: names are unique per org.
    c.create_segment(with_key(
        GLOBEX,
        pb::CreateSegmentRequest { command_id: String::new(), name: "de".into(), criteria: text(r#"country = "DE""#) },
    ))
    .await
    .unwrap();

    let e = q.list_segments(pb::ListSegmentsRequest { min_sequence: 0, ..Default::default() }).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = q
        .list_segments(with_key(
            "wrong-key-0123456789",
            pb::ListSegmentsRequest { min_sequence: 0, ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

async fn snapshot(s: &mut TestServer, seq: u64) -> (Vec<pb::Segment>, Vec<pb::Contact>) {
    let segments = s
        .queries
        .list_segments(pb::ListSegmentsRequest { min_sequence: seq, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .segments;
    let mut contacts = Vec::new();
    for i in 0..300 {
        if let Ok(c) = get(s, &format!("r{i}@example.com"), seq).await {
            contacts.push(c);
        }
    }
    (segments, contacts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_model_survives_a_restart_and_equals_a_rebuild_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    let contacts: Vec<_> =
        (0..300).map(|i| contact(&format!("r{i}@example.com"), &[("score", &i.to_string())])).collect();
    let mut seq = import(&mut s.commands, contacts).await;
    seq = seq.max(create(&mut s, "top", "score >= 250").await.sequence);
    let del = s
        .commands
        .delete_contacts(pb::DeleteContactsRequest {
            command_id: String::new(),
            emails: vec!["r299@example.com".into()],
        })
        .await
        .unwrap()
        .into_inner();
    seq = seq.max(del.sequence);
    let before = snapshot(&mut s, seq).await;
    assert_eq!(before.1.len(), 299);
    s.served.stop().await.unwrap();

    let mut s = start(dir.path()).await;
    assert_eq!(snapshot(&mut s, seq).await, before, "after a restart");
    assert_eq!(count(&mut s, "top", seq).await, 49);
    s.served.stop().await.unwrap();

    std::fs::remove_dir_all(dir.path().join("readmodel")).unwrap();
    let mut s = start(dir.path()).await;
    assert_eq!(snapshot(&mut s, seq).await, before, "after a rebuild from the log");
    assert_eq!(all_members(&mut s, "top", 10, seq).await.len(), 49);
    s.served.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel.clone());
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest { service: "segments.v1.Commands".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(s.channel.clone());
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection.server_reflection_info(tokio_stream_once(request)).await.unwrap().into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else { panic!("{reply:?}") };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"segments.v1.Commands") && names.contains(&"segments.v1.Queries"), "{names:?}");
}

fn tokio_stream_once<T: Send + 'static>(item: T) -> impl tonic::IntoStreamingRequest<Message = T> {
    futures_once(item)
}

fn futures_once<T: Send + 'static>(item: T) -> tokio_stream::Once<T> {
    tokio_stream::once(item)
}
