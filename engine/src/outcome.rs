//! What happened to one change (or one undo step): applied, failed or not run, with the
//! backup it took. Apply results, down-plan results and history all speak this one shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::Action;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Applied,
    Failed,
    /// Not attempted: a read error, or an earlier change failed.
    NotRun,
    /// Began, and the controller never learnt how it ended (it died meanwhile): the
    /// change may have taken effect, so its undo is kept.
    Interrupted,
}

/// A backup of a file-like resource taken before it was overwritten or deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub path: String,
    pub sha256: String,
    /// The sha256 is of the backup's salt ([`crate::naming::salt_of`]) and then its content.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub salted: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeResult {
    pub id: String,
    pub action: Action,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The state before the change (from the plan's read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
    /// Package versions this change installed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub locked: crate::plan::PackageLock,
}

impl ChangeResult {
    /// A change that has not run (yet).
    pub fn not_run(id: &str, action: Action, before: Option<Value>) -> ChangeResult {
        ChangeResult {
            id: id.to_string(),
            action,
            status: Status::NotRun,
            message: None,
            before,
            backup: None,
            locked: BTreeMap::new(),
        }
    }
}
