//! Jobs end to end over gRPC: mass update, deleting a segment's contacts and
//! score resets (with the auditors' view of them), watched to completion;
//! the refusals that append nothing; and activity feeding criteria.

use segmentd_proto::v1 as pb;
use segmentd_server::auth::ApiKeys;
use segmentd_tests::{TestServer, by_name, contact, import, start, start_with, text};
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::Code;

const KEY: &str = "acme:0123456789abcdef0123";

fn with_key<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("x-api-key", KEY.split_once(':').unwrap().1.parse().unwrap());
    request
}

async fn create_segment(s: &mut TestServer, name: &str, criteria: &str) -> u64 {
    s.commands
        .create_segment(with_key(pb::CreateSegmentRequest {
            command_id: String::new(),
            name: name.into(),
            criteria: text(criteria),
        }))
        .await
        .unwrap()
        .into_inner()
        .sequence
}

/// Twenty contacts: c0..c19, scores 10*i, DE for even i, FR for odd.
async fn seed(s: &mut TestServer) -> u64 {
    let contacts = (0..20)
        .map(|i| {
            let country = if i % 2 == 0 { "DE" } else { "FR" };
            let score = (i * 10).to_string();
            contact(&format!("c{i}@example.com"), &[("country", country), ("score", &score)])
        })
        .collect::<Vec<_>>();
    let mut request = with_key(pb::UpsertContactsRequest { command_id: "seed".into(), contacts });
    request.set_timeout(Duration::from_secs(30));
    let seq = s.commands.upsert_contacts(request).await.unwrap().into_inner().sequence;
    create_segment(s, "germany", r#"country = "DE""#).await.max(seq)
}

/// Follows the job with WatchJobs until it ends; returns every state seen.
async fn watch_to_end(s: &mut TestServer, job_id: &str, min_sequence: u64) -> Vec<pb::Job> {
    let mut stream = s
        .queries
        .watch_jobs(with_key(pb::WatchJobsRequest { job_id: job_id.into(), min_sequence }))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(job) = stream.next().await {
            let job = job.unwrap();
            let running = job.state == pb::JobState::Running as i32;
            seen.push(job);
            if !running {
                return true;
            }
        }
        false
    })
    .await
    .expect("the job ends within a minute");
    assert!(ended, "the stream ended before the job did: {seen:?}");
    seen
}

async fn get(s: &mut TestServer, email: &str, min_sequence: u64) -> Result<pb::Contact, tonic::Status> {
    s.queries
        .get_contact(with_key(pb::GetContactRequest { email: email.into(), min_sequence }))
        .await
        .map(|r| r.into_inner())
}

async fn keyed(dir: &std::path::Path) -> TestServer {
    start_with(dir, ApiKeys::parse(&[KEY]).unwrap()).await
}

#[tokio::test]
async fn given_a_segment_when_scores_are_reset_then_every_member_is_reset_once_and_auditors_see_who_why_and_what_was() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = keyed(dir.path()).await;
    let seq = seed(&mut s).await;
    s.served.model.as_ref().unwrap().wait_for(seq, Duration::from_secs(10)).await.unwrap();

    let reply = s
        .commands
        .reset_scores(with_key(pb::ResetScoresRequest {
            command_id: "reset-q2".into(),
            segment: by_name("germany"),
            reason: "Scoring model v2".into(),
            agree: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let job = reply.job.unwrap();
    assert_eq!((job.id.as_str(), job.kind, job.total), ("reset-q2", pb::JobKind::ResetScores as i32, 10));
    assert!(job.position >= seq, "the member list is taken after everything written before");
    assert!(!reply.duplicate);

    let seen = watch_to_end(&mut s, "reset-q2", reply.sequence).await;
    let done = seen.last().unwrap();
    assert_eq!(done.state, pb::JobState::Completed as i32);
    assert_eq!((done.processed, done.changed, done.skipped), (10, 10, 0));
    assert!(!done.finished_at.is_empty());

    // A retry of the same command answers with the same job and changes nothing.
    let again = s
        .commands
        .reset_scores(with_key(pb::ResetScoresRequest {
            command_id: "reset-q2".into(),
            segment: by_name("germany"),
            reason: "Scoring model v2".into(),
            agree: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.job.unwrap().id, "reset-q2");

    let got = s
        .queries
        .get_job(with_key(pb::GetJobRequest { job_id: "reset-q2".into(), min_sequence: done.sequence }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, *done);
    assert_eq!(get(&mut s, "c4@example.com", done.sequence).await.unwrap().fields["score"], "0");
    assert_eq!(get(&mut s, "c5@example.com", done.sequence).await.unwrap().fields["score"], "50", "not a member");

    // The audit: listed with reason and count, filtered by segment, actor and time.
    let list = |segment: Option<pb::SegmentRef>, actor: &str, since: &str| pb::ListScoreResetsRequest {
        since: since.into(),
        until: String::new(),
        segment,
        actor: actor.into(),
        min_sequence: done.sequence,
    };
    let resets = s.queries.list_score_resets(with_key(list(None, "", ""))).await.unwrap().into_inner().resets;
    assert_eq!(resets.len(), 1);
    let r = &resets[0];
    assert_eq!(
        (r.job_id.as_str(), r.reason.as_str(), r.affected, r.segment_name.as_str()),
        ("reset-q2", "Scoring model v2", 10, "germany")
    );
    assert_eq!(r.actor, "acme/key-1");
    for (request, n) in [
        (list(by_name("germany"), "", ""), 1),
        (list(by_name("france"), "", ""), 0),
        (list(None, "acme/key-1", ""), 1),
        (list(None, "someone-else", ""), 0),
        (list(None, "", "2999-01-01T00:00:00Z"), 0),
    ] {
        let got = s.queries.list_score_resets(with_key(request.clone())).await.unwrap().into_inner().resets;
        assert_eq!(got.len(), n, "{request:?}");
    }

    // Every affected contact with its previous score, in pages.
    let mut affected = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .queries
            .get_score_reset(with_key(pb::GetScoreResetRequest {
                job_id: "reset-q2".into(),
                page_size: 3,
                page_token: token,
                min_sequence: done.sequence,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.contacts.len() <= 3);
        assert_eq!(page.reset.unwrap().affected, 10);
        affected.extend(page.contacts);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let want: Vec<pb::AffectedContact> = (0..20)
        .step_by(2)
        .map(|i| pb::AffectedContact { email: format!("c{i}@example.com"), previous_score: Some(i * 10) })
        .collect();
    assert_eq!(affected, want);
    let missing = s
        .queries
        .get_score_reset(with_key(pb::GetScoreResetRequest { job_id: "nope".into(), ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // After a restart the read model loads jobs and the audit from disk.
    let listed = s.queries.list_score_resets(with_key(list(None, "", ""))).await.unwrap().into_inner().resets;
    s.served.stop().await.unwrap();
    let mut s = keyed(dir.path()).await;
    let again = s.queries.list_score_resets(with_key(list(None, "", ""))).await.unwrap().into_inner().resets;
    assert_eq!(again, listed);
    let page = s
        .queries
        .get_score_reset(with_key(pb::GetScoreResetRequest {
            job_id: "reset-q2".into(),
            page_size: 100,
            page_token: String::new(),
            min_sequence: done.sequence,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.contacts, want);
    let job =
        s.queries.get_job(with_key(pb::GetJobRequest { job_id: "reset-q2".into(), min_sequence: done.sequence })).await;
    assert_eq!(job.unwrap().into_inner(), *done);
    s.served.stop().await.unwrap();
}

#[tokio::test]
async fn refused_jobs_name_what_is_wrong_and_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = keyed(dir.path()).await;
    seed(&mut s).await;
    let before = s.last_seq().await;
    let reset = |reason: &str, agree: bool| pb::ResetScoresRequest {
        command_id: String::new(),
        segment: by_name("germany"),
        reason: reason.into(),
        agree,
        ..Default::default()
    };
    let e = s.commands.reset_scores(with_key(reset(" ", true))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("reason"), "{e:?}");
    let e = s.commands.reset_scores(with_key(reset("why", false))).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().starts_with("agree"), "{e:?}");
    let e = s
        .commands
        .reset_scores(with_key(pb::ResetScoresRequest { segment: by_name("nowhere"), ..reset("why", true) }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let delete = |confirm: bool| pb::DeleteSegmentContactsRequest {
        command_id: String::new(),
        segment: by_name("germany"),
        confirm,
        ..Default::default()
    };
    let e = s.commands.delete_segment_contacts(with_key(delete(false))).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().starts_with("confirm"), "{e:?}");

    let mass = |field: &str, value: &str| pb::MassUpdateRequest {
        command_id: String::new(),
        segment: by_name("germany"),
        field: field.into(),
        value: value.into(),
        ..Default::default()
    };
    for (field, value, named) in [("shoe_size", "42", "field"), ("email", "x@y.com", "field"), ("age", "old", "value")]
    {
        let e = s.commands.mass_update(with_key(mass(field, value))).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}={value}");
        assert!(e.message().starts_with(named), "{field}={value}: {e:?}");
    }
    let e = s
        .commands
        .reset_scores(with_key(pb::ResetScoresRequest { command_id: "job:x:1".into(), ..reset("why", true) }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "job batch ids are reserved");
    for bad in ["", "a b"] {
        let e =
            s.queries.get_job(with_key(pb::GetJobRequest { job_id: bad.into(), min_sequence: 0 })).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}");
    }
    let e =
        s.queries.get_job(with_key(pb::GetJobRequest { job_id: "nope".into(), min_sequence: 0 })).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = s
        .queries
        .watch_jobs(with_key(pb::WatchJobsRequest { job_id: "nope".into(), min_sequence: 0 }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(s.last_seq().await, before, "refusals append nothing");
    s.served.stop().await.unwrap();
}

#[tokio::test]
async fn given_a_segment_when_mass_updated_then_every_member_has_the_value_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = keyed(dir.path()).await;
    seed(&mut s).await;
    let reply = s
        .commands
        .mass_update(with_key(pb::MassUpdateRequest {
            command_id: "mu-1".into(),
            segment: by_name("germany"),
            field: "lifecycle_stage".into(),
            value: "customer".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let done = watch_to_end(&mut s, "mu-1", reply.sequence).await.pop().unwrap();
    assert_eq!(
        (done.state, done.changed, done.field.as_str(), done.value.as_str()),
        (pb::JobState::Completed as i32, 10, "lifecycle_stage", "customer")
    );
    assert_eq!(get(&mut s, "c2@example.com", done.sequence).await.unwrap().fields["lifecycle_stage"], "customer");
    assert!(!get(&mut s, "c3@example.com", done.sequence).await.unwrap().fields.contains_key("lifecycle_stage"));

    // The same value again: every member is skipped, nothing is recorded per contact.
    let again = s
        .commands
        .mass_update(with_key(pb::MassUpdateRequest {
            command_id: "mu-2".into(),
            segment: by_name("germany"),
            field: "lifecycle_stage".into(),
            value: "customer".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let done = watch_to_end(&mut s, "mu-2", again.sequence).await.pop().unwrap();
    assert_eq!((done.changed, done.skipped), (0, 10));
    s.served.stop().await.unwrap();
}

#[tokio::test]
async fn given_a_confirmed_delete_when_it_completes_then_the_members_are_gone_from_the_org() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = keyed(dir.path()).await;
    seed(&mut s).await;
    let reply = s
        .commands
        .delete_segment_contacts(with_key(pb::DeleteSegmentContactsRequest {
            command_id: "del-1".into(),
            segment: by_name("germany"),
            confirm: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let done = watch_to_end(&mut s, "del-1", reply.sequence).await.pop().unwrap();
    assert_eq!((done.state, done.changed), (pb::JobState::Completed as i32, 10));
    assert_eq!(get(&mut s, "c0@example.com", done.sequence).await.unwrap_err().code(), Code::NotFound);
    assert!(get(&mut s, "c1@example.com", done.sequence).await.is_ok(), "not a member");
    let count = s
        .queries
        .count_members(with_key(pb::CountMembersRequest {
            segment: by_name("germany"),
            min_sequence: done.sequence,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(count, 0);
    s.served.stop().await.unwrap();
}

#[tokio::test]
async fn watching_every_job_reports_progress_and_completion() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = segmentd_server::ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.jobs.batch_size = 3;
    let mut s = segmentd_tests::start_config(config).await;
    let contacts = (0..10).map(|i| contact(&format!("w{i}@example.com"), &[("country", "DE")])).collect();
    import(&mut s.commands, contacts).await;
    s.commands
        .create_segment(pb::CreateSegmentRequest {
            command_id: String::new(),
            name: "de".into(),
            criteria: text(r#"country = "DE""#),
        })
        .await
        .unwrap();
    let mut stream = s
        .queries
        .watch_jobs(pb::WatchJobsRequest { job_id: String::new(), min_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let reply = s
        .commands
        .reset_scores(pb::ResetScoresRequest {
            command_id: "w".into(),
            segment: by_name("de"),
            reason: "r".into(),
            agree: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut processed = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(job) = stream.next().await {
            let job = job.unwrap();
            assert_eq!(job.id, "w");
            processed.push(job.processed);
            if job.state == pb::JobState::Completed as i32 {
                return;
            }
        }
        panic!("the stream ended before the job");
    })
    .await
    .expect("completion is reported within a minute");
    assert!(reply.job.is_some());
    assert_eq!(processed.last(), Some(&10));
    assert!(processed.windows(2).all(|w| w[0] <= w[1]), "{processed:?}");
    assert!(processed.len() >= 2, "progress before completion: {processed:?}");
    s.served.stop().await.unwrap();
}

#[tokio::test]
async fn recorded_activity_updates_behaviour_fields_that_criteria_use() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path()).await;
    import(&mut s.commands, vec![contact("ann@example.com", &[]), contact("bob@example.com", &[])]).await;
    s.commands
        .create_segment(pb::CreateSegmentRequest {
            command_id: String::new(),
            name: "engaged".into(),
            criteria: text("last_opened_at within_last 7 days and purchase_count >= 1"),
        })
        .await
        .unwrap();
    let activity = |kind: pb::ActivityKind, amount: &str, time: &str| pb::RecordActivityRequest {
        command_id: String::new(),
        email: "ann@example.com".into(),
        kind: kind.into(),
        amount: amount.into(),
        url: String::new(),
        time: time.into(),
    };
    let r = s.commands.record_activity(activity(pb::ActivityKind::Purchase, "49.90", "")).await.unwrap().into_inner();
    let fields = r.contact.unwrap().fields;
    assert_eq!((fields["purchase_count"].as_str(), fields["total_spent"].as_str()), ("1", "49.9"));
    let count =
        |seq: u64| pb::CountMembersRequest { segment: by_name("engaged"), min_sequence: seq, ..Default::default() };
    assert_eq!(s.queries.count_members(count(r.sequence)).await.unwrap().into_inner().count, 0, "not opened yet");

    // An open long ago does not count as "within the last 7 days"; one now does.
    let old = s
        .commands
        .record_activity(activity(pb::ActivityKind::EmailOpened, "", "2020-01-01T00:00:00Z"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.queries.count_members(count(old.sequence)).await.unwrap().into_inner().count, 0);
    let now = s.commands.record_activity(activity(pb::ActivityKind::LinkClicked, "", "")).await.unwrap().into_inner();
    assert_eq!(s.queries.count_members(count(now.sequence)).await.unwrap().into_inner().count, 1);
    let members = s
        .queries
        .list_members(pb::ListMembersRequest {
            segment: by_name("engaged"),
            min_sequence: now.sequence,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.contacts[0].email, "ann@example.com");

    let before = s.last_seq().await;
    for (request, code) in [
        (activity(pb::ActivityKind::Unspecified, "", ""), Code::InvalidArgument),
        (activity(pb::ActivityKind::Purchase, "", ""), Code::InvalidArgument),
        (activity(pb::ActivityKind::Purchase, "-5", ""), Code::InvalidArgument),
        (activity(pb::ActivityKind::Purchase, "ten", ""), Code::InvalidArgument),
        (activity(pb::ActivityKind::EmailOpened, "3", ""), Code::InvalidArgument),
        (activity(pb::ActivityKind::EmailOpened, "", "yesterday"), Code::InvalidArgument),
        (
            pb::RecordActivityRequest {
                email: "nobody@example.com".into(),
                ..activity(pb::ActivityKind::EmailOpened, "", "")
            },
            Code::NotFound,
        ),
    ] {
        let e = s.commands.record_activity(request.clone()).await.unwrap_err();
        assert_eq!(e.code(), code, "{request:?}: {e:?}");
    }
    assert_eq!(s.last_seq().await, before, "refusals append nothing");
    s.served.stop().await.unwrap();
}

/// The same job on the production log: a real nats-server, own port and
/// store. Every member's score is reset once, and the audit matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_a_reset_job_changes_every_member_once() {
    let nats = segmentd_log_nats::testkit::NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = segmentd_server::ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.backend = segmentd_server::LogBackend::Nats(Box::new(nats.log_config()));
    config.jobs.batch_size = 7;
    let mut s = segmentd_tests::start_config(config).await;
    let contacts = (0..50).map(|i| contact(&format!("n{i}@example.com"), &[("score", &i.to_string())])).collect();
    import(&mut s.commands, contacts).await;
    s.commands
        .create_segment(pb::CreateSegmentRequest {
            command_id: String::new(),
            name: "all".into(),
            criteria: text("email is_not_empty"),
        })
        .await
        .unwrap();
    let reply = s
        .commands
        .reset_scores(pb::ResetScoresRequest {
            command_id: "nats-reset".into(),
            segment: by_name("all"),
            reason: "r".into(),
            agree: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = s
        .queries
        .watch_jobs(pb::WatchJobsRequest { job_id: "nats-reset".into(), min_sequence: reply.sequence })
        .await
        .unwrap()
        .into_inner();
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let job = stream.next().await.expect("the stream lasts until the job ends").unwrap();
            if job.state != pb::JobState::Running as i32 {
                return job;
            }
        }
    })
    .await
    .expect("the job ends within a minute");
    assert_eq!((done.state, done.changed, done.skipped), (pb::JobState::Completed as i32, 50, 0));
    let mut replay = segmentd_proto::v1::replay_client::ReplayClient::new(s.channel.clone());
    let mut events = replay
        .replay_events(pb::ReplayEventsRequest { event_types: vec!["ScoreReset".into()], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut per_contact = std::collections::BTreeMap::<String, u32>::new();
    while let Some(e) = events.message().await.unwrap() {
        *per_contact.entry(e.aggregate_id).or_default() += 1;
    }
    assert_eq!(per_contact.len(), 50);
    assert!(per_contact.values().all(|n| *n == 1), "{per_contact:?}");
    let reset = s
        .queries
        .get_score_reset(pb::GetScoreResetRequest {
            job_id: "nats-reset".into(),
            page_size: 1000,
            min_sequence: done.sequence,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reset.contacts.len(), 50);
    assert_eq!(reset.contacts[3], pb::AffectedContact { email: "n3@example.com".into(), previous_score: Some(3) });
    s.served.stop().await.unwrap();
}

/// Member lists come from a read model: a node with only the commands role
/// refuses jobs, saying why, and records nothing.
#[tokio::test]
async fn a_commands_only_node_refuses_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = segmentd_server::ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.roles = segmentd_server::Roles::COMMANDS;
    let mut s = segmentd_tests::start_config(config).await;
    let before = s.last_seq().await;
    let e = s
        .commands
        .reset_scores(pb::ResetScoresRequest {
            command_id: String::new(),
            segment: by_name("all"),
            reason: "r".into(),
            agree: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("read model"), "{e:?}");
    assert_eq!(s.last_seq().await, before);
    s.served.stop().await.unwrap();
}
