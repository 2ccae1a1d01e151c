//! A segment's definition history: every version of its name and criteria
//! (version 1 when it is created, one more per update or rollback), the
//! rollback decision, and a readable diff between two versions.
//!
//! Versions are folded from the catalogue's events by `SegmentCatalog`
//! (see `segment.rs`); who made each one is the envelope's business, so
//! readers that need it (the read model) keep it beside these.

use crate::criteria::Criteria;
use crate::error::DomainError;
use crate::event::{Change, Event, SegmentRolledBack};
use crate::segment::SegmentDef;
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// One version of a segment's definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentVersion {
    pub version: u64,
    pub name: String,
    /// Canonical text form.
    pub criteria: String,
    pub time: Timestamp,
    /// For a version made by a rollback: the version it restored.
    pub rolled_back_to: Option<u64>,
}

/// Every live segment's versions, oldest first, by segment id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionHistory {
    by_segment: BTreeMap<u64, Vec<SegmentVersion>>,
}

impl VersionHistory {
    /// The versions of segment `id`, oldest first (empty for an unknown one).
    pub fn of(&self, id: u64) -> &[SegmentVersion] {
        self.by_segment.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Version `version` of segment `id`.
    pub fn get(&self, id: u64, version: u64) -> Option<&SegmentVersion> {
        self.of(id).iter().find(|v| v.version == version)
    }

    /// Records `def` as it is after an event made or changed it.
    pub(crate) fn record(&mut self, def: &SegmentDef, rolled_back_to: Option<u64>) {
        let versions = self.by_segment.entry(def.id).or_default();
        versions.push(SegmentVersion {
            version: def.version,
            name: def.name.clone(),
            criteria: def.criteria.clone(),
            time: def.updated_at,
            rolled_back_to,
        });
    }

    pub(crate) fn forget(&mut self, id: u64) {
        self.by_segment.remove(&id);
    }
}

/// Decides a rollback of `current` (checked editable, at the expected
/// version) to its version `to_version`: a new version with that version's
/// name and criteria. `name_holder` says which segment, if any, has a name
/// now (names are unique per organisation).
pub(crate) fn decide_rollback(
    current: &SegmentDef,
    history: &VersionHistory,
    to_version: u64,
    name_holder: impl Fn(&str) -> Option<u64>,
) -> Result<Vec<Event>, DomainError> {
    let id = current.id;
    if to_version == current.version {
        return Err(DomainError::NothingToRollBack(format!(
            "to_version: segment {id} is at version {to_version} already"
        )));
    }
    let target = history.get(id, to_version).ok_or_else(|| {
        DomainError::InvalidValue(format!(
            "to_version: segment {id} has versions 1 to {}; {to_version} is not one of them",
            current.version
        ))
    })?;
    let name = (target.name != current.name).then(|| Change { from: current.name.clone(), to: target.name.clone() });
    let criteria = (target.criteria != current.criteria)
        .then(|| Change { from: current.criteria.clone(), to: target.criteria.clone() });
    if name.is_none() && criteria.is_none() {
        return Err(DomainError::NothingToRollBack(format!(
            "to_version: version {} of segment {id} has the same name and criteria as version {to_version}",
            current.version
        )));
    }
    if let Some(change) = &name
        && name_holder(&change.to).is_some_and(|holder| holder != id)
    {
        return Err(DomainError::SegmentNameTaken(change.to.clone()));
    }
    Ok(vec![Event::SegmentRolledBack(SegmentRolledBack {
        segment_id: id,
        version: current.version + 1,
        to_version,
        name,
        criteria,
    })])
}

/// What changed from one version to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionDiff {
    pub name: Option<Change>,
    pub criteria: Option<Change>,
    /// Conditions (in their text form) the later version no longer has,
    /// and the ones it has that the earlier one did not, in criteria order.
    pub removed: Vec<String>,
    pub added: Vec<String>,
    /// The criteria differ though their conditions are the same: they are
    /// grouped or negated differently (e.g. `and` became `or`).
    pub regrouped: bool,
}

/// The difference from version `from` to version `to`.
pub fn diff_versions(from: &SegmentVersion, to: &SegmentVersion) -> VersionDiff {
    let name = (from.name != to.name).then(|| Change { from: from.name.clone(), to: to.name.clone() });
    let criteria =
        (from.criteria != to.criteria).then(|| Change { from: from.criteria.clone(), to: to.criteria.clone() });
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    if criteria.is_some() {
        let before = conditions(&from.criteria);
        let after = conditions(&to.criteria);
        removed = without(&before, &after);
        added = without(&after, &before);
    }
    let regrouped = criteria.is_some() && removed.is_empty() && added.is_empty();
    VersionDiff { name, criteria, removed, added, regrouped }
}

/// The text form of every condition of `criteria`, in order; a negated
/// condition reads `not (…)` so that negating one shows as a change. Text
/// that no longer parses (impossible for recorded criteria) is one item.
fn conditions(criteria: &str) -> Vec<String> {
    fn walk(node: &Criteria, negated: bool, out: &mut Vec<String>) {
        match node {
            Criteria::All(children) | Criteria::Any(children) => {
                children.iter().for_each(|c| walk(c, negated, out));
            }
            Criteria::Not(child) => walk(child, !negated, out),
            Criteria::Condition(_) | Criteria::InSegment(_) if negated => out.push(format!("not ({node})")),
            Criteria::Condition(_) | Criteria::InSegment(_) => out.push(node.to_string()),
        }
    }
    let mut out = Vec::new();
    match Criteria::parse(criteria) {
        Ok(tree) => walk(&tree, false, &mut out),
        Err(_) => out.push(criteria.to_owned()),
    }
    out
}

/// The items of `a` not in `b`, counting repeats (a multiset difference).
fn without(a: &[String], b: &[String]) -> Vec<String> {
    let mut left: Vec<&String> = b.iter().collect();
    a.iter()
        .filter(|item| match left.iter().position(|l| l == item) {
            Some(i) => {
                left.swap_remove(i);
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::tests::{create, given};
    use crate::segment::{SegmentCommand, SegmentName, decide_segments};

    fn version(v: u64, name: &str, criteria: &str) -> SegmentVersion {
        SegmentVersion {
            version: v,
            name: name.into(),
            criteria: criteria.into(),
            time: Timestamp(0),
            rolled_back_to: None,
        }
    }

    fn update(id: u64, name: Option<&str>, criteria: Option<&str>) -> SegmentCommand {
        SegmentCommand::Update {
            id,
            expected_version: None,
            name: name.map(|n| SegmentName::parse(n).unwrap()),
            criteria: criteria.map(|c| Criteria::parse(c).unwrap()),
        }
    }

    fn rollback(id: u64, to_version: u64, expected_version: Option<u64>) -> SegmentCommand {
        SegmentCommand::Rollback { id, to_version, expected_version }
    }

    #[test]
    fn given_a_created_and_updated_segment_then_every_version_is_kept_with_its_time() {
        let catalog = given(vec![
            create("germany", r#"country = "DE""#),
            update(1, Some("dach"), None),
            update(1, None, Some(r#"country in ("DE", "AT", "CH")"#)),
        ]);
        let versions = catalog.versions.of(1);
        let summary: Vec<(u64, &str, &str, i64)> =
            versions.iter().map(|v| (v.version, v.name.as_str(), v.criteria.as_str(), v.time.0)).collect();
        assert_eq!(
            summary,
            [
                (1, "germany", r#"country = "DE""#, 0),
                (2, "dach", r#"country = "DE""#, 1),
                (3, "dach", r#"country in ("DE", "AT", "CH")"#, 2)
            ]
        );
    }

    #[test]
    fn given_three_versions_when_rolled_back_to_the_first_then_a_fourth_version_restores_it() {
        let mut catalog = given(vec![
            create("germany", r#"country = "DE""#),
            update(1, Some("dach"), None),
            update(1, None, Some(r#"country in ("DE", "AT")"#)),
        ]);
        let events = decide_segments(&catalog, rollback(1, 1, Some(3))).unwrap();
        assert_eq!(
            events,
            vec![Event::SegmentRolledBack(SegmentRolledBack {
                segment_id: 1,
                version: 4,
                to_version: 1,
                name: Some(Change { from: "dach".into(), to: "germany".into() }),
                criteria: Some(Change { from: r#"country in ("DE", "AT")"#.into(), to: r#"country = "DE""#.into() }),
            })]
        );
        catalog.apply(&events[0], Timestamp(9));
        let def = &catalog.segments[&1];
        assert_eq!((def.version, def.name.as_str(), def.criteria.as_str()), (4, "germany", r#"country = "DE""#));
        assert_eq!(catalog.versions.get(1, 4).unwrap().rolled_back_to, Some(1));
    }

    #[test]
    fn given_a_segment_when_rolled_back_to_its_current_or_an_unknown_version_then_refused_naming_to_version() {
        let catalog = given(vec![create("a", "age > 1"), update(1, None, Some("age > 2"))]);
        let e = decide_segments(&catalog, rollback(1, 2, None)).unwrap_err();
        assert!(matches!(&e, DomainError::NothingToRollBack(m) if m.starts_with("to_version")), "{e}");
        for v in [0, 3] {
            let e = decide_segments(&catalog, rollback(1, v, None)).unwrap_err();
            assert!(matches!(&e, DomainError::InvalidValue(m) if m.starts_with("to_version")), "{v}: {e}");
        }
        let e = decide_segments(&catalog, rollback(1, 1, Some(1))).unwrap_err();
        assert_eq!(e, DomainError::StaleVersion { id: 1, expected: 1, actual: 2 });
        assert_eq!(decide_segments(&catalog, rollback(7, 1, None)).unwrap_err(), DomainError::SegmentNotFound(7));
    }

    #[test]
    fn given_a_version_equal_to_the_current_one_when_rolled_back_to_then_refused_as_changing_nothing() {
        let catalog = given(vec![create("a", "age > 1"), update(1, Some("b"), None), update(1, Some("a"), None)]);
        let e = decide_segments(&catalog, rollback(1, 1, None)).unwrap_err();
        assert!(matches!(&e, DomainError::NothingToRollBack(m) if m.contains("same name and criteria")), "{e}");
    }

    #[test]
    fn given_the_old_name_is_taken_when_rolled_back_then_name_taken() {
        let catalog = given(vec![create("a", "age > 1"), update(1, Some("b"), None), create("A", "age > 5")]);
        assert_eq!(decide_segments(&catalog, rollback(1, 1, None)), Err(DomainError::SegmentNameTaken("a".into())));
    }

    #[test]
    fn given_a_deleted_segment_then_its_versions_are_gone_with_it() {
        let catalog = given(vec![create("a", "age > 1"), SegmentCommand::Delete { id: 1, expected_version: None }]);
        assert!(catalog.versions.of(1).is_empty());
    }

    #[test]
    fn diffs_name_criteria_and_conditions() {
        let a = version(1, "young", r#"country in ("DE", "FR") and (age between 25 and 34 or score > 200)"#);
        let b = version(2, "young eu", r#"country in ("DE", "FR") and (age between 25 and 39 or score > 200)"#);
        let d = diff_versions(&a, &b);
        assert_eq!(d.name, Some(Change { from: "young".into(), to: "young eu".into() }));
        assert_eq!(d.removed, ["age between 25 and 34"]);
        assert_eq!(d.added, ["age between 25 and 39"]);
        assert!(!d.regrouped);
        let c = version(3, "young eu", r#"country in ("DE", "FR") or age between 25 and 39 or score > 200"#);
        let d = diff_versions(&b, &c);
        assert!(d.name.is_none() && d.criteria.is_some() && d.regrouped, "{d:?}");
        let n = version(4, "young eu", r#"not (country in ("DE", "FR")) or age between 25 and 39 or score > 200"#);
        let d = diff_versions(&c, &n);
        assert_eq!(
            (d.removed, d.added),
            (vec![r#"country in ("DE", "FR")"#.to_owned()], vec![r#"not (country in ("DE", "FR"))"#.to_owned()])
        );
        let same = diff_versions(&a, &a);
        assert_eq!(same, VersionDiff { name: None, criteria: None, removed: vec![], added: vec![], regrouped: false });
    }
}
