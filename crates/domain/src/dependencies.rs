//! Segments of segments: which saved segments a segment's criteria use
//! (`in segment` conditions), the rules those uses obey, and the order in
//! which members are recomputed.
//!
//! Rules, decided against the catalogue like every other segment rule:
//! every used segment exists (names are resolved to ids when the criteria
//! are saved, so a rename changes nothing), no segment uses itself through
//! any chain, a chain is at most [`MAX_SEGMENT_NESTING`] links long, and a
//! segment that others use cannot be deleted.

use crate::criteria::{Criteria, MAX_SEGMENT_NESTING};
use crate::error::DomainError;
use crate::segment::{SegmentCatalog, SegmentDef};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The ids a stored criteria text uses; parsed only when it has an
/// `in segment` condition at all, so most segments cost a substring search.
pub fn uses_of_text(criteria: &str) -> Vec<u64> {
    if !criteria.contains("in segment") {
        return Vec::new();
    }
    Criteria::parse(criteria).map(|c| c.segment_ids()).unwrap_or_default()
}

/// Which segments each live segment uses, for those that use any.
fn uses_graph(catalog: &SegmentCatalog) -> HashMap<u64, Vec<u64>> {
    catalog
        .segments
        .values()
        .filter_map(|s| {
            let uses = uses_of_text(&s.criteria);
            (!uses.is_empty()).then_some((s.id, uses))
        })
        .collect()
}

/// The live segments whose criteria use segment `id`, by id.
pub fn users_of(catalog: &SegmentCatalog, id: u64) -> Vec<&SegmentDef> {
    catalog.segments.values().filter(|s| s.id != id && uses_of_text(&s.criteria).contains(&id)).collect()
}

/// Readies `criteria` to be saved as segment `id`'s (`None`: a new
/// segment): resolves segment names to ids and checks that the used
/// segments exist, that no cycle forms through `id`, and that no chain of
/// uses, through `id` or from it, gets longer than [`MAX_SEGMENT_NESTING`].
pub fn check_uses(catalog: &SegmentCatalog, id: Option<u64>, criteria: &mut Criteria) -> Result<(), DomainError> {
    criteria
        .resolve_segment_names(&|name| catalog.by_name(name).map(|s| s.id))
        .map_err(DomainError::UnknownSegmentName)?;
    let direct = criteria.segment_ids();
    if direct.is_empty() {
        return Ok(());
    }
    if let Some(missing) = direct.iter().find(|used| !catalog.segments.contains_key(used)) {
        return Err(DomainError::UsedSegmentMissing(*missing));
    }
    let mut graph = uses_graph(catalog);
    // The segment as it would be: a new one gets an id no one can use yet.
    let this = id.unwrap_or(u64::MAX);
    graph.insert(this, direct);
    if let Some(cycle) = cycle_from(&graph, this) {
        let named: Vec<String> = cycle.iter().map(|id| describe(catalog, *id)).collect();
        return Err(DomainError::SegmentCycle(named.join(" → ")));
    }
    let below = longest_chain_from(&graph, this);
    let above = longest_chain_to(&graph, this);
    if below + above > MAX_SEGMENT_NESTING {
        return Err(DomainError::InvalidValue(format!(
            "criteria: the in segment conditions would chain {} segments deep; at most {MAX_SEGMENT_NESTING} are allowed",
            below + above
        )));
    }
    Ok(())
}

/// Refuses to delete segment `id` while others use it, naming them.
pub fn check_unused(catalog: &SegmentCatalog, id: u64) -> Result<(), DomainError> {
    let users = users_of(catalog, id);
    if users.is_empty() {
        return Ok(());
    }
    let users: Vec<String> = users.iter().map(|s| describe(catalog, s.id)).collect();
    Err(DomainError::SegmentInUse { segment: describe(catalog, id), users: users.join(", ") })
}

/// `"Name" (id)`, for messages; a segment being created has no name yet.
fn describe(catalog: &SegmentCatalog, id: u64) -> String {
    match catalog.segments.get(&id) {
        Some(s) => format!("{:?} ({id})", s.name),
        None => "the new segment".to_owned(),
    }
}

/// A chain of uses from `start` back to itself: `[start, …, start]`.
fn cycle_from(graph: &HashMap<u64, Vec<u64>>, start: u64) -> Option<Vec<u64>> {
    // Depth-first with an explicit stack: (segment, index of its next use).
    let mut path: Vec<(u64, usize)> = vec![(start, 0)];
    let mut done: HashSet<u64> = HashSet::new();
    while let Some((node, next)) = path.last_mut() {
        let uses = graph.get(node).map_or(&[][..], Vec::as_slice);
        let Some(&used) = uses.get(*next) else {
            done.insert(*node);
            path.pop();
            continue;
        };
        *next += 1;
        if used == start {
            let mut cycle: Vec<u64> = path.iter().map(|(id, _)| *id).collect();
            cycle.push(start);
            return Some(cycle);
        }
        // A segment already on the path is a cycle not through `start`,
        // which the catalogue never holds; it is not this definition's fault.
        if !done.contains(&used) && !path.iter().any(|(id, _)| *id == used) {
            path.push((used, 0));
        }
    }
    None
}

/// Links in the longest chain of uses starting at `id` (0: it uses none).
fn longest_chain_from(graph: &HashMap<u64, Vec<u64>>, id: u64) -> usize {
    fn go(graph: &HashMap<u64, Vec<u64>>, id: u64, memo: &mut HashMap<u64, usize>, depth: usize) -> usize {
        if let Some(known) = memo.get(&id) {
            return *known;
        }
        // Bounded: beyond the limit the exact length no longer matters.
        let len = if depth > MAX_SEGMENT_NESTING {
            depth
        } else {
            graph.get(&id).map_or(0, |uses| uses.iter().map(|u| 1 + go(graph, *u, memo, depth + 1)).max().unwrap_or(0))
        };
        memo.insert(id, len);
        len
    }
    go(graph, id, &mut HashMap::new(), 0)
}

/// Links in the longest chain of uses ending at `id` (0: no one uses it).
fn longest_chain_to(graph: &HashMap<u64, Vec<u64>>, id: u64) -> usize {
    let mut users: HashMap<u64, Vec<u64>> = HashMap::new();
    for (user, uses) in graph {
        for used in uses {
            users.entry(*used).or_default().push(*user);
        }
    }
    longest_chain_from(&users, id)
}

/// Segment ids ordered so that each comes after every segment it uses:
/// the order in which their members are recomputed. `uses` gives each
/// segment's used ids; ids used but not given are not in the order.
pub fn dependency_order(uses: &BTreeMap<u64, Vec<u64>>) -> Vec<u64> {
    let mut order = Vec::with_capacity(uses.len());
    let mut placed: HashSet<u64> = HashSet::with_capacity(uses.len());
    for &root in uses.keys() {
        if placed.contains(&root) {
            continue;
        }
        // Post-order from each root; `on_stack` also stops a (refused,
        // never stored) cycle from looping.
        let mut stack: Vec<(u64, usize)> = vec![(root, 0)];
        let mut on_stack: HashSet<u64> = HashSet::from([root]);
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            let used = uses.get(&node).map_or(&[][..], Vec::as_slice);
            match used.get(*next) {
                Some(&u) => {
                    *next += 1;
                    if uses.contains_key(&u) && !placed.contains(&u) && on_stack.insert(u) {
                        stack.push((u, 0));
                    }
                }
                None => {
                    stack.pop();
                    if placed.insert(node) {
                        order.push(node);
                    }
                }
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::segment::tests::{create, given};
    use crate::segment::{SegmentCommand, SegmentName, decide_segments};

    fn update(id: u64, c: &str) -> SegmentCommand {
        SegmentCommand::Update { id, expected_version: None, name: None, criteria: Some(Criteria::parse(c).unwrap()) }
    }

    fn stored_criteria(events: &[Event]) -> String {
        match &events[0] {
            Event::SegmentCreated(e) => e.criteria.clone(),
            Event::SegmentUpdated(e) => e.criteria.as_ref().unwrap().to.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn given_a_segment_when_another_uses_it_by_name_then_the_criteria_are_stored_by_id() {
        let catalog = given(vec![create("Young", "age < 30")]);
        let events = decide_segments(&catalog, create("Young DE", r#"IN Segment "young" and country = "DE""#)).unwrap();
        assert_eq!(stored_criteria(&events), r#"in segment 1 and country = "DE""#);
    }

    #[test]
    fn given_a_used_segment_renamed_then_the_user_still_uses_it() {
        let mut catalog = given(vec![create("Young", "age < 30"), create("Young DE", r#"in segment "Young""#)]);
        let rename = SegmentCommand::Update {
            id: 1,
            expected_version: None,
            name: Some(SegmentName::parse("Under 30").unwrap()),
            criteria: None,
        };
        for e in decide_segments(&catalog, rename).unwrap() {
            catalog.apply(&e, crate::time::Timestamp(9));
        }
        assert_eq!(catalog.segments[&2].criteria, "in segment 1");
        assert_eq!(users_of(&catalog, 1).iter().map(|s| s.id).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn given_no_such_segment_when_used_then_not_found_naming_it() {
        let catalog = given(vec![create("Young", "age < 30")]);
        let err = decide_segments(&catalog, create("X", r#"in segment "Old""#)).unwrap_err();
        assert_eq!(err, DomainError::UnknownSegmentName("Old".into()));
        let err = decide_segments(&catalog, create("X", "in segment 7")).unwrap_err();
        assert_eq!(err, DomainError::UsedSegmentMissing(7));
        assert!(err.to_string().contains("segment 7"), "{err}");
    }

    #[test]
    fn given_a_chain_when_its_first_segment_would_use_its_last_then_the_cycle_is_named() {
        let catalog = given(vec![
            create("A", "age < 30"),
            create("B", "in segment 1"),
            create("C", r#"in segment "B" or score > 10"#),
        ]);
        let err = decide_segments(&catalog, update(1, r#"age < 30 and not in segment "C""#)).unwrap_err();
        assert_eq!(err, DomainError::SegmentCycle(r#""A" (1) → "C" (3) → "B" (2) → "A" (1)"#.into()));
        assert!(err.to_string().contains("cycle"), "{err}");
        let err = decide_segments(&catalog, update(2, "in segment 2")).unwrap_err();
        assert_eq!(err, DomainError::SegmentCycle(r#""B" (2) → "B" (2)"#.into()));
    }

    #[test]
    fn given_a_used_segment_when_deleted_then_refused_naming_its_users() {
        let catalog = given(vec![
            create("A", "age < 30"),
            create("B", "in segment 1"),
            create("C", "not in segment 1"),
            create("D", "in segment 2"),
        ]);
        let err = decide_segments(&catalog, SegmentCommand::Delete { id: 1, expected_version: None }).unwrap_err();
        assert_eq!(
            err,
            DomainError::SegmentInUse { segment: r#""A" (1)"#.into(), users: r#""B" (2), "C" (3)"#.into() }
        );
        // D uses B; nothing uses D.
        assert!(decide_segments(&catalog, SegmentCommand::Delete { id: 2, expected_version: None }).is_err());
        assert!(decide_segments(&catalog, SegmentCommand::Delete { id: 4, expected_version: None }).is_ok());
    }

    #[test]
    fn given_a_chain_at_the_nesting_limit_when_lengthened_at_either_end_then_refused() {
        let mut commands = vec![create("S1", "age < 30")];
        for i in 2..=MAX_SEGMENT_NESTING as u64 + 1 {
            commands.push(create(&format!("S{i}"), &format!("in segment {}", i - 1)));
        }
        let catalog = given(commands);
        let last = MAX_SEGMENT_NESTING as u64 + 1;
        let err = decide_segments(&catalog, create("Top", &format!("in segment {last}"))).unwrap_err();
        assert!(matches!(&err, DomainError::InvalidValue(m) if m.contains("at most 8")), "{err}");
        // Lengthened below: the chain's first segment comes to use another.
        let mut commands = vec![create("Base", "age > 1"), create("S1", "age < 30")];
        for i in 2..=MAX_SEGMENT_NESTING as u64 + 1 {
            commands.push(create(&format!("S{i}"), &format!("in segment {i}")));
        }
        let catalog = given(commands);
        let err = decide_segments(&catalog, update(2, "in segment 1")).unwrap_err();
        assert!(matches!(&err, DomainError::InvalidValue(m) if m.contains("chain 9 segments")), "{err}");
    }

    #[test]
    fn given_a_version_using_a_since_deleted_segment_when_rolled_back_then_refused() {
        let mut catalog = given(vec![create("A", "age < 30"), create("B", "in segment 1")]);
        for c in [update(2, "score > 3"), SegmentCommand::Delete { id: 1, expected_version: None }] {
            for e in decide_segments(&catalog, c).unwrap() {
                catalog.apply(&e, crate::time::Timestamp(5));
            }
        }
        let rollback = SegmentCommand::Rollback { id: 2, to_version: 1, expected_version: None };
        assert_eq!(decide_segments(&catalog, rollback).unwrap_err(), DomainError::UsedSegmentMissing(1));
    }

    #[test]
    fn given_uses_then_the_dependency_order_puts_each_segment_after_those_it_uses() {
        let uses = BTreeMap::from([(1, vec![5]), (2, vec![]), (5, vec![2, 9]), (7, vec![1, 2])]);
        let order = dependency_order(&uses);
        let at = |id: u64| order.iter().position(|x| *x == id).unwrap();
        assert_eq!(order.len(), 4);
        assert!(at(2) < at(5) && at(5) < at(1) && at(1) < at(7), "{order:?}");
        // A cycle (never stored) still ends.
        assert_eq!(dependency_order(&BTreeMap::from([(1, vec![2]), (2, vec![1])])).len(), 2);
    }
}
