//! `segments.v1.Replay` end to end, on the embedded log and on NATS: the
//! replay filters (type, aggregate, sequence range, time range), the end
//! fixed at the request, organisation isolation, the JSON rendering of each
//! streamed event, and the histories of a segment (criteria from/to, actor)
//! and of a contact.
//!
//! Every scenario is one function taking the backend; the macro at the end
//! turns each into one test per backend. Each NATS test starts its own
//! nats-server, so tests never share a stream.

use segmentd_log_nats::testkit::NatsServer;
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::replay_client::ReplayClient;
use segmentd_server::auth::{API_KEY_HEADER, ApiKeys};
use segmentd_server::{LogBackend, ServeConfig};
use segmentd_tests::{TestServer, by_name, contact, start_config, text};
use serde_json::Value;
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::{Code, Status};

const ACME_1: &str = "acme-key-one-0123456789";
const ACME_2: &str = "acme-key-two-0123456789";
const GLOBEX: &str = "globex-key-0123456789";
/// What `ApiKeys::parse` names the keys above, in order: the events' actors.
const ACME_1_ACTOR: &str = "acme/key-1";
const ACME_2_ACTOR: &str = "acme/key-2";

#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Nats,
}

struct Harness {
    server: TestServer,
    replay: ReplayClient<Channel>,
    // Dropped after the server: the log must outlive what uses it.
    _nats: Option<NatsServer>,
    _dir: TempDir,
}

async fn start(backend: Backend) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let nats = match backend {
        Backend::Embedded => None,
        Backend::Nats => Some(NatsServer::start().await),
    };
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.api_keys =
        ApiKeys::parse(&[format!("acme:{ACME_1}"), format!("acme:{ACME_2}"), format!("globex:{GLOBEX}")]).unwrap();
    if let Some(nats) = &nats {
        config.backend = LogBackend::Nats(Box::new(nats.log_config()));
    }
    let server = start_config(config).await;
    Harness { replay: ReplayClient::new(server.channel.clone()), server, _nats: nats, _dir: dir }
}

impl Harness {
    async fn stop(self) {
        self.server.served.stop().await.unwrap();
    }

    async fn upsert(&mut self, key: &str, contacts: Vec<pb::ContactInput>) -> u64 {
        let req = pb::UpsertContactsRequest { command_id: String::new(), contacts };
        self.server.commands.upsert_contacts(with_key(key, req)).await.unwrap().into_inner().sequence
    }

    async fn delete_contact(&mut self, key: &str, email: &str) -> u64 {
        let req = pb::DeleteContactsRequest { command_id: String::new(), emails: vec![email.into()] };
        self.server.commands.delete_contacts(with_key(key, req)).await.unwrap().into_inner().sequence
    }

    async fn create_segment(&mut self, key: &str, name: &str, criteria: &str) -> pb::SegmentReply {
        let req = pb::CreateSegmentRequest { command_id: String::new(), name: name.into(), criteria: text(criteria) };
        self.server.commands.create_segment(with_key(key, req)).await.unwrap().into_inner()
    }

    async fn update_segment(&mut self, key: &str, segment: &str, name: Option<&str>, criteria: Option<&str>) -> u64 {
        let req = pb::UpdateSegmentRequest {
            command_id: String::new(),
            segment: by_name(segment),
            expected_version: 0,
            name: name.map(str::to_owned),
            criteria: criteria.and_then(text),
        };
        self.server.commands.update_segment(with_key(key, req)).await.unwrap().into_inner().sequence
    }

    async fn delete_segment(&mut self, key: &str, segment: &str) -> u64 {
        let req =
            pb::DeleteSegmentRequest { command_id: String::new(), segment: by_name(segment), expected_version: 0 };
        self.server.commands.delete_segment(with_key(key, req)).await.unwrap().into_inner().sequence
    }

    /// The whole replay stream, or the status it was refused with.
    async fn replay(&mut self, key: &str, req: pb::ReplayEventsRequest) -> Result<Vec<pb::RecordedEvent>, Status> {
        let mut stream = self.replay.replay_events(with_key(key, req)).await?.into_inner();
        let mut events = Vec::new();
        while let Some(event) = stream.message().await? {
            events.push(event);
        }
        Ok(events)
    }

    async fn all(&mut self, key: &str) -> Vec<pb::RecordedEvent> {
        self.replay(key, pb::ReplayEventsRequest::default()).await.unwrap()
    }

    async fn segment_history(&mut self, key: &str, by: pb::segment_ref::By) -> Result<pb::HistoryReply, Status> {
        let req = pb::SegmentHistoryRequest { segment: Some(pb::SegmentRef { by: Some(by) }) };
        self.replay.segment_history(with_key(key, req)).await.map(tonic::Response::into_inner)
    }

    async fn contact_history(&mut self, key: &str, email: &str) -> Result<pb::HistoryReply, Status> {
        let req = pb::ContactHistoryRequest { email: email.into() };
        self.replay.contact_history(with_key(key, req)).await.map(tonic::Response::into_inner)
    }
}

fn with_key<T>(key: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(API_KEY_HEADER, key.parse().unwrap());
    r
}

fn types(events: &[pb::RecordedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.r#type.as_str()).collect()
}

fn seqs(events: &[pb::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.sequence).collect()
}

fn data(e: &pb::RecordedEvent) -> Value {
    serde_json::from_str(&e.data_json).unwrap()
}

/// RFC 3339 UTC as the server prints it (milliseconds only when non-zero),
/// made fixed-width so that instants compare as strings.
fn sortable(time: &str) -> String {
    let t = time.strip_suffix('Z').expect("times are UTC");
    if t.contains('.') { format!("{t}Z") } else { format!("{t}.000Z") }
}

fn assert_invalid(result: Result<Vec<pb::RecordedEvent>, Status>, field: &str) {
    let status = result.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with(field), "expected a message naming {field}: {}", status.message());
}

/// The acme history the filter scenario works on, interleaved with globex
/// writes that no acme replay may show.
async fn acme_and_globex_history(h: &mut Harness) {
    h.upsert(ACME_1, vec![contact("a@x.com", &[("country", "DE"), ("score", "10")])]).await;
    h.upsert(ACME_1, vec![contact("b@x.com", &[("country", "FR")])]).await;
    h.create_segment(ACME_1, "de", r#"country = "DE""#).await;
    h.upsert(GLOBEX, vec![contact("g@globex.com", &[("country", "DE")])]).await;
    h.create_segment(GLOBEX, "de", r#"country = "DE""#).await;
    h.upsert(ACME_2, vec![contact("a@x.com", &[("score", "20")])]).await;
    h.update_segment(ACME_1, "de", None, Some(r#"country in ("DE", "AT")"#)).await;
    h.delete_contact(ACME_1, "b@x.com").await;
}

async fn replay_filters(backend: Backend) {
    let mut h = start(backend).await;
    acme_and_globex_history(&mut h).await;

    let all = h.all(ACME_1).await;
    assert_eq!(
        types(&all),
        ["ContactCreated", "ContactCreated", "SegmentCreated", "ContactUpdated", "SegmentUpdated", "ContactDeleted"]
    );
    assert!(all.windows(2).all(|w| w[0].sequence < w[1].sequence), "log order: {:?}", seqs(&all));
    assert!(all.iter().all(|e| e.org == "acme"));

    let typed = h
        .replay(
            ACME_1,
            pb::ReplayEventsRequest {
                event_types: vec!["SegmentCreated".into(), "SegmentUpdated".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(types(&typed), ["SegmentCreated", "SegmentUpdated"]);

    let one_contact = h
        .replay(
            ACME_1,
            pb::ReplayEventsRequest {
                aggregate_type: "contact".into(),
                aggregate_id: "A@X.com".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(types(&one_contact), ["ContactCreated", "ContactUpdated"]);
    assert!(one_contact.iter().all(|e| e.aggregate_type == "contact" && e.aggregate_id == "a@x.com"));

    let segments = h
        .replay(ACME_1, pb::ReplayEventsRequest { aggregate_type: "segments".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(types(&segments), ["SegmentCreated", "SegmentUpdated"]);
    assert!(segments.iter().all(|e| e.aggregate_id == "catalog"));
    let catalog = h
        .replay(
            ACME_1,
            pb::ReplayEventsRequest {
                aggregate_type: "segments".into(),
                aggregate_id: "catalog".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(seqs(&catalog), seqs(&segments), "the named aggregate is read directly, with the same answer");
    let contacts = h
        .replay(ACME_1, pb::ReplayEventsRequest { aggregate_type: "contact".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(contacts.len(), 4);

    // Sequence ranges are inclusive at both ends.
    let range = h
        .replay(
            ACME_1,
            pb::ReplayEventsRequest {
                from_sequence: all[1].sequence,
                to_sequence: all[3].sequence,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(seqs(&range), seqs(&all[1..=3]));
    let head =
        h.replay(ACME_1, pb::ReplayEventsRequest { to_sequence: all[2].sequence, ..Default::default() }).await.unwrap();
    assert_eq!(seqs(&head), seqs(&all[..=2]));
    let past_the_end = h
        .replay(ACME_1, pb::ReplayEventsRequest { from_sequence: h.server.last_seq().await + 1, ..Default::default() })
        .await
        .unwrap();
    assert!(past_the_end.is_empty());

    // Time ranges: from inclusive, to exclusive, so a split instant puts
    // every event on exactly one side.
    let mid = all[3].time.clone();
    let before =
        h.replay(ACME_1, pb::ReplayEventsRequest { to_time: mid.clone(), ..Default::default() }).await.unwrap();
    let after =
        h.replay(ACME_1, pb::ReplayEventsRequest { from_time: mid.clone(), ..Default::default() }).await.unwrap();
    assert!(before.iter().all(|e| sortable(&e.time) < sortable(&mid)));
    assert!(after.iter().all(|e| sortable(&e.time) >= sortable(&mid)));
    assert!(after.iter().any(|e| e.sequence == all[3].sequence), "from_time is inclusive");
    let mut split: Vec<u64> = seqs(&before).into_iter().chain(seqs(&after)).collect();
    split.sort_unstable();
    assert_eq!(split, seqs(&all));
    let window = h
        .replay(
            ACME_1,
            pb::ReplayEventsRequest {
                from_time: all[0].time.clone(),
                to_time: "2999-01-01T00:00:00Z".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(seqs(&window), seqs(&all));
    let future = h
        .replay(ACME_1, pb::ReplayEventsRequest { from_time: "2999-01-01T00:00:00Z".into(), ..Default::default() })
        .await
        .unwrap();
    assert!(future.is_empty());

    // Filters combine.
    let combined = h
        .replay(
            ACME_1,
            pb::ReplayEventsRequest {
                aggregate_type: "contact".into(),
                event_types: vec!["ContactCreated".into()],
                from_sequence: all[1].sequence,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(seqs(&combined), [all[1].sequence]);

    assert_invalid(
        h.replay(ACME_1, pb::ReplayEventsRequest { event_types: vec!["Nope".into()], ..Default::default() }).await,
        "event_types[0]",
    );
    assert_invalid(
        h.replay(ACME_1, pb::ReplayEventsRequest { aggregate_type: "segment".into(), ..Default::default() }).await,
        "aggregate_type",
    );
    assert_invalid(
        h.replay(ACME_1, pb::ReplayEventsRequest { aggregate_id: "a@x.com".into(), ..Default::default() }).await,
        "aggregate_id",
    );
    assert_invalid(
        h.replay(ACME_1, pb::ReplayEventsRequest { from_time: "last tuesday".into(), ..Default::default() }).await,
        "from_time",
    );
    assert_invalid(
        h.replay(ACME_1, pb::ReplayEventsRequest { from_sequence: 5, to_sequence: 2, ..Default::default() }).await,
        "from_sequence",
    );
    h.stop().await;
}

async fn a_replay_ends_where_the_log_ended_when_it_was_asked(backend: Backend) {
    let mut h = start(backend).await;
    acme_and_globex_history(&mut h).await;
    let end = h.server.last_seq().await;
    let response = h.replay.replay_events(with_key(ACME_1, pb::ReplayEventsRequest::default())).await.unwrap();
    let header = response.metadata().get("x-end-sequence").expect("the end is announced").to_str().unwrap();
    assert_eq!(header.parse::<u64>().unwrap(), end);
    let mut stream = response.into_inner();
    // Appended after the request arrived: not part of this replay.
    let later = h.upsert(ACME_1, vec![contact("late@x.com", &[("country", "DE")])]).await;
    assert!(later > end);
    let mut events = Vec::new();
    while let Some(event) = stream.message().await.unwrap() {
        events.push(event);
    }
    assert_eq!(events.len(), 6);
    assert!(events.iter().all(|e| e.sequence <= end));
    assert_eq!(h.all(ACME_1).await.len(), 7, "a new replay sees it");
    h.stop().await;
}

async fn no_replay_or_history_shows_another_organisation(backend: Backend) {
    let mut h = start(backend).await;
    h.upsert(ACME_1, vec![contact("a@acme.com", &[("country", "DE")])]).await;
    let acme_segment = h.create_segment(ACME_1, "shared-name", r#"country = "DE""#).await.segment.unwrap();
    h.upsert(GLOBEX, vec![contact("g@globex.com", &[("country", "FR")])]).await;
    let globex_segment = h.create_segment(GLOBEX, "shared-name", r#"country = "FR""#).await.segment.unwrap();

    let globex = h.all(GLOBEX).await;
    assert_eq!(types(&globex), ["ContactCreated", "SegmentCreated"]);
    assert!(globex.iter().all(|e| e.org == "globex" && !e.json.contains("acme")), "{globex:?}");
    let acme = h.all(ACME_2).await;
    assert_eq!(types(&acme), ["ContactCreated", "SegmentCreated"]);
    assert!(acme.iter().all(|e| e.org == "acme" && !e.json.contains("globex")), "{acme:?}");

    let foreign_contact = h
        .replay(
            GLOBEX,
            pb::ReplayEventsRequest {
                aggregate_type: "contact".into(),
                aggregate_id: "a@acme.com".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(foreign_contact.is_empty());
    assert_eq!(h.contact_history(GLOBEX, "a@acme.com").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(h.contact_history(ACME_1, "a@acme.com").await.unwrap().events.len(), 1);

    let named = h.segment_history(GLOBEX, pb::segment_ref::By::Name("shared-name".into())).await.unwrap();
    assert_eq!(named.events.len(), 1);
    assert_eq!(data(&named.events[0])["criteria"], r#"country = "FR""#);
    assert!(named.events.iter().all(|e| e.org == "globex"));
    let by_id = h.segment_history(GLOBEX, pb::segment_ref::By::Id(acme_segment.id)).await;
    if acme_segment.id == globex_segment.id {
        // Ids are per organisation: the same number is globex's own segment.
        assert!(by_id.unwrap().events.iter().all(|e| e.org == "globex"));
    } else {
        assert_eq!(by_id.unwrap_err().code(), Code::NotFound);
    }

    let anonymous = h.replay.replay_events(pb::ReplayEventsRequest::default()).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let anonymous = h.replay.contact_history(pb::ContactHistoryRequest { email: "a@acme.com".into() }).await;
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);
    let anonymous = h.replay.segment_history(pb::SegmentHistoryRequest { segment: by_name("shared-name") }).await;
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);
    h.stop().await;
}

async fn every_streamed_event_carries_its_json_rendering(backend: Backend) {
    let mut h = start(backend).await;
    h.upsert(
        ACME_1,
        vec![contact("ann@x.com", &[("city", "München"), ("score", "10"), ("custom.note", "say \"hi\"")])],
    )
    .await;
    h.upsert(ACME_2, vec![contact("ann@x.com", &[("score", "15")])]).await;
    h.create_segment(ACME_1, "munich", r#"city = "münchen""#).await;
    h.update_segment(ACME_2, "munich", Some("bavaria"), Some(r#"state = "Bayern""#)).await;
    h.delete_segment(ACME_1, "bavaria").await;
    h.delete_contact(ACME_1, "ann@x.com").await;

    let events = h.all(ACME_1).await;
    let mut seen: Vec<&str> = types(&events);
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 6, "every event type occurs: {seen:?}");
    for e in &events {
        assert!(!e.json.contains('\n'), "one line: {}", e.json);
        let v: Value = serde_json::from_str(&e.json).unwrap_or_else(|err| panic!("{err}: {}", e.json));
        assert_eq!(v["sequence"], e.sequence);
        assert_eq!(v["event_id"], e.event_id.as_str());
        assert_eq!(e.event_id.len(), 32);
        assert!(e.event_id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(v["type"], e.r#type.as_str());
        assert_eq!(v["org"], "acme");
        assert_eq!(v["aggregate_type"], e.aggregate_type.as_str());
        assert_eq!(v["aggregate_id"], e.aggregate_id.as_str());
        assert_eq!(v["actor"], e.actor.as_str());
        assert_eq!(v["command_id"], e.command_id.as_str());
        assert!(!e.command_id.is_empty());
        assert_eq!(v["time"], e.time.as_str());
        assert_eq!(v["data"], data(e), "data_json is the `data` object");
    }
    let created = &events[0];
    assert_eq!(data(created)["email"], "ann@x.com");
    assert_eq!(data(created)["fields"]["city"], "München");
    assert_eq!(data(created)["fields"]["score"], "10", "values are text, like the API's Contact.fields");
    assert_eq!(data(created)["fields"]["custom.note"], "say \"hi\"");
    let updated = &events[1];
    assert_eq!(data(updated)["changed"][0], "score");
    assert_eq!(updated.actor, ACME_2_ACTOR);
    let renamed = events.iter().find(|e| e.r#type == "SegmentUpdated").unwrap();
    assert_eq!(data(renamed)["name"]["from"], "munich");
    assert_eq!(data(renamed)["name"]["to"], "bavaria");
    assert_eq!(data(renamed)["criteria"]["to"], r#"state = "Bayern""#);
    h.stop().await;
}

async fn histories_show_who_changed_what_from_what_to_what(backend: Backend) {
    let mut h = start(backend).await;
    let germany = h.create_segment(ACME_1, "germany", r#"country = "DE""#).await.segment.unwrap();
    h.create_segment(ACME_1, "france", r#"country = "FR""#).await;
    h.update_segment(ACME_2, "germany", None, Some(r#"country in ("DE", "AT")"#)).await;
    h.update_segment(ACME_1, "germany", Some("dach"), None).await;
    let last = h.delete_segment(ACME_2, "dach").await;

    // By id, by the name it had last (it is deleted), and by its first name.
    for by in [
        pb::segment_ref::By::Id(germany.id),
        pb::segment_ref::By::Name("dach".into()),
        pb::segment_ref::By::Name("Germany".into()),
    ] {
        let history = h.segment_history(ACME_1, by.clone()).await.unwrap_or_else(|e| panic!("{by:?}: {e}"));
        let events = &history.events;
        assert_eq!(
            types(events),
            ["SegmentCreated", "SegmentUpdated", "SegmentUpdated", "SegmentDeleted"],
            "{by:?}: the france segment is not part of it"
        );
        assert!(events.iter().all(|e| data(e)["segment_id"] == germany.id));
        assert!(history.sequence >= last);
        let criteria_change = &events[1];
        assert_eq!(criteria_change.actor, ACME_2_ACTOR, "who");
        assert!(!criteria_change.time.is_empty(), "when");
        assert_eq!(data(criteria_change)["criteria"]["from"], r#"country = "DE""#, "from what");
        assert_eq!(data(criteria_change)["criteria"]["to"], r#"country in ("DE", "AT")"#, "to what");
        assert_eq!(data(criteria_change)["name"], Value::Null);
        assert_eq!(data(criteria_change)["version"], 2);
        assert_eq!(events[2].actor, ACME_1_ACTOR);
        assert_eq!(data(&events[2])["name"]["from"], "germany");
        assert_eq!(data(&events[2])["name"]["to"], "dach");
        assert_eq!(data(&events[3])["name"], "dach");
    }
    let missing = h.segment_history(ACME_1, pb::segment_ref::By::Name("spain".into())).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let missing = h.segment_history(ACME_1, pb::segment_ref::By::Id(9999)).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let bad = h.replay.segment_history(with_key(ACME_1, pb::SegmentHistoryRequest { segment: None })).await;
    let bad = bad.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("segment"), "{}", bad.message());

    h.upsert(ACME_1, vec![contact("ann@x.com", &[("score", "10"), ("country", "DE")])]).await;
    h.upsert(ACME_1, vec![contact("bob@x.com", &[("score", "99")])]).await;
    h.upsert(ACME_2, vec![contact("ann@x.com", &[("score", "250")])]).await;
    h.upsert(ACME_2, vec![contact("ann@x.com", &[("country", "")])]).await;
    h.delete_contact(ACME_1, "ann@x.com").await;
    let history = h.contact_history(ACME_1, "Ann@X.com").await.unwrap();
    let events = &history.events;
    assert_eq!(types(events), ["ContactCreated", "ContactUpdated", "ContactUpdated", "ContactDeleted"]);
    assert!(events.iter().all(|e| e.aggregate_id == "ann@x.com"), "bob's events are not part of it");
    assert!(events.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert_eq!(data(&events[0])["fields"]["score"], "10");
    let score_change = &events[1];
    assert_eq!(score_change.actor, ACME_2_ACTOR);
    assert!(data(score_change)["changed"].as_array().unwrap().contains(&Value::from("score")));
    assert_eq!(data(score_change)["fields"]["score"], "250");
    let cleared = &events[2];
    assert!(data(cleared)["changed"].as_array().unwrap().contains(&Value::from("country")));
    assert_eq!(data(cleared)["fields"].get("country"), None, "a cleared field is absent");
    assert_eq!(events[3].actor, ACME_1_ACTOR);

    assert_eq!(h.contact_history(ACME_1, "nobody@x.com").await.unwrap_err().code(), Code::NotFound);
    let bad = h.contact_history(ACME_1, "not-an-email").await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("email"), "{}", bad.message());
    h.stop().await;
}

/// One `#[tokio::test]` per scenario and backend: `embedded::<scenario>`
/// and `nats::<scenario>`.
macro_rules! on_both_logs {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Backend::Embedded).await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Backend::Nats).await;
                }
            )*
        }
    };
}

on_both_logs!(
    replay_filters,
    a_replay_ends_where_the_log_ended_when_it_was_asked,
    no_replay_or_history_shows_another_organisation,
    every_streamed_event_carries_its_json_rendering,
    histories_show_who_changed_what_from_what_to_what,
);
