//! The write-ahead history of a target (a Service, or a Host's own resources), as the
//! passes that change hosts use it.
//!
//! Every apply that history keeps is recorded twice: [`History::begin`] stores it as a
//! pending run, with a down plan that assumes every change runs, before the first change
//! is sent; [`History::complete`] replaces it with what happened. A controller that dies
//! in between leaves the pending run, and the next pass over that host settles it from
//! the host's journal ([`settle_on`]): adopted as it happened, or forgotten when it never
//! reached the host. So history always describes the host, and no backup is left that no
//! Revision names.
//!
//! [`History::applied`] answers "what may be on this host": the resources that the
//! Revisions recorded, which is what deleting a target, or a spec that drops some
//! resources, removes.

use std::collections::BTreeMap;

use hostkit_api::kinds::{Object, RevisionSpec};
use hostkit_engine::resource::Resource;
use hostkit_engine::run::{self, Run};
use hostkit_engine::transport::Transport;
use serde_json::Value;

use super::{Target, change_runs, full_revisions, record_runs, revision_name, revisions_of};
use crate::{Context, Error, Note, Result};

/// A target's history, as passes that apply changes write it.
#[async_trait::async_trait]
pub trait History: Send + Sync {
    /// Records `run` on `host` as pending, before anything of it is applied, in the
    /// Revision of `digest` (created with `resources` when new); returns its number. An
    /// error means the apply must not start.
    async fn begin(
        &self,
        host: &str,
        run: &Run,
        digest: &str,
        resources: &[Resource],
    ) -> Result<u64>;
    /// Replaces the run recorded in Revision `number` with its outcome.
    async fn complete(&self, host: &str, run: &Run, number: u64) -> Result<()>;
    /// Removes a run that left nothing on the host (it never reached it, or it was undone
    /// at once); a Revision left with no run at all goes too.
    async fn forget(&self, host: &str, run_id: &str, number: u64) -> Result<()>;
    /// The runs on `host` still pending, with their Revision numbers (read from the store).
    async fn pending(&self, host: &str) -> Result<Vec<(u64, Run)>>;
    /// What the Revisions say may be on `host`, given the digest the host last converged
    /// to: that revision's resources, and those of every newer revision that ran on the
    /// host since (a part-way apply). `None` when history cannot say (nothing recorded, or
    /// a Rollback since, whose down plans already took the host back).
    async fn applied(&self, host: &str, digest: Option<&str>) -> Result<Option<Vec<Resource>>>;
    /// The finished runs on `host` in the Revision of `digest`, oldest first: what a
    /// rollout that changed the host would undo.
    async fn runs_of(&self, host: &str, digest: &str) -> Result<Vec<Run>>;
}

/// Settles the pending runs on `host` (the caller holds its apply lock): each is replaced
/// by what the journal shows, or forgotten when it never reached the host. Returns what to
/// tell the operator.
pub async fn settle_on(history: &dyn History, host: &str, t: &dyn Transport) -> Result<Vec<Note>> {
    let mut notes = Vec::new();
    for (number, pending) in history.pending(host).await? {
        match run::settle(t, &pending).await? {
            Some(run) => {
                let ran = run
                    .changes
                    .iter()
                    .filter(|c| c.status != hostkit_engine::outcome::Status::NotRun)
                    .count();
                history.complete(host, &run, number).await?;
                notes.push(Note::warning(
                    "ApplySettled",
                    format!(
                        "{host}: the apply {} was interrupted (the controller stopped); its journal on the host shows {ran} of {} change(s) begun, recorded in revision {number}",
                        run.id,
                        run.changes.len()
                    ),
                ));
            }
            None => {
                history.forget(host, &pending.id, number).await?;
                notes.push(Note::normal(
                    "ApplySettled",
                    format!(
                        "{host}: the apply {} was interrupted before it reached the host; nothing changed there",
                        pending.id
                    ),
                ));
            }
        }
    }
    Ok(notes)
}

/// [`History`] over the Revisions in the store.
pub struct Revisions<'a> {
    pub ctx: &'a dyn Context,
    pub kind: &'static str,
    pub name: &'a str,
    pub uid: Option<&'a str>,
    pub generation: i64,
    pub spec: Value,
    pub source: Option<String>,
    /// The highest revision number the target's status ever reported.
    pub highest: Option<u64>,
}

impl Revisions<'_> {
    async fn full(&self) -> Result<Vec<Object<RevisionSpec>>> {
        let slim = revisions_of(self.ctx, self.kind, self.name);
        full_revisions(self.ctx, &slim).await
    }
}

#[async_trait::async_trait]
impl History for Revisions<'_> {
    async fn begin(
        &self,
        host: &str,
        run: &Run,
        digest: &str,
        resources: &[Resource],
    ) -> Result<u64> {
        let target = Target {
            kind: self.kind,
            name: self.name,
            uid: self.uid,
            generation: self.generation,
            spec: self.spec.clone(),
            digest,
            source: self.source.clone(),
            rolled_back_to: None,
            resources: resources
                .iter()
                .map(|r| serde_json::to_value(r.without_content()).expect("resources serialise"))
                .collect(),
        };
        record_runs(
            self.ctx,
            &target,
            &[(host.to_string(), run.clone())],
            self.highest,
        )
        .await
    }

    async fn complete(&self, host: &str, run: &Run, number: u64) -> Result<()> {
        let name = revision_name(self.name, number);
        let value = serde_json::to_value(run).expect("runs serialise");
        let host = host.to_string();
        change_runs(self.ctx, &name, move |hosts| {
            if let Some(h) = hosts.iter_mut().find(|h| h.host == host) {
                match h.runs.iter_mut().find(|r| r["id"] == value["id"]) {
                    Some(r) => *r = value.clone(),
                    None => h.runs.push(value.clone()),
                }
            } else {
                hosts.push(hostkit_api::kinds::RevisionHost {
                    host: host.clone(),
                    runs: vec![value.clone()],
                });
            }
        })
        .await
    }

    async fn forget(&self, host: &str, run_id: &str, number: u64) -> Result<()> {
        let name = revision_name(self.name, number);
        let (host, id) = (host.to_string(), run_id.to_string());
        match change_runs(self.ctx, &name, move |hosts| {
            for h in hosts.iter_mut().filter(|h| h.host == host) {
                h.runs.retain(|r| r["id"] != id.as_str());
            }
            hosts.retain(|h| !h.runs.is_empty());
        })
        .await
        {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        // A Revision that no apply reached is no history: it goes.
        match self.ctx.fetch::<RevisionSpec>(&name).await {
            Ok(rev) if rev.spec.hosts.is_empty() && rev.spec.rolled_back_to.is_none() => {
                super::delete(self.ctx, &name).await;
            }
            Ok(_) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    async fn pending(&self, host: &str) -> Result<Vec<(u64, Run)>> {
        let slim: Vec<_> = revisions_of(self.ctx, self.kind, self.name)
            .into_iter()
            .filter(|r| {
                r.spec.hosts.iter().any(|h| {
                    h.host == host && h.runs.iter().any(|run| run["pending"] == Value::Bool(true))
                })
            })
            .collect();
        let mut out = Vec::new();
        for rev in full_revisions(self.ctx, &slim).await? {
            for h in rev.spec.hosts.iter().filter(|h| h.host == host) {
                for v in h.runs.iter().filter(|r| r["pending"] == Value::Bool(true)) {
                    let run: Run = serde_json::from_value(v.clone()).map_err(|e| {
                        Error::Stalled(format!(
                            "Revision {}: a run does not decode: {e}",
                            rev.metadata.name
                        ))
                    })?;
                    out.push((rev.spec.revision, run));
                }
            }
        }
        Ok(out)
    }

    async fn applied(&self, host: &str, digest: Option<&str>) -> Result<Option<Vec<Resource>>> {
        let revs = self.full().await?;
        Ok(applied_resources(&revs, host, digest))
    }

    async fn runs_of(&self, host: &str, digest: &str) -> Result<Vec<Run>> {
        let slim: Vec<_> = revisions_of(self.ctx, self.kind, self.name)
            .into_iter()
            .filter(|r| r.spec.desired_digest.as_deref() == Some(digest))
            .collect();
        let mut out = Vec::new();
        for rev in full_revisions(self.ctx, &slim).await? {
            for h in rev.spec.hosts.iter().filter(|h| h.host == host) {
                for v in h.runs.iter().filter(|r| r["pending"] != Value::Bool(true)) {
                    let run: Run = serde_json::from_value(v.clone()).map_err(|e| {
                        Error::Stalled(format!(
                            "Revision {}: a run does not decode: {e}",
                            rev.metadata.name
                        ))
                    })?;
                    out.push(run);
                }
            }
        }
        Ok(out)
    }
}

/// See [`History::applied`]; `revs` oldest first.
pub fn applied_resources(
    revs: &[Object<RevisionSpec>],
    host: &str,
    digest: Option<&str>,
) -> Option<Vec<Resource>> {
    let digest = digest?;
    let base = revs.iter().rposition(|r| {
        r.spec.desired_digest.as_deref() == Some(digest) && !r.spec.resources.is_empty()
    })?;
    if revs[base + 1..]
        .iter()
        .any(|r| r.spec.rolled_back_to.is_some())
    {
        return None;
    }
    let ran_here = |r: &Object<RevisionSpec>| {
        r.spec
            .hosts
            .iter()
            .any(|h| h.host == host && !h.runs.is_empty())
    };
    let mut by_id: BTreeMap<String, Resource> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for r in std::iter::once(&revs[base]).chain(revs[base + 1..].iter().filter(|r| ran_here(r))) {
        for v in &r.spec.resources {
            let Ok(res) = serde_json::from_value::<Resource>(v.clone()) else {
                // A record this version cannot read: say nothing rather than half.
                return None;
            };
            if !by_id.contains_key(&res.id) {
                order.push(res.id.clone());
            }
            by_id.insert(res.id.clone(), res);
        }
    }
    Some(
        order
            .into_iter()
            .filter_map(|id| by_id.remove(&id))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rev(
        n: u64,
        digest: &str,
        files: &[&str],
        host_ran: bool,
        rolled_back: bool,
    ) -> Object<RevisionSpec> {
        let resources: Vec<Value> = files
            .iter()
            .map(|p| {
                json!({"id": format!("file:{p}"), "owner": "web", "spec": {
                    "kind": "file", "path": p, "content": {"text": ""},
                    "owner": "root", "group": "root", "mode": 420, "role": "plain"}})
            })
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "hostkit.dev/v1alpha1",
            "kind": "Revision",
            "metadata": {"name": format!("web-{n}")},
            "spec": {
                "targetRef": {"kind": "Service", "name": "web"},
                "revision": n,
                "desiredDigest": digest,
                "resources": resources,
                "hosts": if host_ran { json!([{"host": "h1", "runs": [{"id": format!("web-g{n}-1")}]}]) } else { json!([]) },
                "rolledBackTo": if rolled_back { json!(1) } else { Value::Null },
            }
        }))
        .unwrap()
    }

    fn ids(r: Option<Vec<Resource>>) -> Option<Vec<String>> {
        r.map(|v| v.into_iter().map(|r| r.id).collect())
    }

    #[test]
    fn what_may_be_on_a_host_is_its_converged_revision_and_what_ran_there_since() {
        let revs = vec![
            rev(1, "d1", &["/etc/a"], true, false),
            rev(2, "d2", &["/etc/a", "/etc/b"], true, false),
            // Reached only another host: nothing of it is here.
            rev(3, "d3", &["/etc/c"], false, false),
            // Ran here part way: its files may be here.
            rev(4, "d4", &["/etc/d"], true, false),
        ];
        assert_eq!(
            ids(applied_resources(&revs, "h1", Some("d2"))),
            Some(vec![
                "file:/etc/a".into(),
                "file:/etc/b".into(),
                "file:/etc/d".into()
            ])
        );
        assert_eq!(ids(applied_resources(&revs, "h1", None)), None);
        assert_eq!(ids(applied_resources(&revs, "h1", Some("gone"))), None);
        // A Rollback since took the host back by its down plans: history does not guess.
        let mut revs = revs;
        revs.push(rev(5, "d1", &["/etc/a"], false, true));
        assert_eq!(ids(applied_resources(&revs, "h1", Some("d2"))), None);
        assert_eq!(
            ids(applied_resources(&revs, "h1", Some("d1"))),
            Some(vec!["file:/etc/a".into()])
        );
    }
}
