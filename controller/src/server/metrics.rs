//! The API server's Prometheus metrics, served at `/metrics` in OpenMetrics text, in one
//! registry with whatever the controller registers beside them.

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
        Self::with(store_backend, |_| {})
    }

    /// The API server's metrics plus those `add` registers (the controller's runtime and
    /// reconcilers), in one registry.
    pub fn with(store_backend: &str, add: impl FnOnce(&mut Registry)) -> Metrics {
        let mut registry = Registry::default();
        add(&mut registry);
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
