//! The Rollback reconciler: runs the down plans of the target's revisions newer than
//! `toRevision`, host by host, then sets the target's spec back to that revision's and
//! writes a new Revision for the result (history only grows, as with `kubectl rollout
//! undo`).
//!
//! Crash safety: progress is recorded in `status.hosts[].runs` after every run undone, so a
//! controller killed mid-rollback resumes where it was (a run interrupted half-way is run
//! again: its file steps restore from sha-checked backups with temp + rename, so no file is
//! left half-written, and commands whose `down:` finished are skipped by their marker on the
//! host, see `apply::run_down`). While it runs, the Service carries `hostkit.dev/rollback-in-progress` and
//! plans without applying, so it cannot re-apply what is being undone.

use chrono::Utc;
use hostkit_api::kinds::{
    Coverage, RevisionAlias, RevisionSpec, RevisionTarget, RollbackHost, RollbackSpec,
    RollbackStatus, SkippedStep,
};
use hostkit_api::meta::{Condition, ConditionStatus, set_condition};
use hostkit_reconcilers::history::{self, Run};

use super::history::Target;
use super::*;
use crate::error::Error;

/// The steps of a Rollback, in order; each is skipped when already done.
impl Controllers {
    pub(super) async fn reconcile_rollback(&self, v: Value) -> Result<Action, Failure> {
        let rb: Object<RollbackSpec> = typed(&v)?;
        let name = rb.metadata.name.clone();
        let mut status = rb.status.clone().unwrap_or_default();
        if finished(&status)
            || rb
                .metadata
                .annotations
                .contains_key(wellknown::ROLLBACK_REASON)
        {
            // Done, or a record written by the controller (autoRollback): nothing to run.
            return Ok(Action::AwaitChange);
        }
        let now = (self.clock)();
        let target = &rb.spec.target_ref;
        let plural = match target.kind.as_str() {
            "Service" => "services",
            "Host" => "hosts",
            other => {
                return self
                    .fail(
                        &v,
                        status,
                        format!("targetRef.kind {other:?}: Services and Hosts can be rolled back"),
                    )
                    .await;
            }
        };
        let tk = target.kind.as_str();
        let Some(svc_v) = self.caches.get(plural, &target.name) else {
            return self
                .fail(&v, status, format!("{tk}/{} does not exist", target.name))
                .await;
        };
        let target_uid = svc_v
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(String::from);
        let target_generation = svc_v
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        // Whole: the down plans and the spec snapshot are not in the cache.
        let revs = self
            .full_revisions(&self.revisions_of(tk, &target.name))
            .await?;

        // Resolve the revisions once; they are fixed in status from then on.
        let from =
            match status.from_revision {
                Some(f) => f,
                None => match revs.last() {
                    Some(r) => r.spec.revision,
                    None => {
                        return self
                        .fail(&v, status, format!(
                            "{tk}/{} has no revisions yet: nothing was applied to roll back",
                            target.name
                        ))
                        .await;
                    }
                },
            };
        let to = match status.to_revision {
            Some(t) => t,
            None => match resolve(rb.spec.to_revision.as_ref(), from, &revs) {
                Ok(t) => t,
                Err(why) => return self.fail(&v, status, why).await,
            },
        };
        let Some(to_rev) = revs.iter().find(|r| r.spec.revision == to).cloned() else {
            return self
                .fail(&v, status, format!(
                    "revision {to} of {tk}/{} no longer exists (pruned); `hkctl history {}/{}` lists those kept",
                    target.name, tk.to_lowercase(), target.name
                ))
                .await;
        };
        if status.from_revision.is_none() {
            status.from_revision = Some(from);
            status.to_revision = Some(to);
            status.started_at = Some(now);
            cond(
                &mut status,
                "Complete",
                false,
                "Progressing",
                format!(
                    "rolling {tk}/{} back from revision {from} to {to}",
                    target.name
                ),
                now,
            );
            self.write_rollback_status(&v, &status).await;
            self.record(
                kind_of("rollbacks"),
                &v,
                &[Note {
                    warning: false,
                    reason: "Started",
                    message: format!("{tk}/{}: revision {from} → {to}", target.name),
                }],
            )
            .await;
        }

        // Windows hold a rollback too, unless it is forced (or the window allows manual
        // overrides).
        let hosts = self.rollback_hosts(&revs, to, from);
        if !rb.spec.force {
            let windows = self.windows();
            let svc_labels = labels(&svc_v);
            let mut wake: Option<chrono::DateTime<Utc>> = None;
            let mut blocked = Vec::new();
            for h in &hosts {
                let host_labels = self
                    .caches
                    .get("hosts", h)
                    .map(|v| labels(&v))
                    .unwrap_or_default();
                // A Host's own resources fall under the windows that name no service.
                let none = BTreeMap::new();
                let service = if tk == "Host" {
                    ("", &none)
                } else {
                    (target.name.as_str(), &svc_labels)
                };
                match windows::decide(&windows, service, (h, &host_labels), now) {
                    Ok(d) if d.allowed || d.manual_override => {}
                    Ok(d) => {
                        blocked.push(format!("{h}: {}", d.message));
                        if let Some(u) = d.until {
                            wake = Some(wake.map_or(u, |w| w.min(u)));
                        }
                    }
                    Err(e) => return self.fail(&v, status, e.to_string()).await,
                }
            }
            if !blocked.is_empty() {
                let changed = cond(
                    &mut status,
                    "WindowBlocked",
                    true,
                    "WindowClosed",
                    blocked.join("; "),
                    now,
                );
                if changed {
                    self.write_rollback_status(&v, &status).await;
                }
                let after = wake
                    .and_then(|w| (w - now).to_std().ok())
                    .map(|d| d + Duration::from_millis(50))
                    .unwrap_or(Duration::from_secs(60));
                return Ok(Action::Requeue(after));
            }
        }
        cond(
            &mut status,
            "WindowBlocked",
            false,
            "NotBlocked",
            "rollback may run".into(),
            now,
        );

        // Hold the target's own applies while hosts are being rolled back.
        self.annotate_target(plural, &target.name, |a| {
            a.insert(
                wellknown::ROLLBACK_IN_PROGRESS.into(),
                Value::String(name.clone()),
            );
        })
        .await?;
        // A Service reconcile re-checks the hold from the cache before each apply: make
        // sure the cache has it before touching a host.
        for _ in 0..250 {
            if self.current_hold(plural, &target.name).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        for host in &hosts {
            let entry = host_entry(&mut status, host).clone();
            if entry.phase == "RolledBack" || entry.phase == "Skipped" {
                continue;
            }
            // Runs to undo here: newest revision first, and within one its newest run first.
            let mut todo: Vec<(u64, Run)> = Vec::new();
            for r in revs
                .iter()
                .rev()
                .filter(|r| r.spec.revision > to && r.spec.revision <= from)
            {
                if let Some(hr) = r.spec.hosts.iter().find(|x| &x.host == host) {
                    for run in hr.runs.iter().rev() {
                        let run: Run = serde_json::from_value(run.clone()).map_err(|e| {
                            Failure::Terminal(format!(
                                "Revision {}: a run does not decode: {e}",
                                r.metadata.name
                            ))
                        })?;
                        if !entry.runs.contains(&run.id) {
                            todo.push((r.spec.revision, run));
                        }
                    }
                }
            }
            if todo.is_empty() && entry.runs.is_empty() {
                let e = host_entry(&mut status, host);
                e.phase = "Skipped".into();
                e.message = Some(format!(
                    "nothing was applied here after revision {to}; the Service applies revision {to}'s spec"
                ));
                continue;
            }
            let Some(host_v) = self.caches.get("hosts", host) else {
                let e = host_entry(&mut status, host);
                e.phase = "Skipped".into();
                e.message = Some(format!("Host/{host} no longer exists"));
                continue;
            };
            let spec = typed::<HostSpec>(&host_v)?.spec;
            host_entry(&mut status, host).phase = "Pending".into();
            let t = match self.pool.transport(host, &spec).await {
                Ok(t) => t,
                Err(e) => {
                    // Unreachable: retry with backoff; nothing was changed on this host.
                    let e2 = host_entry(&mut status, host);
                    e2.message = Some(e.to_string());
                    self.write_rollback_status(&v, &status).await;
                    return Err(Failure::Transient(format!("{host}: {e}")));
                }
            };
            let _guard = self.pool.lock(host).await;
            for (number, run) in &todo {
                let undone = match history::undo(t.as_ref(), &[run], &rb.spec.only).await {
                    Ok(u) => u,
                    Err(e) => {
                        self.pool.forget(host);
                        self.write_rollback_status(&v, &status).await;
                        return Err(Failure::Transient(format!("{host}: {e}")));
                    }
                };
                let e = host_entry(&mut status, host);
                add_coverage(&mut e.coverage, &undone.coverage);
                if !undone.ok {
                    e.phase = "Failed".into();
                    e.message = undone.error.clone();
                    let msg = format!("{host}: {}", undone.error.unwrap_or_default());
                    self.release_target(plural, &target.name, &name).await;
                    return self.fail(&v, status, msg).await;
                }
                e.runs.push(run.id.clone());
                if !e.undone.contains(number) {
                    e.undone.push(*number);
                }
                // Progress survives a crash: a resumed rollback skips this run.
                self.write_rollback_status(&v, &status).await;
            }
            let e = host_entry(&mut status, host);
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
            self.write_rollback_status(&v, &status).await;
            self.record(
                kind_of("rollbacks"),
                &v,
                &[Note {
                    warning: false,
                    reason: "HostRolledBack",
                    message: format!("{host}: {message}"),
                }],
            )
            .await;
        }

        // The target goes back to the revision's spec (or, with `only`, keeps its spec
        // and holds the restored resources), and history records the result.
        let actor = format!("rollback/{name}");
        let snapshot = to_rev.spec.spec_snapshot.clone();
        let only = rb.spec.only.clone();
        let generation_now = target_generation;
        let new_generation = self
            .reset_target(
                plural,
                &target.name,
                &name,
                to,
                if only.is_empty() {
                    Some(snapshot.clone())
                } else {
                    None
                },
                &only,
                generation_now,
                actor.clone(),
            )
            .await?;
        let new_revision = match status.new_revision {
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
                let spec = if only.is_empty() {
                    snapshot
                } else {
                    svc_v.get("spec").cloned().unwrap_or_default()
                };
                let record = Target {
                    kind: kind_of(plural).kind,
                    name: &target.name,
                    uid: target_uid.as_deref(),
                    generation: new_generation,
                    spec,
                    digest: &digest,
                    source: Some(actor.clone()),
                    rolled_back_to: Some(to),
                };
                let n = self.write_rollback_revision(plural, &record).await?;
                status.new_revision = Some(n);
                n
            }
        };
        status.completed_at = Some((self.clock)());
        let summary = summarize(&status);
        cond(
            &mut status,
            "Complete",
            true,
            "RolledBack",
            format!(
                "{tk}/{} rolled back from revision {from} to {to} (recorded as revision {new_revision}); {summary}",
                target.name
            ),
            now,
        );
        cond(
            &mut status,
            "Failed",
            false,
            "RolledBack",
            "every host rolled back".into(),
            now,
        );
        self.write_rollback_status(&v, &status).await;
        self.record(
            kind_of("rollbacks"),
            &v,
            &[Note {
                warning: false,
                reason: "Complete",
                message: format!("{tk}/{}: revision {from} → {to}; {summary}", target.name),
            }],
        )
        .await;
        Ok(Action::AwaitChange)
    }

    /// Hosts with anything recorded between the two revisions, and the Service's hosts now.
    fn rollback_hosts(&self, revs: &[Object<RevisionSpec>], to: u64, from: u64) -> Vec<String> {
        let mut hosts: Vec<String> = revs
            .iter()
            .filter(|r| r.spec.revision > to && r.spec.revision <= from)
            .flat_map(|r| r.spec.hosts.iter().map(|h| h.host.clone()))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    async fn fail(
        &self,
        v: &Value,
        mut status: RollbackStatus,
        message: String,
    ) -> Result<Action, Failure> {
        let now = (self.clock)();
        cond(
            &mut status,
            "Failed",
            true,
            "RollbackFailed",
            message.clone(),
            now,
        );
        cond(
            &mut status,
            "Complete",
            false,
            "RollbackFailed",
            message.clone(),
            now,
        );
        status.completed_at = Some(now);
        self.write_rollback_status(v, &status).await;
        self.record(
            kind_of("rollbacks"),
            v,
            &[Note {
                warning: true,
                reason: "Failed",
                message: message.clone(),
            }],
        )
        .await;
        Err(Failure::Terminal(message))
    }

    async fn write_rollback_status(&self, v: &Value, status: &RollbackStatus) {
        self.write_status(
            kind_of("rollbacks"),
            v,
            serde_json::to_value(status).expect("status serialises"),
        )
        .await;
    }

    /// Changes the target's annotations (not its spec), retrying on conflicts.
    async fn annotate_target(
        &self,
        plural: &str,
        name: &str,
        change: impl Fn(&mut serde_json::Map<String, Value>),
    ) -> Result<(), Failure> {
        let kind = kind_of(plural);
        for _ in 0..8 {
            let mut current = match self.objects.get(kind, name).await {
                Ok(c) => c,
                Err(Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(Failure::Transient(e.to_string())),
            };
            let before = current.clone();
            let meta = current["metadata"].as_object_mut().expect("metadata");
            let a = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()))
                .as_object_mut()
                .expect("annotations are a map");
            change(a);
            if current == before {
                return Ok(());
            }
            match self.objects.update(kind, name, current, false).await {
                Ok(_) => return Ok(()),
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(Failure::Transient(e.to_string())),
            }
        }
        Err(Failure::Transient(format!(
            "{}/{name} kept changing",
            kind.kind
        )))
    }

    /// Lets the target apply again after a failed rollback (it rolls forward to its spec).
    async fn release_target(&self, plural: &str, service: &str, rollback: &str) {
        let r = self
            .annotate_target(plural, service, |a| {
                if a.get(wellknown::ROLLBACK_IN_PROGRESS)
                    .and_then(Value::as_str)
                    == Some(rollback)
                {
                    a.remove(wellknown::ROLLBACK_IN_PROGRESS);
                }
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(service, error = ?e, "could not release the Service after a failed rollback");
        }
    }

    /// Sets the target back: `spec` (a full rollback) or the held ids (`only`), in one
    /// write with the annotations; returns the target's generation after it.
    #[allow(clippy::too_many_arguments)]
    async fn reset_target(
        &self,
        plural: &str,
        service: &str,
        rollback: &str,
        to: u64,
        spec: Option<Value>,
        only: &[String],
        generation_now: i64,
        actor: String,
    ) -> Result<i64, Failure> {
        let kind = kind_of(plural);
        crate::objects::as_actor(actor, async {
            for _ in 0..8 {
                let mut current = self
                    .objects
                    .get(kind, service)
                    .await
                    .map_err(|e| Failure::Transient(e.to_string()))?;
                let done = current.pointer("/metadata/annotations").is_some_and(|a| {
                    a.get(wellknown::ROLLBACK_IN_PROGRESS).is_none()
                        && a.get(wellknown::ROLLED_BACK_TO).and_then(Value::as_str)
                            == Some(to.to_string().as_str())
                });
                if done {
                    return Ok(current
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(generation_now));
                }
                if let Some(spec) = &spec {
                    current["spec"] = spec.clone();
                }
                let meta = current["metadata"].as_object_mut().expect("metadata");
                let a = meta
                    .entry("annotations")
                    .or_insert_with(|| Value::Object(Default::default()))
                    .as_object_mut()
                    .expect("annotations are a map");
                if a.get(wellknown::ROLLBACK_IN_PROGRESS)
                    .and_then(Value::as_str)
                    == Some(rollback)
                {
                    a.remove(wellknown::ROLLBACK_IN_PROGRESS);
                }
                a.insert(
                    wellknown::ROLLED_BACK_TO.into(),
                    Value::String(to.to_string()),
                );
                // A Service synced from git stays rolled back until its manifest changes there.
                if let Some(digest) = a.get(wellknown::SOURCE_DIGEST).cloned() {
                    a.insert(wellknown::GIT_HOLD.into(), digest);
                }
                if only.is_empty() {
                    a.remove(wellknown::HELD);
                } else {
                    a.insert(
                        wellknown::HELD.into(),
                        Value::String(wellknown::format_held(generation_now, only)),
                    );
                }
                match self.objects.update(kind, service, current, false).await {
                    Ok(v) => {
                        return Ok(v
                            .pointer("/metadata/generation")
                            .and_then(Value::as_i64)
                            .unwrap_or(generation_now));
                    }
                    Err(Error::Conflict { .. }) => continue,
                    Err(e) => return Err(Failure::Transient(e.to_string())),
                }
            }
            Err(Failure::Transient(format!(
                "{}/{service} kept changing",
                kind.kind
            )))
        })
        .await
    }

    async fn write_rollback_revision(
        &self,
        plural: &str,
        record: &Target<'_>,
    ) -> Result<u64, Failure> {
        // A resumed rollback may have written it already.
        if let Some(r) = self
            .revisions_of(record.kind, record.name)
            .into_iter()
            .find(|r| {
                r.spec.source == record.source && r.spec.rolled_back_to == record.rolled_back_to
            })
        {
            return Ok(r.spec.revision);
        }
        let highest = self
            .caches
            .get(plural, record.name)
            .and_then(|s| s.pointer("/status/currentRevision").and_then(Value::as_u64));
        // A Rollback's revision is never merged into the one before it.
        self.record_rollback(record, highest).await
    }

    /// Records that `rollout.autoRollback` undid a failed apply on `host`: a Rollback
    /// object that is a record from the start (it is never run).
    pub(super) async fn record_auto_rollback(
        &self,
        service: &Object<ServiceSpec>,
        host: &str,
        message: &str,
        coverage: &hostkit_reconcilers::apply::Coverage,
    ) {
        let now = (self.clock)();
        let name = format!(
            "{}-auto-g{}-{}",
            service.metadata.name,
            service.metadata.generation.unwrap_or(1),
            host
        );
        let mut rb = Object::new(
            name.clone(),
            RollbackSpec {
                target_ref: hostkit_api::kinds::TargetRef {
                    kind: "Service".into(),
                    name: service.metadata.name.clone(),
                },
                to_revision: Some(RevisionTarget::Named(RevisionAlias::Previous)),
                only: Vec::new(),
                force: true,
                reason: Some(format!("AutoRollback: {message}")),
            },
        );
        rb.metadata
            .annotations
            .insert(wellknown::ROLLBACK_REASON.into(), "AutoRollback".into());
        let body = serde_json::to_value(&rb).expect("rollback serialises");
        let created = match self.objects.create(kind_of("rollbacks"), body, false).await {
            Ok(v) => v,
            Err(Error::AlreadyExists { .. }) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not record the automatic rollback");
                return;
            }
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
        cond(
            &mut status,
            "Complete",
            true,
            "AutoRollback",
            format!("{host}: the failed apply was undone"),
            now,
        );
        cond(
            &mut status,
            "Failed",
            false,
            "AutoRollback",
            "the down plan ran".into(),
            now,
        );
        self.write_rollback_status(&created, &status).await;
    }
}

fn finished(status: &RollbackStatus) -> bool {
    status.conditions.iter().any(|c| {
        (c.type_ == "Complete" || c.type_ == "Failed") && c.status == ConditionStatus::True
    })
}

/// `previous` is the revision before `from`; a number must be older than `from`.
fn resolve(
    to: Option<&RevisionTarget>,
    from: u64,
    revs: &[Object<RevisionSpec>],
) -> Result<u64, String> {
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

fn add_coverage(into: &mut Coverage, c: &hostkit_reconcilers::apply::Coverage) {
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

/// Sets a condition; true when its status changed.
fn cond(
    status: &mut RollbackStatus,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    now: chrono::DateTime<Utc>,
) -> bool {
    let c = Condition::observed(type_, ok, reason, message, now, None);
    set_condition(&mut status.conditions, c)
}
