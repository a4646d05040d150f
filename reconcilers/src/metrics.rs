//! What the reconcilers tell Prometheus about objects and hosts: drift, pending changes,
//! applied changes, hosts up, windows open. Label values are object and host names only,
//! never paths or resource ids. The controller registers these beside its runtime's own.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectHostLabels {
    pub kind: String,
    pub name: String,
    pub host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntentLabels {
    pub host: String,
    pub intent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabels {
    pub host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowLabels {
    pub window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MonitorLabels {
    pub kind: String,
    pub name: String,
    pub host: String,
    pub monitor: String,
    /// `critical` or `warning`: what an alert on it should page for.
    pub severity: String,
}

/// A phase of a reconcile's work on a host (`connect`, `read`, `plan`, `apply script`,
/// `unit start`, `settle`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub kind: String,
    pub phase: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

type PhaseHistogram = Family<PhaseLabels, Histogram, fn() -> Histogram>;

fn phase_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The reconcilers' metrics; cheap to clone (the families are shared).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// How long each phase of a reconcile's work on one host took.
    pub phase: PhaseHistogram,
    pub drift: Family<ObjectHostLabels, Gauge>,
    pub pending: Family<ObjectHostLabels, Gauge>,
    pub applied: Family<IntentLabels, Counter>,
    pub host_up: Family<HostLabels, Gauge>,
    pub window_open: Family<WindowLabels, Gauge>,
    pub last_apply_success: Family<ObjectLabels, FloatGauge>,
    pub resync_interval: Family<ObjectLabels, FloatGauge>,
    /// 1 passing, 0 failing; no series while a monitor's result is not known.
    pub monitor_up: Family<MonitorLabels, Gauge>,
    pub monitor_duration: Family<MonitorLabels, FloatGauge>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            phase: Family::new_with_constructor(phase_histogram),
            drift: Default::default(),
            pending: Default::default(),
            applied: Default::default(),
            host_up: Default::default(),
            window_open: Default::default(),
            last_apply_success: Default::default(),
            resync_interval: Default::default(),
            monitor_up: Default::default(),
            monitor_duration: Default::default(),
        }
    }
}

impl Metrics {
    /// Observes the phases of one host's share of a reconcile of a `kind`.
    pub fn observe_phases(&self, kind: &str, timings: &hostkit_engine::timings::Timings) {
        for (phase, d) in &timings.0 {
            self.phase
                .get_or_create(&PhaseLabels {
                    kind: kind.into(),
                    phase: (*phase).into(),
                })
                .observe(d.as_secs_f64());
        }
    }

    /// Drops an object's per-host series on `hosts` (it left them, or is gone): a stale
    /// `hostkit_drift 1` would page someone about a service that no longer exists.
    pub fn forget_object_on(&self, kind: &str, name: &str, hosts: &[String]) {
        for host in hosts {
            let l = ObjectHostLabels {
                kind: kind.into(),
                name: name.into(),
                host: host.clone(),
            };
            self.drift.remove(&l);
            self.pending.remove(&l);
        }
    }

    /// Drops every series of a deleted object.
    pub fn forget_object(&self, kind: &str, name: &str, hosts: &[String]) {
        self.forget_object_on(kind, name, hosts);
        let l = ObjectLabels {
            kind: kind.into(),
            name: name.into(),
        };
        self.last_apply_success.remove(&l);
        self.resync_interval.remove(&l);
    }

    /// Drops one monitor's series on one host.
    pub fn forget_monitor(&self, l: &MonitorLabels) {
        self.monitor_up.remove(l);
        self.monitor_duration.remove(l);
    }

    pub fn forget_host(&self, host: &str) {
        self.host_up.remove(&HostLabels { host: host.into() });
    }

    pub fn forget_window(&self, window: &str) {
        self.window_open.remove(&WindowLabels {
            window: window.into(),
        });
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "hostkit_reconcile_phase_seconds",
            "How long each phase of a reconcile's work on one host took (connect, read, plan, apply script, unit start, settle)",
            self.phase.clone(),
        );
        r.register(
            "hostkit_drift",
            "1 when the host no longer matches the applied generation",
            self.drift.clone(),
        );
        r.register(
            "hostkit_plan_pending_changes",
            "Changes the current plan would make",
            self.pending.clone(),
        );
        r.register(
            "hostkit_changes_applied",
            "Changes applied, by intent",
            self.applied.clone(),
        );
        r.register(
            "hostkit_host_up",
            "1 when the host answered its last reconcile",
            self.host_up.clone(),
        );
        r.register(
            "hostkit_policy_window_open",
            "1 while the window is open",
            self.window_open.clone(),
        );
        r.register(
            "hostkit_last_apply_success_timestamp_seconds",
            "Unix time the object was last known applied and converged on all its hosts",
            self.last_apply_success.clone(),
        );
        r.register(
            "hostkit_resync_interval_seconds",
            "The object's resync interval (spec.interval)",
            self.resync_interval.clone(),
        );
        r.register(
            "hostkit_monitor_up",
            "1 when the monitor passes on the host, 0 when it fails (past its thresholds); absent while not known",
            self.monitor_up.clone(),
        );
        r.register(
            "hostkit_monitor_duration_seconds",
            "How long the monitor's last run on the host took",
            self.monitor_duration.clone(),
        );
    }
}
