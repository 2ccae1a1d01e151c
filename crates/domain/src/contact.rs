//! Contacts: the record, its fields as criteria see them, and the rules a
//! contact's values must obey. The email is a contact's identity within an
//! organisation, kept lowercase so that "Ann@X.com" and "ann@x.com" are one.

use crate::decimal::Decimal;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A contact as it stands after an event. Frozen: it is part of released
/// event payloads (`ContactCreated`, `ContactUpdated`), so a new field means a
/// new payload version, never a change here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub email: String,
    /// The id the contact has in the system it was imported from, if any.
    pub contact_id: Option<i64>,
    pub first_name: String,
    pub last_name: String,
    pub company: String,
    pub city: String,
    pub state: String,
    pub country: String,
    pub age: Option<i64>,
    pub gender: String,
    pub score: Option<i64>,
    pub lifecycle_stage: String,
    pub total_spent: Option<Decimal>,
    pub purchase_count: Option<i64>,
    pub last_purchase_at: Option<Timestamp>,
    pub last_opened_at: Option<Timestamp>,
    pub added_at: Timestamp,
    pub updated_at: Timestamp,
    pub custom: BTreeMap<String, String>,
}

impl Contact {
    /// A contact with only an email, added and updated at `now`.
    pub fn new(email: Email, now: Timestamp) -> Self {
        Contact {
            email: email.0,
            contact_id: None,
            first_name: String::new(),
            last_name: String::new(),
            company: String::new(),
            city: String::new(),
            state: String::new(),
            country: String::new(),
            age: None,
            gender: String::new(),
            score: None,
            lifecycle_stage: String::new(),
            total_spent: None,
            purchase_count: None,
            last_purchase_at: None,
            last_opened_at: None,
            added_at: now,
            updated_at: now,
            custom: BTreeMap::new(),
        }
    }

    /// The value of `field` as criteria compare it.
    pub fn value(&self, field: &Field) -> FieldValue<'_> {
        use FieldValue as V;
        match field {
            Field::ContactId => V::Integer(self.contact_id),
            Field::Email => V::Text(&self.email),
            Field::FirstName => V::Text(&self.first_name),
            Field::LastName => V::Text(&self.last_name),
            Field::Company => V::Text(&self.company),
            Field::City => V::Text(&self.city),
            Field::State => V::Text(&self.state),
            Field::Country => V::Text(&self.country),
            Field::Age => V::Integer(self.age),
            Field::Gender => V::Text(&self.gender),
            Field::Score => V::Integer(self.score),
            Field::LifecycleStage => V::Text(&self.lifecycle_stage),
            Field::TotalSpent => V::Decimal(self.total_spent),
            Field::PurchaseCount => V::Integer(self.purchase_count),
            Field::LastPurchaseAt => V::Time(self.last_purchase_at),
            Field::LastOpenedAt => V::Time(self.last_opened_at),
            Field::AddedAt => V::Time(Some(self.added_at)),
            Field::UpdatedAt => V::Time(Some(self.updated_at)),
            Field::Custom(name) => V::Text(self.custom.get(name).map_or("", String::as_str)),
        }
    }
}

/// What kind of value a field holds; decides which operators and literals
/// criteria may use with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Integer,
    Decimal,
    Time,
}

impl fmt::Display for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldKind::Text => "text",
            FieldKind::Integer => "an integer",
            FieldKind::Decimal => "a decimal number",
            FieldKind::Time => "an RFC 3339 date-time",
        })
    }
}

/// A contact field, named as the columns of `gen_contacts.py`; custom fields
/// are `custom.<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    ContactId,
    Email,
    FirstName,
    LastName,
    Company,
    City,
    State,
    Country,
    Age,
    Gender,
    Score,
    LifecycleStage,
    TotalSpent,
    PurchaseCount,
    LastPurchaseAt,
    LastOpenedAt,
    AddedAt,
    UpdatedAt,
    Custom(String),
}

pub const CUSTOM_PREFIX: &str = "custom.";
pub const MAX_CUSTOM_NAME_LEN: usize = 64;

impl Field {
    /// Every built-in field, in the column order of `gen_contacts.py`.
    pub const BUILTIN: [Field; 18] = [
        Field::ContactId,
        Field::Email,
        Field::FirstName,
        Field::LastName,
        Field::Company,
        Field::City,
        Field::State,
        Field::Country,
        Field::Age,
        Field::Gender,
        Field::Score,
        Field::LifecycleStage,
        Field::TotalSpent,
        Field::PurchaseCount,
        Field::LastPurchaseAt,
        Field::LastOpenedAt,
        Field::AddedAt,
        Field::UpdatedAt,
    ];

    pub fn parse(name: &str) -> Result<Field, FieldError> {
        if let Some(custom) = name.strip_prefix(CUSTOM_PREFIX) {
            return if is_valid_custom_name(custom) {
                Ok(Field::Custom(custom.to_owned()))
            } else {
                Err(FieldError::BadCustomName(name.to_owned()))
            };
        }
        Field::BUILTIN.iter().find(|f| f.name() == name).cloned().ok_or_else(|| FieldError::Unknown(name.to_owned()))
    }

    pub fn name(&self) -> &str {
        match self {
            Field::ContactId => "contact_id",
            Field::Email => "email",
            Field::FirstName => "first_name",
            Field::LastName => "last_name",
            Field::Company => "company",
            Field::City => "city",
            Field::State => "state",
            Field::Country => "country",
            Field::Age => "age",
            Field::Gender => "gender",
            Field::Score => "score",
            Field::LifecycleStage => "lifecycle_stage",
            Field::TotalSpent => "total_spent",
            Field::PurchaseCount => "purchase_count",
            Field::LastPurchaseAt => "last_purchase_at",
            Field::LastOpenedAt => "last_opened_at",
            Field::AddedAt => "added_at",
            Field::UpdatedAt => "updated_at",
            Field::Custom(name) => name,
        }
    }

    pub fn kind(&self) -> FieldKind {
        match self {
            Field::ContactId | Field::Age | Field::Score | Field::PurchaseCount => FieldKind::Integer,
            Field::TotalSpent => FieldKind::Decimal,
            Field::LastPurchaseAt | Field::LastOpenedAt | Field::AddedAt | Field::UpdatedAt => FieldKind::Time,
            _ => FieldKind::Text,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Field::Custom(name) = self { write!(f, "{CUSTOM_PREFIX}{name}") } else { f.write_str(self.name()) }
    }
}

pub fn is_valid_custom_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CUSTOM_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("unknown field {0:?}: fields are {known} or custom.<name>", known = builtin_names())]
    Unknown(String),
    #[error("invalid custom field {0:?}: the name after \"custom.\" must be 1 to 64 letters, digits, '_' or '-'")]
    BadCustomName(String),
}

fn builtin_names() -> String {
    Field::BUILTIN.iter().map(Field::name).collect::<Vec<_>>().join(", ")
}

/// A field's value borrowed from a contact. `Text("")` and `None` are "empty".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValue<'a> {
    Text(&'a str),
    Integer(Option<i64>),
    Decimal(Option<Decimal>),
    Time(Option<Timestamp>),
}

impl FieldValue<'_> {
    /// The value in the text form the API reads and writes (integers and
    /// decimals as digits, instants as RFC 3339 UTC); `None` when empty.
    pub fn text(&self) -> Option<String> {
        match self {
            FieldValue::Text("") => None,
            FieldValue::Text(s) => Some((*s).to_owned()),
            FieldValue::Integer(v) => v.map(|v| v.to_string()),
            FieldValue::Decimal(v) => v.map(|v| v.to_string()),
            FieldValue::Time(v) => v.map(|v| v.to_string()),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            FieldValue::Text(s) => s.is_empty(),
            FieldValue::Integer(v) => v.is_none(),
            FieldValue::Decimal(v) => v.is_none(),
            FieldValue::Time(v) => v.is_none(),
        }
    }
}

/// A syntactically plausible email address, lowercased.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

pub const MAX_EMAIL_LEN: usize = 254;

impl Email {
    pub fn parse(raw: &str) -> Result<Email, EmailError> {
        let e = raw.trim();
        let bad = |why: &'static str| EmailError { input: raw.to_owned(), why };
        if e.is_empty() {
            return Err(bad("it is empty"));
        }
        if e.len() > MAX_EMAIL_LEN {
            return Err(bad("it is longer than 254 bytes"));
        }
        if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains whitespace or control characters"));
        }
        let Some((local, domain)) = e.rsplit_once('@') else {
            return Err(bad("it has no '@'"));
        };
        if local.is_empty() || local.contains('@') {
            return Err(bad("the part before '@' is empty or holds another '@'"));
        }
        if domain.is_empty()
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(bad("the domain after '@' is not like example.com"));
        }
        Ok(Email(e.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid email {input:?}: {why}")]
pub struct EmailError {
    pub input: String,
    pub why: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_field_parses_back_from_its_name() {
        for f in Field::BUILTIN {
            assert_eq!(Field::parse(f.name()).unwrap(), f);
        }
        assert_eq!(Field::parse("custom.plan").unwrap(), Field::Custom("plan".into()));
        assert_eq!(Field::Custom("plan".into()).to_string(), "custom.plan");
    }

    #[test]
    fn unknown_fields_are_named_in_the_error() {
        let e = Field::parse("shoe_size").unwrap_err().to_string();
        assert!(e.contains("shoe_size") && e.contains("country"), "{e}");
        assert!(Field::parse("custom.").is_err());
        assert!(Field::parse("custom.a b").is_err());
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(Email::parse(" Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
        for bad in ["", "ann", "ann@", "@x.com", "ann@x", "a b@x.com", "ann@x..com", "a@b@c.com"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
