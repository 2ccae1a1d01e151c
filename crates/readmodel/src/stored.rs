//! A contact as the read model keeps it in memory and in sled: the postcard
//! bytes of `Contact`, in one shared allocation.
//!
//! Why bytes: a `Contact` with its ten `String`s and the custom fields'
//! `BTreeMap` costs about 1.3 KB of heap in a dozen allocations; its postcard
//! form is about 200 bytes in one. Why postcard's form of `Contact` and not
//! a layout of our own: `Contact` is part of released event payloads, so
//! that form is frozen (DESIGN.md, Hazards) and its bytes mean the same
//! forever; the read model already stored exactly these bytes in sled.
//!
//! Fields are read without copying ([`ContactFields`] borrows the strings);
//! member pages and exports hand out the stored form, which the gRPC edge
//! reads in place; a whole `Contact` is decoded only for a single contact,
//! a job's dry run, or the rare condition the index cannot answer.

use segmentd_domain::Contact;
use segmentd_domain::contact::{Field, FieldValue};
use segmentd_domain::decimal::Decimal;
use segmentd_domain::time::Timestamp;
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;

/// A contact in its stored form. Cloning shares the bytes (the membership
/// feed holds contacts this way without copying them).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredContact(Arc<[u8]>);

impl StoredContact {
    pub fn encode(contact: &Contact) -> StoredContact {
        StoredContact(postcard::to_stdvec(contact).expect("a Contact always serializes").into())
    }

    /// The stored bytes, checked to be a whole `Contact`.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<StoredContact, postcard::Error> {
        let (_, rest) = postcard::take_from_bytes::<ContactFields<'_>>(bytes)?;
        if !rest.is_empty() {
            return Err(postcard::Error::DeserializeBadEncoding);
        }
        Ok(StoredContact(bytes.into()))
    }

    /// The `Contact` at the start of `bytes` (an event's payload: the
    /// contact comes first in `ContactCreated` and `ContactUpdated`),
    /// checked, as stored, and the bytes after it. `None` when they are not
    /// a contact, or not one that decoding and encoding again would give
    /// back byte for byte (custom fields out of order or repeated, which
    /// segmentd never writes): the caller decodes those in full.
    pub(crate) fn from_prefix(bytes: &[u8]) -> Option<(StoredContact, &[u8])> {
        let (fields, rest) = postcard::take_from_bytes::<ContactFields<'_>>(bytes).ok()?;
        if !fields.custom.windows(2).all(|w| w[0].0 < w[1].0) {
            return None;
        }
        Some((StoredContact(bytes[..bytes.len() - rest.len()].into()), rest))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The contact's fields, borrowed from the bytes (an export reads
    /// its columns this way, without decoding the whole contact).
    pub fn fields(&self) -> ContactFields<'_> {
        postcard::from_bytes(&self.0).expect("stored contacts were checked when they were made")
    }

    /// The contact's fields as bytes, without checking the strings again:
    /// what building the index over every contact reads (see [`RawFields`]).
    pub(crate) fn raw_fields(&self) -> RawFields<'_> {
        RawFields::walk(&self.0)
    }

    /// The contact's email (its identity in the org). Only the first field
    /// is read: looking a contact up by email should not check every string
    /// of every contact it passes.
    pub fn email(&self) -> &str {
        postcard::take_from_bytes::<&str>(&self.0).expect("stored contacts were checked when they were made").0
    }

    /// The whole contact.
    pub fn to_contact(&self) -> Contact {
        postcard::from_bytes(&self.0).expect("stored contacts were checked when they were made")
    }
}

impl fmt::Debug for StoredContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_contact().fmt(f)
    }
}

/// `Contact` with its text borrowed: the same fields in the same order, so
/// the same postcard bytes decode into either. The custom fields (a map in
/// `Contact`) are a sequence of pairs here: postcard writes a map and a
/// sequence alike, a length then the elements.
#[derive(Deserialize)]
pub struct ContactFields<'a> {
    pub(crate) email: &'a str,
    contact_id: Option<i64>,
    first_name: &'a str,
    last_name: &'a str,
    company: &'a str,
    city: &'a str,
    state: &'a str,
    country: &'a str,
    age: Option<i64>,
    gender: &'a str,
    score: Option<i64>,
    lifecycle_stage: &'a str,
    total_spent: Option<Decimal>,
    purchase_count: Option<i64>,
    last_purchase_at: Option<Timestamp>,
    last_opened_at: Option<Timestamp>,
    added_at: Timestamp,
    updated_at: Timestamp,
    #[serde(borrow)]
    custom: Vec<(&'a str, &'a str)>,
}

impl<'a> ContactFields<'a> {
    /// The value of `field`, exactly as `Contact::value` gives it.
    pub fn value(&self, field: &Field) -> FieldValue<'a> {
        use FieldValue as V;
        match field {
            Field::ContactId => V::Integer(self.contact_id),
            Field::Email => V::Text(self.email),
            Field::FirstName => V::Text(self.first_name),
            Field::LastName => V::Text(self.last_name),
            Field::Company => V::Text(self.company),
            Field::City => V::Text(self.city),
            Field::State => V::Text(self.state),
            Field::Country => V::Text(self.country),
            Field::Age => V::Integer(self.age),
            Field::Gender => V::Text(self.gender),
            Field::Score => V::Integer(self.score),
            Field::LifecycleStage => V::Text(self.lifecycle_stage),
            Field::TotalSpent => V::Decimal(self.total_spent),
            Field::PurchaseCount => V::Integer(self.purchase_count),
            Field::LastPurchaseAt => V::Time(self.last_purchase_at),
            Field::LastOpenedAt => V::Time(self.last_opened_at),
            Field::AddedAt => V::Time(Some(self.added_at)),
            Field::UpdatedAt => V::Time(Some(self.updated_at)),
            Field::Custom(name) => V::Text(self.custom(name).unwrap_or("")),
        }
    }

    /// The value of custom field `name`, if the contact has it.
    pub(crate) fn custom(&self, name: &str) -> Option<&'a str> {
        // Sorted by name: the map they were written from was a BTreeMap.
        self.custom.binary_search_by(|(k, _)| (*k).cmp(name)).ok().map(|i| self.custom[i].1)
    }

    /// Every custom field, by name.
    pub fn customs(&self) -> &[(&'a str, &'a str)] {
        &self.custom
    }
}

/// A stored contact's fields read straight off its bytes, in `Contact`'s
/// postcard layout (strings: a varint length and the bytes; integers,
/// decimals and instants: zigzag varints; options: a 0 or 1 byte first;
/// custom fields: a count, then name and value strings). Why not
/// [`ContactFields`]: that checks every string to be UTF-8 again, and
/// gathers the custom fields into a vector, for each of a million contacts
/// when the index is built; these bytes were checked when the contact was
/// stored ([`StoredContact::from_bytes`], [`StoredContact::from_prefix`],
/// [`StoredContact::encode`]), and the index needs most strings only as
/// keys. A test pins this reading to `ContactFields`'.
pub(crate) struct RawFields<'a> {
    email: &'a [u8],
    contact_id: Option<i64>,
    first_name: &'a [u8],
    last_name: &'a [u8],
    company: &'a [u8],
    city: &'a [u8],
    state: &'a [u8],
    country: &'a [u8],
    age: Option<i64>,
    gender: &'a [u8],
    score: Option<i64>,
    lifecycle_stage: &'a [u8],
    total_spent: Option<i64>,
    purchase_count: Option<i64>,
    last_purchase_at: Option<i64>,
    last_opened_at: Option<i64>,
    added_at: i64,
    updated_at: i64,
    /// The custom fields' count and pairs, still encoded.
    custom: &'a [u8],
}

/// Reads postcard's encoding from checked bytes.
struct Walk<'a> {
    bytes: &'a [u8],
}

impl<'a> Walk<'a> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.bytes.split_first().expect("stored contacts were checked when they were made");
        self.bytes = rest;
        b
    }

    fn varint(&mut self) -> u64 {
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let b = self.byte();
            value |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return value;
            }
            shift += 7;
        }
    }

    fn text(&mut self) -> &'a [u8] {
        let len = self.varint() as usize;
        let (text, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        text
    }

    fn int(&mut self) -> i64 {
        let zigzag = self.varint();
        ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64)
    }

    fn option(&mut self) -> Option<i64> {
        (self.byte() != 0).then(|| self.int())
    }
}

impl<'a> RawFields<'a> {
    fn walk(bytes: &'a [u8]) -> Self {
        let mut w = Walk { bytes };
        RawFields {
            email: w.text(),
            contact_id: w.option(),
            first_name: w.text(),
            last_name: w.text(),
            company: w.text(),
            city: w.text(),
            state: w.text(),
            country: w.text(),
            age: w.option(),
            gender: w.text(),
            score: w.option(),
            lifecycle_stage: w.text(),
            total_spent: w.option(),
            purchase_count: w.option(),
            last_purchase_at: w.option(),
            last_opened_at: w.option(),
            added_at: w.int(),
            updated_at: w.int(),
            custom: w.bytes,
        }
    }

    /// The bytes of text field `field` (empty for any other field).
    pub(crate) fn text(&self, field: &Field) -> &'a [u8] {
        match field {
            Field::Email => self.email,
            Field::FirstName => self.first_name,
            Field::LastName => self.last_name,
            Field::Company => self.company,
            Field::City => self.city,
            Field::State => self.state,
            Field::Country => self.country,
            Field::Gender => self.gender,
            Field::LifecycleStage => self.lifecycle_stage,
            _ => &[],
        }
    }

    /// The value of an integer, decimal or date-time field as the `i64`
    /// it is (`None` for a text field).
    pub(crate) fn number(&self, field: &Field) -> Option<i64> {
        match field {
            Field::ContactId => self.contact_id,
            Field::Age => self.age,
            Field::Score => self.score,
            Field::TotalSpent => self.total_spent,
            Field::PurchaseCount => self.purchase_count,
            Field::LastPurchaseAt => self.last_purchase_at,
            Field::LastOpenedAt => self.last_opened_at,
            Field::AddedAt => Some(self.added_at),
            Field::UpdatedAt => Some(self.updated_at),
            _ => None,
        }
    }

    /// Every custom field: name and value.
    pub(crate) fn customs(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + use<'a> {
        let mut w = Walk { bytes: self.custom };
        let count = w.varint();
        (0..count).map(move |_| {
            let name = w.text();
            (name, w.text())
        })
    }
}

/// Tests: the seven number fields of `c` from `numbers`, in the order
/// contact_id, age, score, total_spent, purchase_count, last_purchase_at,
/// last_opened_at.
#[cfg(test)]
pub(crate) fn set_numbers(c: &mut Contact, numbers: &[Option<i64>]) {
    c.contact_id = numbers[0];
    c.age = numbers[1];
    c.score = numbers[2];
    c.total_spent = numbers[3].map(Decimal);
    c.purchase_count = numbers[4];
    c.last_purchase_at = numbers[5].map(Timestamp);
    c.last_opened_at = numbers[6].map(Timestamp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use segmentd_domain::Email;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-zA-Z ÄÖüß@.]{1,12}"]
    }

    prop_compose! {
        fn contact()(
            n in 0u32..1000,
            texts in prop::collection::vec(text(), 8),
            numbers in prop::collection::vec(prop::option::of(any::<i64>()), 7),
            times in (any::<i64>(), any::<i64>()),
            custom in prop::collection::btree_map("[a-z_]{1,8}", text(), 0..4),
        ) -> Contact {
            let mut c = Contact::new(Email::parse(&format!("c{n}@x.com")).unwrap(), Timestamp(times.0));
            c.updated_at = Timestamp(times.1);
            let [a, b, d, e, f, g, h, i] = <[String; 8]>::try_from(texts).unwrap();
            (c.first_name, c.last_name, c.company, c.city, c.state, c.country, c.gender, c.lifecycle_stage) =
                (a, b, d, e, f, g, h, i);
            super::set_numbers(&mut c, &numbers);
            c.custom = custom;
            c
        }
    }

    proptest! {
        /// The borrowed view reads every field as `Contact::value` does, and
        /// the bytes decode back into the same contact.
        #[test]
        fn stored_contacts_read_like_contacts(c in contact(), probe in "[a-z_]{1,8}") {
            let stored = StoredContact::encode(&c);
            prop_assert_eq!(&stored.to_contact(), &c);
            prop_assert_eq!(stored.email(), c.email.as_str());
            let fields = stored.fields();
            let mut all: Vec<Field> = Field::BUILTIN.to_vec();
            all.extend(c.custom.keys().map(|k| Field::Custom(k.clone())));
            all.push(Field::Custom(probe));
            for f in &all {
                prop_assert_eq!(fields.value(f), c.value(f), "{}", f);
            }
            prop_assert_eq!(StoredContact::from_bytes(stored.bytes()).ok(), Some(stored.clone()));
            // The unchecked reading reads the same.
            let raw = stored.raw_fields();
            for f in &Field::BUILTIN {
                match fields.value(f) {
                    FieldValue::Text(t) => prop_assert_eq!(raw.text(f), t.as_bytes(), "{}", f),
                    FieldValue::Integer(v) => prop_assert_eq!(raw.number(f), v, "{}", f),
                    FieldValue::Decimal(v) => prop_assert_eq!(raw.number(f), v.map(|d| d.0), "{}", f),
                    FieldValue::Time(v) => prop_assert_eq!(raw.number(f), v.map(|t| t.0), "{}", f),
                }
            }
            let customs: Vec<(&[u8], &[u8])> = fields.customs().iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect();
            prop_assert_eq!(raw.customs().collect::<Vec<_>>(), customs);
        }
    }

    #[test]
    fn a_contact_is_taken_from_the_front_of_an_event_payload_only_when_it_encodes_back_the_same() {
        let mut c = Contact::new(Email::parse("a@b.c").unwrap(), Timestamp(5));
        c.custom.insert("plan".into(), "pro".into());
        c.custom.insert("tier".into(), "1".into());
        let payload = postcard::to_stdvec(&(&c, vec!["plan"])).unwrap();
        let (stored, rest) = StoredContact::from_prefix(&payload).unwrap();
        assert_eq!((stored.clone(), stored.email()), (StoredContact::encode(&c), "a@b.c"));
        assert_eq!(postcard::from_bytes::<Vec<&str>>(rest).unwrap(), ["plan"]);
        // The same contact with its custom fields (written last) out of order.
        let bytes = StoredContact::encode(&c).bytes().to_vec();
        let custom = postcard::to_stdvec(&c.custom).unwrap();
        let reversed = postcard::to_stdvec(&c.custom.iter().rev().collect::<Vec<_>>()).unwrap();
        let out_of_order = [&bytes[..bytes.len() - custom.len()], &reversed].concat();
        assert_eq!(postcard::from_bytes::<Contact>(&out_of_order).unwrap(), c, "decodes all the same");
        assert!(StoredContact::from_prefix(&out_of_order).is_none());
        assert!(StoredContact::from_prefix(&bytes[..bytes.len() - 1]).is_none());
    }

    #[test]
    fn truncated_or_padded_bytes_are_refused() {
        let stored = StoredContact::encode(&Contact::new(Email::parse("a@b.c").unwrap(), Timestamp(5)));
        let bytes = stored.bytes();
        assert!(StoredContact::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(StoredContact::from_bytes(&[bytes, &[0]].concat()).is_err());
    }
}
