//! Black-box tests of segmentd on NATS JetStream with several real
//! processes: the `segmentd` binary started as `commands`, `queries` and
//! `serve --nats-url` nodes against one real `nats-server` per test
//! (`segmentd_log_nats::testkit`).
//!
//! * Two command nodes racing to create the same segment names: for every
//!   name exactly one wins, the other answers ALREADY_EXISTS, and the log
//!   holds one segment per name.
//! * One command node and two query nodes: both query nodes, each with its
//!   own projector and read model, answer the same questions identically
//!   once they have reached the command's sequence; health reports each
//!   node's role.
//! * A NATS outage under write load: writes fail with UNAVAILABLE while the
//!   server is away and succeed again after its restart, no acknowledged
//!   write is lost, the projector resumes, and failed commands can be
//!   retried with their command id without duplicating anything.
//!
//! Every process gets its own temporary data directory and writes its log
//! (stderr) into it; a failing test prints those logs, and the NATS
//! server's. Nothing sleeps to synchronise: each wait is for a condition,
//! bounded by a timeout.

mod common;

use common::{CALL_PATIENCE, Node, call, spawn_node as spawn};
use segmentd_log_nats::testkit::NatsServer;
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::replay_client::ReplayClient;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Barrier, mpsc};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

// ---------- requests ----------

fn text(criteria: &str) -> Option<pb::CriteriaInput> {
    Some(pb::CriteriaInput { kind: Some(pb::criteria_input::Kind::Text(criteria.to_owned())) })
}

fn by_name(name: &str) -> Option<pb::SegmentRef> {
    Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Name(name.to_owned())) })
}

fn contact(email: &str, fields: &[(&str, String)]) -> pb::ContactInput {
    pb::ContactInput {
        email: email.to_owned(),
        fields: fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
    }
}

/// Every member of a segment, page by page, as read after `min_sequence`;
/// also the pages themselves (emails only), for comparing nodes.
async fn members(
    node: &Node,
    segment: &str,
    page_size: u32,
    min_sequence: u64,
) -> Result<(Vec<pb::Contact>, Vec<Vec<String>>), Status> {
    let mut queries = node.queries();
    let mut contacts = Vec::new();
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListMembersRequest {
            segment: by_name(segment),
            page_size,
            page_token,
            min_sequence,
            at: String::new(),
            ..Default::default()
        };
        let page = call(&format!("ListMembers on {}", node.name), queries.list_members(request)).await?;
        pages.push(page.contacts.iter().map(|c| c.email.clone()).collect());
        contacts.extend(page.contacts);
        if page.next_page_token.is_empty() {
            return Ok((contacts, pages));
        }
        page_token = page.next_page_token;
    }
}

/// What a node's health service says about `service` (NOT_FOUND: unknown to it).
async fn serving_status(node: &Node, service: &str) -> Result<ServingStatus, Code> {
    let mut health = HealthClient::new(node.channel.clone());
    let request = HealthCheckRequest { service: service.to_owned() };
    let reply = call(&format!("health check of {service} on {}", node.name), health.check(request)).await;
    reply.map(|r| r.status()).map_err(|s| s.code())
}

// ---------- 1. two command nodes ----------

/// Names raced for; each race is one name.
const RACES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_command_nodes_racing_for_one_segment_name_exactly_one_wins() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let as_commands = ["commands", "--nats-url", &url];
    let (node_a, node_b) = tokio::join!(spawn("commands-a", &as_commands), spawn("commands-b", &as_commands));

    // One task per node; before each name both wait at the barrier, so the
    // two creates leave at the same moment.
    let barrier = Arc::new(Barrier::new(2));
    let racer = |node: &Node, label: &'static str, criteria: fn(usize) -> String| {
        let mut client = node.commands();
        let barrier = Arc::clone(&barrier);
        tokio::spawn(async move {
            let mut replies = Vec::with_capacity(RACES);
            for i in 0..RACES {
                barrier.wait().await;
                let request = pb::CreateSegmentRequest {
                    command_id: format!("create-{label}-{i}"),
                    name: format!("race-{i}"),
                    criteria: text(&criteria(i)),
                };
                replies.push(call(&format!("CreateSegment race-{i} on {label}"), client.create_segment(request)).await);
            }
            replies
        })
    };
    let task_a = racer(&node_a, "a", |i| format!("score >= {i}"));
    let task_b = racer(&node_b, "b", |i| format!("country = \"C{i}\""));
    let (replies_a, replies_b) = tokio::join!(task_a, task_b);
    let (replies_a, replies_b) = (replies_a.expect("racer a"), replies_b.expect("racer b"));

    let mut winners: BTreeMap<String, pb::Segment> = BTreeMap::new();
    let mut wins = [0usize; 2];
    let mut max_seq = 0;
    let mut wrong = Vec::new();
    for (i, (a, b)) in replies_a.into_iter().zip(replies_b).enumerate() {
        let name = format!("race-{i}");
        let (won, winner, loser) = match (a, b) {
            (Ok(w), Err(l)) => (0, w, l),
            (Err(l), Ok(w)) => (1, w, l),
            (a, b) => {
                wrong.push(format!("{name}: a answered {a:?}, b answered {b:?}"));
                continue;
            }
        };
        if loser.code() != Code::AlreadyExists {
            wrong.push(format!("{name}: the loser answered {loser:?}, not ALREADY_EXISTS"));
        }
        wins[won] += 1;
        max_seq = max_seq.max(winner.sequence);
        let segment = winner.segment.expect("a created segment comes back");
        assert_eq!(segment.name, name);
        winners.insert(name, segment);
    }
    assert!(wrong.is_empty(), "every race must have exactly one winner and one ALREADY_EXISTS:\n{}", wrong.join("\n"));
    // Whether the loser decided before or after the winner's event was in
    // the log is up to timing; a loser that decided before it hit an
    // expected-sequence conflict, and its writer says so.
    let conflicts = |node: &Node| node.stderr().matches("conflict; deciding again").count();
    eprintln!(
        "races won: node a {}, node b {}; conflicts decided again: node a {}, node b {}",
        wins[0],
        wins[1],
        conflicts(&node_a),
        conflicts(&node_b)
    );

    // A query node, started afterwards, sees exactly the winners.
    let queries = spawn("queries", &["queries", "--nats-url", &url]).await;
    let listed = call(
        "ListSegments on the query node",
        queries.queries().list_segments(pb::ListSegmentsRequest { min_sequence: max_seq, ..Default::default() }),
    )
    .await
    .expect("the query node lists segments");
    let mut by_name: BTreeMap<String, Vec<pb::Segment>> = BTreeMap::new();
    for segment in listed.segments {
        by_name.entry(segment.name.clone()).or_default().push(segment);
    }
    assert_eq!(
        by_name.keys().collect::<Vec<_>>(),
        winners.keys().collect::<Vec<_>>(),
        "the listed segment names are exactly the raced names"
    );
    for (name, segments) in &by_name {
        assert_eq!(segments.len(), 1, "{name} is listed {} times: {segments:?}", segments.len());
        let (listed, won) = (&segments[0], &winners[name]);
        assert_eq!(
            (listed.id, &listed.criteria_text, listed.version),
            (won.id, &won.criteria_text, won.version),
            "{name}: the listed segment is the one whose create was acknowledged"
        );
    }
    let ids: BTreeSet<u64> = by_name.values().map(|s| s[0].id).collect();
    assert_eq!(ids.len(), RACES, "every segment has its own id");
    drop((node_a, node_b, queries, nats));
}

// ---------- 2. one command node, two query nodes ----------

const COUNTRIES: [&str; 3] = ["DE", "FR", "US"];

fn country(i: usize) -> &'static str {
    COUNTRIES[i % COUNTRIES.len()]
}

/// What both query nodes answer, for comparing them.
#[derive(Debug, PartialEq)]
struct Answers {
    count: u64,
    contacts: Vec<pb::Contact>,
    members: Vec<pb::Contact>,
    pages: Vec<Vec<String>>,
}

async fn answers(node: &Node, segment: &str, emails: &[String], min_sequence: u64) -> Answers {
    let mut queries = node.queries();
    let request =
        pb::CountMembersRequest { segment: by_name(segment), min_sequence, at: String::new(), ..Default::default() };
    let count = call(&format!("CountMembers on {}", node.name), queries.count_members(request))
        .await
        .unwrap_or_else(|e| panic!("{} counts {segment} at {min_sequence}: {e:?}", node.name))
        .count;
    let mut contacts = Vec::new();
    for email in emails {
        let request = pb::GetContactRequest { email: email.clone(), min_sequence };
        let contact = call(&format!("GetContact on {}", node.name), queries.get_contact(request))
            .await
            .unwrap_or_else(|e| panic!("{} gets {email} at {min_sequence}: {e:?}", node.name));
        contacts.push(contact);
    }
    let (members, pages) = members(node, segment, 7, min_sequence)
        .await
        .unwrap_or_else(|e| panic!("{} lists {segment} at {min_sequence}: {e:?}", node.name));
    Answers { count, contacts, members, pages }
}

/// Asks both query nodes the same questions at `seq` and checks that they
/// answer the same, and who the segment's members are. Whether they come in
/// the documented order is only noted in `order_problems` (checked at the
/// end of the test, so that everything else is checked too).
async fn same_answers(
    (q1, q2): (&Node, &Node),
    sample: &[String],
    seq: u64,
    expected: &[String],
    step: &str,
    order_problems: &mut Vec<String>,
) -> Answers {
    let (a1, a2) = tokio::join!(answers(q1, "de-high", sample, seq), answers(q2, "de-high", sample, seq));
    assert_eq!(a1, a2, "{step}: both query nodes answer the same at sequence {seq}");
    assert_eq!(a1.count as usize, expected.len(), "{step}: the member count");
    assert!(a1.pages.len() > 1, "{step}: the members span several pages");
    let listed: Vec<String> = a1.members.iter().map(|c| c.email.clone()).collect();
    assert_eq!(listed.iter().collect::<BTreeSet<_>>(), expected.iter().collect::<BTreeSet<_>>(), "{step}: the members");
    if listed != expected {
        order_problems.push(format!("{step}:\n  listed:   {listed:?}\n  expected: {expected:?}"));
    }
    a1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_node_and_two_query_nodes_serve_one_stream() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let (as_commands, as_queries) = (["commands", "--nats-url", &url], ["queries", "--nats-url", &url]);
    let (commands, q1, q2) = tokio::join!(
        spawn("commands", &as_commands),
        spawn("queries-1", &as_queries),
        spawn("queries-2", &as_queries),
    );

    // Each node says in its health which role it has, and only serves that.
    assert_eq!(serving_status(&commands, "segments.v1.Commands").await, Ok(ServingStatus::Serving));
    assert_eq!(serving_status(&q1, "segments.v1.Queries").await, Ok(ServingStatus::Serving));
    assert_eq!(serving_status(&q2, "segments.v1.Queries").await, Ok(ServingStatus::Serving));
    assert_eq!(
        serving_status(&commands, "segments.v1.Queries").await,
        Err(Code::NotFound),
        "a command node does not claim to serve queries"
    );
    assert_eq!(
        serving_status(&q1, "segments.v1.Commands").await,
        Err(Code::NotFound),
        "a query node does not claim to serve commands"
    );
    let refused =
        call("CountMembers on the command node", commands.queries().count_members(pb::CountMembersRequest::default()))
            .await
            .expect_err("a command node has no read model");
    assert_eq!(refused.code(), Code::Unimplemented, "{refused:?}");
    let refused =
        call("UpsertContacts on a query node", q1.commands().upsert_contacts(pb::UpsertContactsRequest::default()))
            .await
            .expect_err("a query node takes no commands");
    assert_eq!(refused.code(), Code::Unimplemented, "{refused:?}");

    // Writes, all through the command node.
    const N: usize = 240;
    let emails: Vec<String> = (0..N).map(|i| format!("c{i}@example.com")).collect();
    let mut writer = commands.commands();
    let request = pb::UpsertContactsRequest {
        command_id: "import".into(),
        contacts: (0..N)
            .map(|i| contact(&emails[i], &[("country", country(i).to_owned()), ("score", i.to_string())]))
            .collect(),
    };
    let imported = call("UpsertContacts", writer.upsert_contacts(request)).await.expect("the import is accepted");
    assert_eq!(imported.created as usize, N);
    let request = pb::CreateSegmentRequest {
        command_id: "create-de-high".into(),
        name: "de-high".into(),
        criteria: text(r#"country = "DE" and score >= 100"#),
    };
    let created = call("CreateSegment", writer.create_segment(request)).await.expect("the segment is created");
    assert!(created.sequence > imported.sequence);

    let sample: Vec<String> = [0, 1, 99, 102, 105, 239].iter().map(|&i| emails[i].clone()).collect();
    let expected: Vec<String> = (0..N).filter(|&i| country(i) == "DE" && i >= 100).map(|i| emails[i].clone()).collect();
    // The members come in "the order contacts were first created"; one
    // import creates them in request order (the log keeps a request's events
    // in request order, see segmentd_log_nats).
    let mut order_problems = Vec::new();
    let nodes = (&q1, &q2);
    let first =
        same_answers(nodes, &sample, created.sequence, &expected, "after the import", &mut order_problems).await;
    for (email, got) in sample.iter().zip(&first.contacts) {
        let i: usize = email[1..email.find('@').unwrap()].parse().unwrap();
        assert_eq!(&got.email, email);
        assert_eq!(got.fields.get("country").map(String::as_str), Some(country(i)), "{email}");
        assert_eq!(got.fields.get("score"), Some(&i.to_string()), "{email}");
    }

    // Changes after the segment exists move contacts in and out of it, and
    // both nodes follow them.
    let request = pb::UpsertContactsRequest {
        command_id: "moves".into(),
        contacts: vec![
            contact(&emails[102], &[("country", "FR".to_owned())]),
            contact(&emails[1], &[("country", "DE".to_owned()), ("score", "500".to_owned())]),
        ],
    };
    let moved = call("UpsertContacts", writer.upsert_contacts(request)).await.expect("the moves are accepted");
    assert_eq!(moved.updated, 2);
    let request = pb::DeleteContactsRequest { command_id: "delete-105".into(), emails: vec![emails[105].clone()] };
    let deleted = call("DeleteContacts", writer.delete_contacts(request)).await.expect("the delete is accepted");
    assert!(deleted.sequence > moved.sequence);
    // Contact 1 was created first, so it now leads the members.
    let mut expected: Vec<String> = expected.into_iter().filter(|e| *e != emails[102] && *e != emails[105]).collect();
    expected.insert(0, emails[1].clone());
    let mut sample_after = sample.clone();
    sample_after.retain(|e| *e != emails[105]);
    same_answers(nodes, &sample_after, deleted.sequence, &expected, "after the changes", &mut order_problems).await;
    for q in [&q1, &q2] {
        let request = pb::GetContactRequest { email: emails[105].clone(), min_sequence: deleted.sequence };
        let gone = call("GetContact", q.queries().get_contact(request)).await;
        assert_eq!(gone.map_err(|s| s.code()), Err(Code::NotFound), "{}: a deleted contact is gone", q.name);
    }
    assert!(
        order_problems.is_empty(),
        "both query nodes agree, but the members are not in the order they were created (request order of the \
         one import):\n{}",
        order_problems.join("\n")
    );
    drop((commands, q1, q2, nats));
}

// ---------- 3. NATS outage under write load ----------

const BATCH: usize = 50;

fn batch_email(batch: usize, k: usize) -> String {
    format!("b{batch}-{k}@example.com")
}

fn batch_request(batch: usize) -> pb::UpsertContactsRequest {
    pb::UpsertContactsRequest {
        command_id: format!("batch-{batch}"),
        contacts: (0..BATCH).map(|k| contact(&batch_email(batch, k), &[("score", k.to_string())])).collect(),
    }
}

/// What the writer saw for one batch.
#[derive(Debug)]
enum Outcome {
    Acked { batch: usize, seq: u64 },
    Failed { batch: usize, code: Code, message: String, took: Duration },
}

/// Everything the writer reported so far, in order.
#[derive(Default)]
struct Seen {
    acked: BTreeMap<usize, u64>,
    failed: BTreeMap<usize, (Code, String, Duration)>,
}

impl Seen {
    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Acked { batch, seq } => {
                self.acked.insert(batch, seq);
            }
            Outcome::Failed { batch, code, message, took } => {
                self.failed.insert(batch, (code, message, took));
            }
        }
    }

    /// Receives outcomes until `done` holds, failing after `patience`.
    async fn until(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Outcome>,
        patience: Duration,
        what: &str,
        done: impl Fn(&Seen) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + patience;
        while !done(self) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(outcome)) => self.record(outcome),
                Ok(None) => panic!("the writer stopped before {what}"),
                Err(_) => panic!(
                    "{what}: not within {patience:?}; acknowledged batches {:?}, failed {:?}",
                    self.acked.keys().collect::<Vec<_>>(),
                    self.failed
                ),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outage_under_write_load_loses_no_acknowledged_command() {
    let mut nats = NatsServer::start().await;
    let url = nats.url();
    let mut node = spawn("serve", &["serve", "--nats-url", &url]).await;
    let mut commands = node.commands();
    let everyone = pb::CreateSegmentRequest {
        command_id: "create-everyone".into(),
        name: "everyone".into(),
        criteria: text("email is_not_empty"),
    };
    call("CreateSegment", commands.create_segment(everyone)).await.expect("the catch-all segment is created");

    // The writer: one batch after the other, each under a new command id,
    // whatever became of the one before.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let mut commands = commands.clone();
        tokio::spawn(async move {
            let mut batch = 0;
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let outcome =
                    match tokio::time::timeout(CALL_PATIENCE, commands.upsert_contacts(batch_request(batch))).await {
                        Ok(Ok(reply)) => Outcome::Acked { batch, seq: reply.into_inner().sequence },
                        Ok(Err(status)) => Outcome::Failed {
                            batch,
                            code: status.code(),
                            message: status.message().to_owned(),
                            took: started.elapsed(),
                        },
                        Err(_) => Outcome::Failed {
                            batch,
                            code: Code::DeadlineExceeded,
                            message: format!("no answer within {CALL_PATIENCE:?} (client-side)"),
                            took: started.elapsed(),
                        },
                    };
                if tx.send(outcome).is_err() {
                    return;
                }
                batch += 1;
            }
        })
    };

    let mut seen = Seen::default();
    let started = Instant::now();
    seen.until(&mut rx, Duration::from_secs(30), "10 batches are acknowledged", |s| s.acked.len() >= 10).await;
    assert!(seen.failed.is_empty(), "failures while NATS was up: {:?}", seen.failed);

    nats.stop().await;
    let stopped_at = started.elapsed();
    // A few failures, not just one: the outage lasts a few seconds, long
    // enough for the writer to hit it in several states.
    seen.until(&mut rx, Duration::from_secs(30), "3 writes fail while NATS is down", |s| s.failed.len() >= 3).await;
    let first_failed = *seen.failed.keys().next().unwrap();

    nats.restart().await;
    let restarted_at = started.elapsed();
    // Successes again, and a few of them: the read checks below need writes
    // made after the restart.
    seen.until(&mut rx, Duration::from_secs(60), "writes succeed again after the restart", |s| {
        s.acked.range(first_failed..).count() >= 3
    })
    .await;
    let recovered_at = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let patience = CALL_PATIENCE + Duration::from_secs(5);
    tokio::time::timeout(patience, writer).await.expect("the writer stops").expect("the writer does not panic");
    while let Ok(outcome) = rx.try_recv() {
        seen.record(outcome);
    }
    node.assert_running();
    eprintln!(
        "NATS stopped at {stopped_at:?}, restarted at {restarted_at:?}, writes succeeded again by {recovered_at:?}; \
         batches acknowledged: {}, failed: {:?}",
        seen.acked.len(),
        seen.failed.iter().map(|(b, (code, _, took))| (*b, *code, *took)).collect::<Vec<_>>()
    );

    // Every failure is UNAVAILABLE: "try again", never a wrong verdict.
    let not_unavailable: Vec<_> = seen.failed.iter().filter(|(_, (code, _, _))| *code != Code::Unavailable).collect();
    assert!(not_unavailable.is_empty(), "failures other than UNAVAILABLE during the outage: {not_unavailable:#?}");

    // Every acknowledged contact is readable at the highest acknowledged
    // sequence, which is one of a write made after the restart: so the
    // projector has resumed.
    let max_acked = *seen.acked.values().max().unwrap();
    let (listed, _) = members(&node, "everyone", 1000, max_acked)
        .await
        .unwrap_or_else(|e| panic!("listing everyone at the last acknowledged sequence {max_acked}: {e:?}"));
    let present: HashMap<String, pb::Contact> = listed.into_iter().map(|c| (c.email.clone(), c)).collect();
    let missing: Vec<String> = seen
        .acked
        .keys()
        .flat_map(|&b| (0..BATCH).map(move |k| batch_email(b, k)))
        .filter(|e| !present.contains_key(e))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged contacts are missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let newest = *seen.acked.keys().next_back().unwrap();
    let request = pb::GetContactRequest { email: batch_email(newest, BATCH - 1), min_sequence: max_acked };
    let got = call("GetContact", node.queries().get_contact(request))
        .await
        .expect("the last contact written after the restart is readable");
    assert_eq!(got.fields.get("score"), Some(&(BATCH - 1).to_string()));

    // Each failed batch, retried with its command id, succeeds; whatever of
    // it had landed is not recorded again.
    let mut max_seq = max_acked;
    for &batch in seen.failed.keys() {
        let reply = call(&format!("retrying batch-{batch}"), commands.upsert_contacts(batch_request(batch)))
            .await
            .unwrap_or_else(|e| panic!("retrying batch-{batch} after the restart: {e:?}"));
        assert_eq!(reply.updated, 0, "batch-{batch}: the retry changes nothing that an earlier attempt wrote");
        max_seq = max_seq.max(reply.sequence);
        eprintln!(
            "retried batch-{batch}: created {}, unchanged {}, duplicate {}",
            reply.created, reply.unchanged, reply.duplicate
        );
    }
    let last_batch = *seen.acked.keys().chain(seen.failed.keys()).max().unwrap();
    let (listed, _) = members(&node, "everyone", 1000, max_seq).await.expect("listing everyone after the retries");
    let mut emails: Vec<String> = listed.into_iter().map(|c| c.email).collect();
    let listed_len = emails.len();
    emails.sort();
    emails.dedup();
    assert_eq!(emails.len(), listed_len, "a contact is listed twice");
    let expected: BTreeSet<String> =
        (0..=last_batch).flat_map(|b| (0..BATCH).map(move |k| batch_email(b, k))).collect();
    assert_eq!(
        emails.into_iter().collect::<BTreeSet<_>>(),
        expected,
        "every batch is there once, acknowledged or retried"
    );

    // The log itself: exactly one event per contact, recorded by its batch's
    // command; no retry (the writer's nor ours) recorded anything twice.
    let request = pb::ReplayEventsRequest { aggregate_type: "contact".into(), ..Default::default() };
    let mut stream = call("ReplayEvents", ReplayClient::new(node.channel.clone()).replay_events(request))
        .await
        .expect("the log replays");
    let mut events: HashMap<String, Vec<(String, String)>> = HashMap::new();
    loop {
        match tokio::time::timeout(CALL_PATIENCE, stream.message()).await.expect("the replay goes on") {
            Ok(Some(event)) => events.entry(event.aggregate_id).or_default().push((event.r#type, event.command_id)),
            Ok(None) => break,
            Err(e) => panic!("the replay failed: {e:?}"),
        }
    }
    let mut wrong = Vec::new();
    for email in &expected {
        let batch: usize = email[1..email.find('-').unwrap()].parse().unwrap();
        let want = vec![("ContactCreated".to_owned(), format!("batch-{batch}"))];
        match events.get(email) {
            Some(got) if *got == want => {}
            got => wrong.push(format!("{email}: {got:?}")),
        }
    }
    assert_eq!(events.len(), expected.len(), "contacts in the log that no batch wrote");
    assert!(
        wrong.is_empty(),
        "{} contacts do not have exactly one ContactCreated by their batch:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    node.assert_running();
    drop((node, nats));
}
