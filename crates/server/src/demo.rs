//! The demo data `segmentd serve --demo` loads: the first 10,000 contacts of
//! `gen_contacts.py --seed 42` (so counts can be checked against the
//! benchmark generator) and a few example segments, written through the
//! ordinary command path. Fixed command ids make a second start a no-op.

use crate::auth::Caller;
use crate::convert;
use crate::write::{CommandError, CommandMeta, MAX_BATCH, Writer};
use segmentd_domain::Criteria;
use segmentd_domain::segment::{SegmentCommand, SegmentName};
use segmentd_log::Seq;
use segmentd_proto::v1 as pb;
use std::io::Read;

const CONTACTS_CSV_GZ: &[u8] = include_bytes!("../demo/contacts-10k-seed42.csv.gz");

/// Example segments: (name, criteria).
pub const SEGMENTS: &[(&str, &str)] = &[
    ("germany", r#"country = "DE""#),
    ("north-america", r#"country in ("US", "CA", "MX")"#),
    ("high-value-customers", r#"lifecycle_stage = "customer" and total_spent > 1000"#),
    ("gmail-at-acme", r#"email ends_with "@gmail.com" and company starts_with "acme""#),
    ("opened-last-90-days", r#"last_opened_at within_last 90 days"#),
];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo data is unreadable: {0}")]
    Data(String),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Reads CSV with a header of field names (`email` plus any contact fields)
/// into upsert inputs; shared by the demo and by tests.
pub fn contact_inputs(csv_text: impl Read) -> Result<Vec<pb::ContactInput>, String> {
    let mut reader = csv::Reader::from_reader(csv_text);
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    let email_col = headers.iter().position(|h| h == "email").ok_or("the CSV has no email column")?;
    let mut out = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| e.to_string())?;
        let fields = headers
            .iter()
            .zip(row.iter())
            .enumerate()
            .filter(|(i, _)| *i != email_col)
            .map(|(_, (h, v))| (h.to_owned(), v.to_owned()))
            .collect();
        out.push(pb::ContactInput { email: row.get(email_col).unwrap_or_default().to_owned(), fields });
    }
    Ok(out)
}

pub fn demo_contacts() -> Result<Vec<pb::ContactInput>, DemoError> {
    let mut csv_text = Vec::new();
    flate2::read::GzDecoder::new(CONTACTS_CSV_GZ)
        .read_to_end(&mut csv_text)
        .map_err(|e| DemoError::Data(e.to_string()))?;
    contact_inputs(csv_text.as_slice()).map_err(DemoError::Data)
}

/// Loads the demo into `org`; returns the last sequence written.
pub async fn load(writer: &Writer, org: &str) -> Result<Seq, DemoError> {
    let caller = Caller { org: org.to_owned(), actor: "demo".to_owned() };
    let mut seq = 0;
    for (n, chunk) in demo_contacts()?.chunks(MAX_BATCH).enumerate() {
        let patches = chunk
            .iter()
            .enumerate()
            .map(|(i, c)| convert::contact_patch(i, c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DemoError::Data(e.0))?;
        let meta = CommandMeta { caller: caller.clone(), command_id: format!("demo-contacts-{n}") };
        seq = seq.max(writer.upsert_contacts(&meta, patches).await?.seq);
    }
    for (name, text) in SEGMENTS {
        let meta = CommandMeta { caller: caller.clone(), command_id: format!("demo-segment-{name}") };
        let command = SegmentCommand::Create {
            name: SegmentName::parse(name)?,
            criteria: Criteria::parse(text).map_err(|e| DemoError::Data(e.to_string()))?,
        };
        match writer.segments(&meta, command).await {
            Ok(out) => seq = seq.max(out.seq),
            // Someone may have made a segment of that name since: keep theirs.
            Err(CommandError::Refused(segmentd_domain::DomainError::SegmentNameTaken(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(seq)
}

impl From<segmentd_domain::DomainError> for DemoError {
    fn from(e: segmentd_domain::DomainError) -> Self {
        DemoError::Command(e.into())
    }
}
