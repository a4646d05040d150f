//! One reconcile pass of a Service, in the phases its status reports: expand → plan every
//! host (and report before changing anything) → apply in waves inside policy windows →
//! record history → conclude the conditions.
//!
//! It knows nothing of the store: the caller passes in the objects it needs ([`Input`]), a
//! [`Sink`] that persists status and events and a [`History`] that keeps the runs (written
//! ahead of each apply, settled after a crash); connections and per-host apply locks come
//! through [`Hosts`]. That is what lets `tests/rollout.rs` drive it on the real local
//! shell with an injected clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hostkit_api::kinds::{
    HostPlanStatus, HostSpec, PendingChanges, PolicyWindowSpec, ProjectSpec, ServiceSpec,
    ServiceStatus,
};
use hostkit_api::meta::Observed;
use hostkit_engine::apply::{self, Applied, ApplyOptions};
use hostkit_engine::hosts::Hosts;
use hostkit_engine::monitor::{Probe, ProbeResult};
use hostkit_engine::outcome::Status;
use hostkit_engine::plan::{self, Action, Plan, Prepared};
use hostkit_engine::resource::Resource;
use hostkit_engine::run::{self, Run, Undone};
use hostkit_engine::secrets::Secrets;
use hostkit_engine::transport::Transport;

use super::conditions::{Outcome, drift_condition};
use super::health;
use crate::Note;
use crate::policy_window;
use crate::revision::history::{self, History};

mod gate;
mod gated;
mod planning;
mod report;
mod waves;
use report::summarize;

/// A host a service runs on, as the controller sees it.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub spec: HostSpec,
    pub labels: BTreeMap<String, String>,
    /// The Host's package lock (`status.packageLock`): plans pin what it holds.
    pub lock: hostkit_engine::plan::PackageLock,
}

/// Persists what the rollout found, part way and at the end.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    async fn publish(&self, status: &ServiceStatus, notes: &[Note]);
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

/// Per host, for metrics and history.
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
    /// The health gate took this host back (an unhealthy wave, or `hkctl rollout abort`),
    /// with why.
    pub gate_rollback: Option<(Undone, String)>,
    /// How long each monitor's run took in this pass's read.
    pub monitor_durations: Vec<(String, std::time::Duration)>,
    /// A package of this Service is installed on the host and the Host's lock does not
    /// hold it yet: the Host reconciler (the lock's only writer) should look.
    pub unlocked: bool,
    /// How long each phase of this pass's work on the host took.
    pub timings: hostkit_engine::timings::Timings,
}

/// A failure of the reconcile as a whole.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// Terminal failures (a spec that cannot work) wait for a spec change.
    pub terminal: bool,
    pub message: String,
}

impl Failure {
    /// The reconcile's result: this failure, or (none) the next resync of an object with
    /// `interval`, sooner when something changes by itself at `wake_at`.
    pub(crate) fn or_resync(
        failure: Option<Failure>,
        interval: Option<&hostkit_api::values::Duration>,
        wake_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> crate::Result<crate::Action> {
        match failure {
            Some(f) if f.terminal => Err(crate::Error::Stalled(f.message)),
            Some(f) => Err(crate::Error::Retry(f.message)),
            None => Ok(crate::Action::Requeue(crate::next_resync(
                interval, wake_at, now,
            ))),
        }
    }
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
    /// The `hostkit.dev/requestedAt` this pass answers: written with the pass's final
    /// status only, so a client that sees it sees how the pass ended.
    pub requested: Option<String>,
    /// `hostkit.dev/rollout-resume` and `hostkit.dev/rollout-abort` (`hkctl rollout`).
    pub resume: Option<String>,
    pub abort: Option<String>,
    /// Asks `rollout.analysis`'s queries.
    pub analyst: &'a dyn crate::analysis::Analyst,
    /// `spec.source`'s ref, resolved for this pass.
    pub source: super::source::Resolution,
}

/// Expands the service (errors are terminal: the spec must change), with its source at
/// the resolved commit and the releases its history needs protected from pruning.
pub fn resources(input: &Input<'_>) -> std::result::Result<Vec<Resource>, Failure> {
    let mut resources = hostkit_engine::expand::service_at(
        input.name,
        input.spec,
        input.project,
        input.source.resolved.as_ref(),
    )
    .map_err(|e| Failure {
        terminal: true,
        message: e.to_string(),
    })?;
    for r in &mut resources {
        if let hostkit_engine::resource::Spec::Release(rel) = &mut r.spec {
            rel.protect = input.source.protect.clone();
        }
    }
    Ok(resources)
}

/// The commit of the release among `resources`, if the Service has a source.
fn release_commit(resources: &[Resource]) -> Option<String> {
    resources.iter().find_map(|r| match &r.spec {
        hostkit_engine::resource::Spec::Release(rel) => Some(rel.commit.clone()),
        _ => None,
    })
}

/// The status entry of `host`, created when missing.
pub(crate) fn host_status<'a>(status: &'a mut ServiceStatus, host: &str) -> &'a mut HostPlanStatus {
    if let Some(i) = status.hosts.iter().position(|h| h.host == host) {
        return &mut status.hosts[i];
    }
    status.hosts.push(HostPlanStatus {
        host: host.to_string(),
        ..Default::default()
    });
    status.hosts.last_mut().expect("just pushed")
}

/// One host's share of the reconcile: its connection, plan and apply lock.
struct HostWork {
    /// What settling an interrupted apply on the host found.
    notes: Vec<Note>,
    /// The Revision its write-ahead run went into, once recorded.
    revision: Option<u64>,
    /// The host answered the apply (its outcome is known, even if it failed).
    answered: bool,
    target: Target,
    transport: Option<Arc<dyn Transport>>,
    prepared: Option<Prepared>,
    /// Held from planning until the end of the reconcile.
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// The host no longer matches what was applied to it.
    drift: bool,
    /// Why the host could not be planned: a reason (`HostNotRead`, `SecretMissing`,
    /// `PlanFailed`) and the error.
    error: Option<(&'static str, String)>,
    /// Connecting (when the pool had no connection) and planning.
    timings: hostkit_engine::timings::Timings,
}

impl HostWork {
    fn plan(&self) -> Option<&Plan> {
        self.prepared.as_ref().map(|p| &p.plan)
    }
}

/// Whether `h` already ran what this pass wants: the same desired resources (its digest)
/// — a new commit of a moving branch is a new rollout even within one generation, not
/// drift — or, for a status written before digests were recorded, this generation.
pub(super) fn applied_here(h: &HostPlanStatus, generation: i64, digest: &str) -> bool {
    match &h.applied_digest {
        Some(d) => d == digest,
        None => h.last_applied_generation == Some(generation as u64),
    }
}

/// The message of `Stalled=True AutoRolledBack` when it is about this very generation.
fn auto_rolled_back(input: &Input<'_>) -> Option<String> {
    input
        .status
        .conditions
        .iter()
        .find(|c| {
            c.type_ == "Stalled"
                && c.status == hostkit_api::meta::ConditionStatus::True
                && matches!(c.reason.as_str(), "AutoRolledBack" | "RolledBack")
                && c.observed_generation == Some(input.generation)
        })
        .map(|c| c.message.clone())
}

/// One reconcile pass of a Service.
pub async fn reconcile(
    input: Input<'_>,
    hosts: &dyn Hosts,
    sink: &dyn Sink,
    history: &dyn History,
) -> Report {
    let mut r = Rollout::new(&input, history);
    if input.spec.source.is_some() && input.source.resolved.is_none() {
        return r.source_unresolved(sink).await;
    }
    let resources = match resources(&input) {
        Ok(res) => res,
        Err(f) => return r.invalid_spec(f, sink).await,
    };
    r.probes = match hostkit_engine::expand::monitors(input.name, input.spec, input.project) {
        Ok(p) => p,
        Err(e) => {
            let f = Failure {
                terminal: true,
                message: e.to_string(),
            };
            return r.invalid_spec(f, sink).await;
        }
    };
    r.report.digest = plan::desired_digest(&resources);
    match auto_rolled_back(&input) {
        // This generation failed and was undone: applying it again would fail the same
        // way, whatever woke the Service (a Host label, a window). Plan only, and keep
        // saying why, until the spec changes.
        Some(why) => {
            r.paused = Some(format!(
                "generation {} was rolled back automatically ({why}); change the spec to try again",
                input.generation
            ))
        }
        None => r.set("Stalled", false, "SpecValid", "the spec expands"),
    }
    if input.targets.is_empty() {
        r.set(
            "Ready",
            false,
            "NoTargetHosts",
            "no Host matches spec.hosts or spec.hostSelector",
        );
        r.set("Reconciling", false, "NoTargetHosts", "nothing to do");
        r.status.last_handled_requested_at = input.requested.clone();
        let notes = [Note::warning(
            "NoTargetHosts",
            "no Host matches spec.hosts or spec.hostSelector",
        )];
        sink.publish(&r.status, &notes).await;
        r.report.status = r.status;
        return r.report;
    }
    let mut work = r.plan_hosts(&resources, hosts).await;
    r.resources = resources;
    r.report_plans(&work);
    sink.publish(&r.status, &r.notes).await;
    r.notes.clear();
    let asked = r.ask_prometheus().await;
    let monitor_notes = r.observe_monitors(&work, &asked);
    r.apply_waves(&mut work, hosts).await;
    r.settle_monitors(&work, monitor_notes);
    drop(work); // releases the hosts' apply locks
    r.name_revisions();
    r.conclude();
    r.status.last_handled_requested_at = input.requested.clone();
    sink.publish(&r.status, &r.notes).await;
    r.report.status = r.status;
    r.report
}

/// The reconcile in progress.
struct Rollout<'a> {
    input: &'a Input<'a>,
    history: &'a dyn History,
    /// The desired resources, as the Revision records them.
    resources: Vec<Resource>,
    at: Observed,
    status: ServiceStatus,
    report: Report,
    notes: Vec<Note>,
    /// `spec.paused` or a running rollback's hold: plan, apply nothing.
    paused: Option<String>,
    /// Hosts that drifted when planned.
    drifted: Vec<String>,
    /// The first failure: later hosts are not touched.
    stopped: Option<String>,
    /// Which hosts could not be read, and why: conditions about them are `Unknown`.
    unread: Option<(&'static str, String)>,
    /// The rollout stopped at a host that could not be read (not at a failed apply).
    stopped_unread: bool,
    /// Hosts held back (window, pause), with why.
    blocked: Vec<String>,
    applied_ok: bool,
    /// Revisions this reconcile recorded, as (number, digest).
    recorded: Vec<(u64, String)>,
    /// The Service's monitors, run in each host's read.
    probes: Vec<Probe>,
    /// With a health-gated rollout: the hosts this pass may change for the new
    /// generation, and why the others wait.
    gate: Option<(std::collections::BTreeSet<String>, String)>,
    /// Hosts the gate held back, with why.
    gated: Vec<String>,
    /// The gate took the changed hosts back this pass: why.
    rolled_back: Option<String>,
}

impl<'a> Rollout<'a> {
    fn new(input: &'a Input<'a>, history: &'a dyn History) -> Rollout<'a> {
        let mut status = input.status.clone();
        status.observed_generation = Some(input.generation);
        status
            .hosts
            .retain(|h| input.targets.iter().any(|t| t.name == h.host));
        status.source = match &input.spec.source {
            Some(_) => input.source.status.clone().or(status.source),
            None => None,
        };
        Rollout {
            input,
            history,
            resources: Vec::new(),
            at: Observed::new(input.now, Some(input.generation)),
            status,
            report: Report::default(),
            notes: Vec::new(),
            paused: if input.spec.paused {
                Some("spec.paused: plans only".to_string())
            } else {
                input.hold.clone()
            },
            drifted: Vec::new(),
            stopped: None,
            unread: None,
            stopped_unread: false,
            blocked: Vec::new(),
            applied_ok: true,
            recorded: Vec::new(),
            probes: Vec::new(),
            gate: None,
            gated: Vec::new(),
            rolled_back: None,
        }
    }

    fn set(&mut self, type_: &str, ok: bool, reason: &str, message: impl Into<String>) {
        self.at
            .set(&mut self.status.conditions, type_, ok, reason, message);
    }

    fn unknown(&mut self, type_: &str, reason: &str, message: impl Into<String>) {
        self.at
            .set_unknown(&mut self.status.conditions, type_, reason, message);
    }

    fn generation(&self) -> i64 {
        self.input.generation
    }

    async fn invalid_spec(mut self, f: Failure, sink: &dyn Sink) -> Report {
        self.set("Stalled", true, "InvalidSpec", f.message.clone());
        self.set("Ready", false, "InvalidSpec", f.message.clone());
        self.set(
            "Reconciling",
            false,
            "InvalidSpec",
            "waiting for a spec change",
        );
        let notes = [Note::warning("InvalidSpec", f.message.clone())];
        self.status.last_handled_requested_at = self.input.requested.clone();
        sink.publish(&self.status, &notes).await;
        self.report.status = self.status;
        self.report.failure = Some(f);
        self.report
    }

    /// The source's ref could not be resolved, and never was: nothing can be planned. Not
    /// terminal (the repository may answer at the next try); no host was read, so what
    /// they run is unknown.
    async fn source_unresolved(mut self, sink: &dyn Sink) -> Report {
        let message = self
            .input
            .source
            .error
            .clone()
            .unwrap_or_else(|| "spec.source's ref is not resolved".into());
        self.set("Ready", false, "SourceUnresolved", message.clone());
        self.set("Reconciling", false, "SourceUnresolved", message.clone());
        self.unknown(
            "Drifted",
            "SourceUnresolved",
            "no host was read: the source's commit is not known",
        );
        let notes = [Note::warning("SourceUnresolved", message.clone())];
        self.status.last_handled_requested_at = self.input.requested.clone();
        sink.publish(&self.status, &notes).await;
        self.report.status = self.status;
        self.report.failure = Some(Failure {
            terminal: false,
            message,
        });
        self.report
    }

    /// Phase 1: connect to and plan every host, holding each one's apply lock from here on.
    async fn plan_hosts(&mut self, resources: &[Resource], hosts: &dyn Hosts) -> Vec<HostWork> {
        let input = self.input;
        let mut work = Vec::new();
        for target in input.targets.iter().cloned() {
            let mut w = self.plan_host(target, resources, hosts).await;
            self.notes.append(&mut w.notes);
            let generation = self.generation();
            let h = host_status(&mut self.status, &w.target.name);
            h.held = input.held.clone();
            if let Some(plan) = w.plan() {
                summarize(h, plan, w.drift);
                if w.drift {
                    let message = format!(
                        "{}: {} resource(s) differ from generation {generation}: {}",
                        w.target.name,
                        h.drifted.len(),
                        h.drifted
                            .iter()
                            .take(3)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    self.notes.push(Note::warning("DriftDetected", message));
                } else if !plan.is_empty() {
                    let message = format!("{}: {}", w.target.name, plan.summary());
                    self.notes.push(Note::normal("Planned", message));
                }
            }
            work.push(w);
        }
        work
    }

    /// Each host's monitor results into its status (the health gate reads them); the
    /// transitions they note wait for [`Rollout::settle_monitors`].
    fn observe_monitors(
        &mut self,
        work: &[HostWork],
        asked: &(Vec<ProbeResult>, Vec<(String, String)>),
    ) -> Vec<Vec<Note>> {
        let (prometheus, unknown) = asked;
        let mut notes = Vec::new();
        for w in work {
            let h = host_status(&mut self.status, &w.target.name);
            let (monitors, noted) = match (&w.prepared, &w.error) {
                (Some(p), _) => {
                    let results: Vec<ProbeResult> =
                        p.monitors.iter().chain(prometheus).cloned().collect();
                    health::observe(
                        &w.target.name,
                        &h.monitors,
                        &self.probes,
                        &results,
                        unknown,
                        self.input.now,
                    )
                }
                (None, Some((_, e))) => (
                    health::not_run(&h.monitors, &self.probes, &format!("not run: {e}")),
                    Vec::new(),
                ),
                (None, None) => (
                    health::not_run(&h.monitors, &self.probes, "not run"),
                    Vec::new(),
                ),
            };
            h.monitors = monitors;
            notes.push(noted);
        }
        notes
    }

    /// The `prometheus` monitors, asked once for the pass (they hold for every host): the
    /// results, and why a Prometheus could not answer.
    async fn ask_prometheus(&self) -> (Vec<ProbeResult>, Vec<(String, String)>) {
        let (mut results, mut unknown) = (Vec::new(), Vec::new());
        for p in self.probes.iter().filter(|p| !p.on_host()) {
            let Some(query) = p.args.first() else {
                continue;
            };
            let url = p.args.get(1).filter(|u| !u.is_empty());
            let started = std::time::Instant::now();
            match self
                .input
                .analyst
                .holds(url.map(String::as_str), query)
                .await
            {
                Ok(ok) => results.push(ProbeResult {
                    name: p.name.clone(),
                    ok,
                    message: format!("{query} {}", if ok { "holds" } else { "does not hold" }),
                    duration: started.elapsed(),
                }),
                Err(why) => unknown.push((p.name.clone(), why)),
            }
        }
        (results, unknown)
    }

    /// Once the pass knows which hosts it changed: results read before a host's apply say
    /// nothing of what runs there now (unknown again, their transitions unsaid); the other
    /// hosts' transitions become events.
    fn settle_monitors(&mut self, work: &[HostWork], notes: Vec<Vec<Note>>) {
        for (k, (w, mut noted)) in work.iter().zip(notes).enumerate() {
            let changed = self
                .report
                .hosts
                .get(k)
                .is_some_and(|r| r.applied.is_some());
            if changed {
                let h = host_status(&mut self.status, &w.target.name);
                h.monitors = health::not_run(
                    &h.monitors,
                    &self.probes,
                    "changed by this pass's apply; runs again at the next pass",
                );
            } else {
                self.notes.append(&mut noted);
            }
        }
    }
}
