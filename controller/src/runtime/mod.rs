//! The controller runtime, kube-runtime's pipeline in small pieces: per kind a
//! [`watcher`] (list, then watch, resume, re-list on compaction) feeds the typed [`cache`]
//! and the one work [`queue`]; workers take objects off the queue and run the kind's
//! reconciler, with [`finalizer`]s guarding deletes, [`backoff`] after failures, a requeue
//! for resyncs, and the [`leader`] lease gating who reconciles at all. [`metrics`] says
//! how it goes.
//!
//! It knows nothing of files or systemd: what a reconcile does is up to the
//! `hostkit_reconcilers::Reconciler` registered for each kind with [`Runtime::control`].

pub mod backoff;
pub mod cache;
pub mod finalizer;
pub mod health;
pub mod leader;
pub mod metrics;
mod panics;
pub mod queue;
pub mod watcher;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};
use hostkit_api::kinds::{KindInfo, KindSpec, Object};
use hostkit_reconcilers::{Action, ObjectKey, Reconciler};
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::error::Error;
use crate::objects::{ObjectEvent, Objects, Selectors};
use cache::{Cache, KindCache};
use finalizer::Step as Finalize;
use metrics::{ControllerLabels, ResultLabels, RuntimeMetrics};
use queue::Queue;
use watcher::{Event, Source, Step, Watcher};

pub struct Options {
    /// Reconciles running at once, across all kinds.
    pub concurrency: usize,
}

/// One watched and reconciled kind, whatever its type.
#[async_trait::async_trait]
trait Controlled: Send + Sync {
    fn info(&self) -> &'static KindInfo;
    /// Feeds the cache and the queue until `stop`.
    async fn watch(self: Arc<Self>, rt: Arc<Runtime>, stop: watch::Receiver<bool>);
    /// Runs the object's next step (finalizer, reconcile or cleanup) and queues what follows.
    async fn process(&self, rt: &Runtime, key: &ObjectKey);
}

/// Kind `K`'s cache and reconciler.
struct Kind<K: KindSpec> {
    cache: Arc<KindCache<K>>,
    reconciler: Arc<dyn Reconciler<K>>,
}

/// The running controller.
pub struct Runtime {
    pub objects: Objects,
    pub cache: Arc<Cache>,
    pub queue: Arc<Queue>,
    pub metrics: RuntimeMetrics,
    /// Whether the workers can make progress (`/readyz`).
    pub health: health::Health,
    kinds: Mutex<Vec<Arc<dyn Controlled>>>,
}

impl Runtime {
    pub fn new(objects: Objects, metrics: RuntimeMetrics) -> Arc<Runtime> {
        Arc::new(Runtime {
            objects,
            cache: Arc::new(Cache::default()),
            queue: Arc::new(Queue::default()),
            metrics,
            health: health::Health::default(),
            kinds: Mutex::new(Vec::new()),
        })
    }

    /// Watches kind `K` and reconciles its objects with `reconciler` (before [`Runtime::run`]).
    pub fn control<K: KindSpec>(&self, reconciler: Arc<dyn Reconciler<K>>) {
        let kind = Kind {
            cache: self.cache.kind::<K>(),
            reconciler,
        };
        self.kinds
            .lock()
            .expect("not poisoned")
            .push(Arc::new(kind));
    }

    /// Reconciles `key` after `after`.
    pub fn wake(&self, key: ObjectKey, after: Duration) {
        self.queue.add(key, Instant::now() + after, &self.metrics);
    }

    /// Runs watchers (always, so the cache is warm on followers) and, while `leading`,
    /// workers. Returns after `stop` flips and in-flight reconciles finished.
    pub async fn run(
        self: Arc<Self>,
        options: Options,
        mut leading: watch::Receiver<bool>,
        stop: watch::Receiver<bool>,
    ) {
        let kinds: Vec<Arc<dyn Controlled>> = self.kinds.lock().expect("not poisoned").clone();
        for kind in &kinds {
            tokio::spawn(kind.clone().watch(self.clone(), stop.clone()));
        }
        let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let mut workers = Vec::new();
        for _ in 0..options.concurrency.max(1) {
            let rt = self.clone();
            let mut stop = stop.clone();
            let mut leading = leading.clone();
            let permits = permits.clone();
            let kinds = kinds.clone();
            workers.push(tokio::spawn(async move {
                let _alive = rt.health.worker();
                loop {
                    // Only the leader reconciles.
                    tokio::select! {
                        r = leading.wait_for(|l| *l) => { if r.is_err() { return; } }
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    let Some(key) = rt.queue.next(&mut stop, &rt.metrics).await else {
                        return;
                    };
                    if !*leading.borrow() {
                        rt.queue.add(key.clone(), Instant::now(), &rt.metrics);
                        rt.queue.done(&key);
                        continue;
                    }
                    let _permit = permits.acquire().await;
                    if let Some(kind) = kinds.iter().find(|k| k.info() == key.kind()) {
                        kind.process(&rt, &key).await;
                    }
                    rt.queue.done(&key);
                }
            }));
        }
        let _ = leading.borrow_and_update();
        for w in workers {
            let _ = w.await;
        }
    }

    /// Queues what follows a reconcile: a requeue, a retry with backoff, or nothing.
    fn follow(
        &self,
        kind: &'static KindInfo,
        key: &ObjectKey,
        generation: i64,
        started: std::time::Instant,
        result: Result<Action, Error>,
    ) {
        let labels = ControllerLabels {
            controller: kind.singular.to_string(),
        };
        self.metrics
            .reconcile_time
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        let (result_label, failed) = match &result {
            Ok(Action::Requeue(d)) if d.is_zero() => ("requeue", false),
            Ok(_) => ("success", false),
            Err(_) => ("error", true),
        };
        self.metrics
            .reconcile_total
            .get_or_create(&ResultLabels {
                controller: kind.singular.to_string(),
                result: result_label.into(),
            })
            .inc();
        let failures = self.queue.outcome(key, generation, failed);
        match result {
            Ok(Action::Requeue(d)) => self.wake(key.clone(), d),
            Ok(Action::AwaitChange) => {}
            Err(e) if e.is_terminal() => {
                self.metrics.reconcile_errors.get_or_create(&labels).inc();
                tracing::warn!(kind = kind.kind, name = %key.name, error = %e, "reconcile stalled until the spec changes");
            }
            Err(e) => {
                self.metrics.reconcile_errors.get_or_create(&labels).inc();
                self.metrics.workqueue_retries.inc();
                let delay = backoff::error_backoff(failures);
                tracing::warn!(kind = kind.kind, name = %key.name, error = %e, retry_in = ?delay, "reconcile failed");
                self.wake(key.clone(), delay);
            }
        }
    }
}

impl<K: KindSpec> Kind<K> {
    /// Decodes a watched object (once), trimmed as the reconciler wants it cached.
    fn decode(&self, v: Value) -> Option<Arc<Object<K>>> {
        match serde_json::from_value::<Object<K>>(v) {
            Ok(mut o) => {
                self.reconciler.slim(&mut o);
                Some(Arc::new(o))
            }
            Err(e) => {
                tracing::warn!(kind = K::INFO.kind, error = %e, "a stored object does not decode; it is not reconciled");
                None
            }
        }
    }

    /// Enqueues what a change wakes: the object itself, unless only its status moved (a
    /// reconciler's own write must not wake it again), and whatever the reconciler says
    /// depends on it.
    fn changed(&self, rt: &Runtime, before: Option<&Object<K>>, after: Option<&Object<K>>) {
        if let Some(a) = after
            && before.is_none_or(|b| !b.differs_only_in_status(a))
        {
            rt.wake(ObjectKey::of::<K>(a.name()), Duration::ZERO);
        }
        for k in self.reconciler.dependents(before, after) {
            rt.wake(k, Duration::ZERO);
        }
    }
}

#[async_trait::async_trait]
impl<K: KindSpec> Controlled for Kind<K> {
    fn info(&self) -> &'static KindInfo {
        K::INFO
    }

    async fn watch(self: Arc<Self>, rt: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
        let mut watcher = Watcher::new(ObjectSource {
            objects: rt.objects.clone(),
            kind: K::INFO,
        });
        loop {
            let step = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                step = watcher.step() => step,
            };
            match step {
                Step::Event(Event::Restarted(items)) => {
                    let items: Vec<Arc<Object<K>>> =
                        items.into_iter().filter_map(|v| self.decode(v)).collect();
                    let mut before = self.cache.replace(items.clone());
                    for o in &items {
                        let old = before.remove(o.name());
                        self.changed(&rt, old.as_deref(), Some(o));
                    }
                    // Deleted while we were not watching.
                    for gone in before.values() {
                        self.changed(&rt, Some(gone), None);
                    }
                }
                Step::Event(Event::Applied(v)) => {
                    if let Some(o) = self.decode(v) {
                        let before = self.cache.put(o.clone());
                        self.changed(&rt, before.as_deref(), Some(&o));
                    }
                }
                Step::Event(Event::Deleted(v)) => {
                    let name = v.pointer("/metadata/name").and_then(Value::as_str);
                    let cached = name.and_then(|n| self.cache.remove(n));
                    if let Some(gone) = cached.or_else(|| self.decode(v)) {
                        self.changed(&rt, Some(&gone), None);
                    }
                }
                Step::Progress => {}
                Step::Failed { error, retry_in } => {
                    tracing::warn!(kind = K::INFO.kind, %error, ?retry_in, state = watcher.state(), "watch failed; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(retry_in) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    }

    async fn process(&self, rt: &Runtime, key: &ObjectKey) {
        let Some(object) = self.cache.get(&key.name) else {
            return; // deleted meanwhile
        };
        let generation = object.metadata.generation.unwrap_or(0);
        let started = std::time::Instant::now();
        let cleaning = object.metadata.deletion_timestamp.is_some();
        let _running = rt.health.running(key);
        // A panic in a reconcile stays with its object: the worker lives on.
        let result = match AssertUnwindSafe(self.step(rt, key, object))
            .catch_unwind()
            .await
        {
            Ok(result) => result,
            Err(panic) => {
                let message = panics::message(&*panic);
                panics::stall(rt, K::INFO, key, &message, cleaning).await
            }
        };
        rt.follow(K::INFO, key, generation, started, result);
    }
}

impl<K: KindSpec> Kind<K> {
    /// The object's next step: add the finalizer, reconcile, or clean up and release it.
    async fn step(
        &self,
        rt: &Runtime,
        key: &ObjectKey,
        object: Arc<Object<K>>,
    ) -> Result<Action, Error> {
        let failed = |e: hostkit_reconcilers::Error| Error::Reconcile {
            object: key.to_string(),
            source: e,
        };
        let uid = object_uid(&object).map(String::from);
        match finalizer::step(object) {
            Finalize::Done => Ok(Action::AwaitChange),
            Finalize::AddFinalizer => {
                finalizer::set(&rt.objects, K::INFO, &key.name, true, uid.as_deref())
                    .await
                    .map(|()| Action::Requeue(Duration::ZERO))
            }
            Finalize::Apply(o) => self.reconciler.reconcile(o).await.map_err(failed),
            Finalize::Cleanup { object, orphan } => {
                let uid = uid.unwrap_or_default();
                if !finalizer::still_to_clean(&rt.objects, K::INFO, &key.name, &uid).await? {
                    // Cleaned already (the cache is behind), or another object now.
                    return Ok(Action::AwaitChange);
                }
                let cleaned = if orphan {
                    Ok(())
                } else {
                    self.reconciler
                        .cleanup(object.clone())
                        .await
                        .map_err(failed)
                };
                match cleaned {
                    Ok(()) => {
                        self.reconciler.forget(&object);
                        finalizer::set(&rt.objects, K::INFO, &key.name, false, Some(&uid))
                            .await
                            .map(|()| Action::AwaitChange)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }
}

fn object_uid<K: KindSpec>(object: &Object<K>) -> Option<&str> {
    object.metadata.uid.as_deref().filter(|u| !u.is_empty())
}

/// The object API as a [`Source`] for one kind.
struct ObjectSource {
    objects: Objects,
    kind: &'static KindInfo,
}

#[async_trait::async_trait]
impl Source for ObjectSource {
    async fn list(&self) -> Result<(Vec<Value>, i64), Error> {
        self.objects.list(self.kind, &Selectors::default()).await
    }

    async fn watch(
        &self,
        revision: i64,
    ) -> Result<futures::stream::BoxStream<'static, Result<ObjectEvent, Error>>, Error> {
        let stream = self
            .objects
            .watch(
                self.kind,
                revision,
                Selectors::default(),
                Some(Duration::from_secs(10)),
            )
            .await?;
        Ok(stream.boxed())
    }
}
