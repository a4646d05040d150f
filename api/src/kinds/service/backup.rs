//! `storage[].backup`: compressed, checksummed snapshots of a storage folder, taken on the
//! host by a timer in the Service's sandbox and kept `keep` deep.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::{Validator, check_calendar};

/// Backup jobs are named `backup-<storage>`: user jobs may not take that prefix.
pub const BACKUP_JOB_PREFIX: &str = "backup-";

/// `true`/`false`, or the settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StorageBackup {
    Enabled(bool),
    Settings(BackupSettings),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupSettings {
    /// A systemd calendar expression (default `daily`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Snapshots kept on the host, newest first (default 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// Top-level entries of the storage to include (default: all of it). A restore
    /// replaces only these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

/// A storage's backup with the defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupPlan {
    pub schedule: String,
    pub keep: u32,
    pub paths: Vec<String>,
}

impl StorageBackup {
    /// The backup to render, if any.
    pub fn plan(&self) -> Option<BackupPlan> {
        let settings = match self {
            StorageBackup::Enabled(false) => return None,
            StorageBackup::Enabled(true) => BackupSettings::default(),
            StorageBackup::Settings(s) => s.clone(),
        };
        Some(BackupPlan {
            schedule: settings.schedule.unwrap_or_else(|| "daily".into()),
            keep: settings.keep.unwrap_or(7),
            paths: settings.paths,
        })
    }
}

/// The schedule is a calendar expression, `keep` between 1 and 1000, and `paths` plain
/// names of entries directly in the storage (they land in a shell command's arguments
/// and a `tar` member list).
pub(super) fn check_backup(b: &StorageBackup, v: &mut Validator) {
    let StorageBackup::Settings(s) = b else {
        return;
    };
    if let Some(c) = &s.schedule {
        v.check("schedule", check_calendar(c));
    }
    if let Some(k) = s.keep
        && !(1..=1000).contains(&k)
    {
        v.err("keep", format!("{k} snapshots: keep 1 to 1000"));
    }
    for (i, p) in s.paths.iter().enumerate() {
        let ok = !p.is_empty()
            && p.len() <= 255
            && p != "."
            && p != ".."
            && !p.starts_with('-')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            v.err(
                format!("paths[{i}]"),
                format!(
                    "{p:?} is not the name of an entry directly in the storage (letters, digits, '-', '_', '.'; no '/', not starting with '-')"
                ),
            );
        }
    }
}
