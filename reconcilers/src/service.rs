//! The Service reconciler's logic: expand → select hosts → per host plan → report → apply
//! when allowed → report again. It knows nothing of the store: the controller passes in
//! the objects it needs and a [`Sink`] that persists status and events, and connections
//! and per-host apply locks come through [`Hosts`].

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hostkit_api::kinds::{
    HostPlanStatus, HostSpec, PendingChanges, PolicyWindowSpec, ProjectSpec, ServiceSpec,
    ServiceStatus,
};
use hostkit_api::meta::{Condition, set_condition};

use crate::apply::{self, ApplyOptions};
use crate::history::{Run, Undone};
use crate::plan::{self, Action, Plan};
use crate::resource::Resource;
use crate::secrets::Secrets;
use crate::transport::Transport;
use crate::{Error, Result, expand, windows};

/// A host a service runs on, as the controller sees it.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub spec: HostSpec,
    pub labels: BTreeMap<String, String>,
}

/// Connections and apply locks, owned by the controller so they outlive one reconcile.
#[async_trait::async_trait]
pub trait Hosts: Send + Sync {
    /// A connected transport for `name` (reused between reconciles).
    async fn transport(&self, name: &str, spec: &HostSpec) -> Result<Arc<dyn Transport>>;
    /// Forgets a connection that failed, so the next call reconnects.
    fn forget(&self, name: &str);
    /// Held while planning and applying on `name`: two objects never change one host at once.
    async fn lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()>;
}

/// An event to record on the object.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Persists what the reconciler found, part way and at the end.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    async fn publish(&self, status: &ServiceStatus, notes: &[Note]);
    /// Keeps an apply of a new generation (`digest`) on `host` in the service's history;
    /// returns the revision number it went into (`None`: not recorded, a warning said why).
    async fn record_run(&self, host: &str, run: &Run, digest: &str) -> Option<u64>;
}

/// Why changes were applied: to follow a new generation, or to undo drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    Intentional,
    Corrective,
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Intentional => "intentional",
            Intent::Corrective => "corrective",
        }
    }
}

/// Per host, for metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostReport {
    pub host: String,
    pub reachable: bool,
    pub drifted: bool,
    pub pending: u32,
    pub applied: Option<(Intent, usize)>,
    /// The apply of a new generation (ok or not) for the service's history; corrective
    /// applies are not history.
    pub run: Option<Run>,
    /// `rollout.autoRollback` undid a failed apply on this host.
    pub auto_rollback: Option<Undone>,
}

/// A failure of the reconcile as a whole.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// Terminal failures (a spec that cannot work) wait for a spec change.
    pub terminal: bool,
    pub message: String,
}

/// What one reconcile found and did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub status: ServiceStatus,
    pub hosts: Vec<HostReport>,
    /// The earliest time something may change by itself (a window opening).
    pub wake_at: Option<DateTime<Utc>>,
    pub failure: Option<Failure>,
    pub applied_any: bool,
    /// A failed apply was undone by `rollout.autoRollback`: retrying the same generation
    /// would fail the same way, so the failure is terminal.
    pub auto_rolled_back: bool,
    /// Digest of the desired resources this reconcile worked towards.
    pub digest: String,
}

pub struct Input<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub spec: &'a ServiceSpec,
    pub generation: i64,
    pub project: Option<&'a ProjectSpec>,
    pub targets: Vec<Target>,
    pub status: ServiceStatus,
    pub windows: &'a [(String, PolicyWindowSpec)],
    pub now: DateTime<Utc>,
    pub secrets: &'a Secrets,
    /// How long a restarted unit must stay active.
    pub settle: std::time::Duration,
    /// Plan and report, but apply nothing (a rollback of this service is running).
    pub hold: Option<String>,
    /// Asked again right before each host's apply, with the host's lock held: a rollback
    /// that started while this reconcile was planning must win.
    pub recheck_hold: Option<&'a (dyn Fn() -> Option<String> + Sync)>,
    /// Resource ids a partial rollback put back: left out of plans until the spec changes.
    pub held: Vec<String>,
    /// The service's revisions as (number, desired digest), to name what each host runs.
    pub revisions: Vec<(u64, String)>,
}

fn cond(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    now: DateTime<Utc>,
    generation: i64,
) -> Condition {
    Condition::observed(type_, ok, reason, message, now, Some(generation))
}

fn host_status<'a>(status: &'a mut ServiceStatus, host: &str) -> &'a mut HostPlanStatus {
    if let Some(i) = status.hosts.iter().position(|h| h.host == host) {
        return &mut status.hosts[i];
    }
    status.hosts.push(HostPlanStatus {
        host: host.to_string(),
        ..Default::default()
    });
    status.hosts.last_mut().expect("just pushed")
}

fn summarize(h: &mut HostPlanStatus, plan: &Plan, drift: bool) {
    h.pending = PendingChanges {
        create: plan.count(Action::Create) as u32,
        update: plan.count(Action::Update) as u32,
        delete: plan.count(Action::Delete) as u32,
        read_errors: plan.count(Action::ReadError) as u32,
    };
    h.plan_digest = Some(plan.fingerprint.clone());
    let changed: Vec<&plan::Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Noop)
        .collect();
    h.first_changes = changed
        .iter()
        .take(5)
        .map(|c| format!("{} {} ({})", c.action.symbol(), c.id, c.reason))
        .collect();
    h.drifted = if drift {
        changed.iter().map(|c| c.id.clone()).collect()
    } else {
        Vec::new()
    };
}

fn pending_total(plan: &Plan) -> u32 {
    plan.changes
        .iter()
        .filter(|c| c.action != Action::Noop)
        .count() as u32
}

/// Expands the service (errors are terminal: the spec must change).
pub fn resources(input: &Input<'_>) -> std::result::Result<Vec<Resource>, Failure> {
    expand::service(input.name, input.spec, input.project).map_err(|e| Failure {
        terminal: true,
        message: e.to_string(),
    })
}

/// One reconcile pass of a Service.
pub async fn reconcile(input: Input<'_>, hosts: &dyn Hosts, sink: &dyn Sink) -> Report {
    let now = input.now;
    let generation = input.generation;
    let mut status = input.status.clone();
    status.observed_generation = Some(generation);
    status
        .hosts
        .retain(|h| input.targets.iter().any(|t| t.name == h.host));
    let mut report = Report::default();
    let set = |status: &mut ServiceStatus, type_: &str, ok: bool, reason: &str, message: String| {
        set_condition(
            &mut status.conditions,
            cond(type_, ok, reason, message, now, generation),
        );
    };

    let resources = match resources(&input) {
        Ok(r) => r,
        Err(f) => {
            set(
                &mut status,
                "Stalled",
                true,
                "InvalidSpec",
                f.message.clone(),
            );
            set(
                &mut status,
                "Ready",
                false,
                "InvalidSpec",
                f.message.clone(),
            );
            set(
                &mut status,
                "Reconciling",
                false,
                "InvalidSpec",
                "waiting for a spec change".into(),
            );
            let notes = [Note {
                warning: true,
                reason: "InvalidSpec",
                message: f.message.clone(),
            }];
            sink.publish(&status, &notes).await;
            report.status = status;
            report.failure = Some(f);
            return report;
        }
    };
    let digest = plan::desired_digest(&resources);
    report.digest = digest.clone();
    let paused = if input.spec.paused {
        Some("spec.paused: plans only".to_string())
    } else {
        input.hold.clone()
    };
    set(
        &mut status,
        "Stalled",
        false,
        "SpecValid",
        "the spec expands".into(),
    );
    if input.targets.is_empty() {
        set(
            &mut status,
            "Ready",
            false,
            "NoTargetHosts",
            "no Host matches spec.hosts or spec.hostSelector".into(),
        );
        set(
            &mut status,
            "Reconciling",
            false,
            "NoTargetHosts",
            "nothing to do".into(),
        );
        sink.publish(&status, &[]).await;
        report.status = status;
        return report;
    }

    // Phase 1: plan every host and report before changing anything.
    struct HostWork {
        target: Target,
        transport: Option<Arc<dyn Transport>>,
        prepared: Option<plan::Prepared>,
        guard: Option<tokio::sync::OwnedMutexGuard<()>>,
        drift: bool,
        error: Option<String>,
    }
    let mut work = Vec::new();
    let mut notes = Vec::new();
    for target in input.targets.iter().cloned() {
        let mut w = HostWork {
            target,
            transport: None,
            prepared: None,
            guard: None,
            drift: false,
            error: None,
        };
        match hosts.transport(&w.target.name, &w.target.spec).await {
            Err(e) => w.error = Some(e.to_string()),
            Ok(t) => {
                let guard = hosts.lock(&w.target.name).await;
                match plan::prepare(t.as_ref(), &resources, &[], input.secrets).await {
                    Ok(mut p) => {
                        p.plan.changes.retain(|c| !input.held.contains(&c.id));
                        let applied_here = status
                            .hosts
                            .iter()
                            .find(|h| h.host == w.target.name)
                            .is_some_and(|h| {
                                h.last_applied_generation == Some(generation as u64)
                                    || h.applied_digest.as_deref() == Some(digest.as_str())
                            });
                        w.drift = applied_here && !p.plan.is_empty();
                        w.prepared = Some(p);
                        w.transport = Some(t);
                        w.guard = Some(guard);
                    }
                    Err(e) => {
                        if matches!(e, Error::Transport { .. } | Error::Read { .. }) {
                            hosts.forget(&w.target.name);
                        }
                        w.error = Some(e.to_string());
                    }
                }
            }
        }
        let h = host_status(&mut status, &w.target.name);
        h.held = input.held.clone();
        if let Some(p) = &w.prepared {
            summarize(h, &p.plan, w.drift);
            if w.drift {
                notes.push(Note {
                    warning: true,
                    reason: "DriftDetected",
                    message: format!(
                        "{}: {} resource(s) differ from generation {generation}: {}",
                        w.target.name,
                        h.drifted.len(),
                        h.drifted
                            .iter()
                            .take(3)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            } else if !p.plan.is_empty() {
                notes.push(Note {
                    warning: false,
                    reason: "Planned",
                    message: format!("{}: {}", w.target.name, p.plan.summary()),
                });
            }
        }
        work.push(w);
    }
    let pending: u32 = work
        .iter()
        .filter_map(|w| w.prepared.as_ref())
        .map(|p| pending_total(&p.plan))
        .sum();
    let drifted: Vec<String> = work
        .iter()
        .filter(|w| w.drift)
        .map(|w| w.target.name.clone())
        .collect();
    set(
        &mut status,
        "Planned",
        work.iter().all(|w| w.prepared.is_some()),
        if work.iter().all(|w| w.prepared.is_some()) {
            "PlanReady"
        } else {
            "PlanFailed"
        },
        format!("{pending} change(s) pending on {} host(s)", work.len()),
    );
    set(
        &mut status,
        "Drifted",
        !drifted.is_empty(),
        if drifted.is_empty() {
            "InSync"
        } else {
            "DriftDetected"
        },
        if drifted.is_empty() {
            "hosts match the applied generation".into()
        } else {
            format!("drift on {}", drifted.join(", "))
        },
    );
    let work_to_do = pending > 0;
    set(
        &mut status,
        "Reconciling",
        work_to_do,
        if work_to_do {
            "ChangesPending"
        } else {
            "UpToDate"
        },
        format!("{pending} change(s) pending"),
    );
    if work_to_do {
        // Not Ready while changes are pending: a reader that sees this generation
        // observed must not also see the previous generation's Ready=True.
        set(
            &mut status,
            "Ready",
            false,
            "ChangesPending",
            format!("{pending} change(s) pending"),
        );
    }
    sink.publish(&status, &notes).await;
    notes.clear();

    // Phase 2: apply in waves of `rollout.maxParallel` hosts, in order; a failure ends the
    // rollout after its wave, and the hosts after it stay untouched.
    let max_parallel = input
        .spec
        .rollout
        .as_ref()
        .and_then(|r| r.max_parallel)
        .unwrap_or(1)
        .max(1) as usize;
    let mut stopped: Option<String> = None;
    let mut blocked: Vec<String> = Vec::new();
    let mut applied_ok = true;
    let mut hr: Vec<HostReport> = work
        .iter()
        .map(|w| HostReport {
            host: w.target.name.clone(),
            reachable: w.transport.is_some(),
            drifted: w.drift,
            pending: w
                .prepared
                .as_ref()
                .map(|p| pending_total(&p.plan))
                .unwrap_or(0),
            applied: None,
            run: None,
            auto_rollback: None,
        })
        .collect();
    let auto_rollback = input.spec.rollout.as_ref().is_some_and(|r| r.auto_rollback);
    let mut wave: Vec<usize> = Vec::new();
    let mut recorded: Vec<(u64, String)> = Vec::new();
    for i in 0..=work.len() {
        // Run the wave when it is full, when a failure is next in line, or at the end.
        let failing_next = work.get(i).is_some_and(|w| w.error.is_some());
        if !wave.is_empty() && (wave.len() == max_parallel || failing_next || i == work.len()) {
            let outcomes = futures::future::join_all(wave.iter().map(|&k| {
                let w = &work[k];
                let mut opts = ApplyOptions::new(format!(
                    "{}-g{generation}-{}",
                    input.name,
                    now.format("%Y%m%dT%H%M%S")
                ));
                opts.settle = input.settle;
                async move {
                    let t = w.transport.as_ref().expect("connected");
                    apply::apply(t.as_ref(), w.prepared.as_ref().expect("planned"), &opts).await
                }
            }))
            .await;
            for (&k, outcome) in wave.iter().zip(outcomes) {
                let w = &mut work[k];
                let r = &mut hr[k];
                let intent = if w.drift {
                    Intent::Corrective
                } else {
                    Intent::Intentional
                };
                if intent == Intent::Corrective
                    && let Ok(applied) = &outcome
                {
                    // A repair is not history (undoing it would put the drift back): its
                    // backups of the drifted files have no use.
                    discard_backups(w.transport.as_ref(), &applied.revision).await;
                }
                match outcome {
                    Ok(applied) if applied.ok => {
                        let n = applied.count(apply::Status::Applied);
                        r.applied = Some((intent, n));
                        if intent == Intent::Intentional {
                            r.run = Some(Run::from_applied(&applied, now));
                        }
                        r.drifted = false;
                        r.pending = 0;
                        report.applied_any = true;
                        let h = host_status(&mut status, &w.target.name);
                        h.last_applied_generation = Some(generation as u64);
                        h.applied_digest = Some(digest.clone());
                        h.last_applied_time = Some(now);
                        h.pending = PendingChanges::default();
                        h.drifted.clear();
                        h.first_changes.clear();
                        notes.push(Note {
                            warning: false,
                            reason: if w.drift { "DriftRepaired" } else { "Applied" },
                            message: format!(
                                "{}: applied {n} change(s) of generation {generation}",
                                w.target.name
                            ),
                        });
                        w.drift = false;
                    }
                    Ok(applied) => {
                        let msg = applied.error.clone().unwrap_or_default();
                        let n = applied.count(apply::Status::Applied);
                        if n > 0 {
                            r.applied = Some((intent, n));
                        }
                        applied_ok = false;
                        notes.push(Note {
                            warning: true,
                            reason: "ApplyFailed",
                            message: format!("{}: {msg}", w.target.name),
                        });
                        let mut stop = format!("{}: {msg}", w.target.name);
                        if auto_rollback && intent == Intent::Intentional {
                            let t = w.transport.as_ref().expect("connected");
                            let run = Run::from_applied(&applied, now);
                            match crate::history::undo(t.as_ref(), &[&run], &[]).await {
                                Ok(undone) => {
                                    notes.push(Note {
                                        warning: !undone.ok,
                                        reason: "AutoRollback",
                                        message: if undone.ok {
                                            format!(
                                                "{}: the failed apply of generation {generation} was rolled back ({} step(s) undone, {} skipped)",
                                                w.target.name,
                                                undone.coverage.reversible,
                                                undone.coverage.skipped.len()
                                            )
                                        } else {
                                            format!(
                                                "{}: rolling back the failed apply failed: {}",
                                                w.target.name,
                                                undone.error.clone().unwrap_or_default()
                                            )
                                        },
                                    });
                                    if undone.ok {
                                        stop.push_str("; rolled back automatically; fix the spec");
                                        report.auto_rolled_back = true;
                                        discard_backups(Some(t), &run.id).await;
                                    } else {
                                        r.run = Some(run);
                                    }
                                    r.auto_rollback = Some(undone);
                                }
                                Err(e) => {
                                    hosts.forget(&w.target.name);
                                    r.run = Some(run);
                                    notes.push(Note {
                                        warning: true,
                                        reason: "AutoRollback",
                                        message: format!(
                                            "{}: could not roll back: {e}",
                                            w.target.name
                                        ),
                                    });
                                }
                            }
                        } else if intent == Intent::Intentional && n > 0 {
                            // A partial apply is history too: its changes stay on the host.
                            r.run = Some(Run::from_applied(&applied, now));
                        }
                        stopped.get_or_insert(stop);
                    }
                    Err(e) => {
                        hosts.forget(&w.target.name);
                        applied_ok = false;
                        notes.push(Note {
                            warning: true,
                            reason: "ApplyFailed",
                            message: format!("{}: {e}", w.target.name),
                        });
                        stopped.get_or_insert_with(|| format!("{}: {e}", w.target.name));
                    }
                }
            }
            // History before the status says Ready: whoever sees Ready finds the revision.
            for &k in &wave {
                let Some(run) = hr[k].run.clone() else {
                    continue;
                };
                let host = hr[k].host.clone();
                if let Some(n) = sink.record_run(&host, &run, &digest).await {
                    recorded.push((n, digest.clone()));
                    if run.ok {
                        host_status(&mut status, &host).revision = Some(n);
                    }
                }
            }
            wave.clear();
        }
        let Some(w) = work.get(i) else { break };
        if let Some(e) = &w.error {
            applied_ok = false;
            stopped.get_or_insert_with(|| format!("{}: {e}", w.target.name));
            continue;
        }
        let prepared = w.prepared.as_ref().expect("planned");
        if prepared.plan.is_empty() {
            // Converged with nothing to apply: this generation is what the host runs.
            let h = host_status(&mut status, &w.target.name);
            h.last_applied_generation = Some(generation as u64);
            h.applied_digest = Some(digest.clone());
            continue;
        }
        if stopped.is_some() {
            continue;
        }
        if let Some(why) = paused
            .clone()
            .or_else(|| input.recheck_hold.and_then(|check| check()))
        {
            blocked.push(format!("{}: {why}", w.target.name));
            continue;
        }
        let decision = match windows::decide(
            input.windows,
            (input.name, input.labels),
            (&w.target.name, &w.target.labels),
            now,
        ) {
            Ok(d) => d,
            Err(e) => {
                stopped = Some(e.to_string());
                continue;
            }
        };
        if let Some(until) = decision.until {
            report.wake_at = Some(report.wake_at.map_or(until, |t| t.min(until)));
        }
        if !decision.allowed {
            blocked.push(format!("{}: {}", w.target.name, decision.message));
            notes.push(Note {
                warning: false,
                reason: "WindowBlocked",
                message: format!(
                    "{}: {} change(s) wait: {}",
                    w.target.name, hr[i].pending, decision.message
                ),
            });
            continue;
        }
        wave.push(i);
    }
    report.hosts = hr;
    drop(work);
    // Each host's revision: the newest whose desired state it matches.
    let known: Vec<&(u64, String)> = input.revisions.iter().chain(&recorded).collect();
    if let Some(newest) = known.iter().map(|(n, _)| *n).max() {
        status.current_revision = Some(newest);
    }
    for h in &mut status.hosts {
        if let Some(d) = &h.applied_digest
            && let Some(n) = known
                .iter()
                .filter(|(_, digest)| digest == d)
                .map(|(n, _)| *n)
                .max()
        {
            h.revision = Some(n);
        }
    }

    let remaining_drift: Vec<&str> = report
        .hosts
        .iter()
        .filter(|h| h.drifted)
        .map(|h| h.host.as_str())
        .collect();
    let converged = report.hosts.iter().all(|h| h.reachable && h.pending == 0);
    set(
        &mut status,
        "Drifted",
        !remaining_drift.is_empty(),
        if remaining_drift.is_empty() {
            if drifted.is_empty() {
                "InSync"
            } else {
                "DriftRepaired"
            }
        } else {
            "DriftDetected"
        },
        if remaining_drift.is_empty() {
            "hosts match the applied generation".into()
        } else {
            format!("drift on {}", remaining_drift.join(", "))
        },
    );
    set(
        &mut status,
        "WindowBlocked",
        !blocked.is_empty() && paused.is_none(),
        if blocked.is_empty() || paused.is_some() {
            "NotBlocked"
        } else {
            "WindowClosed"
        },
        if blocked.is_empty() {
            "apply is allowed".into()
        } else {
            blocked.join("; ")
        },
    );
    match &stopped {
        Some(msg) => {
            set(&mut status, "Applied", false, "ApplyFailed", msg.clone());
            if report.auto_rolled_back {
                set(&mut status, "Stalled", true, "AutoRolledBack", msg.clone());
            }
            report.failure = Some(Failure {
                terminal: report.auto_rolled_back,
                message: msg.clone(),
            });
        }
        None if converged => set(
            &mut status,
            "Applied",
            true,
            "Applied",
            format!("generation {generation} is applied on every host"),
        ),
        None if paused.is_some() => set(
            &mut status,
            "Applied",
            false,
            "Paused",
            paused.clone().unwrap_or_default(),
        ),
        None => set(
            &mut status,
            "Applied",
            false,
            "WindowClosed",
            blocked.join("; "),
        ),
    }
    let ready = converged && stopped.is_none() && applied_ok;
    set(
        &mut status,
        "Ready",
        ready,
        if ready {
            "Converged"
        } else if stopped.is_some() {
            "ApplyFailed"
        } else if paused.is_some() {
            "Paused"
        } else {
            "ChangesPending"
        },
        if ready {
            format!(
                "generation {generation} runs on {} host(s)",
                report.hosts.len()
            )
        } else {
            stopped.clone().unwrap_or_else(|| blocked.join("; "))
        },
    );
    set(
        &mut status,
        "Reconciling",
        !ready && stopped.is_none(),
        if ready {
            "UpToDate"
        } else if stopped.is_some() {
            "Failed"
        } else {
            "Waiting"
        },
        if ready {
            "nothing pending".into()
        } else {
            "changes pending".into()
        },
    );
    sink.publish(&status, &notes).await;
    report.status = status;
    report
}

/// Undoes a deleted Service on every host it was applied to: its files are removed and its
/// units stopped (directories kept unless `rollback: deleteIfCreated`; accounts and packages
/// kept). Hosts whose Host object is gone are skipped with a warning.
pub async fn cleanup(
    input: Input<'_>,
    known_hosts: &[String],
    hosts: &dyn Hosts,
    sink: &dyn Sink,
) -> std::result::Result<(), Failure> {
    let resources = resources(&input)?;
    let mut notes = Vec::new();
    for h in input
        .status
        .hosts
        .iter()
        .filter(|h| h.last_applied_generation.is_some())
    {
        let Some(target) = input.targets.iter().find(|t| t.name == h.host) else {
            if !known_hosts.contains(&h.host) {
                notes.push(Note {
                    warning: true,
                    reason: "HostGone",
                    message: format!(
                        "Host/{} no longer exists; its files were left as they are",
                        h.host
                    ),
                });
            }
            continue;
        };
        let t = hosts
            .transport(&target.name, &target.spec)
            .await
            .map_err(|e| Failure {
                terminal: false,
                message: e.to_string(),
            })?;
        let _guard = hosts.lock(&target.name).await;
        let prepared = plan::prepare(t.as_ref(), &[], &resources, input.secrets)
            .await
            .map_err(|e| Failure {
                terminal: false,
                message: e.to_string(),
            })?;
        let opts = ApplyOptions::new(format!(
            "{}-delete-{}",
            input.name,
            input.now.format("%Y%m%dT%H%M%S")
        ));
        let applied = apply::apply(t.as_ref(), &prepared, &opts)
            .await
            .map_err(|e| Failure {
                terminal: false,
                message: e.to_string(),
            })?;
        // The object is going: nothing will ever undo this removal.
        discard_backups(Some(&t), &applied.revision).await;
        if !applied.ok {
            return Err(Failure {
                terminal: false,
                message: applied.error.unwrap_or_default(),
            });
        }
        notes.push(Note {
            warning: false,
            reason: "CleanedUp",
            message: format!(
                "{}: removed {} resource(s)",
                target.name,
                prepared.plan.count(Action::Delete)
            ),
        });
    }
    sink.publish(&input.status, &notes).await;
    Ok(())
}

/// Removes the backups of an apply that no history keeps (best effort: a leftover folder
/// costs disk space, never correctness).
pub async fn discard_backups(transport: Option<&Arc<dyn Transport>>, run: &str) {
    if let Some(t) = transport
        && let Err(e) = crate::history::remove_backups(t.as_ref(), &[run.to_string()]).await
    {
        tracing::warn!(host = t.host(), run, error = %e, "could not remove backups");
    }
}
