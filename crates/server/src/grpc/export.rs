//! The ExportContacts stream: the header, then the snapshot's rows turned
//! into text a chunk at a time, so a million-row export never holds more
//! than a few chunks of strings, and no read-model lock is held while the
//! client reads.

use segmentd_domain::Field;
use segmentd_proto::v1 as pb;
use segmentd_readmodel::StoredContact;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// Rows per message at most.
pub(crate) const CHUNK_ROWS: usize = 1000;
/// A chunk is cut after the row that takes it past this many bytes of
/// values, well under gRPC's 4 MB default message limit.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks formatted ahead of a slow client.
const BUFFER: usize = 4;

pub(crate) type ExportStream = ReceiverStream<Result<pb::ExportContactsReply, Status>>;

/// Sends `header`, then one row of `fields` per contact, in order. Ends
/// early when the client goes away, or with UNAVAILABLE when the server
/// stops.
pub(crate) fn stream(
    header: pb::ExportHeader,
    contacts: Vec<StoredContact>,
    fields: Vec<Field>,
    shutdown: Option<watch::Receiver<bool>>,
) -> ExportStream {
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(send(header, contacts, fields, shutdown, tx));
    ReceiverStream::new(rx)
}

async fn send(
    header: pb::ExportHeader,
    contacts: Vec<StoredContact>,
    fields: Vec<Field>,
    mut shutdown: Option<watch::Receiver<bool>>,
    tx: mpsc::Sender<Result<pb::ExportContactsReply, Status>>,
) {
    let message = |part| Ok(pb::ExportContactsReply { part: Some(part) });
    if tx.send(message(pb::export_contacts_reply::Part::Header(header))).await.is_err() {
        return;
    }
    // Consumed as sent, so the records an export holds are let go of as it
    // goes (a contact changed since the snapshot was taken lives on only
    // until its row is out).
    let mut contacts = contacts.into_iter().peekable();
    while contacts.peek().is_some() {
        let rows = chunk(&mut contacts, &fields);
        let stop = super::stopped(shutdown.as_mut());
        tokio::select! {
            sent = tx.send(message(pb::export_contacts_reply::Part::Rows(rows))) => {
                if sent.is_err() {
                    return;
                }
            }
            () = stop => {
                let _ = tx.try_send(Err(Status::unavailable("the server is stopping; run the export again")));
                return;
            }
        }
    }
}

/// The next chunk of rows: up to [`CHUNK_ROWS`], fewer when they get large.
fn chunk(contacts: &mut impl Iterator<Item = StoredContact>, fields: &[Field]) -> pb::ExportRows {
    let mut rows = Vec::with_capacity(CHUNK_ROWS);
    let mut bytes = 0;
    for contact in contacts.by_ref() {
        let row = crate::convert::export_row(&contact, fields);
        bytes += row.values.iter().map(String::len).sum::<usize>();
        rows.push(row);
        if rows.len() == CHUNK_ROWS || bytes >= CHUNK_BYTES {
            break;
        }
    }
    pb::ExportRows { rows }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segmentd_domain::{Contact, Email, Timestamp};

    fn contacts(n: usize, note: &str) -> Vec<StoredContact> {
        (0..n)
            .map(|i| {
                let mut c = Contact::new(Email::parse(&format!("c{i}@x.com")).unwrap(), Timestamp(0));
                c.age = Some(i as i64);
                c.custom.insert("note".into(), note.to_owned());
                StoredContact::encode(&c)
            })
            .collect()
    }

    #[test]
    fn chunks_stop_at_the_row_limit_and_keep_order() {
        let fields = [Field::Email, Field::Age, Field::City];
        let mut all = contacts(2500, "").into_iter();
        let sizes: Vec<usize> = std::iter::from_fn(|| {
            let rows = chunk(&mut all, &fields);
            (!rows.rows.is_empty()).then_some(rows.rows.len())
        })
        .collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let mut one = contacts(3, "").into_iter();
        let rows = chunk(&mut one, &fields).rows;
        assert_eq!(rows[2].values, ["c2@x.com", "2", ""]);
    }

    #[test]
    fn large_values_make_smaller_chunks() {
        let fields = [Field::Custom("note".into())];
        let note = "n".repeat(10_000);
        let mut all = contacts(300, &note).into_iter();
        let first = chunk(&mut all, &fields).rows.len();
        assert_eq!(first, CHUNK_BYTES.div_ceil(10_000));
        assert!(first < CHUNK_ROWS);
    }
}
