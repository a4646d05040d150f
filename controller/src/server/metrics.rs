//! The API server's Prometheus metrics, served at `/metrics` in OpenMetrics text.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub store: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<VerbLabels, Histogram>,
    pub watches: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub store_revision: Gauge<u64, AtomicU64>,
}

impl Metrics {
    pub fn new(store_backend: &str) -> Metrics {
        Self::with_controller(store_backend, &ControllerMetrics::default())
    }

    /// The API server's metrics plus the controller's, in one registry.
    pub fn with_controller(store_backend: &str, controller: &ControllerMetrics) -> Metrics {
        let mut registry = Registry::default();
        controller.register(&mut registry);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "hostkit_api_requests",
            "API requests by verb, resource and HTTP code",
            requests.clone(),
        );
        let latency = Family::<VerbLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "hostkit_api_request_duration_seconds",
            "API request latency (watches excluded)",
            latency.clone(),
        );
        let watches = Gauge::default();
        registry.register("hostkit_api_watches", "Open watch streams", watches.clone());
        let store_revision = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "hostkit_store_revision",
            "Newest store revision seen by this server",
            store_revision.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                store: store_backend.into(),
            })
            .set(1);
        registry.register(
            "hostkit_build_info",
            "Version and store backend of this server",
            build,
        );
        Metrics {
            registry,
            requests,
            latency,
            watches,
            store_revision,
        }
    }

    /// The metrics in OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub controller: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

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

/// The controller's metrics: controller-runtime's names under `hostkit_`, and HostKit's
/// own. Label values are object and host names only, never paths or resource ids.
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    pub reconcile_total: Family<ResultLabels, Counter>,
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    pub reconcile_time: Family<ControllerLabels, Histogram>,
    pub workqueue_depth: Gauge,
    pub workqueue_adds: Counter,
    pub workqueue_retries: Counter,
    pub workqueue_queue_duration: Histogram,
    pub leader: Gauge,
    pub drift: Family<ObjectHostLabels, Gauge>,
    pub pending: Family<ObjectHostLabels, Gauge>,
    pub applied: Family<IntentLabels, Counter>,
    pub host_up: Family<HostLabels, Gauge>,
    pub window_open: Family<WindowLabels, Gauge>,
    pub last_apply_success: Family<ObjectLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub resync_interval: Family<ObjectLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        ControllerMetrics {
            reconcile_total: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_time: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            workqueue_depth: Gauge::default(),
            workqueue_adds: Counter::default(),
            workqueue_retries: Counter::default(),
            workqueue_queue_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            leader: Gauge::default(),
            drift: Family::default(),
            pending: Family::default(),
            applied: Family::default(),
            host_up: Family::default(),
            window_open: Family::default(),
            last_apply_success: Family::default(),
            resync_interval: Family::default(),
        }
    }
}

impl ControllerMetrics {
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

    pub fn forget_host(&self, host: &str) {
        self.host_up.remove(&HostLabels { host: host.into() });
    }

    pub fn forget_window(&self, window: &str) {
        self.window_open.remove(&WindowLabels {
            window: window.into(),
        });
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "hostkit_reconcile",
            "Reconciles by controller and result",
            self.reconcile_total.clone(),
        );
        r.register(
            "hostkit_reconcile_errors",
            "Reconciles that failed",
            self.reconcile_errors.clone(),
        );
        r.register(
            "hostkit_reconcile_time_seconds",
            "Time per reconcile",
            self.reconcile_time.clone(),
        );
        r.register(
            "hostkit_workqueue_depth",
            "Objects waiting in the work queue",
            self.workqueue_depth.clone(),
        );
        r.register(
            "hostkit_workqueue_adds",
            "Objects added to the work queue",
            self.workqueue_adds.clone(),
        );
        r.register(
            "hostkit_workqueue_retries",
            "Objects requeued after an error",
            self.workqueue_retries.clone(),
        );
        r.register(
            "hostkit_workqueue_queue_duration_seconds",
            "Time an object waited in the queue after it was due",
            self.workqueue_queue_duration.clone(),
        );
        r.register(
            "hostkit_leader_election_master_status",
            "1 when this process is the leader that reconciles",
            self.leader.clone(),
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
    }
}
