//! Dry runs and cancellation of jobs, end to end over gRPC on the embedded
//! log and on a real nats-server: a dry run counts and samples what a job
//! would change and appends nothing; a run naming the dry run's position is
//! refused with ABORTED once the segment's members changed (and only then);
//! CancelJob stops a running job before its next batch, the record says
//! what it did, and the job does not come back after a restart.

use segmentd_log_nats::testkit::NatsServer;
use segmentd_proto::v1 as pb;
use segmentd_server::ServeConfig;
use segmentd_tests::{Backend, TestServer, by_name, config_on, contact, import, start_config, text};
use std::time::Duration;
use tempfile::TempDir;
use tonic::Code;

const PATIENCE: Duration = Duration::from_secs(60);

struct Harness {
    server: TestServer,
    // Dropped after the server: the log must outlive what uses it.
    nats: Option<NatsServer>,
    dir: TempDir,
}

async fn start(backend: Backend, tweak: impl Fn(&mut ServeConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let nats = backend.log_server().await;
    let mut config = config_on(dir.path(), nats.as_ref());
    tweak(&mut config);
    let server = start_config(config).await;
    Harness { server, nats, dir }
}

impl Harness {
    /// Stops the server and starts a new one on the same data and log.
    async fn restart(self, tweak: impl Fn(&mut ServeConfig)) -> Harness {
        let Harness { server, nats, dir } = self;
        server.served.stop().await.unwrap();
        let mut config = config_on(dir.path(), nats.as_ref());
        tweak(&mut config);
        let server = start_config(config).await;
        Harness { server, nats, dir }
    }

    async fn upsert(&mut self, email: &str, fields: &[(&str, &str)]) -> u64 {
        let request = pb::UpsertContactsRequest { command_id: String::new(), contacts: vec![contact(email, fields)] };
        self.server.commands.upsert_contacts(request).await.unwrap().into_inner().sequence
    }

    /// Twenty contacts c0..c19 with scores 10*i, DE for even i, FR for odd,
    /// and the segment "germany" (ten members).
    async fn seed(&mut self) -> u64 {
        let contacts = (0..20)
            .map(|i| {
                let country = if i % 2 == 0 { "DE" } else { "FR" };
                contact(&format!("c{i}@example.com"), &[("country", country), ("score", &(i * 10).to_string())])
            })
            .collect();
        let seq = import(&mut self.server.commands, contacts).await;
        let request = pb::CreateSegmentRequest {
            command_id: String::new(),
            name: "germany".into(),
            criteria: text(r#"country = "DE""#),
        };
        let created = self.server.commands.create_segment(request).await.unwrap().into_inner().sequence;
        seq.max(created)
    }

    async fn reset(
        &mut self,
        command_id: &str,
        dry_run: bool,
        expected_position: Option<u64>,
    ) -> Result<pb::JobReply, tonic::Status> {
        let request = pb::ResetScoresRequest {
            command_id: command_id.into(),
            segment: by_name("germany"),
            reason: "Scoring model v2".into(),
            agree: !dry_run,
            dry_run,
            expected_position,
        };
        self.server.commands.reset_scores(request).await.map(|r| r.into_inner())
    }

    async fn score(&mut self, email: &str, min_sequence: u64) -> String {
        let request = pb::GetContactRequest { email: email.into(), min_sequence };
        let contact = self.server.queries.get_contact(request).await.unwrap().into_inner();
        contact.fields.get("score").cloned().unwrap_or_default()
    }

    async fn get_job(&mut self, id: &str, min_sequence: u64) -> pb::Job {
        let request = pb::GetJobRequest { job_id: id.into(), min_sequence };
        self.server.queries.get_job(request).await.unwrap().into_inner()
    }

    /// Follows a job until `until` holds for it.
    async fn watch_until(&mut self, id: &str, min_sequence: u64, until: impl Fn(&pb::Job) -> bool) -> pb::Job {
        let request = pb::WatchJobsRequest { job_id: id.into(), min_sequence };
        let mut stream = self.server.queries.watch_jobs(request).await.unwrap().into_inner();
        tokio::time::timeout(PATIENCE, async {
            loop {
                let job = stream.message().await.unwrap().expect("the stream lasts until the job ends");
                if until(&job) {
                    return job;
                }
                assert_eq!(job.state, pb::JobState::Running as i32, "ended before the awaited state: {job:?}");
            }
        })
        .await
        .expect("the awaited job state comes")
    }

    async fn cancel(&mut self, job_id: &str, reason: &str) -> Result<pb::JobReply, tonic::Status> {
        let request = pb::CancelJobRequest { command_id: String::new(), job_id: job_id.into(), reason: reason.into() };
        self.server.commands.cancel_job(request).await.map(|r| r.into_inner())
    }

    /// The types of a job aggregate's events, in log order.
    async fn job_events(&mut self, job_id: &str) -> Vec<String> {
        let mut replay = pb::replay_client::ReplayClient::new(self.server.channel.clone());
        let request =
            pb::ReplayEventsRequest { aggregate_type: "job".into(), aggregate_id: job_id.into(), ..Default::default() };
        let mut stream = replay.replay_events(request).await.unwrap().into_inner();
        let mut types = Vec::new();
        while let Some(e) = stream.message().await.unwrap() {
            types.push(e.r#type);
        }
        types
    }
}

fn emails(d: &pb::DryRun) -> Vec<&str> {
    d.sample.iter().map(|c| c.email.as_str()).collect()
}

async fn dry_runs_preview_and_a_stale_preview_is_refused(backend: Backend) {
    let mut h = start(backend, |_| {}).await;
    let seeded = h.seed().await;
    h.upsert("c0@example.com", &[("city", "Bonn")]).await;
    let before = h.server.last_seq().await;

    // Each of the three jobs previews what it would change, and records nothing.
    let preview = h.reset("", true, None).await.unwrap();
    assert!(preview.job.is_none() && !preview.duplicate, "{preview:?}");
    let d = preview.dry_run.unwrap();
    assert_eq!((d.members, d.affected, d.segment_name.as_str()), (10, 10, "germany"));
    assert!(d.position >= seeded && preview.sequence == d.position, "{d:?}");
    assert_eq!(emails(&d)[..3], ["c0@example.com", "c2@example.com", "c4@example.com"]);
    let mass = pb::MassUpdateRequest {
        command_id: String::new(),
        segment: by_name("germany"),
        field: "city".into(),
        value: "Bonn".into(),
        dry_run: true,
        expected_position: None,
    };
    let d = h.server.commands.mass_update(mass).await.unwrap().into_inner().dry_run.unwrap();
    assert_eq!((d.members, d.affected), (10, 9), "c0 is in Bonn already");
    assert_eq!(emails(&d)[0], "c2@example.com");
    assert_eq!(d.sample[0].fields["country"], "DE", "the sample shows the contacts as they are");
    // A dry run needs no confirmation; what describes the request is still checked.
    let delete = pb::DeleteSegmentContactsRequest {
        command_id: String::new(),
        segment: by_name("germany"),
        confirm: false,
        dry_run: true,
        expected_position: None,
    };
    let d = h.server.commands.delete_segment_contacts(delete).await.unwrap().into_inner().dry_run.unwrap();
    assert_eq!(d.affected, 10);
    let no_reason = pb::ResetScoresRequest {
        command_id: String::new(),
        segment: by_name("germany"),
        reason: " ".into(),
        agree: false,
        dry_run: true,
        expected_position: None,
    };
    let e = h.server.commands.reset_scores(no_reason).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("reason"), "{e:?}");
    let nowhere = pb::ResetScoresRequest {
        command_id: String::new(),
        segment: by_name("nowhere"),
        reason: "r".into(),
        agree: false,
        dry_run: true,
        expected_position: None,
    };
    assert_eq!(h.server.commands.reset_scores(nowhere).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(h.server.last_seq().await, before, "dry runs append nothing");

    // A member entering after the preview: the run that names it is refused.
    let seen = preview.sequence;
    let entered = h.upsert("new@example.com", &[("country", "DE"), ("score", "5")]).await;
    let e = h.reset("stale-run", false, Some(seen)).await.unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    assert!(e.message().contains("germany") && e.message().contains(&entered.to_string()), "{e:?}");
    let e = h.reset("future-run", false, Some(entered + 1000)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("expected_position"), "{e:?}");
    assert_eq!(h.server.last_seq().await, entered, "refused runs append nothing");

    // Previewed again; changes that move no one in or out keep it valid.
    let d = h.reset("", true, None).await.unwrap().dry_run.unwrap();
    assert_eq!((d.members, d.affected), (11, 11));
    assert!(d.position >= entered);
    h.upsert("c1@example.com", &[("city", "Lyon")]).await;
    h.upsert("c2@example.com", &[("score", "21")]).await;
    let started = h.reset("confirmed-run", false, Some(d.position)).await.unwrap();
    let job = started.job.unwrap();
    assert_eq!((job.id.as_str(), job.total), ("confirmed-run", 11));
    let done = h.watch_until("confirmed-run", started.sequence, |j| j.state != pb::JobState::Running as i32).await;
    assert_eq!((done.state, done.changed), (pb::JobState::Completed as i32, 11));
    assert_eq!(h.score("new@example.com", done.sequence).await, "0");
    h.server.served.stop().await.unwrap();
}

#[tokio::test]
async fn embedded_dry_runs_preview_and_a_stale_preview_is_refused() {
    dry_runs_preview_and_a_stale_preview_is_refused(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_dry_runs_preview_and_a_stale_preview_is_refused() {
    dry_runs_preview_and_a_stale_preview_is_refused(Backend::Nats).await;
}

/// One member per batch and a pause after each far longer than the test:
/// the job is certain to be part way when it is cancelled.
fn slow_jobs(config: &mut ServeConfig) {
    config.jobs.batch_size = 1;
    config.jobs.pause = Duration::from_secs(3600);
}

async fn a_cancelled_job_stops_says_so_and_stays_stopped(backend: Backend) {
    let mut h = start(backend, slow_jobs).await;
    h.seed().await;
    let started = h.reset("slow-reset", false, None).await.unwrap();
    let part = h.watch_until("slow-reset", started.sequence, |j| j.processed >= 1).await;
    assert_eq!(part.processed, 1);

    let reply = h.cancel("slow-reset", "wrong segment").await.unwrap();
    let job = reply.job.unwrap();
    assert_eq!(job.state, pb::JobState::Cancelled as i32, "{job:?}");
    assert_eq!((job.processed, job.changed, job.skipped, job.total), (1, 1, 0, 10));
    assert!(job.cancel_requested && job.cancel_reason == "wrong segment", "{job:?}");
    assert!(!job.finished_at.is_empty() && !job.cancel_requested_at.is_empty());
    assert_eq!(h.get_job("slow-reset", reply.sequence).await, job);
    let watched = h.watch_until("slow-reset", reply.sequence, |_| true).await;
    assert_eq!(watched.state, pb::JobState::Cancelled as i32, "WatchJobs shows it too");
    assert_eq!(h.score("c0@example.com", reply.sequence).await, "0", "the first batch was done");
    assert_eq!(h.score("c2@example.com", reply.sequence).await, "20", "the rest were left alone");

    let e = h.cancel("slow-reset", "").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("cancelled"), "{e:?}");
    assert_eq!(h.cancel("no-such-job", "").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(h.cancel(" ", "").await.unwrap_err().code(), Code::InvalidArgument);

    // After a restart (jobs at full speed now) the job stays where it
    // stopped, while a new job over the same members runs to its end.
    let mut h = h
        .restart(|c| {
            c.jobs.batch_size = 1;
        })
        .await;
    let head = h.server.last_seq().await;
    assert_eq!(h.get_job("slow-reset", head).await.state, pb::JobState::Cancelled as i32);
    let mass = pb::MassUpdateRequest {
        command_id: "after-restart".into(),
        segment: by_name("germany"),
        field: "city".into(),
        value: "Bonn".into(),
        dry_run: false,
        expected_position: None,
    };
    let started = h.server.commands.mass_update(mass).await.unwrap().into_inner();
    let done = h.watch_until("after-restart", started.sequence, |j| j.state != pb::JobState::Running as i32).await;
    assert_eq!((done.state, done.changed), (pb::JobState::Completed as i32, 10));
    assert_eq!(h.score("c2@example.com", done.sequence).await, "20");
    let events = h.job_events("slow-reset").await;
    assert_eq!(events.last().map(String::as_str), Some("JobCancelled"), "{events:?}");
    assert_eq!(events.iter().filter(|t| *t == "JobProgressed").count(), 1, "{events:?}");
    let e = h.cancel("after-restart", "").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "a completed job cannot be cancelled: {e:?}");
    assert!(e.message().contains("completed"), "{e:?}");
    h.server.served.stop().await.unwrap();
}

#[tokio::test]
async fn embedded_a_cancelled_job_stops_says_so_and_stays_stopped() {
    a_cancelled_job_stops_says_so_and_stays_stopped(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_cancelled_job_stops_says_so_and_stays_stopped() {
    a_cancelled_job_stops_says_so_and_stays_stopped(Backend::Nats).await;
}
