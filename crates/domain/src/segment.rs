//! Segments: the organisation's segment catalogue as one aggregate, its
//! commands, and the rules they obey (names unique per org, case-
//! insensitively; optimistic versions per segment).

use crate::criteria::Criteria;
use crate::error::DomainError;
use crate::event::{Change, Event, SegmentCreated, SegmentDeleted, SegmentUpdated};
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::fmt;

pub const MAX_SEGMENT_NAME_LEN: usize = 128;

/// A segment name: trimmed, 1 to 128 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentName(String);

impl SegmentName {
    pub fn parse(raw: &str) -> Result<SegmentName, DomainError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(DomainError::InvalidValue("name: a segment name must not be empty".into()));
        }
        if name.chars().count() > MAX_SEGMENT_NAME_LEN {
            return Err(DomainError::InvalidValue(format!(
                "name: a segment name may have at most {MAX_SEGMENT_NAME_LEN} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(DomainError::InvalidValue("name: a segment name must not contain control characters".into()));
        }
        Ok(SegmentName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form two names are compared in: "Young-EU" and "young-eu" clash.
    pub fn key(name: &str) -> String {
        name.to_lowercase()
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One segment as the catalogue knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentDef {
    pub id: u64,
    pub name: String,
    /// Canonical text form of the criteria.
    pub criteria: String,
    /// 1 when created, +1 per update.
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// All live segments of one organisation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentCatalog {
    pub segments: BTreeMap<u64, SegmentDef>,
    /// Ids are never reused, even after a delete; the highest id ever given.
    pub last_id: u64,
}

impl SegmentCatalog {
    pub fn by_name(&self, name: &str) -> Option<&SegmentDef> {
        let key = SegmentName::key(name);
        self.segments.values().find(|s| SegmentName::key(&s.name) == key)
    }

    /// Folds one catalogue event in; events of other aggregates are ignored.
    pub fn apply(&mut self, event: &Event, time: Timestamp) {
        match event {
            Event::SegmentCreated(e) => {
                self.last_id = self.last_id.max(e.segment_id);
                self.segments.insert(
                    e.segment_id,
                    SegmentDef {
                        id: e.segment_id,
                        name: e.name.clone(),
                        criteria: e.criteria.clone(),
                        version: 1,
                        created_at: time,
                        updated_at: time,
                    },
                );
            }
            Event::SegmentUpdated(e) => {
                if let Some(s) = self.segments.get_mut(&e.segment_id) {
                    if let Some(c) = &e.name {
                        s.name = c.to.clone();
                    }
                    if let Some(c) = &e.criteria {
                        s.criteria = c.to.clone();
                    }
                    s.version = e.version;
                    s.updated_at = time;
                }
            }
            Event::SegmentDeleted(e) => {
                self.segments.remove(&e.segment_id);
            }
            _ => {}
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentCommand {
    Create {
        name: SegmentName,
        criteria: Criteria,
    },
    Update {
        id: u64,
        /// When given, the update is refused unless the segment is at it.
        expected_version: Option<u64>,
        name: Option<SegmentName>,
        criteria: Option<Criteria>,
    },
    Delete {
        id: u64,
        expected_version: Option<u64>,
    },
}

pub fn decide_segments(catalog: &SegmentCatalog, command: SegmentCommand) -> Result<Vec<Event>, DomainError> {
    match command {
        SegmentCommand::Create { name, criteria } => {
            if catalog.by_name(name.as_str()).is_some() {
                return Err(DomainError::SegmentNameTaken(name.0));
            }
            Ok(vec![Event::SegmentCreated(SegmentCreated {
                segment_id: catalog.last_id + 1,
                name: name.0,
                criteria: criteria.to_string(),
            })])
        }
        SegmentCommand::Update { id, expected_version, name, criteria } => {
            let current = live(catalog, id, expected_version)?;
            let name = name.filter(|n| n.as_str() != current.name);
            if let Some(n) = &name
                && let Some(other) = catalog.by_name(n.as_str())
                && other.id != id
            {
                return Err(DomainError::SegmentNameTaken(n.0.clone()));
            }
            let criteria = criteria.map(|c| c.to_string()).filter(|c| *c != current.criteria);
            if name.is_none() && criteria.is_none() {
                return Err(DomainError::NothingToUpdate);
            }
            Ok(vec![Event::SegmentUpdated(SegmentUpdated {
                segment_id: id,
                version: current.version + 1,
                name: name.map(|n| Change { from: current.name.clone(), to: n.0 }),
                criteria: criteria.map(|c| Change { from: current.criteria.clone(), to: c }),
            })])
        }
        SegmentCommand::Delete { id, expected_version } => {
            let current = live(catalog, id, expected_version)?;
            Ok(vec![Event::SegmentDeleted(SegmentDeleted { segment_id: id, name: current.name.clone() })])
        }
    }
}

fn live(catalog: &SegmentCatalog, id: u64, expected_version: Option<u64>) -> Result<&SegmentDef, DomainError> {
    let current = catalog.segments.get(&id).ok_or(DomainError::SegmentNotFound(id))?;
    match expected_version {
        Some(expected) if expected != current.version => {
            Err(DomainError::StaleVersion { id, expected, actual: current.version })
        }
        _ => Ok(current),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn criteria(text: &str) -> Criteria {
        Criteria::parse(text).unwrap()
    }

    fn name(n: &str) -> SegmentName {
        SegmentName::parse(n).unwrap()
    }

    /// Given these commands already happened (each must succeed).
    fn given(commands: Vec<SegmentCommand>) -> SegmentCatalog {
        let mut catalog = SegmentCatalog::default();
        for (i, c) in commands.into_iter().enumerate() {
            for e in decide_segments(&catalog, c).unwrap() {
                catalog.apply(&e, Timestamp(i as i64));
            }
        }
        catalog
    }

    fn create(n: &str, c: &str) -> SegmentCommand {
        SegmentCommand::Create { name: name(n), criteria: criteria(c) }
    }

    #[test]
    fn given_nothing_when_created_then_segment_one_with_canonical_criteria() {
        let events =
            decide_segments(&SegmentCatalog::default(), create("young-eu", r#"country in ("DE","FR")"#)).unwrap();
        assert_eq!(
            events,
            vec![Event::SegmentCreated(SegmentCreated {
                segment_id: 1,
                name: "young-eu".into(),
                criteria: r#"country in ("DE", "FR")"#.into(),
            })]
        );
    }

    #[test]
    fn given_a_segment_when_another_takes_its_name_in_any_case_then_name_taken() {
        let catalog = given(vec![create("Germany", r#"country = "DE""#)]);
        let err = decide_segments(&catalog, create("GERMANY", r#"country = "AT""#)).unwrap_err();
        assert_eq!(err, DomainError::SegmentNameTaken("GERMANY".into()));
    }

    #[test]
    fn given_a_deleted_segment_when_its_name_is_reused_then_a_new_id_is_given() {
        let catalog = given(vec![create("a", "age > 1"), SegmentCommand::Delete { id: 1, expected_version: None }]);
        let events = decide_segments(&catalog, create("a", "age > 2")).unwrap();
        let [Event::SegmentCreated(e)] = events.as_slice() else { panic!("{events:?}") };
        assert_eq!(e.segment_id, 2);
    }

    #[test]
    fn given_a_segment_when_updated_then_the_change_carries_from_and_to_and_the_version_moves() {
        let catalog = given(vec![create("a", "age > 1")]);
        let cmd = SegmentCommand::Update {
            id: 1,
            expected_version: Some(1),
            name: Some(name("b")),
            criteria: Some(criteria("age > 2")),
        };
        let events = decide_segments(&catalog, cmd).unwrap();
        assert_eq!(
            events,
            vec![Event::SegmentUpdated(SegmentUpdated {
                segment_id: 1,
                version: 2,
                name: Some(Change { from: "a".into(), to: "b".into() }),
                criteria: Some(Change { from: "age > 1".into(), to: "age > 2".into() }),
            })]
        );
    }

    #[test]
    fn given_version_two_when_updated_expecting_one_then_stale() {
        let catalog = given(vec![
            create("a", "age > 1"),
            SegmentCommand::Update { id: 1, expected_version: None, name: Some(name("b")), criteria: None },
        ]);
        let cmd = SegmentCommand::Update { id: 1, expected_version: Some(1), name: Some(name("c")), criteria: None };
        assert_eq!(
            decide_segments(&catalog, cmd).unwrap_err(),
            DomainError::StaleVersion { id: 1, expected: 1, actual: 2 }
        );
    }

    #[test]
    fn given_two_segments_when_one_is_renamed_to_the_other_then_name_taken() {
        let catalog = given(vec![create("a", "age > 1"), create("b", "age > 2")]);
        let cmd = SegmentCommand::Update { id: 2, expected_version: None, name: Some(name("A")), criteria: None };
        assert_eq!(decide_segments(&catalog, cmd).unwrap_err(), DomainError::SegmentNameTaken("A".into()));
    }

    #[test]
    fn given_a_segment_when_updated_to_what_it_is_then_nothing_to_update() {
        let catalog = given(vec![create("a", "age > 1")]);
        let cmd = SegmentCommand::Update {
            id: 1,
            expected_version: None,
            name: Some(name("a")),
            criteria: Some(criteria("age > 1")),
        };
        assert_eq!(decide_segments(&catalog, cmd).unwrap_err(), DomainError::NothingToUpdate);
    }

    #[test]
    fn given_no_segment_when_updated_or_deleted_then_not_found() {
        let catalog = SegmentCatalog::default();
        let cmd = SegmentCommand::Delete { id: 9, expected_version: None };
        assert_eq!(decide_segments(&catalog, cmd).unwrap_err(), DomainError::SegmentNotFound(9));
    }

    #[test]
    fn names_must_be_non_empty_short_and_printable() {
        assert!(SegmentName::parse("  ").is_err());
        assert!(SegmentName::parse(&"x".repeat(129)).is_err());
        assert!(SegmentName::parse("a\u{7}b").is_err());
        assert_eq!(SegmentName::parse("  young-eu ").unwrap().as_str(), "young-eu");
    }
}
