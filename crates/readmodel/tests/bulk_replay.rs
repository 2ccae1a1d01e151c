//! A bulk replay (`project_until`, `catch_up`: index and member sets built
//! once at the end, contacts stored in blocks) must leave the same model as
//! applying the same log event by event: the same contacts, counts, member
//! pages, kept member sets, jobs and applied sequence, in memory and after
//! reopening from sled. The log is a real embedded log with an "odd"
//! history: updates after creates, deletes and re-creates of the same
//! email, activity, score resets, a job, segments defined, redefined and
//! deleted, and two orgs.

use segmentd_domain::event::{
    Activity, ActivityRecorded, Change, ContactCreated, ContactDeleted, ContactUpdated, JobKind, JobStarted,
    ScoreReset, SegmentCreated, SegmentDeleted, SegmentUpdated,
};
use segmentd_domain::{AggregateId, Contact, Criteria, Email, Envelope, Event, Timestamp};
use segmentd_log::embedded::EmbeddedLog;
use segmentd_log::{AppendEntry, AppendRequest, EventLog, Seq};
use segmentd_readmodel::{ReadModel, Until, catch_up, project_until};
use std::collections::HashMap;
use std::path::Path;

const ORGS: [&str; 2] = ["acme", "globex"];
const CRITERIA: [&str; 6] = [
    r#"country = "DE""#,
    r#"country in ("DE", "FR") and age >= 30"#,
    "score > 50 or purchase_count >= 1",
    r#"city contains "ün" and not (lifecycle_stage = "lead")"#,
    "last_opened_at within_last 30 days",
    r#"custom.plan = "pro""#,
];
const COUNTRIES: [&str; 4] = ["DE", "FR", "US", ""];
const CITIES: [&str; 4] = ["München", "Paris", "MÜNCHEN", "Austin"];

fn at() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-01T00:00:00Z").unwrap()
}

/// A deterministic stream of numbers (no randomness in tests).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

struct Writer {
    log: EmbeddedLog,
    last: HashMap<AggregateId, Seq>,
    n: u64,
}

impl Writer {
    async fn append(&mut self, aggregate: AggregateId, event: Event) {
        self.n += 1;
        let envelope = Envelope {
            event_id: u128::from(self.n),
            command_id: format!("cmd-{}", self.n),
            aggregate: aggregate.clone(),
            actor: "test".into(),
            time: Timestamp(at().0 - 1_000_000 + self.n as i64),
            event,
        };
        let expected = self.last.get(&aggregate).copied().unwrap_or(0);
        let request = AppendRequest {
            org: aggregate.org.clone(),
            command_id: envelope.command_id.clone(),
            entries: vec![AppendEntry {
                aggregate: aggregate.clone(),
                expected_last_seq: expected,
                events: vec![envelope],
            }],
        };
        let seq = self.log.append(request).await.unwrap().last_seq();
        self.last.insert(aggregate, seq);
    }
}

fn contact(rng: &mut Rng, email: &str) -> Contact {
    let mut c = Contact::new(Email::parse(email).unwrap(), Timestamp(at().0 - rng.below(90) as i64 * 86_400_000));
    c.country = COUNTRIES[rng.below(4) as usize].into();
    c.city = CITIES[rng.below(4) as usize].into();
    c.age = (rng.below(5) > 0).then(|| 18 + rng.below(60) as i64);
    c.score = Some(rng.below(100) as i64);
    c.lifecycle_stage = ["lead", "customer", ""][rng.below(3) as usize].into();
    if rng.below(2) == 0 {
        c.custom.insert("plan".into(), ["pro", "free"][rng.below(2) as usize].into());
    }
    c
}

/// About 3,000 events over two orgs.
async fn odd_log(dir: &Path) -> EmbeddedLog {
    let mut w = Writer { log: EmbeddedLog::open(&dir.join("log")).unwrap(), last: HashMap::new(), n: 0 };
    let mut rng = Rng(42);
    let mut live: HashMap<(usize, u64), Contact> = HashMap::new();
    let mut segments: HashMap<usize, Vec<u64>> = HashMap::new();
    for step in 0..3000u64 {
        let o = rng.below(2) as usize;
        let org = ORGS[o];
        let id = rng.below(400);
        let email = format!("c{id}@x.com");
        let aggregate = AggregateId::contact(org, &email);
        match rng.below(20) {
            0 => {
                let ids = segments.entry(o).or_default();
                let segment_id = step + 1;
                let criteria = CRITERIA[rng.below(CRITERIA.len() as u64) as usize];
                let name = format!("s{segment_id}");
                ids.push(segment_id);
                w.append(
                    AggregateId::segment_catalog(org),
                    Event::SegmentCreated(SegmentCreated { segment_id, name, criteria: criteria.into() }),
                )
                .await;
            }
            1 if !segments.entry(o).or_default().is_empty() => {
                let ids = &segments[&o];
                let segment_id = ids[rng.below(ids.len() as u64) as usize];
                let to = CRITERIA[rng.below(CRITERIA.len() as u64) as usize];
                let change = Change { from: String::new(), to: Criteria::parse(to).unwrap().to_string() };
                let update = SegmentUpdated { segment_id, version: step, name: None, criteria: Some(change) };
                w.append(AggregateId::segment_catalog(org), Event::SegmentUpdated(update)).await;
            }
            2 if segments.entry(o).or_default().len() > 2 => {
                let ids = segments.get_mut(&o).unwrap();
                let segment_id = ids.remove(rng.below(ids.len() as u64) as usize);
                let name = format!("s{segment_id}");
                w.append(AggregateId::segment_catalog(org), Event::SegmentDeleted(SegmentDeleted { segment_id, name }))
                    .await;
            }
            3..=5 if live.contains_key(&(o, id)) => {
                live.remove(&(o, id));
                w.append(aggregate, Event::ContactDeleted(ContactDeleted { email })).await;
            }
            6 if live.contains_key(&(o, id)) => {
                let mut c = live[&(o, id)].clone();
                c.last_opened_at = Some(Timestamp(at().0 - rng.below(60) as i64 * 86_400_000));
                c.purchase_count = Some(c.purchase_count.unwrap_or(0) + 1);
                live.insert((o, id), c.clone());
                let event = ActivityRecorded { contact: c, activity: Activity::EmailOpened, at: at() };
                w.append(aggregate, Event::ActivityRecorded(event)).await;
            }
            7 if live.contains_key(&(o, id)) => {
                let mut c = live[&(o, id)].clone();
                let previous_score = c.score;
                c.score = Some(0);
                live.insert((o, id), c.clone());
                let reset = ScoreReset { contact: c, previous_score, reason: "test".into(), job_id: "job-1".into() };
                w.append(aggregate, Event::ScoreReset(reset)).await;
            }
            8 if step % 7 == 0 => {
                let job_id = format!("job-{step}");
                let started = JobStarted {
                    job_id: job_id.clone(),
                    kind: JobKind::MassUpdate { field: "city".into(), value: "Paris".into() },
                    segment_id: 1,
                    segment_name: "s1".into(),
                    criteria: CRITERIA[0].into(),
                    position: step,
                    clock: at(),
                    member_count: 3,
                    batch_size: 2,
                };
                w.append(AggregateId::job(org, &job_id), Event::JobStarted(started)).await;
            }
            _ => {
                let c = contact(&mut rng, &email);
                let event = if live.contains_key(&(o, id)) {
                    Event::ContactUpdated(ContactUpdated { contact: c.clone(), changed: vec!["country".into()] })
                } else {
                    Event::ContactCreated(ContactCreated { contact: c.clone() })
                };
                live.insert((o, id), c);
                w.append(aggregate, event).await;
            }
        }
    }
    w.log
}

/// Everything a query can see of `org`, as text.
fn answers(model: &ReadModel, org: &str) -> Vec<String> {
    model.read(org, |view, seq| {
        let mut out = vec![format!("applied {seq}, {} contacts", view.contact_count())];
        for id in 0..400 {
            out.push(format!("{:?}", view.contact(&format!("c{id}@x.com"))));
        }
        for text in CRITERIA {
            let criteria = Criteria::parse(text).unwrap();
            out.push(format!("{text}: {}", view.count(&criteria, at())));
            let mut after = None;
            loop {
                let page = view.members(&criteria, at(), after, 7);
                out.push(format!("{:?} {:?}", page.contacts, page.next_after));
                match page.next_after {
                    Some(row) => after = Some(row),
                    None => break,
                }
            }
        }
        for segment in view.segments() {
            let criteria = view.segment_criteria(segment.id).unwrap();
            let kept = view.segment_members(segment.id, criteria, at(), None, 1000);
            let emails: Vec<&str> = kept.contacts.iter().map(|c| c.email()).collect();
            out.push(format!(
                "{} {}: {} {emails:?}",
                segment.id,
                segment.criteria,
                view.segment_count(segment.id, criteria, at())
            ));
        }
        out.extend(view.jobs().map(|j| format!("{j:?}")));
        out.push(format!("{:?}", view.reset_contacts("job-1")));
        out
    })
}

fn all_answers(model: &ReadModel) -> Vec<Vec<String>> {
    ORGS.iter().map(|org| answers(model, org)).collect()
}

#[tokio::test]
async fn a_bulk_replay_answers_like_events_applied_one_batch_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = odd_log(dir.path()).await;
    let last = log.last_seq().await.unwrap();
    assert!(last > 2900, "the log holds {last} events");

    // Event by event, in batches of uneven sizes.
    let incremental = ReadModel::open(&dir.path().join("incremental"), 1 << 20).unwrap();
    let events = log.read(1, usize::MAX).await.unwrap();
    let mut from = 0;
    for size in [1, 2, 500, 3, 1000].into_iter().cycle() {
        if from >= events.len() {
            break;
        }
        let to = (from + size).min(events.len());
        incremental.apply(&events[from..to]).unwrap();
        from = to;
    }
    let want = all_answers(&incremental);
    assert_eq!(incremental.applied_seq(), last);
    // The history is as odd as meant: deleted emails, saved segments, jobs.
    for org in ORGS {
        incremental.read(org, |view, _| {
            assert!(view.contact_count() > 100 && view.contact_count() < 400, "{}", view.contact_count());
            assert!(view.segments().count() > 2 && view.jobs().count() > 0);
            assert!(!view.reset_contacts("job-1").is_empty());
        });
    }

    // A rebuild: one bulk replay into an empty model.
    let rebuilt = ReadModel::open(&dir.path().join("rebuilt"), 1 << 20).unwrap();
    let reached = project_until(&log, &rebuilt, Until::Sequence(last)).await.unwrap();
    assert_eq!(reached.seq, last);
    assert_eq!(all_answers(&rebuilt), want, "bulk replay from empty");

    // A catch-up: half the log event by event, the rest in bulk.
    let caught_up = ReadModel::open(&dir.path().join("caught-up"), 1 << 20).unwrap();
    caught_up.apply(&events[..events.len() / 2]).unwrap();
    assert_eq!(catch_up(&log, &caught_up, 0).await.unwrap(), last);
    assert_eq!(all_answers(&caught_up), want, "bulk catch-up of a model half way");
    // And event by event again after it.
    let more = [events[events.len() - 1].clone()];
    assert_eq!(caught_up.apply(&more).unwrap(), last, "nothing applied twice");

    // What sled holds answers the same after reopening, for all three.
    for (name, model) in [("incremental", incremental), ("rebuilt", rebuilt), ("caught-up", caught_up)] {
        model.flush().await.unwrap();
        drop(model);
        let reopened = ReadModel::open(&dir.path().join(name), 1 << 20).unwrap();
        assert_eq!(reopened.applied_seq(), last, "{name}");
        assert_eq!(all_answers(&reopened), want, "{name} reopened");
    }
}

#[tokio::test]
async fn a_model_close_to_the_log_does_not_catch_up_in_bulk() {
    let dir = tempfile::tempdir().unwrap();
    let log = odd_log(dir.path()).await;
    let model = ReadModel::open(&dir.path().join("model"), 1 << 20).unwrap();
    let behind = log.last_seq().await.unwrap();
    assert_eq!(catch_up(&log, &model, behind + 1).await.unwrap(), 0, "left to the projector");
    assert_eq!(catch_up(&log, &model, behind).await.unwrap(), behind);
}
