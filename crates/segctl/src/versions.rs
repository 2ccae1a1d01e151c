//! A segment's definition history: its versions, a readable diff between
//! two of them, and rolling back to one.
//!
//! Like the rest of segctl, **must not depend on** any server crate: wire
//! API only.

use crate::client::{Api, command_id, with_segment};
use crate::output::{segment_json, segment_text};
use crate::{Output, emit, emit_json};
use clap::Subcommand;
use segmentd_proto::v1 as pb;
use serde_json::{Value, json};

/// Definition history (flattened into `segctl segments`).
#[derive(Subcommand, Debug)]
pub(crate) enum VersionOps {
    /// Every version of a segment's name and criteria: who made it, when.
    Versions {
        #[arg(value_name = "NAME|ID")]
        segment: String,
    },
    /// What changed between two versions: name, criteria, conditions
    /// removed (-) and added (+).
    Diff {
        #[arg(value_name = "NAME|ID")]
        segment: String,
        /// The earlier version.
        from: u64,
        /// The later version [default: the current one].
        to: Option<u64>,
    },
    /// Give a segment the name and criteria of an earlier version again (as
    /// a new version).
    Rollback {
        #[arg(value_name = "NAME|ID")]
        segment: String,
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        to_version: u64,
        /// Refuse (ABORTED) unless the segment is at this version.
        #[arg(long, value_name = "N")]
        expected_version: Option<u64>,
    },
}

fn version_json(v: &pb::SegmentVersion) -> Value {
    json!({
        "version": v.version,
        "name": v.name,
        "criteria": v.criteria_text,
        "actor": v.actor,
        "time": v.time,
        "event_type": v.event_type,
        "sequence": v.sequence,
        "rolled_back_to": (v.rolled_back_to != 0).then_some(v.rolled_back_to),
    })
}

/// `v3  2025-…  acme/key-1  SegmentRolledBack (to v1)  "germany": country = "DE"`
fn version_line(v: &pb::SegmentVersion) -> String {
    let rollback = if v.rolled_back_to == 0 { String::new() } else { format!(" (to v{})", v.rolled_back_to) };
    format!("v{}\t{}\t{}\t{}{rollback}\t{:?}: {}\n", v.version, v.time, v.actor, v.event_type, v.name, v.criteria_text)
}

/// The diff as a reader wants it: the versions, then `-`/`+` lines.
fn diff_text(d: &pb::SegmentVersionDiff) -> String {
    let (from, to) = (d.from.clone().unwrap_or_default(), d.to.clone().unwrap_or_default());
    let mut text = format!(
        "v{} ({} by {}) → v{} ({} by {})\n",
        from.version, from.time, from.actor, to.version, to.time, to.actor
    );
    if !d.name_changed && !d.criteria_changed {
        text.push_str("no change in name or criteria\n");
        return text;
    }
    if d.name_changed {
        text.push_str(&format!("name:\n- {:?}\n+ {:?}\n", from.name, to.name));
    }
    if d.criteria_changed {
        text.push_str(&format!("criteria:\n- {}\n+ {}\n", from.criteria_text, to.criteria_text));
        if d.regrouped {
            text.push_str("conditions: the same, grouped differently\n");
        } else {
            text.push_str("conditions:\n");
            for c in &d.removed_conditions {
                text.push_str(&format!("- {c}\n"));
            }
            for c in &d.added_conditions {
                text.push_str(&format!("+ {c}\n"));
            }
        }
    }
    text
}

pub(crate) async fn version_op(api: &Api, out: Output, op: VersionOps) -> anyhow::Result<()> {
    match op {
        VersionOps::Versions { segment } => {
            let (reply, _) = with_segment(&segment, |r| {
                api.list_segment_versions(pb::ListSegmentVersionsRequest { segment: Some(r), min_sequence: 0 })
            })
            .await?;
            match out {
                Output::Json => emit_json(&json!({
                    "segment_id": reply.segment_id,
                    "versions": reply.versions.iter().map(version_json).collect::<Vec<_>>(),
                    "sequence": reply.sequence,
                }))?,
                Output::Text => emit(&reply.versions.iter().map(version_line).collect::<String>())?,
            }
        }
        VersionOps::Diff { segment, from, to } => {
            let (d, _) = with_segment(&segment, |r| {
                api.diff_segment_versions(pb::DiffSegmentVersionsRequest {
                    segment: Some(r),
                    from_version: from,
                    to_version: to.unwrap_or(0),
                    min_sequence: 0,
                })
            })
            .await?;
            match out {
                Output::Json => emit_json(&json!({
                    "from": d.from.as_ref().map(version_json),
                    "to": d.to.as_ref().map(version_json),
                    "name_changed": d.name_changed,
                    "criteria_changed": d.criteria_changed,
                    "removed_conditions": d.removed_conditions,
                    "added_conditions": d.added_conditions,
                    "regrouped": d.regrouped,
                }))?,
                Output::Text => emit(&diff_text(&d))?,
            }
        }
        VersionOps::Rollback { segment, to_version, expected_version } => {
            let id = command_id();
            let (reply, _) = with_segment(&segment, |r| {
                api.rollback_segment(pb::RollbackSegmentRequest {
                    command_id: id.clone(),
                    segment: Some(r),
                    to_version,
                    expected_version: expected_version.unwrap_or(0),
                })
            })
            .await?;
            let segment = reply.segment.clone().unwrap_or_default();
            match out {
                Output::Text => emit(&segment_text(&segment, Some(reply.sequence)))?,
                Output::Json => emit_json(&json!({
                    "segment": segment_json(&segment),
                    "sequence": reply.sequence,
                    "duplicate": reply.duplicate,
                }))?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(v: u64, name: &str, criteria: &str) -> pb::SegmentVersion {
        pb::SegmentVersion {
            version: v,
            name: name.into(),
            criteria_text: criteria.into(),
            actor: "acme/key-1".into(),
            time: format!("2025-01-01T00:00:0{v}Z"),
            event_type: "SegmentUpdated".into(),
            sequence: v * 10,
            rolled_back_to: 0,
        }
    }

    #[test]
    fn a_diff_reads_as_minus_and_plus_lines() {
        let d = pb::SegmentVersionDiff {
            from: Some(version(1, "de", r#"country = "DE" and age > 30"#)),
            to: Some(version(2, "dach", r#"country = "DE" and age > 40"#)),
            name_changed: true,
            criteria_changed: true,
            removed_conditions: vec!["age > 30".into()],
            added_conditions: vec!["age > 40".into()],
            regrouped: false,
            sequence: 20,
        };
        assert_eq!(
            diff_text(&d),
            "v1 (2025-01-01T00:00:01Z by acme/key-1) → v2 (2025-01-01T00:00:02Z by acme/key-1)\n\
             name:\n- \"de\"\n+ \"dach\"\n\
             criteria:\n- country = \"DE\" and age > 30\n+ country = \"DE\" and age > 40\n\
             conditions:\n- age > 30\n+ age > 40\n"
        );
        let mut rolled = version(3, "de", "age > 1");
        rolled.rolled_back_to = 1;
        rolled.event_type = "SegmentRolledBack".into();
        assert_eq!(
            version_line(&rolled),
            "v3\t2025-01-01T00:00:03Z\tacme/key-1\tSegmentRolledBack (to v1)\t\"de\": age > 1\n"
        );
    }
}
