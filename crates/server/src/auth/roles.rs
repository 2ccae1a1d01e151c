//! Roles and the table of which role may call which RPC.
//!
//! The table is keyed by the full gRPC method path
//! (`/segments.v1.Commands/CreateSegment`). An RPC missing from it is
//! refused to everyone (fail closed), and a unit test walks the proto's
//! file descriptor set so that a new RPC cannot land without an entry.
//!
//! **Must not depend on** the services themselves: this is policy only.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

/// What a key may do. Every key has exactly one role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Microservices: writes (Commands) and reads (Queries).
    Service,
    /// Reads (Queries) and the event history (Replay); writes nothing.
    Analyst,
    /// The event history and the score-reset audit trail; writes nothing.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Service, Role::Analyst, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Service => "service",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(raw: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str().eq_ignore_ascii_case(raw.trim()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use Role::{Admin, Analyst, Auditor, Service};

/// Writes: the Commands service.
const WRITE: &[Role] = &[Admin, Service];
/// Reads over the read models: the Queries service.
const READ: &[Role] = &[Admin, Service, Analyst];
/// The event history, straight from the log.
const HISTORY: &[Role] = &[Admin, Analyst, Auditor];
/// The score-reset audit trail.
const AUDIT: &[Role] = &[Admin, Auditor];

/// Every RPC of `segments.v1` and the roles that may call it. Add a line for
/// every new RPC (the completeness test names the missing ones).
pub const RPC_ROLES: &[(&str, &[Role])] = &[
    ("/segments.v1.Commands/UpsertContacts", WRITE),
    ("/segments.v1.Commands/DeleteContacts", WRITE),
    ("/segments.v1.Commands/CreateSegment", WRITE),
    ("/segments.v1.Commands/UpdateSegment", WRITE),
    ("/segments.v1.Commands/DeleteSegment", WRITE),
    ("/segments.v1.Commands/RollbackSegment", WRITE),
    ("/segments.v1.Commands/MassUpdate", WRITE),
    ("/segments.v1.Commands/DeleteSegmentContacts", WRITE),
    ("/segments.v1.Commands/ResetScores", WRITE),
    ("/segments.v1.Commands/CancelJob", WRITE),
    ("/segments.v1.Commands/RecordActivity", WRITE),
    ("/segments.v1.Commands/ImportLegacySegment", WRITE),
    ("/segments.v1.Commands/CloneSegment", WRITE),
    ("/segments.v1.Commands/CreateTopic", WRITE),
    ("/segments.v1.Commands/AssignTopics", WRITE),
    ("/segments.v1.Commands/UnassignTopics", WRITE),
    ("/segments.v1.Commands/SaveSegmentAsList", WRITE),
    ("/segments.v1.Commands/CreateCampaign", WRITE),
    ("/segments.v1.Commands/CreateBulkSegments", WRITE),
    ("/segments.v1.Queries/GetContact", READ),
    ("/segments.v1.Queries/GetSegment", READ),
    ("/segments.v1.Queries/ListSegments", READ),
    ("/segments.v1.Queries/CountMembers", READ),
    ("/segments.v1.Queries/ListMembers", READ),
    ("/segments.v1.Queries/PreviewCriteria", READ),
    ("/segments.v1.Queries/GetJob", READ),
    ("/segments.v1.Queries/WatchJobs", READ),
    ("/segments.v1.Queries/WatchMembership", READ),
    ("/segments.v1.Queries/ListScoreResets", AUDIT),
    ("/segments.v1.Queries/GetScoreReset", AUDIT),
    ("/segments.v1.Queries/ListTopics", READ),
    ("/segments.v1.Queries/GetList", READ),
    ("/segments.v1.Queries/ListLists", READ),
    ("/segments.v1.Queries/ListListMembers", READ),
    ("/segments.v1.Queries/GetCampaign", READ),
    ("/segments.v1.Queries/ListCampaigns", READ),
    ("/segments.v1.Queries/CountCampaignRecipients", READ),
    ("/segments.v1.Queries/ListCampaignRecipients", READ),
    ("/segments.v1.Queries/PreviewBulkSegments", READ),
    ("/segments.v1.Queries/ListSegmentVersions", READ),
    ("/segments.v1.Queries/DiffSegmentVersions", READ),
    ("/segments.v1.Queries/ExplainMembership", READ),
    // Contacts' personal data in bulk: the readers of the read models
    // (services, analysts); auditors read the audit trail, not contacts.
    ("/segments.v1.Queries/ExportContacts", READ),
    ("/segments.v1.Replay/ReplayEvents", HISTORY),
    ("/segments.v1.Replay/SegmentHistory", HISTORY),
    ("/segments.v1.Replay/ContactHistory", HISTORY),
];

/// The package prefix of every path the table governs; other paths (health,
/// reflection) are not segmentd's API and need no key.
pub const GOVERNED_PREFIX: &str = "/segments.v1.";

static TABLE: LazyLock<HashMap<&'static str, &'static [Role]>> =
    LazyLock::new(|| RPC_ROLES.iter().map(|(path, roles)| (*path, *roles)).collect());

/// The roles that may call `path`; `None` for an RPC the table lacks.
pub fn allowed_roles(path: &str) -> Option<&'static [Role]> {
    TABLE.get(path).copied()
}

/// Whether `role` may call `path`; an RPC the table lacks is refused.
pub fn may_call(role: Role, path: &str) -> bool {
    allowed_roles(path).is_some_and(|roles| roles.contains(&role))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Every method of every service in the compiled proto, as a full path.
    fn proto_methods() -> Vec<String> {
        let set = prost_types::FileDescriptorSet::decode(segmentd_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut paths = Vec::new();
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!("/{package}.{}/{}", service.name(), method.name()));
                }
            }
        }
        assert!(paths.len() >= RPC_ROLES.len() / 2, "descriptor has only {paths:?}");
        paths
    }

    #[test]
    fn every_rpc_in_the_proto_has_roles_and_every_entry_is_an_rpc() {
        let methods = proto_methods();
        let missing: Vec<_> = methods.iter().filter(|m| allowed_roles(m).is_none()).collect();
        assert!(
            missing.is_empty(),
            "RPCs without an entry in crates/server/src/auth/roles.rs RPC_ROLES (nobody may call them): {missing:#?}"
        );
        let stale: Vec<_> = RPC_ROLES.iter().map(|(p, _)| *p).filter(|p| !methods.iter().any(|m| m == p)).collect();
        assert!(stale.is_empty(), "RPC_ROLES entries for RPCs the proto does not have: {stale:#?}");
        assert_eq!(TABLE.len(), RPC_ROLES.len(), "an RPC is listed twice in RPC_ROLES");
        for (path, roles) in RPC_ROLES {
            assert!(path.starts_with(GOVERNED_PREFIX), "{path}");
            assert!(roles.contains(&Admin), "admin may do everything, but not {path}");
        }
    }

    #[test]
    fn the_defaults_hold_per_service() {
        for m in proto_methods() {
            let expected: &[Role] = if m.starts_with("/segments.v1.Commands/") {
                WRITE
            } else if m.contains("ScoreReset") {
                AUDIT
            } else if m.starts_with("/segments.v1.Queries/") {
                READ
            } else if m.starts_with("/segments.v1.Replay/") {
                HISTORY
            } else {
                continue;
            };
            assert_eq!(allowed_roles(&m), Some(expected), "{m}");
        }
    }

    #[test]
    fn auditors_write_nothing_and_unknown_rpcs_are_refused() {
        for (path, _) in RPC_ROLES {
            if path.starts_with("/segments.v1.Commands/") {
                assert!(!may_call(Auditor, path), "{path}");
                assert!(!may_call(Analyst, path), "{path}");
            }
        }
        for role in Role::ALL {
            assert!(!may_call(role, "/segments.v1.Commands/DropEverything"));
        }
    }

    #[test]
    fn roles_parse_by_name() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("ADMIN"), Some(Admin));
        assert_eq!(Role::parse("root"), None);
    }
}
