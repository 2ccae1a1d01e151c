//! `segctl segments explain`: whether a contact is a member of a segment
//! and why, as an indented tree with ✓/✗ per condition and group.
//!
//! Like the rest of segctl, **must not depend on** any server crate: wire
//! API only.

use crate::client::{Api, with_segment};
use crate::{Output, emit, emit_json};
use segmentd_proto::v1 as pb;
use serde_json::{Value, json};

/// Which contact to explain: by email, else by contact_id.
pub(crate) struct Who {
    pub(crate) email: Option<String>,
    pub(crate) contact_id: Option<i64>,
    pub(crate) at: Option<String>,
}

pub(crate) async fn explain(api: &Api, out: Output, segment: &str, who: Who) -> anyhow::Result<()> {
    use pb::explain_membership_request::Contact;
    let contact = match (who.email, who.contact_id) {
        (Some(email), _) => Contact::Email(email),
        (None, Some(id)) => Contact::ContactId(id),
        (None, None) => anyhow::bail!("give --contact EMAIL or --contact-id N"),
    };
    let (reply, _) = with_segment(segment, |r| {
        api.explain_membership(pb::ExplainMembershipRequest {
            segment: Some(r),
            contact: Some(contact.clone()),
            at: who.at.clone().unwrap_or_default(),
            min_sequence: 0,
        })
    })
    .await?;
    match out {
        Output::Text => emit(&explanation_text(&reply))?,
        Output::Json => emit_json(&explanation_json(&reply))?,
    }
    Ok(())
}

fn mark(result: bool) -> &'static str {
    if result { "✓" } else { "✗" }
}

fn node_text(node: &pb::ExplainedNode, depth: usize, text: &mut String) {
    let indent = "  ".repeat(depth);
    if node.kind == "condition" {
        let value = if node.has_value { node.value.clone() } else { "(empty)".to_owned() };
        text.push_str(&format!("{indent}{} {}    [{} = {value}]\n", mark(node.result), node.condition, node.field));
        return;
    }
    if node.kind == "segment" {
        let used = if node.segment_name.is_empty() {
            "no such segment".to_owned()
        } else {
            format!("{:?}", node.segment_name)
        };
        text.push_str(&format!("{indent}{} {}    [{used}]\n", mark(node.result), node.condition));
        for child in &node.children {
            node_text(child, depth + 1, text);
        }
        return;
    }
    text.push_str(&format!("{indent}{} {}\n", mark(node.result), node.kind));
    for child in &node.children {
        node_text(child, depth + 1, text);
    }
}

fn cause_name(cause: i32) -> &'static str {
    match pb::MembershipCause::try_from(cause) {
        Ok(pb::MembershipCause::ContactChanged) => "the contact changed",
        Ok(pb::MembershipCause::SegmentDefined) => "the segment was defined",
        Ok(pb::MembershipCause::TimePassed) => "time passed (a relative condition)",
        _ => "unknown",
    }
}

fn explanation_text(e: &pb::MembershipExplanation) -> String {
    let is = if e.member { "is a member" } else { "is not a member" };
    let mut text = format!("{} {is} of {:?} (segment {}) at {}\n", e.email, e.segment_name, e.segment_id, e.at);
    if let Some(tree) = &e.tree {
        node_text(tree, 0, &mut text);
    }
    match &e.since {
        Some(s) if s.sequence == 0 => text.push_str(&format!("since: {}\n", cause_name(s.cause))),
        Some(s) if s.cause == pb::MembershipCause::TimePassed as i32 => text.push_str(&format!(
            "since: {}, after sequence {} ({} by {} at {})\n",
            cause_name(s.cause),
            s.sequence,
            s.event_type,
            s.actor,
            s.time
        )),
        Some(s) => text.push_str(&format!(
            "since: sequence {} ({} by {} at {}): {}\n",
            s.sequence,
            s.event_type,
            s.actor,
            s.time,
            cause_name(s.cause)
        )),
        None if !e.history_note.is_empty() => text.push_str(&format!("since: unknown ({})\n", e.history_note)),
        None => text.push_str("since: it has never been a member\n"),
    }
    text
}

fn node_json(node: &pb::ExplainedNode) -> Value {
    if node.kind == "condition" {
        return json!({
            "condition": node.condition,
            "field": node.field,
            "value": node.has_value.then_some(&node.value),
            "result": node.result,
        });
    }
    if node.kind == "segment" {
        return json!({
            "condition": node.condition,
            "segment_id": node.segment_id,
            "segment_name": node.segment_name,
            "result": node.result,
            "criteria": node.children.first().map(node_json),
        });
    }
    json!({"group": node.kind, "result": node.result, "children": node.children.iter().map(node_json).collect::<Vec<_>>()})
}

fn explanation_json(e: &pb::MembershipExplanation) -> Value {
    json!({
        "segment_id": e.segment_id,
        "segment_name": e.segment_name,
        "criteria": e.criteria_text,
        "email": e.email,
        "member": e.member,
        "tree": e.tree.as_ref().map(node_json),
        "since": e.since.as_ref().map(|s| json!({
            "cause": cause_name(s.cause),
            "sequence": s.sequence,
            "event_type": s.event_type,
            "actor": s.actor,
            "time": s.time,
        })),
        "history_note": e.history_note,
        "at": e.at,
        "sequence": e.sequence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(text: &str, field: &str, value: &str, result: bool) -> pb::ExplainedNode {
        pb::ExplainedNode {
            kind: "condition".into(),
            result,
            condition: text.into(),
            field: field.into(),
            value: value.into(),
            has_value: !value.is_empty(),
            ..Default::default()
        }
    }

    #[test]
    fn an_explanation_prints_as_an_indented_tree_with_marks_and_its_cause() {
        let any = pb::ExplainedNode {
            kind: "any".into(),
            result: true,
            children: vec![
                condition("age between 25 and 34", "age", "", false),
                condition("score > 200", "score", "250", true),
            ],
            ..Default::default()
        };
        let tree = pb::ExplainedNode {
            kind: "all".into(),
            result: true,
            children: vec![condition(r#"country in ("DE", "FR")"#, "country", "DE", true), any],
            ..Default::default()
        };
        let e = pb::MembershipExplanation {
            segment_id: 3,
            segment_name: "young-eu".into(),
            email: "anna@acme.com".into(),
            member: true,
            tree: Some(tree),
            since: Some(pb::ExplainedSince {
                cause: pb::MembershipCause::ContactChanged.into(),
                sequence: 42,
                event_type: "ContactUpdated".into(),
                actor: "acme/key-1".into(),
                time: "2026-01-02T03:04:05Z".into(),
            }),
            at: "2026-02-01T00:00:00Z".into(),
            ..Default::default()
        };
        assert_eq!(
            explanation_text(&e),
            "anna@acme.com is a member of \"young-eu\" (segment 3) at 2026-02-01T00:00:00Z\n\
             ✓ all\n  \
               ✓ country in (\"DE\", \"FR\")    [country = DE]\n  \
               ✓ any\n    \
                 ✗ age between 25 and 34    [age = (empty)]\n    \
                 ✓ score > 200    [score = 250]\n\
             since: sequence 42 (ContactUpdated by acme/key-1 at 2026-01-02T03:04:05Z): the contact changed\n"
        );
        let never = pb::MembershipExplanation { member: false, since: None, ..e };
        assert!(explanation_text(&never).ends_with("since: it has never been a member\n"));
    }
}
