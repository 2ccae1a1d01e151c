//! Names on the wire: the subject of an aggregate, the `Nats-Msg-Id` of an
//! event, and the segmentd headers. Pure functions, so the naming scheme —
//! which is persistent: changing it orphans every stored event — is pinned
//! by unit tests.
//!
//! **Must not depend on** async-nats or any I/O.

use crate::config::is_plain_token;
use segmentd_domain::AggregateId;
use segmentd_log::LogError;

/// The command id, escaped (see [`header_safe`]); informative, for filters
/// and debugging. The authoritative copy is inside the encoded event.
pub const COMMAND_ID_HEADER: &str = "Segmentd-Command-Id";
/// The event type name (`Event::type_name`), so tools can filter without
/// decoding postcard.
pub const EVENT_TYPE_HEADER: &str = "Segmentd-Event-Type";
/// `k/n`: this is event `k` (from 0) of the `n` events one command appended
/// to this aggregate. Lets a retry tell a complete entry from a partial one.
pub const EVENT_INDEX_HEADER: &str = "Segmentd-Event-Index";

/// Longest subject we publish to. NATS puts the subject on the protocol's
/// control line, which servers cap at 4 KiB by default.
const MAX_SUBJECT_BYTES: usize = 2048;

/// `<prefix>.<org>.<kind>.<hex of id>`. The id is hex-encoded because ids
/// are emails and other free text: dots, `*`, `>` or spaces would split or
/// wildcard the subject; hex keeps any id one safe token.
pub(crate) fn aggregate_subject(prefix: &str, aggregate: &AggregateId) -> Result<String, LogError> {
    if !is_plain_token(&aggregate.org) {
        return Err(LogError::InvalidRequest(format!(
            "organisation {:?} is not a valid subject token ([A-Za-z0-9_-]+)",
            aggregate.org
        )));
    }
    if aggregate.id.is_empty() {
        return Err(LogError::InvalidRequest(format!("aggregate {aggregate} has an empty id")));
    }
    let kind = aggregate.kind.as_str();
    let mut subject =
        String::with_capacity(prefix.len() + aggregate.org.len() + kind.len() + 2 * aggregate.id.len() + 3);
    subject.push_str(prefix);
    subject.push('.');
    subject.push_str(&aggregate.org);
    subject.push('.');
    subject.push_str(kind);
    subject.push('.');
    push_hex(&mut subject, aggregate.id.as_bytes());
    if subject.len() > MAX_SUBJECT_BYTES {
        return Err(LogError::InvalidRequest(format!(
            "the id of {aggregate} is too long for a subject ({} bytes)",
            aggregate.id.len()
        )));
    }
    Ok(subject)
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

/// The `Nats-Msg-Id` of the `k`-th event a command appends to the aggregate
/// at `subject`: `<org>:<command id>:<digest of subject>:<k>`.
///
/// It names the event by (command, aggregate, position in the entry) rather
/// than by its position in the whole request: a command re-decided after a
/// conflict may order or size its entries differently, and a request-wide
/// index could then make JetStream acknowledge an event of one aggregate as
/// a "duplicate" of another aggregate's event. A 64-bit digest keeps the id
/// short (JetStream holds every id of the window in memory) while two
/// aggregates of one command colliding is ~2^-64 unlikely.
pub(crate) fn msg_id(org: &str, command_id: &str, subject: &str, k: usize) -> String {
    format!("{org}:{}:{:016x}:{k}", header_safe(command_id), fnv1a64(subject.as_bytes()))
}

/// FNV-1a: tiny, and stable across Rust releases and processes, which
/// `std`'s hashers do not promise. Message ids must be reproducible by the
/// next process that retries the command.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Percent-escapes everything but visible ASCII (and `%` itself), so that
/// any command id is a valid header value (no CR/LF) that the server will
/// not trim, and two different ids never escape to the same text.
pub(crate) fn header_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'%') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Reads the `k` of an [`EVENT_INDEX_HEADER`] value `k/n`.
pub(crate) fn parse_event_index(value: &str) -> Option<usize> {
    value.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use segmentd_domain::AggregateKind;

    #[test]
    fn subjects_are_stable_and_one_token_per_id() {
        let a = AggregateId::contact("org-1", "ann.lee@example.com");
        // Persistent naming: this exact string is what stored events live under.
        assert_eq!(
            aggregate_subject("seg.evt", &a).unwrap(),
            "seg.evt.org-1.contact.616e6e2e6c6565406578616d706c652e636f6d"
        );
        let wild = AggregateId { org: "o".into(), kind: AggregateKind::Contact, id: "a.*.> b".into() };
        let s = aggregate_subject("p", &wild).unwrap();
        assert_eq!(s.split('.').count(), 4, "{s}");
        assert_eq!(aggregate_subject("p", &AggregateId::segment_catalog("o")).unwrap(), "p.o.segments.636174616c6f67");
    }

    #[test]
    fn unsafe_orgs_and_ids_are_refused() {
        for org in ["", "a.b", "a*", ">", "a b"] {
            let agg = AggregateId::contact(org, "x@example.com");
            assert!(matches!(aggregate_subject("p", &agg), Err(LogError::InvalidRequest(_))), "{org:?}");
        }
        assert!(aggregate_subject("p", &AggregateId::contact("o", "")).is_err());
        assert!(aggregate_subject("p", &AggregateId::contact("o", &"x".repeat(2000))).is_err());
    }

    #[test]
    fn message_ids_are_stable_and_distinguish_aggregates() {
        assert_eq!(msg_id("org1", "cmd-1", "s", 0), format!("org1:cmd-1:{:016x}:0", fnv1a64(b"s")));
        // FNV-1a's published test vector: pins the digest across releases.
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(msg_id("o", "c", "p.o.contact.61", 0), msg_id("o", "c", "p.o.contact.62", 0));
        assert_ne!(msg_id("o", "c", "s", 0), msg_id("o", "c", "s", 1));
    }

    #[test]
    fn header_values_are_escaped_injectively() {
        assert_eq!(header_safe("cmd-1"), "cmd-1");
        assert_eq!(header_safe("a b\r\n"), "a%20b%0D%0A");
        assert_ne!(header_safe("a%20b"), header_safe("a b"));
        assert_eq!(header_safe("é"), "%C3%A9");
        assert_eq!(parse_event_index("3/5"), Some(3));
        assert_eq!(parse_event_index("x"), None);
    }
}
