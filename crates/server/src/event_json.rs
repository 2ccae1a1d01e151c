//! The stable JSON rendering of a recorded event: what `ReplayEvents`
//! streams in its `json` field, what `segctl events --format jsonl` writes,
//! and what the README's "Event reference" documents.
//!
//! Shape (one line, keys in this order):
//! `{"sequence":N,"event_id":"<32 hex>","type":"ContactCreated","org":…,
//! "aggregate_type":"contact","aggregate_id":…,"actor":…,"command_id":…,
//! "time":"<RFC 3339>","data":{…}}`.
//!
//! Analysts load this into DuckDB or pandas and keep their queries for years,
//! so every key and value form is written out by hand here: nothing comes
//! from a serde derive of a domain struct (a renamed Rust field must not
//! rename a JSON key) and nothing depends on a JSON library's map ordering
//! or features. The golden files `tests/fixtures/events/<Type>.v1.json` pin
//! the exact bytes; changing one is a breaking change for every consumer.
//!
//! **Must not depend on** the API (prost types), the read model or any I/O:
//! a pure function of the domain's events.

use segmentd_domain::event::{
    Activity, ActivityRecorded, BulkChild, BulkSegmentsCreated, CampaignCreated, Change, ContactCreated,
    ContactDeleted, ContactUpdated, JobAbandoned, JobCancelRequested, JobCancelled, JobCompleted, JobKind,
    JobMembersListed, JobProgressed, JobStarted, LegacySegmentImported, ListMembersRecorded, ScoreReset, SegmentCloned,
    SegmentCreated, SegmentDeleted, SegmentRolledBack, SegmentSavedAsList, SegmentUpdated, TopicCreated,
    TopicsAssigned, TopicsUnassigned,
};
use segmentd_domain::{Contact, Decimal, Event, Timestamp};
use segmentd_log::Recorded;
use std::collections::BTreeMap;

/// One event rendered: the whole line, and the `data` object alone (the CSV
/// export's `data` column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub json: String,
    pub data: String,
}

/// The event id as it appears in JSON and in the API: 32 lowercase hex digits.
pub fn event_id(id: u128) -> String {
    format!("{id:032x}")
}

/// Renders a recorded event.
pub fn render(rec: &Recorded) -> Rendered {
    let env = &rec.envelope;
    let data = data(&env.event);
    let mut o = Object::new();
    o.number("sequence", rec.seq);
    o.string("event_id", &event_id(env.event_id));
    o.string("type", env.event.type_name());
    o.string("org", &env.aggregate.org);
    o.string("aggregate_type", env.aggregate.kind.as_str());
    o.string("aggregate_id", &env.aggregate.id);
    o.string("actor", &env.actor);
    o.string("command_id", &env.command_id);
    o.string("time", &env.time.to_string());
    o.raw("data", &data);
    Rendered { json: o.finish(), data }
}

/// The payload as a JSON object. The match is exhaustive on purpose: a new
/// event type does not compile until it has a rendering.
pub fn data(event: &Event) -> String {
    let mut o = Object::new();
    match event {
        Event::ContactCreated(ContactCreated { contact }) => {
            o.string("email", &contact.email);
            o.raw("fields", &contact_fields(contact));
        }
        Event::ContactUpdated(ContactUpdated { contact, changed }) => {
            o.string("email", &contact.email);
            o.raw("fields", &contact_fields(contact));
            o.raw("changed", &string_array(changed));
        }
        Event::ContactDeleted(ContactDeleted { email }) => {
            o.string("email", email);
        }
        Event::SegmentCreated(SegmentCreated { segment_id, name, criteria }) => {
            o.number("segment_id", *segment_id);
            o.string("name", name);
            o.string("criteria", criteria);
        }
        Event::SegmentUpdated(SegmentUpdated { segment_id, version, name, criteria }) => {
            o.number("segment_id", *segment_id);
            o.number("version", *version);
            // Always present (null when unchanged) so that every row of a
            // table built from these events has the same columns.
            o.raw("name", &change(name.as_ref()));
            o.raw("criteria", &change(criteria.as_ref()));
        }
        Event::SegmentRolledBack(SegmentRolledBack { segment_id, version, to_version, name, criteria }) => {
            o.number("segment_id", *segment_id);
            o.number("version", *version);
            o.number("to_version", *to_version);
            o.raw("name", &change(name.as_ref()));
            o.raw("criteria", &change(criteria.as_ref()));
        }
        Event::SegmentDeleted(SegmentDeleted { segment_id, name }) => {
            o.number("segment_id", *segment_id);
            o.string("name", name);
        }
        Event::JobStarted(JobStarted {
            job_id,
            kind,
            segment_id,
            segment_name,
            criteria,
            position,
            clock,
            member_count,
            batch_size,
        }) => {
            o.string("job_id", job_id);
            o.string("kind", job_kind_name(kind));
            // Every kind's parameters, null where they do not apply, so rows
            // of a table built from these events have the same columns.
            let (field, value, reason) = match kind {
                JobKind::MassUpdate { field, value } => (Some(field), Some(value), None),
                JobKind::DeleteContacts => (None, None, None),
                JobKind::ResetScores { reason } => (None, None, Some(reason)),
            };
            o.raw("field", &nullable(field));
            o.raw("value", &nullable(value));
            o.raw("reason", &nullable(reason));
            o.number("segment_id", *segment_id);
            o.string("segment_name", segment_name);
            o.string("criteria", criteria);
            o.number("position", *position);
            o.string("clock", &clock.to_string());
            o.number("member_count", *member_count);
            o.number("batch_size", u64::from(*batch_size));
        }
        Event::JobMembersListed(JobMembersListed { first_index, emails }) => {
            o.number("first_index", *first_index);
            o.raw("emails", &string_array(emails));
        }
        Event::JobProgressed(JobProgressed { next_index, changed, skipped }) => {
            o.number("next_index", *next_index);
            o.number("changed", *changed);
            o.number("skipped", *skipped);
        }
        Event::JobCompleted(JobCompleted { changed, skipped }) => {
            o.number("changed", *changed);
            o.number("skipped", *skipped);
        }
        Event::JobAbandoned(JobAbandoned { reason }) => {
            o.string("reason", reason);
        }
        Event::JobCancelRequested(JobCancelRequested { reason }) => {
            o.string("reason", reason);
        }
        Event::JobCancelled(JobCancelled { next_index, changed, skipped }) => {
            o.number("next_index", *next_index);
            o.number("changed", *changed);
            o.number("skipped", *skipped);
        }
        Event::ScoreReset(ScoreReset { contact, previous_score, reason, job_id }) => {
            o.string("email", &contact.email);
            o.raw("fields", &contact_fields(contact));
            o.raw("previous_score", &previous_score.map_or_else(|| "null".to_owned(), |s| s.to_string()));
            o.string("reason", reason);
            o.string("job_id", job_id);
        }
        Event::ActivityRecorded(ActivityRecorded { contact, activity, at }) => {
            o.string("email", &contact.email);
            o.raw("fields", &contact_fields(contact));
            o.string("activity", activity_name(activity));
            let (url, amount) = match activity {
                Activity::EmailOpened => (None, None),
                Activity::LinkClicked { url } => (Some(url.clone()), None),
                Activity::Purchase { amount } => (None, Some(amount.to_string())),
            };
            o.raw("url", &nullable(url.as_ref()));
            o.raw("amount", &nullable(amount.as_ref()));
            o.string("at", &at.to_string());
        }
        Event::LegacySegmentImported(LegacySegmentImported { segment_id, name, criteria, list_name }) => {
            o.number("segment_id", *segment_id);
            o.string("name", name);
            o.string("criteria", criteria);
            o.string("list_name", list_name);
        }
        Event::SegmentCloned(SegmentCloned { segment_id, source_id, name, criteria }) => {
            o.number("segment_id", *segment_id);
            o.number("source_id", *source_id);
            o.string("name", name);
            o.string("criteria", criteria);
        }
        Event::TopicCreated(TopicCreated { topic_id, name }) => {
            o.number("topic_id", *topic_id);
            o.string("name", name);
        }
        Event::TopicsAssigned(TopicsAssigned { segment_id, topic_ids })
        | Event::TopicsUnassigned(TopicsUnassigned { segment_id, topic_ids }) => {
            o.number("segment_id", *segment_id);
            o.raw("topic_ids", &number_array(topic_ids));
        }
        Event::SegmentSavedAsList(SegmentSavedAsList {
            list_id,
            name,
            segment_id,
            criteria,
            at_sequence,
            member_count,
        }) => {
            o.number("list_id", *list_id);
            o.string("name", name);
            o.number("segment_id", *segment_id);
            o.string("criteria", criteria);
            o.number("at_sequence", *at_sequence);
            o.number("member_count", *member_count);
        }
        Event::ListMembersRecorded(ListMembersRecorded { list_id, emails }) => {
            o.number("list_id", *list_id);
            o.raw("emails", &string_array(emails));
        }
        Event::CampaignCreated(CampaignCreated { campaign_id, name, subject, sender, segment_id }) => {
            o.number("campaign_id", *campaign_id);
            o.string("name", name);
            o.string("subject", subject);
            o.string("sender", sender);
            o.number("segment_id", *segment_id);
        }
        Event::BulkSegmentsCreated(BulkSegmentsCreated { bulk_id, base_name, field, children }) => {
            o.number("bulk_id", *bulk_id);
            o.string("base_name", base_name);
            o.string("field", field);
            let mut list = String::from("[");
            for (i, BulkChild { segment_id, name, value, criteria }) in children.iter().enumerate() {
                if i > 0 {
                    list.push(',');
                }
                let mut c = Object::new();
                c.number("segment_id", *segment_id);
                c.string("name", name);
                c.string("value", value);
                c.string("criteria", criteria);
                list.push_str(&c.finish());
            }
            list.push(']');
            o.raw("children", &list);
        }
    }
    o.finish()
}

/// The stable name of a job kind, as in JSON and the API.
pub fn job_kind_name(kind: &JobKind) -> &'static str {
    match kind {
        JobKind::MassUpdate { .. } => "mass_update",
        JobKind::DeleteContacts => "delete_contacts",
        JobKind::ResetScores { .. } => "reset_scores",
    }
}

/// The stable name of an activity, as in JSON and the API.
pub fn activity_name(activity: &Activity) -> &'static str {
    match activity {
        Activity::EmailOpened => "email_opened",
        Activity::LinkClicked { .. } => "link_clicked",
        Activity::Purchase { .. } => "purchase",
    }
}

fn nullable(v: Option<&String>) -> String {
    match v {
        None => "null".to_owned(),
        Some(s) => {
            let mut out = String::new();
            quote(s, &mut out);
            out
        }
    }
}

fn change(c: Option<&Change>) -> String {
    match c {
        None => "null".to_owned(),
        Some(Change { from, to }) => {
            let mut o = Object::new();
            o.string("from", from);
            o.string("to", to);
            o.finish()
        }
    }
}

/// A contact's non-empty fields by their `gen_contacts` column names, values
/// as text exactly like the API's `Contact.fields` (integers and decimals as
/// digits, instants as RFC 3339), custom fields as `custom.<name>`, keys in
/// byte order. The email is the aggregate's key and stands beside `fields`.
fn contact_fields(c: &Contact) -> String {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut text = |name: &str, value: &str| {
        if !value.is_empty() {
            fields.insert(name.to_owned(), value.to_owned());
        }
    };
    text("contact_id", &integer(c.contact_id));
    text("first_name", &c.first_name);
    text("last_name", &c.last_name);
    text("company", &c.company);
    text("city", &c.city);
    text("state", &c.state);
    text("country", &c.country);
    text("age", &integer(c.age));
    text("gender", &c.gender);
    text("score", &integer(c.score));
    text("lifecycle_stage", &c.lifecycle_stage);
    text("total_spent", &decimal(c.total_spent));
    text("purchase_count", &integer(c.purchase_count));
    text("last_purchase_at", &time(c.last_purchase_at));
    text("last_opened_at", &time(c.last_opened_at));
    text("added_at", &c.added_at.to_string());
    text("updated_at", &c.updated_at.to_string());
    for (name, value) in &c.custom {
        text(&format!("custom.{name}"), value);
    }
    let mut o = Object::new();
    for (name, value) in &fields {
        o.string(name, value);
    }
    o.finish()
}

fn integer(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn decimal(v: Option<Decimal>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn time(v: Option<Timestamp>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn string_array(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        quote(item, &mut out);
    }
    out.push(']');
    out
}

fn number_array(items: &[u64]) -> String {
    let items: Vec<String> = items.iter().map(u64::to_string).collect();
    format!("[{}]", items.join(","))
}

/// A JSON object written key by key, in the order the keys are given.
struct Object {
    out: String,
    empty: bool,
}

impl Object {
    fn new() -> Self {
        Object { out: String::from("{"), empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        quote(key, &mut self.out);
        self.out.push(':');
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        quote(value, &mut self.out);
    }

    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out.push_str(&value.to_string());
    }

    /// `value` must already be JSON.
    fn raw(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.push_str(value);
    }

    fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// A JSON string literal. Escapes only what JSON requires (quote, backslash,
/// control characters) and keeps every other character as UTF-8, so the
/// bytes do not depend on a library's escaping choices.
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use segmentd_domain::{AggregateId, Email, Envelope};

    fn quoted(s: &str) -> String {
        let mut out = String::new();
        quote(s, &mut out);
        out
    }

    #[test]
    fn strings_escape_only_what_json_requires() {
        assert_eq!(quoted("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quoted("line\nnext\ttab\r\u{1}"), r#""line\nnext\ttab\r\u0001""#);
        assert_eq!(quoted("München 🦀 \u{2028}"), "\"München 🦀 \u{2028}\"");
        let all_controls: String = (0u8..0x20).map(char::from).collect();
        let parsed: String = serde_json::from_str(&quoted(&all_controls)).unwrap();
        assert_eq!(parsed, all_controls);
    }

    #[test]
    fn event_ids_are_32_hex_digits() {
        assert_eq!(event_id(255), "000000000000000000000000000000ff");
        assert_eq!(event_id(u128::MAX).len(), 32);
    }

    #[test]
    fn contact_fields_are_the_api_fields() {
        let mut c = Contact::new(Email::parse("ann@example.com").unwrap(), Timestamp::from_millis(1_000));
        c.contact_id = Some(7);
        c.country = "DE".into();
        c.age = Some(31);
        c.total_spent = Some(Decimal::parse("12.50").unwrap());
        c.last_opened_at = Some(Timestamp::from_millis(1_500));
        c.custom.insert("plan".into(), "pro".into());
        let rendered: serde_json::Value = serde_json::from_str(&contact_fields(&c)).unwrap();
        let api = crate::convert::contact(&c).fields;
        let rendered: std::collections::HashMap<String, String> =
            rendered.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
        assert_eq!(rendered, api, "JSON fields and the API's Contact.fields agree");
    }

    #[test]
    fn the_envelope_keys_come_in_a_fixed_order() {
        let rec = Recorded {
            seq: 9,
            envelope: Envelope {
                event_id: 1,
                command_id: "c".into(),
                aggregate: AggregateId::segment_catalog("acme"),
                actor: "acme/key-1".into(),
                time: Timestamp::from_millis(0),
                event: Event::SegmentDeleted(SegmentDeleted { segment_id: 3, name: "x".into() }),
            },
        };
        let r = render(&rec);
        assert_eq!(
            r.json,
            r#"{"sequence":9,"event_id":"00000000000000000000000000000001","type":"SegmentDeleted","org":"acme","aggregate_type":"segments","aggregate_id":"catalog","actor":"acme/key-1","command_id":"c","time":"1970-01-01T00:00:00Z","data":{"segment_id":3,"name":"x"}}"#
        );
        assert_eq!(r.data, r#"{"segment_id":3,"name":"x"}"#);
    }
}
