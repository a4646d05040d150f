//! What a Service's status says: per host, what the last pass found, applied and saw its
//! monitors do; for the Service, its revision and where its rollout stands.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{MonitorStatus, RolloutStatus};
use crate::meta::{Condition, Time};

/// What the controller last saw and did for a service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Per target host: pending changes and what was applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostPlanStatus>,
    /// Number of the newest Revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<u64>,
    /// The last `hostkit.dev/requestedAt` value a whole pass finished for (`hkctl
    /// reconcile --wait` waits for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,
    /// Where the rollout of the current generation is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// `spec.source`'s ref as last resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceStatus>,
}

/// What `spec.source`'s ref named when the controller last asked the repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceStatus {
    /// The repository asked.
    pub git: String,
    /// The ref as given: `tag v1.4.2`, `branch main`, `commit <id>`.
    #[serde(rename = "ref")]
    pub ref_: String,
    /// The commit it resolved to: what new releases are built from.
    pub commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Time>,
    /// Why the last attempt to resolve the ref failed (the commit above is then the one
    /// resolved before, still deployed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostPlanStatus {
    pub host: String,
    #[serde(default)]
    pub pending: PendingChanges,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_digest: Option<String>,
    /// The first few changes, as `+ file:/etc/x` lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_changes: Vec<String>,
    /// Resource ids that no longer match what was applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drifted: Vec<String>,
    /// Resource ids a partial Rollback put back, left out of plans until the spec changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
    /// The Revision this host runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_generation: Option<u64>,
    /// Digest of the desired resources the host last matched: a later generation that
    /// asks for the same (only `paused` or `interval` changed, say) still counts a hand
    /// edit as drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_time: Option<Time>,
    /// The `spec.source` commit the host's current release was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    /// What the Service's monitors last found on this host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitors: Vec<MonitorStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PendingChanges {
    #[serde(default)]
    pub create: u32,
    #[serde(default)]
    pub update: u32,
    #[serde(default)]
    pub delete: u32,
    #[serde(default)]
    pub read_errors: u32,
}
