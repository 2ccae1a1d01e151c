//! The contacts the command path is fed: the demo data set (the first
//! 10,000 rows of `gen_contacts.py --seed 42`) repeated up to the requested
//! count, each copy with its own `contact_id` and email (`name.surnameN@…`,
//! the generator's own pattern), so every contact is new and becomes exactly
//! one `ContactCreated` event.
//!
//! **Must not depend on** NATS or the server's internals: it only reads the
//! demo data through `segmentd_server::demo` and builds proto messages.

use anyhow::{Context as _, ensure};
use segmentd_proto::v1 as pb;

/// `n` distinct, realistic contacts.
pub fn contacts(n: usize) -> anyhow::Result<Vec<pb::ContactInput>> {
    let demo = segmentd_server::demo::demo_contacts().context("reading the demo contacts")?;
    ensure!(!demo.is_empty(), "the demo data set is empty");
    Ok((0..n)
        .map(|i| {
            let base = &demo[i % demo.len()];
            let mut contact = base.clone();
            contact.email = renumber(&base.email, i + 1);
            if let Some(id) = contact.fields.get_mut("contact_id") {
                *id = (i + 1).to_string();
            }
            if let Some(email) = contact.fields.get_mut("email") {
                email.clone_from(&contact.email);
            }
            contact
        })
        .collect())
}

/// `marco.anderson1@hotmail.com`, 7 → `marco.anderson7@hotmail.com`.
fn renumber(email: &str, n: usize) -> String {
    let (local, domain) = email.rsplit_once('@').unwrap_or((email, "example.com"));
    format!("{}{n}@{domain}", local.trim_end_matches(|c: char| c.is_ascii_digit()))
}

/// The contacts cut into requests of at most `batch`, with command ids
/// unique to `tag`.
pub fn requests(contacts: &[pb::ContactInput], batch: usize, tag: &str) -> Vec<pb::UpsertContactsRequest> {
    contacts
        .chunks(batch.max(1))
        .enumerate()
        .map(|(k, chunk)| pb::UpsertContactsRequest { command_id: format!("{tag}-{k}"), contacts: chunk.to_vec() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn emails_are_renumbered_like_the_generator_does() {
        assert_eq!(renumber("marco.anderson1@hotmail.com", 10_001), "marco.anderson10001@hotmail.com");
        assert_eq!(renumber("x@y.org", 2), "x2@y.org");
    }

    #[test]
    fn every_contact_is_distinct_beyond_the_demo_size() {
        let c = contacts(25_000).unwrap();
        assert_eq!(c.len(), 25_000);
        let emails: HashSet<_> = c.iter().map(|c| c.email.as_str()).collect();
        assert_eq!(emails.len(), c.len());
        let reqs = requests(&c[..1_200], 500, "t");
        assert_eq!(reqs.iter().map(|r| r.contacts.len()).collect::<Vec<_>>(), [500, 500, 200]);
        assert_eq!(reqs[2].command_id, "t-2");
    }
}
