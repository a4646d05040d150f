//! Application releases from git (`spec.source`): how code reaches a host.
//!
//! The controller resolves the ref to one commit ([`resolve`]); the expansion turns that
//! commit into two resources: a release (this module's [`ReleaseSpec`]), and the
//! `current` symlink that points at it, which the daemon's unit depends on. So:
//!
//! - the host fetches exactly that commit into `<dir>/releases/.incoming-<commit>`, runs
//!   the build steps there as the Service's user in the daemon's sandbox
//!   (`systemd-run`), and only then renames it to `releases/<commit>` ([`script`]); a
//!   failed fetch or build removes the incoming folder and stops the apply, before the
//!   link changes, so `current` stays on the old release;
//! - switching is the symlink's atomic rename, and undoing it is the symlink's own down
//!   step (the previous target, still on the host): a rollback never fetches;
//! - releases are never removed by a down plan that switches back; pruning keeps the
//!   `keep` newest, the one `current` names, the new one, and every commit a kept Revision
//!   needs (`protect`, filled in by the controller and not part of the desired digest, so
//!   history moving does not look like a change).
//!
//! The release's commit is part of the resource, so it is in the desired digest (a new
//! commit is a new rollout) and in the Revision's resources by construction.

use serde::{Deserialize, Serialize};

pub mod resolve;
pub mod script;

/// The file whose presence makes a release folder complete (written last, before the
/// rename): a folder without it is not a release.
pub const MARKER: &str = ".hostkit-release";

/// One release of a Service's source on a host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSpec {
    /// `<source root>/<identity>`: holds `releases/` and the `current` link.
    pub dir: String,
    pub git: String,
    pub commit: String,
    /// The ref the commit was resolved from, fetched instead when the server does not
    /// serve commits by id (`refs/tags/v1`, `refs/heads/main`; empty for a commit).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fallback_ref: String,
    /// The application's folder inside the repository, if not its top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdir: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build: Vec<Vec<String>>,
    /// Who fetches and builds.
    pub user: String,
    pub group: String,
    /// The daemon's sandbox as `Key=Value` unit properties, for the build steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sandbox: Vec<String>,
    pub keep: u32,
    /// The deploy key and known_hosts files on the host (ssh:// sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshFiles>,
    /// Commits a kept Revision needs: never pruned. Not serialised: it follows history,
    /// not the spec.
    #[serde(skip)]
    pub protect: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshFiles {
    pub key: String,
    pub known_hosts: String,
}

impl ReleaseSpec {
    pub fn releases_dir(&self) -> String {
        releases_dir(&self.dir)
    }

    /// `<dir>/releases/<commit>`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.releases_dir(), self.commit)
    }

    /// The commit's first 12 digits, for messages.
    pub fn short(&self) -> &str {
        &self.commit[..self.commit.len().min(12)]
    }
}

pub fn releases_dir(dir: &str) -> String {
    format!("{dir}/releases")
}

/// The link the daemon runs from.
pub fn current_link(dir: &str) -> String {
    format!("{dir}/current")
}

/// Where `${source.current}` points: the application's folder in the current release.
pub fn current_path(dir: &str, subdir: Option<&str>) -> String {
    match subdir {
        Some(s) => format!("{}/{s}", current_link(dir)),
        None => current_link(dir),
    }
}

/// The resource id of a Service's release (one per Service: a new commit is an update
/// of it, so the old one is not "no longer declared").
pub fn id(dir: &str) -> String {
    format!("release:{dir}")
}

/// Characters a path handed to `systemd-run` may hold: no `$` or `%` it would expand, no
/// space it would split on.
pub fn is_plain_path(path: &str) -> bool {
    path.starts_with('/')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@'))
}

/// The commit a stored release resource (a Revision's resources, as JSON) was built from.
pub fn commit_of(resource: &serde_json::Value) -> Option<&str> {
    let spec = resource.get("spec")?;
    (spec.get("kind")?.as_str()? == "release")
        .then(|| spec.get("commit")?.as_str())
        .flatten()
}
