//! `hostkit-reconcilers`: what each kind means to the controller. One module per kind the
//! controller reconciles: [`host`], [`service`], [`rollback`], [`revision`], [`gitsource`],
//! [`instance`], [`policy_window`], [`project`]; plus [`context`] (the trait through which a reconciler
//! reads the cache and writes status, events and Revisions) and [`dependents`] (which
//! change wakes which objects).
//!
//! Where to start reading: [`Reconciler`] is what the runtime calls for each object;
//! [`Reconcilers`] implements it once per kind. [`service`] is the heart: expand, plan every
//! host, apply in waves inside policy windows, record history, report conditions.
//!
//! Not here: the store, the queue and the watchers (`hostkit-controller`'s runtime), and
//! anything that touches a host directly (`hostkit-engine`): reconcilers reach the store only
//! through [`Context`] and hosts only through the engine.

pub mod analysis;
pub mod context;
pub mod dependents;
pub mod error;
pub mod gitsource;
pub mod host;
pub mod instance;
pub mod metrics;
mod package_lock;
pub mod policy_window;
pub mod project;
pub mod revision;
pub mod rollback;
pub mod service;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hostkit_api::kinds::{KindSpec, Object, ProjectSpec};
use hostkit_api::wellknown;
use hostkit_engine::hosts::{Hosts, Pool};
use hostkit_engine::instance::Nspawn;
use hostkit_engine::secrets::Secrets;

pub use context::{Context, Note, ObjectKey};
pub use error::{Error, Result};
pub use instance::Machines;
pub use metrics::Metrics;

/// What a reconciler wants next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    /// Look again after this long (resync, or a window opening).
    Requeue(Duration),
    /// Nothing until the object changes.
    AwaitChange,
}

/// What the runtime calls for objects of one kind.
#[async_trait::async_trait]
pub trait Reconciler<K: KindSpec>: Send + Sync + 'static {
    /// Reconciles one object (the newest from the cache).
    async fn reconcile(&self, object: Arc<Object<K>>) -> Result<Action>;

    /// Cleans up a deleted object before its finalizer is removed.
    async fn cleanup(&self, _object: Arc<Object<K>>) -> Result<()> {
        Ok(())
    }

    /// Drops what the controller itself keeps for a deleted object (metric series, file
    /// watches, caches on its own disk): after `cleanup`, and also after an orphan delete,
    /// which leaves the hosts alone but not the controller's own state.
    fn forget(&self, _object: &Object<K>) {}

    /// Other objects to reconcile when an object of this kind changes from `before` to
    /// `after` (`None`: did not exist / was deleted), e.g. the services on a host.
    fn dependents(
        &self,
        _before: Option<&Object<K>>,
        _after: Option<&Object<K>>,
    ) -> Vec<ObjectKey> {
        Vec::new()
    }

    /// Trims an object before the runtime caches it: fields no reconcile decides on, which
    /// the one reconciler that needs them reads from the store (memory grows with the
    /// cache).
    fn slim(&self, _object: &mut Object<K>) {}
}

/// The settings of `hostkit serve` the reconcilers use.
pub struct Setup {
    /// How long a restarted unit must stay active.
    pub settle: Duration,
    /// The data folder: git caches live under `gitsources/`, machines under `instances/`.
    pub data_dir: PathBuf,
    /// Images Instances may boot, by name: a root folder or a `.tar`/`.tar.zst`.
    pub images: Vec<(String, PathBuf)>,
    /// The Prometheus `rollout.analysis` asks unless a query names its own.
    pub prometheus_url: Option<String>,
}

/// The reconcilers' SSH connections and per-host apply locks, shared with what else
/// changes a host from the controller (a backup restore).
pub type SharedHosts = Arc<dyn Hosts>;

/// Every kind's reconciler: one value implementing [`Reconciler`] for each kind it knows.
pub struct Reconcilers {
    pub(crate) ctx: Arc<dyn Context>,
    pub(crate) hosts: Arc<dyn Hosts>,
    pub(crate) secrets: Secrets,
    pub(crate) settle: Duration,
    pub(crate) machines: Arc<Machines>,
    pub(crate) data_dir: PathBuf,
    pub(crate) folders: gitsource::FolderWatches,
    pub(crate) analyst: Arc<dyn analysis::Analyst>,
    pub metrics: Metrics,
}

impl Reconcilers {
    /// The reconcilers over `ctx`, with their own SSH connections and machine backends
    /// (a machine that exits wakes its Instance within a second).
    pub fn new(ctx: Arc<dyn Context>, metrics: Metrics, setup: Setup) -> Reconcilers {
        let wake = ctx.clone();
        let nspawn = Nspawn::new(
            setup.images.into_iter().collect(),
            setup.data_dir.join("instances"),
        )
        .on_exit(Arc::new(move |name: &str| {
            wake.wake(
                ObjectKey::of::<hostkit_api::kinds::InstanceSpec>(name),
                Duration::from_secs(1),
            )
        }));
        Reconcilers {
            ctx,
            hosts: Arc::new(Pool::default()),
            secrets: Secrets::keyed(),
            settle: setup.settle,
            machines: Arc::new(Machines::new(nspawn)),
            data_dir: setup.data_dir,
            folders: Default::default(),
            analyst: Arc::new(analysis::Prometheus::new(setup.prometheus_url)),
            metrics,
        }
    }

    /// The SSH connections and per-host apply locks the reconcilers use: what else changes
    /// a host (a backup restore) holds the same lock.
    pub fn hosts(&self) -> SharedHosts {
        self.hosts.clone()
    }

    /// The Project a spec names, from the cache; a missing one is retried (it may be
    /// applied after the Service that names it).
    pub(crate) fn project(&self, name: Option<&str>) -> Result<Option<Arc<Object<ProjectSpec>>>> {
        match name {
            None => Ok(None),
            Some(p) => match self.ctx.cached::<ProjectSpec>(p) {
                Some(o) => Ok(Some(o)),
                None => Err(Error::Retry(format!("Project/{p} does not exist (yet)"))),
            },
        }
    }

    /// `Rollback/x is running` when the annotations name a Rollback that has not finished.
    pub(crate) fn hold_of(&self, annotations: &BTreeMap<String, String>) -> Option<String> {
        annotations
            .get(wellknown::ROLLBACK_IN_PROGRESS)
            .filter(|rb| rollback::running(self.ctx.as_ref(), rb))
            .map(|rb| format!("Rollback/{rb} is running"))
    }

    /// The hold on an object as the cache sees it now.
    pub(crate) fn current_hold<K: KindSpec>(&self, name: &str) -> Option<String> {
        let o = self.ctx.cached::<K>(name)?;
        self.hold_of(&o.metadata.annotations)
    }
}

/// The ids a Rollback with `only` holds back, while the spec is the one it held them at.
pub(crate) fn held_ids(meta: &hostkit_api::ObjectMeta) -> Vec<String> {
    meta.annotations
        .get(wellknown::HELD)
        .and_then(|v| wellknown::parse_held(v))
        .filter(|(g, _)| Some(*g) == meta.generation)
        .map(|(_, ids)| ids)
        .unwrap_or_default()
}

/// `d` ± 10 %: objects created together do not resync together.
pub fn jitter(d: Duration) -> Duration {
    let f = 0.9 + rand::random::<f64>() * 0.2;
    d.mul_f64(f)
}

/// How long until the next resync of an object with `interval`, or sooner when something
/// changes by itself at `wake_at` (a window opening); the one place that knows the
/// default interval.
pub(crate) fn next_resync(
    interval: Option<&hostkit_api::values::Duration>,
    wake_at: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Duration {
    let mut next = jitter(resync_interval(interval));
    if let Some(at) = wake_at {
        next = next.min(until(at, now));
    }
    next
}

/// The resync interval of an object (60 s unless its spec says).
pub(crate) fn resync_interval(interval: Option<&hostkit_api::values::Duration>) -> Duration {
    interval
        .map(|d| d.as_std())
        .unwrap_or(Duration::from_secs(60))
}

/// From `now` until just after `at` (a transition is acted on once it has happened).
pub(crate) fn until(
    at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Duration {
    (at - now).to_std().unwrap_or_default() + Duration::from_millis(50)
}
