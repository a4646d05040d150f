//! The Service reconciler: plan, apply, report, and undo on deletion.
//!
//! [`rollout`] is one reconcile pass (expand, plan every host, apply in waves inside policy
//! windows, conclude the conditions) on plain inputs; this module gathers those inputs from
//! the cache, persists what the pass reports (status, events, Revisions) and publishes the
//! metrics. [`cleanup`] undoes a deleted Service on its hosts; [`live_plan`] is
//! `hkctl plan`.

pub mod backups;
pub mod cleanup;
mod conditions;
mod health;
pub mod live_plan;
pub mod logs;
pub mod rollout;
pub mod source;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hostkit_api::KindSpec;
use hostkit_api::kinds::{HostSpec, Object, PolicyWindowSpec, ServiceSpec, ServiceStatus};

use crate::metrics::{IntentLabels, MonitorLabels, ObjectHostLabels, ObjectLabels};
use crate::revision::{self, history::Revisions};
use crate::{
    Action, Note, ObjectKey, Reconciler, Reconcilers, Result, dependents, held_ids, resync_interval,
};
use rollout::{Failure, Input, Report, Sink, Target};

const KIND: &str = "Service";

/// The hosts a Service's status reports on.
pub(crate) fn status_hosts(service: &Object<ServiceSpec>) -> Vec<String> {
    service
        .status
        .iter()
        .flat_map(|s| s.hosts.iter().map(|h| h.host.clone()))
        .collect()
}

/// Persists a rollout's reports on the Service, and its runs in the Service's history.
struct StatusSink<'a> {
    r: &'a Reconcilers,
    service: &'a Object<ServiceSpec>,
}

#[async_trait::async_trait]
impl Sink for StatusSink<'_> {
    async fn publish(&self, status: &ServiceStatus, notes: &[Note]) {
        let ctx = self.r.ctx.as_ref();
        ctx.write_status(self.service, status).await;
        ctx.note(ServiceSpec::INFO, self.service.name(), notes)
            .await;
    }
}

impl Reconcilers {
    /// The history of `o`, as its passes write it.
    pub(crate) fn history_of<'a>(&'a self, o: &'a Object<ServiceSpec>) -> Revisions<'a> {
        Revisions {
            ctx: self.ctx.as_ref(),
            kind: KIND,
            name: o.name(),
            uid: o.metadata.uid.as_deref(),
            generation: o.metadata.generation.unwrap_or(1),
            spec: serde_json::to_value(&o.spec).expect("specs serialise"),
            source: revision::changed_by(&o.metadata),
            highest: o.status.as_ref().and_then(|s| s.current_revision),
        }
    }

    /// Every host `o` may have left something on: those its status says it applied to,
    /// and those its history has runs on (an apply that failed part way, or whose status
    /// write was lost), each with its Host object if that still exists (also while it is
    /// being deleted) and the digest the host last converged to.
    pub(crate) fn applied_hosts(&self, o: &Object<ServiceSpec>) -> Vec<cleanup::Applied> {
        let status = o.status.clone().unwrap_or_default();
        let mut names: Vec<String> = status
            .hosts
            .iter()
            .filter(|h| h.last_applied_generation.is_some())
            .map(|h| h.host.clone())
            .collect();
        for r in revision::revisions_of(self.ctx.as_ref(), KIND, o.name()) {
            for h in &r.spec.hosts {
                if !h.runs.is_empty() && !names.contains(&h.host) {
                    names.push(h.host.clone());
                }
            }
        }
        names
            .into_iter()
            .map(|name| cleanup::Applied {
                spec: self.ctx.cached::<HostSpec>(&name).map(|h| h.spec.clone()),
                digest: status
                    .hosts
                    .iter()
                    .find(|h| h.host == name)
                    .and_then(|h| h.applied_digest.clone()),
                host: name,
            })
            .collect()
    }

    /// The Hosts a Service selects now (not those being deleted).
    pub(crate) fn targets(&self, spec: &ServiceSpec) -> Vec<Target> {
        self.ctx
            .list::<HostSpec>()
            .into_iter()
            .filter(|h| h.metadata.deletion_timestamp.is_none())
            .filter(|h| spec.selects(h.name(), &h.metadata.labels))
            .map(|h| Target {
                name: h.name().to_string(),
                spec: h.spec.clone(),
                labels: h.metadata.labels.clone(),
                lock: h
                    .status
                    .as_ref()
                    .and_then(|s| s.package_lock.as_ref())
                    .map(|l| l.packages.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Every PolicyWindow, by name.
    pub(crate) fn windows(&self) -> Vec<(String, PolicyWindowSpec)> {
        self.ctx
            .list::<PolicyWindowSpec>()
            .into_iter()
            .map(|w| (w.name().to_string(), w.spec.clone()))
            .collect()
    }

    /// What a rollout of `o` starts from.
    pub(crate) fn rollout_input<'a>(
        &'a self,
        o: &'a Object<ServiceSpec>,
        project: Option<&'a hostkit_api::kinds::ProjectSpec>,
        windows: &'a [(String, PolicyWindowSpec)],
    ) -> Input<'a> {
        Input {
            name: o.name(),
            labels: &o.metadata.labels,
            spec: &o.spec,
            generation: o.metadata.generation.unwrap_or(1),
            project,
            targets: self.targets(&o.spec),
            status: o.status.clone().unwrap_or_default(),
            windows,
            now: self.ctx.now(),
            secrets: &self.secrets,
            settle: self.settle,
            hold: self.hold_of(&o.metadata.annotations),
            recheck_hold: None,
            revisions: revision::revisions_of(self.ctx.as_ref(), KIND, o.name())
                .iter()
                .filter_map(|r| Some((r.spec.revision, r.spec.desired_digest.clone()?)))
                .collect(),
            held: held_ids(&o.metadata),
            requested: o
                .metadata
                .annotations
                .get(hostkit_api::wellknown::REQUESTED_AT)
                .cloned(),
            resume: o
                .metadata
                .annotations
                .get(hostkit_api::wellknown::ROLLOUT_RESUME)
                .cloned(),
            abort: o
                .metadata
                .annotations
                .get(hostkit_api::wellknown::ROLLOUT_ABORT)
                .cloned(),
            analyst: self.analyst.as_ref(),
            source: Default::default(),
        }
    }

    /// Publishes what a reconcile found, per host and for the Service.
    fn publish_metrics(&self, o: &Object<ServiceSpec>, report: &Report, now: DateTime<Utc>) {
        let name = o.name();
        let left: Vec<String> = status_hosts(o)
            .into_iter()
            .filter(|h| !report.hosts.iter().any(|r| &r.host == h))
            .collect();
        self.metrics.forget_object_on(KIND, name, &left);
        for h in &report.hosts {
            self.metrics.observe_phases(KIND, &h.timings);
            let labels = ObjectHostLabels {
                kind: KIND.into(),
                name: name.into(),
                host: h.host.clone(),
            };
            self.metrics
                .drift
                .get_or_create(&labels)
                .set(h.drifted as i64);
            self.metrics
                .pending
                .get_or_create(&labels)
                .set(h.pending as i64);
            if let Some((intent, n)) = h.applied {
                self.metrics
                    .applied
                    .get_or_create(&IntentLabels {
                        host: h.host.clone(),
                        intent: intent.as_str().into(),
                    })
                    .inc_by(n as u64);
            }
        }
        self.publish_monitor_metrics(o, report);
        let object = ObjectLabels {
            kind: KIND.into(),
            name: name.into(),
        };
        self.metrics
            .resync_interval
            .get_or_create(&object)
            .set(resync_interval(o.spec.interval.as_ref()).as_secs_f64());
        let ready = report.failure.is_none()
            && !report.hosts.is_empty()
            && report.hosts.iter().all(|h| h.reachable && h.pending == 0);
        if ready {
            self.metrics
                .last_apply_success
                .get_or_create(&object)
                .set(now.timestamp() as f64);
        }
    }
}

impl Reconcilers {
    /// `hostkit_monitor_up` and `_duration_seconds` per host and monitor; the series of a
    /// monitor (or host) the Service no longer has go, as do those whose result is unknown.
    fn publish_monitor_metrics(&self, o: &Object<ServiceSpec>, report: &Report) {
        let labels =
            |host: &str, m: &hostkit_api::kinds::MonitorStatus| monitor_labels(o.name(), host, m);
        let now: Vec<MonitorLabels> = report
            .status
            .hosts
            .iter()
            .flat_map(|h| h.monitors.iter().map(|m| labels(&h.host, m)))
            .collect();
        for h in o.status.iter().flat_map(|s| s.hosts.iter()) {
            for m in &h.monitors {
                let l = labels(&h.host, m);
                if !now.contains(&l) {
                    self.metrics.forget_monitor(&l);
                }
            }
        }
        let labels_of = |host: &str, monitor: &str| {
            report
                .status
                .hosts
                .iter()
                .filter(|h| h.host == host)
                .flat_map(|h| h.monitors.iter())
                .find(|m| m.name == monitor)
                .map(|m| labels(host, m))
        };
        for h in &report.status.hosts {
            for m in &h.monitors {
                let l = labels(&h.host, m);
                match m.ok {
                    Some(ok) => {
                        self.metrics.monitor_up.get_or_create(&l).set(ok as i64);
                    }
                    None => {
                        self.metrics.monitor_up.remove(&l);
                    }
                }
            }
        }
        for h in &report.hosts {
            for (monitor, took) in &h.monitor_durations {
                if let Some(l) = labels_of(&h.host, monitor) {
                    self.metrics
                        .monitor_duration
                        .get_or_create(&l)
                        .set(took.as_secs_f64());
                }
            }
        }
    }
}

fn monitor_labels(
    service: &str,
    host: &str,
    m: &hostkit_api::kinds::MonitorStatus,
) -> MonitorLabels {
    MonitorLabels {
        kind: KIND.into(),
        name: service.into(),
        host: host.into(),
        monitor: m.name.clone(),
        severity: match m.severity {
            hostkit_api::kinds::Severity::Critical => "critical".into(),
            hostkit_api::kinds::Severity::Warning => "warning".into(),
        },
    }
}

#[async_trait::async_trait]
impl Reconciler<ServiceSpec> for Reconcilers {
    async fn reconcile(&self, o: Arc<Object<ServiceSpec>>) -> Result<Action> {
        let project = self.project(o.spec.project.as_deref())?;
        let windows = self.windows();
        let recheck = || self.current_hold::<ServiceSpec>(o.name());
        let mut input = self.rollout_input(&o, project.as_ref().map(|p| &p.spec), &windows);
        input.recheck_hold = Some(&recheck);
        let previous = o.status.as_ref().and_then(|s| s.source.as_ref());
        let recorded = source::recorded(self.ctx.as_ref(), o.name(), &o.spec);
        input.source = source::resolve(&o.spec, previous, recorded, &self.secrets, input.now).await;
        input.source.protect = source::needed(self.ctx.as_ref(), o.name());
        let now = input.now;
        let sink = StatusSink {
            r: self,
            service: &o,
        };
        let history = self.history_of(&o);
        let report = rollout::reconcile(input, self.hosts.as_ref(), &sink, &history).await;
        for h in &report.hosts {
            if let Some(undone) = h.auto_rollback.as_ref().filter(|u| u.ok) {
                let why = report
                    .failure
                    .as_ref()
                    .map(|f| f.message.clone())
                    .unwrap_or_default();
                crate::rollback::record_auto_rollback(
                    self.ctx.as_ref(),
                    &o,
                    &h.host,
                    &why,
                    &undone.coverage,
                )
                .await;
            }
        }
        for h in &report.hosts {
            if let Some((undone, why)) = h.gate_rollback.as_ref().filter(|(u, _)| u.ok) {
                let reason = if why.starts_with("aborted") {
                    "Aborted"
                } else {
                    "Unhealthy"
                };
                crate::rollback::record_rollback_done(
                    self.ctx.as_ref(),
                    &o,
                    &h.host,
                    reason,
                    why,
                    &undone.coverage,
                )
                .await;
            }
        }
        for h in report.hosts.iter().filter(|h| h.unlocked) {
            self.ctx.wake(
                crate::context::ObjectKey::of::<HostSpec>(&h.host),
                std::time::Duration::from_millis(200),
            );
        }
        if report.hosts.iter().any(|h| h.run.is_some()) {
            let limit = o.spec.revision_history_limit.unwrap_or(10);
            revision::prune(self.ctx.as_ref(), KIND, o.name(), limit).await;
        }
        self.publish_metrics(&o, &report, now);
        Failure::or_resync(
            report.failure,
            o.spec.interval.as_ref(),
            report.wake_at,
            now,
        )
    }

    /// Undoes a deleted Service on its hosts, from what its Revisions say was applied, then
    /// deletes its history.
    async fn cleanup(&self, o: Arc<Object<ServiceSpec>>) -> Result<()> {
        let on = self.applied_hosts(&o);
        if !on.is_empty() {
            let project = self.project(o.spec.project.as_deref()).ok().flatten();
            let windows = self.windows();
            let input = self.rollout_input(&o, project.as_ref().map(|p| &p.spec), &windows);
            let sink = StatusSink {
                r: self,
                service: &o,
            };
            let history = self.history_of(&o);
            cleanup::cleanup(input, &on, self.hosts.as_ref(), &sink, &history).await?;
        }
        revision::delete_all(self.ctx.as_ref(), KIND, o.name()).await;
        Ok(())
    }

    fn forget(&self, o: &Object<ServiceSpec>) {
        self.metrics.forget_object(KIND, o.name(), &status_hosts(o));
        for h in o.status.iter().flat_map(|s| s.hosts.iter()) {
            for m in &h.monitors {
                self.metrics
                    .forget_monitor(&monitor_labels(o.name(), &h.host, m));
            }
        }
    }

    fn dependents(
        &self,
        before: Option<&Object<ServiceSpec>>,
        after: Option<&Object<ServiceSpec>>,
    ) -> Vec<ObjectKey> {
        dependents::of_service(self.ctx.as_ref(), before, after)
    }
}
