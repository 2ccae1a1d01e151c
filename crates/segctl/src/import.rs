//! `segctl contacts import FILE.csv`: a CSV with a header (`email` is the
//! key, every other column a field) sent as UpsertContacts batches, up to
//! [`MAX_IN_FLIGHT`] at a time.
//!
//! Each batch's command id is `import-<id of this run>-<batch number>`, so a
//! retried batch records nothing twice. When an email appears on more than
//! one row, the later row must win: a batch never holds an email twice (it
//! is cut short instead), and a batch with an email that an earlier batch
//! also had waits until every batch in flight has been answered before it
//! is sent. Without repeated emails, batches run fully concurrently.

use crate::Output;
use crate::client::Api;
use crate::output::status_line;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use segmentd_proto::v1 as pb;
use std::collections::HashSet;
use std::path::Path;
use tokio::task::JoinSet;
use tonic::Status;

/// Batches sent but not yet answered, at most.
const MAX_IN_FLIGHT: usize = 4;
/// The server's limit on contacts per UpsertContacts.
pub(crate) const MAX_BATCH: u32 = 1000;

/// Which CSV column is the email; the others' names are field names.
#[derive(Debug)]
struct Columns {
    email: usize,
    names: Vec<String>,
}

impl Columns {
    fn from_headers(headers: &csv::StringRecord) -> anyhow::Result<Columns> {
        let names: Vec<String> = headers
            .iter()
            .enumerate()
            .map(|(i, h)| if i == 0 { h.trim_start_matches('\u{feff}') } else { h }.trim().to_owned())
            .collect();
        let mut email = None;
        let mut seen = HashSet::new();
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                bail!("column {} of the header has no name", i + 1);
            }
            if !seen.insert(name.as_str()) {
                bail!("the header names column {name:?} twice");
            }
            if name.eq_ignore_ascii_case("email") {
                if email.is_some() {
                    bail!("the header has two email columns");
                }
                email = Some(i);
            }
        }
        let Some(email) = email else {
            bail!("the header has no `email` column (it names the columns: {})", names.join(","))
        };
        Ok(Columns { email, names })
    }

    /// The row as a ContactInput: every column but the email becomes a
    /// field, empty cells included (an empty value clears the field).
    fn contact(&self, row: &csv::StringRecord) -> pb::ContactInput {
        let mut input = pb::ContactInput::default();
        for (i, value) in row.iter().enumerate() {
            if i == self.email {
                input.email = value.to_owned();
            } else if let Some(name) = self.names.get(i) {
                input.fields.insert(name.clone(), value.to_owned());
            }
        }
        input
    }
}

/// Emails as the server keys them (it trims and lowercases).
fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A batch to send: the rows' CSV lines, for error messages.
#[derive(Debug, Default)]
struct Batch {
    number: u64,
    lines: Vec<u64>,
    contacts: Vec<pb::ContactInput>,
    /// CSV bytes of the rows, for the progress bar.
    bytes: u64,
    /// Holds an email an earlier batch also holds: must not overtake it.
    after_earlier: bool,
}

/// Cuts rows into batches (pure; the pipeline sends them).
struct Batcher {
    size: usize,
    next_number: u64,
    current: Batch,
    in_current: HashSet<String>,
    seen: HashSet<String>,
}

impl Batcher {
    fn new(size: usize) -> Batcher {
        Batcher {
            size,
            next_number: 2,
            current: Batch { number: 1, ..Batch::default() },
            in_current: HashSet::new(),
            seen: HashSet::new(),
        }
    }

    fn cut(&mut self) -> Batch {
        let number = self.next_number;
        self.next_number += 1;
        self.in_current.clear();
        std::mem::replace(&mut self.current, Batch { number, ..Batch::default() })
    }

    /// Adds a row; returns the batches that are ready to send.
    fn push(&mut self, line: u64, contact: pb::ContactInput, bytes: u64) -> Vec<Batch> {
        let mut ready = Vec::new();
        let key = email_key(&contact.email);
        if self.in_current.contains(&key) {
            ready.push(self.cut());
        }
        if self.seen.contains(&key) {
            self.current.after_earlier = true;
        } else {
            self.seen.insert(key.clone());
        }
        self.in_current.insert(key);
        self.current.lines.push(line);
        self.current.contacts.push(contact);
        self.current.bytes += bytes;
        if self.current.contacts.len() >= self.size {
            ready.push(self.cut());
        }
        ready
    }

    fn finish(mut self) -> Option<Batch> {
        (!self.current.contacts.is_empty()).then(|| self.cut())
    }
}

/// The row index in a server message like `contacts[3].fields: …`.
fn row_in_message(message: &str) -> Option<usize> {
    let rest = &message[message.find("contacts[")? + "contacts[".len()..];
    rest[..rest.find(']')?].parse().ok()
}

/// Where a failed batch's rows are, for the error line.
fn whereabouts(number: u64, lines: &[u64], message: &str) -> String {
    let first = lines.first().copied().unwrap_or(0);
    let last = lines.last().copied().unwrap_or(0);
    let mut out = format!("batch {number}, CSV lines {first}-{last}");
    if let Some(line) = row_in_message(message).and_then(|i| lines.get(i)) {
        out.push_str(&format!("; contacts[{}] is on line {line}", row_in_message(message).unwrap_or(0)));
    }
    out
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    rows: u64,
    batches: u64,
    created: u64,
    updated: u64,
    unchanged: u64,
    /// Batches whose command id the server had seen (an earlier run's retry).
    duplicate_batches: u64,
    /// The highest sequence any batch answered.
    sequence: u64,
}

impl Totals {
    fn add(&mut self, rows: usize, reply: &pb::UpsertContactsReply) {
        self.rows += rows as u64;
        self.batches += 1;
        self.created += u64::from(reply.created);
        self.updated += u64::from(reply.updated);
        self.unchanged += u64::from(reply.unchanged);
        self.duplicate_batches += u64::from(reply.duplicate);
        self.sequence = self.sequence.max(reply.sequence);
    }

    fn text(&self) -> String {
        let mut out = format!(
            "imported {} rows in {} batches: {} created, {} updated, {} unchanged\n",
            self.rows, self.batches, self.created, self.updated, self.unchanged
        );
        if self.duplicate_batches > 0 {
            out.push_str(&format!("{} batches had been recorded before (same command id)\n", self.duplicate_batches));
        }
        out.push_str(&format!("sequence: {}\n", self.sequence));
        out
    }

    fn json(&self, import_id: &str) -> serde_json::Value {
        serde_json::json!({
            "import_id": import_id,
            "rows": self.rows,
            "batches": self.batches,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "duplicate_batches": self.duplicate_batches,
            "sequence": self.sequence,
        })
    }
}

struct Answer {
    number: u64,
    lines: Vec<u64>,
    bytes: u64,
    reply: Result<pb::UpsertContactsReply, Status>,
}

struct Pipeline {
    api: Api,
    import_id: String,
    in_flight: JoinSet<Answer>,
    totals: Totals,
    bar: ProgressBar,
}

impl Pipeline {
    async fn send(&mut self, batch: Batch) -> anyhow::Result<()> {
        if batch.after_earlier {
            while !self.in_flight.is_empty() {
                self.complete_one().await?;
            }
        }
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            self.complete_one().await?;
        }
        let request = pb::UpsertContactsRequest {
            command_id: format!("import-{}-{}", self.import_id, batch.number),
            contacts: batch.contacts,
        };
        let api = self.api.clone();
        let (number, lines, bytes) = (batch.number, batch.lines, batch.bytes);
        self.in_flight.spawn(async move { Answer { number, lines, bytes, reply: api.upsert_contacts(request).await } });
        Ok(())
    }

    async fn complete_one(&mut self) -> anyhow::Result<()> {
        let Some(joined) = self.in_flight.join_next().await else { return Ok(()) };
        let answer = joined.context("a batch's task failed")?;
        match answer.reply {
            Ok(reply) => {
                self.totals.add(answer.lines.len(), &reply);
                self.bar.inc(answer.bytes);
                self.bar.set_message(format!("{} rows", self.totals.rows));
                Ok(())
            }
            Err(status) => {
                let t = self.totals;
                bail!(
                    "{} ({})\nnote: {} other batches ({} rows) were written before this failure, and batches still in flight may \
                     have been; importing the file again is safe",
                    status_line(&status),
                    whereabouts(answer.number, &answer.lines, status.message()),
                    t.batches,
                    t.rows
                )
            }
        }
    }
}

pub(crate) async fn run(api: &Api, path: &Path, batch_size: u32, output: Output) -> anyhow::Result<String> {
    let batch_size = batch_size.clamp(1, MAX_BATCH) as usize;
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(file);
    let headers = reader.headers().with_context(|| format!("{}: cannot read the header", path.display()))?.clone();
    let columns = Columns::from_headers(&headers).with_context(|| path.display().to_string())?;

    let target = match output {
        Output::Json => ProgressDrawTarget::hidden(),
        Output::Text => ProgressDrawTarget::stderr(),
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})") {
        bar.set_style(style);
    }
    bar.set_position(reader.position().byte());

    let import_id = uuid::Uuid::new_v4().to_string();
    let mut pipeline = Pipeline {
        api: api.clone(),
        import_id: import_id.clone(),
        in_flight: JoinSet::new(),
        totals: Totals::default(),
        bar,
    };
    let result = read_and_send(&mut reader, &columns, batch_size, &mut pipeline, path).await;
    pipeline.bar.finish_and_clear();
    // On error, dropping the pipeline aborts the batches still in flight.
    result?;
    Ok(match output {
        Output::Text => pipeline.totals.text(),
        Output::Json => format!("{}\n", pipeline.totals.json(&import_id)),
    })
}

async fn read_and_send(
    reader: &mut csv::Reader<std::fs::File>,
    columns: &Columns,
    batch_size: usize,
    pipeline: &mut Pipeline,
    path: &Path,
) -> anyhow::Result<()> {
    let mut batcher = Batcher::new(batch_size);
    let mut row = csv::StringRecord::new();
    loop {
        let start = reader.position().byte();
        let more = reader.read_record(&mut row).with_context(|| path.display().to_string())?;
        if !more {
            break;
        }
        let line = row.position().map_or(0, csv::Position::line);
        let bytes = reader.position().byte().saturating_sub(start);
        for batch in batcher.push(line, columns.contact(&row), bytes) {
            pipeline.send(batch).await?;
        }
    }
    if let Some(batch) = batcher.finish() {
        pipeline.send(batch).await?;
    }
    while !pipeline.in_flight.is_empty() {
        pipeline.complete_one().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cells: &[&str]) -> csv::StringRecord {
        csv::StringRecord::from(cells.to_vec())
    }

    #[test]
    fn every_column_but_email_becomes_a_field() {
        let columns =
            Columns::from_headers(&record(&["\u{feff}contact_id", " Email ", "first_name", "age", "custom.plan"]))
                .unwrap();
        let c = columns.contact(&record(&["1", "Ada@Example.com", "Ada", "", "pro"]));
        assert_eq!(c.email, "Ada@Example.com");
        let mut fields: Vec<(&str, &str)> = c.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        fields.sort();
        assert_eq!(fields, vec![("age", ""), ("contact_id", "1"), ("custom.plan", "pro"), ("first_name", "Ada")]);
    }

    #[test]
    fn bad_headers_are_refused() {
        for (headers, why) in [
            (&["first_name", "age"][..], "no `email` column"),
            (&["email", "age", "age"][..], "twice"),
            (&["email", "", "age"][..], "column 2"),
            (&["email", "EMAIL"][..], "two email columns"),
        ] {
            let err = Columns::from_headers(&record(headers)).unwrap_err().to_string();
            assert!(err.contains(why), "{headers:?}: {err}");
        }
    }

    fn contact(email: &str) -> pb::ContactInput {
        pb::ContactInput { email: email.into(), ..Default::default() }
    }

    fn batches(size: usize, emails: &[&str]) -> Vec<(u64, Vec<u64>, bool)> {
        let mut batcher = Batcher::new(size);
        let mut out = Vec::new();
        for (i, email) in emails.iter().enumerate() {
            out.extend(batcher.push(i as u64 + 2, contact(email), 10));
        }
        out.extend(batcher.finish());
        out.into_iter()
            .map(|b| {
                assert_eq!(b.bytes, 10 * b.lines.len() as u64);
                (b.number, b.lines, b.after_earlier)
            })
            .collect()
    }

    #[test]
    fn rows_are_cut_into_numbered_batches() {
        assert_eq!(
            batches(2, &["a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io"]),
            vec![(1, vec![2, 3], false), (2, vec![4, 5], false), (3, vec![6], false)]
        );
        assert_eq!(batches(3, &[]), vec![]);
    }

    #[test]
    fn a_repeated_email_cuts_the_batch_and_waits_for_the_earlier_one() {
        // Same email (as the server keys it) twice within one batch's rows.
        assert_eq!(
            batches(10, &["a@x.io", "b@x.io", " A@X.io", "c@x.io"]),
            vec![(1, vec![2, 3], false), (2, vec![4, 5], true)]
        );
        // Repeated across batches: the later batch may not overtake.
        assert_eq!(
            batches(2, &["a@x.io", "b@x.io", "c@x.io", "d@x.io", "b@x.io"]),
            vec![(1, vec![2, 3], false), (2, vec![4, 5], false), (3, vec![6], true)]
        );
    }

    #[test]
    fn server_errors_name_the_csv_line() {
        let lines = [10, 11, 13];
        assert_eq!(
            whereabouts(4, &lines, "contacts[2].fields: field age: expected an integer"),
            "batch 4, CSV lines 10-13; contacts[2] is on line 13"
        );
        assert_eq!(whereabouts(4, &lines, "contacts[9].email: bad"), "batch 4, CSV lines 10-13");
        assert_eq!(whereabouts(4, &lines, "org is read-only"), "batch 4, CSV lines 10-13");
        assert_eq!(row_in_message("contacts[x]"), None);
    }

    #[test]
    fn totals_add_up_and_keep_the_last_sequence() {
        let mut t = Totals::default();
        t.add(3, &pb::UpsertContactsReply { sequence: 9, created: 2, updated: 1, unchanged: 0, duplicate: false });
        t.add(2, &pb::UpsertContactsReply { sequence: 7, created: 0, updated: 0, unchanged: 2, duplicate: true });
        assert_eq!(
            t,
            Totals { rows: 5, batches: 2, created: 2, updated: 1, unchanged: 2, duplicate_batches: 1, sequence: 9 }
        );
        assert!(t.text().ends_with("sequence: 9\n"));
        assert_eq!(t.json("id")["sequence"], 9);
        assert_eq!(t.json("id")["created"], 2);
    }
}
