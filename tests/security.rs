//! Security end to end: API keys from the hashed key file (and their live
//! revocation), roles enforced on every RPC of the proto (walked from the
//! descriptor set, so an RPC added later is covered without editing this
//! file), and organisation isolation on every query and replay RPC.

use segmentd_proto::v1 as pb;
use segmentd_proto::v1::replay_client::ReplayClient;
use segmentd_server::auth::{ApiKeys, KeyFile, Role, key_file, roles};
use segmentd_tests::{TestServer, by_name, call_empty, contact, proto_methods, start_with, text, with_key};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::Code;

/// A server whose keys are in a key file in `dir`, one key per role for org
/// `acme` and an admin key for `globex`; returns the secrets by role.
async fn start_with_key_file(dir: &Path) -> (TestServer, Vec<(Role, String)>, String) {
    let file = dir.join(key_file::DEFAULT_FILE_NAME);
    let secrets: Vec<(Role, String)> = Role::ALL
        .into_iter()
        .map(|role| (role, KeyFile::create_key(&file, "acme", role.as_str(), role).unwrap().secret))
        .collect();
    let globex = KeyFile::create_key(&file, "globex", "boss", Role::Admin).unwrap().secret;
    let server = start_with(dir, ApiKeys::default().with_file(&file).unwrap()).await;
    (server, secrets, globex)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_admits_exactly_the_roles_its_table_entry_names() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, secrets, _) = start_with_key_file(dir.path()).await;
    // Something to read, so allowed reads do real work.
    let admin = &secrets[0].1;
    s.commands
        .upsert_contacts(with_key(
            admin,
            pb::UpsertContactsRequest { command_id: String::new(), contacts: vec![contact("a@acme.com", &[])] },
        ))
        .await
        .unwrap();

    let methods = proto_methods();
    assert!(methods.iter().any(|m| m.ends_with("/CreateSegment")), "{methods:?}");
    for path in &methods {
        for (role, secret) in &secrets {
            let before = s.last_seq().await;
            let answer = call_empty(&s.channel, path, Some(secret)).await;
            if roles::may_call(*role, path) {
                if let Err(status) = &answer {
                    assert!(
                        !matches!(status.code(), Code::PermissionDenied | Code::Unauthenticated),
                        "{role} should be let into {path}: {status:?}"
                    );
                }
            } else {
                let status = answer.expect_err(path);
                assert_eq!(status.code(), Code::PermissionDenied, "{role} on {path}: {status:?}");
                assert!(
                    status.message().contains(role.as_str()) && status.message().contains(path.as_str()),
                    "the refusal names the role and the RPC: {}",
                    status.message()
                );
                assert_eq!(s.last_seq().await, before, "a refused {path} appended");
            }
        }
        // No key, or a key nobody issued: not let in at all.
        let status = call_empty(&s.channel, path, None).await.expect_err(path);
        assert_eq!(status.code(), Code::Unauthenticated, "{path}: {status:?}");
        let status = call_empty(&s.channel, path, Some("sgd_0123456789abcdef_00")).await.expect_err(path);
        assert_eq!(status.code(), Code::Unauthenticated, "{path}: {status:?}");
    }

    // A real write, by each role: only admin and service get through.
    for (role, secret) in &secrets {
        let before = s.last_seq().await;
        let reply = s
            .commands
            .create_segment(with_key(
                secret,
                pb::CreateSegmentRequest {
                    command_id: String::new(),
                    name: format!("by-{role}"),
                    criteria: text(r#"country = "DE""#),
                },
            ))
            .await;
        match role {
            Role::Admin | Role::Service => assert!(reply.is_ok(), "{role}: {reply:?}"),
            Role::Analyst | Role::Auditor => {
                assert_eq!(reply.unwrap_err().code(), Code::PermissionDenied, "{role}");
                assert_eq!(s.last_seq().await, before);
            }
        }
    }

    // Health and reflection are not segmentd's API: no key needed.
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel.clone());
    health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_working_on_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, secrets, _) = start_with_key_file(dir.path()).await;
    let file = dir.path().join(key_file::DEFAULT_FILE_NAME);
    let service = &secrets[1].1;
    let list = |key: &str| with_key(key, pb::ListSegmentsRequest { min_sequence: 0, ..Default::default() });
    s.queries.list_segments(list(service)).await.unwrap();

    KeyFile::revoke(&file, "acme/service").unwrap();
    let deadline = Instant::now() + segmentd_server::serve::KEY_FILE_POLL * 10;
    loop {
        match s.queries.list_segments(list(service)).await {
            Err(status) if status.code() == Code::Unauthenticated => break,
            Ok(_) => assert!(Instant::now() < deadline, "the revoked key still works after {:?}", deadline),
            Err(other) => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Other keys are untouched, and a key created now works without a restart.
    s.queries.list_segments(list(&secrets[0].1)).await.unwrap();
    let fresh = KeyFile::create_key(&file, "acme", "fresh", Role::Analyst).unwrap().secret;
    let deadline = Instant::now() + segmentd_server::serve::KEY_FILE_POLL * 10;
    while let Err(status) = s.queries.list_segments(list(&fresh)).await {
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(Instant::now() < deadline, "the new key is still unknown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What one organisation wrote, for checking that the other never sees it.
struct OrgData {
    org: &'static str,
    key: String,
    email: &'static str,
    city: &'static str,
    score: &'static str,
    /// A segment only this org has.
    own_segment: &'static str,
    own_segment_id: u64,
}

async fn write_org(
    s: &mut TestServer,
    org: &'static str,
    key: &str,
    email: &'static str,
    city: &'static str,
    score: &'static str,
    own: &'static str,
) -> (OrgData, u64) {
    let c = &mut s.commands;
    let contacts = vec![
        contact(email, &[("country", "DE"), ("city", city), ("score", score)]),
        contact("shared@example.com", &[("country", "DE"), ("city", city), ("score", score)]),
    ];
    let mut seq = c
        .upsert_contacts(with_key(key, pb::UpsertContactsRequest { command_id: String::new(), contacts }))
        .await
        .unwrap()
        .into_inner()
        .sequence;
    for (name, criteria) in [("de", r#"country = "DE""#), ("ops", r#"country = "DE""#), (own, r#"city = "x""#)] {
        let r = c
            .create_segment(with_key(
                key,
                pb::CreateSegmentRequest { command_id: String::new(), name: name.into(), criteria: text(criteria) },
            ))
            .await
            .unwrap()
            .into_inner();
        seq = seq.max(r.sequence);
    }
    // Topics, a static list, a campaign (all on segment "ops"), with the
    // same names in both orgs where that makes a leak visible.
    let c = &mut s.commands;
    for topic in ["news".to_owned(), format!("{own}-topic")] {
        let t = pb::CreateTopicRequest { command_id: String::new(), name: topic.clone() };
        c.create_topic(with_key(key, t)).await.unwrap();
        let topics = vec![pb::TopicRef { by: Some(pb::topic_ref::By::Name(topic)) }];
        let a = pb::AssignTopicsRequest { command_id: String::new(), segment: by_name("ops"), topics };
        seq = seq.max(c.assign_topics(with_key(key, a)).await.unwrap().into_inner().sequence);
    }
    let save = pb::SaveSegmentAsListRequest {
        command_id: String::new(),
        segment: by_name("ops"),
        list_name: "snapshot".into(),
        min_sequence: seq,
    };
    seq = seq.max(c.save_segment_as_list(with_key(key, save)).await.unwrap().into_inner().sequence);
    let campaign = pb::CreateCampaignRequest {
        command_id: String::new(),
        name: "launch".into(),
        subject: format!("news from {org}"),
        sender: format!("news@{org}.example"),
        segment: by_name("ops"),
    };
    seq = seq.max(c.create_campaign(with_key(key, campaign)).await.unwrap().into_inner().sequence);
    let own_segment_id = s
        .queries
        .get_segment(with_key(
            key,
            pb::GetSegmentRequest { segment: by_name(own), min_sequence: seq, ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    // Both orgs run a job with the same id: ids are per organisation.
    reset_scores(s, key, SHARED_JOB_ID, &format!("yearly clean-up at {org}")).await;
    (OrgData { org, key: key.to_owned(), email, city, score, own_segment: own, own_segment_id }, seq)
}

const SHARED_JOB_ID: &str = "yearly-reset";

/// Resets the scores of segment "de" and waits for the job to end.
async fn reset_scores(s: &mut TestServer, key: &str, job_id: &str, reason: &str) {
    let req = pb::ResetScoresRequest {
        command_id: job_id.into(),
        segment: by_name("de"),
        reason: reason.into(),
        agree: true,
        ..Default::default()
    };
    let started = s.commands.reset_scores(with_key(key, req)).await.unwrap().into_inner();
    let watch = pb::WatchJobsRequest { job_id: job_id.into(), min_sequence: started.sequence };
    let mut updates = s.queries.watch_jobs(with_key(key, watch)).await.unwrap().into_inner();
    let mut last = None;
    // With a job id the stream ends when the job does.
    while let Some(job) = tokio::time::timeout(Duration::from_secs(30), updates.message()).await.unwrap().unwrap() {
        last = Some(job);
    }
    assert_eq!(last.map(|j| j.state()), Some(pb::JobState::Completed));
}

/// Time travel to the state after `seq`: past states are rebuilt from the
/// whole log, so they must be filtered by org just like the live one.
fn as_of_now(seq: u64) -> Option<pb::AsOf> {
    Some(pb::AsOf { point: Some(pb::as_of::Point::Sequence(seq)) })
}

/// Checks, for one query or replay RPC, that `me` sees its own data and
/// nothing of `other`. Every such RPC of the proto must have an arm here.
async fn check_isolation(s: &mut TestServer, path: &str, me: &OrgData, other: &OrgData, seq: u64) {
    let mut q = s.queries.clone();
    let mut replay = ReplayClient::new(s.channel.clone());
    let key = me.key.as_str();
    let method = path.rsplit('/').next().unwrap();
    match method {
        "GetContact" => {
            let shared = q
                .get_contact(with_key(
                    key,
                    pb::GetContactRequest { email: "shared@example.com".into(), min_sequence: seq },
                ))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(shared.fields.get("city").map(String::as_str), Some(me.city), "{path}");
            let e = q
                .get_contact(with_key(key, pb::GetContactRequest { email: other.email.into(), min_sequence: seq }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{path}");
        }
        "GetSegment" => {
            for as_of in [None, as_of_now(seq)] {
                let e = q
                    .get_segment(with_key(
                        key,
                        pb::GetSegmentRequest {
                            segment: by_name(other.own_segment),
                            min_sequence: seq,
                            as_of: as_of.clone(),
                        },
                    ))
                    .await
                    .unwrap_err();
                assert_eq!(e.code(), Code::NotFound, "{path} as of {as_of:?}");
                if other.own_segment_id != me.own_segment_id {
                    let by_id = Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Id(other.own_segment_id)) });
                    let req = pb::GetSegmentRequest { segment: by_id, min_sequence: seq, as_of: as_of.clone() };
                    if let Ok(seg) = q.get_segment(with_key(key, req)).await {
                        assert_ne!(seg.into_inner().name, other.own_segment, "{path}: the other org's segment by id");
                    }
                }
            }
        }
        "ListSegments" => {
            let names: BTreeSet<String> = q
                .list_segments(with_key(key, pb::ListSegmentsRequest { min_sequence: seq, ..Default::default() }))
                .await
                .unwrap()
                .into_inner()
                .segments
                .into_iter()
                .map(|s| s.name)
                .collect();
            assert_eq!(names, BTreeSet::from(["de".to_owned(), "ops".to_owned(), me.own_segment.to_owned()]), "{path}");
        }
        "CountMembers" => {
            for as_of in [None, as_of_now(seq)] {
                let count = q
                    .count_members(with_key(
                        key,
                        pb::CountMembersRequest {
                            segment: by_name("de"),
                            min_sequence: seq,
                            as_of: as_of.clone(),
                            ..Default::default()
                        },
                    ))
                    .await
                    .unwrap()
                    .into_inner()
                    .count;
                assert_eq!(count, 2, "{path} as of {as_of:?}: own contact and own copy of the shared email");
            }
        }
        "ListMembers" => {
            for as_of in [None, as_of_now(seq)] {
                let page = q
                    .list_members(with_key(
                        key,
                        pb::ListMembersRequest {
                            segment: by_name("de"),
                            page_size: 100,
                            min_sequence: seq,
                            as_of: as_of.clone(),
                            ..Default::default()
                        },
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                let emails: BTreeSet<_> = page.contacts.iter().map(|c| c.email.as_str()).collect();
                assert_eq!(emails, BTreeSet::from([me.email, "shared@example.com"]), "{path} as of {as_of:?}");
                let cities_ok = page.contacts.iter().all(|c| c.fields.get("city").map(String::as_str) == Some(me.city));
                assert!(cities_ok, "{path} as of {as_of:?}");
            }
        }
        "PreviewCriteria" => {
            let preview = q
                .preview_criteria(with_key(
                    key,
                    pb::PreviewCriteriaRequest {
                        criteria: text(r#"country = "DE""#),
                        page_size: 100,
                        min_sequence: seq,
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(preview.count, 2, "{path}");
            assert!(preview.contacts.iter().all(|c| c.email != other.email), "{path}");
        }
        "ReplayEvents" => {
            let mut stream =
                replay.replay_events(with_key(key, pb::ReplayEventsRequest::default())).await.unwrap().into_inner();
            let mut seen = 0;
            while let Some(event) = stream.message().await.unwrap() {
                seen += 1;
                assert!(
                    !event.json.contains(other.email) && !event.json.contains(other.city),
                    "{path}: {}",
                    event.json
                );
                assert_eq!(event.org, me.org, "{path}");
                assert!(!event.json.contains(other.own_segment), "{path}: {}", event.json);
            }
            assert!(seen >= 4, "{path}: two contacts and two segments at least, saw {seen}");
        }
        "SegmentHistory" => {
            let e = replay
                .segment_history(with_key(key, pb::SegmentHistoryRequest { segment: by_name(other.own_segment) }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{path}");
            let mine = replay
                .segment_history(with_key(key, pb::SegmentHistoryRequest { segment: by_name("de") }))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(mine.events.len(), 1, "{path}");
        }
        "ContactHistory" => {
            let shared = replay
                .contact_history(with_key(key, pb::ContactHistoryRequest { email: "shared@example.com".into() }))
                .await
                .unwrap()
                .into_inner();
            assert!(!shared.events.is_empty(), "{path}");
            for e in &shared.events {
                assert_eq!(e.org, me.org, "{path}");
                assert!(e.json.contains(me.city) && !e.json.contains(other.city), "{path}: {}", e.json);
            }
            match replay.contact_history(with_key(key, pb::ContactHistoryRequest { email: other.email.into() })).await {
                Ok(h) => assert!(h.into_inner().events.is_empty(), "{path}"),
                Err(e) => assert_eq!(e.code(), Code::NotFound, "{path}"),
            }
        }
        "GetJob" => {
            let job = q
                .get_job(with_key(key, pb::GetJobRequest { job_id: SHARED_JOB_ID.into(), min_sequence: seq }))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(job.actor, format!("{}/admin", me.org), "{path}: the job of the same id in the other org");
            let e = q
                .get_job(with_key(key, pb::GetJobRequest { job_id: format!("only-{}", other.org), min_sequence: seq }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{path}");
        }
        "WatchJobs" => {
            // Following every job of my org while both orgs start one: the
            // first job the stream shows is mine.
            let watch = pb::WatchJobsRequest { job_id: String::new(), min_sequence: seq };
            let mut updates = q.watch_jobs(with_key(key, watch)).await.unwrap().into_inner();
            reset_scores(s, &other.key, &format!("only-{}", other.org), "theirs").await;
            reset_scores(s, key, &format!("watched-{}", me.org), "mine").await;
            let first =
                tokio::time::timeout(Duration::from_secs(30), updates.message()).await.unwrap().unwrap().unwrap();
            assert_eq!(first.id, format!("watched-{}", me.org), "{path}");
            assert_eq!(first.actor, format!("{}/admin", me.org), "{path}");
            let e = q
                .watch_jobs(with_key(
                    key,
                    pb::WatchJobsRequest { job_id: format!("only-{}", other.org), min_sequence: 0 },
                ))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{path}");
        }
        "WatchMembership" => {
            // Following every segment of my org while both orgs add a German
            // contact: the first change the stream shows is mine.
            let watch = pb::WatchMembershipRequest { segments: vec![], from_sequence: 0 };
            let mut changes = q.watch_membership(with_key(key, watch)).await.unwrap().into_inner();
            for (k, email) in [
                (other.key.as_str(), format!("theirs-{}@example.com", other.org)),
                (key, format!("mine-{}@example.com", me.org)),
            ] {
                let contacts = vec![contact(&email, &[("country", "DE")])];
                s.commands
                    .upsert_contacts(with_key(k, pb::UpsertContactsRequest { command_id: String::new(), contacts }))
                    .await
                    .unwrap();
            }
            let first =
                tokio::time::timeout(Duration::from_secs(30), changes.message()).await.unwrap().unwrap().unwrap();
            let emails: Vec<&str> = first.changes.iter().map(|c| c.email.as_str()).collect();
            // One change per segment of mine the contact entered (the setup
            // defines more than one that matches it), none of the other org's.
            let mine = format!("mine-{}@example.com", me.org);
            assert!(!emails.is_empty() && emails.iter().all(|e| *e == mine), "{path}: {emails:?}");
            let other_segment =
                pb::WatchMembershipRequest { segments: vec![by_name(other.own_segment).unwrap()], from_sequence: 0 };
            let e = q.watch_membership(with_key(key, other_segment)).await.unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{path}");
        }
        "ListScoreResets" => {
            let list = q
                .list_score_resets(with_key(
                    key,
                    pb::ListScoreResetsRequest { min_sequence: seq, ..Default::default() },
                ))
                .await
                .unwrap()
                .into_inner();
            assert!(list.resets.iter().any(|r| r.job_id == SHARED_JOB_ID), "{path}");
            for r in &list.resets {
                assert!(r.actor.starts_with(&format!("{}/", me.org)), "{path}: {r:?}");
                assert!(!r.reason.contains(other.org), "{path}: {r:?}");
            }
        }
        "GetScoreReset" => {
            let reset = q
                .get_score_reset(with_key(
                    key,
                    pb::GetScoreResetRequest { job_id: SHARED_JOB_ID.into(), min_sequence: seq, ..Default::default() },
                ))
                .await
                .unwrap()
                .into_inner();
            assert!(reset.reset.unwrap().reason.contains(me.org), "{path}");
            let emails: BTreeSet<_> = reset.contacts.iter().map(|c| c.email.as_str()).collect();
            assert_eq!(emails, BTreeSet::from([me.email, "shared@example.com"]), "{path}");
            let my_score: i64 = me.score.parse().unwrap();
            assert!(reset.contacts.iter().all(|c| c.previous_score == Some(my_score)), "{path}: {:?}", reset.contacts);
            let e = q
                .get_score_reset(with_key(
                    key,
                    pb::GetScoreResetRequest {
                        job_id: format!("only-{}", other.org),
                        min_sequence: 0,
                        ..Default::default()
                    },
                ))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{path}");
        }
        "ListTopics" => {
            let topics = q.list_topics(with_key(key, pb::ListTopicsRequest { min_sequence: seq })).await.unwrap();
            let names: BTreeSet<String> = topics.into_inner().topics.into_iter().map(|t| t.name).collect();
            assert_eq!(names, BTreeSet::from(["news".to_owned(), format!("{}-topic", me.own_segment)]), "{path}");
        }
        "GetList" | "ListLists" | "ListListMembers" => {
            let list = Some(pb::ListRef { by: Some(pb::list_ref::By::Name("snapshot".into())) });
            let got = q.get_list(with_key(key, pb::GetListRequest { list: list.clone(), min_sequence: seq })).await;
            assert_eq!(got.unwrap().into_inner().member_count, 2, "{path}");
            let lists = q.list_lists(with_key(key, pb::ListListsRequest { min_sequence: seq })).await.unwrap();
            assert_eq!(lists.into_inner().lists.len(), 1, "{path}");
            let req = pb::ListListMembersRequest { list, page_size: 100, page_token: String::new(), min_sequence: seq };
            let members = q.list_list_members(with_key(key, req)).await.unwrap().into_inner().members;
            let emails: BTreeSet<_> = members.iter().map(|m| m.email.as_str()).collect();
            assert_eq!(emails, BTreeSet::from([me.email, "shared@example.com"]), "{path}");
            let cities_ok = members.iter().all(|m| m.contact.as_ref().unwrap().fields["city"] == me.city);
            assert!(cities_ok, "{path}");
        }
        "GetCampaign" | "ListCampaigns" | "CountCampaignRecipients" | "ListCampaignRecipients" => {
            let campaign = Some(pb::CampaignRef { by: Some(pb::campaign_ref::By::Name("launch".into())) });
            let sender = format!("news@{}.example", me.org);
            let req = pb::GetCampaignRequest { campaign: campaign.clone(), min_sequence: seq };
            assert_eq!(q.get_campaign(with_key(key, req)).await.unwrap().into_inner().sender, sender, "{path}");
            let all = q.list_campaigns(with_key(key, pb::ListCampaignsRequest { min_sequence: seq })).await.unwrap();
            let senders: Vec<String> = all.into_inner().campaigns.into_iter().map(|c| c.sender).collect();
            assert_eq!(senders, [sender], "{path}");
            let count = pb::CountCampaignRecipientsRequest {
                campaign: campaign.clone(),
                min_sequence: seq,
                ..Default::default()
            };
            assert_eq!(
                q.count_campaign_recipients(with_key(key, count)).await.unwrap().into_inner().count,
                2,
                "{path}"
            );
            let page =
                pb::ListCampaignRecipientsRequest { campaign, page_size: 100, min_sequence: seq, ..Default::default() };
            let contacts = q.list_campaign_recipients(with_key(key, page)).await.unwrap().into_inner().contacts;
            let emails: BTreeSet<_> = contacts.iter().map(|c| c.email.as_str()).collect();
            assert_eq!(emails, BTreeSet::from([me.email, "shared@example.com"]), "{path}");
            assert!(contacts.iter().all(|c| c.fields["city"] == me.city), "{path}");
        }
        "PreviewBulkSegments" => {
            let req = pb::PreviewBulkSegmentsRequest { field: "city".into(), min_sequence: seq };
            let values = q.preview_bulk_segments(with_key(key, req)).await.unwrap().into_inner().values;
            let values: Vec<(String, u64)> = values.into_iter().map(|v| (v.value, v.count)).collect();
            assert_eq!(values, [(me.city.to_owned(), 2)], "{path}");
        }
        "ExplainMembership" => {
            use pb::explain_membership_request::Contact;
            let ask = |segment: &str, email: &str| pb::ExplainMembershipRequest {
                segment: by_name(segment),
                contact: Some(Contact::Email(email.into())),
                min_sequence: seq,
                ..Default::default()
            };
            let e = q.explain_membership(with_key(key, ask("de", "shared@example.com"))).await.unwrap().into_inner();
            assert!(e.member, "{path}");
            let since = e.since.unwrap();
            assert!(since.actor.starts_with(me.org), "{path}: the cause is my org's event: {since:?}");
            let e = q.explain_membership(with_key(key, ask("de", other.email))).await.unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{path}");
            let e = q.explain_membership(with_key(key, ask(other.own_segment, me.email))).await.unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{path}");
        }
        "ListSegmentVersions" => {
            let req = pb::ListSegmentVersionsRequest { segment: by_name("de"), min_sequence: seq };
            let versions = q.list_segment_versions(with_key(key, req)).await.unwrap().into_inner().versions;
            assert!(
                !versions.is_empty() && versions.iter().all(|v| v.actor.starts_with(me.org)),
                "{path}: {versions:?}"
            );
            let req = pb::ListSegmentVersionsRequest { segment: by_name(other.own_segment), min_sequence: seq };
            let e = q.list_segment_versions(with_key(key, req)).await.unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{path}");
        }
        "DiffSegmentVersions" => {
            let diff =
                |segment| pb::DiffSegmentVersionsRequest { segment, from_version: 1, to_version: 0, min_sequence: seq };
            let d = q.diff_segment_versions(with_key(key, diff(by_name("de")))).await.unwrap().into_inner();
            assert!(d.to.unwrap().actor.starts_with(me.org), "{path}");
            let e = q.diff_segment_versions(with_key(key, diff(by_name(other.own_segment)))).await.unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{path}");
        }
        "ExportContacts" => {
            use pb::export_contacts_reply::Part;
            for as_of in [None, as_of_now(seq)] {
                let req = pb::ExportContactsRequest {
                    segment: by_name("de"),
                    fields: vec!["email".into(), "city".into()],
                    min_sequence: seq,
                    as_of: as_of.clone(),
                    ..Default::default()
                };
                let mut stream = q.export_contacts(with_key(key, req)).await.unwrap().into_inner();
                let mut total = None;
                let mut rows = Vec::new();
                while let Some(message) = stream.message().await.unwrap() {
                    match message.part {
                        Some(Part::Header(h)) => total = Some(h.total),
                        Some(Part::Rows(r)) => rows.extend(r.rows.into_iter().map(|r| r.values)),
                        None => panic!("{path}: an empty message"),
                    }
                }
                assert_eq!(total, Some(rows.len() as u64), "{path} as of {as_of:?}");
                // Other arms (WatchMembership) may have added German contacts
                // to both orgs by now; none of the other org's may show.
                let emails: BTreeSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
                assert!(emails.contains(me.email) && emails.contains("shared@example.com"), "{path}: {emails:?}");
                assert!(emails.iter().all(|e| *e != other.email && !e.contains(other.org)), "{path}: {emails:?}");
                let cities_ok = rows.iter().all(|r| r[1].is_empty() || r[1] == me.city);
                assert!(cities_ok, "{path} as of {as_of:?}: {rows:?}");
            }
            let req = pb::ExportContactsRequest {
                segment: by_name(other.own_segment),
                min_sequence: seq,
                ..Default::default()
            };
            let e = q.export_contacts(with_key(key, req)).await.unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{path}");
        }
        _ => panic!(
            "{path} reads data but has no organisation-isolation check: add an arm for it in \
             tests/security.rs check_isolation"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_query_or_replay_rpc_shows_one_organisation_another_ones_data() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(key_file::DEFAULT_FILE_NAME);
    let acme_key = KeyFile::create_key(&file, "acme", "admin", Role::Admin).unwrap().secret;
    let globex_key = KeyFile::create_key(&file, "globex", "admin", Role::Admin).unwrap().secret;
    let mut s = start_with(dir.path(), ApiKeys::default().with_file(&file).unwrap()).await;
    let (acme, a_seq) = write_org(&mut s, "acme", &acme_key, "anna@acme.com", "Aachen", "10", "acme-only").await;
    let (globex, g_seq) = write_org(&mut s, "globex", &globex_key, "gus@globex.com", "Genf", "20", "globex-only").await;
    let seq = a_seq.max(g_seq);

    let reads: Vec<String> = proto_methods()
        .into_iter()
        .filter(|m| m.starts_with("/segments.v1.Queries/") || m.starts_with("/segments.v1.Replay/"))
        .collect();
    assert!(reads.len() >= 9, "{reads:?}");
    for path in &reads {
        check_isolation(&mut s, path, &acme, &globex, seq).await;
        check_isolation(&mut s, path, &globex, &acme, seq).await;
    }
    for (me, other) in [(&acme, &globex), (&globex, &acme)] {
        check_job_control_isolation(&mut s, me, other).await;
    }
}

/// The commands that read org data or name another object: a dry run
/// previews only my members, and another org's job cannot be cancelled
/// (it does not exist for me), not even one with the same id as mine.
async fn check_job_control_isolation(s: &mut TestServer, me: &OrgData, other: &OrgData) {
    let key = me.key.as_str();
    let preview = pb::MassUpdateRequest {
        segment: by_name("de"),
        field: "city".into(),
        value: "Zürich".into(),
        dry_run: true,
        ..Default::default()
    };
    let d = s.commands.mass_update(with_key(key, preview)).await.unwrap().into_inner().dry_run.unwrap();
    let emails: BTreeSet<_> = d.sample.iter().map(|c| c.email.as_str()).collect();
    // Other checks add contacts of my org to "de" too; none of the other's.
    assert_eq!(d.members, emails.len() as u64, "{d:?}");
    assert!(emails.contains(me.email) && emails.contains("shared@example.com"), "{d:?}");
    assert!(!emails.contains(other.email), "{d:?}");
    let known = d.sample.iter().filter(|c| c.email == me.email || c.email == "shared@example.com");
    assert!(known.clone().count() == 2 && known.clone().all(|c| c.fields["city"] == me.city), "{d:?}");
    // Both orgs' jobs have ended by now; only "not found" would say the
    // other org's job is invisible, and only mine is found (and refused as ended).
    let cancel = |job_id: String| pb::CancelJobRequest { job_id, ..Default::default() };
    let e = s.commands.cancel_job(with_key(key, cancel(format!("only-{}", other.org)))).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = s.commands.cancel_job(with_key(key, cancel(SHARED_JOB_ID.into()))).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_mutual_tls_lets_in_only_clients_with_a_certificate_of_the_ca() {
    use segmentd_log_nats::testkit::TestPki;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let mut config = segmentd_server::ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.tls = Some(segmentd_server::serve::TlsSettings {
        cert_pem: pki.server_cert_pem.clone().into_bytes(),
        key_pem: pki.server_key_pem.clone().into_bytes(),
        client_ca_pem: Some(pki.ca_pem.clone().into_bytes()),
    });
    let served = segmentd_server::serve(config).await.unwrap();
    let port = served.addr.port();
    let tls = || ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem)).domain_name("localhost");
    let list = pb::ListSegmentsRequest { min_sequence: 0, ..Default::default() };

    let with_cert = Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls().identity(Identity::from_pem(&pki.client_cert_pem, &pki.client_key_pem)))
        .unwrap()
        .connect()
        .await
        .expect("a client with a certificate of the CA connects");
    segmentd_proto::v1::queries_client::QueriesClient::new(with_cert).list_segments(list.clone()).await.unwrap();

    // Without a client certificate, or in plaintext, no call gets through.
    let without_cert = Endpoint::from_shared(format!("https://localhost:{port}")).unwrap().tls_config(tls()).unwrap();
    if let Ok(channel) = without_cert.connect().await {
        let e = segmentd_proto::v1::queries_client::QueriesClient::new(channel)
            .list_segments(list.clone())
            .await
            .unwrap_err();
        // The handshake fails under the call: a transport error.
        assert!(matches!(e.code(), Code::Unavailable | Code::Unknown | Code::Cancelled), "{e:?}");
    }
    if let Ok(channel) = Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await {
        let e = segmentd_proto::v1::queries_client::QueriesClient::new(channel)
            .list_segments(list.clone())
            .await
            .unwrap_err();
        assert_ne!(e.code(), Code::Ok, "{e:?}");
    }
    served.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_size_limit_are_refused_before_any_handler() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = segmentd_server::ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.max_request_bytes = 64 * 1024;
    let mut s = segmentd_tests::start_config(config).await;
    let small = vec![contact("a@example.com", &[("city", "Köln")])];
    s.commands.upsert_contacts(pb::UpsertContactsRequest { command_id: String::new(), contacts: small }).await.unwrap();
    let before = s.last_seq().await;
    // 100 contacts with 1000-byte notes: within the batch count, over 64 KiB.
    let notes = "n".repeat(1000);
    let big: Vec<_> =
        (0..100).map(|i| contact(&format!("c{i}@example.com"), &[("custom.notes", notes.as_str())])).collect();
    let e = s
        .commands
        .upsert_contacts(pb::UpsertContactsRequest { command_id: String::new(), contacts: big })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(e.message().contains("65536"), "the limit is named: {}", e.message());
    assert_eq!(s.last_seq().await, before, "nothing appended");
    let e = s
        .queries
        .preview_criteria(pb::PreviewCriteriaRequest { criteria: text(&"x".repeat(70 * 1024)), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
}
