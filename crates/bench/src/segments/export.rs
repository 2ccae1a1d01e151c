//! Exporting every contact as CSV on both systems: segmentd's
//! `ExportContacts` stream of a saved segment that holds every contact,
//! written as CSV the way `segctl segments export` writes it (the `csv`
//! crate, header then one record per row), and PostgreSQL's
//! `COPY (SELECT … ORDER BY created_seq) TO STDOUT WITH CSV` of the same
//! columns in the same order. Both sides' bytes go to a counter rather than
//! a file, so the disk is not what is measured. Rows/s are only reported
//! when both sides exported the same number of rows.
//!
//! **Must not depend on** the server's crates: gRPC and SQL only.

use crate::segments::postgres::Postgres;
use anyhow::{Context as _, ensure};
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::export_contacts_reply::Part;
use segmentd_proto::v1::queries_client::QueriesClient;
use std::io::Write;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// A criterion every contact meets: an email is a contact's identity.
pub const EVERYONE: &str = "email is_not_empty";

/// The columns of an export without `fields` (every built-in field in the
/// generator's column order), as PostgreSQL names them.
pub const COLUMNS: &str = "contact_id, email, first_name, last_name, company, city, state, country, age, gender, \
     score, lifecycle_stage, total_spent, purchase_count, last_purchase_at, last_opened_at, added_at, updated_at";

/// One side's export: rows, CSV bytes, time from the request to the last byte.
#[derive(Clone, Copy, Debug)]
pub struct Side {
    pub rows: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Side {
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Exported {
    pub segmentd: Side,
    pub postgres: Side,
}

/// Counts the bytes written to it and drops them.
#[derive(Default)]
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Exports segment `segment_id` (every contact) from segmentd and the whole
/// table from PostgreSQL; fails when the row counts differ.
pub async fn measure(
    queries: &mut QueriesClient<Channel>,
    pg: &Postgres,
    segment_id: u64,
    min_sequence: u64,
    contacts: u64,
) -> anyhow::Result<Exported> {
    let segmentd = from_segmentd(queries, segment_id, min_sequence).await?;
    let postgres = pg.copy_out_csv(&format!("SELECT {COLUMNS} FROM contacts ORDER BY created_seq")).await?;
    let postgres = Side { rows: postgres.0, bytes: postgres.1, elapsed: postgres.2 };
    ensure!(
        segmentd.rows == postgres.rows && segmentd.rows == contacts,
        "export: segmentd wrote {} rows, PostgreSQL {}, {contacts} contacts were loaded",
        segmentd.rows,
        postgres.rows
    );
    Ok(Exported { segmentd, postgres })
}

async fn from_segmentd(
    queries: &mut QueriesClient<Channel>,
    segment_id: u64,
    min_sequence: u64,
) -> anyhow::Result<Side> {
    let request = pb::ExportContactsRequest {
        segment: Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Id(segment_id)) }),
        fields: Vec::new(),
        date_filter: None,
        min_sequence,
        at: String::new(),
        as_of: None,
    };
    let started = Instant::now();
    let mut stream = queries.export_contacts(request).await.context("ExportContacts")?.into_inner();
    let mut out = csv::Writer::from_writer(Counter::default());
    let (mut total, mut rows) = (None, 0u64);
    while let Some(reply) = stream.message().await.context("ExportContacts stream")? {
        match reply.part {
            Some(Part::Header(header)) => {
                out.write_record(&header.fields)?;
                total = Some(header.total);
            }
            Some(Part::Rows(chunk)) => {
                for row in chunk.rows {
                    out.write_record(&row.values)?;
                    rows += 1;
                }
            }
            None => {}
        }
    }
    out.flush()?;
    let elapsed = started.elapsed();
    ensure!(total == Some(rows), "export: the header announced {total:?} rows, {rows} came");
    let bytes = out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?.0;
    Ok(Side { rows, bytes, elapsed })
}

/// Records in CSV `bytes` read so far: line ends outside quotes (a quoted
/// value may hold a line end; `""` inside quotes toggles twice).
#[derive(Default)]
pub struct CsvRows {
    quoted: bool,
    pub rows: u64,
}

impl CsvRows {
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'"' => self.quoted = !self.quoted,
                b'\n' if !self.quoted => self.rows += 1,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_count_line_ends_outside_quotes_across_chunks() {
        let mut rows = CsvRows::default();
        let text = b"1,a@x.com,\"two\nlines\"\n2,b@x.com,\"say \"\"hi\"\"\"\n3,c@x.com,\n";
        for chunk in text.chunks(5) {
            rows.feed(chunk);
        }
        assert_eq!(rows.rows, 3);
    }
}
