//! The Rollback reconciler: runs the down plans of the target's revisions newer than
//! `toRevision`, host by host, then sets the target's spec back to that revision's and
//! writes a new Revision for the result (history only grows, as with `kubectl rollout
//! undo`).
//!
//! Crash safety: progress is recorded in `status.hosts[].runs` after every run undone, so a
//! controller killed mid-rollback resumes where it was (a run interrupted half-way is run
//! again: its file steps restore from sha-checked backups with temp + rename, so no file is
//! left half-written, and commands whose `down:` finished are skipped by their marker on the
//! host, see `hostkit_engine::down`). While it runs, the target carries
//! `hostkit.dev/rollback-in-progress` and plans without applying, so it cannot re-apply
//! what is being undone ([`target`]).

mod target;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hostkit_api::kinds::{
    Coverage, HostSpec, Object, RevisionAlias, RevisionSpec, RevisionTarget, RollbackHost,
    RollbackSpec, RollbackStatus, ServiceSpec, SkippedStep,
};
use hostkit_api::meta::{ConditionStatus, Observed};
use hostkit_api::{KindInfo, KindSpec, wellknown};
use hostkit_engine::run::{self, Run};

use crate::revision::{self, Target as RevisionRecord};
use crate::{Action, Context, Error, Note, Reconciler, Reconcilers, Result, policy_window};
use target::{Reset, TargetObject};

/// Whether the named Rollback exists and has not finished.
pub(crate) fn running(ctx: &dyn Context, name: &str) -> bool {
    ctx.cached::<RollbackSpec>(name)
        .is_some_and(|rb| !rb.status.as_ref().is_some_and(finished))
}

fn finished(status: &RollbackStatus) -> bool {
    status.conditions.iter().any(|c| {
        (c.type_ == "Complete" || c.type_ == "Failed") && c.status == ConditionStatus::True
    })
}

/// One Rollback being run: the object, its status so far, and its target.
struct Progress<'a> {
    r: &'a Reconcilers,
    rb: &'a Object<RollbackSpec>,
    status: RollbackStatus,
    at: Observed,
}

impl Progress<'_> {
    fn ctx(&self) -> &dyn Context {
        self.r.ctx.as_ref()
    }

    /// Sets a condition; true when its status changed.
    fn set(&mut self, type_: &str, ok: bool, reason: &str, message: impl Into<String>) -> bool {
        self.at
            .set(&mut self.status.conditions, type_, ok, reason, message)
    }

    async fn save(&self) {
        self.ctx().write_status(self.rb, &self.status).await;
    }

    async fn note(&self, note: Note) {
        self.ctx()
            .note(RollbackSpec::INFO, self.rb.name(), &[note])
            .await;
    }

    /// Ends the Rollback as Failed (terminal: a Rollback is not retried, a new one is made).
    async fn fail(&mut self, message: String) -> Error {
        self.set("Failed", true, "RollbackFailed", message.clone());
        self.set("Complete", false, "RollbackFailed", message.clone());
        self.status.completed_at = Some(self.at.now);
        let note = Note::warning("Failed", message.clone());
        self.ctx()
            .stop(self.rb, &self.status, Some(note), Error::Stalled(message))
            .await
    }

    fn host(&mut self, host: &str) -> &mut RollbackHost {
        host_entry(&mut self.status, host)
    }
}

#[async_trait::async_trait]
impl Reconciler<RollbackSpec> for Reconcilers {
    /// The steps of a Rollback, in order; each is skipped when already done.
    async fn reconcile(&self, rb: Arc<Object<RollbackSpec>>) -> Result<Action> {
        let status = rb.status.clone().unwrap_or_default();
        if finished(&status)
            || rb
                .metadata
                .annotations
                .contains_key(wellknown::ROLLBACK_REASON)
        {
            // Done, or a record written by the controller (autoRollback): nothing to run.
            return Ok(Action::AwaitChange);
        }
        let mut p = Progress {
            r: self,
            rb: &rb,
            status,
            at: Observed::new(self.ctx.now(), None),
        };
        let t = &rb.spec.target_ref;
        let Some(kind) = target::target_kind(&t.kind) else {
            let why = format!(
                "targetRef.kind {:?}: Services and Hosts can be rolled back",
                t.kind
            );
            return Err(p.fail(why).await);
        };
        let Some(target) = target::cached_target(self.ctx.as_ref(), kind, &t.name) else {
            return Err(p
                .fail(format!("{}/{} does not exist", t.kind, t.name))
                .await);
        };
        // Whole: the down plans and the spec snapshot are not in the cache.
        let slim = revision::revisions_of(self.ctx.as_ref(), kind.kind, &t.name);
        let revs = revision::full_revisions(self.ctx.as_ref(), &slim).await?;
        let (from, to) = match resolve_once(&p.status, &rb, kind, &revs) {
            Ok(ft) => ft,
            Err(why) => return Err(p.fail(why).await),
        };
        let Some(to_rev) = revs.iter().find(|r| r.spec.revision == to).cloned() else {
            let why = format!(
                "revision {to} of {}/{} no longer exists (pruned); `hkctl history {}/{}` lists those kept",
                t.kind,
                t.name,
                t.kind.to_lowercase(),
                t.name
            );
            return Err(p.fail(why).await);
        };
        if p.status.from_revision.is_none() {
            p.status.from_revision = Some(from);
            p.status.to_revision = Some(to);
            p.status.started_at = Some(p.at.now);
            let message = format!(
                "rolling {}/{} back from revision {from} to {to}",
                t.kind, t.name
            );
            p.set("Complete", false, "Progressing", message);
            p.save().await;
            let message = format!("{}/{}: revision {from} → {to}", t.kind, t.name);
            p.note(Note::normal("Started", message)).await;
        }

        let hosts = rollback_hosts(&revs, to, from);
        if !rb.spec.force {
            match self.window_wait(&mut p, kind, &target, &hosts).await {
                Ok(Some(wait)) => return Ok(Action::Requeue(wait)),
                Ok(None) => {}
                Err(why) => return Err(p.fail(why).await),
            }
        }
        p.set("WindowBlocked", false, "NotBlocked", "rollback may run");

        // Hold the target's own applies while hosts are being rolled back.
        target::hold(self.ctx.as_ref(), kind, &t.name, rb.name()).await?;
        // A Service reconcile re-checks the hold from the cache before each apply: make
        // sure the cache has it before touching a host.
        for _ in 0..250 {
            let held = if kind == ServiceSpec::INFO {
                self.current_hold::<ServiceSpec>(&t.name)
            } else {
                self.current_hold::<HostSpec>(&t.name)
            };
            if held.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        for host in &hosts {
            self.undo_host(&mut p, kind, &revs, (from, to), host)
                .await?;
        }
        self.complete(p, kind, &target, &revs, (from, to), &to_rev)
            .await?;
        Ok(Action::AwaitChange)
    }
}

impl Reconcilers {
    /// Windows hold a rollback too, unless it is forced (or the window allows manual
    /// overrides): how long to wait, or `None` when it may run now.
    async fn window_wait(
        &self,
        p: &mut Progress<'_>,
        kind: &'static KindInfo,
        target: &TargetObject,
        hosts: &[String],
    ) -> std::result::Result<Option<Duration>, String> {
        let windows = self.windows();
        let now = p.at.now;
        let mut wake: Option<DateTime<Utc>> = None;
        let mut blocked = Vec::new();
        for h in hosts {
            let host_labels = self
                .ctx
                .cached::<HostSpec>(h)
                .map(|o| o.metadata.labels.clone())
                .unwrap_or_default();
            // A Host's own resources fall under the windows that name no service.
            let none = BTreeMap::new();
            let service = if kind == HostSpec::INFO {
                ("", &none)
            } else {
                (p.rb.spec.target_ref.name.as_str(), &target.labels)
            };
            match policy_window::decide(&windows, service, (h, &host_labels), now) {
                Ok(d) if d.allowed || d.manual_override => {}
                Ok(d) => {
                    blocked.push(format!("{h}: {}", d.message));
                    if let Some(u) = d.until {
                        wake = Some(wake.map_or(u, |w| w.min(u)));
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        if blocked.is_empty() {
            return Ok(None);
        }
        if p.set("WindowBlocked", true, "WindowClosed", blocked.join("; ")) {
            p.save().await;
        }
        let after = wake
            .and_then(|w| (w - now).to_std().ok())
            .map(|d| d + Duration::from_millis(50))
            .unwrap_or(Duration::from_secs(60));
        Ok(Some(after))
    }

    /// Undoes, on `host`, every run of the revisions in (to, from], newest first; progress
    /// is saved after each run.
    async fn undo_host(
        &self,
        p: &mut Progress<'_>,
        kind: &'static KindInfo,
        revs: &[Object<RevisionSpec>],
        (from, to): (u64, u64),
        host: &str,
    ) -> Result<()> {
        let entry = p.host(host).clone();
        if entry.phase == "RolledBack" || entry.phase == "Skipped" {
            return Ok(());
        }
        let todo = runs_to_undo(revs, (from, to), host, &entry.runs)?;
        if todo.is_empty() && entry.runs.is_empty() {
            let e = p.host(host);
            e.phase = "Skipped".into();
            e.message = Some(format!(
                "nothing was applied here after revision {to}; the Service applies revision {to}'s spec"
            ));
            return Ok(());
        }
        let Some(host_o) = self.ctx.cached::<HostSpec>(host) else {
            let e = p.host(host);
            e.phase = "Skipped".into();
            e.message = Some(format!("Host/{host} no longer exists"));
            return Ok(());
        };
        p.host(host).phase = "Pending".into();
        let t = match self.hosts.transport(host, &host_o.spec).await {
            Ok(t) => t,
            Err(e) => {
                // Unreachable: retry with backoff; nothing was changed on this host.
                p.host(host).message = Some(e.to_string());
                p.save().await;
                return Err(Error::Retry(format!("{host}: {e}")));
            }
        };
        let _guard = self.hosts.lock(host).await;
        for (number, run) in &todo {
            let undone = match run::undo(t.as_ref(), &[run], &p.rb.spec.only).await {
                Ok(u) => u,
                Err(e) => {
                    self.hosts.forget(host);
                    p.save().await;
                    return Err(Error::Retry(format!("{host}: {e}")));
                }
            };
            let e = p.host(host);
            add_coverage(&mut e.coverage, &undone.coverage);
            if !undone.ok {
                e.phase = "Failed".into();
                e.message = undone.error.clone();
                let msg = format!("{host}: {}", undone.error.unwrap_or_default());
                let target = &p.rb.spec.target_ref.name;
                target::release(self.ctx.as_ref(), kind, target, p.rb.name()).await;
                return Err(p.fail(msg).await);
            }
            e.runs.push(run.id.clone());
            if !e.undone.contains(number) {
                e.undone.push(*number);
            }
            // Progress survives a crash: a resumed rollback skips this run.
            p.save().await;
        }
        let e = p.host(host);
        e.phase = "RolledBack".into();
        let message = format!(
            "revision(s) {} undone",
            e.undone
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        e.message = Some(message.clone());
        p.save().await;
        p.note(Note::normal("HostRolledBack", format!("{host}: {message}")))
            .await;
        Ok(())
    }

    /// Sets the target back to the revision (or holds the restored ids, with `only`),
    /// records the result as a new Revision, and marks the Rollback Complete.
    async fn complete(
        &self,
        mut p: Progress<'_>,
        kind: &'static KindInfo,
        target: &TargetObject,
        revs: &[Object<RevisionSpec>],
        (from, to): (u64, u64),
        to_rev: &Object<RevisionSpec>,
    ) -> Result<()> {
        let t = &p.rb.spec.target_ref;
        let actor = format!("rollback/{}", p.rb.name());
        let snapshot = if kind == ServiceSpec::INFO {
            crate::service::source::pinned(
                to_rev.spec.spec_snapshot.clone(),
                to_rev.spec.release.as_ref().map(|r| r.commit.as_str()),
            )
        } else {
            to_rev.spec.spec_snapshot.clone()
        };
        let only = p.rb.spec.only.clone();
        let reset = Reset {
            rollback: p.rb.name(),
            to,
            spec: only.is_empty().then(|| snapshot.clone()),
            only: &only,
            generation_now: target.generation,
            actor: actor.clone(),
        };
        let new_generation = target::reset(self.ctx.as_ref(), kind, &t.name, &reset).await?;
        let new_revision = match p.status.new_revision {
            Some(n) => n,
            None => {
                let digest = if only.is_empty() {
                    to_rev.spec.desired_digest.clone().unwrap_or_default()
                } else {
                    revs.iter()
                        .find(|r| r.spec.revision == from)
                        .and_then(|r| r.spec.desired_digest.clone())
                        .unwrap_or_default()
                };
                let record = RevisionRecord {
                    kind: kind.kind,
                    name: &t.name,
                    uid: target.uid.as_deref(),
                    generation: new_generation,
                    spec: if only.is_empty() {
                        snapshot
                    } else {
                        target.spec.clone()
                    },
                    digest: &digest,
                    source: Some(actor.clone()),
                    rolled_back_to: Some(to),
                    // What the hosts hold once the spec is back: that revision's resources.
                    resources: if only.is_empty() {
                        to_rev.spec.resources.clone()
                    } else {
                        revs.iter()
                            .find(|r| r.spec.revision == from)
                            .map(|r| r.spec.resources.clone())
                            .unwrap_or_default()
                    },
                };
                let n = self.rollback_revision(&record, target).await?;
                p.status.new_revision = Some(n);
                n
            }
        };
        p.status.completed_at = Some(self.ctx.now());
        let summary = summarize(&p.status);
        let message = format!(
            "{}/{} rolled back from revision {from} to {to} (recorded as revision {new_revision}); {summary}",
            t.kind, t.name
        );
        p.set("Complete", true, "RolledBack", message);
        p.set("Failed", false, "RolledBack", "every host rolled back");
        p.save().await;
        let message = format!("{}/{}: revision {from} → {to}; {summary}", t.kind, t.name);
        p.note(Note::normal("Complete", message)).await;
        Ok(())
    }

    /// The Rollback's own Revision (a resumed rollback may have written it already).
    async fn rollback_revision(
        &self,
        record: &RevisionRecord<'_>,
        target: &TargetObject,
    ) -> Result<u64> {
        let ctx = self.ctx.as_ref();
        if let Some(r) = revision::revisions_of(ctx, record.kind, record.name)
            .into_iter()
            .find(|r| {
                r.spec.source == record.source && r.spec.rolled_back_to == record.rolled_back_to
            })
        {
            return Ok(r.spec.revision);
        }
        let highest =
            target::cached_target(ctx, target.kind, record.name).and_then(|t| t.current_revision);
        // A Rollback's revision is never merged into the one before it.
        revision::record_rollback(ctx, record, highest).await
    }
}

/// The revisions to roll between, fixed in status the first time they are resolved.
fn resolve_once(
    status: &RollbackStatus,
    rb: &Object<RollbackSpec>,
    kind: &KindInfo,
    revs: &[Object<RevisionSpec>],
) -> std::result::Result<(u64, u64), String> {
    let t = &rb.spec.target_ref;
    let from = match (status.from_revision, revs.last()) {
        (Some(f), _) => f,
        (None, Some(r)) => r.spec.revision,
        (None, None) => {
            return Err(format!(
                "{}/{} has no revisions yet: nothing was applied to roll back",
                kind.kind, t.name
            ));
        }
    };
    let to = match status.to_revision {
        Some(to) => to,
        None => resolve(rb.spec.to_revision.as_ref(), from, revs)?,
    };
    Ok((from, to))
}

/// `previous` is the revision before `from`; a number must be older than `from`.
fn resolve(
    to: Option<&RevisionTarget>,
    from: u64,
    revs: &[Object<RevisionSpec>],
) -> std::result::Result<u64, String> {
    match to.unwrap_or(&RevisionTarget::Named(RevisionAlias::Previous)) {
        RevisionTarget::Named(RevisionAlias::Previous) => revs
            .iter()
            .rev()
            .map(|r| r.spec.revision)
            .find(|n| *n < from)
            .ok_or_else(|| {
                format!("revision {from} is the oldest kept: there is no previous revision")
            }),
        RevisionTarget::Number(n) if *n >= from => Err(format!(
            "toRevision {n} is not older than the current revision {from}"
        )),
        RevisionTarget::Number(n) => Ok(*n),
    }
}

/// Hosts with anything recorded between the two revisions.
fn rollback_hosts(revs: &[Object<RevisionSpec>], to: u64, from: u64) -> Vec<String> {
    let mut hosts: Vec<String> = revs
        .iter()
        .filter(|r| r.spec.revision > to && r.spec.revision <= from)
        .flat_map(|r| r.spec.hosts.iter().map(|h| h.host.clone()))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Runs to undo on `host`: newest revision first, and within one its newest run first,
/// leaving out those already undone.
fn runs_to_undo(
    revs: &[Object<RevisionSpec>],
    (from, to): (u64, u64),
    host: &str,
    done: &[String],
) -> Result<Vec<(u64, Run)>> {
    let mut todo = Vec::new();
    for r in revs
        .iter()
        .rev()
        .filter(|r| r.spec.revision > to && r.spec.revision <= from)
    {
        let Some(hr) = r.spec.hosts.iter().find(|x| x.host == host) else {
            continue;
        };
        for run in hr.runs.iter().rev() {
            let run: Run = serde_json::from_value(run.clone()).map_err(|e| {
                Error::Stalled(format!(
                    "Revision {}: a run does not decode: {e}",
                    r.metadata.name
                ))
            })?;
            if run.pending && !done.contains(&run.id) {
                // Its down plan is a guess until the host's journal settles it.
                return Err(Error::Retry(format!(
                    "Revision {}: the apply {} on {host} was interrupted and is not settled yet (the target's next reconcile settles it)",
                    r.metadata.name, run.id
                )));
            }
            if !done.contains(&run.id) {
                todo.push((r.spec.revision, run));
            }
        }
    }
    Ok(todo)
}

fn host_entry<'a>(status: &'a mut RollbackStatus, host: &str) -> &'a mut RollbackHost {
    if let Some(i) = status.hosts.iter().position(|h| h.host == host) {
        return &mut status.hosts[i];
    }
    status.hosts.push(RollbackHost {
        host: host.into(),
        phase: "Pending".into(),
        ..Default::default()
    });
    status.hosts.last_mut().expect("just pushed")
}

fn add_coverage(into: &mut Coverage, c: &hostkit_engine::down::Coverage) {
    into.reversible += c.reversible as u32;
    into.noop += c.noop as u32;
    for (id, reason) in &c.skipped {
        into.skipped.push(SkippedStep {
            id: id.clone(),
            reason: reason.clone(),
        });
    }
}

/// `2 host(s): 7 reversible, 1 noop, 1 skipped`.
fn summarize(status: &RollbackStatus) -> String {
    let (mut r, mut n, mut s) = (0, 0, 0);
    for h in &status.hosts {
        r += h.coverage.reversible;
        n += h.coverage.noop;
        s += h.coverage.skipped.len();
    }
    format!(
        "{} host(s): {r} step(s) reversed, {n} noop, {s} skipped",
        status.hosts.len()
    )
}

/// Records that `rollout.autoRollback` undid a failed apply on `host`: a Rollback object
/// that is a record from the start (it is never run).
pub(crate) async fn record_auto_rollback(
    ctx: &dyn Context,
    service: &Object<ServiceSpec>,
    host: &str,
    message: &str,
    coverage: &hostkit_engine::down::Coverage,
) {
    record_rollback_done(ctx, service, host, "AutoRollback", message, coverage).await
}

/// A Rollback object for a rollback the Service pass already carried out on `host` (a
/// failed apply undone, `AutoRollback`; an unhealthy wave taken back, `Unhealthy`; an
/// aborted rollout, `Aborted`), so history and `hkctl get rollbacks` show it.
pub(crate) async fn record_rollback_done(
    ctx: &dyn Context,
    service: &Object<ServiceSpec>,
    host: &str,
    reason: &str,
    message: &str,
    coverage: &hostkit_engine::down::Coverage,
) {
    let now = ctx.now();
    let tag = match reason {
        "AutoRollback" => "auto".to_string(),
        other => other.to_lowercase(),
    };
    let name = format!(
        "{}-{tag}-g{}-{}",
        service.name(),
        service.metadata.generation.unwrap_or(1),
        host
    );
    let mut rb = Object::new(
        name.clone(),
        RollbackSpec {
            target_ref: hostkit_api::kinds::TargetRef {
                kind: "Service".into(),
                name: service.name().to_string(),
            },
            to_revision: Some(RevisionTarget::Named(RevisionAlias::Previous)),
            only: Vec::new(),
            force: true,
            reason: Some(format!("{reason}: {message}")),
        },
    );
    rb.metadata
        .annotations
        .insert(wellknown::ROLLBACK_REASON.into(), reason.into());
    let body = serde_json::to_value(&rb).expect("rollback serialises");
    let created = match ctx.create(RollbackSpec::INFO, body).await {
        Ok(v) => v,
        Err(Error::AlreadyExists { .. }) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not record the automatic rollback");
            return;
        }
    };
    let Ok(created) = crate::context::decode::<RollbackSpec>(created, &name) else {
        return;
    };
    let mut status = RollbackStatus {
        started_at: Some(now),
        completed_at: Some(now),
        ..Default::default()
    };
    let e = host_entry(&mut status, host);
    e.phase = "RolledBack".into();
    add_coverage(&mut e.coverage, coverage);
    e.message = Some(message.to_string());
    let at = Observed::new(now, None);
    at.set(
        &mut status.conditions,
        "Complete",
        true,
        reason,
        format!("{host}: {message}"),
    );
    at.set(
        &mut status.conditions,
        "Failed",
        false,
        reason,
        "the down plan ran",
    );
    ctx.write_status(&created, &status).await;
}
