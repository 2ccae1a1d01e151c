//! Contact commands: upsert by email and delete, decided against the
//! contact's current state (`None` when it does not exist).

use crate::contact::{Contact, Email, Field, FieldKind};
use crate::decimal::Decimal;
use crate::error::DomainError;
use crate::event::{ContactCreated, ContactDeleted, ContactUpdated, Event};
use crate::time::Timestamp;

/// Longest text a contact field may hold, in bytes.
pub const MAX_TEXT_FIELD_LEN: usize = 1024;
/// Most custom fields one contact may carry.
pub const MAX_CUSTOM_FIELDS: usize = 64;

/// One field set to one value by an upsert; `None` / `""` clears it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldInput {
    Text(String),
    Integer(Option<i64>),
    Decimal(Option<Decimal>),
    Time(Option<Timestamp>),
}

impl FieldInput {
    /// Reads a field's value from its text form (as in a CSV cell): integers,
    /// decimals and RFC 3339 instants by the field's kind; `""` is empty.
    pub fn parse(field: &Field, raw: &str) -> Result<FieldInput, DomainError> {
        let bad = |what: String| DomainError::InvalidValue(format!("field {field}: {what}"));
        let raw_trimmed = raw.trim();
        match field.kind() {
            FieldKind::Text => {
                if raw.len() > MAX_TEXT_FIELD_LEN {
                    return Err(bad(format!("longer than {MAX_TEXT_FIELD_LEN} bytes")));
                }
                if raw.chars().any(char::is_control) {
                    return Err(bad("contains control characters".into()));
                }
                Ok(FieldInput::Text(raw.to_owned()))
            }
            _ if raw_trimmed.is_empty() => Ok(match field.kind() {
                FieldKind::Integer => FieldInput::Integer(None),
                FieldKind::Decimal => FieldInput::Decimal(None),
                _ => FieldInput::Time(None),
            }),
            FieldKind::Integer => raw_trimmed
                .parse::<i64>()
                .map(|v| FieldInput::Integer(Some(v)))
                .map_err(|_| bad(format!("expected an integer, got {raw:?}"))),
            FieldKind::Decimal => {
                Decimal::parse(raw_trimmed).map(|v| FieldInput::Decimal(Some(v))).map_err(|e| bad(e.to_string()))
            }
            FieldKind::Time => {
                Timestamp::parse_rfc3339(raw_trimmed).map(|v| FieldInput::Time(Some(v))).map_err(|e| bad(e.to_string()))
            }
        }
    }
}

/// The fields an upsert sets on the contact with `email`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactPatch {
    pub email: Email,
    pub set: Vec<(Field, FieldInput)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContactCommand {
    /// Create the contact, or change the given fields of the existing one.
    Upsert(ContactPatch),
    Delete(Email),
}

/// Decides a contact command. An upsert that changes nothing records nothing.
pub fn decide_contact(
    state: Option<&Contact>,
    command: ContactCommand,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    match command {
        ContactCommand::Delete(email) => match state {
            Some(_) => Ok(vec![Event::ContactDeleted(ContactDeleted { email: email.into_string() })]),
            None => Err(DomainError::ContactNotFound(email.into_string())),
        },
        ContactCommand::Upsert(patch) => {
            let sets_updated_at = patch.set.iter().any(|(f, _)| *f == Field::UpdatedAt);
            match state {
                None => {
                    let mut contact = Contact::new(patch.email, now);
                    apply_patch(&mut contact, patch.set)?;
                    if !sets_updated_at && contact.updated_at < contact.added_at {
                        contact.updated_at = contact.added_at;
                    }
                    Ok(vec![Event::ContactCreated(ContactCreated { contact })])
                }
                Some(old) => {
                    let mut contact = old.clone();
                    apply_patch(&mut contact, patch.set)?;
                    let changed = changed_fields(old, &contact);
                    if changed.is_empty() {
                        return Ok(vec![]);
                    }
                    if !sets_updated_at {
                        contact.updated_at = now;
                    }
                    Ok(vec![Event::ContactUpdated(ContactUpdated { contact, changed })])
                }
            }
        }
    }
}

/// The state after a contact event; `None` once deleted.
pub fn apply_contact(event: &Event) -> Option<Option<Contact>> {
    match event {
        Event::ContactCreated(e) => Some(Some(e.contact.clone())),
        Event::ContactUpdated(e) => Some(Some(e.contact.clone())),
        Event::ContactDeleted(_) => Some(None),
        Event::ScoreReset(e) => Some(Some(e.contact.clone())),
        Event::ActivityRecorded(e) => Some(Some(e.contact.clone())),
        _ => None,
    }
}

fn apply_patch(contact: &mut Contact, set: Vec<(Field, FieldInput)>) -> Result<(), DomainError> {
    for (field, value) in set {
        let name = field.to_string();
        let mismatch = || DomainError::InvalidValue(format!("field {name}: value of the wrong kind"));
        match (field, value) {
            (Field::Email, _) => {
                return Err(DomainError::InvalidValue(
                    "field email: the email identifies the contact and cannot be set as a field".into(),
                ));
            }
            (Field::Custom(name), FieldInput::Text(v)) => {
                if v.is_empty() {
                    contact.custom.remove(&name);
                } else {
                    contact.custom.insert(name, v);
                    if contact.custom.len() > MAX_CUSTOM_FIELDS {
                        return Err(DomainError::InvalidValue(format!(
                            "a contact may have at most {MAX_CUSTOM_FIELDS} custom fields"
                        )));
                    }
                }
            }
            (f, FieldInput::Text(v)) => *text_slot(contact, &f).ok_or_else(mismatch)? = v,
            (Field::ContactId, FieldInput::Integer(v)) => contact.contact_id = v,
            (Field::Age, FieldInput::Integer(v)) => {
                if v.is_some_and(|a| !(0..=150).contains(&a)) {
                    return Err(DomainError::InvalidValue("field age: must be from 0 to 150".into()));
                }
                contact.age = v;
            }
            (Field::Score, FieldInput::Integer(v)) => contact.score = v,
            (Field::PurchaseCount, FieldInput::Integer(v)) => {
                if v.is_some_and(|n| n < 0) {
                    return Err(DomainError::InvalidValue("field purchase_count: must not be negative".into()));
                }
                contact.purchase_count = v;
            }
            (Field::TotalSpent, FieldInput::Decimal(v)) => contact.total_spent = v,
            (Field::LastPurchaseAt, FieldInput::Time(v)) => contact.last_purchase_at = v,
            (Field::LastOpenedAt, FieldInput::Time(v)) => contact.last_opened_at = v,
            (Field::AddedAt, FieldInput::Time(Some(v))) => contact.added_at = v,
            (Field::UpdatedAt, FieldInput::Time(Some(v))) => contact.updated_at = v,
            (f @ (Field::AddedAt | Field::UpdatedAt), FieldInput::Time(None)) => {
                return Err(DomainError::InvalidValue(format!("field {f}: cannot be empty")));
            }
            _ => return Err(mismatch()),
        }
    }
    Ok(())
}

fn text_slot<'c>(c: &'c mut Contact, field: &Field) -> Option<&'c mut String> {
    Some(match field {
        Field::FirstName => &mut c.first_name,
        Field::LastName => &mut c.last_name,
        Field::Company => &mut c.company,
        Field::City => &mut c.city,
        Field::State => &mut c.state,
        Field::Country => &mut c.country,
        Field::Gender => &mut c.gender,
        Field::LifecycleStage => &mut c.lifecycle_stage,
        _ => return None,
    })
}

fn changed_fields(old: &Contact, new: &Contact) -> Vec<String> {
    let mut changed: Vec<String> =
        Field::BUILTIN.iter().filter(|f| old.value(f) != new.value(f)).map(|f| f.to_string()).collect();
    let keys = old.custom.keys().chain(new.custom.keys());
    let mut custom: Vec<String> = keys
        .filter(|k| old.custom.get(*k) != new.custom.get(*k))
        .map(|k| Field::Custom(k.clone()).to_string())
        .collect();
    custom.dedup();
    changed.extend(custom);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn patch(e: &str, fields: &[(&str, &str)]) -> ContactCommand {
        let set = fields
            .iter()
            .map(|(f, v)| {
                let f = Field::parse(f).unwrap();
                let v = FieldInput::parse(&f, v).unwrap();
                (f, v)
            })
            .collect();
        ContactCommand::Upsert(ContactPatch { email: email(e), set })
    }

    #[test]
    fn given_no_contact_when_upserted_then_it_is_created_with_its_fields() {
        let now = t("2026-01-01T00:00:00Z");
        let events = decide_contact(None, patch("Ann@X.com", &[("country", "DE"), ("age", "30")]), now).unwrap();
        let [Event::ContactCreated(ContactCreated { contact })] = events.as_slice() else { panic!("{events:?}") };
        assert_eq!(contact.email, "ann@x.com");
        assert_eq!(contact.country, "DE");
        assert_eq!(contact.age, Some(30));
        assert_eq!(contact.added_at, now);
    }

    #[test]
    fn given_a_contact_when_upserted_with_the_same_values_then_nothing_is_recorded() {
        let now = t("2026-01-01T00:00:00Z");
        let c = Contact { country: "DE".into(), ..Contact::new(email("a@x.com"), now) };
        let events = decide_contact(Some(&c), patch("a@x.com", &[("country", "DE")]), now).unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn given_a_contact_when_a_field_changes_then_the_update_names_it_and_keeps_the_rest() {
        let then = t("2025-01-01T00:00:00Z");
        let now = t("2026-01-01T00:00:00Z");
        let c = Contact { country: "DE".into(), city: "Berlin".into(), ..Contact::new(email("a@x.com"), then) };
        let events =
            decide_contact(Some(&c), patch("a@x.com", &[("country", "FR"), ("custom.plan", "pro")]), now).unwrap();
        let [Event::ContactUpdated(u)] = events.as_slice() else { panic!("{events:?}") };
        assert_eq!(u.changed, vec!["country", "custom.plan"]);
        assert_eq!(u.contact.city, "Berlin");
        assert_eq!(u.contact.updated_at, now);
        assert_eq!(u.contact.added_at, then);
    }

    #[test]
    fn given_no_contact_when_deleted_then_not_found() {
        let err = decide_contact(None, ContactCommand::Delete(email("a@x.com")), Timestamp(0)).unwrap_err();
        assert_eq!(err, DomainError::ContactNotFound("a@x.com".into()));
    }

    #[test]
    fn given_a_contact_when_deleted_then_deleted_and_apply_forgets_it() {
        let c = Contact::new(email("a@x.com"), Timestamp(0));
        let events = decide_contact(Some(&c), ContactCommand::Delete(email("a@x.com")), Timestamp(0)).unwrap();
        assert_eq!(apply_contact(&events[0]), Some(None));
    }

    #[test]
    fn values_of_the_wrong_kind_are_refused_naming_the_field() {
        let e = FieldInput::parse(&Field::Age, "old").unwrap_err().to_string();
        assert!(e.contains("age") && e.contains("integer"), "{e}");
        let e = FieldInput::parse(&Field::AddedAt, "yesterday").unwrap_err().to_string();
        assert!(e.contains("added_at"), "{e}");
        let err = decide_contact(None, patch("a@x.com", &[("age", "200")]), Timestamp(0)).unwrap_err();
        assert!(err.to_string().contains("age"));
        let err = decide_contact(None, patch("a@x.com", &[("email", "b@x.com")]), Timestamp(0)).unwrap_err();
        assert!(err.to_string().contains("email"));
    }
}
