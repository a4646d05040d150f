//! `spec.source` on the controller: its ref resolved to a commit at the start of every
//! pass (a moving branch's new commit is a new desired state, rolled out like a spec
//! change), and the commits the Service's kept Revisions need, which a host never prunes.

use chrono::{DateTime, Utc};
use hostkit_api::kinds::{ServiceSpec, SourceStatus};
use hostkit_engine::release::{self, resolve::Resolved};
use hostkit_engine::secrets::Secrets;

use crate::Context;
use crate::revision;

/// What a pass knows of the Service's source.
#[derive(Clone, Debug, Default)]
pub struct Resolution {
    /// The commit to deploy; `None` without a source, or when it could not be resolved
    /// and was never resolved before.
    pub resolved: Option<Resolved>,
    /// What `status.source` says after this pass.
    pub status: Option<SourceStatus>,
    /// Why the repository could not answer this time.
    pub error: Option<String>,
    /// Commits a kept Revision's resources name.
    pub protect: Vec<String>,
}

/// Resolves the source of `spec` (off the async threads). When the repository cannot be
/// asked, the commit resolved before for the same URL and ref stays the one deployed (the
/// status's, else the one a kept Revision of that source was built from: a rollback to a
/// tag works while the git server is down), and the status says why it was not asked.
pub async fn resolve(
    spec: &ServiceSpec,
    previous: Option<&SourceStatus>,
    recorded: Option<String>,
    secrets: &Secrets,
    now: DateTime<Utc>,
) -> Resolution {
    let Some(source) = spec.source.clone() else {
        return Resolution::default();
    };
    let label = source.ref_label();
    let secrets = secrets.clone();
    let git = source.git.clone();
    let asked =
        tokio::task::spawn_blocking(move || release::resolve::resolve_once(&source, &secrets))
            .await
            .map_err(|e| format!("the resolve task failed: {e}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
    match asked {
        Ok(resolved) => Resolution {
            status: Some(SourceStatus {
                git: git.clone(),
                ref_: label,
                commit: resolved.commit.clone(),
                resolved_at: Some(now),
                error: None,
            }),
            resolved: Some(resolved),
            error: None,
            protect: Vec::new(),
        },
        Err(e) => {
            let message = format!("cannot resolve {label} of {git}: {e}");
            let before = previous
                .filter(|p| p.git == git && p.ref_ == label && !p.commit.is_empty())
                .cloned()
                .or_else(|| {
                    recorded.map(|commit| SourceStatus {
                        git: git.clone(),
                        ref_: label.clone(),
                        commit,
                        resolved_at: None,
                        error: None,
                    })
                });
            Resolution {
                resolved: before.as_ref().map(|p| Resolved {
                    commit: p.commit.clone(),
                    fallback_ref: spec
                        .source
                        .as_ref()
                        .and_then(release::resolve::ref_name)
                        .unwrap_or_default(),
                }),
                status: before.map(|p| SourceStatus {
                    error: Some(message.clone()),
                    ..p
                }),
                error: Some(message),
                protect: Vec::new(),
            }
        }
    }
}

/// The commit the newest kept Revision of Service `name` with this same source (URL and
/// ref) was built from.
pub fn recorded(ctx: &dyn Context, name: &str, spec: &ServiceSpec) -> Option<String> {
    let source = spec.source.as_ref()?;
    let label = source.ref_label();
    revision::revisions_of(ctx, "Service", name)
        .iter()
        .rev()
        .filter_map(|r| r.spec.release.as_ref())
        .find(|r| r.git == source.git && r.ref_ == label)
        .map(|r| r.commit.clone())
}

/// The release commits the kept Revisions of Service `name` were built from.
pub fn needed(ctx: &dyn Context, name: &str) -> Vec<String> {
    let mut commits: Vec<String> = revision::revisions_of(ctx, "Service", name)
        .iter()
        .filter_map(|r| r.spec.release.as_ref().map(|r| r.commit.clone()))
        .collect();
    commits.sort();
    commits.dedup();
    commits
}

/// A Revision's spec as a rollback puts it back: a `branch` ref becomes the commit the
/// Revision was built from, or going back would build the branch's newest commit again.
/// A tag or commit ref is left as written.
pub fn pinned(mut spec: serde_json::Value, commit: Option<&str>) -> serde_json::Value {
    let Some(commit) = commit else {
        return spec;
    };
    if let Some(r) = spec.pointer_mut("/source/ref")
        && r.get("branch").is_some()
    {
        *r = serde_json::json!({ "commit": commit });
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rollback_pins_a_branch_to_the_revisions_commit() {
        let c = "0123456789abcdef0123456789abcdef01234567";
        let branch = json!({"source": {"git": "git://h/r", "ref": {"branch": "main"}}});
        assert_eq!(
            pinned(branch.clone(), Some(c))["source"]["ref"],
            json!({"commit": c})
        );
        let tag = json!({"source": {"git": "git://h/r", "ref": {"tag": "v1"}}});
        assert_eq!(pinned(tag.clone(), Some(c)), tag);
        assert_eq!(pinned(branch.clone(), None), branch);
    }
}
