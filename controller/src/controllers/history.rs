//! Revisions: each applied spec of a Service, with per host the applies of it and their
//! down plans, kept to `spec.revisionHistoryLimit` (default 10).
//!
//! History is linear in time: a reconcile that applied a spec adds its runs to the newest
//! Revision when that one has the same desired digest (a rollout reaching more hosts), and
//! otherwise writes a new Revision numbered one past the highest ever used (numbers are
//! never reused, like `kubectl rollout history`). Corrective applies (drift repairs) are
//! not history: undoing them would put the drift back.
//!
//! Pruning deletes the oldest Revisions; each one's finalizer then removes its backups from
//! the hosts (see [`Controllers::cleanup_revision`]).

use hostkit_api::kinds::{RevisionHost, RevisionSpec};
use hostkit_api::meta::{ObjectMeta, OwnerReference};
use hostkit_reconcilers::history::Run;

use super::*;
use crate::error::Error;

/// What a Revision records about its target.
pub(super) struct Target<'a> {
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
}

/// Who wrote a target's current spec; for a GitSource, with the commit
/// (`gitsource/infra@main@sha1:abcdef1`), which is what an operator looks for in history.
pub(super) fn changed_by(object: &Value) -> Option<String> {
    let annotations = object.pointer("/metadata/annotations")?;
    let by = annotations.get(wellknown::CHANGED_BY)?.as_str()?;
    let from_git = annotations
        .get(wellknown::SOURCE)
        .and_then(Value::as_str)
        .filter(|s| by.starts_with("gitsource/") && s.starts_with(&format!("{by}@")));
    Some(from_git.unwrap_or(by).to_string())
}

/// What the controller caches of a Revision: whose it is, its number and digest, and its
/// run ids (a pruned Revision's backups are found by them). The spec snapshot and the down
/// plans, most of its size, are read from the store by the one reconciler that needs them,
/// the Rollback's ([`Controllers::full_revisions`]).
pub(super) fn slim_revision(v: &mut Value) {
    let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.remove("specSnapshot");
    for h in spec
        .get_mut("hosts")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        for run in h
            .get_mut("runs")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let id = run.get("id").cloned().unwrap_or(Value::Null);
            *run = serde_json::json!({ "id": id });
        }
    }
}

impl Controllers {
    /// A target's Revisions from the cache (slim: see [`slim_revision`]), oldest first,
    /// leaving out those being deleted.
    pub(super) fn revisions_of(&self, kind: &str, name: &str) -> Vec<Object<RevisionSpec>> {
        let mut revs: Vec<Object<RevisionSpec>> = self
            .caches
            .list_where("revisions", |r| {
                r.pointer("/spec/targetRef/kind").and_then(Value::as_str) == Some(kind)
                    && r.pointer("/spec/targetRef/name").and_then(Value::as_str) == Some(name)
                    && r.pointer("/metadata/deletionTimestamp")
                        .is_none_or(Value::is_null)
            })
            .into_iter()
            .filter_map(|r| serde_json::from_value::<Object<RevisionSpec>>(r).ok())
            .collect();
        revs.sort_by_key(|r| r.spec.revision);
        revs
    }

    /// The same Revisions whole, from the store (one that was pruned meanwhile is left out).
    pub(super) async fn full_revisions(
        &self,
        slim: &[Object<RevisionSpec>],
    ) -> Result<Vec<Object<RevisionSpec>>, Failure> {
        let mut full = Vec::with_capacity(slim.len());
        for r in slim {
            match self
                .objects
                .get(kind_of("revisions"), &r.metadata.name)
                .await
            {
                Ok(v) => full.push(typed(&v)?),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(Failure::Transient(e.to_string())),
            }
        }
        Ok(full)
    }

    /// Adds `runs` (host, run) to the target's history and returns the revision number.
    pub(super) async fn record_runs(
        &self,
        target: &Target<'_>,
        runs: &[(String, Run)],
        highest: Option<u64>,
    ) -> Result<u64, Failure> {
        let revs = self.revisions_of(target.kind, target.name);
        let newest = revs.last();
        let mut number = match newest {
            Some(r) if r.spec.desired_digest.as_deref() == Some(target.digest) => {
                self.append_runs(&r.metadata.name, runs).await?;
                return Ok(r.spec.revision);
            }
            _ => {
                revs.iter()
                    .map(|r| r.spec.revision)
                    .chain(highest)
                    .max()
                    .unwrap_or(0)
                    + 1
            }
        };
        for _ in 0..8 {
            match self.create_revision(target, number, runs).await {
                Ok(()) => return Ok(number),
                Err(Error::AlreadyExists { .. }) => {
                    // Written by an earlier reconcile whose status write was lost, or a
                    // number in use: append if it is this spec, else take the next number.
                    let name = revision_name(target.name, number);
                    let existing = self
                        .objects
                        .get(kind_of("revisions"), &name)
                        .await
                        .map_err(|e| Failure::Transient(e.to_string()))?;
                    if existing
                        .pointer("/spec/desiredDigest")
                        .and_then(Value::as_str)
                        == Some(target.digest)
                    {
                        self.append_runs(&name, runs).await?;
                        return Ok(number);
                    }
                    number += 1;
                }
                Err(e) => return Err(Failure::Transient(e.to_string())),
            }
        }
        Err(Failure::Transient(format!(
            "could not find a free revision number for {}/{}",
            target.kind, target.name
        )))
    }

    /// Writes a Rollback's own Revision: always a new one, never merged into the newest.
    pub(super) async fn record_rollback(
        &self,
        target: &Target<'_>,
        highest: Option<u64>,
    ) -> Result<u64, Failure> {
        let mut number = self
            .revisions_of(target.kind, target.name)
            .iter()
            .map(|r| r.spec.revision)
            .chain(highest)
            .max()
            .unwrap_or(0)
            + 1;
        for _ in 0..8 {
            match self.create_revision(target, number, &[]).await {
                Ok(()) => return Ok(number),
                Err(Error::AlreadyExists { .. }) => number += 1,
                Err(e) => return Err(Failure::Transient(e.to_string())),
            }
        }
        Err(Failure::Transient(format!(
            "could not find a free revision number for {}/{}",
            target.kind, target.name
        )))
    }

    async fn create_revision(
        &self,
        target: &Target<'_>,
        number: u64,
        runs: &[(String, Run)],
    ) -> Result<(), Error> {
        let mut hosts: Vec<RevisionHost> = Vec::new();
        for (host, run) in runs {
            let run = serde_json::to_value(run).expect("runs serialise");
            match hosts.iter_mut().find(|h| &h.host == host) {
                Some(h) => h.runs.push(run),
                None => hosts.push(RevisionHost {
                    host: host.clone(),
                    runs: vec![run],
                }),
            }
        }
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
                rolled_back_to: target.rolled_back_to,
                source: target.source.clone(),
                created_at: Some((self.clock)()),
            },
            status: None,
        };
        let body = serde_json::to_value(&revision).expect("revision serialises");
        self.objects
            .create(kind_of("revisions"), body, false)
            .await
            .map(|_| ())
    }

    async fn append_runs(&self, name: &str, runs: &[(String, Run)]) -> Result<(), Failure> {
        if runs.is_empty() {
            return Ok(());
        }
        let kind = kind_of("revisions");
        for _ in 0..8 {
            let current = self
                .objects
                .get(kind, name)
                .await
                .map_err(|e| Failure::Transient(e.to_string()))?;
            let mut rev: Object<RevisionSpec> = typed(&current)?;
            for (host, run) in runs {
                let run = serde_json::to_value(run).expect("runs serialise");
                match rev.spec.hosts.iter_mut().find(|h| &h.host == host) {
                    Some(h) => {
                        // The same run twice (a retried status write) is recorded once.
                        if !h.runs.iter().any(|r| r["id"] == run["id"]) {
                            h.runs.push(run);
                        }
                    }
                    None => rev.spec.hosts.push(RevisionHost {
                        host: host.clone(),
                        runs: vec![run],
                    }),
                }
            }
            let body = serde_json::to_value(&rev).expect("revision serialises");
            match self.objects.update(kind, name, body, false).await {
                Ok(_) => return Ok(()),
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(Failure::Transient(e.to_string())),
            }
        }
        Err(Failure::Transient(format!(
            "Revision/{name} kept changing while adding runs"
        )))
    }

    /// Deletes the oldest Revisions beyond `limit` (never the newest). Their finalizers
    /// remove their backups from the hosts.
    pub(super) async fn prune_revisions(&self, kind: &str, name: &str, limit: u32) {
        let revs = self.revisions_of(kind, name);
        let keep = (limit as usize).max(1);
        if revs.len() <= keep {
            return;
        }
        for old in &revs[..revs.len() - keep] {
            self.delete_revision(&old.metadata.name).await;
        }
    }

    /// Deletes one Revision (its finalizer then removes its backups).
    pub(super) async fn delete_revision(&self, name: &str) {
        match self
            .objects
            .delete(
                kind_of("revisions"),
                name,
                crate::objects::DeleteOptions::default(),
            )
            .await
        {
            Ok(_) | Err(Error::NotFound { .. }) => tracing::info!(revision = %name, "pruned"),
            Err(e) => tracing::warn!(revision = %name, error = %e, "could not prune"),
        }
    }

    /// A deleted Revision's backups leave its hosts. A host whose Host object is gone is
    /// skipped (with a warning event); an unreachable one is retried.
    pub(super) async fn cleanup_revision(&self, object: Value) -> Result<(), Failure> {
        let rev: Object<RevisionSpec> = typed(&object)?;
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
            let Some(host) = self.caches.get("hosts", &h.host) else {
                notes.push(Note {
                    warning: true,
                    reason: "HostGone",
                    message: format!(
                        "Host/{} no longer exists; its backups of this revision stay",
                        h.host
                    ),
                });
                continue;
            };
            let spec = typed::<HostSpec>(&host)?.spec;
            let t = self
                .pool
                .transport(&h.host, &spec)
                .await
                .map_err(|e| Failure::Transient(e.to_string()))?;
            if let Err(e) = hostkit_reconcilers::history::remove_backups(t.as_ref(), &ids).await {
                self.pool.forget(&h.host);
                return Err(Failure::Transient(e.to_string()));
            }
        }
        self.record(kind_of("revisions"), &object, &notes).await;
        Ok(())
    }
}

/// `web-3`.
pub(super) fn revision_name(target: &str, number: u64) -> String {
    format!("{target}-{number}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cached_revision_keeps_what_reconciles_decide_on_and_the_run_ids() {
        let mut v = json!({
            "metadata": {"name": "web-2"},
            "spec": {
                "targetRef": {"kind": "Service", "name": "web"},
                "revision": 2,
                "desiredDigest": "abc",
                "specSnapshot": {"files": [{"path": "/etc/a", "content": "x"}]},
                "hosts": [{"host": "h1", "runs": [
                    {"id": "web-g2-1", "ok": true, "changes": [{"id": "file:/etc/a"}], "down": {"steps": []}}
                ]}],
                "rolledBackTo": 1,
                "source": "user/admin"
            }
        });
        slim_revision(&mut v);
        assert_eq!(
            v,
            json!({
                "metadata": {"name": "web-2"},
                "spec": {
                    "targetRef": {"kind": "Service", "name": "web"},
                    "revision": 2,
                    "desiredDigest": "abc",
                    "hosts": [{"host": "h1", "runs": [{"id": "web-g2-1"}]}],
                    "rolledBackTo": 1,
                    "source": "user/admin"
                }
            })
        );
        let spec: RevisionSpec = serde_json::from_value(v["spec"].clone()).unwrap();
        assert_eq!(spec.hosts[0].runs[0]["id"], "web-g2-1");
    }

    #[test]
    fn a_git_change_names_its_commit_and_a_later_hand_edit_names_the_user() {
        let git = json!({"metadata": {"annotations": {
            "hostkit.dev/changed-by": "gitsource/infra",
            "hostkit.dev/source": "gitsource/infra@main@sha1:abcdef1",
        }}});
        assert_eq!(
            changed_by(&git).as_deref(),
            Some("gitsource/infra@main@sha1:abcdef1")
        );
        let edited = json!({"metadata": {"annotations": {
            "hostkit.dev/changed-by": "user/admin",
            "hostkit.dev/source": "gitsource/infra@main@sha1:abcdef1",
        }}});
        assert_eq!(changed_by(&edited).as_deref(), Some("user/admin"));
        assert_eq!(changed_by(&json!({"metadata": {}})), None);
    }
}
