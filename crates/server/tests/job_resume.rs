//! What a process does at start with jobs it finds unfinished in the log:
//! one with a complete member list is finished, one whose member list was
//! torn (a crash inside a non-atomic start) is abandoned without touching a
//! contact. The log is prepared directly, as a crash would have left it.

use segmentd_domain::event::{JobKind, JobMembersListed, JobStarted};
use segmentd_domain::{AggregateId, Contact, Email, Envelope, Event, Timestamp};
use segmentd_log::embedded::EmbeddedLog;
use segmentd_log::{AppendEntry, AppendRequest, EventLog};
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::queries_client::QueriesClient;
use segmentd_server::ServeConfig;
use std::time::Duration;

fn envelope(n: u128, command_id: &str, aggregate: &AggregateId, event: Event) -> Envelope {
    Envelope {
        event_id: n,
        command_id: command_id.into(),
        aggregate: aggregate.clone(),
        actor: "ops".into(),
        time: Timestamp(1_000),
        event,
    }
}

async fn append(log: &EmbeddedLog, command_id: &str, aggregate: &AggregateId, events: Vec<Event>) {
    let events = events.into_iter().enumerate().map(|(i, e)| envelope(i as u128, command_id, aggregate, e)).collect();
    let entry = AppendEntry { aggregate: aggregate.clone(), expected_last_seq: 0, events };
    let request = AppendRequest { org: "default".into(), command_id: command_id.into(), entries: vec![entry] };
    log.append(request).await.unwrap();
}

fn started(job_id: &str, member_count: u64) -> Event {
    Event::JobStarted(JobStarted {
        job_id: job_id.into(),
        kind: JobKind::ResetScores { reason: "drill".into() },
        segment_id: 1,
        segment_name: "all".into(),
        criteria: "email is_not_empty".into(),
        position: 2,
        clock: Timestamp(1_000),
        member_count,
        batch_size: 2,
    })
}

fn members(emails: &[&str]) -> Event {
    Event::JobMembersListed(JobMembersListed { first_index: 0, emails: emails.iter().map(|e| e.to_string()).collect() })
}

/// Waits for job `id` to end; `known_at` is a sequence at which the job is
/// in the log, so the read model is asked to have applied it first.
async fn job_when_ended(queries: &mut QueriesClient<tonic::transport::Channel>, id: &str, known_at: u64) -> pb::Job {
    let mut stream = queries
        .watch_jobs(pb::WatchJobsRequest { job_id: id.into(), min_sequence: known_at })
        .await
        .unwrap()
        .into_inner();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let job = stream.message().await.unwrap().expect("the stream lasts until the job ends");
            if job.state != pb::JobState::Running as i32 {
                return job;
            }
        }
    })
    .await
    .expect("the job ends")
}

#[tokio::test]
async fn unfinished_jobs_are_resumed_at_start_and_torn_ones_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(&dir.path().join("log")).unwrap();
        for email in ["a@x.com", "b@x.com", "c@x.com"] {
            let mut contact = Contact::new(Email::parse(email).unwrap(), Timestamp(0));
            contact.score = Some(40);
            let created = Event::ContactCreated(segmentd_domain::event::ContactCreated { contact });
            append(&log, &format!("create-{email}"), &AggregateId::contact("default", email), vec![created]).await;
        }
        let whole = AggregateId::job("default", "whole");
        append(&log, "whole", &whole, vec![started("whole", 3), members(&["a@x.com", "b@x.com", "c@x.com"])]).await;
        let torn = AggregateId::job("default", "torn");
        append(&log, "torn", &torn, vec![started("torn", 3), members(&["a@x.com"])]).await;
    }

    let config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    let served = segmentd_server::serve(config).await.unwrap();
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", served.addr)).unwrap().connect().await.unwrap();
    let mut queries = QueriesClient::new(channel);

    // The jobs were written before the server started; its projector may
    // not have applied them when the first request arrives.
    let written = served.log.as_ref().expect("serve has a log").last_seq().await.unwrap();
    let whole = job_when_ended(&mut queries, "whole", written).await;
    assert_eq!((whole.state, whole.changed, whole.skipped), (pb::JobState::Completed as i32, 3, 0));
    let torn = job_when_ended(&mut queries, "torn", written).await;
    assert_eq!(torn.state, pb::JobState::Abandoned as i32);
    assert!(torn.abandon_reason.contains("1 of 3"), "{torn:?}");

    let reset = queries
        .get_score_reset(pb::GetScoreResetRequest {
            job_id: "whole".into(),
            min_sequence: whole.sequence,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reset.contacts.len(), 3);
    assert!(reset.contacts.iter().all(|c| c.previous_score == Some(40)));
    let torn_reset = queries
        .get_score_reset(pb::GetScoreResetRequest {
            job_id: "torn".into(),
            min_sequence: torn.sequence,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(torn_reset.contacts.is_empty(), "an abandoned start changes no contact");
    served.stop().await.unwrap();
}
