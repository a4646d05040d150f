//! [`Context`]: the one way a reconciler reaches the store, the watch cache, events, the
//! clock and the work queue. The controller implements it over its store and typed cache;
//! nothing in this crate talks to the store any other way.
//!
//! The cache holds typed objects (`Arc<Object<K>>`, decoded once when the watch event
//! arrived, as kube-runtime's `Store<K>`). The trait hands them out type-erased so that it
//! stays object-safe; the typed calls (`ctx.cached::<HostSpec>(name)`, `ctx.list::<K>()`,
//! `ctx.fetch::<K>(name)`, `ctx.write_status(&obj, &status)`) are the inherent methods on
//! `dyn Context` below.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hostkit_api::KindInfo;
use hostkit_api::kinds::{EventType, KindSpec, Object};
use hostkit_api::meta::ObjectRef;
use serde_json::Value;

use crate::{Error, Result};

/// An object the queue knows: its kind and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The kind's plural (`services`), which orders and hashes keys.
    kind: &'static str,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: &'static KindInfo, name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            kind: kind.plural,
            name: name.into(),
        }
    }

    /// The key of an object of spec type `K`.
    pub fn of<K: KindSpec>(name: impl Into<String>) -> ObjectKey {
        ObjectKey::new(K::INFO, name)
    }

    pub fn kind(&self) -> &'static KindInfo {
        hostkit_api::kinds::kind_by_plural(self.kind).expect("keys are made from KindInfos")
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind().kind, self.name)
    }
}

/// What a server-side apply did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Unchanged,
    Created,
    Configured,
}

/// An event to record on an object.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &'static str, message: impl Into<String>) -> Note {
        Note {
            warning: false,
            reason,
            message: message.into(),
        }
    }

    pub fn warning(reason: &'static str, message: impl Into<String>) -> Note {
        Note {
            warning: true,
            reason,
            message: message.into(),
        }
    }
}

/// A cached object of some kind, type-erased (see the typed methods on `dyn Context`).
pub type Cached = Arc<dyn Any + Send + Sync>;

/// The store, the cache, events, time and the queue, as reconcilers see them.
#[async_trait::async_trait]
pub trait Context: Send + Sync {
    /// The newest object of `kind` named `name` the controller has seen (an
    /// `Arc<Object<K>>`, where `K::INFO == kind`).
    fn cached_any(&self, kind: &'static KindInfo, name: &str) -> Option<Cached>;
    /// The uid of the cached object (events name it, so a re-created object's are its own).
    fn cached_uid(&self, kind: &'static KindInfo, name: &str) -> Option<String>;
    /// Every cached object of `kind`, in name order.
    fn cached_all(&self, kind: &'static KindInfo) -> Vec<Cached>;

    /// The stored object now (not the cache's copy).
    async fn get(&self, kind: &'static KindInfo, name: &str) -> Result<Value>;
    /// Every stored object of `kind` now.
    async fn list_stored(&self, kind: &'static KindInfo) -> Result<Vec<Value>>;
    async fn create(&self, kind: &'static KindInfo, body: Value) -> Result<Value>;
    /// Replaces spec and metadata; a body with a `resourceVersion` is compare-and-swap.
    /// `actor` (`rollback/web-undo`) is recorded as who changed the spec.
    async fn update(
        &self,
        kind: &'static KindInfo,
        name: &str,
        body: Value,
        actor: Option<&str>,
    ) -> Result<Value>;
    /// Server-side apply as `actor`: unchanged objects are not written.
    async fn apply(
        &self,
        kind: &'static KindInfo,
        name: &str,
        body: Value,
        actor: &str,
    ) -> Result<Applied>;
    /// Deletes (or marks for deletion while finalizers remain).
    async fn delete(&self, kind: &'static KindInfo, name: &str) -> Result<()>;
    /// Replaces only `status` with the body's.
    async fn update_status(&self, kind: &'static KindInfo, name: &str, body: Value) -> Result<()>;

    /// Records (or counts again) an event about `involved`.
    async fn record(&self, involved: &ObjectRef, type_: EventType, reason: &str, message: &str);

    /// Now, as the controller's clock says (tests move it).
    fn now(&self) -> DateTime<Utc>;
    /// Reconciles `key` again after `after`.
    fn wake(&self, key: ObjectKey, after: Duration);
}

/// The typed face of the cache and the store.
impl<'c> dyn Context + 'c {
    /// The cached object of spec type `K` named `name`.
    pub fn cached<K: KindSpec>(&self, name: &str) -> Option<Arc<Object<K>>> {
        self.cached_any(K::INFO, name)?.downcast::<Object<K>>().ok()
    }

    /// Every cached object of spec type `K`, in name order.
    pub fn list<K: KindSpec>(&self) -> Vec<Arc<Object<K>>> {
        self.cached_all(K::INFO)
            .into_iter()
            .filter_map(|o| o.downcast::<Object<K>>().ok())
            .collect()
    }

    /// The stored object of spec type `K` named `name`, decoded.
    pub async fn fetch<K: KindSpec>(&self, name: &str) -> Result<Object<K>> {
        decode(self.get(K::INFO, name).await?, name)
    }

    /// Writes `status` unless the cache already shows it (no write, no watch event, no
    /// wake-up). A failed write is logged: the next reconcile writes it again.
    pub async fn write_status<K: KindSpec>(&self, object: &Object<K>, status: &K::Status) {
        let name = object.name();
        if self
            .cached::<K>(name)
            .is_some_and(|c| c.status.as_ref() == Some(status))
        {
            return;
        }
        let mut body = object.clone();
        body.metadata.resource_version = None;
        body.status = Some(status.clone());
        let body = serde_json::to_value(&body).expect("objects serialise");
        if let Err(e) = self.update_status(K::INFO, name, body).await {
            tracing::warn!(kind = K::INFO.kind, %name, error = %e, "could not write status");
        }
    }

    /// Records `notes` as events on `object` (a failure is logged, never fatal).
    pub async fn note(&self, kind: &'static KindInfo, name: &str, notes: &[Note]) {
        let involved = ObjectRef {
            kind: kind.kind.to_string(),
            name: name.to_string(),
            uid: self.cached_uid(kind, name),
        };
        for n in notes {
            let t = if n.warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            self.record(&involved, t, n.reason, &n.message).await;
        }
    }

    /// How a reconcile that cannot go on reports why: writes `status` (whose conditions
    /// already say it), records `note` as an event, and returns `error` for the runtime.
    pub async fn stop<K: KindSpec>(
        &self,
        object: &Object<K>,
        status: &K::Status,
        note: Option<Note>,
        error: Error,
    ) -> Error {
        self.write_status(object, status).await;
        if let Some(note) = note {
            self.note(K::INFO, object.name(), &[note]).await;
        }
        error
    }

    /// Reads the stored object, lets `edit` change it (false: nothing to change) and writes
    /// it back as `actor`, again from a fresh read when someone else wrote in between.
    /// Returns the written object, or `None` when `edit` changed nothing.
    pub async fn modify(
        &self,
        kind: &'static KindInfo,
        name: &str,
        actor: Option<&str>,
        mut edit: impl FnMut(&mut Value) -> bool + Send,
    ) -> Result<Option<Value>> {
        for _ in 0..8 {
            let mut v = self.get(kind, name).await?;
            if !edit(&mut v) {
                return Ok(None);
            }
            match self.update(kind, name, v, actor).await {
                Ok(written) => return Ok(Some(written)),
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict {
            kind: kind.kind.into(),
            name: name.into(),
            detail: "kept changing".into(),
        })
    }
}

/// Decodes a stored object of spec type `K`.
pub fn decode<K: KindSpec>(v: Value, name: &str) -> Result<Object<K>> {
    serde_json::from_value(v).map_err(|e| Error::Decode {
        kind: K::INFO.kind.into(),
        name: name.into(),
        message: e.to_string(),
    })
}

/// A [`Context`] with only a cache, for unit tests of logic that reads it.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    pub struct CacheOnly {
        objects: Mutex<BTreeMap<(&'static str, String), Cached>>,
    }

    impl CacheOnly {
        pub fn put<K: KindSpec>(&self, o: Object<K>) {
            let key = (K::INFO.plural, o.name().to_string());
            self.objects
                .lock()
                .unwrap()
                .insert(key, Arc::new(o) as Cached);
        }
    }

    fn no_store<T>() -> Result<T> {
        Err(Error::Store("this test has no store".into()))
    }

    #[async_trait::async_trait]
    impl Context for CacheOnly {
        fn cached_any(&self, kind: &'static KindInfo, name: &str) -> Option<Cached> {
            let key = (kind.plural, name.to_string());
            self.objects.lock().unwrap().get(&key).cloned()
        }
        fn cached_uid(&self, _: &'static KindInfo, _: &str) -> Option<String> {
            None
        }
        fn cached_all(&self, kind: &'static KindInfo) -> Vec<Cached> {
            self.objects
                .lock()
                .unwrap()
                .iter()
                .filter(|((k, _), _)| *k == kind.plural)
                .map(|(_, o)| o.clone())
                .collect()
        }
        async fn get(&self, _: &'static KindInfo, _: &str) -> Result<Value> {
            no_store()
        }
        async fn list_stored(&self, _: &'static KindInfo) -> Result<Vec<Value>> {
            no_store()
        }
        async fn create(&self, _: &'static KindInfo, _: Value) -> Result<Value> {
            no_store()
        }
        async fn update(
            &self,
            _: &'static KindInfo,
            _: &str,
            _: Value,
            _: Option<&str>,
        ) -> Result<Value> {
            no_store()
        }
        async fn apply(&self, _: &'static KindInfo, _: &str, _: Value, _: &str) -> Result<Applied> {
            no_store()
        }
        async fn delete(&self, _: &'static KindInfo, _: &str) -> Result<()> {
            no_store()
        }
        async fn update_status(&self, _: &'static KindInfo, _: &str, _: Value) -> Result<()> {
            no_store()
        }
        async fn record(&self, _: &ObjectRef, _: EventType, _: &str, _: &str) {}
        fn now(&self) -> DateTime<Utc> {
            DateTime::<Utc>::default()
        }
        fn wake(&self, _: ObjectKey, _: Duration) {}
    }
}
