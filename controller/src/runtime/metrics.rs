//! The runtime's own metrics, under controller-runtime's names with a `hostkit_` prefix:
//! reconciles by result and time, the work queue, leadership.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub controller: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// Cheap to clone: the families are shared.
#[derive(Clone, Debug)]
pub struct RuntimeMetrics {
    pub reconcile_total: Family<ResultLabels, Counter>,
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    pub reconcile_time: Family<ControllerLabels, Histogram>,
    pub reconcile_panics: Family<ControllerLabels, Counter>,
    pub workqueue_depth: Gauge,
    pub workqueue_adds: Counter,
    pub workqueue_retries: Counter,
    pub workqueue_queue_duration: Histogram,
    pub leader: Gauge,
}

impl Default for RuntimeMetrics {
    fn default() -> Self {
        RuntimeMetrics {
            reconcile_total: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_panics: Family::default(),
            reconcile_time: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            workqueue_depth: Gauge::default(),
            workqueue_adds: Counter::default(),
            workqueue_retries: Counter::default(),
            workqueue_queue_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            leader: Gauge::default(),
        }
    }
}

impl RuntimeMetrics {
    pub fn register(&self, r: &mut Registry) {
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
            "hostkit_reconcile_panics",
            "Reconciles that panicked (the object is Stalled; the worker lives on)",
            self.reconcile_panics.clone(),
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
    }
}
