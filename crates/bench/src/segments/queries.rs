//! Q1–Q12 on both systems: each saved as a segmentd segment, then
//! `CountMembers` and the first page of 100 (`ListMembers`) over gRPC, and
//! `count(*)` and the first 100 rows in segmentd's member order in
//! PostgreSQL, each timed `repeat` times after one warm-up.
//!
//! Pages are compared as tables on both sides: segmentd's in the rows
//! layout (every built-in field, the names once per page) against
//! PostgreSQL's `SELECT *` with every value read as text. The same page in
//! the contacts layout (a map per contact) is timed too, and reported
//! beside them. Speeds are only
//! reported for answers that agree ([`Agreement`]): a count that differs
//! from PostgreSQL's is a bug in one of the two (or in the translation), and
//! a speed for a wrong answer means nothing.
//!
//! **Must not depend on** the server's crates: gRPC and SQL only.

use crate::segments::postgres::Postgres;
use crate::stats::Summary;
use anyhow::Context as _;
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::queries_client::QueriesClient;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub const PAGE_SIZE: usize = 100;

/// One criterion measured on both sides.
#[derive(Clone, Debug)]
pub struct QueryRun {
    pub name: String,
    pub criteria: String,
    pub sql: String,
    pub segmentd_count: u64,
    pub postgres_count: u64,
    pub segmentd_page: Vec<String>,
    pub postgres_page: Vec<String>,
    pub segmentd_count_times: Vec<Duration>,
    pub postgres_count_times: Vec<Duration>,
    pub segmentd_page_times: Vec<Duration>,
    pub postgres_page_times: Vec<Duration>,
    /// The same first page in `PAGE_LAYOUT_CONTACTS`.
    pub segmentd_contacts_page_times: Vec<Duration>,
    /// PostgreSQL's page until its rows arrived, before they were read.
    pub postgres_page_received_times: Vec<Duration>,
}

/// Whether the two systems gave the same answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Agreement {
    Agree,
    /// No speed is reported for this query at all.
    CountsDiffer {
        segmentd: u64,
        postgres: u64,
    },
    /// The counts agree (their speeds stand) but the first pages do not
    /// (their speeds are not reported).
    PagesDiffer {
        at: usize,
        segmentd: Option<String>,
        postgres: Option<String>,
    },
}

impl QueryRun {
    pub fn agreement(&self) -> Agreement {
        agreement(self.segmentd_count, self.postgres_count, &self.segmentd_page, &self.postgres_page)
    }

    /// Median count times (segmentd, PostgreSQL) and their ratio
    /// (PostgreSQL / segmentd: how many times faster segmentd is), or `None`
    /// when the counts disagree.
    pub fn count_speed(&self) -> Option<Speed> {
        match self.agreement() {
            Agreement::CountsDiffer { .. } => None,
            _ => Speed::of(&self.segmentd_count_times, &self.postgres_count_times),
        }
    }

    /// As [`QueryRun::count_speed`] for the first page; `None` unless both the
    /// counts and the pages agree.
    pub fn page_speed(&self) -> Option<Speed> {
        match self.agreement() {
            Agreement::Agree => Speed::of(&self.segmentd_page_times, &self.postgres_page_times),
            _ => None,
        }
    }

    /// segmentd's median first page in the contacts layout, ms; `None`
    /// unless the pages agree.
    pub fn contacts_page_ms(&self) -> Option<f64> {
        self.agreed_median_ms(&self.segmentd_contacts_page_times)
    }

    /// PostgreSQL's median first page until the rows arrived, unread, ms.
    pub fn postgres_received_page_ms(&self) -> Option<f64> {
        self.agreed_median_ms(&self.postgres_page_received_times)
    }

    fn agreed_median_ms(&self, times: &[Duration]) -> Option<f64> {
        let ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        (self.agreement() == Agreement::Agree).then(|| Summary::of(&ms)).flatten().map(|s| s.median)
    }
}

/// Compares the answers: the counts, then the pages email by email (emails
/// are unique and lowercase on both sides).
pub fn agreement(segmentd: u64, postgres: u64, segmentd_page: &[String], postgres_page: &[String]) -> Agreement {
    if segmentd != postgres {
        return Agreement::CountsDiffer { segmentd, postgres };
    }
    let longest = segmentd_page.len().max(postgres_page.len());
    match (0..longest).find(|&i| segmentd_page.get(i) != postgres_page.get(i)) {
        None => Agreement::Agree,
        Some(at) => Agreement::PagesDiffer {
            at,
            segmentd: segmentd_page.get(at).cloned(),
            postgres: postgres_page.get(at).cloned(),
        },
    }
}

/// Medians of one measurement on both sides, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Speed {
    pub segmentd_ms: f64,
    pub postgres_ms: f64,
}

impl Speed {
    fn of(segmentd: &[Duration], postgres: &[Duration]) -> Option<Speed> {
        let ms = |d: &[Duration]| Summary::of(&d.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>());
        Some(Speed { segmentd_ms: ms(segmentd)?.median, postgres_ms: ms(postgres)?.median })
    }

    /// PostgreSQL's time over segmentd's: above 1, segmentd is faster.
    pub fn ratio(&self) -> f64 {
        self.postgres_ms / self.segmentd_ms.max(1e-6)
    }
}

/// Measures one saved segment against its SQL translation.
pub async fn measure(
    queries: &mut QueriesClient<Channel>,
    pg: &Postgres,
    segment_id: u64,
    min_sequence: u64,
    at: &str,
    repeat: usize,
    (name, criteria, sql): (&str, &str, String),
) -> anyhow::Result<QueryRun> {
    let segment = || Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Id(segment_id)) });
    let count_request = || pb::CountMembersRequest { segment: segment(), min_sequence, at: at.to_owned(), as_of: None };
    let page_request = |layout: pb::PageLayout| pb::ListMembersRequest {
        segment: segment(),
        page_size: PAGE_SIZE as u32,
        min_sequence,
        at: at.to_owned(),
        layout: layout.into(),
        ..Default::default()
    };
    let mut run = QueryRun {
        name: name.to_owned(),
        criteria: criteria.to_owned(),
        sql: sql.clone(),
        segmentd_count: 0,
        postgres_count: 0,
        segmentd_page: Vec::new(),
        postgres_page: Vec::new(),
        segmentd_count_times: Vec::new(),
        postgres_count_times: Vec::new(),
        segmentd_page_times: Vec::new(),
        postgres_page_times: Vec::new(),
        segmentd_contacts_page_times: Vec::new(),
        postgres_page_received_times: Vec::new(),
    };
    // Each system measured in a block of its own, after a warm-up that
    // also gives the answer compared: a request timed right after the other
    // system's work (PostgreSQL's parallel scans take up to 300 ms of both
    // cores, and its workers exit after the answer) pays for that work.
    run.segmentd_count = queries.count_members(count_request()).await.context("CountMembers")?.into_inner().count;
    run.segmentd_page = row_emails(
        queries.list_members(page_request(pb::PageLayout::Rows)).await.context("ListMembers (rows)")?.into_inner(),
    )?;
    let contacts = queries.list_members(page_request(pb::PageLayout::Contacts)).await.context("ListMembers")?;
    let contacts: Vec<String> = contacts.into_inner().contacts.into_iter().map(|c| c.email).collect();
    anyhow::ensure!(contacts == run.segmentd_page, "{name}: segmentd's page differs between its two layouts");
    for _ in 0..repeat {
        let started = Instant::now();
        let count = queries.count_members(count_request()).await?.into_inner().count;
        run.segmentd_count_times.push(started.elapsed());
        anyhow::ensure!(count == run.segmentd_count, "{name}: segmentd's count changed between repetitions");
        let started = Instant::now();
        let page = queries.list_members(page_request(pb::PageLayout::Rows)).await?.into_inner();
        run.segmentd_page_times.push(started.elapsed());
        anyhow::ensure!(page.rows.len() == run.segmentd_page.len(), "{name}: segmentd's page changed");
        let started = Instant::now();
        let page = queries.list_members(page_request(pb::PageLayout::Contacts)).await?.into_inner();
        run.segmentd_contacts_page_times.push(started.elapsed());
        anyhow::ensure!(page.contacts.len() == run.segmentd_page.len(), "{name}: segmentd's page changed");
    }
    run.postgres_count = pg.count(&sql).await?.0;
    run.postgres_page = pg.first_page(&sql, PAGE_SIZE).await?.0;
    for _ in 0..repeat {
        let (count, took) = pg.count(&sql).await?;
        run.postgres_count_times.push(took);
        anyhow::ensure!(count == run.postgres_count, "{name}: PostgreSQL's count changed between repetitions");
        let (_, took, received) = pg.first_page(&sql, PAGE_SIZE).await?;
        run.postgres_page_times.push(took);
        run.postgres_page_received_times.push(received);
    }
    Ok(run)
}

/// The emails of a page in the rows layout, in order.
fn row_emails(page: pb::ListMembersReply) -> anyhow::Result<Vec<String>> {
    let column = page.fields.iter().position(|f| f == "email").context("a page of rows without an email column")?;
    page.rows
        .into_iter()
        .map(|mut row| (column < row.values.len()).then(|| row.values.swap_remove(column)))
        .collect::<Option<_>>()
        .context("a row shorter than its page's fields")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emails(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn run(segmentd: u64, postgres: u64, sp: &[&str], pp: &[&str]) -> QueryRun {
        let ms = |v: u64| vec![Duration::from_millis(v); 3];
        QueryRun {
            name: "Q".into(),
            criteria: String::new(),
            sql: String::new(),
            segmentd_count: segmentd,
            postgres_count: postgres,
            segmentd_page: emails(sp),
            postgres_page: emails(pp),
            segmentd_count_times: ms(1),
            postgres_count_times: ms(40),
            segmentd_page_times: ms(2),
            postgres_page_times: ms(3),
            segmentd_contacts_page_times: ms(4),
            postgres_page_received_times: ms(2),
        }
    }

    #[test]
    fn a_count_that_differs_gets_no_speed_at_all() {
        let r = run(10, 11, &["a"], &["a"]);
        assert_eq!(r.agreement(), Agreement::CountsDiffer { segmentd: 10, postgres: 11 });
        assert_eq!(r.count_speed(), None);
        assert_eq!(r.page_speed(), None);
    }

    #[test]
    fn a_page_that_differs_keeps_the_count_speed_only() {
        let r = run(3, 3, &["a", "b", "c"], &["a", "c", "b"]);
        assert_eq!(
            r.agreement(),
            Agreement::PagesDiffer { at: 1, segmentd: Some("b".into()), postgres: Some("c".into()) }
        );
        assert_eq!(r.count_speed().map(|s| s.ratio()), Some(40.0));
        assert_eq!(r.page_speed(), None);
        // A shorter page differs where the shorter one ends.
        assert_eq!(
            agreement(3, 3, &emails(&["a"]), &emails(&["a", "b"])),
            Agreement::PagesDiffer { at: 1, segmentd: None, postgres: Some("b".into()) }
        );
    }

    #[test]
    fn agreeing_answers_report_both_speeds() {
        let r = run(2, 2, &["a", "b"], &["a", "b"]);
        assert_eq!(r.agreement(), Agreement::Agree);
        assert_eq!(r.count_speed(), Some(Speed { segmentd_ms: 1.0, postgres_ms: 40.0 }));
        assert_eq!(r.page_speed().map(|s| s.ratio()), Some(1.5));
    }
}
