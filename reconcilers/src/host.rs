//! The Host reconciler: connect, read facts, keep `Reachable`/`Ready` and `lastSeen`, and
//! plan and apply the host's own resources (firewall, bootstrap packages, runtimes) like a
//! Service's, with their own history.
//!
//! [`converge`] is one pass on plain inputs (testable without a store); the
//! [`Reconciler`] impl gathers the inputs (the firewalls of the Projects whose Services run
//! here, the windows), records the history and writes the status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hostkit_api::kinds::{
    Firewall, HostFacts, HostSpec, HostStatus, Object, PolicyWindowSpec, ProjectSpec, ServiceSpec,
};
use hostkit_api::meta::{ConditionStatus, Observed, find_condition};
use hostkit_engine::apply::{self, ApplyOptions};
use hostkit_engine::hosts::Hosts;
use hostkit_engine::outcome::Status;
use hostkit_engine::plan::{self, Prepared};
use hostkit_engine::resource::Resource;
use hostkit_engine::run::{self, Run};
use hostkit_engine::secrets::Secrets;
use hostkit_engine::transport::Transport;

use crate::metrics::HostLabels;
use crate::package_lock;
use crate::revision;
use crate::revision::history::{self, History, Revisions};
use crate::service::rollout::Failure;
use crate::{
    Action, Note, ObjectKey, Reconciler, Reconcilers, Result, dependents, held_ids, policy_window,
};

/// `status.lastSeen` moves at most this often (seconds).
pub const LAST_SEEN_EVERY_SECS: i64 = 60;

pub struct Input<'a> {
    pub name: &'a str,
    pub spec: &'a HostSpec,
    pub generation: i64,
    pub status: HostStatus,
    /// Firewalls of the Projects whose services run here.
    pub project_firewalls: Vec<(String, Firewall)>,
    /// The Services that run here, with their Projects: their telemetry intent makes the
    /// host's collector config (`spec.otelCollector`).
    pub services: Vec<(String, ServiceSpec, Option<ProjectSpec>)>,
    /// Windows apply to the host's own resources when they select the host and no
    /// particular services.
    pub windows: &'a [(String, PolicyWindowSpec)],
    /// Host labels, for window selectors.
    pub labels: &'a BTreeMap<String, String>,
    pub now: DateTime<Utc>,
    pub secrets: &'a Secrets,
    pub settle: std::time::Duration,
    /// Plan and report, but apply nothing (a rollback of this host is running).
    pub hold: Option<String>,
    /// Resource ids a Rollback with `only` put back: left out of plans until the spec
    /// changes, so that the next reconcile does not re-apply what was rolled back.
    pub held: Vec<String>,
    /// The package resources of the Services on this host: read for the package lock,
    /// never planned here.
    pub service_packages: Vec<Resource>,
    /// The `hostkit.dev/lock-update` annotation's value.
    pub lock_update: Option<String>,
}

pub struct Outcome {
    pub status: HostStatus,
    pub notes: Vec<Note>,
    pub reachable: bool,
    pub failure: Option<Failure>,
    /// When a window that holds the host's changes opens or closes.
    pub wake_at: Option<DateTime<Utc>>,
    /// An apply of new desired resources, for the host's history (corrective applies are
    /// not history).
    pub run: Option<Run>,
    /// Digest of the desired resources.
    pub digest: String,
}

/// One pass in progress.
struct Pass<'a> {
    input: &'a Input<'a>,
    at: Observed,
    status: HostStatus,
    notes: Vec<Note>,
    was_reachable: Option<bool>,
}

impl Pass<'_> {
    fn set(&mut self, type_: &str, ok: bool, reason: &str, message: impl Into<String>) {
        self.at
            .set(&mut self.status.conditions, type_, ok, reason, message);
    }

    /// Ends the pass with a failure; an unreachable host also says so (once, as an event).
    fn fail(self, message: String, terminal: bool, reachable: bool) -> Outcome {
        self.fail_as("Unreachable", message, terminal, reachable)
    }

    /// [`Pass::fail`] with the reason an unreachable host gets (`HostKeyChanged`, say).
    fn fail_as(
        mut self,
        unreachable: &'static str,
        message: String,
        terminal: bool,
        reachable: bool,
    ) -> Outcome {
        if !reachable {
            let said =
                self.status.conditions.iter().any(|c| {
                    c.type_ == "Reachable" && c.reason == unreachable && c.message == message
                });
            self.set("Reachable", false, unreachable, message.clone());
            if self.was_reachable != Some(false) || !said {
                self.notes.push(Note::warning(unreachable, message.clone()));
            }
        }
        let reason = if reachable {
            "ApplyFailed"
        } else {
            unreachable
        };
        self.set("Ready", false, reason, message.clone());
        Outcome {
            status: self.status,
            notes: self.notes,
            reachable,
            failure: Some(Failure { terminal, message }),
            wake_at: None,
            run: None,
            digest: String::new(),
        }
    }

    /// Facts, heartbeat and `Reachable` from a successful read.
    fn observed(&mut self, prepared: &Prepared, resources: usize) {
        let f = &prepared.facts;
        self.status.facts = Some(HostFacts {
            os_id: f.get("osId").cloned(),
            os_version: f.get("osVersion").cloned().filter(|v| !v.is_empty()),
            arch: f.get("arch").cloned(),
            package_manager: f.get("packageManager").cloned(),
            systemd_version: f.get("systemdVersion").cloned().filter(|v| !v.is_empty()),
            hostname: f.get("hostname").cloned(),
        });
        // Heartbeats are coarse (a minute), as Kubernetes node leases are: a status write
        // per host per resync would be most of the store's write load for no news.
        let now = self.input.now;
        if self
            .status
            .last_seen
            .is_none_or(|t| now - t >= chrono::Duration::seconds(LAST_SEEN_EVERY_SECS))
        {
            self.status.last_seen = Some(now);
        }
        self.set(
            "Reachable",
            true,
            "Connected",
            format!("read {resources} resource(s) in one round trip"),
        );
        if self.was_reachable == Some(false) {
            self.notes
                .push(Note::normal("Reachable", "the host answers again"));
        }
    }
}

/// One pass over a Host: connect, read, plan its own resources, apply them when allowed.
pub async fn converge(input: Input<'_>, hosts: &dyn Hosts, history: &dyn History) -> Outcome {
    let mut status = input.status.clone();
    status.observed_generation = Some(input.generation);
    let was_reachable =
        find_condition(&status.conditions, "Reachable").map(|c| c.status == ConditionStatus::True);
    let mut pass = Pass {
        input: &input,
        at: Observed::new(input.now, Some(input.generation)),
        status,
        notes: Vec::new(),
        was_reachable,
    };
    let projects: Vec<(&str, &Firewall)> = input
        .project_firewalls
        .iter()
        .map(|(n, f)| (n.as_str(), f))
        .collect();
    let services: Vec<(&str, &ServiceSpec, Option<&ProjectSpec>)> = input
        .services
        .iter()
        .map(|(n, s, p)| (n.as_str(), s, p.as_ref()))
        .collect();
    let expanded = hostkit_engine::expand::host_with_projects(input.name, input.spec, &projects)
        .and_then(|mut r| {
            r.extend(hostkit_engine::expand::telemetry(
                input.name, input.spec, &services,
            )?);
            Ok(r)
        });
    let resources = match expanded {
        Ok(r) => r,
        Err(e) => return pass.fail(e.to_string(), true, true),
    };
    // A new connection each pass: the host's key is checked again, so a changed key is
    // refused within one reconcile even while an older connection still works.
    let t = match hosts.verify(input.name, input.spec).await {
        Ok(t) => t,
        Err(e) => {
            use hostkit_engine::Error;
            // A changed key or refused credentials are usually fixed outside the Host spec
            // (known_hosts, the host's authorized_keys): retried with backoff, not stalled.
            let terminal = matches!(e, Error::Invalid { .. });
            let reason = if matches!(e, Error::HostKey { .. }) {
                "HostKeyChanged"
            } else {
                "Unreachable"
            };
            return pass.fail_as(reason, e.to_string(), terminal, false);
        }
    };
    let _guard = hosts.lock(input.name).await;
    let digest = plan::desired_digest(&resources);
    let previous = match settle_and_recall(&mut pass, history, t.as_ref(), &digest).await {
        Ok(previous) => previous,
        Err(e) => {
            hosts.forget(input.name);
            return pass.fail(e.to_string(), false, false);
        }
    };
    // The Services' packages are read too (never planned here): the lock records them.
    let own: BTreeSet<&str> = resources.iter().map(|r| r.id.as_str()).collect();
    let watched: Vec<Resource> = input
        .service_packages
        .iter()
        .filter(|r| !own.contains(r.id.as_str()))
        .cloned()
        .collect();
    let watched_ids: BTreeSet<String> = watched.iter().map(|r| r.id.clone()).collect();
    let read: Vec<Resource> = resources.iter().cloned().chain(watched).collect();
    let mut lock = pass.status.package_lock.clone().unwrap_or_default();
    let manager = pass
        .status
        .facts
        .as_ref()
        .and_then(|f| f.package_manager.clone());
    let asked = input.lock_update.as_deref();
    if let Some(note) = package_lock::update_if_asked(
        &mut lock,
        asked,
        t.as_ref(),
        manager.as_deref(),
        &read,
        input.now,
    )
    .await
    {
        pass.notes.push(note);
        pass.status.package_lock = Some(lock.clone());
    }
    let mut prepared = match plan::prepare_locked(
        t.as_ref(),
        &read,
        &previous,
        &lock.packages,
        &[],
        input.secrets,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            hosts.forget(input.name);
            return pass.fail(e.to_string(), false, false);
        }
    };
    prepared
        .plan
        .changes
        .retain(|c| !input.held.contains(&c.id) && !watched_ids.contains(&c.id));
    let manager = prepared
        .facts
        .get("packageManager")
        .cloned()
        .unwrap_or_default();
    package_lock::record(&mut lock, &read, &manager, &prepared.installed);
    pass.status.package_lock =
        (!lock.packages.is_empty() || lock.updated_for.is_some()).then_some(lock);
    pass.observed(&prepared, resources.len());
    let on_hold = input.spec.paused || input.hold.is_some();
    if prepared.plan.is_empty() {
        pass.status.applied_digest = Some(digest.clone());
    }
    let decision = if prepared.plan.is_empty() || on_hold {
        None
    } else {
        let none = BTreeMap::new();
        match policy_window::decide(
            input.windows,
            ("", &none),
            (input.name, input.labels),
            input.now,
        ) {
            Ok(d) => Some(d),
            Err(e) => return pass.fail(e.to_string(), true, true),
        }
    };
    let wake_at = decision.as_ref().and_then(|d| d.until);
    let blocked = decision
        .as_ref()
        .filter(|d| !d.allowed)
        .map(|d| d.message.clone());
    pass.set(
        "WindowBlocked",
        blocked.is_some(),
        if blocked.is_some() {
            "WindowClosed"
        } else {
            "NotBlocked"
        },
        blocked.clone().unwrap_or_else(|| "apply is allowed".into()),
    );
    if let Some(why) = &blocked {
        let message = format!("{}: {why}", prepared.plan.summary());
        pass.notes.push(Note::normal("WindowBlocked", message));
    }
    let mut run = None;
    if !prepared.plan.is_empty() && !on_hold && blocked.is_none() {
        let own = Own {
            prepared: &prepared,
            resources: &resources,
            digest: &digest,
        };
        match apply_own(&mut pass, t.as_ref(), own, hosts, history).await {
            Applying::Applied(r) => run = r,
            Applying::Failed { message, reached } => {
                let mut out = pass.fail(message, false, reached.is_some());
                if let Some(r) = reached {
                    out.run = r;
                    out.digest = digest;
                }
                return out;
            }
        }
    }
    let pending = (on_hold || blocked.is_some()) && !prepared.plan.is_empty();
    let reason = if !pending {
        "Converged"
    } else if on_hold {
        "Paused"
    } else {
        "WindowClosed"
    };
    let message = if pending {
        match &input.hold {
            Some(why) => format!("{why}; {}", prepared.plan.summary()),
            None => prepared.plan.summary(),
        }
    } else {
        "reachable, and its own resources are applied".into()
    };
    pass.set("Ready", !pending, reason, message);
    Outcome {
        status: pass.status,
        notes: pass.notes,
        reachable: true,
        failure: None,
        wake_at,
        run,
        digest,
    }
}

/// How applying the host's own resources went.
enum Applying {
    /// The run for history, when the apply changed something new.
    Applied(Option<Run>),
    /// The apply failed; `reached` holds the run of what did change when the host
    /// answered (`None`: the connection failed).
    Failed {
        message: String,
        reached: Option<Option<Run>>,
    },
}

/// Before planning (the host's lock held): settles what a crash left pending, and recalls
/// the resources of the spec the host last converged to, so that those the spec dropped
/// are deleted.
async fn settle_and_recall(
    pass: &mut Pass<'_>,
    history: &dyn History,
    t: &dyn Transport,
    digest: &str,
) -> crate::Result<Vec<hostkit_engine::resource::Resource>> {
    let name = pass.input.name;
    pass.notes
        .extend(history::settle_on(history, name, t).await?);
    let converged_to = pass.status.applied_digest.clone().filter(|d| d != digest);
    if converged_to.is_none() {
        return Ok(Vec::new());
    }
    Ok(history
        .applied(name, converged_to.as_deref())
        .await?
        .unwrap_or_default())
}

/// What [`apply_own`] applies.
struct Own<'a> {
    prepared: &'a Prepared,
    resources: &'a [hostkit_engine::resource::Resource],
    digest: &'a str,
}

/// Applies the host's own resources. An apply of a new spec is in history before it
/// starts and completed after; a repair of drift is not history and takes no backups.
async fn apply_own(
    pass: &mut Pass<'_>,
    t: &dyn Transport,
    own: Own<'_>,
    hosts: &dyn Hosts,
    history: &dyn History,
) -> Applying {
    let input = pass.input;
    let corrective = pass.status.applied_digest.as_deref() == Some(own.digest);
    let mut opts = ApplyOptions::new(hostkit_engine::naming::run_id(
        &format!("host-{}-g{}", input.name, input.generation),
        input.now,
    ));
    opts.settle = input.settle;
    opts.backups = !corrective;
    let mut number = None;
    if !corrective {
        let run = Run::provisional(&opts.revision, own.prepared, input.now);
        match history
            .begin(input.name, &run, own.digest, own.resources)
            .await
        {
            Ok(n) => number = Some(n),
            Err(e) => {
                return Applying::Failed {
                    message: format!("not applied: its history could not be written first: {e}"),
                    reached: Some(None),
                };
            }
        }
    }
    let a = match apply::apply(t, own.prepared, &opts).await {
        Ok(a) if a.lost => {
            hosts.forget(input.name);
            return Applying::Failed {
                message: a.error.unwrap_or_default(),
                reached: None,
            };
        }
        Ok(a) => a,
        Err(e) => {
            // A pending run stays in history; the next pass settles it from the journal.
            hosts.forget(input.name);
            return Applying::Failed {
                message: e.to_string(),
                reached: None,
            };
        }
    };
    let mut run = None;
    if let Some(n) = number {
        let r = Run::from_applied(&a, input.now);
        let recorded = if a.count(Status::Applied) == 0 {
            run::discard_backups(t, &a.revision).await;
            history.forget(input.name, &r.id, n).await
        } else {
            history.complete(input.name, &r, n).await
        };
        if let Err(e) = recorded {
            pass.notes.push(Note::warning(
                "HistoryNotRecorded",
                format!(
                    "the outcome of the apply was not recorded ({e}); the next reconcile settles it from the host's journal"
                ),
            ));
        }
        run = (a.count(Status::Applied) > 0).then_some(r);
    }
    if a.ok {
        pass.status.applied_digest = Some(own.digest.to_string());
        let message = format!(
            "applied {} change(s) of the host's own resources",
            a.results.len()
        );
        pass.notes.push(Note::normal("Applied", message));
        return Applying::Applied(run);
    }
    let message = a.error.unwrap_or_default();
    pass.notes
        .push(Note::warning("ApplyFailed", message.clone()));
    Applying::Failed {
        message,
        reached: Some(run),
    }
}

impl Reconcilers {
    /// The firewalls of the Projects whose Services run on `host`.
    fn project_firewalls(&self, host: &str) -> Vec<(String, Firewall)> {
        let mut out: Vec<(String, Firewall)> = Vec::new();
        for svc in self.ctx.list::<ServiceSpec>() {
            if !self.targets(&svc.spec).iter().any(|t| t.name == host) {
                continue;
            }
            if let Some(p) = &svc.spec.project
                && let Ok(Some(po)) = self.project(Some(p))
                && let Some(fw) = &po.spec.firewall
                && !out.iter().any(|(n, _)| n == p)
            {
                out.push((p.clone(), fw.clone()));
            }
        }
        out
    }

    /// The package resources of every Service that runs on `host`.
    fn service_packages(&self, host: &str) -> Vec<Resource> {
        self.ctx
            .list::<ServiceSpec>()
            .into_iter()
            .filter(|s| self.targets(&s.spec).iter().any(|t| t.name == host))
            .flat_map(|s| {
                hostkit_engine::expand::packages(&format!("Service/{}", s.name()), &s.spec.packages)
            })
            .collect()
    }

    /// The Services that run on `host`, with their Projects (when those exist).
    fn services_on(&self, host: &str) -> Vec<(String, ServiceSpec, Option<ProjectSpec>)> {
        self.ctx
            .list::<ServiceSpec>()
            .into_iter()
            .filter(|s| self.targets(&s.spec).iter().any(|t| t.name == host))
            .map(|s| {
                let project = self
                    .project(s.spec.project.as_deref())
                    .ok()
                    .flatten()
                    .map(|p| p.spec.clone());
                (s.name().to_string(), s.spec.clone(), project)
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Reconciler<HostSpec> for Reconcilers {
    async fn reconcile(&self, o: Arc<Object<HostSpec>>) -> Result<Action> {
        let name = o.name().to_string();
        let windows = self.windows();
        let now = self.ctx.now();
        let input = Input {
            name: &name,
            spec: &o.spec,
            generation: o.metadata.generation.unwrap_or(1),
            status: o.status.clone().unwrap_or_default(),
            project_firewalls: self.project_firewalls(&name),
            services: if o.spec.otel_collector.is_some() {
                self.services_on(&name)
            } else {
                Vec::new()
            },
            windows: &windows,
            labels: &o.metadata.labels,
            now,
            secrets: &self.secrets,
            settle: self.settle,
            hold: self.hold_of(&o.metadata.annotations),
            held: held_ids(&o.metadata),
            service_packages: self.service_packages(&name),
            lock_update: o
                .metadata
                .annotations
                .get(hostkit_api::wellknown::LOCK_UPDATE)
                .cloned(),
        };
        let history = Revisions {
            ctx: self.ctx.as_ref(),
            kind: "Host",
            name: &name,
            uid: o.metadata.uid.as_deref(),
            generation: o.metadata.generation.unwrap_or(1),
            spec: serde_json::to_value(&o.spec).expect("specs serialise"),
            source: revision::changed_by(&o.metadata),
            highest: o.status.as_ref().and_then(|s| s.current_revision),
        };
        let mut outcome = converge(input, self.hosts.as_ref(), &history).await;
        if outcome.run.is_some() {
            revision::prune(self.ctx.as_ref(), "Host", &name, 10).await;
        }
        if let Some(newest) = revision::revisions_of(self.ctx.as_ref(), "Host", &name).last() {
            outcome.status.current_revision = Some(newest.spec.revision);
        }
        self.metrics
            .host_up
            .get_or_create(&HostLabels { host: name.clone() })
            .set(outcome.reachable as i64);
        outcome.status.last_handled_requested_at = o
            .metadata
            .annotations
            .get(hostkit_api::wellknown::REQUESTED_AT)
            .cloned();
        self.ctx.write_status(&o, &outcome.status).await;
        self.ctx
            .note(
                <HostSpec as hostkit_api::KindSpec>::INFO,
                &name,
                &outcome.notes,
            )
            .await;
        Failure::or_resync(
            outcome.failure,
            o.spec.interval.as_ref(),
            outcome.wake_at,
            now,
        )
    }

    /// A deleted Host's history goes with it, once the Services being deleted with it are
    /// off the host: their cleanup needs this Host to reach it (`hkctl delete -f` of a file
    /// holding both deletes them in the same breath).
    async fn cleanup(&self, o: Arc<Object<HostSpec>>) -> Result<()> {
        // From the store, not the cache: a Service deleted a moment before this Host may
        // not have reached the cache yet.
        let mut waiting = Vec::new();
        for v in self
            .ctx
            .list_stored(<ServiceSpec as hostkit_api::KindSpec>::INFO)
            .await?
        {
            let Ok(s) = crate::context::decode::<ServiceSpec>(v, "Service") else {
                continue;
            };
            if s.metadata.deletion_timestamp.is_some()
                && self.applied_hosts(&s).iter().any(|a| a.host == o.name())
            {
                waiting.push(format!("Service/{}", s.name()));
            }
        }
        if !waiting.is_empty() {
            return Err(crate::Error::Retry(format!(
                "waiting for {} to be removed from this host first",
                waiting.join(", ")
            )));
        }
        revision::delete_all(self.ctx.as_ref(), "Host", o.name()).await;
        Ok(())
    }

    fn forget(&self, o: &Object<HostSpec>) {
        self.metrics.forget_host(o.name());
    }

    fn dependents(
        &self,
        before: Option<&Object<HostSpec>>,
        after: Option<&Object<HostSpec>>,
    ) -> Vec<ObjectKey> {
        dependents::of_host(self.ctx.as_ref(), before, after)
    }
}
