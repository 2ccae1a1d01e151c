//! What segctl prints: text for people (and plain numbers / tab-separated
//! rows for scripts), JSON with `--output json`. Pure functions from API
//! messages to strings, plus the error line for a gRPC status.

use segmentd_proto::v1 as pb;
use serde_json::{Value, json};
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
fn cell(text: &str) -> String {
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

#[cfg(test)]
mod tests {
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
}
