//! The PostgreSQL side of the segment benchmark: a scratch schema of its own
//! (dropped at the end) holding one `contacts` table with the columns of
//! criteria.md (citext text, integers, `numeric(12,2)`, `timestamptz`, the
//! custom fields as `plan` and `industry`) plus `created_seq`, the log
//! sequence of the contact's creation in segmentd, which is the order
//! segmentd lists members in. Loaded with COPY, then indexed:
//!
//! - B-tree on `country`, `lifecycle_stage`, `gender`, `plan`, `industry`,
//!   `age`, `score`, `total_spent`, `purchase_count`, `last_opened_at`,
//!   `added_at` and `created_seq`;
//! - trigram GIN (`pg_trgm`) on `email`, `company` and `last_name`, for
//!   substring, prefix and suffix matching;
//!
//! then `VACUUM ANALYZE` (fresh statistics, and a visibility map that lets
//! counts use index-only scans). The `citext` and `pg_trgm` extensions are
//! used where the database already has them, else created inside the
//! scratch schema so that dropping it leaves the database as it was.
//!
//! Queries go through the simple query protocol as literal SQL, the way an
//! ad-hoc segmentation query would: planned every time, every column of the
//! page returned as text.
//!
//! **Must not depend on** segmentd: it knows SQL and the generator's CSV.

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use futures::SinkExt as _;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Text columns of the table (citext, `''` when empty), in CSV order where
/// they occur there.
pub const TEXT_COLUMNS: [&str; 11] = [
    "email",
    "first_name",
    "last_name",
    "company",
    "city",
    "state",
    "country",
    "gender",
    "lifecycle_stage",
    "plan",
    "industry",
];

/// Every column in the order of the COPY input: the generator's columns
/// (custom fields without their prefix) then `created_seq`.
pub const COPY_COLUMNS: &str = "contact_id, email, first_name, last_name, company, city, state, country, age, \
     gender, score, lifecycle_stage, total_spent, purchase_count, last_purchase_at, last_opened_at, added_at, \
     updated_at, plan, industry, created_seq";

const BTREE_INDEXES: [&str; 12] = [
    "country",
    "lifecycle_stage",
    "gender",
    "plan",
    "industry",
    "age",
    "score",
    "total_spent",
    "purchase_count",
    "last_opened_at",
    "added_at",
    "created_seq",
];
const TRIGRAM_INDEXES: [&str; 3] = ["email", "company", "last_name"];

/// One connection with the search path on the scratch schema.
pub struct Postgres {
    client: Client,
    pub schema: String,
    pub version: String,
    /// The scratch schema, then where the extensions live.
    search_path: String,
    connection: tokio::task::JoinHandle<()>,
}

/// How long loading took, per step.
#[derive(Clone, Copy, Debug)]
pub struct PgLoad {
    pub rows: u64,
    pub copy: Duration,
    pub indexes: Duration,
    pub analyze: Duration,
}

async fn open(url: &str) -> anyhow::Result<(Client, tokio::task::JoinHandle<()>)> {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls).await.with_context(|| format!("connecting to PostgreSQL ({url})"))?;
    let connection = tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("PostgreSQL connection ended: {e}");
        }
    });
    Ok((client, connection))
}

impl Postgres {
    /// Connects, creates the scratch schema (and extensions where missing)
    /// and the empty table.
    pub async fn connect(url: &str) -> anyhow::Result<Postgres> {
        let (client, connection) = open(url).await?;
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
        let schema = format!("segbench_{}_{stamp}", std::process::id());
        let pg = Postgres { client, schema, version: String::new(), search_path: String::new(), connection };
        let version = pg.scalar("SHOW server_version").await?;
        let mut pg = Postgres { version, ..pg };
        pg.create_schema().await?;
        Ok(pg)
    }

    async fn create_schema(&mut self) -> anyhow::Result<()> {
        let schema = &self.schema;
        self.client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.context("creating the scratch schema")?;
        let mut path = vec![schema.clone()];
        for ext in ["citext", "pg_trgm"] {
            let rows = self
                .client
                .query(
                    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
                     WHERE e.extname = $1",
                    &[&ext],
                )
                .await?;
            match rows.first() {
                Some(row) => path.push(row.get::<_, String>(0)),
                None => self
                    .client
                    .batch_execute(&format!("CREATE EXTENSION {ext} SCHEMA {schema}"))
                    .await
                    .with_context(|| format!("creating the {ext} extension (postgresql-contrib)"))?,
            }
        }
        path.push("public".into());
        path.dedup();
        self.search_path = path.join(", ");
        let text = TEXT_COLUMNS.map(|c| format!("{c} citext NOT NULL")).join(", ");
        self.client
            .batch_execute(&format!(
                "SET search_path = {}; \
                 CREATE TABLE contacts (contact_id bigint NOT NULL, {text}, age integer, score integer NOT NULL, \
                 total_spent numeric(12,2) NOT NULL, purchase_count integer NOT NULL, \
                 last_purchase_at timestamptz, last_opened_at timestamptz, added_at timestamptz NOT NULL, \
                 updated_at timestamptz NOT NULL, created_seq bigint NOT NULL)",
                self.search_path
            ))
            .await
            .context("creating the contacts table")?;
        Ok(())
    }

    /// Another connection to the same scratch schema, whose task runs on the
    /// runtime that calls this. Dropping it leaves the schema alone.
    pub async fn another(&self, url: &str) -> anyhow::Result<Postgres> {
        let (client, connection) = open(url).await?;
        client.batch_execute(&format!("SET search_path = {}", self.search_path)).await?;
        Ok(Postgres {
            client,
            schema: self.schema.clone(),
            version: self.version.clone(),
            search_path: self.search_path.clone(),
            connection,
        })
    }

    /// COPYs `csv` (no header, columns as [`COPY_COLUMNS`]) into the table,
    /// then builds the indexes and analyzes, timing each step.
    pub async fn load(&self, csv: &Path) -> anyhow::Result<PgLoad> {
        let not_null = TEXT_COLUMNS.join(", ");
        let started = Instant::now();
        let sink = self
            .client
            .copy_in::<_, Bytes>(&format!(
                "COPY contacts ({COPY_COLUMNS}) FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL ({not_null}))"
            ))
            .await
            .context("starting COPY")?;
        futures::pin_mut!(sink);
        let mut file = tokio::fs::File::open(csv).await.with_context(|| format!("opening {}", csv.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf).await?;
            if n == 0 {
                break;
            }
            sink.send(Bytes::copy_from_slice(&buf[..n])).await.context("COPY data")?;
        }
        let rows = sink.finish().await.context("finishing COPY")?;
        let copy = started.elapsed();
        let started = Instant::now();
        for col in BTREE_INDEXES {
            self.client.batch_execute(&format!("CREATE INDEX ON contacts ({col})")).await?;
        }
        for col in TRIGRAM_INDEXES {
            self.client.batch_execute(&format!("CREATE INDEX ON contacts USING gin ({col} gin_trgm_ops)")).await?;
        }
        let indexes = started.elapsed();
        let started = Instant::now();
        self.client.batch_execute("VACUUM ANALYZE contacts").await?;
        Ok(PgLoad { rows, copy, indexes, analyze: started.elapsed() })
    }

    /// `count(*)` of the rows `where_clause` selects, and how long it took.
    pub async fn count(&self, where_clause: &str) -> anyhow::Result<(u64, Duration)> {
        let started = Instant::now();
        let n = self.scalar(&format!("SELECT count(*) FROM contacts WHERE {where_clause}")).await?;
        let took = started.elapsed();
        Ok((n.parse().context("count(*) is not a number")?, took))
    }

    /// The emails of the first `limit` rows in segmentd's member order
    /// (every column is fetched and read, as a page of contacts would be),
    /// how long until every value was read as text, and until the rows had
    /// arrived.
    pub async fn first_page(
        &self,
        where_clause: &str,
        limit: usize,
    ) -> anyhow::Result<(Vec<String>, Duration, Duration)> {
        let started = Instant::now();
        let messages = self
            .client
            .simple_query(&format!("SELECT * FROM contacts WHERE {where_clause} ORDER BY created_seq LIMIT {limit}"))
            .await?;
        let received = started.elapsed();
        // Every value taken as a string, as segmentd's client gets its page
        // (prost decodes each value into a `String`); tokio-postgres would
        // otherwise leave them unread bytes.
        let rows: Vec<Vec<Option<String>>> = messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .map(|row| (0..row.len()).map(|i| Ok(row.try_get(i)?.map(str::to_owned))).collect())
            .collect::<Result<_, tokio_postgres::Error>>()?;
        let took = started.elapsed();
        let email = messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::RowDescription(columns) => columns.iter().position(|c| c.name() == "email"),
                _ => None,
            })
            .context("no email column")?;
        Ok((rows.into_iter().map(|mut r| r.swap_remove(email).unwrap_or_default()).collect(), took, received))
    }

    /// `COPY (select) TO STDOUT WITH CSV`: the rows and bytes received and
    /// how long from the statement to the last byte.
    pub async fn copy_out_csv(&self, select: &str) -> anyhow::Result<(u64, u64, Duration)> {
        let started = Instant::now();
        let stream = self
            .client
            .copy_out(&format!("COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER)"))
            .await
            .context("starting COPY TO STDOUT")?;
        futures::pin_mut!(stream);
        let mut rows = super::export::CsvRows::default();
        let mut bytes = 0u64;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            let chunk = chunk.context("COPY TO STDOUT data")?;
            bytes += chunk.len() as u64;
            rows.feed(&chunk);
        }
        let took = started.elapsed();
        // The header line is not a row.
        Ok((rows.rows.saturating_sub(1), bytes, took))
    }

    /// Settings that shape PostgreSQL's speed here, for the report.
    pub async fn settings(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for name in ["shared_buffers", "work_mem", "max_parallel_workers_per_gather", "jit"] {
            out.push((name.to_owned(), self.scalar(&format!("SHOW {name}")).await?));
        }
        Ok(out)
    }

    async fn scalar(&self, sql: &str) -> anyhow::Result<String> {
        let messages = self.client.simple_query(sql).await.with_context(|| format!("running {sql}"))?;
        for m in messages {
            if let SimpleQueryMessage::Row(row) = m {
                return Ok(row.try_get(0)?.unwrap_or_default().to_owned());
            }
        }
        anyhow::bail!("{sql} returned no row")
    }

    /// Drops the scratch schema (the table, and the extensions if they were
    /// created in it).
    pub async fn drop_schema(self) -> anyhow::Result<()> {
        let result = self.client.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema)).await;
        drop(self.client);
        let _ = self.connection.await;
        result.context("dropping the scratch schema")
    }
}

/// Checks the answer of a count against the table's size, a cheap guard
/// against querying an empty table by mistake.
pub fn ensure_loaded(load: &PgLoad, expected: u64) -> anyhow::Result<()> {
    ensure!(load.rows == expected, "PostgreSQL COPY loaded {} rows, {expected} expected", load.rows);
    Ok(())
}
