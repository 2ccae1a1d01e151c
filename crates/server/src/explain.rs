//! ExplainMembership: whether a contact is a member of a segment and why.
//! The evaluated criteria tree comes from the read model (the segment and
//! the contact as it holds them); the event since which the answer is what
//! it is comes from the log: the contact's and the segment catalogue's
//! events up to the read model's position, replayed by the pure
//! `explain::since`.
//!
//! **Must not depend on** tonic or prost: the handler converts the answer.

use crate::history::HistoryError;
use segmentd_domain::explain::{Explained, Since, explain, since};
use segmentd_domain::segment::SegmentDef;
use segmentd_domain::{AggregateId, Contact, Criteria, Email, Timestamp};
use segmentd_log::{EventLog, Recorded, Seq};
use segmentd_readmodel::{ReadModel, SegmentLookup};

/// Which contact to explain.
#[derive(Clone, Debug)]
pub enum ContactRef {
    Email(Email),
    /// The contact's `contact_id` field.
    Id(i64),
}

/// What last made the answer what it is.
#[derive(Clone, Debug)]
pub enum Cause {
    /// This event of the contact's own.
    ContactChanged(Recorded),
    /// This catalogue event created or redefined the segment.
    SegmentDefined(Recorded),
    /// The clock moved a relative condition after this event (none: after
    /// the start of the history).
    TimePassed(Option<Recorded>),
}

pub struct Explanation {
    pub segment: SegmentDef,
    pub contact: Contact,
    pub tree: Explained,
    /// `None`: never a member, or no history (see `history_note`).
    pub since: Option<Cause>,
    pub history_note: String,
    pub at: Timestamp,
    /// The read model's sequence the answer reflects.
    pub seq: Seq,
}

/// Explains `contact`'s membership of `segment` with relative conditions
/// measured from `at`. Without a log (a snapshot node) the history part is
/// left out and `history_note` says so.
pub async fn explain_membership(
    model: &ReadModel,
    log: Option<&dyn EventLog>,
    org: &str,
    segment: SegmentLookup<'_>,
    contact: ContactRef,
    at: Timestamp,
) -> Result<Explanation, HistoryError> {
    let (seq, def, tree, contact) = model.read(org, |view, seq| {
        let def = view.segment(segment.clone()).cloned().ok_or_else(|| HistoryError::NotFound(missing(&segment)))?;
        let criteria = view.segment_criteria(def.id).cloned().ok_or_else(|| {
            HistoryError::NotFound(format!("segment {} has criteria this server cannot read", def.id))
        })?;
        let contact = match &contact {
            ContactRef::Email(email) => view
                .contact(email.as_str())
                .ok_or_else(|| HistoryError::NotFound(format!("contact {email} does not exist")))?,
            ContactRef::Id(id) => {
                let by_id = Criteria::parse(&format!("contact_id = {id}")).expect("an integer condition parses");
                let mut found = view.member_contacts(&by_id, at);
                match found.len() {
                    0 => return Err(HistoryError::NotFound(format!("no contact has contact_id {id}"))),
                    1 => found.remove(0).to_contact(),
                    n => {
                        return Err(HistoryError::Ambiguous(format!(
                            "contact_id: {n} contacts have contact_id {id}; name the contact by email"
                        )));
                    }
                }
            }
        };
        // The segments `in segment` conditions use, through any chain.
        let catalog = view.catalog();
        let segments = |id: u64| Some((catalog.segments.get(&id)?.name.as_str(), &**view.segment_criteria(id)?));
        let tree = explain(&criteria, &contact, at, &segments);
        Ok((seq, def, tree, contact))
    })?;
    let (since, history_note) = match log {
        Some(log) => (cause(log, org, &def, &contact.email, tree.result(), seq).await?, String::new()),
        None => (None, "this node has no log to read the history from".to_owned()),
    };
    Ok(Explanation { segment: def, contact, tree, since, history_note, at, seq })
}

async fn cause(
    log: &dyn EventLog,
    org: &str,
    def: &SegmentDef,
    email: &str,
    member: bool,
    seq: Seq,
) -> Result<Option<Cause>, HistoryError> {
    let contact = log.read_aggregate(&AggregateId::contact(org, email), 0).await?;
    let catalog = log.read_aggregate(&AggregateId::segment_catalog(org), 0).await?;
    let mut events: Vec<(Recorded, bool)> =
        contact.into_iter().map(|r| (r, true)).chain(catalog.into_iter().map(|r| (r, false))).collect();
    // As the read model saw them: in log order, none after its position.
    events.retain(|(r, _)| r.seq <= seq);
    events.sort_by_key(|(r, _)| r.seq);
    let found = since(events.iter().map(|(r, _)| (&r.envelope.event, r.envelope.time)), def.id, member);
    Ok(match found {
        Since::Event { index, .. } => {
            let (rec, of_contact) = events.swap_remove(index);
            Some(if of_contact { Cause::ContactChanged(rec) } else { Cause::SegmentDefined(rec) })
        }
        Since::TimePassed { after } => Some(Cause::TimePassed(after.map(|i| events.swap_remove(i).0))),
        Since::Never => None,
    })
}

fn missing(lookup: &SegmentLookup<'_>) -> String {
    match lookup {
        SegmentLookup::Id(id) => format!("segment {id} does not exist"),
        SegmentLookup::Name(name) => format!("no segment is named {name:?}"),
    }
}
