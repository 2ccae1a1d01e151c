//! ExportContacts end to end, on the embedded log and on a real
//! nats-server: the rows are the segment's members with the chosen fields
//! in the chosen order; date filters, relative criteria with `at`, and
//! `as_of` pick the right members; the header's count and sequence describe
//! one snapshot even while writes go on; bad input is refused naming the
//! field.

use segmentd_proto::v1 as pb;
use segmentd_proto::v1::export_contacts_reply::Part;
use segmentd_proto::v1::export_contacts_request::DateFilter;
use segmentd_tests::{Backend, TestServer, by_name, contact, import, on_both_logs, start_on, text};
use tonic::{Code, Status};

/// The default columns: every built-in field, as an import file has them.
const DEFAULT_COLUMNS: [&str; 18] = [
    "contact_id",
    "email",
    "first_name",
    "last_name",
    "company",
    "city",
    "state",
    "country",
    "age",
    "gender",
    "score",
    "lifecycle_stage",
    "total_spent",
    "purchase_count",
    "last_purchase_at",
    "last_opened_at",
    "added_at",
    "updated_at",
];

struct Export {
    header: pb::ExportHeader,
    rows: Vec<Vec<String>>,
    /// Rows per message, in order.
    chunks: Vec<usize>,
}

/// Reads a whole export, checking its shape: one header, then rows.
async fn read_rest(
    header: pb::ExportHeader,
    stream: &mut tonic::Streaming<pb::ExportContactsReply>,
) -> Result<Export, Status> {
    let mut export = Export { header, rows: Vec::new(), chunks: Vec::new() };
    while let Some(message) = stream.message().await? {
        match message.part {
            Some(Part::Rows(rows)) => {
                export.chunks.push(rows.rows.len());
                export.rows.extend(rows.rows.into_iter().map(|r| r.values));
            }
            other => panic!("only rows follow the header, got {other:?}"),
        }
    }
    Ok(export)
}

async fn open(
    s: &mut TestServer,
    req: pb::ExportContactsRequest,
) -> Result<(pb::ExportHeader, tonic::Streaming<pb::ExportContactsReply>), Status> {
    let mut stream = s.queries.export_contacts(req).await?.into_inner();
    let first = stream.message().await?.expect("the stream starts with a header");
    let Some(Part::Header(header)) = first.part else { panic!("the first message is not the header: {first:?}") };
    Ok((header, stream))
}

async fn export(s: &mut TestServer, req: pb::ExportContactsRequest) -> Result<Export, Status> {
    let (header, mut stream) = open(s, req).await?;
    let export = read_rest(header, &mut stream).await?;
    assert_eq!(export.header.total as usize, export.rows.len(), "the header counts the rows that follow");
    assert!(export.chunks.iter().all(|&n| (1..=1000).contains(&n)), "chunks: {:?}", export.chunks);
    Ok(export)
}

fn request(segment: &str, fields: &[&str], min_sequence: u64) -> pb::ExportContactsRequest {
    pb::ExportContactsRequest {
        segment: by_name(segment),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        min_sequence,
        ..Default::default()
    }
}

fn range(from: &str, to: &str) -> pb::TimeRange {
    pb::TimeRange { from: from.into(), to: to.into() }
}

async fn create(s: &mut TestServer, name: &str, criteria: &str) -> u64 {
    let req = pb::CreateSegmentRequest { command_id: String::new(), name: name.into(), criteria: text(criteria) };
    s.commands.create_segment(req).await.unwrap().into_inner().sequence
}

/// Upserts in batches of 1000 with fresh command ids; the last sequence.
async fn upsert(s: &mut TestServer, contacts: Vec<pb::ContactInput>) -> u64 {
    let mut seq = 0;
    for chunk in contacts.chunks(1000) {
        let req = pb::UpsertContactsRequest { command_id: String::new(), contacts: chunk.to_vec() };
        seq = seq.max(s.commands.upsert_contacts(req).await.unwrap().into_inner().sequence);
    }
    seq
}

/// Every member as ListMembers shows it, in member order.
async fn members(s: &mut TestServer, segment: &str, min_sequence: u64) -> Vec<pb::Contact> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = pb::ListMembersRequest {
            segment: by_name(segment),
            page_size: 1000,
            page_token,
            min_sequence,
            ..Default::default()
        };
        let page = s.queries.list_members(req).await.unwrap().into_inner();
        out.extend(page.contacts);
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}

/// A contact's value of `field` as the API writes it; "" when empty.
fn value(c: &pb::Contact, field: &str) -> String {
    if field == "email" { c.email.clone() } else { c.fields.get(field).cloned().unwrap_or_default() }
}

async fn rows_are_the_members_with_the_chosen_fields_in_order(backend: Backend) {
    let mut h = start_on(backend, |_| {}).await;
    let s = &mut h.server;
    let people: Vec<pb::ContactInput> = (0..2500)
        .map(|i| {
            let country = if i % 3 == 0 { "FR" } else { "DE" };
            let age = (18 + i % 60).to_string();
            let plan = if i % 4 == 0 { "gold" } else { "" };
            let spent = format!("{}.{:02}", i % 500, i % 100);
            let opened = format!("2026-0{}-1{}T08:30:00Z", 1 + i % 9, i % 10);
            contact(
                &format!("c{i}@example.com"),
                &[
                    ("country", country),
                    ("age", &age),
                    ("custom.plan", plan),
                    ("total_spent", &spent),
                    ("last_opened_at", &opened),
                ],
            )
        })
        .collect();
    let germans: Vec<String> = people.iter().filter(|c| c.fields["country"] == "DE").map(|c| c.email.clone()).collect();
    import(&mut s.commands, people).await;
    let seq = create(s, "de", r#"country = "DE""#).await;

    let columns = ["total_spent", "email", "custom.plan", "age", "last_opened_at", "score"];
    let got = export(s, request("de", &columns, seq)).await.unwrap();
    assert_eq!(got.header.fields, columns);
    assert_eq!(got.header.segment_name, "de");
    assert!(got.header.sequence >= seq, "{:?}", got.header);
    assert!(got.chunks.len() >= 2, "1666 rows come in more than one chunk: {:?}", got.chunks);
    let emails: Vec<&String> = got.rows.iter().map(|r| &r[1]).collect();
    assert_eq!(emails, germans.iter().collect::<Vec<_>>(), "the members, in member order");
    // Each value is what ListMembers shows for that contact and field.
    let listed = members(s, "de", seq).await;
    let expected: Vec<Vec<String>> = listed.iter().map(|c| columns.iter().map(|f| value(c, f)).collect()).collect();
    assert_eq!(got.rows, expected);
    assert!(got.rows.iter().any(|r| r[2] == "gold") && got.rows.iter().any(|r| r[2].is_empty()));
    assert!(got.rows.iter().all(|r| r[5].is_empty()), "nobody has a score");

    // No fields: every built-in one, in the order of an import file; by id.
    let id = got.header.segment_id;
    let by_id = Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Id(id)) });
    let all = export(s, pb::ExportContactsRequest { segment: by_id, ..request("de", &[], seq) }).await.unwrap();
    assert_eq!(all.header.fields, DEFAULT_COLUMNS);
    assert_eq!(all.rows.len(), germans.len());
    let first = &listed[0];
    let want: Vec<String> = DEFAULT_COLUMNS.iter().map(|f| value(first, f)).collect();
    assert_eq!(all.rows[0], want);

    // Time travel: deleted since, yet exported as of the sequence before.
    let gone: Vec<String> = germans[..10].to_vec();
    let req = pb::DeleteContactsRequest { command_id: String::new(), emails: gone.clone() };
    let later = s.commands.delete_contacts(req).await.unwrap().into_inner().sequence;
    let now = export(s, request("de", &["email"], later)).await.unwrap();
    assert_eq!(now.rows.len(), germans.len() - 10);
    let as_of = Some(pb::AsOf { point: Some(pb::as_of::Point::Sequence(seq)) });
    let then = export(s, pb::ExportContactsRequest { as_of, ..request("de", &["email"], later) }).await.unwrap();
    assert_eq!(then.header.sequence, seq);
    assert_eq!(then.rows.iter().map(|r| &r[0]).collect::<Vec<_>>(), germans.iter().collect::<Vec<_>>());
    h.server.served.stop().await.unwrap();
}

async fn date_filters_pick_members_by_when_they_were_added_or_updated(backend: Backend) {
    let mut h = start_on(backend, |_| {}).await;
    let s = &mut h.server;
    // (email, country, added_at, updated_at)
    let people = [
        ("jan@x.com", "DE", "2025-01-01T00:00:00Z", "2025-06-01T00:00:00Z"),
        ("feb@x.com", "DE", "2025-02-01T00:00:00Z", "2025-02-01T00:00:00Z"),
        ("mar@x.com", "DE", "2025-03-01T00:00:00Z", "2025-07-01T00:00:00Z"),
        ("apr@x.com", "DE", "2025-04-01T00:00:00Z", "2025-04-15T00:00:00Z"),
        ("fr-feb@x.com", "FR", "2025-02-10T00:00:00Z", "2025-06-10T00:00:00Z"),
    ];
    let contacts = people
        .iter()
        .map(|(email, country, added, updated)| {
            contact(email, &[("country", country), ("added_at", added), ("updated_at", updated)])
        })
        .collect();
    upsert(s, contacts).await;
    let seq = create(s, "de", r#"country = "DE""#).await;
    let cases = [
        (None, vec!["jan", "feb", "mar", "apr"]),
        // From inclusive, to exclusive.
        (Some(DateFilter::AddedBetween(range("2025-02-01T00:00:00Z", "2025-04-01T00:00:00Z"))), vec!["feb", "mar"]),
        (Some(DateFilter::AddedBetween(range("2025-02-01T00:00:00Z", ""))), vec!["feb", "mar", "apr"]),
        (Some(DateFilter::AddedBetween(range("", "2025-02-01T00:00:00Z"))), vec!["jan"]),
        // Offsets are instants like any other.
        (Some(DateFilter::AddedBetween(range("2025-03-01T01:00:00+02:00", ""))), vec!["mar", "apr"]),
        (Some(DateFilter::UpdatedBetween(range("2025-04-01T00:00:00Z", "2025-07-01T00:00:00Z"))), vec!["jan", "apr"]),
        (Some(DateFilter::UpdatedBetween(range("2025-07-01T00:00:00Z", ""))), vec!["mar"]),
        (Some(DateFilter::UpdatedBetween(range("2025-04-01T00:00:00Z", "2025-04-01T00:00:00Z"))), vec![]),
    ];
    for (filter, want) in cases {
        let req = pb::ExportContactsRequest { date_filter: filter.clone(), ..request("de", &["email"], seq) };
        let got = export(s, req).await.unwrap();
        let names: Vec<&str> = got.rows.iter().map(|r| r[0].split('@').next().unwrap()).collect();
        assert_eq!(names, want, "{filter:?}");
    }
    h.server.served.stop().await.unwrap();
}

async fn relative_criteria_follow_the_pinned_clock(backend: Backend) {
    let mut h = start_on(backend, |_| {}).await;
    let s = &mut h.server;
    let opened =
        [("a@x.com", "2026-03-27T00:00:00Z"), ("b@x.com", "2026-03-12T00:00:00Z"), ("c@x.com", "2026-02-20T00:00:00Z")];
    upsert(s, opened.iter().map(|(e, t)| contact(e, &[("last_opened_at", t)])).collect()).await;
    let seq = create(s, "recent", "last_opened_at within_last 30 days").await;
    for (at, want) in [
        ("2026-04-01T00:00:00Z", vec!["a@x.com", "b@x.com"]),
        ("2026-04-16T00:00:00Z", vec!["a@x.com"]),
        ("2026-03-15T00:00:00Z", vec!["b@x.com", "c@x.com"]),
    ] {
        let got =
            export(s, pb::ExportContactsRequest { at: at.into(), ..request("recent", &["email"], seq) }).await.unwrap();
        assert_eq!(got.rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), want, "at {at}");
        assert_eq!(got.header.at, at);
        let count =
            pb::CountMembersRequest { segment: by_name("recent"), min_sequence: seq, at: at.into(), as_of: None };
        assert_eq!(s.queries.count_members(count).await.unwrap().into_inner().count, got.header.total, "at {at}");
    }
    h.server.served.stop().await.unwrap();
}

/// The header's count and sequence hold for every row, even when the
/// members change while the client is still reading: rows after the header
/// come from the snapshot, not from the live model.
async fn the_rows_are_one_snapshot_while_writes_go_on(backend: Backend) {
    let mut h = start_on(backend, |_| {}).await;
    let s = &mut h.server;
    // More rows than the server formats ahead of a client that is not
    // reading (a few chunks buffered, one in flight).
    let n = 10_000;
    let people: Vec<_> =
        (0..n).map(|i| contact(&format!("p{i}@example.com"), &[("country", "DE"), ("city", "Old")])).collect();
    import(&mut s.commands, people).await;
    let seq = create(s, "de", r#"country = "DE""#).await;
    let (header, mut stream) = open(s, request("de", &["email", "city"], seq)).await.unwrap();
    assert_eq!(header.total, n as u64);

    // Every member moves: a new city, and half of them leave the segment.
    let moved: Vec<_> = (0..n)
        .map(|i| {
            let country = if i % 2 == 0 { "FR" } else { "DE" };
            contact(&format!("p{i}@example.com"), &[("country", country), ("city", "New")])
        })
        .collect();
    let after = upsert(s, moved).await;
    assert!(after > header.sequence);
    let count = pb::CountMembersRequest { segment: by_name("de"), min_sequence: after, ..Default::default() };
    assert_eq!(s.queries.count_members(count).await.unwrap().into_inner().count, (n / 2) as u64);

    let got = read_rest(header, &mut stream).await.unwrap();
    assert_eq!(got.rows.len(), n);
    let wrong: Vec<&Vec<String>> = got.rows.iter().filter(|r| r[1] != "Old").collect();
    assert!(wrong.is_empty(), "{} rows show values written after the snapshot, e.g. {:?}", wrong.len(), wrong.first());
    let emails: Vec<String> = got.rows.iter().map(|r| r[0].clone()).collect();
    let want: Vec<String> = (0..n).map(|i| format!("p{i}@example.com")).collect();
    assert_eq!(emails, want);
    h.server.served.stop().await.unwrap();
}

async fn bad_input_is_refused_naming_the_field(backend: Backend) {
    let mut h = start_on(backend, |_| {}).await;
    let s = &mut h.server;
    let seq = create(s, "de", r#"country = "DE""#).await;
    let base = || request("de", &["email"], seq);
    let cases: Vec<(pb::ExportContactsRequest, Code, &[&str])> = vec![
        (request("de", &["email", "shoe_size"], seq), Code::InvalidArgument, &["fields[1]", "shoe_size"]),
        (request("de", &["email", "custom.a b"], seq), Code::InvalidArgument, &["fields[1]", "custom.a b"]),
        (request("de", &["age", "email", "age"], seq), Code::InvalidArgument, &["fields[2]", "age", "twice"]),
        (request("nobody", &["email"], seq), Code::NotFound, &["nobody"]),
        (pb::ExportContactsRequest { segment: None, ..base() }, Code::InvalidArgument, &["segment"]),
        (
            pb::ExportContactsRequest {
                segment: Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Id(999)) }),
                ..base()
            },
            Code::NotFound,
            &["999"],
        ),
        (
            pb::ExportContactsRequest {
                date_filter: Some(DateFilter::AddedBetween(range("last tuesday", ""))),
                ..base()
            },
            Code::InvalidArgument,
            &["added_between.from"],
        ),
        (
            pb::ExportContactsRequest {
                date_filter: Some(DateFilter::UpdatedBetween(range("2025-03-01T00:00:00Z", "2025-01-01T00:00:00Z"))),
                ..base()
            },
            Code::InvalidArgument,
            &["updated_between", "after"],
        ),
        (
            pb::ExportContactsRequest { date_filter: Some(DateFilter::AddedBetween(range("", ""))), ..base() },
            Code::InvalidArgument,
            &["added_between"],
        ),
        (pb::ExportContactsRequest { at: "soon".into(), ..base() }, Code::InvalidArgument, &["at"]),
        (
            pb::ExportContactsRequest {
                as_of: Some(pb::AsOf { point: Some(pb::as_of::Point::Sequence(seq + 100)) }),
                ..base()
            },
            Code::FailedPrecondition,
            &["as_of"],
        ),
    ];
    let too_many: Vec<String> = (0..101).map(|i| format!("custom.f{i}")).collect();
    let too_many = pb::ExportContactsRequest { fields: too_many, ..base() };
    for (req, code, says) in cases.into_iter().chain([(too_many, Code::InvalidArgument, &["fields", "100"][..])]) {
        let status = export(s, req.clone()).await.err().unwrap_or_else(|| panic!("{req:?} was accepted"));
        assert_eq!(status.code(), code, "{req:?}: {status:?}");
        for word in says {
            assert!(status.message().contains(word), "{:?} should name {word:?}", status.message());
        }
    }
    h.server.served.stop().await.unwrap();
}

on_both_logs!(
    rows_are_the_members_with_the_chosen_fields_in_order,
    date_filters_pick_members_by_when_they_were_added_or_updated,
    relative_criteria_follow_the_pinned_clock,
    the_rows_are_one_snapshot_while_writes_go_on,
    bad_input_is_refused_naming_the_field,
);
