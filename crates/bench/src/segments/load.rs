//! Loading the generated contacts: `gen_contacts.py` writes its CSV to a
//! temporary file (timed apart, so the generator's CPU does not compete with
//! either system), then the file is streamed through segmentd's command
//! path as a client would import it (`UpsertContacts` of `batch` contacts,
//! `concurrency` requests in flight) and, later, into PostgreSQL with COPY.
//!
//! segmentd lists members in the order their contacts were created, which
//! with concurrent requests is not the file's order; the replies say where
//! each request's events landed (a request's events are contiguous and in
//! request order: one log frame per request), and the CSV written for
//! PostgreSQL carries that sequence as `created_seq`.
//!
//! **Must not depend on** the server's crates: CSV in, gRPC out.

use anyhow::{Context as _, ensure};
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::commands_client::CommandsClient;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, mpsc};
use tonic::transport::Channel;

/// Runs the generator into `out`.
pub async fn generate(python: &str, script: &Path, count: u64, seed: u64, out: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = tokio::process::Command::new(python)
        .arg(script)
        .args(["--count", &count.to_string(), "--seed", &seed.to_string(), "--out"])
        .arg(out)
        .status()
        .await
        .with_context(|| format!("running {python} {}", script.display()))?;
    ensure!(status.success(), "{} failed: {status}", script.display());
    Ok(started.elapsed())
}

/// Where one request's contacts landed in the log.
#[derive(Clone, Copy, Debug)]
pub struct Placed {
    /// Index of its first contact in the file (0-based).
    pub first_row: u64,
    pub contacts: u64,
    /// Sequence of its last event.
    pub last_seq: u64,
}

/// A contact kept aside for the change-to-visible measurement.
#[derive(Clone, Debug)]
pub struct Probe {
    pub email: String,
    pub country: String,
}

#[derive(Debug)]
pub struct Loaded {
    pub contacts: u64,
    pub elapsed: Duration,
    pub placed: Vec<Placed>,
    pub last_seq: u64,
    pub probes: Vec<Probe>,
}

impl Loaded {
    pub fn rate(&self) -> f64 {
        self.contacts as f64 / self.elapsed.as_secs_f64()
    }
}

/// Streams `csv` into segmentd. Every contact is new: a reply that does not
/// say so for all of its request is an error. Every `probe_every`-th contact
/// is kept as a [`Probe`].
pub async fn into_segmentd(
    csv: &Path,
    clients: Vec<CommandsClient<Channel>>,
    batch: usize,
    probe_every: u64,
) -> anyhow::Result<Loaded> {
    let (tx, rx) = mpsc::channel::<(u64, pb::UpsertContactsRequest)>(clients.len() * 4);
    let csv = csv.to_owned();
    let reader = tokio::task::spawn_blocking(move || read_requests(&csv, batch.max(1), probe_every, &tx));
    let rx = Arc::new(Mutex::new(rx));
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let rx = Arc::clone(&rx);
            tokio::spawn(async move {
                let mut placed = Vec::new();
                loop {
                    let Some((first_row, request)) = rx.lock().await.recv().await else { break };
                    let n = request.contacts.len() as u64;
                    let reply = client.upsert_contacts(request).await.context("UpsertContacts")?.into_inner();
                    ensure!(
                        u64::from(reply.created) == n && !reply.duplicate,
                        "a request of {n} new contacts created {} (updated {}, unchanged {})",
                        reply.created,
                        reply.updated,
                        reply.unchanged
                    );
                    placed.push(Placed { first_row, contacts: n, last_seq: reply.sequence });
                }
                Ok::<_, anyhow::Error>(placed)
            })
        })
        .collect();
    let mut placed = Vec::new();
    for task in tasks {
        placed.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let (contacts, probes) = reader.await??;
    placed.sort_by_key(|p| p.first_row);
    let sent: u64 = placed.iter().map(|p| p.contacts).sum();
    ensure!(sent == contacts, "{sent} contacts acknowledged, {contacts} read");
    let last_seq = placed.iter().map(|p| p.last_seq).max().unwrap_or(0);
    Ok(Loaded { contacts, elapsed, placed, last_seq, probes })
}

/// The reader thread: CSV rows to requests, in file order.
fn read_requests(
    csv: &Path,
    batch: usize,
    probe_every: u64,
    tx: &mpsc::Sender<(u64, pb::UpsertContactsRequest)>,
) -> anyhow::Result<(u64, Vec<Probe>)> {
    let mut reader = csv::Reader::from_path(csv).with_context(|| format!("reading {}", csv.display()))?;
    let headers = reader.headers()?.clone();
    let email_col = headers.iter().position(|h| h == "email").context("the CSV has no email column")?;
    let country_col = headers.iter().position(|h| h == "country").context("the CSV has no country column")?;
    let mut rows = 0u64;
    let mut probes = Vec::new();
    let mut contacts = Vec::with_capacity(batch);
    let mut first_row = 0u64;
    let mut record = csv::StringRecord::new();
    let mut k = 0u64;
    let send = |first_row: u64, contacts: Vec<pb::ContactInput>, k: &mut u64| -> anyhow::Result<()> {
        let request = pb::UpsertContactsRequest { command_id: format!("segment-bench-load-{k}"), contacts };
        *k += 1;
        tx.blocking_send((first_row, request)).context("the load stopped early")
    };
    while reader.read_record(&mut record)? {
        let fields = headers
            .iter()
            .zip(record.iter())
            .enumerate()
            .filter(|(i, _)| *i != email_col)
            .map(|(_, (h, v))| (h.to_owned(), v.to_owned()))
            .collect();
        let email = record.get(email_col).unwrap_or_default().to_owned();
        if probe_every > 0 && rows % probe_every == probe_every / 2 {
            probes.push(Probe { email: email.clone(), country: record.get(country_col).unwrap_or_default().into() });
        }
        contacts.push(pb::ContactInput { email, fields });
        rows += 1;
        if contacts.len() == batch {
            send(first_row, std::mem::replace(&mut contacts, Vec::with_capacity(batch)), &mut k)?;
            first_row = rows;
        }
    }
    if !contacts.is_empty() {
        send(first_row, contacts, &mut k)?;
    }
    Ok((rows, probes))
}

/// Writes the generator's rows without the header and with the custom
/// fields' prefix dropped, plus `created_seq`, the log sequence each row's
/// contact was created at, for PostgreSQL's COPY.
pub fn write_postgres_csv(csv: &Path, placed: &[Placed], out: &Path) -> anyhow::Result<()> {
    let mut reader = csv::Reader::from_path(csv)?;
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_path(out)?;
    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    let mut batches = placed.iter();
    let mut current = batches.next();
    while reader.read_record(&mut record)? {
        while let Some(p) = current
            && row >= p.first_row + p.contacts
        {
            current = batches.next();
        }
        let p = current.filter(|p| row >= p.first_row).context("a CSV row that no request carried")?;
        let seq = p.last_seq + 1 - p.contacts + (row - p.first_row);
        record.push_field(&seq.to_string());
        writer.write_record(&record)?;
        row += 1;
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_row_gets_the_sequence_its_request_gave_it() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("in.csv");
        let out = dir.path().join("out.csv");
        std::fs::write(&csv, "contact_id,email\n1,a@x\n2,b@x\n3,c@x\n4,d@x\n5,e@x\n").unwrap();
        // Requests of two, answered out of order: rows 2-3 first (events 1-2).
        let placed = [
            Placed { first_row: 0, contacts: 2, last_seq: 4 },
            Placed { first_row: 2, contacts: 2, last_seq: 2 },
            Placed { first_row: 4, contacts: 1, last_seq: 5 },
        ];
        write_postgres_csv(&csv, &placed, &out).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "1,a@x,3\n2,b@x,4\n3,c@x,1\n4,d@x,2\n5,e@x,5\n");
    }
}
