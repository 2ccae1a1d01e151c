//! The marketer's segment operations end to end over gRPC: legacy segments
//! and clones, topics, save as list, campaigns and bulk segments, each with
//! the refusals a user would expect (and proof that a refusal appends
//! nothing).

use segmentd_proto::v1 as pb;
use segmentd_server::{Roles, ServeConfig};
use segmentd_tests::{TestServer, by_name, contact, import, start, start_config, text};
use tonic::Code;

fn by_id(id: u64) -> Option<pb::SegmentRef> {
    Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Id(id)) })
}

fn topic(name: &str) -> pb::TopicRef {
    pb::TopicRef { by: Some(pb::topic_ref::By::Name(name.into())) }
}

fn list(name: &str) -> Option<pb::ListRef> {
    Some(pb::ListRef { by: Some(pb::list_ref::By::Name(name.into())) })
}

fn campaign(name: &str) -> Option<pb::CampaignRef> {
    Some(pb::CampaignRef { by: Some(pb::campaign_ref::By::Name(name.into())) })
}

/// Upserts with a fresh command id (the shared `import` reuses its ids).
async fn upsert(s: &mut TestServer, contacts: Vec<pb::ContactInput>) -> u64 {
    let req = pb::UpsertContactsRequest { command_id: String::new(), contacts };
    s.commands.upsert_contacts(req).await.unwrap().into_inner().sequence
}

async fn create(s: &mut TestServer, name: &str, criteria: &str) -> pb::SegmentReply {
    s.commands
        .create_segment(pb::CreateSegmentRequest { name: name.into(), criteria: text(criteria), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
}

async fn import_legacy(s: &mut TestServer, name: &str, criteria: &str, list: &str) -> pb::SegmentReply {
    s.commands
        .import_legacy_segment(pb::ImportLegacySegmentRequest {
            name: name.into(),
            criteria: text(criteria),
            list_name: list.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn segments(s: &mut TestServer, req: pb::ListSegmentsRequest) -> Vec<String> {
    let mut names: Vec<String> =
        s.queries.list_segments(req).await.unwrap().into_inner().segments.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

/// Asserts a refusal's code and message, and that nothing was appended.
async fn refused<T: std::fmt::Debug>(
    s: &TestServer,
    before: u64,
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    says: &str,
) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(says), "{:?} should mention {says:?}", status.message());
    assert_eq!(s.last_seq().await, before, "a refusal appends nothing");
}

async fn all_members(s: &mut TestServer, segment: &str, min_sequence: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .queries
            .list_members(pb::ListMembersRequest {
                segment: by_name(segment),
                page_size: 7,
                page_token: token,
                min_sequence,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(page.contacts.into_iter().map(|c| c.email));
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

async fn list_members(s: &mut TestServer, name: &str, min_sequence: u64) -> Vec<pb::ListMember> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .queries
            .list_list_members(pb::ListListMembersRequest {
                list: list(name),
                page_size: 7,
                page_token: token,
                min_sequence,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.members.len() <= 7);
        out.extend(page.members);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// Every page is asked for in both layouts, which must agree.
async fn recipients(s: &mut TestServer, name: &str, min_sequence: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let request = |layout: pb::PageLayout, fields: &[&str]| pb::ListCampaignRecipientsRequest {
            campaign: campaign(name),
            page_size: 5,
            page_token: token.clone(),
            min_sequence,
            layout: layout.into(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            ..Default::default()
        };
        let rows = request(pb::PageLayout::Rows, &["email"]);
        let rows = s.queries.list_campaign_recipients(rows).await.unwrap().into_inner();
        let page = request(pb::PageLayout::Contacts, &[]);
        let page = s.queries.list_campaign_recipients(page).await.unwrap().into_inner();
        let emails: Vec<String> = page.contacts.into_iter().map(|c| c.email).collect();
        assert_eq!(rows.rows.into_iter().map(|r| r.values.join(",")).collect::<Vec<_>>(), emails);
        assert_eq!(rows.next_page_token, page.next_page_token);
        out.extend(emails);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// 30 contacts: c0..c29, country cycling DE, FR, AT, age 20 + i.
fn people() -> Vec<pb::ContactInput> {
    let countries = ["DE", "FR", "AT"];
    (0..30)
        .map(|i| {
            let age = (20 + i).to_string();
            contact(&format!("c{i}@example.com"), &[("country", countries[i % 3]), ("age", &age)])
        })
        .collect()
}

#[tokio::test]
async fn legacy_segments_are_listed_apart_read_only_and_cloneable() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    create(&mut s, "Germany", r#"country = "DE""#).await;
    let legacy = import_legacy(&mut s, "Old France", r#"country = "FR""#, "Newsletter 2019").await;
    let seg = legacy.segment.unwrap();
    assert!(seg.legacy);
    assert_eq!(seg.legacy_list, "Newsletter 2019");
    let seq = legacy.sequence;

    let only = |legacy: pb::LegacyFilter| pb::ListSegmentsRequest {
        min_sequence: seq,
        legacy: legacy as i32,
        ..Default::default()
    };
    assert_eq!(segments(&mut s, only(pb::LegacyFilter::Legacy)).await, ["Old France"]);
    assert_eq!(segments(&mut s, only(pb::LegacyFilter::OrgLevel)).await, ["Germany"]);
    assert_eq!(segments(&mut s, only(pb::LegacyFilter::All)).await, ["Germany", "Old France"]);

    let before = s.last_seq().await;
    let update = s
        .commands
        .update_segment(pb::UpdateSegmentRequest {
            segment: by_name("Old France"),
            name: Some("New France".into()),
            ..Default::default()
        })
        .await;
    refused(&s, before, update, Code::FailedPrecondition, "legacy segment of list \"Newsletter 2019\"").await;
    let delete =
        s.commands.delete_segment(pb::DeleteSegmentRequest { segment: by_id(seg.id), ..Default::default() }).await;
    refused(&s, before, delete, Code::FailedPrecondition, "cannot be deleted").await;

    // Cloned: an editable org-level segment with the source's criteria.
    let clone = s
        .commands
        .clone_segment(pb::CloneSegmentRequest {
            source: by_name("old france"),
            name: "France".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .segment
        .unwrap();
    assert_eq!(
        (clone.legacy, clone.cloned_from_id, clone.criteria_text.as_str()),
        (false, seg.id, r#"country = "FR""#)
    );
    let updated = s
        .commands
        .update_segment(pb::UpdateSegmentRequest {
            segment: by_name("France"),
            criteria: text(r#"country in ("FR", "BE")"#),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.segment.unwrap().version, 2);

    // A clone of an ordinary segment, with new criteria.
    let clone = s
        .commands
        .clone_segment(pb::CloneSegmentRequest {
            source: by_name("Germany"),
            name: "Germany 30+".into(),
            criteria: text(r#"country = "DE" and age >= 30"#),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .segment
        .unwrap();
    assert_eq!(clone.criteria_text, r#"country = "DE" and age >= 30"#);

    let before = s.last_seq().await;
    let taken = s
        .commands
        .clone_segment(pb::CloneSegmentRequest {
            source: by_name("Germany"),
            name: "FRANCE".into(),
            ..Default::default()
        })
        .await;
    refused(&s, before, taken, Code::AlreadyExists, "FRANCE").await;
    let missing = s
        .commands
        .clone_segment(pb::CloneSegmentRequest { source: by_name("nope"), name: "x".into(), ..Default::default() })
        .await;
    refused(&s, before, missing, Code::NotFound, "nope").await;
    let no_list = s
        .commands
        .import_legacy_segment(pb::ImportLegacySegmentRequest {
            name: "y".into(),
            criteria: text("age > 1"),
            list_name: " ".into(),
            ..Default::default()
        })
        .await;
    refused(&s, before, no_list, Code::InvalidArgument, "list_name").await;
}

#[tokio::test]
async fn topics_are_created_assigned_unassigned_and_filter_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    create(&mut s, "a", "age > 1").await;
    create(&mut s, "b", "age > 2").await;
    import_legacy(&mut s, "old", "age > 3", "L").await;
    for name in ["Spring sale", "VIP"] {
        let t = s.commands.create_topic(pb::CreateTopicRequest { name: name.into(), ..Default::default() }).await;
        assert_eq!(t.unwrap().into_inner().topic.unwrap().name, name);
    }
    let before = s.last_seq().await;
    let dup = s.commands.create_topic(pb::CreateTopicRequest { name: "vip".into(), ..Default::default() }).await;
    refused(&s, before, dup, Code::AlreadyExists, "vip").await;

    let assigned = s
        .commands
        .assign_topics(pb::AssignTopicsRequest {
            segment: by_name("a"),
            topics: vec![topic("Spring sale"), pb::TopicRef { by: Some(pb::topic_ref::By::Id(2)) }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<String> = assigned.segment.unwrap().topics.into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["Spring sale", "VIP"]);
    let seq = s
        .commands
        .assign_topics(pb::AssignTopicsRequest {
            segment: by_name("b"),
            topics: vec![topic("VIP")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sequence;

    let by_topic =
        |name: &str| pb::ListSegmentsRequest { min_sequence: seq, topic: Some(topic(name)), ..Default::default() };
    assert_eq!(segments(&mut s, by_topic("VIP")).await, ["a", "b"]);
    assert_eq!(segments(&mut s, by_topic("spring sale")).await, ["a"]);
    let unknown = s.queries.list_segments(by_topic("Autumn")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let topics = s.queries.list_topics(pb::ListTopicsRequest { min_sequence: seq }).await.unwrap().into_inner();
    assert_eq!(topics.topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["Spring sale", "VIP"]);

    let before = s.last_seq().await;
    let again = s
        .commands
        .assign_topics(pb::AssignTopicsRequest {
            segment: by_name("a"),
            topics: vec![topic("VIP")],
            ..Default::default()
        })
        .await;
    refused(&s, before, again, Code::FailedPrecondition, "already has").await;
    let no_topic = s
        .commands
        .assign_topics(pb::AssignTopicsRequest {
            segment: by_name("a"),
            topics: vec![topic("Autumn")],
            ..Default::default()
        })
        .await;
    refused(&s, before, no_topic, Code::NotFound, "Autumn").await;
    let no_id = s
        .commands
        .assign_topics(pb::AssignTopicsRequest {
            segment: by_name("a"),
            topics: vec![pb::TopicRef { by: Some(pb::topic_ref::By::Id(99)) }],
            ..Default::default()
        })
        .await;
    refused(&s, before, no_id, Code::NotFound, "topic 99").await;
    let no_segment = s
        .commands
        .assign_topics(pb::AssignTopicsRequest {
            segment: by_name("zzz"),
            topics: vec![topic("VIP")],
            ..Default::default()
        })
        .await;
    refused(&s, before, no_segment, Code::NotFound, "zzz").await;
    let none = s.commands.assign_topics(pb::AssignTopicsRequest { segment: by_name("a"), ..Default::default() }).await;
    refused(&s, before, none, Code::InvalidArgument, "topics").await;
    let legacy = s
        .commands
        .assign_topics(pb::AssignTopicsRequest {
            segment: by_name("old"),
            topics: vec![topic("VIP")],
            ..Default::default()
        })
        .await;
    refused(&s, before, legacy, Code::FailedPrecondition, "legacy").await;

    let seq = s
        .commands
        .unassign_topics(pb::UnassignTopicsRequest {
            segment: by_name("a"),
            topics: vec![topic("VIP")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sequence;
    assert_eq!(segments(&mut s, pb::ListSegmentsRequest { min_sequence: seq, ..by_topic("VIP") }).await, ["b"]);
    let before = s.last_seq().await;
    let not_assigned = s
        .commands
        .unassign_topics(pb::UnassignTopicsRequest {
            segment: by_name("a"),
            topics: vec![topic("VIP")],
            ..Default::default()
        })
        .await;
    refused(&s, before, not_assigned, Code::FailedPrecondition, "not assigned").await;
}

#[tokio::test]
async fn a_saved_list_holds_the_members_at_its_position_and_never_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    import(&mut s.commands, people()).await;
    create(&mut s, "Germany", r#"country = "DE""#).await;
    let seq = s.last_seq().await;
    let segment_members = all_members(&mut s, "Germany", seq).await;
    assert_eq!(segment_members.len(), 10);

    let saved = s
        .commands
        .save_segment_as_list(pb::SaveSegmentAsListRequest {
            segment: by_name("Germany"),
            list_name: "Germany in June".into(),
            min_sequence: seq,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let l = saved.list.unwrap();
    assert_eq!((l.member_count, l.criteria_text.as_str()), (10, r#"country = "DE""#));
    assert!(l.at_sequence >= seq, "members read at or after the requested position");
    let members: Vec<String> =
        list_members(&mut s, "Germany in June", saved.sequence).await.into_iter().map(|m| m.email).collect();
    assert_eq!(members, segment_members);

    // Every member is in the log, in the list's own aggregate.
    let mut replay = segmentd_proto::v1::replay_client::ReplayClient::new(s.channel.clone());
    let mut stream = replay
        .replay_events(pb::ReplayEventsRequest {
            aggregate_type: "list".into(),
            aggregate_id: l.id.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut recorded = 0;
    while let Some(event) = stream.message().await.unwrap() {
        assert_eq!(event.r#type, "ListMembersRecorded");
        let data: serde_json::Value = serde_json::from_str(&event.data_json).unwrap();
        recorded += data["emails"].as_array().unwrap().len();
    }
    assert_eq!(recorded, 10);

    // A retry of the same command records nothing new and answers the same list.
    let retry = |command_id: &str| pb::SaveSegmentAsListRequest {
        command_id: command_id.into(),
        segment: by_name("Germany"),
        list_name: "Germany retried".into(),
        min_sequence: saved.sequence,
    };
    let first = s.commands.save_segment_as_list(retry("save-1")).await.unwrap().into_inner();
    let second = s.commands.save_segment_as_list(retry("save-1")).await.unwrap().into_inner();
    assert!(second.duplicate && !first.duplicate);
    assert_eq!((second.sequence, second.list.map(|l| l.id)), (first.sequence, first.list.map(|l| l.id)));

    // c0 stops matching, c1 starts matching; the segment follows, the list does not.
    let seq = upsert(
        &mut s,
        vec![contact("c0@example.com", &[("country", "FR")]), contact("c1@example.com", &[("country", "DE")])],
    )
    .await;
    let now = all_members(&mut s, "Germany", seq).await;
    assert!(!now.contains(&"c0@example.com".to_owned()) && now.contains(&"c1@example.com".to_owned()));
    let after = list_members(&mut s, "Germany in June", seq).await;
    assert_eq!(after.iter().map(|m| m.email.clone()).collect::<Vec<_>>(), segment_members);
    let c0 = after.iter().find(|m| m.email == "c0@example.com").unwrap();
    assert_eq!(c0.contact.as_ref().unwrap().fields["country"], "FR", "members show the contact as it is now");
    let got = s.queries.get_list(pb::GetListRequest { list: list("germany in june"), min_sequence: seq }).await;
    assert_eq!(got.unwrap().into_inner().member_count, 10);

    let before = s.last_seq().await;
    let taken = s
        .commands
        .save_segment_as_list(pb::SaveSegmentAsListRequest {
            segment: by_name("Germany"),
            list_name: "GERMANY IN JUNE".into(),
            ..Default::default()
        })
        .await;
    refused(&s, before, taken, Code::AlreadyExists, "GERMANY IN JUNE").await;
    let no_segment = s
        .commands
        .save_segment_as_list(pb::SaveSegmentAsListRequest {
            segment: by_name("Nope"),
            list_name: "x".into(),
            ..Default::default()
        })
        .await;
    refused(&s, before, no_segment, Code::NotFound, "Nope").await;
    let missing = s.queries.get_list(pb::GetListRequest { list: list("other"), min_sequence: 0 }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // The list survives a restart (its events are in the read model's store).
    let addr_dir = dir.path().to_path_buf();
    s.served.stop().await.unwrap();
    let mut s = start(&addr_dir).await;
    let again: Vec<String> = list_members(&mut s, "Germany in June", seq).await.into_iter().map(|m| m.email).collect();
    assert_eq!(again, segment_members);
    let lists = s.queries.list_lists(pb::ListListsRequest { min_sequence: seq }).await.unwrap().into_inner();
    assert_eq!(lists.lists.len(), 2);
}

#[tokio::test]
async fn a_command_only_node_refuses_what_needs_a_read_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.roles = Roles::COMMANDS;
    let mut s = start_config(config).await;
    create(&mut s, "Germany", r#"country = "DE""#).await;
    let before = s.last_seq().await;
    let save = s
        .commands
        .save_segment_as_list(pb::SaveSegmentAsListRequest {
            segment: by_name("Germany"),
            list_name: "L".into(),
            ..Default::default()
        })
        .await;
    refused(&s, before, save, Code::FailedPrecondition, "commands role only").await;
    let bulk = s
        .commands
        .create_bulk_segments(pb::CreateBulkSegmentsRequest {
            base_name: "B".into(),
            field: "country".into(),
            ..Default::default()
        })
        .await;
    refused(&s, before, bulk, Code::FailedPrecondition, "commands role only").await;
}

#[tokio::test]
async fn a_campaign_goes_to_its_segments_members() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    import(&mut s.commands, people()).await;
    create(&mut s, "Young", "age < 32").await;
    let made = s
        .commands
        .create_campaign(pb::CreateCampaignRequest {
            name: "Spring".into(),
            subject: "Spring is here".into(),
            sender: "News@Shop.example".into(),
            segment: by_name("Young"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let c = made.campaign.unwrap();
    assert_eq!((c.sender.as_str(), c.subject.as_str()), ("news@shop.example", "Spring is here"));
    let seq = made.sequence;
    let count = s
        .queries
        .count_campaign_recipients(pb::CountCampaignRecipientsRequest {
            campaign: campaign("spring"),
            min_sequence: seq,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(count, 12);
    assert_eq!(recipients(&mut s, "Spring", seq).await, all_members(&mut s, "Young", seq).await);
    let got = s.queries.get_campaign(pb::GetCampaignRequest { campaign: campaign("Spring"), min_sequence: seq }).await;
    assert_eq!(got.unwrap().into_inner().segment_id, c.segment_id);
    let all = s.queries.list_campaigns(pb::ListCampaignsRequest { min_sequence: seq }).await.unwrap().into_inner();
    assert_eq!(all.campaigns.len(), 1);

    let before = s.last_seq().await;
    let req = |name: &str, subject: &str, sender: &str, segment: &str| pb::CreateCampaignRequest {
        name: name.into(),
        subject: subject.into(),
        sender: sender.into(),
        segment: by_name(segment),
        ..Default::default()
    };
    let r = s.commands.create_campaign(req("x", "s", "not-an-email", "Young")).await;
    refused(&s, before, r, Code::InvalidArgument, "sender").await;
    let r = s.commands.create_campaign(req("x", "  ", "a@b.example", "Young")).await;
    refused(&s, before, r, Code::InvalidArgument, "subject").await;
    let r = s.commands.create_campaign(req("x", "s", "a@b.example", "Old")).await;
    refused(&s, before, r, Code::NotFound, "Old").await;
    let r = s.commands.create_campaign(req("SPRING", "s", "a@b.example", "Young")).await;
    refused(&s, before, r, Code::AlreadyExists, "SPRING").await;
    let missing = s
        .queries
        .count_campaign_recipients(pb::CountCampaignRecipientsRequest {
            campaign: campaign("nope"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Its segment deleted, a campaign has no recipients to page.
    let seq = s
        .commands
        .delete_segment(pb::DeleteSegmentRequest { segment: by_name("Young"), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .sequence;
    let gone = s
        .queries
        .count_campaign_recipients(pb::CountCampaignRecipientsRequest {
            campaign: campaign("Spring"),
            min_sequence: seq,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::FailedPrecondition, "{gone:?}");
}

#[tokio::test]
async fn bulk_segments_preview_then_create_one_segment_per_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    let mut people = people();
    people.push(contact("x@example.com", &[("country", "de")]));
    people.push(contact("y@example.com", &[]));
    let seq = import(&mut s.commands, people).await;
    let preview = s
        .queries
        .preview_bulk_segments(pb::PreviewBulkSegmentsRequest { field: "country".into(), min_sequence: seq })
        .await
        .unwrap()
        .into_inner();
    let values: Vec<(String, u64)> = preview.values.into_iter().map(|v| (v.value, v.count)).collect();
    assert_eq!(values, [("AT".to_owned(), 10), ("DE".to_owned(), 11), ("FR".to_owned(), 10)]);
    assert_eq!(preview.limit, 100);

    let made = s
        .commands
        .create_bulk_segments(pb::CreateBulkSegmentsRequest {
            base_name: "By country".into(),
            field: "country".into(),
            min_sequence: seq,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = made.segments.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["By country - AT", "By country - DE", "By country - FR"]);
    assert!(made.segments.iter().all(|s| s.bulk_parent_id == made.bulk_id && s.bulk_parent_id > 0));
    for (name, want) in [("By country - AT", 10), ("By country - DE", 11), ("By country - FR", 10)] {
        let count = s
            .queries
            .count_members(pb::CountMembersRequest {
                segment: by_name(name),
                min_sequence: made.sequence,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .count;
        assert_eq!(count, want, "{name}");
    }
    let children = segments(
        &mut s,
        pb::ListSegmentsRequest { min_sequence: made.sequence, bulk_parent_id: made.bulk_id, ..Default::default() },
    )
    .await;
    assert_eq!(children.len(), 3);
    // Children are ordinary segments.
    s.commands
        .update_segment(pb::UpdateSegmentRequest {
            segment: by_name("By country - AT"),
            name: Some("Austria".into()),
            ..Default::default()
        })
        .await
        .unwrap();

    // 120 distinct cities: past the limit, refused naming the limit and the count.
    let cities: Vec<pb::ContactInput> =
        (0..120).map(|i| contact(&format!("city{i}@example.com"), &[("city", &format!("Town {i}"))])).collect();
    let seq = upsert(&mut s, cities).await;
    let before = s.last_seq().await;
    let bulk = |base: &str, field: &str| pb::CreateBulkSegmentsRequest {
        base_name: base.into(),
        field: field.into(),
        min_sequence: seq,
        ..Default::default()
    };
    let r = s.commands.create_bulk_segments(bulk("Towns", "city")).await;
    refused(
        &s,
        before,
        r,
        Code::FailedPrecondition,
        "field city has 120 distinct values; a bulk segment makes at most 100",
    )
    .await;
    let r = s.commands.create_bulk_segments(bulk("Ages", "age")).await;
    refused(&s, before, r, Code::InvalidArgument, "text fields").await;
    let r = s.commands.create_bulk_segments(bulk("Plans", "custom.plan")).await;
    refused(&s, before, r, Code::FailedPrecondition, "no contact has a value").await;
    let r = s.commands.create_bulk_segments(bulk("By country", "country")).await;
    refused(&s, before, r, Code::AlreadyExists, "By country - DE").await;
    let r = s.commands.create_bulk_segments(bulk("", "country")).await;
    refused(&s, before, r, Code::InvalidArgument, "base_name").await;
    let r = s.commands.create_bulk_segments(bulk("X", "no such")).await;
    refused(&s, before, r, Code::InvalidArgument, "field").await;
}
