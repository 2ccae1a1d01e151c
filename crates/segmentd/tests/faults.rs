//! Fault tests with real processes: machines and processes die under write
//! load, and nothing acknowledged is lost or recorded twice.
//!
//! * **A NATS node dies.** A 3-node JetStream cluster
//!   (`testkit::NatsCluster`: `deploy/nats-cluster.sh` with the committed
//!   loopback configs on free ports), the stream at R3, a `segmentd
//!   commands` node and concurrent writers. The stream's leader is
//!   SIGKILLed: writes fail only with UNAVAILABLE while a new leader is
//!   elected, then succeed again; every failed command is retried with its
//!   command id, and at the end a fresh query node over the surviving nodes
//!   and the log itself hold every command's contacts exactly once.
//! * **segmentd dies.** `segmentd serve` is SIGKILLed at random moments
//!   (seeded RNG; the seed is printed, `FAULT_SEED=N` repeats a run) under
//!   write load, several rounds, on the embedded log and on a real
//!   nats-server. After each restart the commands cut off by the kill are
//!   retried with their command ids, the read model holds exactly what every
//!   command wrote, and it equals a clean rebuild of the log up to the same
//!   sequence (`segmentd rebuild --until` + `serve-snapshot`).
//!
//! No sleep synchronises anything: waits are for conditions, with timeouts.
//! The one timed pause is the random moment of a kill, which is the fault.

mod common;

use common::{CALL_PATIENCE, Node, call, spawn_node, spawn_node_in};
use segmentd_log_nats::testkit::{NatsCluster, NatsServer};
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::commands_client::CommandsClient;
use segmentd_proto::v1::queries_client::QueriesClient;
use segmentd_proto::v1::replay_client::ReplayClient;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The stream segmentd keeps its events in (the default).
const STREAM: &str = "SEGMENTD";

// ---------- requests and reads shared by both tests ----------

fn text(criteria: &str) -> Option<pb::CriteriaInput> {
    Some(pb::CriteriaInput { kind: Some(pb::criteria_input::Kind::Text(criteria.to_owned())) })
}

fn by_name(name: &str) -> Option<pb::SegmentRef> {
    Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Name(name.to_owned())) })
}

fn upsert(command_id: &str, contacts: &[(String, u32)]) -> pb::UpsertContactsRequest {
    pb::UpsertContactsRequest {
        command_id: command_id.to_owned(),
        contacts: contacts
            .iter()
            .map(|(email, score)| pb::ContactInput {
                email: email.clone(),
                fields: [("score".to_owned(), score.to_string())].into(),
            })
            .collect(),
    }
}

async fn create_segment(commands: &mut CommandsClient<Channel>, name: &str, criteria: &str) -> u64 {
    let request =
        pb::CreateSegmentRequest { command_id: format!("create-{name}"), name: name.into(), criteria: text(criteria) };
    call(&format!("CreateSegment {name}"), commands.create_segment(request))
        .await
        .unwrap_or_else(|e| panic!("creating segment {name}: {e:?}"))
        .sequence
}

/// Every member of `segment`, read after `min_sequence`, in the listed order.
async fn members(node: &Node, segment: &str, min_sequence: u64) -> Vec<pb::Contact> {
    let mut queries = node.queries();
    let mut contacts = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListMembersRequest {
            segment: by_name(segment),
            page_size: 1000,
            page_token,
            min_sequence,
            ..Default::default()
        };
        let page = list_members_patiently(node, &mut queries, segment, request).await;
        contacts.extend(page.contacts);
        if page.next_page_token.is_empty() {
            return contacts;
        }
        page_token = page.next_page_token;
    }
}

/// A fresh query node on a cluster that has just lost a node may take
/// longer than one request's wait to create its consumer and catch up: it
/// answers UNAVAILABLE, which a client retries, so the test does too, up to
/// a deadline.
async fn list_members_patiently(
    node: &Node,
    queries: &mut QueriesClient<tonic::transport::Channel>,
    segment: &str,
    request: pb::ListMembersRequest,
) -> pb::ListMembersReply {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        match call(&format!("ListMembers {segment} on {}", node.name), queries.list_members(request.clone())).await {
            Ok(page) => return page,
            Err(e) if e.code() == tonic::Code::Unavailable && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{} lists {segment} at {}: {e:?}", node.name, request.min_sequence),
        }
    }
}

/// Every contact event in the log: contact → [(event type, command id)].
/// A replay that fails with UNAVAILABLE (a degraded cluster may time out
/// creating its consumer) is started again, as a client would.
async fn contact_events(node: &Node) -> HashMap<String, Vec<(String, String)>> {
    eventually("the log replays", RECOVERY_PATIENCE, async || {
        let request = pb::ReplayEventsRequest { aggregate_type: "contact".into(), ..Default::default() };
        let mut replay = ReplayClient::new(node.channel.clone());
        let mut stream = match call("ReplayEvents", replay.replay_events(request)).await {
            Ok(stream) => stream,
            Err(status) if status.code() == Code::Unavailable => return Err(format!("{status:?}")),
            Err(status) => panic!("the replay is refused: {status:?}"),
        };
        let mut events: HashMap<String, Vec<(String, String)>> = HashMap::new();
        loop {
            match tokio::time::timeout(CALL_PATIENCE, stream.message()).await.expect("the replay goes on") {
                Ok(Some(event)) => events.entry(event.aggregate_id).or_default().push((event.r#type, event.command_id)),
                Ok(None) => return Ok(Some(events)),
                Err(status) if status.code() == Code::Unavailable => return Err(format!("{status:?}")),
                Err(status) => panic!("the replay failed: {status:?}"),
            }
        }
    })
    .await
}

// ---------- 1. a NATS node dies ----------

/// Concurrent writers, and contacts per command.
const WRITERS: usize = 6;
const BATCH: usize = 10;
/// How long one command may keep failing before the test calls writes
/// unrecoverable.
const RECOVERY_PATIENCE: Duration = Duration::from_secs(60);

fn cluster_email(writer: usize, n: usize, k: usize) -> String {
    format!("w{writer}-{n}-{k}@example.com")
}

fn cluster_command(writer: usize, n: usize) -> pb::UpsertContactsRequest {
    let contacts: Vec<(String, u32)> = (0..BATCH).map(|k| (cluster_email(writer, n, k), k as u32)).collect();
    upsert(&format!("w{writer}-{n}"), &contacts)
}

/// What a writer reports: every failed attempt, and each command once it is
/// acknowledged (after however many attempts).
#[derive(Debug)]
enum Report {
    Failed { command: String, code: Code, message: String, at: Instant },
    Acked { writer: usize, n: usize, seq: u64, first_sent: Instant, attempts: usize },
}

/// A writer: command after command, each retried with its command id until
/// it is acknowledged, as a client that wants its write done would.
fn spawn_writer(
    writer: usize,
    mut commands: CommandsClient<Channel>,
    stop: Arc<AtomicBool>,
    reports: mpsc::UnboundedSender<Report>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            let first_sent = Instant::now();
            let mut attempts = 0;
            let seq = loop {
                attempts += 1;
                let sent = tokio::time::timeout(CALL_PATIENCE, commands.upsert_contacts(cluster_command(writer, n)));
                let status = match sent.await {
                    Ok(Ok(reply)) => break reply.into_inner().sequence,
                    Ok(Err(status)) => status,
                    Err(_) => Status::deadline_exceeded(format!("no answer within {CALL_PATIENCE:?} (client-side)")),
                };
                let command = format!("w{writer}-{n}");
                let failed = Report::Failed {
                    command: command.clone(),
                    code: status.code(),
                    message: status.message().to_owned(),
                    at: Instant::now(),
                };
                if reports.send(failed).is_err() {
                    return;
                }
                assert!(
                    first_sent.elapsed() < RECOVERY_PATIENCE,
                    "{command} still fails after {RECOVERY_PATIENCE:?}: {status:?}"
                );
                // Retry pacing, as a client backs off; not a synchronisation.
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            if reports.send(Report::Acked { writer, n, seq, first_sent, attempts }).is_err() {
                return;
            }
            n += 1;
        }
    })
}

#[derive(Default)]
struct Tally {
    /// (writer, n) → (sequence, first sent, attempts)
    acked: BTreeMap<(usize, usize), (u64, Instant, usize)>,
    failures: Vec<(String, Code, String, Instant)>,
}

impl Tally {
    fn record(&mut self, report: Report) {
        match report {
            Report::Failed { command, code, message, at } => self.failures.push((command, code, message, at)),
            Report::Acked { writer, n, seq, first_sent, attempts } => {
                self.acked.insert((writer, n), (seq, first_sent, attempts));
            }
        }
    }

    async fn until(
        &mut self,
        reports: &mut mpsc::UnboundedReceiver<Report>,
        what: &str,
        done: impl Fn(&Tally) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + RECOVERY_PATIENCE;
        while !done(self) {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(report)) => self.record(report),
                Ok(None) => panic!("the writers stopped before {what}"),
                Err(_) => panic!(
                    "{what}: not within {RECOVERY_PATIENCE:?}; {} commands acknowledged, failures: {:?}",
                    self.acked.len(),
                    self.failures
                ),
            }
        }
    }
}

/// Waits until `probe` answers `Some`, asking again while it answers
/// `None` (with why), failing after `patience`.
async fn eventually<T>(what: &str, patience: Duration, mut probe: impl AsyncFnMut() -> Result<Option<T>, String>) -> T {
    let started = Instant::now();
    let mut last = String::from("never asked");
    while started.elapsed() < patience {
        match probe().await {
            Ok(Some(found)) => return found,
            Ok(None) => last = "not yet".into(),
            Err(why) => {
                eprintln!("{what}: {why}; asking again");
                last = why;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {patience:?}; last answer: {last}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_of_three_nats_nodes_loses_no_acknowledged_command() {
    let cluster = NatsCluster::start().await;
    eprintln!("NATS cluster: {}", cluster.variant());
    let urls = cluster.urls();
    let on_cluster = ["--nats-url", urls.as_str(), "--nats-replicas", "3"];
    let node = spawn_node("commands", &[&["commands"][..], &on_cluster].concat()).await;
    let mut commands = node.commands();
    create_segment(&mut commands, "everyone", "email is_not_empty").await;
    let replicas = cluster.stream_cluster(STREAM).await.expect("the stream exists");
    assert_eq!(replicas.replicas.len(), 2, "the stream is R3: a leader and two replicas: {replicas:?}");

    let (tx, mut reports) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> =
        (0..WRITERS).map(|w| spawn_writer(w, commands.clone(), Arc::clone(&stop), tx.clone())).collect();
    drop(tx);

    let mut tally = Tally::default();
    tally.until(&mut reports, "30 commands are acknowledged", |t| t.acked.len() >= 30).await;
    assert!(tally.failures.is_empty(), "failures while every node was up: {:?}", tally.failures);

    let leader = eventually("the stream has a leader", Duration::from_secs(20), async || {
        Ok(cluster.stream_cluster(STREAM).await?.leader)
    })
    .await;
    let node_number = NatsCluster::node_named(&leader).unwrap_or_else(|| panic!("an unknown leader {leader:?}"));
    cluster.kill(node_number).await;
    let killed_at = Instant::now();

    // Writes resume: commands first sent after the kill are acknowledged.
    tally
        .until(&mut reports, "30 commands sent after the kill are acknowledged", |t| {
            t.acked.values().filter(|(_, first_sent, _)| *first_sent > killed_at).count() >= 30
        })
        .await;
    let resumed_after = killed_at.elapsed();
    let new_leader = eventually("a new leader is elected", Duration::from_secs(30), async || {
        Ok(cluster.stream_cluster(STREAM).await?.leader.filter(|l| *l != leader))
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        tokio::time::timeout(RECOVERY_PATIENCE + CALL_PATIENCE, writer)
            .await
            .expect("a writer finishes its command")
            .expect("a writer does not panic");
    }
    while let Some(report) = reports.recv().await {
        tally.record(report);
    }
    let retried = tally.acked.values().filter(|(_, _, attempts)| *attempts > 1).count();
    eprintln!(
        "leader {leader} killed; new leader {new_leader}; writes from after the kill acknowledged within \
         {resumed_after:?}; {} commands acknowledged, {retried} of them after retries; failed attempts: {:?}",
        tally.acked.len(),
        tally
            .failures
            .iter()
            .map(|(c, code, _, at)| (c, *code, at.saturating_duration_since(killed_at)))
            .collect::<Vec<_>>()
    );

    // Failing during the election is "try again", never a wrong verdict.
    let wrong: Vec<_> = tally.failures.iter().filter(|(_, code, _, _)| *code != Code::Unavailable).collect();
    assert!(wrong.is_empty(), "failures other than UNAVAILABLE: {wrong:#?}");

    // Every command, as a fresh query node over the two surviving nodes
    // projects the stream: its contacts exactly once, and nothing else.
    let max_seq = tally.acked.values().map(|(seq, _, _)| *seq).max().expect("acknowledged commands");
    let expected: Vec<String> =
        tally.acked.keys().flat_map(|&(writer, n)| (0..BATCH).map(move |k| cluster_email(writer, n, k))).collect();
    let queries = spawn_node("queries", &[&["queries"][..], &on_cluster].concat()).await;
    let mut listed: Vec<String> = members(&queries, "everyone", max_seq).await.into_iter().map(|c| c.email).collect();
    listed.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(listed.len(), want.len(), "the query node lists each contact once and no other");
    assert_eq!(listed, want, "the query node lists exactly the commands' contacts");

    // The log: one ContactCreated per contact, by its command.
    let events = contact_events(&node).await;
    let mut wrong = Vec::new();
    for &(writer, n) in tally.acked.keys() {
        for k in 0..BATCH {
            let email = cluster_email(writer, n, k);
            let want = vec![("ContactCreated".to_owned(), format!("w{writer}-{n}"))];
            if events.get(&email) != Some(&want) {
                wrong.push(format!("{email}: {:?}", events.get(&email)));
            }
        }
    }
    assert!(wrong.is_empty(), "contacts without exactly one ContactCreated by their command:\n{}", wrong.join("\n"));
    assert_eq!(events.len(), expected.len(), "contacts in the log that no command wrote");

    // The killed node comes back and catches up with the stream.
    cluster.restart(node_number).await;
    eventually("the restarted node is a current replica", Duration::from_secs(30), async || {
        let info = cluster.stream_cluster(STREAM).await?;
        let all_current = info.replicas.len() == 2 && info.replicas.iter().all(|p| p.current && !p.offline);
        Ok(all_current.then_some(()))
    })
    .await;
    drop((node, queries, cluster));
}

// ---------- 2. segmentd dies ----------

/// Kills per backend; the server starts one time more than it is killed.
const KILL_ROUNDS: usize = 3;
const KILL_WRITERS: usize = 4;
/// Contacts per command.
const KILL_BATCH: usize = 20;

/// The log a round-trip test runs on.
enum Backend {
    Embedded,
    Nats(NatsServer),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Nats(_) => "nats",
        }
    }

    /// Arguments naming the log, for `serve` and `rebuild`.
    fn log_args(&self, data_dir: &Path) -> Vec<String> {
        match self {
            Backend::Embedded => vec!["--log-data-dir".into(), data_dir.join("data").display().to_string()],
            Backend::Nats(server) => vec!["--nats-url".into(), server.url()],
        }
    }

    fn serve_args(&self) -> Vec<String> {
        match self {
            Backend::Embedded => vec!["serve".into()],
            Backend::Nats(server) => vec!["serve".into(), "--nats-url".into(), server.url()],
        }
    }
}

/// What every command a writer ever sent does: after the retries, each of
/// them is applied, so a contact's state is the last command naming it.
#[derive(Default)]
struct Expected {
    scores: BTreeMap<String, u32>,
}

/// One writer of one round. It stops at its first failure (the server is
/// gone); that command's outcome is unknown and it is retried after the
/// restart. Its contacts are its own, so its commands' order decides.
struct KillWriter {
    rng: fastrand::Rng,
    prefix: String,
    /// Contacts this writer created in earlier commands (of any round).
    own: Vec<String>,
    sent: Vec<pb::UpsertContactsRequest>,
    acked: usize,
}

impl KillWriter {
    fn next_command(&mut self) -> pb::UpsertContactsRequest {
        let n = self.sent.len();
        let command_id = format!("{}-{n}", self.prefix);
        // Two creates, then one update of earlier contacts, ...
        let contacts: Vec<(String, u32)> = if n % 3 == 2 && !self.own.is_empty() {
            let mut picked: Vec<String> =
                (0..KILL_BATCH).map(|_| self.own[self.rng.usize(..self.own.len())].clone()).collect();
            picked.sort();
            picked.dedup();
            picked.into_iter().map(|e| (e, self.rng.u32(0..1000))).collect()
        } else {
            let created: Vec<String> = (0..KILL_BATCH).map(|k| format!("{command_id}-{k}@example.com")).collect();
            self.own.extend(created.iter().cloned());
            created.into_iter().map(|e| (e, self.rng.u32(0..1000))).collect()
        };
        let request = upsert(&command_id, &contacts);
        self.sent.push(request.clone());
        request
    }
}

/// Runs `writer` against the server until a call fails; returns it with the
/// command that failed, if any.
async fn write_until_failure(
    mut writer: KillWriter,
    mut commands: CommandsClient<Channel>,
) -> (KillWriter, Option<pb::UpsertContactsRequest>) {
    loop {
        let request = writer.next_command();
        match tokio::time::timeout(CALL_PATIENCE, commands.upsert_contacts(request.clone())).await {
            Ok(Ok(_)) => writer.acked += 1,
            Ok(Err(_)) => return (writer, Some(request)),
            Err(_) => panic!("{}: no answer within {CALL_PATIENCE:?}", request.command_id),
        }
    }
}

/// What a read model answers about everything, for comparing two of them.
#[derive(Debug, PartialEq)]
struct Snapshot {
    segments: Vec<pb::Segment>,
    /// Per segment name: its count and its members, in order.
    members: BTreeMap<String, (u64, Vec<pb::Contact>)>,
}

async fn snapshot(node: &Node, min_sequence: u64) -> Snapshot {
    let mut queries = node.queries();
    let segments =
        call("ListSegments", queries.list_segments(pb::ListSegmentsRequest { min_sequence, ..Default::default() }))
            .await
            .unwrap_or_else(|e| panic!("{} lists segments: {e:?}", node.name))
            .segments;
    let mut by_segment = BTreeMap::new();
    for segment in &segments {
        let request = pb::CountMembersRequest { segment: by_name(&segment.name), min_sequence, ..Default::default() };
        let count = call("CountMembers", queries.count_members(request))
            .await
            .unwrap_or_else(|e| panic!("{} counts {}: {e:?}", node.name, segment.name))
            .count;
        by_segment.insert(segment.name.clone(), (count, members(node, &segment.name, min_sequence).await));
    }
    Snapshot { segments, members: by_segment }
}

/// `segmentd rebuild --until seq` into a fresh directory, served by
/// `serve-snapshot`: the read model a clean replay of the log gives.
async fn clean_rebuild(backend: &Backend, live_dir: &Path, until: u64) -> Snapshot {
    let dir = tempfile::Builder::new().prefix("segmentd-rebuilt-").tempdir().expect("a rebuild directory");
    let mut args = vec!["rebuild".to_owned(), "--until".into(), until.to_string(), "--data-dir".into()];
    args.push(dir.path().join("data").display().to_string());
    args.extend(backend.log_args(live_dir));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_segmentd"))
        .args(&args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("segmentd rebuild runs");
    assert!(
        out.status.success(),
        "segmentd {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let served = spawn_node_in("rebuilt", &["serve-snapshot"], dir.path()).await;
    let snap = snapshot(&served, 0).await;
    drop(served);
    snap
}

async fn sigkill_rounds(backend: Backend, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let name = backend.name();
    let dir = tempfile::Builder::new().prefix(&format!("segmentd-kill-{name}-")).tempdir().expect("a data directory");
    let serve_args = backend.serve_args();
    let serve_args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let mut writers: Vec<KillWriter> = (0..KILL_WRITERS)
        .map(|w| KillWriter { rng: rng.fork(), prefix: format!("w{w}"), own: Vec::new(), sent: Vec::new(), acked: 0 })
        .collect();
    let mut pending: Vec<pb::UpsertContactsRequest> = Vec::new();
    for round in 0..=KILL_ROUNDS {
        let mut node = spawn_node_in(&format!("{name}-round-{round}"), &serve_args, dir.path()).await;
        let mut commands = node.commands();

        // The commands the kill cut off, retried with their ids: whatever
        // of them landed before the kill is not recorded again.
        for request in pending.drain(..) {
            let what = format!("{name} round {round}: retrying {}", request.command_id);
            call(&what, commands.upsert_contacts(request)).await.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        }
        if round == 0 {
            create_segment(&mut commands, "everyone", "email is_not_empty").await;
        }
        let seq = create_segment(&mut commands, &format!("over-{round}"), &format!("score >= {}", 250 * round)).await;

        // Every command ever sent is applied exactly as sent, in each
        // writer's order.
        let mut expected = Expected::default();
        for writer in &writers {
            for request in &writer.sent {
                for c in &request.contacts {
                    expected.scores.insert(c.email.clone(), c.fields["score"].parse().unwrap());
                }
            }
        }
        let recovered = snapshot(&node, seq).await;
        let got: BTreeMap<String, u32> = recovered.members["everyone"]
            .1
            .iter()
            .map(|c| (c.email.clone(), c.fields.get("score").map_or(0, |s| s.parse().unwrap())))
            .collect();
        assert_eq!(recovered.members["everyone"].1.len(), got.len(), "{name} round {round}: a contact is listed twice");
        assert_eq!(got, expected.scores, "{name} round {round} (seed {seed}): the read model after the restart");

        if round == KILL_ROUNDS {
            node.kill().await;
            assert_eq!(clean_rebuild(&backend, dir.path(), seq).await, recovered, "{name}: after the last restart");
            break;
        }

        // Load, and a SIGKILL at a random moment of it.
        let tasks: Vec<_> = writers.drain(..).map(|w| tokio::spawn(write_until_failure(w, commands.clone()))).collect();
        let moment = Duration::from_millis(rng.u64(50..1500));
        tokio::time::sleep(moment).await;
        node.kill().await;
        for task in tasks {
            let (writer, cut_off) = task.await.expect("a writer does not panic");
            pending.extend(cut_off);
            writers.push(writer);
        }
        eprintln!(
            "{name} round {round}: killed after {moment:?}; acknowledged so far per writer {:?}; cut off {:?}",
            writers.iter().map(|w| w.acked).collect::<Vec<_>>(),
            pending.iter().map(|r| &r.command_id).collect::<Vec<_>>()
        );

        // The read model as recovered (read before the load) equals a clean
        // replay of the log up to the same sequence.
        assert_eq!(
            clean_rebuild(&backend, dir.path(), seq).await,
            recovered,
            "{name} round {round} (seed {seed}): the recovered read model differs from a clean rebuild"
        );
    }
}

fn seed() -> u64 {
    let seed = std::env::var("FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("FAULT_SEED={seed}");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_segmentd_at_random_moments_embedded_log() {
    let seed = seed();
    sigkill_rounds(Backend::Embedded, seed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_segmentd_at_random_moments_nats() {
    let seed = seed();
    sigkill_rounds(Backend::Nats(NatsServer::start().await), seed).await;
}
