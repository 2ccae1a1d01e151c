//! Segments: the organisation's segment catalogue as one aggregate, its
//! commands, and the rules they obey (names unique per org, case-
//! insensitively; optimistic versions per segment; legacy segments are
//! read-only). The catalogue also holds topics, static lists, campaigns and
//! bulk segments (`crate::catalog`), so every per-org rule is decided
//! against one sequence.

use crate::catalog::{
    BulkDef, CampaignDef, CatalogExtras, LIST_CHUNK, ListDef, MAX_BULK_SEGMENTS, MAX_LIST_MEMBERS, TopicDef,
    bulk_child_name,
};
use crate::contact::{Email, Field, FieldKind};
use crate::criteria::{Condition, Criteria, Operator, Value};
use crate::dependencies::{check_unused, check_uses};
use crate::error::DomainError;
use crate::event::{
    BulkChild, BulkSegmentsCreated, CampaignCreated, Change, Event, LegacySegmentImported, ListMembersRecorded,
    SegmentCloned, SegmentCreated, SegmentDeleted, SegmentRolledBack, SegmentSavedAsList, SegmentUpdated, TopicCreated,
    TopicsAssigned, TopicsUnassigned,
};
use crate::time::Timestamp;
use crate::versions::{VersionHistory, decide_rollback};
use std::collections::{BTreeMap, BTreeSet, HashSet};
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
    /// For a legacy (imported, list-level, read-only) segment: its list.
    pub legacy_list: Option<String>,
    pub topics: BTreeSet<u64>,
    /// The bulk segment this one was made by.
    pub bulk_parent: Option<u64>,
    /// The segment this one was cloned from.
    pub cloned_from: Option<u64>,
}

impl SegmentDef {
    fn new(id: u64, name: &str, criteria: &str, time: Timestamp) -> Self {
        SegmentDef {
            id,
            name: name.to_owned(),
            criteria: criteria.to_owned(),
            version: 1,
            created_at: time,
            updated_at: time,
            legacy_list: None,
            topics: BTreeSet::new(),
            bulk_parent: None,
            cloned_from: None,
        }
    }

    pub fn is_legacy(&self) -> bool {
        self.legacy_list.is_some()
    }
}

/// All live segments of one organisation, and what else the catalogue holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentCatalog {
    pub segments: BTreeMap<u64, SegmentDef>,
    /// Ids are never reused, even after a delete; the highest id ever given.
    pub last_id: u64,
    pub extras: CatalogExtras,
    /// Every version of each live segment's name and criteria.
    pub versions: VersionHistory,
}

impl SegmentCatalog {
    pub fn by_name(&self, name: &str) -> Option<&SegmentDef> {
        let key = SegmentName::key(name);
        self.segments.values().find(|s| SegmentName::key(&s.name) == key)
    }

    fn add(&mut self, def: SegmentDef) {
        self.last_id = self.last_id.max(def.id);
        self.versions.record(&def, None);
        self.segments.insert(def.id, def);
    }

    /// A new version of segment `id`: its name and criteria as the changes
    /// say (`None`: unchanged).
    fn change(
        &mut self,
        id: u64,
        version: u64,
        changes: [Option<&Change>; 2],
        time: Timestamp,
        rolled_back_to: Option<u64>,
    ) {
        let Some(s) = self.segments.get_mut(&id) else { return };
        let [name, criteria] = changes;
        if let Some(c) = name {
            s.name = c.to.clone();
        }
        if let Some(c) = criteria {
            s.criteria = c.to.clone();
        }
        s.version = version;
        s.updated_at = time;
        self.versions.record(s, rolled_back_to);
    }

    /// Folds one catalogue event in; events of other aggregates are ignored.
    pub fn apply(&mut self, event: &Event, time: Timestamp) {
        let x = &mut self.extras;
        match event {
            Event::SegmentCreated(e) => self.add(SegmentDef::new(e.segment_id, &e.name, &e.criteria, time)),
            Event::LegacySegmentImported(e) => {
                let mut def = SegmentDef::new(e.segment_id, &e.name, &e.criteria, time);
                def.legacy_list = Some(e.list_name.clone());
                self.add(def);
            }
            Event::SegmentCloned(e) => {
                let mut def = SegmentDef::new(e.segment_id, &e.name, &e.criteria, time);
                def.cloned_from = Some(e.source_id);
                self.add(def);
            }
            Event::SegmentUpdated(e) => {
                self.change(e.segment_id, e.version, [e.name.as_ref(), e.criteria.as_ref()], time, None);
            }
            Event::SegmentRolledBack(e) => {
                let changes = [e.name.as_ref(), e.criteria.as_ref()];
                self.change(e.segment_id, e.version, changes, time, Some(e.to_version));
            }
            Event::SegmentDeleted(e) => {
                self.segments.remove(&e.segment_id);
                self.versions.forget(e.segment_id);
            }
            Event::TopicCreated(e) => {
                x.last_topic_id = x.last_topic_id.max(e.topic_id);
                x.topics.insert(e.topic_id, TopicDef { id: e.topic_id, name: e.name.clone(), created_at: time });
            }
            Event::TopicsAssigned(e) => {
                if let Some(s) = self.segments.get_mut(&e.segment_id) {
                    s.topics.extend(e.topic_ids.iter().copied());
                }
            }
            Event::TopicsUnassigned(e) => {
                if let Some(s) = self.segments.get_mut(&e.segment_id) {
                    for t in &e.topic_ids {
                        s.topics.remove(t);
                    }
                }
            }
            Event::SegmentSavedAsList(e) => {
                x.last_list_id = x.last_list_id.max(e.list_id);
                x.lists.insert(
                    e.list_id,
                    ListDef {
                        id: e.list_id,
                        name: e.name.clone(),
                        segment_id: e.segment_id,
                        criteria: e.criteria.clone(),
                        at_sequence: e.at_sequence,
                        member_count: e.member_count,
                        created_at: time,
                    },
                );
            }
            Event::CampaignCreated(e) => {
                x.last_campaign_id = x.last_campaign_id.max(e.campaign_id);
                x.campaigns.insert(
                    e.campaign_id,
                    CampaignDef {
                        id: e.campaign_id,
                        name: e.name.clone(),
                        subject: e.subject.clone(),
                        sender: e.sender.clone(),
                        segment_id: e.segment_id,
                        created_at: time,
                    },
                );
            }
            Event::BulkSegmentsCreated(e) => {
                x.last_bulk_id = x.last_bulk_id.max(e.bulk_id);
                x.bulks.insert(
                    e.bulk_id,
                    BulkDef {
                        id: e.bulk_id,
                        base_name: e.base_name.clone(),
                        field: e.field.clone(),
                        children: e.children.iter().map(|c| c.segment_id).collect(),
                        created_at: time,
                    },
                );
                for c in &e.children {
                    let mut def = SegmentDef::new(c.segment_id, &c.name, &c.criteria, time);
                    def.bulk_parent = Some(e.bulk_id);
                    self.add(def);
                }
            }
            Event::ContactCreated(_)
            | Event::ContactUpdated(_)
            | Event::ContactDeleted(_)
            | Event::ListMembersRecorded(_)
            | Event::JobStarted(_)
            | Event::JobMembersListed(_)
            | Event::JobProgressed(_)
            | Event::JobCompleted(_)
            | Event::JobAbandoned(_)
            | Event::JobCancelRequested(_)
            | Event::JobCancelled(_)
            | Event::ScoreReset(_)
            | Event::ActivityRecorded(_) => {}
        }
    }

    fn name_free(&self, name: &str) -> Result<(), DomainError> {
        match self.by_name(name) {
            Some(_) => Err(DomainError::SegmentNameTaken(name.to_owned())),
            None => Ok(()),
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
    /// Gives the segment the name and criteria of its version `to_version`
    /// again, as a new version.
    Rollback {
        id: u64,
        to_version: u64,
        expected_version: Option<u64>,
    },
    /// A list-level segment from before org-level segments, tied to its list.
    ImportLegacy {
        name: SegmentName,
        criteria: Criteria,
        /// Parsed with `catalog::parse_name`.
        list_name: String,
    },
    /// A new org-level segment from `source`; its criteria unless new ones.
    Clone {
        source: u64,
        name: SegmentName,
        criteria: Option<Criteria>,
    },
    CreateTopic {
        /// Parsed with `catalog::parse_name`.
        name: String,
    },
    AssignTopics {
        segment_id: u64,
        topic_ids: Vec<u64>,
    },
    UnassignTopics {
        segment_id: u64,
        topic_ids: Vec<u64>,
    },
    /// Members are read (by the caller, from a read model at log position
    /// `at_sequence`) with `criteria`, the segment's criteria at the time.
    SaveAsList {
        name: String,
        segment_id: u64,
        criteria: String,
        at_sequence: u64,
        members: Vec<String>,
    },
    CreateCampaign {
        name: String,
        subject: String,
        sender: Email,
        segment_id: u64,
    },
    /// `values` are the field's distinct values (compared case-
    /// insensitively), as the caller's read model has them.
    CreateBulk {
        base_name: SegmentName,
        field: Field,
        values: Vec<String>,
    },
}

/// Decides a catalogue command. Every event returned belongs to the
/// catalogue, except `ListMembersRecorded`, which belongs to the new list's
/// own aggregate (`AggregateId::list`).
pub fn decide_segments(catalog: &SegmentCatalog, command: SegmentCommand) -> Result<Vec<Event>, DomainError> {
    let x = &catalog.extras;
    match command {
        SegmentCommand::Create { name, mut criteria } => {
            catalog.name_free(name.as_str())?;
            check_uses(catalog, None, &mut criteria)?;
            Ok(vec![Event::SegmentCreated(SegmentCreated {
                segment_id: catalog.last_id + 1,
                name: name.0,
                criteria: criteria.to_string(),
            })])
        }
        SegmentCommand::Update { id, expected_version, name, criteria } => {
            let current = editable(catalog, id, expected_version, "edited")?;
            let name = name.filter(|n| n.as_str() != current.name);
            if let Some(n) = &name
                && let Some(other) = catalog.by_name(n.as_str())
                && other.id != id
            {
                return Err(DomainError::SegmentNameTaken(n.0.clone()));
            }
            let criteria = match criteria {
                Some(mut c) => {
                    check_uses(catalog, Some(id), &mut c)?;
                    Some(c.to_string()).filter(|c| *c != current.criteria)
                }
                None => None,
            };
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
            let current = editable(catalog, id, expected_version, "deleted")?;
            check_unused(catalog, id)?;
            Ok(vec![Event::SegmentDeleted(SegmentDeleted { segment_id: id, name: current.name.clone() })])
        }
        SegmentCommand::Rollback { id, to_version, expected_version } => {
            let current = editable(catalog, id, expected_version, "rolled back")?;
            let events =
                decide_rollback(current, &catalog.versions, to_version, |name| catalog.by_name(name).map(|s| s.id))?;
            // The version's criteria may use segments deleted since, or
            // ones that have come to use this one.
            for event in &events {
                if let Event::SegmentRolledBack(SegmentRolledBack { criteria: Some(change), .. }) = event
                    && let Ok(mut criteria) = Criteria::parse(&change.to)
                {
                    check_uses(catalog, Some(id), &mut criteria)?;
                }
            }
            Ok(events)
        }
        SegmentCommand::ImportLegacy { name, mut criteria, list_name } => {
            catalog.name_free(name.as_str())?;
            check_uses(catalog, None, &mut criteria)?;
            Ok(vec![Event::LegacySegmentImported(LegacySegmentImported {
                segment_id: catalog.last_id + 1,
                name: name.0,
                criteria: criteria.to_string(),
                list_name,
            })])
        }
        SegmentCommand::Clone { source, name, criteria } => {
            let source = live(catalog, source, None)?;
            catalog.name_free(name.as_str())?;
            let criteria = match criteria {
                Some(mut c) => {
                    check_uses(catalog, None, &mut c)?;
                    Some(c)
                }
                None => None,
            };
            Ok(vec![Event::SegmentCloned(SegmentCloned {
                segment_id: catalog.last_id + 1,
                source_id: source.id,
                name: name.0,
                criteria: criteria.map_or_else(|| source.criteria.clone(), |c| c.to_string()),
            })])
        }
        SegmentCommand::CreateTopic { name } => {
            if x.topic_by_name(&name).is_some() {
                return Err(DomainError::TopicNameTaken(name));
            }
            Ok(vec![Event::TopicCreated(TopicCreated { topic_id: x.last_topic_id + 1, name })])
        }
        SegmentCommand::AssignTopics { segment_id, topic_ids } => {
            let segment = editable(catalog, segment_id, None, "given topics")?;
            let topics = known_topics(catalog, topic_ids)?;
            let (had, new): (Vec<u64>, Vec<u64>) = topics.into_iter().partition(|t| segment.topics.contains(t));
            if new.is_empty() {
                return Err(DomainError::TopicsAlreadyAssigned { segment_id, topics: had });
            }
            Ok(vec![Event::TopicsAssigned(TopicsAssigned { segment_id, topic_ids: new })])
        }
        SegmentCommand::UnassignTopics { segment_id, topic_ids } => {
            let segment = editable(catalog, segment_id, None, "given topics")?;
            let topics = known_topics(catalog, topic_ids)?;
            let missing: Vec<u64> = topics.iter().copied().filter(|t| !segment.topics.contains(t)).collect();
            if !missing.is_empty() {
                return Err(DomainError::TopicsNotAssigned { segment_id, topics: missing });
            }
            Ok(vec![Event::TopicsUnassigned(TopicsUnassigned { segment_id, topic_ids: topics })])
        }
        SegmentCommand::SaveAsList { name, segment_id, criteria, at_sequence, members } => {
            live(catalog, segment_id, None)?;
            if x.list_by_name(&name).is_some() {
                return Err(DomainError::ListNameTaken(name));
            }
            if members.len() > MAX_LIST_MEMBERS {
                return Err(DomainError::ListTooLarge { count: members.len(), limit: MAX_LIST_MEMBERS });
            }
            let list_id = x.last_list_id + 1;
            let mut events = vec![Event::SegmentSavedAsList(SegmentSavedAsList {
                list_id,
                name,
                segment_id,
                criteria,
                at_sequence,
                member_count: members.len() as u64,
            })];
            events.extend(
                members
                    .chunks(LIST_CHUNK)
                    .map(|chunk| Event::ListMembersRecorded(ListMembersRecorded { list_id, emails: chunk.to_vec() })),
            );
            Ok(events)
        }
        SegmentCommand::CreateCampaign { name, subject, sender, segment_id } => {
            live(catalog, segment_id, None)?;
            if x.campaign_by_name(&name).is_some() {
                return Err(DomainError::CampaignNameTaken(name));
            }
            Ok(vec![Event::CampaignCreated(CampaignCreated {
                campaign_id: x.last_campaign_id + 1,
                name,
                subject,
                sender: sender.into_string(),
                segment_id,
            })])
        }
        SegmentCommand::CreateBulk { base_name, field, values } => {
            if field.kind() != FieldKind::Text {
                return Err(DomainError::InvalidValue(format!(
                    "field: bulk segments are made from text fields; {field} is a {} field",
                    field.kind()
                )));
            }
            if values.is_empty() {
                return Err(DomainError::NoBulkValues(field.to_string()));
            }
            if values.len() > MAX_BULK_SEGMENTS {
                return Err(DomainError::TooManyBulkValues {
                    field: field.to_string(),
                    count: values.len(),
                    limit: MAX_BULK_SEGMENTS,
                });
            }
            let mut seen = HashSet::new();
            let mut children = Vec::with_capacity(values.len());
            for (i, value) in values.into_iter().enumerate() {
                let name = SegmentName::parse(&bulk_child_name(base_name.as_str(), &value)).map_err(|e| {
                    DomainError::InvalidValue(format!("the segment for value {value:?} cannot be named: {e}"))
                })?;
                catalog.name_free(name.as_str())?;
                if !seen.insert(SegmentName::key(name.as_str())) {
                    return Err(DomainError::SegmentNameTaken(name.0));
                }
                let condition = Condition::new(field.clone(), Operator::Eq(Value::Text(value.clone())))
                    .map_err(|e| DomainError::InvalidValue(format!("value {value:?}: {e}")))?;
                children.push(BulkChild {
                    segment_id: catalog.last_id + 1 + i as u64,
                    name: name.0,
                    value,
                    criteria: Criteria::Condition(condition).to_string(),
                });
            }
            Ok(vec![Event::BulkSegmentsCreated(BulkSegmentsCreated {
                bulk_id: x.last_bulk_id + 1,
                base_name: base_name.0,
                field: field.to_string(),
                children,
            })])
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

/// A live segment that may be changed: legacy segments are read-only.
fn editable<'c>(
    catalog: &'c SegmentCatalog,
    id: u64,
    expected_version: Option<u64>,
    action: &'static str,
) -> Result<&'c SegmentDef, DomainError> {
    let current = live(catalog, id, expected_version)?;
    match &current.legacy_list {
        Some(list) => {
            Err(DomainError::LegacySegmentReadOnly { id, name: current.name.clone(), list: list.clone(), action })
        }
        None => Ok(current),
    }
}

/// The topics, each once, in the order given; every one must exist.
fn known_topics(catalog: &SegmentCatalog, ids: Vec<u64>) -> Result<Vec<u64>, DomainError> {
    if ids.is_empty() {
        return Err(DomainError::InvalidValue("topics: give at least one topic".into()));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if !catalog.extras.topics.contains_key(&id) {
            return Err(DomainError::TopicNotFound(id));
        }
        if seen.insert(id) {
            out.push(id);
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn criteria(text: &str) -> Criteria {
        Criteria::parse(text).unwrap()
    }

    fn name(n: &str) -> SegmentName {
        SegmentName::parse(n).unwrap()
    }

    /// Given these commands already happened (each must succeed), at times 0, 1, ….
    pub(crate) fn given(commands: Vec<SegmentCommand>) -> SegmentCatalog {
        let mut catalog = SegmentCatalog::default();
        for (i, c) in commands.into_iter().enumerate() {
            for e in decide_segments(&catalog, c).unwrap() {
                catalog.apply(&e, Timestamp(i as i64));
            }
        }
        catalog
    }

    pub(crate) fn create(n: &str, c: &str) -> SegmentCommand {
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

    fn legacy(n: &str, c: &str, list: &str) -> SegmentCommand {
        SegmentCommand::ImportLegacy { name: name(n), criteria: criteria(c), list_name: list.into() }
    }

    fn topic(n: &str) -> SegmentCommand {
        SegmentCommand::CreateTopic { name: n.into() }
    }

    #[test]
    fn given_nothing_when_a_legacy_segment_is_imported_then_it_is_marked_with_its_list() {
        let catalog = given(vec![legacy("Old DE", r#"country = "DE""#, "Newsletter")]);
        let def = catalog.by_name("old de").unwrap();
        assert_eq!(def.legacy_list.as_deref(), Some("Newsletter"));
        assert!(def.is_legacy());
    }

    #[test]
    fn given_a_legacy_segment_when_edited_or_deleted_then_refused_saying_why() {
        let catalog = given(vec![legacy("Old", "age > 1", "L")]);
        let update = SegmentCommand::Update { id: 1, expected_version: None, name: Some(name("New")), criteria: None };
        let err = decide_segments(&catalog, update).unwrap_err();
        assert!(matches!(&err, DomainError::LegacySegmentReadOnly { id: 1, action: "edited", .. }), "{err:?}");
        assert!(err.to_string().contains("clone it"), "{err}");
        let delete = SegmentCommand::Delete { id: 1, expected_version: None };
        let err = decide_segments(&catalog, delete).unwrap_err();
        assert!(matches!(err, DomainError::LegacySegmentReadOnly { action: "deleted", .. }), "{err:?}");
    }

    #[test]
    fn given_a_legacy_segment_when_cloned_then_an_editable_org_level_copy_exists() {
        let catalog = given(vec![
            legacy("Old", "age > 1", "L"),
            SegmentCommand::Clone { source: 1, name: name("New"), criteria: None },
        ]);
        let clone = catalog.by_name("New").unwrap();
        assert_eq!((clone.id, clone.cloned_from, clone.is_legacy()), (2, Some(1), false));
        assert_eq!(clone.criteria, "age > 1");
        let update = SegmentCommand::Update {
            id: 2,
            expected_version: Some(1),
            name: None,
            criteria: Some(criteria("age > 5")),
        };
        assert!(decide_segments(&catalog, update).is_ok());
    }

    #[test]
    fn given_a_segment_when_cloned_with_new_criteria_then_the_clone_has_them() {
        let catalog = given(vec![create("a", "age > 1")]);
        let events = decide_segments(
            &catalog,
            SegmentCommand::Clone { source: 1, name: name("b"), criteria: Some(criteria("age>2")) },
        )
        .unwrap();
        assert_eq!(
            events,
            vec![Event::SegmentCloned(SegmentCloned {
                segment_id: 2,
                source_id: 1,
                name: "b".into(),
                criteria: "age > 2".into()
            })]
        );
    }

    #[test]
    fn given_a_segment_when_cloned_under_a_taken_name_or_from_nothing_then_refused() {
        let catalog = given(vec![create("a", "age > 1")]);
        let taken = SegmentCommand::Clone { source: 1, name: name("A"), criteria: None };
        assert_eq!(decide_segments(&catalog, taken).unwrap_err(), DomainError::SegmentNameTaken("A".into()));
        let missing = SegmentCommand::Clone { source: 7, name: name("b"), criteria: None };
        assert_eq!(decide_segments(&catalog, missing).unwrap_err(), DomainError::SegmentNotFound(7));
    }

    #[test]
    fn given_a_topic_when_another_takes_its_name_then_topic_name_taken() {
        let catalog = given(vec![topic("Sales")]);
        assert_eq!(catalog.extras.topics[&1].name, "Sales");
        assert_eq!(decide_segments(&catalog, topic("SALES")).unwrap_err(), DomainError::TopicNameTaken("SALES".into()));
    }

    #[test]
    fn given_topics_when_assigned_then_only_new_ones_are_recorded_and_unassign_removes_them() {
        let catalog = given(vec![
            create("a", "age > 1"),
            topic("t1"),
            topic("t2"),
            SegmentCommand::AssignTopics { segment_id: 1, topic_ids: vec![1] },
        ]);
        let events =
            decide_segments(&catalog, SegmentCommand::AssignTopics { segment_id: 1, topic_ids: vec![1, 2, 2] })
                .unwrap();
        assert_eq!(events, vec![Event::TopicsAssigned(TopicsAssigned { segment_id: 1, topic_ids: vec![2] })]);
        let again = SegmentCommand::AssignTopics { segment_id: 1, topic_ids: vec![1] };
        assert_eq!(
            decide_segments(&catalog, again).unwrap_err(),
            DomainError::TopicsAlreadyAssigned { segment_id: 1, topics: vec![1] }
        );
        let catalog = given(vec![
            create("a", "age > 1"),
            topic("t1"),
            SegmentCommand::AssignTopics { segment_id: 1, topic_ids: vec![1] },
            SegmentCommand::UnassignTopics { segment_id: 1, topic_ids: vec![1] },
        ]);
        assert!(catalog.segments[&1].topics.is_empty());
        let not_there = SegmentCommand::UnassignTopics { segment_id: 1, topic_ids: vec![1] };
        assert_eq!(
            decide_segments(&catalog, not_there).unwrap_err(),
            DomainError::TopicsNotAssigned { segment_id: 1, topics: vec![1] }
        );
    }

    #[test]
    fn given_no_such_topic_or_segment_when_assigning_then_not_found() {
        let catalog = given(vec![create("a", "age > 1"), topic("t1")]);
        let cmd = SegmentCommand::AssignTopics { segment_id: 1, topic_ids: vec![1, 9] };
        assert_eq!(decide_segments(&catalog, cmd).unwrap_err(), DomainError::TopicNotFound(9));
        let cmd = SegmentCommand::AssignTopics { segment_id: 5, topic_ids: vec![1] };
        assert_eq!(decide_segments(&catalog, cmd).unwrap_err(), DomainError::SegmentNotFound(5));
    }

    fn save(list: &str, members: Vec<String>) -> SegmentCommand {
        SegmentCommand::SaveAsList {
            name: list.into(),
            segment_id: 1,
            criteria: "age > 1".into(),
            at_sequence: 42,
            members,
        }
    }

    #[test]
    fn given_a_segment_when_saved_as_list_then_the_list_and_its_members_in_chunks_are_recorded() {
        let catalog = given(vec![create("a", "age > 1")]);
        let members: Vec<String> = (0..LIST_CHUNK + 1).map(|i| format!("c{i}@x.com")).collect();
        let events = decide_segments(&catalog, save("Snapshot", members.clone())).unwrap();
        assert_eq!(
            events[0],
            Event::SegmentSavedAsList(SegmentSavedAsList {
                list_id: 1,
                name: "Snapshot".into(),
                segment_id: 1,
                criteria: "age > 1".into(),
                at_sequence: 42,
                member_count: members.len() as u64,
            })
        );
        let recorded: Vec<String> = events[1..]
            .iter()
            .flat_map(|e| match e {
                Event::ListMembersRecorded(m) if m.list_id == 1 => m.emails.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!((events.len(), recorded), (3, members));
    }

    #[test]
    fn given_a_list_when_another_takes_its_name_or_is_too_large_then_refused() {
        let catalog = given(vec![create("a", "age > 1"), save("L", vec!["a@x.com".into()])]);
        assert_eq!(catalog.extras.lists[&1].member_count, 1);
        assert_eq!(decide_segments(&catalog, save("l", vec![])).unwrap_err(), DomainError::ListNameTaken("l".into()));
        let many = vec![String::new(); MAX_LIST_MEMBERS + 1];
        assert_eq!(
            decide_segments(&catalog, save("M", many)).unwrap_err(),
            DomainError::ListTooLarge { count: MAX_LIST_MEMBERS + 1, limit: MAX_LIST_MEMBERS }
        );
    }

    fn campaign(n: &str, segment_id: u64) -> SegmentCommand {
        SegmentCommand::CreateCampaign {
            name: n.into(),
            subject: "Hello".into(),
            sender: Email::parse("news@shop.example").unwrap(),
            segment_id,
        }
    }

    #[test]
    fn given_a_segment_when_a_campaign_is_created_for_it_then_recorded_and_names_stay_unique() {
        let catalog = given(vec![create("a", "age > 1"), campaign("Spring", 1)]);
        let c = &catalog.extras.campaigns[&1];
        assert_eq!((c.segment_id, c.sender.as_str(), c.subject.as_str()), (1, "news@shop.example", "Hello"));
        assert_eq!(
            decide_segments(&catalog, campaign("SPRING", 1)).unwrap_err(),
            DomainError::CampaignNameTaken("SPRING".into())
        );
        assert_eq!(decide_segments(&catalog, campaign("Other", 3)).unwrap_err(), DomainError::SegmentNotFound(3));
    }

    fn bulk(base: &str, field: &str, values: &[&str]) -> SegmentCommand {
        SegmentCommand::CreateBulk {
            base_name: name(base),
            field: Field::parse(field).unwrap(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn given_values_when_bulk_created_then_one_equals_segment_per_value_linked_to_the_parent() {
        let catalog = given(vec![create("x", "age > 1"), bulk("By country", "country", &["DE", "FR"])]);
        let de = catalog.by_name("By country - DE").unwrap();
        assert_eq!((de.id, de.bulk_parent, de.criteria.as_str()), (2, Some(1), r#"country = "DE""#));
        let fr = catalog.by_name("By country - FR").unwrap();
        assert_eq!((fr.id, fr.bulk_parent), (3, Some(1)));
        assert_eq!(catalog.extras.bulks[&1].children, vec![2, 3]);
        assert_eq!(catalog.last_id, 3);
    }

    #[test]
    fn given_too_many_or_no_values_or_a_taken_name_when_bulk_created_then_refused_naming_why() {
        let catalog = given(vec![create("B - DE", "age > 1")]);
        let many: Vec<String> = (0..=MAX_BULK_SEGMENTS).map(|i| format!("v{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let err = decide_segments(&catalog, bulk("B", "city", &many)).unwrap_err();
        assert_eq!(
            err,
            DomainError::TooManyBulkValues {
                field: "city".into(),
                count: MAX_BULK_SEGMENTS + 1,
                limit: MAX_BULK_SEGMENTS
            }
        );
        assert!(err.to_string().contains("101") && err.to_string().contains("100"), "{err}");
        assert_eq!(
            decide_segments(&catalog, bulk("B", "city", &[])).unwrap_err(),
            DomainError::NoBulkValues("city".into())
        );
        assert_eq!(
            decide_segments(&catalog, bulk("b", "country", &["FR", "de"])).unwrap_err(),
            DomainError::SegmentNameTaken("b - de".into())
        );
        assert!(matches!(decide_segments(&catalog, bulk("B", "age", &["1"])), Err(DomainError::InvalidValue(_))));
    }
}
