//! Behaviour: what contacts do (open an email, click a link, buy), folded
//! into the derived contact fields criteria can use — `last_opened_at`,
//! `purchase_count`, `total_spent`, `last_purchase_at`.
//!
//! A click counts as an open: a contact cannot click a link in an email it
//! has not opened. Activities may arrive late and out of order, so the
//! "last" instants only ever move forward. Activity is behaviour, not an
//! edit of the record, so `updated_at` does not move.

use crate::contact::Contact;
use crate::decimal::Decimal;
use crate::error::DomainError;
use crate::event::{Activity, ActivityRecorded, Event};
use crate::time::Timestamp;

/// Longest link URL an activity may carry, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Decides recording `activity` at `at` for the contact `state` (by `email`).
pub fn decide_activity(
    email: &str,
    state: Option<&Contact>,
    activity: Activity,
    at: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    let Some(old) = state else { return Err(DomainError::ContactNotFound(email.to_owned())) };
    let mut contact = old.clone();
    let later = |prev: Option<Timestamp>| Some(prev.map_or(at, |p| p.max(at)));
    match &activity {
        Activity::EmailOpened => contact.last_opened_at = later(contact.last_opened_at),
        Activity::LinkClicked { url } => {
            if url.len() > MAX_URL_LEN || url.chars().any(char::is_control) {
                return Err(DomainError::InvalidValue(format!(
                    "url: at most {MAX_URL_LEN} bytes, no control characters"
                )));
            }
            contact.last_opened_at = later(contact.last_opened_at);
        }
        Activity::Purchase { amount } => {
            if amount.0 < 0 {
                return Err(DomainError::InvalidValue(format!("amount: must not be negative, got {amount}")));
            }
            let overflow = || DomainError::InvalidValue("amount: the contact's total_spent would overflow".into());
            contact.purchase_count = Some(contact.purchase_count.unwrap_or(0).checked_add(1).ok_or_else(overflow)?);
            let total = contact.total_spent.unwrap_or(Decimal(0)).0.checked_add(amount.0).ok_or_else(overflow)?;
            contact.total_spent = Some(Decimal(total));
            contact.last_purchase_at = later(contact.last_purchase_at);
        }
    }
    Ok(vec![Event::ActivityRecorded(ActivityRecorded { contact, activity, at })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Email;
    use crate::contact_decide::apply_contact;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn ann() -> Contact {
        Contact::new(Email::parse("ann@x.com").unwrap(), t("2025-01-01T00:00:00Z"))
    }

    fn after(events: &[Event]) -> Contact {
        apply_contact(&events[0]).flatten().expect("a contact event")
    }

    #[test]
    fn given_no_contact_when_activity_is_recorded_then_not_found() {
        let e = decide_activity("a@x.com", None, Activity::EmailOpened, t("2025-01-02T00:00:00Z")).unwrap_err();
        assert_eq!(e, DomainError::ContactNotFound("a@x.com".into()));
    }

    #[test]
    fn given_purchases_when_recorded_then_count_total_and_last_purchase_follow() {
        let c = ann();
        let first = decide_activity(
            "ann@x.com",
            Some(&c),
            Activity::Purchase { amount: Decimal::parse("19.99").unwrap() },
            t("2025-03-01T00:00:00Z"),
        )
        .unwrap();
        let c = after(&first);
        let late = decide_activity(
            "ann@x.com",
            Some(&c),
            Activity::Purchase { amount: Decimal::parse("5").unwrap() },
            t("2025-02-01T00:00:00Z"),
        )
        .unwrap();
        let c = after(&late);
        assert_eq!(c.purchase_count, Some(2));
        assert_eq!(c.total_spent, Some(Decimal::parse("24.99").unwrap()));
        assert_eq!(c.last_purchase_at, Some(t("2025-03-01T00:00:00Z")), "a late purchase does not move it back");
        assert_eq!(c.updated_at, ann().updated_at);
    }

    #[test]
    fn given_an_open_or_a_click_when_recorded_then_last_opened_moves_forward() {
        let c = ann();
        let opened =
            after(&decide_activity("ann@x.com", Some(&c), Activity::EmailOpened, t("2025-05-01T00:00:00Z")).unwrap());
        assert_eq!(opened.last_opened_at, Some(t("2025-05-01T00:00:00Z")));
        let click = Activity::LinkClicked { url: "https://x.com/a".into() };
        let clicked = after(&decide_activity("ann@x.com", Some(&opened), click, t("2025-06-01T00:00:00Z")).unwrap());
        assert_eq!(clicked.last_opened_at, Some(t("2025-06-01T00:00:00Z")));
    }

    #[test]
    fn given_a_negative_amount_when_recorded_then_refused_naming_it() {
        let e = decide_activity(
            "ann@x.com",
            Some(&ann()),
            Activity::Purchase { amount: Decimal::parse("-1").unwrap() },
            t("2025-01-01T00:00:00Z"),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("amount"), "{e}");
    }
}
