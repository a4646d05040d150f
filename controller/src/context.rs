//! The `Context` reconcilers get in `hostkit serve`: the object API for reads and writes,
//! the runtime's typed cache, the event recorder, the clock and the work queue. Store
//! errors become the reconcilers' own, keeping what a reconciler decides on (not found,
//! conflict, already exists).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hostkit_api::KindInfo;
use hostkit_api::kinds::EventType;
use hostkit_api::meta::ObjectRef;
use hostkit_reconcilers::context::{Applied, Cached};
use hostkit_reconcilers::{Context, ObjectKey};
use serde_json::Value;

use crate::error::Error;
use crate::events::Recorder;
use crate::objects::{ApplyOutcome, DeleteOptions, Objects, Selectors, as_actor};
use crate::runtime::cache::Cache;

/// A clock the tests can move.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Enqueues an object to be reconciled after a delay.
pub type Wake = Arc<dyn Fn(ObjectKey, Duration) + Send + Sync>;

pub struct StoreContext {
    objects: Objects,
    cache: Arc<Cache>,
    recorder: Recorder,
    clock: Clock,
    wake: Wake,
}

impl StoreContext {
    pub fn new(objects: Objects, cache: Arc<Cache>, clock: Clock, wake: Wake) -> StoreContext {
        StoreContext {
            recorder: Recorder::new(objects.clone(), "hostkit-controller"),
            objects,
            cache,
            clock,
            wake,
        }
    }
}

type Result<T> = std::result::Result<T, hostkit_reconcilers::Error>;

/// A store error as the reconcilers see it.
fn theirs(e: Error) -> hostkit_reconcilers::Error {
    use hostkit_reconcilers::Error as R;
    match e {
        Error::NotFound { kind, name } => R::NotFound { kind, name },
        Error::AlreadyExists { kind, name } => R::AlreadyExists { kind, name },
        Error::Conflict { kind, name, detail } => R::Conflict { kind, name, detail },
        other => R::Store(other.to_string()),
    }
}

#[async_trait::async_trait]
impl Context for StoreContext {
    fn cached_any(&self, kind: &'static KindInfo, name: &str) -> Option<Cached> {
        self.cache.get_any(kind, name)
    }

    fn cached_uid(&self, kind: &'static KindInfo, name: &str) -> Option<String> {
        self.cache.uid_of(kind, name)
    }

    fn cached_all(&self, kind: &'static KindInfo) -> Vec<Cached> {
        self.cache.all_any(kind)
    }

    async fn get(&self, kind: &'static KindInfo, name: &str) -> Result<Value> {
        self.objects.get(kind, name).await.map_err(theirs)
    }

    async fn list_stored(&self, kind: &'static KindInfo) -> Result<Vec<Value>> {
        let (items, _) = self
            .objects
            .list(kind, &Selectors::default())
            .await
            .map_err(theirs)?;
        Ok(items)
    }

    async fn create(&self, kind: &'static KindInfo, body: Value) -> Result<Value> {
        self.objects.create(kind, body, false).await.map_err(theirs)
    }

    async fn update(
        &self,
        kind: &'static KindInfo,
        name: &str,
        body: Value,
        actor: Option<&str>,
    ) -> Result<Value> {
        let update = self.objects.update(kind, name, body, false);
        let written = match actor {
            Some(a) => as_actor(a.to_string(), update).await,
            None => update.await,
        };
        written.map_err(theirs)
    }

    async fn apply(
        &self,
        kind: &'static KindInfo,
        name: &str,
        body: Value,
        actor: &str,
    ) -> Result<Applied> {
        let (_, outcome) = as_actor(
            actor.to_string(),
            self.objects.apply(kind, name, body, false),
        )
        .await
        .map_err(theirs)?;
        Ok(match outcome {
            ApplyOutcome::Unchanged => Applied::Unchanged,
            ApplyOutcome::Created => Applied::Created,
            ApplyOutcome::Configured => Applied::Configured,
        })
    }

    async fn delete(&self, kind: &'static KindInfo, name: &str) -> Result<()> {
        self.objects
            .delete(kind, name, DeleteOptions::default())
            .await
            .map(|_| ())
            .map_err(theirs)
    }

    async fn update_status(&self, kind: &'static KindInfo, name: &str, body: Value) -> Result<()> {
        self.objects
            .update_status(kind, name, body, false)
            .await
            .map(|_| ())
            .map_err(theirs)
    }

    async fn record(&self, involved: &ObjectRef, type_: EventType, reason: &str, message: &str) {
        if let Err(e) = self.recorder.record(involved, type_, reason, message).await {
            tracing::warn!(error = %e, "could not record event");
        }
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    fn wake(&self, key: ObjectKey, after: Duration) {
        (self.wake)(key, after)
    }
}
