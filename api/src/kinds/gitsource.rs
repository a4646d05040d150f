//! `GitSource`: keeps the store equal to a path of a git ref or a local folder.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KindInfo, KindSpec};
use crate::meta::{Condition, ObjectRef};
use crate::validate::{self, Validator};
use crate::values::{Duration, SecretRef};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitSourceSpec {
    /// `ssh://`, `https://`, `git://` or `file://` URL. Use this or `directory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A local folder synced the same way. Use this or `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// Branch, tag or commit (default: branch `main`).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub ref_: Option<GitRef>,
    /// Folder inside the repository; every *.yaml / *.yml below it is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How often to fetch (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Delete objects this source applied earlier and no longer has.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prune: bool,
    /// Stop syncing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<GitAuth>,
}

/// Exactly one of `branch`, `tag`, `commit`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Credentials, as secret references only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitSourceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetched_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_commit: Option<String>,
    /// Objects applied from this source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<ObjectRef>,
    /// Objects a Rollback put on hold, not re-applied from git.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<ObjectRef>,
    /// The last `hostkit.dev/requestedAt` value acted on (`hkctl sync` waits for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,
    /// When the last sync finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<crate::meta::Time>,
}

pub const GIT_SOURCE_INFO: KindInfo = KindInfo {
    kind: "GitSource",
    plural: "gitsources",
    singular: "gitsource",
    short_names: &["gs"],
};

impl KindSpec for GitSourceSpec {
    type Status = GitSourceStatus;
    const INFO: &'static KindInfo = &GIT_SOURCE_INFO;

    fn validate(&self, _name: &str, v: &mut Validator) {
        validate::git_source(self, v);
    }

    fn apply_defaults(&mut self) {
        self.interval.get_or_insert_with(|| Duration::from_secs(60));
        if self.url.is_some() {
            self.ref_.get_or_insert_with(|| GitRef {
                branch: Some("main".to_string()),
                ..Default::default()
            });
        }
    }
}
