//! Malformed requests to every RPC of the proto: each answer has the right
//! gRPC code, the server keeps answering (no panic took it down) and
//! nothing is appended to the log.
//!
//! The RPCs come from the descriptor set, so an RPC without a row in
//! [`table`] fails the test by name. Each row gives a *valid* request (so
//! that one bad field, not a missing one, is what gets refused) and
//! whether an empty request is valid. From the descriptor, every string
//! and enum field of the request, nested messages included (three levels
//! deep), is then set in turn to an over-long string, a deeply nested
//! criteria text (parentheses, and NOT), invalid UTF-8 (raw bytes: no
//! typed client can send them), and an unknown enum number, by appending
//! the field to the valid request's bytes (protobuf: the last value wins,
//! messages merge). [`extra_cases`] adds what the descriptor cannot derive:
//! oversized batches and criteria trees nested past the decoder's limit.

use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use segmentd_proto::v1 as pb;
use segmentd_tests::{TestServer, by_name, call_raw, contact, start, text};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tonic::Code;

/// How long a stream may stay silent before it counts as open (watches).
const STREAM_PATIENCE: Duration = Duration::from_millis(300);
/// How deep the descriptor walk follows nested messages.
const WALK_DEPTH: usize = 3;

/// Whether the RPC accepts a request with every field at its default.
#[derive(Clone, Copy, PartialEq)]
enum Empty {
    Refused,
    Valid,
}

/// One row per RPC: its name (`Service/Method`), a valid request, and
/// whether the empty request is valid.
struct Row {
    method: &'static str,
    valid: Vec<u8>,
    empty: Empty,
}

fn row(method: &'static str, valid: impl prost::Message, empty: Empty) -> Row {
    Row { method, valid: valid.encode_to_vec(), empty }
}

/// What the fixtures created, for valid requests to refer to.
struct Fixtures {
    job_id: String,
}

fn segment() -> Option<pb::SegmentRef> {
    by_name("germany")
}

/// Every RPC with a valid request. A new RPC needs one line here.
fn table(f: &Fixtures) -> Vec<Row> {
    use Empty::*;
    let cmd = || "bad-input-base".to_owned();
    let topic = || vec![pb::TopicRef { by: Some(pb::topic_ref::By::Name("news".into())) }];
    let list = || Some(pb::ListRef { by: Some(pb::list_ref::By::Name("germany-list".into())) });
    let campaign = || Some(pb::CampaignRef { by: Some(pb::campaign_ref::By::Name("spring".into())) });
    let job_id = || f.job_id.clone();
    vec![
        row(
            "Commands/UpsertContacts",
            pb::UpsertContactsRequest {
                command_id: cmd(),
                contacts: vec![contact("new@example.com", &[("city", "Köln")])],
            },
            Refused,
        ),
        row(
            "Commands/DeleteContacts",
            pb::DeleteContactsRequest { command_id: cmd(), emails: vec!["a@example.com".into()] },
            Refused,
        ),
        row(
            "Commands/CreateSegment",
            pb::CreateSegmentRequest { command_id: cmd(), name: "n".into(), criteria: text("age > 3") },
            Refused,
        ),
        row(
            "Commands/UpdateSegment",
            pb::UpdateSegmentRequest {
                command_id: cmd(),
                segment: segment(),
                expected_version: 1,
                name: Some("m".into()),
                criteria: text("age > 4"),
            },
            Refused,
        ),
        row(
            "Commands/DeleteSegment",
            pb::DeleteSegmentRequest { command_id: cmd(), segment: segment(), expected_version: 1 },
            Refused,
        ),
        row(
            "Commands/RollbackSegment",
            pb::RollbackSegmentRequest { command_id: cmd(), segment: segment(), to_version: 1, expected_version: 1 },
            Refused,
        ),
        row(
            "Commands/MassUpdate",
            pb::MassUpdateRequest {
                command_id: cmd(),
                segment: segment(),
                field: "city".into(),
                value: "Bonn".into(),
                ..Default::default()
            },
            Refused,
        ),
        row(
            "Commands/DeleteSegmentContacts",
            pb::DeleteSegmentContactsRequest {
                command_id: cmd(),
                segment: segment(),
                confirm: true,
                ..Default::default()
            },
            Refused,
        ),
        row(
            "Commands/ResetScores",
            pb::ResetScoresRequest {
                command_id: cmd(),
                segment: segment(),
                reason: "spam".into(),
                agree: true,
                ..Default::default()
            },
            Refused,
        ),
        row(
            "Commands/CancelJob",
            pb::CancelJobRequest { command_id: cmd(), job_id: job_id(), reason: "stop".into() },
            Refused,
        ),
        row(
            "Commands/RecordActivity",
            pb::RecordActivityRequest {
                command_id: cmd(),
                email: "a@example.com".into(),
                kind: pb::ActivityKind::Purchase.into(),
                amount: "9.99".into(),
                url: String::new(),
                time: "2026-01-01T00:00:00Z".into(),
            },
            Refused,
        ),
        row(
            "Commands/ImportLegacySegment",
            pb::ImportLegacySegmentRequest {
                command_id: cmd(),
                name: "old".into(),
                criteria: text("age > 3"),
                list_name: "legacy".into(),
            },
            Refused,
        ),
        row(
            "Commands/CloneSegment",
            pb::CloneSegmentRequest {
                command_id: cmd(),
                source: segment(),
                name: "copy".into(),
                criteria: text("age > 5"),
            },
            Refused,
        ),
        row("Commands/CreateTopic", pb::CreateTopicRequest { command_id: cmd(), name: "sports".into() }, Refused),
        row(
            "Commands/AssignTopics",
            pb::AssignTopicsRequest { command_id: cmd(), segment: segment(), topics: topic() },
            Refused,
        ),
        row(
            "Commands/UnassignTopics",
            pb::UnassignTopicsRequest { command_id: cmd(), segment: segment(), topics: topic() },
            Refused,
        ),
        row(
            "Commands/SaveSegmentAsList",
            pb::SaveSegmentAsListRequest {
                command_id: cmd(),
                segment: segment(),
                list_name: "l2".into(),
                min_sequence: 0,
            },
            Refused,
        ),
        row(
            "Commands/CreateCampaign",
            pb::CreateCampaignRequest {
                command_id: cmd(),
                name: "c".into(),
                subject: "s".into(),
                sender: "x@example.com".into(),
                segment: segment(),
            },
            Refused,
        ),
        row(
            "Commands/CreateBulkSegments",
            pb::CreateBulkSegmentsRequest {
                command_id: cmd(),
                base_name: "by-city".into(),
                field: "city".into(),
                min_sequence: 0,
            },
            Refused,
        ),
        row("Queries/GetContact", pb::GetContactRequest { email: "a@example.com".into(), min_sequence: 0 }, Refused),
        row("Queries/GetSegment", pb::GetSegmentRequest { segment: segment(), ..Default::default() }, Refused),
        row("Queries/ListSegments", pb::ListSegmentsRequest::default(), Valid),
        row("Queries/CountMembers", pb::CountMembersRequest { segment: segment(), ..Default::default() }, Refused),
        row(
            "Queries/ListMembers",
            pb::ListMembersRequest { segment: segment(), page_size: 10, ..Default::default() },
            Refused,
        ),
        row(
            "Queries/PreviewCriteria",
            pb::PreviewCriteriaRequest { criteria: text("age > 3"), page_size: 5, ..Default::default() },
            Refused,
        ),
        row("Queries/GetJob", pb::GetJobRequest { job_id: job_id(), min_sequence: 0 }, Refused),
        row("Queries/WatchJobs", pb::WatchJobsRequest { job_id: job_id(), min_sequence: 0 }, Valid),
        row("Queries/ListScoreResets", pb::ListScoreResetsRequest { segment: segment(), ..Default::default() }, Valid),
        row(
            "Queries/GetScoreReset",
            pb::GetScoreResetRequest { job_id: job_id(), page_size: 10, ..Default::default() },
            Refused,
        ),
        row("Queries/ListTopics", pb::ListTopicsRequest::default(), Valid),
        row("Queries/GetList", pb::GetListRequest { list: list(), min_sequence: 0 }, Refused),
        row("Queries/ListLists", pb::ListListsRequest::default(), Valid),
        row(
            "Queries/ListListMembers",
            pb::ListListMembersRequest { list: list(), page_size: 10, ..Default::default() },
            Refused,
        ),
        row("Queries/GetCampaign", pb::GetCampaignRequest { campaign: campaign(), min_sequence: 0 }, Refused),
        row("Queries/ListCampaigns", pb::ListCampaignsRequest::default(), Valid),
        row(
            "Queries/CountCampaignRecipients",
            pb::CountCampaignRecipientsRequest { campaign: campaign(), ..Default::default() },
            Refused,
        ),
        row(
            "Queries/ListCampaignRecipients",
            pb::ListCampaignRecipientsRequest { campaign: campaign(), page_size: 10, ..Default::default() },
            Refused,
        ),
        row(
            "Queries/PreviewBulkSegments",
            pb::PreviewBulkSegmentsRequest { field: "city".into(), min_sequence: 0 },
            Refused,
        ),
        row(
            "Queries/ListSegmentVersions",
            pb::ListSegmentVersionsRequest { segment: segment(), min_sequence: 0 },
            Refused,
        ),
        row(
            "Queries/DiffSegmentVersions",
            pb::DiffSegmentVersionsRequest { segment: segment(), from_version: 1, to_version: 1, min_sequence: 0 },
            Refused,
        ),
        row(
            "Queries/ExplainMembership",
            pb::ExplainMembershipRequest {
                segment: segment(),
                contact: Some(pb::explain_membership_request::Contact::Email("a@example.com".into())),
                ..Default::default()
            },
            Refused,
        ),
        row(
            "Queries/ExportContacts",
            pb::ExportContactsRequest { segment: segment(), fields: vec!["email".into()], ..Default::default() },
            Refused,
        ),
        row(
            "Queries/WatchMembership",
            pb::WatchMembershipRequest { segments: vec![segment().unwrap()], from_sequence: 0 },
            Valid,
        ),
        row(
            "Replay/ReplayEvents",
            pb::ReplayEventsRequest { aggregate_type: "contact".into(), ..Default::default() },
            Valid,
        ),
        row("Replay/SegmentHistory", pb::SegmentHistoryRequest { segment: segment() }, Refused),
        row("Replay/ContactHistory", pb::ContactHistoryRequest { email: "a@example.com".into() }, Refused),
    ]
}

/// Cases the descriptor walk cannot derive: (RPC, what, request bytes).
/// Each must be refused with INVALID_ARGUMENT.
fn extra_cases() -> Vec<(&'static str, String, Vec<u8>)> {
    let many = |n: usize| (0..n).map(|i| format!("c{i}@example.com")).collect::<Vec<_>>();
    let mut cases: Vec<(&'static str, String, Vec<u8>)> = vec![
        (
            "Commands/UpsertContacts",
            "1,001 contacts".into(),
            pb::UpsertContactsRequest {
                command_id: "big".into(),
                contacts: many(1001).iter().map(|e| contact(e, &[])).collect(),
            }
            .encode_to_vec(),
        ),
        (
            "Commands/UpsertContacts",
            "10,000 custom fields on one contact".into(),
            pb::UpsertContactsRequest {
                command_id: "wide".into(),
                contacts: vec![pb::ContactInput {
                    email: "wide@example.com".into(),
                    fields: (0..10_000).map(|i| (format!("custom_{i}"), "x".into())).collect(),
                }],
            }
            .encode_to_vec(),
        ),
        (
            "Commands/DeleteContacts",
            "1,001 emails".into(),
            pb::DeleteContactsRequest { command_id: "big".into(), emails: many(1001) }.encode_to_vec(),
        ),
        (
            "Commands/AssignTopics",
            "10,000 topics".into(),
            pb::AssignTopicsRequest {
                command_id: "big".into(),
                segment: segment(),
                topics: (0..10_000).map(|i| pb::TopicRef { by: Some(pb::topic_ref::By::Id(i + 1)) }).collect(),
            }
            .encode_to_vec(),
        ),
        (
            "Queries/WatchMembership",
            "10,000 segments".into(),
            pb::WatchMembershipRequest {
                segments: (0..10_000).map(|i| pb::SegmentRef { by: Some(pb::segment_ref::By::Id(i + 1)) }).collect(),
                from_sequence: 0,
            }
            .encode_to_vec(),
        ),
        (
            "Replay/ReplayEvents",
            "10,000 event types".into(),
            pb::ReplayEventsRequest { event_types: vec!["ContactCreated".into(); 10_000], ..Default::default() }
                .encode_to_vec(),
        ),
    ];
    // Criteria trees nested past what the decoder (or the domain) allows.
    for (depth, what) in [(40, "a criteria tree 40 deep"), (10_000, "a criteria tree 10,000 deep")] {
        let tree = deep_tree(depth);
        cases.push((
            "Commands/CreateSegment",
            what.into(),
            wrap(3, &wrap(2, &tree)).into_iter().chain(string_field(2, b"deep")).collect(),
        ));
        cases.push(("Queries/PreviewCriteria", what.into(), wrap(1, &wrap(2, &tree))));
    }
    cases
}

/// The bytes of a `Criteria` that is `depth` NOTs around one condition.
fn deep_tree(depth: usize) -> Vec<u8> {
    let condition = pb::Criteria {
        node: Some(pb::criteria::Node::Condition(pb::Condition {
            field: "age".into(),
            operator: pb::Operator::Equals.into(),
            values: vec![pb::Value { kind: Some(pb::value::Kind::Integer(3)) }],
            days: 0,
        })),
    }
    .encode_to_vec();
    // Built as bytes: a typed tree this deep would overflow the stack when
    // prost encodes (or drops) it.
    (0..depth).fold(condition, |inner, _| wrap(3, &inner))
}

/// `inner` as the length-delimited field `tag`.
fn wrap(tag: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len() + 10);
    encode_key(tag, WireType::LengthDelimited, &mut out);
    encode_varint(inner.len() as u64, &mut out);
    out.extend_from_slice(inner);
    out
}

fn string_field(tag: u32, bytes: &[u8]) -> Vec<u8> {
    wrap(tag, bytes)
}

/// What a leaf field is set to.
#[derive(Clone, Copy, Debug)]
enum Bad {
    OverLong,
    DeepParens,
    DeepNot,
    TenThousandParens,
    InvalidUtf8,
    UnknownEnum,
}

impl Bad {
    const STRINGS: [Bad; 5] = [Bad::OverLong, Bad::DeepParens, Bad::DeepNot, Bad::TenThousandParens, Bad::InvalidUtf8];

    /// The field's encoding (tag included).
    fn encode(self, tag: u32) -> Vec<u8> {
        let text = |s: String| string_field(tag, s.as_bytes());
        match self {
            Bad::OverLong => text("x".repeat(70_000)),
            // Within the criteria text's length limit, past its depth limit.
            Bad::DeepParens => text(format!("{}age = 1{}", "(".repeat(8000), ")".repeat(8000))),
            Bad::DeepNot => text(format!("{}age = 1{}", "not (".repeat(2500), ")".repeat(2500))),
            Bad::TenThousandParens => text(format!("{}age = 1{}", "(".repeat(10_000), ")".repeat(10_000))),
            Bad::InvalidUtf8 => string_field(tag, b"ok\xff\xfe\xc0\x80"),
            Bad::UnknownEnum => {
                let mut out = Vec::new();
                encode_key(tag, WireType::Varint, &mut out);
                encode_varint(99, &mut out);
                out
            }
        }
    }

    /// The codes that are right for it. Invalid UTF-8 and unknown enum
    /// numbers are malformed whatever the field; a too-long or odd value
    /// may also be a name that does not exist.
    fn codes(self) -> &'static [Code] {
        match self {
            Bad::InvalidUtf8 | Bad::UnknownEnum => &[Code::InvalidArgument],
            _ => &[Code::InvalidArgument, Code::NotFound],
        }
    }
}

/// Message descriptors by full name (`.segments.v1.Criteria`).
fn messages(set: &FileDescriptorSet) -> BTreeMap<String, DescriptorProto> {
    fn add(prefix: &str, message: &DescriptorProto, into: &mut BTreeMap<String, DescriptorProto>) {
        let name = format!("{prefix}.{}", message.name());
        for nested in &message.nested_type {
            add(&name, nested, into);
        }
        into.insert(name, message.clone());
    }
    let mut all = BTreeMap::new();
    for file in &set.file {
        for message in &file.message_type {
            add(&format!(".{}", file.package()), message, &mut all);
        }
    }
    all
}

/// Every string and enum leaf reachable from `message` (at most `depth`
/// messages down), as the path of fields that leads to it.
fn leaves(
    message: &str,
    all: &BTreeMap<String, DescriptorProto>,
    depth: usize,
    path: &mut Vec<FieldDescriptorProto>,
    out: &mut Vec<Vec<FieldDescriptorProto>>,
) {
    for field in &all[message].field {
        path.push(field.clone());
        match field.r#type() {
            Type::String | Type::Enum => out.push(path.clone()),
            Type::Message if depth > 0 => leaves(field.type_name(), all, depth - 1, path, out),
            _ => {}
        }
        path.pop();
    }
}

/// The bytes that set the leaf at `path` to `bad`, wrapped in the
/// messages on the way (appended to a request, they merge into it).
fn set_leaf(path: &[FieldDescriptorProto], bad: Bad) -> Vec<u8> {
    let (leaf, outer) = path.split_last().expect("a non-empty path");
    let inner = bad.encode(leaf.number() as u32);
    outer.iter().rev().fold(inner, |inner, field| wrap(field.number() as u32, &inner))
}

fn describe(path: &[FieldDescriptorProto]) -> String {
    path.iter()
        .map(|f| if f.label() == Label::Repeated { format!("{}[]", f.name()) } else { f.name().to_owned() })
        .collect::<Vec<_>>()
        .join(".")
}

async fn fixtures(s: &mut TestServer) -> Fixtures {
    let seq = s
        .commands
        .upsert_contacts(pb::UpsertContactsRequest {
            command_id: "fixture-contacts".into(),
            contacts: vec![
                contact("a@example.com", &[("country", "DE"), ("city", "Berlin"), ("age", "30")]),
                contact("b@example.com", &[("country", "DE"), ("city", "Köln"), ("age", "40")]),
            ],
        })
        .await
        .expect("fixture contacts")
        .into_inner()
        .sequence;
    s.commands
        .create_segment(pb::CreateSegmentRequest {
            command_id: "fixture-segment".into(),
            name: "germany".into(),
            criteria: text(r#"country = "DE""#),
        })
        .await
        .expect("fixture segment");
    s.commands
        .create_topic(pb::CreateTopicRequest { command_id: "fixture-topic".into(), name: "news".into() })
        .await
        .expect("fixture topic");
    s.commands
        .save_segment_as_list(pb::SaveSegmentAsListRequest {
            command_id: "fixture-list".into(),
            segment: segment(),
            list_name: "germany-list".into(),
            min_sequence: seq,
        })
        .await
        .expect("fixture list");
    s.commands
        .create_campaign(pb::CreateCampaignRequest {
            command_id: "fixture-campaign".into(),
            name: "spring".into(),
            subject: "Spring".into(),
            sender: "news@example.com".into(),
            segment: segment(),
        })
        .await
        .expect("fixture campaign");
    let job = s
        .commands
        .mass_update(pb::MassUpdateRequest {
            command_id: "fixture-job".into(),
            segment: segment(),
            field: "city".into(),
            value: "Hamburg".into(),
            ..Default::default()
        })
        .await
        .expect("fixture job")
        .into_inner();
    // The job appends as it runs; the cases check that nothing is appended.
    let job_id = job.job.expect("the job").id;
    let mut watch = s
        .queries
        .watch_jobs(pb::WatchJobsRequest { job_id: job_id.clone(), min_sequence: 0 })
        .await
        .expect("watching the fixture job")
        .into_inner();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(job) = watch.message().await.expect("the job watch") {
            if job.state() == pb::JobState::Completed {
                return;
            }
        }
        panic!("the job watch ended before the job completed");
    })
    .await
    .expect("the fixture job completes");
    Fixtures { job_id }
}

/// Sends `body` to `method`; checks the code, that nothing was appended and
/// that the server still answers. Returns what was wrong, if anything.
async fn check(s: &TestServer, method: &str, what: &str, body: Vec<u8>, codes: &[Code]) -> Option<String> {
    let before = s.last_seq().await;
    let path = format!("/segments.v1.{method}");
    let answer = call_raw(&s.channel, &path, body, STREAM_PATIENCE).await;
    let mut wrong = None;
    match &answer {
        Err(status) if codes.contains(&status.code()) => {}
        Ok(()) if codes.contains(&Code::Ok) => {}
        other => {
            let got = other.as_ref().map_or_else(
                |s| format!("{:?}: {}", s.code(), s.message().chars().take(200).collect::<String>()),
                |_| "OK".into(),
            );
            wrong = Some(format!("{method} {what}: want one of {codes:?}, got {got}"));
        }
    }
    let after = s.last_seq().await;
    if after != before {
        return Some(format!("{method} {what}: appended (log {before} -> {after}); answer {answer:?}"));
    }
    let alive = call_raw(&s.channel, "/segments.v1.Queries/ListSegments", Vec::new(), STREAM_PATIENCE).await;
    assert!(alive.is_ok(), "the server stopped answering after {method} {what}: {alive:?}");
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_malformed_requests_with_the_right_code_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    let f = fixtures(&mut s).await;
    let rows = table(&f);

    let set = FileDescriptorSet::decode(segmentd_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let all = messages(&set);
    let mut inputs = BTreeMap::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                inputs.insert(format!("{}/{}", service.name(), method.name()), method.input_type().to_owned());
            }
        }
    }
    let covered: BTreeSet<&str> = rows.iter().map(|r| r.method).collect();
    let missing: Vec<&String> = inputs.keys().filter(|m| !covered.contains(m.as_str())).collect();
    assert!(
        missing.is_empty(),
        "RPCs without a row in table() of tests/malformed_requests.rs (add one line each: the RPC, a valid \
         request, whether an empty request is valid): {missing:?}"
    );
    let unknown: Vec<&&str> = covered.iter().filter(|m| !inputs.contains_key(**m)).collect();
    assert!(unknown.is_empty(), "rows for RPCs the proto does not have: {unknown:?}");

    let mut wrong = Vec::new();
    let mut cases = 0;
    for row in &rows {
        let empty_codes: &[Code] = match row.empty {
            Empty::Valid => &[Code::Ok],
            Empty::Refused => &[Code::InvalidArgument, Code::NotFound],
        };
        cases += 1;
        wrong.extend(check(&s, row.method, "(empty request)", Vec::new(), empty_codes).await);

        let mut paths = Vec::new();
        leaves(&inputs[row.method], &all, WALK_DEPTH, &mut Vec::new(), &mut paths);
        for path in paths {
            let bads: &[Bad] =
                if path.last().unwrap().r#type() == Type::Enum { &[Bad::UnknownEnum] } else { &Bad::STRINGS };
            for &bad in bads {
                let body: Vec<u8> = row.valid.iter().copied().chain(set_leaf(&path, bad)).collect();
                cases += 1;
                let what = format!("{} = {bad:?}", describe(&path));
                wrong.extend(check(&s, row.method, &what, body, bad.codes()).await);
            }
        }
    }
    for (method, what, body) in extra_cases() {
        cases += 1;
        wrong.extend(check(&s, method, &what, body, &[Code::InvalidArgument]).await);
    }
    eprintln!("{cases} malformed requests to {} RPCs", rows.len());
    assert!(wrong.is_empty(), "{} of {cases} malformed requests were mishandled:\n{}", wrong.len(), wrong.join("\n"));
}
