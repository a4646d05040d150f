//! `GitSource`: keeps the store equal to a path of a git ref or a local folder.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KindInfo, KindSpec};
use crate::meta::{Condition, ObjectRef};
use crate::validate::Validator;
use crate::validate::{check_path, check_secret};

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
        git_source(self, v);
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

fn git_source(spec: &GitSourceSpec, v: &mut Validator) {
    match (&spec.url, &spec.directory) {
        (Some(url), None) => {
            let schemes = ["ssh://", "https://", "http://", "git://", "file://"];
            if !schemes.iter().any(|s| url.starts_with(s)) {
                v.err("url", format!("{url:?} is not a git URL; valid schemes: ssh://, https://, http://, git://, file://"));
            }
        }
        (None, Some(dir)) => check_path("directory", dir, v),
        (None, None) => v.err(
            "url",
            "name a repository with `url` or a folder with `directory`",
        ),
        (Some(_), Some(_)) => v.err("directory", "use either `url` or `directory`, not both"),
    }
    if let Some(r) = &spec.ref_ {
        let set = [&r.branch, &r.tag, &r.commit]
            .iter()
            .filter(|x| x.is_some())
            .count();
        if set != 1 {
            v.err("ref", "give exactly one of branch, tag, commit");
        }
        if let Some(c) = &r.commit
            && (c.len() < 7 || !c.chars().all(|ch| ch.is_ascii_hexdigit()))
        {
            v.err(
                "ref.commit",
                format!("{c:?} is not a commit id (7-40 hex digits)"),
            );
        }
    }
    if let Some(p) = &spec.path
        && (p.starts_with('/') || p.split('/').any(|seg| seg == ".."))
    {
        v.err(
            "path",
            format!("{p:?} must be a folder inside the repository (relative, no '..')"),
        );
    }
    if let Some(a) = &spec.auth {
        for (field, s) in [
            ("sshKey", &a.ssh_key),
            ("knownHosts", &a.known_hosts),
            ("token", &a.token),
        ] {
            if let Some(s) = s {
                check_secret(format!("auth.{field}"), s, v);
            }
        }
    }
}
