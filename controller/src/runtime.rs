//! The controller runtime: a watcher and cache per kind, one work queue, reconcile
//! workers, per-object backoff and resync, finalizers, leader gating and graceful
//! shutdown. It knows nothing of files or systemd: what a reconcile does is up to the
//! [`Reconcile`] implementation (see `controllers.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use hostkit_api::KindInfo;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;

use crate::error::Error;
use crate::objects::{ObjectEvent, Objects, Selectors};
use crate::server::metrics::{ControllerLabels, ControllerMetrics, ResultLabels};
use crate::watcher::{Event, Source, Step, Watcher};

/// An object in the queue: its kind's plural and its name.
pub type Key = (&'static str, String);

/// What the reconciler wants next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    /// Look again after this long (resync, or a window opening).
    Requeue(Duration),
    /// Nothing until the object changes.
    AwaitChange,
}

/// A reconcile failure: transient ones back off and retry; terminal ones wait for a spec
/// change (the reconciler has set `Stalled=True`).
#[derive(Clone, Debug)]
pub enum Failure {
    Transient(String),
    Terminal(String),
}

#[async_trait::async_trait]
pub trait Reconcile: Send + Sync + 'static {
    /// Reconciles one object (the newest from the cache).
    async fn reconcile(&self, kind: &'static KindInfo, object: Value) -> Result<Action, Failure>;
    /// Cleans up a deleted object before its finalizer is removed.
    async fn cleanup(&self, kind: &'static KindInfo, object: Value) -> Result<(), Failure>;
    /// Drops what the controller itself keeps for a deleted object (metric series, file
    /// watches, caches on its own disk): after `cleanup`, and also after an orphan delete,
    /// which leaves the hosts alone but not the controller's own state.
    fn forget(&self, kind: &'static KindInfo, object: &Value);
    /// Other keys to enqueue when an object of `kind` changes from `before` to `after`
    /// (`None`: did not exist / was deleted), e.g. the services on a host.
    fn related(
        &self,
        kind: &'static KindInfo,
        before: Option<&Value>,
        after: Option<&Value>,
        caches: &Caches,
    ) -> Vec<Key>;
}

pub use hostkit_api::wellknown::FINALIZER;

/// The newest object of each watched kind, by name.
#[derive(Default)]
pub struct Caches {
    by_kind: RwLock<HashMap<&'static str, BTreeMap<String, Value>>>,
    /// Per kind, what to drop before caching: fields no reconcile decides on, which a
    /// reconciler that needs them reads from the store (memory grows with the cache).
    slimmers: RwLock<HashMap<&'static str, Slim>>,
}

/// Trims an object before it is cached.
pub type Slim = fn(&mut Value);

impl Caches {
    /// Caches objects of `plural` only as `slim` leaves them (what the watchers feed in;
    /// reconcilers are handed the slim object too).
    pub fn slim(&self, plural: &'static str, slim: Slim) {
        self.slimmers
            .write()
            .expect("not poisoned")
            .insert(plural, slim);
    }

    fn slimmed(&self, plural: &str, mut v: Value) -> Value {
        if let Some(f) = self.slimmers.read().expect("not poisoned").get(plural) {
            f(&mut v);
        }
        v
    }

    /// The cached objects of `plural` for which `keep` is true (only those are cloned).
    pub fn list_where(&self, plural: &str, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.by_kind
            .read()
            .expect("not poisoned")
            .get(plural)
            .map(|m| m.values().filter(|v| keep(v)).cloned().collect())
            .unwrap_or_default()
    }

    pub fn get(&self, plural: &str, name: &str) -> Option<Value> {
        self.by_kind
            .read()
            .expect("not poisoned")
            .get(plural)?
            .get(name)
            .cloned()
    }

    pub fn list(&self, plural: &str) -> Vec<Value> {
        self.by_kind
            .read()
            .expect("not poisoned")
            .get(plural)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn replace(&self, plural: &'static str, objects: Vec<Value>) {
        let map = objects
            .into_iter()
            .filter_map(|v| Some((name_of(&v)?.to_string(), v)))
            .collect();
        self.by_kind
            .write()
            .expect("not poisoned")
            .insert(plural, map);
    }

    pub(crate) fn put(&self, plural: &'static str, v: Value) {
        if let Some(n) = name_of(&v).map(str::to_string) {
            self.by_kind
                .write()
                .expect("not poisoned")
                .entry(plural)
                .or_default()
                .insert(n, v);
        }
    }

    fn remove(&self, plural: &'static str, name: &str) {
        if let Some(m) = self.by_kind.write().expect("not poisoned").get_mut(plural) {
            m.remove(name);
        }
    }
}

/// True when `a` and `b` differ in nothing but `status` and server bookkeeping.
pub fn only_status_changed(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

pub fn name_of(v: &Value) -> Option<&str> {
    v.pointer("/metadata/name").and_then(Value::as_str)
}

fn generation_of(v: &Value) -> i64 {
    v.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

#[derive(Default)]
struct QueueState {
    due: HashMap<Key, Instant>,
    running: HashSet<Key>,
    failures: HashMap<Key, u32>,
    generations: HashMap<Key, i64>,
}

/// A work queue that keeps one entry per object (the earlier due time wins) and never
/// hands out an object that is being reconciled.
#[derive(Default)]
pub struct Queue {
    state: Mutex<QueueState>,
    notify: Notify,
}

impl Queue {
    pub fn add(&self, key: Key, at: Instant, metrics: &ControllerMetrics) {
        let mut s = self.state.lock().expect("not poisoned");
        let e = s.due.entry(key).or_insert(at);
        if at < *e {
            *e = at;
        }
        metrics.workqueue_adds.inc();
        metrics.workqueue_depth.set(s.due.len() as i64);
        drop(s);
        self.notify.notify_one();
    }

    /// The next due object, waiting for one; None once `stop` is true.
    async fn next(
        &self,
        stop: &mut watch::Receiver<bool>,
        metrics: &ControllerMetrics,
    ) -> Option<Key> {
        loop {
            if *stop.borrow() {
                return None;
            }
            let now = Instant::now();
            let wait = {
                let mut s = self.state.lock().expect("not poisoned");
                let ready = s
                    .due
                    .iter()
                    .filter(|(k, _)| !s.running.contains(*k))
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, t)| (k.clone(), *t));
                match ready {
                    Some((k, t)) if t <= now => {
                        s.due.remove(&k);
                        s.running.insert(k.clone());
                        metrics.workqueue_depth.set(s.due.len() as i64);
                        metrics
                            .workqueue_queue_duration
                            .observe((now - t).as_secs_f64());
                        return Some(k);
                    }
                    Some((_, t)) => t - now,
                    None => Duration::from_secs(3600),
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.notify.notified() => {}
                _ = stop.changed() => {}
            }
        }
    }

    fn done(&self, key: &Key) {
        self.state.lock().expect("not poisoned").running.remove(key);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Records the outcome and returns how many failures in a row this object has now.
    fn outcome(&self, key: &Key, generation: i64, failed: bool) -> u32 {
        let mut s = self.state.lock().expect("not poisoned");
        let changed = s.generations.insert(key.clone(), generation) != Some(generation);
        if changed || !failed {
            s.failures.remove(key);
        }
        if failed {
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        } else {
            0
        }
    }
}

/// `d` ± 10 %.
pub fn jitter(d: Duration) -> Duration {
    let f = 0.9 + rand::random::<f64>() * 0.2;
    d.mul_f64(f)
}

/// 1 s·2ⁿ⁻¹ capped at 5 min, jittered.
pub fn error_backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(9);
    jitter(Duration::from_secs(secs.min(300)))
}

pub struct Options {
    pub concurrency: usize,
    pub kinds: Vec<&'static KindInfo>,
}

/// The running controller.
pub struct Runtime {
    pub objects: Objects,
    pub caches: Arc<Caches>,
    pub queue: Arc<Queue>,
    pub metrics: ControllerMetrics,
}

impl Runtime {
    pub fn new(objects: Objects, metrics: ControllerMetrics) -> Arc<Runtime> {
        Arc::new(Runtime {
            objects,
            caches: Arc::new(Caches::default()),
            queue: Arc::new(Queue::default()),
            metrics,
        })
    }

    /// Runs watchers (always, so the cache is warm on followers) and, while `leading`,
    /// workers. Returns after `stop` flips and in-flight reconciles finished.
    pub async fn run(
        self: Arc<Self>,
        reconciler: Arc<dyn Reconcile>,
        options: Options,
        mut leading: watch::Receiver<bool>,
        stop: watch::Receiver<bool>,
    ) {
        for kind in options.kinds.clone() {
            let rt = self.clone();
            let r = reconciler.clone();
            let stop = stop.clone();
            tokio::spawn(async move { rt.watch_kind(kind, r, stop).await });
        }
        let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let mut workers = Vec::new();
        for _ in 0..options.concurrency.max(1) {
            let rt = self.clone();
            let r = reconciler.clone();
            let mut stop = stop.clone();
            let mut leading = leading.clone();
            let permits = permits.clone();
            let kinds = options.kinds.clone();
            workers.push(tokio::spawn(async move {
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
                    let kind = kinds
                        .iter()
                        .copied()
                        .find(|k| k.plural == key.0)
                        .expect("watched kind");
                    rt.process(kind, &key, r.as_ref()).await;
                    rt.queue.done(&key);
                }
            }));
        }
        let _ = leading.borrow_and_update();
        for w in workers {
            let _ = w.await;
        }
    }

    async fn process(&self, kind: &'static KindInfo, key: &Key, r: &dyn Reconcile) {
        let Some(object) = self.caches.get(kind.plural, &key.1) else {
            return; // deleted meanwhile
        };
        let generation = generation_of(&object);
        let started = std::time::Instant::now();
        let labels = ControllerLabels {
            controller: kind.singular.to_string(),
        };
        let deleting = object
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        let has_finalizer = object
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == FINALIZER));
        let result: Result<Action, Failure> = if deleting {
            if !has_finalizer {
                Ok(Action::AwaitChange)
            } else {
                let orphan = object
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(hostkit_api::wellknown::CASCADE))
                    .and_then(Value::as_str)
                    == Some("orphan");
                let cleaned = if orphan {
                    Ok(())
                } else {
                    r.cleanup(kind, object.clone()).await
                };
                if cleaned.is_ok() {
                    r.forget(kind, &object);
                }
                match cleaned {
                    Ok(()) => self
                        .set_finalizer(kind, &key.1, false)
                        .await
                        .map(|_| Action::AwaitChange),
                    Err(f) => Err(f),
                }
            }
        } else if !has_finalizer {
            match self.set_finalizer(kind, &key.1, true).await {
                Ok(()) => Ok(Action::Requeue(Duration::ZERO)),
                Err(f) => Err(f),
            }
        } else {
            r.reconcile(kind, object.clone()).await
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
            Ok(Action::Requeue(d)) => {
                self.queue
                    .add(key.clone(), Instant::now() + d, &self.metrics)
            }
            Ok(Action::AwaitChange) => {}
            Err(Failure::Transient(msg)) => {
                self.metrics.reconcile_errors.get_or_create(&labels).inc();
                self.metrics.workqueue_retries.inc();
                let delay = error_backoff(failures);
                tracing::warn!(kind = kind.kind, name = %key.1, error = %msg, retry_in = ?delay, "reconcile failed");
                self.queue
                    .add(key.clone(), Instant::now() + delay, &self.metrics);
            }
            Err(Failure::Terminal(msg)) => {
                self.metrics.reconcile_errors.get_or_create(&labels).inc();
                tracing::warn!(kind = kind.kind, name = %key.1, error = %msg, "reconcile stalled until the spec changes");
            }
        }
    }

    /// Adds or removes [`FINALIZER`], retrying on conflicts.
    async fn set_finalizer(
        &self,
        kind: &'static KindInfo,
        name: &str,
        present: bool,
    ) -> Result<(), Failure> {
        for _ in 0..5 {
            let mut v = match self.objects.get(kind, name).await {
                Ok(v) => v,
                Err(Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(Failure::Transient(e.to_string())),
            };
            let meta = v
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
                .expect("metadata");
            let list = meta
                .entry("finalizers")
                .or_insert_with(|| Value::Array(vec![]));
            let arr = list.as_array_mut().expect("finalizers is a list");
            let has = arr.iter().any(|x| x == FINALIZER);
            if has == present {
                return Ok(());
            }
            if present {
                arr.push(Value::String(FINALIZER.into()));
            } else {
                arr.retain(|x| x != FINALIZER);
            }
            match self.objects.update(kind, name, v, false).await {
                Ok(_) => return Ok(()),
                Err(Error::Conflict { .. }) => continue,
                Err(Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(Failure::Transient(e.to_string())),
            }
        }
        Err(Failure::Transient(
            "finalizer update kept conflicting".into(),
        ))
    }

    /// Feeds the cache and the queue from a [`Watcher`] of `kind` until `stop`.
    async fn watch_kind(
        self: Arc<Self>,
        kind: &'static KindInfo,
        r: Arc<dyn Reconcile>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut watcher = Watcher::new(ObjectSource {
            objects: self.objects.clone(),
            kind,
        });
        loop {
            let step = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                step = watcher.step() => step,
            };
            match step {
                Step::Event(Event::Restarted(items)) => {
                    let items: Vec<Value> = items
                        .into_iter()
                        .map(|v| self.caches.slimmed(kind.plural, v))
                        .collect();
                    let before: Vec<Value> = self.caches.list(kind.plural);
                    self.caches.replace(kind.plural, items.clone());
                    for v in &items {
                        let old = name_of(v)
                            .and_then(|n| before.iter().find(|b| name_of(b) == Some(n)).cloned());
                        self.changed(kind, old.as_ref(), Some(v), r.as_ref());
                    }
                    // Deleted while we were not watching.
                    for b in &before {
                        if !items.iter().any(|v| name_of(v) == name_of(b)) {
                            self.changed(kind, Some(b), None, r.as_ref());
                        }
                    }
                }
                Step::Event(Event::Applied(v)) => {
                    let v = self.caches.slimmed(kind.plural, v);
                    let before = name_of(&v).and_then(|n| self.caches.get(kind.plural, n));
                    self.caches.put(kind.plural, v.clone());
                    self.changed(kind, before.as_ref(), Some(&v), r.as_ref());
                }
                Step::Event(Event::Deleted(v)) => {
                    if let Some(n) = name_of(&v) {
                        self.caches.remove(kind.plural, n);
                    }
                    self.changed(kind, Some(&v), None, r.as_ref());
                }
                Step::Progress => {}
                Step::Failed { error, retry_in } => {
                    tracing::warn!(kind = kind.kind, %error, ?retry_in, state = watcher.state(), "watch failed; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(retry_in) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    }

    /// Enqueues what a change wakes: the object itself, unless only its status moved (a
    /// reconciler's own write must not wake it again), and whatever the reconciler
    /// says depends on it.
    fn changed(
        &self,
        kind: &'static KindInfo,
        before: Option<&Value>,
        after: Option<&Value>,
        r: &dyn Reconcile,
    ) {
        let now = Instant::now();
        if let Some(v) = after
            && let Some(n) = name_of(v)
            && before.is_none_or(|b| !only_status_changed(b, v))
        {
            self.queue
                .add((kind.plural, n.to_string()), now, &self.metrics);
        }
        for k in r.related(kind, before, after, &self.caches) {
            self.queue.add(k, now, &self.metrics);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_queue_dedups_keeps_the_earlier_time_and_never_hands_out_a_running_key() {
        let q = Queue::default();
        let m = ControllerMetrics::default();
        let (_tx, mut stop) = watch::channel(false);
        let now = Instant::now();
        q.add(("services", "a".into()), now + Duration::from_secs(60), &m);
        q.add(("services", "a".into()), now, &m);
        q.add(
            ("services", "b".into()),
            now + Duration::from_millis(30),
            &m,
        );
        let first = q.next(&mut stop, &m).await.unwrap();
        assert_eq!(first.1, "a");
        // a is running: re-adding it does not hand it out again until done.
        q.add(("services", "a".into()), Instant::now(), &m);
        let second = q.next(&mut stop, &m).await.unwrap();
        assert_eq!(
            second.1, "b",
            "b waited for its due time, a is still running"
        );
        q.done(&first);
        let third = q.next(&mut stop, &m).await.unwrap();
        assert_eq!(third.1, "a");
    }

    #[test]
    fn status_writes_alone_do_not_count_as_changes() {
        let a = serde_json::json!({"metadata": {"name": "a", "resourceVersion": "1", "generation": 1}, "spec": {"x": 1}, "status": {"y": 1}});
        let mut b = a.clone();
        b["status"]["y"] = 2.into();
        b["metadata"]["resourceVersion"] = "2".into();
        assert!(only_status_changed(&a, &b));
        b["metadata"]["labels"] = serde_json::json!({"tier": "x"});
        assert!(!only_status_changed(&a, &b));
    }

    #[test]
    fn error_backoff_doubles_and_caps_at_five_minutes() {
        let d1 = error_backoff(1).as_secs_f64();
        assert!((0.9..=1.1).contains(&d1), "{d1}");
        let d4 = error_backoff(4).as_secs_f64();
        assert!((7.2..=8.8).contains(&d4), "{d4}");
        let d20 = error_backoff(20).as_secs_f64();
        assert!((270.0..=330.0).contains(&d20), "{d20}");
    }

    #[test]
    fn failures_reset_on_success_and_on_a_new_generation() {
        let q = Queue::default();
        let k: Key = ("services", "a".into());
        assert_eq!(q.outcome(&k, 1, true), 1);
        assert_eq!(q.outcome(&k, 1, true), 2);
        assert_eq!(q.outcome(&k, 2, true), 1, "a spec change starts over");
        assert_eq!(q.outcome(&k, 2, false), 0);
        assert_eq!(q.outcome(&k, 2, true), 1);
    }
}
