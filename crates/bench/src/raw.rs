//! Measurement (b): raw async-nats JetStream publishes of the same messages
//! (real encoded `ContactCreated` payloads sampled from the command path's
//! stream, subjects of the same length, one subject per message as there
//! is one per new contact) to a stream of its own on the same server, every
//! ack awaited. Two shapes:
//!
//! - **pipelined**: one task keeps up to `window` acks outstanding (the
//!   command node's `max_in_flight`), the most a single publisher gets;
//! - **concurrent**: `concurrency` tasks on one connection, each sending a
//!   batch of `batch` publishes and then awaiting their acks, which is what
//!   the command node does for `concurrency` concurrent requests.
//!
//! Optionally (`headers`) each message carries the headers the event log
//! sends (`Nats-Msg-Id`, `Nats-Expected-Last-Subject-Sequence` and the three
//! `Segmentd-*`), which isolates what the server's de-duplication and
//! expected-sequence checks cost. And [`lookups`] times the per-contact
//! "last message of this subject" request the writer makes before deciding,
//! as the event log makes it today and as a JetStream direct get.
//!
//! **Must not depend on** segmentd-server or segmentd-log-nats: this is the
//! baseline, plain async-nats.

use crate::cpu::{CpuMeter, CpuUse};
use crate::streams::{Sample, StreamName};
use anyhow::{Context as _, bail, ensure};
use async_nats::Subject;
use async_nats::header::{HeaderMap, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::Context;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, LastRawMessageErrorKind};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Barrier;

/// `.default.contact.`: what follows the prefix before the hex of the id.
const SUBJECT_MIDDLE: &str = ".default.contact.";

/// How the publishes are issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Pipelined { window: usize },
    Concurrent { concurrency: usize, batch: usize },
}

/// One run of raw publishes (or lookups).
#[derive(Clone, Copy, Debug)]
pub struct RawRun {
    pub messages: u64,
    pub elapsed: Duration,
    /// CPU of this process (the publisher) and of the server.
    pub cpu: CpuUse,
}

impl RawRun {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

/// A JetStream context configured like the event log's.
pub fn context(client: async_nats::Client, max_in_flight: usize) -> Context {
    async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(max_in_flight)
        .backpressure_on_inflight(true)
        .build(client)
}

/// The subject of message `i`: the prefix, `.default.contact.`, and `i` in
/// hex padded to the sampled length of a real subject.
pub fn subject(prefix: &str, i: usize, sample: &Sample) -> String {
    let width = (sample.subject_suffix_mean.round() as usize).saturating_sub(SUBJECT_MIDDLE.len());
    format!("{prefix}{SUBJECT_MIDDLE}{i:0width$x}")
}

/// `n` messages, ready to publish: built before the clock starts.
pub fn messages(
    name: &StreamName,
    sample: &Sample,
    n: usize,
    headers: bool,
    batch: usize,
) -> Vec<(Subject, PublishMessage)> {
    (0..n)
        .map(|i| {
            let subject = subject(&name.prefix, i, sample);
            let mut message = PublishMessage::build().payload(sample.payloads[i % sample.payloads.len()].clone());
            if headers {
                let command = format!("bench-{}-{}", name.stream, i / batch.max(1));
                let mut h = HeaderMap::new();
                h.insert(NATS_MESSAGE_ID, format!("default:{command}:{i:016x}:0").as_str());
                h.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
                h.insert(segmentd_log_nats::COMMAND_ID_HEADER, command.as_str());
                h.insert(segmentd_log_nats::EVENT_TYPE_HEADER, "ContactCreated");
                h.insert(segmentd_log_nats::EVENT_INDEX_HEADER, "0/1");
                message = message.headers(h);
            }
            (Subject::from(subject), message)
        })
        .collect()
}

/// Publishes every message with the given shape and awaits every ack.
pub async fn publish(
    js: &Context,
    messages: Vec<(Subject, PublishMessage)>,
    shape: Shape,
    server_pid: Option<&str>,
) -> anyhow::Result<RawRun> {
    let n = messages.len() as u64;
    let meter = CpuMeter::start(server_pid);
    let mut run = match shape {
        Shape::Pipelined { window } => pipelined(js, messages, window).await?,
        Shape::Concurrent { concurrency, batch } => concurrent(js, messages, concurrency, batch).await?,
    };
    run.cpu = meter.stop();
    ensure!(run.messages == n, "{} of {n} publishes were stored", run.messages);
    Ok(run)
}

async fn pipelined(js: &Context, messages: Vec<(Subject, PublishMessage)>, window: usize) -> anyhow::Result<RawRun> {
    let started = Instant::now();
    let mut acks = FuturesUnordered::new();
    let mut stored = 0;
    for (subject, message) in messages {
        if acks.len() >= window.max(1)
            && let Some(ack) = acks.next().await
        {
            stored += check(ack)?;
        }
        acks.push(js.send_publish(subject, message).await.context("publishing")?.into_future());
    }
    while let Some(ack) = acks.next().await {
        stored += check(ack)?;
    }
    Ok(RawRun { messages: stored, elapsed: started.elapsed(), cpu: CpuUse::default() })
}

async fn concurrent(
    js: &Context,
    messages: Vec<(Subject, PublishMessage)>,
    concurrency: usize,
    batch: usize,
) -> anyhow::Result<RawRun> {
    let mut batches = Vec::new();
    let mut it = messages.into_iter().peekable();
    while it.peek().is_some() {
        batches.push(it.by_ref().take(batch.max(1)).collect::<Vec<_>>());
    }
    batches.reverse();
    let queue = Arc::new(Mutex::new(batches));
    let start_line = Arc::new(Barrier::new(concurrency.max(1) + 1));
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (js, queue, start_line) = (js.clone(), Arc::clone(&queue), Arc::clone(&start_line));
            tokio::spawn(async move {
                start_line.wait().await;
                let mut stored = 0u64;
                loop {
                    let Some(batch) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else { break };
                    let mut acks = Vec::with_capacity(batch.len());
                    for (subject, message) in batch {
                        acks.push(js.send_publish(subject, message).await.context("publishing")?.into_future());
                    }
                    for ack in futures::future::join_all(acks).await {
                        stored += check(ack)?;
                    }
                }
                Ok::<_, anyhow::Error>((stored, Instant::now()))
            })
        })
        .collect();
    start_line.wait().await;
    let started = Instant::now();
    let (mut stored, mut last) = (0, started);
    for task in tasks {
        let (n, ended) = task.await??;
        stored += n;
        last = last.max(ended);
    }
    Ok(RawRun { messages: stored, elapsed: last - started, cpu: CpuUse::default() })
}

fn check(
    ack: Result<async_nats::jetstream::publish::PublishAck, async_nats::jetstream::context::PublishError>,
) -> anyhow::Result<u64> {
    let ack = ack.context("awaiting a publish ack")?;
    if ack.duplicate {
        bail!("publish {} was acknowledged as a duplicate", ack.sequence);
    }
    Ok(1)
}

/// How the last message of a subject is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// `$JS.API.STREAM.MSG.GET` with `last_by_subj`: a JetStream API
    /// request answered by the stream leader with JSON; what the event
    /// log's `last_of` uses today.
    MsgGet,
    /// `$JS.API.DIRECT.GET.<stream>.<subject>` (needs `allow_direct`): the
    /// message itself comes back, not-found is a status header.
    DirectGet,
}

/// `n` "last message of subject" requests for subjects with no message, the
/// request the writer makes per contact before deciding, issued like
/// `concurrency` concurrent commands of `batch` contacts each: all of a batch
/// at once, then the next batch.
#[allow(clippy::too_many_arguments)]
pub async fn lookups(
    js: &Context,
    name: &StreamName,
    sample: &Sample,
    n: usize,
    concurrency: usize,
    batch: usize,
    how: Lookup,
    server_pid: Option<&str>,
) -> anyhow::Result<RawRun> {
    let stream = js.get_stream(&name.stream).await.with_context(|| format!("looking up stream {}", name.stream))?;
    let subjects: Vec<String> = (0..n).map(|i| subject(&format!("{}.absent", name.prefix), i, sample)).collect();
    let mut batches: Vec<Vec<String>> = subjects.chunks(batch.max(1)).map(<[String]>::to_vec).collect();
    batches.reverse();
    let queue = Arc::new(Mutex::new(batches));
    let start_line = Arc::new(Barrier::new(concurrency.max(1) + 1));
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (stream, queue, start_line) = (stream.clone(), Arc::clone(&queue), Arc::clone(&start_line));
            tokio::spawn(async move {
                start_line.wait().await;
                let mut done = 0u64;
                loop {
                    let Some(batch) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else { break };
                    let answers = futures::future::join_all(batch.into_iter().map(|s| {
                        let stream = &stream;
                        async move {
                            match how {
                                Lookup::MsgGet => match stream.get_last_raw_message_by_subject(&s).await {
                                    Ok(_) => Ok(true),
                                    Err(e) => match e.kind() {
                                        LastRawMessageErrorKind::NoMessageFound
                                        | LastRawMessageErrorKind::JetStream(_) => Ok(false),
                                        _ => Err(anyhow::Error::new(e).context("a lookup failed")),
                                    },
                                },
                                Lookup::DirectGet => match stream.direct_get_last_for_subject(s).await {
                                    Ok(_) => Ok(true),
                                    Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => Ok(false),
                                    Err(e) => Err(anyhow::Error::new(e).context("a direct get failed")),
                                },
                            }
                        }
                    }))
                    .await;
                    for found in answers {
                        ensure!(!found?, "a subject that should be empty has a message");
                        done += 1;
                    }
                }
                Ok::<_, anyhow::Error>((done, Instant::now()))
            })
        })
        .collect();
    let meter = CpuMeter::start(server_pid);
    start_line.wait().await;
    let started = Instant::now();
    let (mut done, mut last) = (0, started);
    for task in tasks {
        let (n, ended) = task.await??;
        done += n;
        last = last.max(ended);
    }
    Ok(RawRun { messages: done, elapsed: last - started, cpu: meter.stop() })
}
