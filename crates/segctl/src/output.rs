//! What segctl prints: text for people (and plain numbers / tab-separated
//! rows for scripts), JSON with `--output json`. Pure functions from API
//! messages to strings, plus the error line for a gRPC status.

use segmentd_proto::v1 as pb;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tonic::Code;

/// The columns `members` and `preview` print when `--fields` is not given.
pub(crate) const DEFAULT_FIELDS: [&str; 4] = ["email", "first_name", "last_name", "country"];

/// The gRPC canonical name of a status code, e.g. `NOT_FOUND`.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `CODE: message` for a status; transport failures (connection refused,
/// …) carry their cause in the error source rather than the message.
pub(crate) fn status_line(status: &tonic::Status) -> String {
    let mut message = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(cause_ref) = source {
        let cause = cause_ref.to_string();
        if !cause.is_empty() && !message.contains(&cause) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&cause);
        }
        source = cause_ref.source();
    }
    if message.is_empty() {
        message = status.code().description().to_owned();
    }
    format!("{}: {message}", code_name(status.code()))
}

/// Tabs and line breaks would break a tab-separated row; the server refuses
/// control characters in fields, but emails and names are printed as given.
pub(crate) fn cell(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A contact's value for a column name; `email` is the key, not a field.
fn value<'a>(contact: &'a pb::Contact, field: &str) -> &'a str {
    if field == "email" { &contact.email } else { contact.fields.get(field).map(String::as_str).unwrap_or("") }
}

/// One tab-separated line (no newline) with the given columns.
pub(crate) fn contact_row<S: AsRef<str>>(contact: &pb::Contact, fields: &[S]) -> String {
    fields.iter().map(|f| cell(value(contact, f.as_ref()))).collect::<Vec<_>>().join("\t")
}

/// `{"email": …, "fields": {…}}`, fields sorted by name; only the chosen
/// fields when `only` is given (missing ones are left out, as in the API).
pub(crate) fn contact_json<S: AsRef<str>>(contact: &pb::Contact, only: Option<&[S]>) -> Value {
    let fields: serde_json::Map<String, Value> = contact
        .fields
        .iter()
        .filter(|(name, _)| only.is_none_or(|only| only.iter().any(|f| f.as_ref() == name.as_str())))
        .map(|(name, v)| (name.clone(), Value::String(v.clone())))
        .collect();
    json!({ "email": contact.email, "fields": fields })
}

/// `email: …` then `name: value` per field, sorted by name.
pub(crate) fn contact_text(contact: &pb::Contact) -> String {
    let mut names: Vec<&String> = contact.fields.keys().collect();
    names.sort();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max("email".len());
    let mut out = format!("{:width$}  {}\n", "email:", cell(&contact.email), width = width + 1);
    for name in names {
        let label = format!("{name}:");
        out.push_str(&format!("{label:width$}  {}\n", cell(&contact.fields[name]), width = width + 1));
    }
    out
}

pub(crate) fn segment_json(segment: &pb::Segment) -> Value {
    json!({
        "id": segment.id,
        "name": segment.name,
        "version": segment.version,
        "criteria_text": segment.criteria_text,
        "created_at": segment.created_at,
        "updated_at": segment.updated_at,
        "legacy": segment.legacy,
        "legacy_list": segment.legacy_list,
        "topics": segment.topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        "bulk_parent_id": segment.bulk_parent_id,
        "cloned_from_id": segment.cloned_from_id,
        "uses": segment.uses.iter().map(|s| json!({"id": s.id, "name": s.name})).collect::<Vec<_>>(),
        "used_by": segment.used_by.iter().map(|s| json!({"id": s.id, "name": s.name})).collect::<Vec<_>>(),
    })
}

/// The segment as `key: value` lines, with the write's sequence when given.
pub(crate) fn segment_text(segment: &pb::Segment, sequence: Option<u64>) -> String {
    let mut out = format!(
        "id:        {}\nname:      {}\nversion:   {}\ncriteria:  {}\n",
        segment.id,
        cell(&segment.name),
        segment.version,
        cell(&segment.criteria_text)
    );
    if segment.legacy {
        out.push_str(&format!(
            "legacy:    yes, of list {} (read-only; clone it to change it)\n",
            cell(&segment.legacy_list)
        ));
    }
    if !segment.topics.is_empty() {
        let names: Vec<String> = segment.topics.iter().map(|t| cell(&t.name)).collect();
        out.push_str(&format!("topics:    {}\n", names.join(", ")));
    }
    let names = |list: &[pb::SegmentName]| -> String {
        list.iter().map(|s| format!("{} ({})", cell(&s.name), s.id)).collect::<Vec<_>>().join(", ")
    };
    if !segment.uses.is_empty() {
        out.push_str(&format!("uses:      {}\n", names(&segment.uses)));
    }
    if !segment.used_by.is_empty() {
        out.push_str(&format!("used by:   {}\n", names(&segment.used_by)));
    }
    if segment.cloned_from_id != 0 {
        out.push_str(&format!("cloned:    from segment {}\n", segment.cloned_from_id));
    }
    if segment.bulk_parent_id != 0 {
        out.push_str(&format!("bulk:      {}\n", segment.bulk_parent_id));
    }
    if let Some(sequence) = sequence {
        out.push_str(&format!("sequence:  {sequence}\n"));
    }
    out
}

/// An aligned table: ID, NAME, VERSION, CRITERIA (the last one unpadded).
pub(crate) fn segments_table(segments: &[pb::Segment]) -> String {
    let rows: Vec<[String; 4]> = std::iter::once(["ID".into(), "NAME".into(), "VERSION".into(), "CRITERIA".into()])
        .chain(
            segments.iter().map(|s| [s.id.to_string(), cell(&s.name), s.version.to_string(), cell(&s.criteria_text)]),
        )
        .collect();
    let width = |col: usize| rows.iter().map(|r| r[col].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    rows.iter()
        .map(|[id, name, version, criteria]| format!("{id:w0$}  {name:w1$}  {version:w2$}  {criteria}\n"))
        .collect()
}

/// The columns of `segctl events --format csv`; `data` is the JSON payload.
pub(crate) const EVENT_CSV_HEADER: [&str; 9] =
    ["sequence", "time", "type", "org", "aggregate_type", "aggregate_id", "actor", "command_id", "data"];

/// One CSV record, in [`EVENT_CSV_HEADER`] order.
pub(crate) fn event_csv_record(e: &pb::RecordedEvent) -> [String; 9] {
    [
        e.sequence.to_string(),
        e.time.clone(),
        e.r#type.clone(),
        e.org.clone(),
        e.aggregate_type.clone(),
        e.aggregate_id.clone(),
        e.actor.clone(),
        e.command_id.clone(),
        e.data_json.clone(),
    ]
}

/// A history for people: one aligned line per event (sequence, time, type,
/// actor, what happened). Contact updates show each changed field as
/// `old → new`, taking the old value from the contact's previous event.
pub(crate) fn history_text(events: &[pb::RecordedEvent]) -> String {
    let width = |f: fn(&pb::RecordedEvent) -> usize| events.iter().map(f).max().unwrap_or(0);
    let (w_seq, w_type, w_actor) = (
        width(|e| e.sequence.to_string().len()),
        width(|e| e.r#type.chars().count()),
        width(|e| e.actor.chars().count()),
    );
    let mut fields = BTreeMap::new();
    let mut out = String::new();
    for e in events {
        let what = summary(e, &mut fields);
        let actor = cell(&e.actor);
        out.push_str(&format!(
            "{:>w_seq$}  {}  {:w_type$}  {actor:w_actor$}  {}\n",
            e.sequence,
            e.time,
            e.r#type,
            cell(&what)
        ));
    }
    out
}

fn text_of(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn quoted(v: &Value) -> String {
    Value::String(text_of(v)).to_string()
}

fn shown(value: Option<&String>) -> &str {
    match value.map(String::as_str) {
        None | Some("") => "(empty)",
        Some(v) => v,
    }
}

/// What one event did, in words; `fields` carries a contact's fields from
/// one event to the next.
fn summary(e: &pb::RecordedEvent, fields: &mut BTreeMap<String, String>) -> String {
    let data: Value = serde_json::from_str(&e.data_json).unwrap_or(Value::Null);
    let contact_fields = |data: &Value| -> BTreeMap<String, String> {
        data["fields"].as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), text_of(v))).collect()).unwrap_or_default()
    };
    // added_at / updated_at repeat the event's own time: noise in a history.
    let bookkeeping = |name: &str| name == "added_at" || name == "updated_at";
    match e.r#type.as_str() {
        "ContactCreated" => {
            *fields = contact_fields(&data);
            let shown: Vec<String> =
                fields.iter().filter(|(k, _)| !bookkeeping(k)).map(|(k, v)| format!("{k}={v}")).collect();
            format!("created: {}", shown.join(", "))
        }
        "ContactUpdated" => {
            let now = contact_fields(&data);
            let changes: Vec<String> = data["changed"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text_of)
                .filter(|name| !bookkeeping(name))
                .map(|name| format!("{name}: {} → {}", shown(fields.get(&name)), shown(now.get(&name))))
                .collect();
            *fields = now;
            if changes.is_empty() { "updated".to_owned() } else { changes.join(", ") }
        }
        "ContactDeleted" => {
            fields.clear();
            "deleted".to_owned()
        }
        "SegmentCreated" => format!("created {} with criteria: {}", quoted(&data["name"]), text_of(&data["criteria"])),
        "SegmentUpdated" | "SegmentRolledBack" => {
            let mut parts = vec![format!("version {}", text_of(&data["version"]))];
            if data["to_version"].is_number() {
                parts.push(format!("rolled back to version {}", text_of(&data["to_version"])));
            }
            if data["name"].is_object() {
                parts.push(format!("name {} → {}", quoted(&data["name"]["from"]), quoted(&data["name"]["to"])));
            }
            if data["criteria"].is_object() {
                parts.push(format!(
                    "criteria: {} → {}",
                    text_of(&data["criteria"]["from"]),
                    text_of(&data["criteria"]["to"])
                ));
            }
            parts.join("; ")
        }
        "SegmentDeleted" => format!("deleted {}", quoted(&data["name"])),
        "ScoreReset" => {
            *fields = contact_fields(&data);
            let previous =
                if data["previous_score"].is_null() { "(empty)".to_owned() } else { text_of(&data["previous_score"]) };
            format!(
                "score reset: {previous} → {} by job {} ({})",
                shown(fields.get("score")),
                text_of(&data["job_id"]),
                quoted(&data["reason"])
            )
        }
        "ActivityRecorded" => {
            *fields = contact_fields(&data);
            let mut what = format!("{} at {}", text_of(&data["activity"]), text_of(&data["at"]));
            if !data["amount"].is_null() {
                what.push_str(&format!(", amount {}", text_of(&data["amount"])));
            }
            if !data["url"].is_null() {
                what.push_str(&format!(", url {}", text_of(&data["url"])));
            }
            what
        }
        // A type newer than this segctl: its payload as the server wrote it.
        _ => e.data_json.clone(),
    }
}

/// Prints pages of contacts (segment members, list members, campaign
/// recipients) up to a limit: one place for the columns, the limit and the
/// "is there another page" rule that every paged listing shares.
pub(crate) struct ContactPages {
    out: crate::Output,
    columns: Vec<String>,
    /// JSON shows only the chosen fields when `--fields` was given, all otherwise.
    json_only: bool,
    limit: u64,
    printed: u64,
}

impl ContactPages {
    /// `limit` 0 means no limit; blank `fields` are dropped, none chosen
    /// means [`DEFAULT_FIELDS`].
    pub(crate) fn new(out: crate::Output, fields: &[String], limit: u64) -> Self {
        let chosen: Vec<String> = fields.iter().map(|f| f.trim().to_owned()).filter(|f| !f.is_empty()).collect();
        let json_only = !chosen.is_empty();
        let columns = if json_only { chosen } else { DEFAULT_FIELDS.iter().map(|f| (*f).to_owned()).collect() };
        ContactPages { out, columns, json_only, limit, printed: 0 }
    }

    /// The next page size to ask for: `page_size`, or less when the limit is near.
    pub(crate) fn page_size(&self, page_size: u32) -> u32 {
        if self.limit == 0 {
            page_size
        } else {
            u32::try_from((self.limit - self.printed).min(u64::from(page_size))).unwrap_or(page_size)
        }
    }

    /// Prints one page; true when another page should be fetched.
    pub(crate) fn print<C: std::borrow::Borrow<pb::Contact>>(
        &mut self,
        contacts: impl IntoIterator<Item = C>,
        next_page_token: &str,
    ) -> std::io::Result<bool> {
        let mut text = String::new();
        let mut on_page = 0usize;
        for contact in contacts {
            on_page += 1;
            if self.limit_reached() {
                break;
            }
            let contact = contact.borrow();
            match self.out {
                crate::Output::Text => text.push_str(&contact_row(contact, &self.columns)),
                crate::Output::Json => {
                    text.push_str(&contact_json(contact, self.json_only.then_some(&self.columns[..])).to_string())
                }
            }
            text.push('\n');
            self.printed += 1;
        }
        crate::emit(&text)?;
        Ok(!next_page_token.is_empty() && !self.limit_reached() && on_page > 0)
    }

    fn limit_reached(&self) -> bool {
        self.limit != 0 && self.printed >= self.limit
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn contact_pages_ask_for_what_the_limit_still_allows() {
        let unlimited = ContactPages::new(crate::Output::Text, &[], 0);
        assert_eq!(unlimited.page_size(1000), 1000);
        let mut limited = ContactPages::new(crate::Output::Json, &[" email".into(), String::new()], 2500);
        assert_eq!(limited.columns, ["email"]);
        assert_eq!(limited.page_size(1000), 1000);
        limited.printed = 2000;
        assert_eq!(limited.page_size(1000), 500);
        assert_eq!(ContactPages::new(crate::Output::Text, &[], 100).page_size(30), 30);
    }

    use super::*;

    fn contact() -> pb::Contact {
        pb::Contact {
            email: "ada@example.com".into(),
            fields: [("first_name", "Ada"), ("country", "GB"), ("custom.plan", "pro")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    fn segment() -> pb::Segment {
        pb::Segment {
            id: 7,
            name: "young-eu".into(),
            criteria_text: r#"country in ("DE", "FR")"#.into(),
            criteria: None,
            version: 2,
            created_at: "2025-01-01T00:00:00Z".into(),
            updated_at: "2025-01-02T00:00:00Z".into(),
            ..Default::default()
        }
    }

    #[test]
    fn rows_have_the_chosen_columns_and_blanks_for_missing_fields() {
        assert_eq!(contact_row(&contact(), &DEFAULT_FIELDS), "ada@example.com\tAda\t\tGB");
        assert_eq!(contact_row(&contact(), &["custom.plan", "email"]), "pro\tada@example.com");
        let mut c = contact();
        c.fields.insert("company".into(), "A\tB\nC".into());
        assert_eq!(contact_row(&c, &["company"]), "A B C");
    }

    #[test]
    fn contact_json_has_email_and_fields() {
        let all = contact_json::<&str>(&contact(), None);
        assert_eq!(
            all,
            json!({"email": "ada@example.com", "fields": {"country": "GB", "custom.plan": "pro", "first_name": "Ada"}})
        );
        let some = contact_json(&contact(), Some(&["email", "country", "age"][..]));
        assert_eq!(some, json!({"email": "ada@example.com", "fields": {"country": "GB"}}));
        assert_eq!(some.to_string().lines().count(), 1, "one object per line");
    }

    #[test]
    fn contact_text_is_sorted_and_aligned() {
        assert_eq!(
            contact_text(&contact()),
            "email:        ada@example.com\ncountry:      GB\ncustom.plan:  pro\nfirst_name:   Ada\n"
        );
    }

    #[test]
    fn segments_print_as_lines_json_and_table() {
        assert_eq!(
            segment_text(&segment(), Some(12)),
            "id:        7\nname:      young-eu\nversion:   2\ncriteria:  country in (\"DE\", \"FR\")\nsequence:  12\n"
        );
        assert!(!segment_text(&segment(), None).contains("sequence"));
        let j = segment_json(&segment());
        assert_eq!(j["id"], 7);
        assert_eq!(j["name"], "young-eu");
        assert_eq!(j["version"], 2);
        let mut long = segment();
        long.id = 123;
        long.name = "germany".into();
        long.criteria_text = r#"country = "DE""#.into();
        assert_eq!(
            segments_table(&[segment(), long]),
            "ID   NAME      VERSION  CRITERIA\n\
             7    young-eu  2        country in (\"DE\", \"FR\")\n\
             123  germany   2        country = \"DE\"\n"
        );
        assert_eq!(segments_table(&[]), "ID  NAME  VERSION  CRITERIA\n");
    }

    #[test]
    fn status_lines_use_canonical_code_names() {
        let s = tonic::Status::not_found("no segment is named \"x\"");
        assert_eq!(status_line(&s), "NOT_FOUND: no segment is named \"x\"");
        assert_eq!(status_line(&tonic::Status::aborted("")), "ABORTED: The operation was aborted");
    }

    fn event(seq: u64, kind: &str, data: Value) -> pb::RecordedEvent {
        pb::RecordedEvent {
            sequence: seq,
            r#type: kind.into(),
            actor: "acme/key-1".into(),
            time: format!("2025-01-01T00:00:{seq:02}Z"),
            data_json: data.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn histories_say_what_changed_from_what_to_what() {
        let contact = [
            event(
                3,
                "ContactCreated",
                json!({"email": "a@x.com", "fields": {"score": "150", "country": "DE", "added_at": "2025-01-01T00:00:03Z"}}),
            ),
            event(
                12,
                "ContactUpdated",
                json!({"email": "a@x.com", "fields": {"score": "175", "age": "31"}, "changed": ["age", "country", "score", "updated_at"]}),
            ),
            event(13, "ContactDeleted", json!({"email": "a@x.com"})),
        ];
        assert_eq!(
            history_text(&contact),
            " 3  2025-01-01T00:00:03Z  ContactCreated  acme/key-1  created: country=DE, score=150\n\
             12  2025-01-01T00:00:12Z  ContactUpdated  acme/key-1  age: (empty) → 31, country: DE → (empty), score: 150 → 175\n\
             13  2025-01-01T00:00:13Z  ContactDeleted  acme/key-1  deleted\n"
        );
        let segment = [
            event(1, "SegmentCreated", json!({"segment_id": 4, "name": "de", "criteria": "country = \"DE\""})),
            event(
                2,
                "SegmentUpdated",
                json!({"segment_id": 4, "version": 2, "name": null, "criteria": {"from": "country = \"DE\"", "to": "age > 3"}}),
            ),
            event(3, "SegmentDeleted", json!({"segment_id": 4, "name": "de"})),
            event(4, "SomethingNew", json!({"x": 1})),
        ];
        let text = history_text(&segment);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with(r#"created "de" with criteria: country = "DE""#), "{text}");
        assert!(lines[1].ends_with(r#"version 2; criteria: country = "DE" → age > 3"#), "{text}");
        assert!(lines[2].ends_with(r#"deleted "de""#), "{text}");
        assert!(lines[3].ends_with(r#"{"x":1}"#), "{text}");
    }

    #[test]
    fn histories_show_resets_and_activity() {
        let contact = [
            event(3, "ContactCreated", json!({"email": "a@x.com", "fields": {"score": "150"}})),
            event(
                4,
                "ScoreReset",
                json!({"email": "a@x.com", "fields": {"score": "0"}, "previous_score": 150, "reason": "v2", "job_id": "r1"}),
            ),
            event(
                5,
                "ActivityRecorded",
                json!({"email": "a@x.com", "fields": {"score": "0", "purchase_count": "1"}, "activity": "purchase",
                       "url": null, "amount": "9.5", "at": "2025-01-01T00:00:05Z"}),
            ),
            event(6, "ContactUpdated", json!({"email": "a@x.com", "fields": {"score": "7"}, "changed": ["score"]})),
        ];
        let text = history_text(&contact);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].ends_with(r#"score reset: 150 → 0 by job r1 ("v2")"#), "{text}");
        assert!(lines[2].ends_with("purchase at 2025-01-01T00:00:05Z, amount 9.5"), "{text}");
        assert!(lines[3].ends_with("score: 0 → 7"), "{text}");
    }

    #[test]
    fn csv_records_follow_the_header() {
        let mut e = event(7, "ContactDeleted", json!({"email": "a@x.com"}));
        e.org = "acme".into();
        let record = event_csv_record(&e);
        assert_eq!(record.len(), EVENT_CSV_HEADER.len());
        assert_eq!(record[0], "7");
        assert_eq!(record[2], "ContactDeleted");
        assert_eq!(record[8], r#"{"email":"a@x.com"}"#);
    }
}
