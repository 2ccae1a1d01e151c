//! `append` on JetStream: validation, pipelined publishes with awaited acks,
//! and the conflict resolution that makes a retried command idempotent
//! beyond the duplicate window. The semantics are described in the crate
//! docs; the comments here say why each step is needed.
//!
//! **Must not depend on** tonic, prost or sled.

use crate::Inner;
use crate::errors::{PublishFailure, classify_publish};
use crate::read::{self, RawEvent};
use crate::subject::{
    COMMAND_ID_HEADER, EVENT_INDEX_HEADER, EVENT_TYPE_HEADER, aggregate_subject, header_safe, msg_id, parse_event_index,
};
use async_nats::Subject;
use async_nats::header::{HeaderMap, HeaderValue, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use segmentd_domain::AggregateId;
use segmentd_log::{AppendError, AppendRequest, Appended, LogError, Seq, codec};
use std::collections::HashSet;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// Longest command id accepted; it is repeated in every message id.
const MAX_COMMAND_ID_BYTES: usize = 1024;

/// One entry, ready to publish.
struct Entry {
    aggregate: AggregateId,
    subject: Subject,
    expected: Seq,
    events: Vec<Event>,
}

/// One event: its bytes and every header but the expected sequence, which
/// depends on what was acknowledged before it.
struct Event {
    payload: Bytes,
    headers: HeaderMap,
}

enum EntryError {
    Conflict { actual: Seq },
    Log(LogError),
}

enum PublishError {
    WrongLastSequence,
    Log(LogError),
}

/// What a conflict on an entry turned out to be.
enum Resolution {
    /// The entry's events are all in the log already (an earlier attempt).
    Complete { seq: Seq },
    /// An earlier attempt stored the entry's events up to `next - 1`, and
    /// they are still the aggregate's last: continue from `next`.
    Resume { next: usize, after: Seq },
    /// Someone else's events: a real conflict.
    Conflict { actual: Seq },
}

pub(crate) async fn append(inner: &Inner, request: AppendRequest) -> Result<Appended, AppendError> {
    let entries = prepare(&inner.config.subject_prefix, &request, inner.client.max_payload())?;
    let deadline = Instant::now() + inner.config.append_timeout;
    let command_id = request.command_id.as_str();
    let mut states: Vec<State> = entries.iter().map(|e| State::new(e.expected)).collect();
    // Every event of the request, in request order.
    let order: Vec<(usize, usize)> =
        entries.iter().enumerate().flat_map(|(e, entry)| (0..entry.events.len()).map(move |k| (e, k))).collect();

    // Publishes go out in request order without waiting for acks, so a
    // thousand single-event entries cost about one round trip, not a
    // thousand, and land in the log in the order they were decided (one
    // connection, one stream: the server stores them as they arrive). The
    // one thing that waits is an entry's next event, which must expect the
    // sequence its predecessor got; events after it wait with it, to keep
    // the order. async-nats bounds the acks outstanding (`max_in_flight`).
    let mut cursor = 0;
    let mut running: FuturesUnordered<StepFuture<'_>> = FuturesUnordered::new();
    loop {
        while cursor < order.len() && running.len() < inner.config.max_in_flight {
            let (e, k) = order[cursor];
            let state = &mut states[e];
            if state.end.is_some() || k < state.next {
                // The entry has failed or was found complete, or an earlier
                // attempt stored this event already.
                cursor += 1;
                continue;
            }
            if state.busy {
                break;
            }
            state.busy = true;
            // The send itself is awaited here, in request order: the server
            // stores messages in the order they are sent, and futures pushed
            // into `running` would be first polled (sent) in any order. Only
            // the acks are awaited concurrently.
            let sent = send(inner, &entries[e], k, state.expected).await;
            running.push(Box::pin(publish_step(inner, &entries[e], e, k, state.expected, deadline, sent)));
            cursor += 1;
        }
        // Empty only when every event was handled: a blocked cursor always
        // waits on a publish or resolution of its own entry.
        let Some(step) = running.next().await else { break };
        match step {
            Step::Published { entry: e, k, result } => {
                let state = &mut states[e];
                match result {
                    Ok(ack) => {
                        state.busy = false;
                        state.wrote |= !ack.duplicate;
                        state.last_seq = state.last_seq.max(ack.sequence);
                        state.expected = ack.sequence;
                        state.next = k + 1;
                        if state.next == entries[e].events.len() {
                            state.end = Some(Ok(()));
                        }
                    }
                    // Still busy: nothing more of this entry goes out until
                    // the conflict is understood.
                    Err(PublishError::WrongLastSequence) => {
                        running.push(Box::pin(resolve_step(inner, &entries[e], e, k, command_id, state.wrote)));
                    }
                    Err(PublishError::Log(err)) => {
                        state.busy = false;
                        state.end = Some(Err(EntryError::Log(err)));
                    }
                }
            }
            Step::Resolved { entry: e, k, result } => {
                let state = &mut states[e];
                state.busy = false;
                match result {
                    Ok(Resolution::Complete { seq }) => {
                        state.last_seq = state.last_seq.max(seq);
                        state.end = Some(Ok(()));
                    }
                    // Strictly forward, so resolutions cannot loop.
                    Ok(Resolution::Resume { next, after }) if next > k => {
                        tracing::debug!(aggregate = %entries[e].aggregate, next, after, "completing a partly appended entry");
                        state.next = next;
                        state.expected = after;
                        state.last_seq = state.last_seq.max(after);
                        // The cursor stopped at this entry's event k + 1
                        // (it never passes a busy entry), so it will come
                        // to `next` and skip what lies between.
                    }
                    Ok(Resolution::Resume { after, .. }) => {
                        state.end = Some(Err(EntryError::Conflict { actual: after }))
                    }
                    Ok(Resolution::Conflict { actual }) => state.end = Some(Err(EntryError::Conflict { actual })),
                    Err(err) => state.end = Some(Err(EntryError::Log(err))),
                }
            }
        }
    }

    let mut last_seq = 0;
    let mut wrote = false;
    let mut conflict = None;
    let mut failure = None;
    for (state, entry) in states.into_iter().zip(&entries) {
        last_seq = last_seq.max(state.last_seq);
        wrote |= state.wrote;
        match state.end {
            Some(Ok(())) => {}
            Some(Err(EntryError::Conflict { actual })) => {
                conflict.get_or_insert(AppendError::Conflict {
                    aggregate: entry.aggregate.clone(),
                    expected: entry.expected,
                    actual,
                });
            }
            Some(Err(EntryError::Log(e))) => {
                failure.get_or_insert(e);
            }
            None => {
                failure
                    .get_or_insert(LogError::Unavailable(format!("the append to {} did not finish", entry.aggregate)));
            }
        }
    }
    // Whatever was stored is visible to subscribers, even if another entry
    // of the request failed: the log's tail did move.
    inner.advance_tail(last_seq);
    // An unknown outcome outranks a conflict: the caller must retry the same
    // command id either way, and "unavailable" does not claim more than we know.
    if let Some(e) = failure {
        return Err(AppendError::Log(e));
    }
    if let Some(c) = conflict {
        return Err(c);
    }
    Ok(if wrote { Appended::New { last_seq } } else { Appended::Duplicate { last_seq } })
}

/// Where one entry stands during an append.
struct State {
    /// The next event to publish.
    next: usize,
    /// The sequence that event must expect.
    expected: Seq,
    /// A publish or a resolution of this entry is outstanding.
    busy: bool,
    last_seq: Seq,
    /// At least one event was stored by this call (not a duplicate).
    wrote: bool,
    end: Option<Result<(), EntryError>>,
}

impl State {
    fn new(expected: Seq) -> Self {
        State { next: 0, expected, busy: false, last_seq: 0, wrote: false, end: None }
    }
}

enum Step {
    Published { entry: usize, k: usize, result: Result<PublishAck, PublishError> },
    Resolved { entry: usize, k: usize, result: Result<Resolution, LogError> },
}

type StepFuture<'a> = Pin<Box<dyn Future<Output = Step> + Send + 'a>>;

async fn publish_step(
    inner: &Inner,
    entry: &Entry,
    e: usize,
    k: usize,
    expected: Seq,
    deadline: Instant,
    sent: Option<Sent>,
) -> Step {
    let result = publish(inner, &entry.subject, &entry.events[k], expected, deadline, sent).await;
    Step::Published { entry: e, k, result }
}

/// A publish on its way: the ack to await, or why it could not be sent.
type Sent = Result<PublishAckFuture, async_nats::jetstream::context::PublishError>;

/// Sends event `k` of `entry` without awaiting its ack; `None` when the
/// connection is down (the retry loop in [`publish`] then waits for it).
async fn send(inner: &Inner, entry: &Entry, k: usize, expected: Seq) -> Option<Sent> {
    inner.wait_connected().await.ok()?;
    Some(inner.js.send_publish(entry.subject.clone(), message(&entry.events[k], expected)).await)
}

fn message(event: &Event, expected: Seq) -> PublishMessage {
    let mut headers = event.headers.clone();
    headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, HeaderValue::from(expected));
    PublishMessage::build().payload(event.payload.clone()).headers(headers)
}

async fn resolve_step(inner: &Inner, entry: &Entry, e: usize, k: usize, command_id: &str, wrote: bool) -> Step {
    Step::Resolved { entry: e, k, result: resolve(inner, entry, command_id, wrote).await }
}

/// The embedded log's rules (see `segmentd_log::embedded`), plus what
/// subjects and headers need.
fn prepare(prefix: &str, request: &AppendRequest, max_payload: usize) -> Result<Vec<Entry>, LogError> {
    let invalid = |msg: String| Err(LogError::InvalidRequest(msg));
    let AppendRequest { org, command_id, entries } = request;
    if command_id.is_empty() {
        return invalid("the command id is empty".into());
    }
    if command_id.len() > MAX_COMMAND_ID_BYTES {
        return invalid(format!("the command id is longer than {MAX_COMMAND_ID_BYTES} bytes"));
    }
    if entries.iter().all(|e| e.events.is_empty()) {
        return invalid(format!("command {command_id} appends no events"));
    }
    let command_header = HeaderValue::from(header_safe(command_id).as_ref());
    let mut seen = HashSet::with_capacity(entries.len());
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let aggregate = &entry.aggregate;
        if entry.events.is_empty() {
            return invalid(format!("the entry for {aggregate} has no events"));
        }
        if aggregate.org != *org {
            return invalid(format!("aggregate {aggregate} is not in the request's organisation {org}"));
        }
        if !seen.insert(aggregate) {
            return invalid(format!("aggregate {aggregate} has more than one entry; put its events in one"));
        }
        let subject = aggregate_subject(prefix, aggregate)?;
        let n = entry.events.len();
        let mut events = Vec::with_capacity(n);
        for (k, event) in entry.events.iter().enumerate() {
            if event.aggregate != *aggregate {
                return invalid(format!("an event for {} is in the entry for {aggregate}", event.aggregate));
            }
            if event.command_id != *command_id {
                return invalid(format!(
                    "an event carries command id {:?}, the request {command_id:?}",
                    event.command_id
                ));
            }
            let payload = codec::encode(event);
            // Headers and subject ride along; leave them a kilobyte.
            if payload.len() + 1024 > max_payload {
                return invalid(format!(
                    "an event of {aggregate} encodes to {} bytes; the server takes at most {max_payload} per message",
                    payload.len()
                ));
            }
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, msg_id(org, command_id, &subject, k).as_str());
            headers.insert(COMMAND_ID_HEADER, command_header.clone());
            headers.insert(EVENT_TYPE_HEADER, event.event.type_name());
            headers.insert(EVENT_INDEX_HEADER, format!("{k}/{n}").as_str());
            events.push(Event { payload: Bytes::from(payload), headers });
        }
        out.push(Entry {
            aggregate: aggregate.clone(),
            subject: Subject::from(subject),
            expected: entry.expected_last_seq,
            events,
        });
    }
    Ok(out)
}

/// An expected-sequence conflict: is it this very command, appended by an
/// earlier attempt whose message ids JetStream no longer remembers?
async fn resolve(inner: &Inner, entry: &Entry, command_id: &str, wrote: bool) -> Result<Resolution, LogError> {
    let n = entry.events.len();
    let Some(last) = read::last_raw(inner, &entry.subject).await? else {
        // Expected events that are not there: nothing of ours either.
        return Ok(Resolution::Conflict { actual: 0 });
    };
    if let Some(k) = ours(&last, command_id)? {
        return Ok(if k + 1 >= n {
            Resolution::Complete { seq: last.seq }
        } else {
            Resolution::Resume { next: k + 1, after: last.seq }
        });
    }
    // Others wrote after us? Our complete entry may sit between the
    // decision's sequence and their events. Not when this call stored part
    // of the entry itself: then another writer cut into it.
    if !wrote && last.seq > entry.expected + 1 {
        let between = read::scan(inner, &entry.subject, entry.expected + 1, last.seq - 1, usize::MAX).await?;
        let mut complete = None;
        for msg in &between {
            if ours(msg, command_id)?.is_some_and(|k| k + 1 >= n) {
                complete = Some(msg.seq);
            }
        }
        if let Some(seq) = complete {
            return Ok(Resolution::Complete { seq });
        }
    }
    Ok(Resolution::Conflict { actual: last.seq })
}

/// `Some(k)` when `msg` is event `k` of an entry of `command_id`. The
/// command id is read from the encoded event (authoritative); the index from
/// its header (an event without one counts as the entry's last).
fn ours(msg: &RawEvent, command_id: &str) -> Result<Option<usize>, LogError> {
    let (_, _, header, _) =
        codec::decode_header(&msg.payload).map_err(|e| LogError::Corrupt { seq: msg.seq, reason: e.to_string() })?;
    if header.command_id != command_id {
        return Ok(None);
    }
    let k = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(EVENT_INDEX_HEADER))
        .and_then(|v| parse_event_index(v.as_str()))
        .unwrap_or(usize::MAX - 1);
    Ok(Some(k))
}

/// One publish with its ack awaited, retried on transient failures until
/// `deadline`. A retry is safe: it carries the same `Nats-Msg-Id`, so a
/// first attempt that was stored is acknowledged as a duplicate.
async fn publish(
    inner: &Inner,
    subject: &Subject,
    event: &Event,
    expected: Seq,
    deadline: Instant,
    mut sent: Option<Sent>,
) -> Result<PublishAck, PublishError> {
    let mut attempt: u32 = 0;
    loop {
        let sent = match sent.take() {
            Some(sent) => sent,
            None => {
                inner.wait_connected().await.map_err(PublishError::Log)?;
                inner.js.send_publish(subject.clone(), message(event, expected)).await
            }
        };
        // Never drop the ack future: a dropped ack only gets logged by
        // async-nats, and the caller would be told "durable" on a guess.
        let result = match sent {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        let err = match result {
            // A retry answered as a duplicate after an attempt of this call
            // failed without an answer (typically its ack timed out): that
            // attempt is what stored the event, so this call wrote it. A
            // retry of a whole request, by contrast, is a duplicate on its
            // first attempt. Left as a duplicate, a slow server would make
            // the request report that it created nothing.
            Ok(mut ack) if attempt > 0 && ack.duplicate => {
                ack.duplicate = false;
                return Ok(ack);
            }
            Ok(ack) => return Ok(ack),
            Err(e) => e,
        };
        match classify_publish(&err) {
            PublishFailure::WrongLastSequence => return Err(PublishError::WrongLastSequence),
            PublishFailure::Invalid(why) => return Err(PublishError::Log(LogError::InvalidRequest(why))),
            PublishFailure::Fatal(why) => {
                return Err(PublishError::Log(LogError::Unavailable(format!("publishing to {subject}: {why}"))));
            }
            PublishFailure::Retryable(why) => {
                attempt += 1;
                let pause = Duration::from_millis(20u64 << attempt.min(5)).min(Duration::from_millis(500));
                if Instant::now() + pause >= deadline {
                    return Err(PublishError::Log(LogError::Unavailable(format!(
                        "publishing to {subject} kept failing ({attempt} attempts): {why}"
                    ))));
                }
                tracing::debug!(%subject, attempt, error = %why, "retrying a publish");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segmentd_log::AppendEntry;

    fn envelope(agg: &AggregateId, command_id: &str) -> segmentd_domain::Envelope {
        segmentd_domain::Envelope {
            event_id: 1,
            command_id: command_id.into(),
            aggregate: agg.clone(),
            actor: "t".into(),
            time: segmentd_domain::Timestamp(0),
            event: segmentd_domain::Event::ContactDeleted(segmentd_domain::event::ContactDeleted {
                email: agg.id.clone(),
            }),
        }
    }

    #[test]
    fn prepared_events_carry_the_headers() {
        let a = AggregateId::contact("org1", "a@example.com");
        let req = AppendRequest {
            org: "org1".into(),
            command_id: "c 1".into(),
            entries: vec![AppendEntry {
                aggregate: a.clone(),
                expected_last_seq: 7,
                events: vec![envelope(&a, "c 1"), envelope(&a, "c 1")],
            }],
        };
        let entries = prepare("p", &req, 1 << 20).unwrap();
        let h = &entries[0].events[1].headers;
        assert_eq!(h.get(COMMAND_ID_HEADER).unwrap().as_str(), "c%201");
        assert_eq!(h.get(EVENT_TYPE_HEADER).unwrap().as_str(), "ContactDeleted");
        assert_eq!(h.get(EVENT_INDEX_HEADER).unwrap().as_str(), "1/2");
        assert!(h.get(NATS_MESSAGE_ID).unwrap().as_str().starts_with("org1:c%201:"));
        assert!(h.get(NATS_MESSAGE_ID).unwrap().as_str().ends_with(":1"));
        assert_eq!(entries[0].expected, 7);
    }

    #[test]
    fn oversized_events_are_refused_before_publishing() {
        let a = AggregateId::contact("org1", "a@example.com");
        let req = AppendRequest {
            org: "org1".into(),
            command_id: "c".into(),
            entries: vec![AppendEntry { aggregate: a.clone(), expected_last_seq: 0, events: vec![envelope(&a, "c")] }],
        };
        assert!(matches!(prepare("p", &req, 1000), Err(LogError::InvalidRequest(_))));
    }
}
