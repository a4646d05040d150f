//! Revisions: each applied spec of a Service or of a Host's own resources, with per host the
//! applies of it and their down plans, kept to `spec.revisionHistoryLimit` (default 10).
//!
//! History is linear in time: a reconcile that applied a spec adds its runs to the newest
//! Revision when that one has the same desired digest (a rollout reaching more hosts), and
//! otherwise writes a new Revision numbered one past the highest ever used (numbers are
//! never reused, like `kubectl rollout history`). Corrective applies (drift repairs) are
//! not history: undoing them would put the drift back.
//!
//! Pruning deletes the oldest Revisions; each one's finalizer then removes its backups from
//! the hosts (the Revision reconciler's `cleanup`).
//!
//! [`history`] is how the passes that apply changes write to it: ahead of each apply,
//! after it, and when settling one a crash interrupted.

pub mod history;

use std::sync::Arc;

use hostkit_api::kinds::{HostSpec, Object, RevisionHost, RevisionSpec};
use hostkit_api::meta::{ObjectMeta, ObjectRef, OwnerReference};
use hostkit_api::{ObjectMeta as Meta, wellknown};
use hostkit_engine::run::{self, Run};
use serde_json::Value;

use crate::context::decode;
use crate::{Action, Context, Error, Note, ObjectKey, Reconciler, Reconcilers, Result};

/// What a Revision records about its target.
pub struct Target<'a> {
    pub kind: &'static str,
    pub name: &'a str,
    pub uid: Option<&'a str>,
    pub generation: i64,
    pub spec: Value,
    pub digest: &'a str,
    /// Who changed the target's spec (`hostkit.dev/changed-by`).
    pub source: Option<String>,
    /// The revision a Rollback went back to, for a Rollback's own record.
    pub rolled_back_to: Option<u64>,
    /// The resources the spec puts on a host, without content
    /// ([`hostkit_engine::resource::Resource::without_content`]).
    pub resources: Vec<Value>,
}

/// Who wrote a target's current spec; for a GitSource, with the commit
/// (`gitsource/infra@main@sha1:abcdef1`), which is what an operator looks for in history.
pub fn changed_by(meta: &Meta) -> Option<String> {
    let by = meta.annotations.get(wellknown::CHANGED_BY)?;
    let from_git = meta
        .annotations
        .get(wellknown::SOURCE)
        .filter(|s| by.starts_with("gitsource/") && s.starts_with(&format!("{by}@")));
    Some(from_git.unwrap_or(by).clone())
}

/// `web-3`.
pub fn revision_name(target: &str, number: u64) -> String {
    format!("{target}-{number}")
}

/// A target's Revisions from the cache (slim: see [`Reconciler::slim`] for Revisions),
/// oldest first, leaving out those being deleted.
pub fn revisions_of(ctx: &dyn Context, kind: &str, name: &str) -> Vec<Arc<Object<RevisionSpec>>> {
    let mut revs: Vec<Arc<Object<RevisionSpec>>> = ctx
        .list::<RevisionSpec>()
        .into_iter()
        .filter(|r| {
            r.spec.target_ref.kind == kind
                && r.spec.target_ref.name == name
                && r.metadata.deletion_timestamp.is_none()
        })
        .collect();
    revs.sort_by_key(|r| r.spec.revision);
    revs
}

/// The same Revisions whole, from the store (one that was pruned meanwhile is left out).
pub async fn full_revisions(
    ctx: &dyn Context,
    slim: &[Arc<Object<RevisionSpec>>],
) -> Result<Vec<Object<RevisionSpec>>> {
    let mut full = Vec::with_capacity(slim.len());
    for r in slim {
        match ctx.fetch::<RevisionSpec>(&r.metadata.name).await {
            Ok(v) => full.push(v),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(full)
}

/// Adds `runs` (host, run) to the target's history and returns the revision number.
pub async fn record_runs(
    ctx: &dyn Context,
    target: &Target<'_>,
    runs: &[(String, Run)],
    highest: Option<u64>,
) -> Result<u64> {
    let revs = revisions_of(ctx, target.kind, target.name);
    let newest = revs.last();
    let mut number = match newest {
        Some(r) if r.spec.desired_digest.as_deref() == Some(target.digest) => {
            append_runs(ctx, &r.metadata.name, runs).await?;
            return Ok(r.spec.revision);
        }
        _ => next_number(&revs, highest),
    };
    for _ in 0..8 {
        match create(ctx, target, number, runs).await {
            Ok(()) => return Ok(number),
            Err(Error::AlreadyExists { .. }) => {
                // Written by an earlier reconcile whose status write was lost, or a number
                // in use: append if it is this spec, else take the next number.
                let name = revision_name(target.name, number);
                let existing = ctx.fetch::<RevisionSpec>(&name).await?;
                if existing.spec.desired_digest.as_deref() == Some(target.digest) {
                    append_runs(ctx, &name, runs).await?;
                    return Ok(number);
                }
                number += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Err(no_free_number(target))
}

/// Writes a Rollback's own Revision: always a new one, never merged into the newest.
pub async fn record_rollback(
    ctx: &dyn Context,
    target: &Target<'_>,
    highest: Option<u64>,
) -> Result<u64> {
    let mut number = next_number(&revisions_of(ctx, target.kind, target.name), highest);
    for _ in 0..8 {
        match create(ctx, target, number, &[]).await {
            Ok(()) => return Ok(number),
            Err(Error::AlreadyExists { .. }) => number += 1,
            Err(e) => return Err(e),
        }
    }
    Err(no_free_number(target))
}

/// One past the highest number in use or ever recorded in the target's status.
fn next_number(revs: &[Arc<Object<RevisionSpec>>], highest: Option<u64>) -> u64 {
    revs.iter()
        .map(|r| r.spec.revision)
        .chain(highest)
        .max()
        .unwrap_or(0)
        + 1
}

fn no_free_number(target: &Target<'_>) -> Error {
    Error::Retry(format!(
        "could not find a free revision number for {}/{}",
        target.kind, target.name
    ))
}

/// Groups runs by host, in the order given. A run already there (its write-ahead record,
/// or a retried write) is replaced: one run id, one entry.
fn add_runs(hosts: &mut Vec<RevisionHost>, runs: &[(String, Run)]) {
    for (host, run) in runs {
        let run = serde_json::to_value(run).expect("runs serialise");
        match hosts.iter_mut().find(|h| &h.host == host) {
            Some(h) => match h.runs.iter_mut().find(|r| r["id"] == run["id"]) {
                Some(r) => *r = run,
                None => h.runs.push(run),
            },
            None => hosts.push(RevisionHost {
                host: host.clone(),
                runs: vec![run],
            }),
        }
    }
}

async fn create(
    ctx: &dyn Context,
    target: &Target<'_>,
    number: u64,
    runs: &[(String, Run)],
) -> Result<()> {
    let mut hosts: Vec<RevisionHost> = Vec::new();
    add_runs(&mut hosts, runs);
    let mut meta = ObjectMeta::named(revision_name(target.name, number));
    meta.labels
        .insert(wellknown::TARGET_KIND.into(), target.kind.into());
    meta.labels
        .insert(wellknown::TARGET_NAME.into(), target.name.into());
    meta.owner_references.push(OwnerReference {
        kind: target.kind.into(),
        name: target.name.into(),
        uid: target.uid.map(String::from),
        controller: true,
    });
    let revision = Object {
        api_version: hostkit_api::API_VERSION.into(),
        kind: "Revision".into(),
        metadata: meta,
        spec: RevisionSpec {
            target_ref: ObjectRef {
                kind: target.kind.into(),
                name: target.name.into(),
                uid: target.uid.map(String::from),
            },
            revision: number,
            generation: Some(target.generation),
            desired_digest: Some(target.digest.into()),
            spec_snapshot: target.spec.clone(),
            hosts,
            resources: target.resources.clone(),
            release: release_of(&target.spec, &target.resources),
            rolled_back_to: target.rolled_back_to,
            source: target.source.clone(),
            created_at: Some(ctx.now()),
        },
        status: None,
    };
    let body = serde_json::to_value(&revision).expect("revision serialises");
    ctx.create(<RevisionSpec as hostkit_api::KindSpec>::INFO, body)
        .await
        .map(|_| ())
}

/// The source commit a spec's resources were built from, with the URL and ref.
fn release_of(spec: &Value, resources: &[Value]) -> Option<hostkit_api::kinds::RevisionRelease> {
    let commit = resources
        .iter()
        .find_map(hostkit_engine::release::commit_of)?;
    let source: hostkit_api::kinds::Source =
        serde_json::from_value(spec.get("source")?.clone()).ok()?;
    Some(hostkit_api::kinds::RevisionRelease {
        git: source.git.clone(),
        ref_: source.ref_label(),
        commit: commit.to_string(),
    })
}

async fn append_runs(ctx: &dyn Context, name: &str, runs: &[(String, Run)]) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    change_runs(ctx, name, |hosts| add_runs(hosts, runs)).await
}

/// Rewrites the runs of Revision `name` with `change` (compare-and-swap, retried).
pub(crate) async fn change_runs(
    ctx: &dyn Context,
    name: &str,
    change: impl Fn(&mut Vec<RevisionHost>) + Send + Sync,
) -> Result<()> {
    let kind = <RevisionSpec as hostkit_api::KindSpec>::INFO;
    let written = ctx
        .modify(kind, name, None, |v| {
            let Ok(mut rev) = decode::<RevisionSpec>(v.clone(), name) else {
                return false;
            };
            let before = rev.spec.hosts.clone();
            change(&mut rev.spec.hosts);
            if rev.spec.hosts == before {
                return false;
            }
            *v = serde_json::to_value(&rev).expect("revision serialises");
            true
        })
        .await;
    match written {
        Ok(_) => Ok(()),
        Err(Error::Conflict { .. }) => Err(Error::Retry(format!(
            "Revision/{name} kept changing while recording its runs"
        ))),
        Err(e) => Err(e),
    }
}

/// Deletes the oldest Revisions beyond `limit` (never the newest). Their finalizers remove
/// their backups from the hosts.
pub async fn prune(ctx: &dyn Context, kind: &str, name: &str, limit: u32) {
    let revs = revisions_of(ctx, kind, name);
    let keep = (limit as usize).max(1);
    if revs.len() <= keep {
        return;
    }
    for old in &revs[..revs.len() - keep] {
        delete(ctx, &old.metadata.name).await;
    }
}

/// Deletes every Revision of a deleted target, the newest last (its history goes with it;
/// each Revision's finalizer removes its backups).
pub async fn delete_all(ctx: &dyn Context, kind: &str, name: &str) {
    prune(ctx, kind, name, 0).await;
    if let Some(newest) = revisions_of(ctx, kind, name).last() {
        delete(ctx, &newest.metadata.name).await;
    }
}

/// Deletes one Revision (its finalizer then removes its backups).
pub(crate) async fn delete(ctx: &dyn Context, name: &str) {
    match ctx
        .delete(<RevisionSpec as hostkit_api::KindSpec>::INFO, name)
        .await
    {
        Ok(_) | Err(Error::NotFound { .. }) => tracing::info!(revision = %name, "pruned"),
        Err(e) => tracing::warn!(revision = %name, error = %e, "could not prune"),
    }
}

#[async_trait::async_trait]
impl Reconciler<RevisionSpec> for Reconcilers {
    /// Revisions are records: nothing to converge.
    async fn reconcile(&self, _revision: Arc<Object<RevisionSpec>>) -> Result<Action> {
        Ok(Action::AwaitChange)
    }

    /// A deleted Revision's backups leave its hosts. A host whose Host object is gone is
    /// skipped (with a warning event); an unreachable one is retried.
    async fn cleanup(&self, rev: Arc<Object<RevisionSpec>>) -> Result<()> {
        let mut notes = Vec::new();
        for h in &rev.spec.hosts {
            let ids: Vec<String> = h
                .runs
                .iter()
                .filter_map(|r| r["id"].as_str().map(String::from))
                .collect();
            if ids.is_empty() {
                continue;
            }
            let Some(host) = self.ctx.cached::<HostSpec>(&h.host) else {
                notes.push(Note::warning(
                    "HostGone",
                    format!(
                        "Host/{} no longer exists; its backups of this revision stay",
                        h.host
                    ),
                ));
                continue;
            };
            let t = self.hosts.transport(&h.host, &host.spec).await?;
            if let Err(e) = run::remove_backups(t.as_ref(), &ids).await {
                self.hosts.forget(&h.host);
                return Err(e.into());
            }
        }
        self.ctx
            .note(
                <RevisionSpec as hostkit_api::KindSpec>::INFO,
                rev.name(),
                &notes,
            )
            .await;
        Ok(())
    }

    /// What the controller caches of a Revision: whose it is, its number and digest, and
    /// its run ids (a pruned Revision's backups are found by them) and which runs are
    /// pending (a crash to settle). The spec snapshot, the resources and the down plans,
    /// most of its size, are read from the store when needed ([`full_revisions`]).
    fn slim(&self, rev: &mut Object<RevisionSpec>) {
        slim(rev);
    }

    fn dependents(
        &self,
        before: Option<&Object<RevisionSpec>>,
        after: Option<&Object<RevisionSpec>>,
    ) -> Vec<ObjectKey> {
        crate::dependents::of_revision(before, after)
    }
}

fn slim(rev: &mut Object<RevisionSpec>) {
    rev.spec.spec_snapshot = Value::Null;
    rev.spec.resources = Vec::new();
    for h in &mut rev.spec.hosts {
        for run in &mut h.runs {
            let id = run.get("id").cloned().unwrap_or(Value::Null);
            *run = match run.get("pending") {
                Some(Value::Bool(true)) => serde_json::json!({ "id": id, "pending": true }),
                _ => serde_json::json!({ "id": id }),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cached_revision_keeps_what_reconciles_decide_on_and_the_run_ids() {
        let v = json!({
            "apiVersion": "hostkit.dev/v1alpha1",
            "kind": "Revision",
            "metadata": {"name": "web-2"},
            "spec": {
                "targetRef": {"kind": "Service", "name": "web"},
                "revision": 2,
                "desiredDigest": "abc",
                "specSnapshot": {"files": [{"path": "/etc/a", "content": "x"}]},
                "hosts": [{"host": "h1", "runs": [
                    {"id": "web-g2-1", "ok": true, "changes": [{"id": "file:/etc/a"}], "down": {"steps": []}},
                    {"id": "web-g2-2", "ok": false, "pending": true, "changes": [], "down": {"steps": []}}
                ]}],
                "resources": [{"id": "file:/etc/a"}],
                "rolledBackTo": 1,
                "source": "user/admin"
            }
        });
        let mut rev: Object<RevisionSpec> = serde_json::from_value(v).unwrap();
        slim(&mut rev);
        assert_eq!(
            serde_json::to_value(&rev).unwrap(),
            json!({
                "apiVersion": "hostkit.dev/v1alpha1",
                "kind": "Revision",
                "metadata": {"name": "web-2"},
                "spec": {
                    "targetRef": {"kind": "Service", "name": "web"},
                    "revision": 2,
                    "desiredDigest": "abc",
                    "specSnapshot": null,
                    "hosts": [{"host": "h1", "runs": [{"id": "web-g2-1"}, {"id": "web-g2-2", "pending": true}]}],
                    "rolledBackTo": 1,
                    "source": "user/admin"
                }
            })
        );
        assert_eq!(rev.spec.hosts[0].runs[0]["id"], "web-g2-1");
    }

    #[test]
    fn a_git_change_names_its_commit_and_a_later_hand_edit_names_the_user() {
        let meta =
            |a: Value| -> Meta { serde_json::from_value(json!({"annotations": a})).unwrap() };
        let git = meta(json!({
            "hostkit.dev/changed-by": "gitsource/infra",
            "hostkit.dev/source": "gitsource/infra@main@sha1:abcdef1",
        }));
        assert_eq!(
            changed_by(&git).as_deref(),
            Some("gitsource/infra@main@sha1:abcdef1")
        );
        let edited = meta(json!({
            "hostkit.dev/changed-by": "user/admin",
            "hostkit.dev/source": "gitsource/infra@main@sha1:abcdef1",
        }));
        assert_eq!(changed_by(&edited).as_deref(), Some("user/admin"));
        assert_eq!(changed_by(&Meta::default()), None);
    }
}
