//! Object semantics on top of the raw store: what makes a stored key an API object.
//!
//! Kubernetes rules, implemented once for every kind and every caller (HTTP handlers,
//! reconcilers, GitSource sync): server-side validation and defaults; `uid`,
//! `creationTimestamp` and `generation` set by the server; `generation` bumped only when
//! `spec` changes; `resourceVersion` is the store's mod revision and a stale one is a
//! conflict; the status subresource never changes `spec` and a spec update never changes
//! `status`; finalizers turn a delete into `deletionTimestamp`; `dryRun` does all of it
//! except the write. Events are stored with a lease so they expire on their own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hostkit_api::kinds::{AnyObject, KindInfo};
use hostkit_api::meta::{LabelSelector, Time};
use hostkit_api::{FieldError, MAX_OBJECT_BYTES};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::store::{KeyValue, Store, StoreError, WatchEvent};

mod actor;
mod merge;
mod patch;
mod selectors;

pub use actor::as_actor;
use actor::stamp_actor;
use merge::{merge_update, strip_rv};
pub use patch::Patch;
pub use selectors::{FieldSelector, Selectors};

/// How `apply` changed the store, printed by hkctl as `service/x created`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Created,
    Configured,
    Unchanged,
}

impl ApplyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        }
    }
}

/// One change to objects of a kind, as the watch API reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum ObjectEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    /// Every change up to this resourceVersion has been sent.
    Bookmark(i64),
}

/// Where a deleted object's cleanup leaves its hosts; `orphan` is Kubernetes'
/// `propagationPolicy=Orphan`: the object goes, what it put on hosts stays.
pub use hostkit_api::wellknown::CASCADE as ORPHAN_ANNOTATION;

/// How a delete goes ahead.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeleteOptions {
    /// Only delete at this resourceVersion (a stale one is a conflict).
    pub precondition: Option<i64>,
    pub dry_run: bool,
    /// Leave the hosts as they are: recorded on the object in the same write that marks it
    /// for deletion, so the cleanup can never start without it.
    pub orphan: bool,
}

/// The object API over a store; cheap to clone.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn Store>,
    event_ttl: Duration,
    event_lease: Arc<Mutex<Option<(i64, Instant)>>>,
}

fn now() -> Time {
    chrono::Utc::now()
}

fn meta(v: &mut Value) -> &mut Map<String, Value> {
    v.as_object_mut()
        .expect("objects are JSON objects")
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .expect("metadata is an object")
}

fn display_name(kind: &KindInfo, v: &Value) -> String {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(kind.singular)
        .to_string()
}

impl Objects {
    /// `event_ttl` is how long Events live before their lease expires them.
    pub fn new(store: Arc<dyn Store>, event_ttl: Duration) -> Objects {
        Objects {
            store,
            event_ttl,
            event_lease: Arc::new(Mutex::new(None)),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Decodes, validates and defaults a request body for `kind`.
    pub fn decode(
        &self,
        kind: &KindInfo,
        body: Value,
        url_name: Option<&str>,
    ) -> Result<AnyObject> {
        let name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match body.get("kind").and_then(Value::as_str) {
            Some(k) if k == kind.kind => {}
            Some(k) => {
                return Err(Error::BadRequest(format!(
                    "the body is a {k}, but the URL is for {}",
                    kind.plural
                )));
            }
            None => {
                return Err(Error::Invalid {
                    kind: kind.kind.into(),
                    name,
                    causes: vec![FieldError::new(
                        "kind",
                        format!("is required: {}", kind.kind),
                    )],
                });
            }
        }
        if let Some(url_name) = url_name
            && url_name != name
        {
            return Err(Error::BadRequest(format!(
                "metadata.name {name:?} does not match the name in the URL {url_name:?}"
            )));
        }
        let mut object = AnyObject::from_value(body).map_err(|e| Error::Invalid {
            kind: kind.kind.into(),
            name: name.clone(),
            causes: vec![e],
        })?;
        let causes = object.validate();
        if !causes.is_empty() {
            return Err(Error::Invalid {
                kind: kind.kind.into(),
                name,
                causes,
            });
        }
        object.apply_defaults();
        Ok(object)
    }

    fn to_object(kv: &KeyValue) -> Result<Value> {
        let mut v: Value = serde_json::from_slice(&kv.value).map_err(|e| StoreError::Corrupt {
            key: kv.key.clone(),
            message: e.to_string(),
        })?;
        if !v.is_object() {
            return Err(StoreError::Corrupt {
                key: kv.key.clone(),
                message: "not an object".into(),
            }
            .into());
        }
        meta(&mut v).insert(
            "resourceVersion".into(),
            Value::String(kv.mod_revision.to_string()),
        );
        Ok(v)
    }

    fn encode(v: &Value) -> Result<Vec<u8>> {
        let mut stored = v.clone();
        meta(&mut stored).remove("resourceVersion");
        let bytes = serde_json::to_vec(&stored).expect("JSON values serialise");
        if bytes.len() > MAX_OBJECT_BYTES {
            return Err(Error::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    fn not_found(kind: &KindInfo, name: &str) -> Error {
        Error::NotFound {
            kind: kind.kind.into(),
            name: name.into(),
        }
    }

    fn map_store(kind: &KindInfo, name: &str, e: StoreError) -> Error {
        match e {
            StoreError::NotFound { .. } => Self::not_found(kind, name),
            StoreError::AlreadyExists { .. } => Error::AlreadyExists {
                kind: kind.kind.into(),
                name: name.into(),
            },
            StoreError::Conflict {
                expected, actual, ..
            } => Error::Conflict {
                kind: kind.kind.into(),
                name: name.into(),
                detail: format!("resourceVersion {expected} is stale, the object is at {actual}"),
            },
            StoreError::UidMismatch {
                expected, actual, ..
            } => Error::Conflict {
                kind: kind.kind.into(),
                name: name.into(),
                detail: format!(
                    "metadata.uid {expected} is not the stored object's ({actual}): it was deleted and created again"
                ),
            },
            other => Error::Store(other),
        }
    }

    pub async fn get(&self, kind: &KindInfo, name: &str) -> Result<Value> {
        let kv = self.store.get(&kind.key(name)).await?;
        let kv = kv.ok_or_else(|| Self::not_found(kind, name))?;
        Self::to_object(&kv)
    }

    /// All objects of a kind that match, and the resourceVersion of the list.
    pub async fn list(&self, kind: &KindInfo, selectors: &Selectors) -> Result<(Vec<Value>, i64)> {
        let mut items = Vec::new();
        let revision = self.list_each(kind, selectors, |v| items.push(v)).await?;
        Ok((items, revision))
    }

    /// Calls `each` for every matching object, one at a time, so a large list never holds
    /// all objects as JSON trees at once (the API server streams them into the response).
    pub async fn list_each(
        &self,
        kind: &KindInfo,
        selectors: &Selectors,
        mut each: impl FnMut(Value),
    ) -> Result<i64> {
        let list = self.store.list(&kind.key_prefix()).await?;
        for kv in &list.items {
            let v = Self::to_object(kv)?;
            if selectors.matches(&v) {
                each(v);
            }
        }
        Ok(list.revision)
    }

    /// Lease for new Events, shared for a minute so events don't cost a lease each.
    async fn event_lease(&self) -> Result<i64> {
        let mut current = self.event_lease.lock().await;
        if let Some((id, granted)) = *current
            && granted.elapsed() < Duration::from_secs(60)
        {
            return Ok(id);
        }
        let id = self.store.lease_grant(self.event_ttl).await?;
        *current = Some((id, Instant::now()));
        Ok(id)
    }

    /// Creates an object; `status` in the body is ignored, as with Kubernetes.
    pub async fn create(&self, kind: &KindInfo, body: Value, dry_run: bool) -> Result<Value> {
        let object = self.decode(kind, body, None)?;
        let mut v = object.to_value();
        let name = display_name(kind, &v);
        v.as_object_mut().expect("object").remove("status");
        let m = meta(&mut v);
        m.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        m.insert("generation".into(), Value::from(1));
        m.insert(
            "creationTimestamp".into(),
            serde_json::to_value(now()).expect("time"),
        );
        m.remove("deletionTimestamp");
        if v.get("spec").is_some() {
            stamp_actor(&mut v);
        }
        let bytes = Self::encode(&v)?;
        if dry_run {
            if self.store.get(&kind.key(&name)).await?.is_some() {
                return Err(Error::AlreadyExists {
                    kind: kind.kind.into(),
                    name,
                });
            }
            return Ok(v);
        }
        let lease = if kind.kind == "Event" {
            Some(self.event_lease().await?)
        } else {
            None
        };
        let result = match self
            .store
            .create(&kind.key(&name), bytes.clone(), lease)
            .await
        {
            // The shared lease may have just expired: take a fresh one once.
            Err(StoreError::LeaseNotFound(_)) if lease.is_some() => {
                *self.event_lease.lock().await = None;
                let lease = self.event_lease().await?;
                self.store
                    .create(&kind.key(&name), bytes, Some(lease))
                    .await
            }
            other => other,
        };
        let kv = result.map_err(|e| Self::map_store(kind, &name, e))?;
        Self::to_object(&kv)
    }

    /// The stored record of an object, when it is at `expected` (any revision for `None`):
    /// the read that starts every write, and its precondition.
    async fn current_at(
        &self,
        kind: &KindInfo,
        name: &str,
        expected: Option<i64>,
    ) -> Result<KeyValue> {
        self.current_of(kind, name, expected, None).await
    }

    /// [`Self::current_at`] that also refuses another object of the same name than the one
    /// whose `uid` the writer read (as Kubernetes' uid precondition).
    async fn current_of(
        &self,
        kind: &KindInfo,
        name: &str,
        expected: Option<i64>,
        uid: Option<&str>,
    ) -> Result<KeyValue> {
        let current = self
            .store
            .get(&kind.key(name))
            .await?
            .ok_or_else(|| Self::not_found(kind, name))?;
        if let Some(uid) = uid {
            let stored = Self::to_object(&current)?;
            let actual = stored
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if actual != uid {
                return Err(Self::map_store(
                    kind,
                    name,
                    StoreError::UidMismatch {
                        key: current.key,
                        expected: uid.to_string(),
                        actual: actual.to_string(),
                    },
                ));
            }
        }
        match expected {
            Some(rv) if rv != current.mod_revision => Err(Self::map_store(
                kind,
                name,
                StoreError::Conflict {
                    key: current.key,
                    expected: rv,
                    actual: current.mod_revision,
                },
            )),
            _ => Ok(current),
        }
    }

    /// Replaces spec, labels, annotations, finalizers and owners; keeps status and server fields.
    pub async fn update(
        &self,
        kind: &KindInfo,
        name: &str,
        body: Value,
        dry_run: bool,
    ) -> Result<Value> {
        let expected = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(|rv| {
                rv.parse::<i64>().map_err(|_| {
                    Error::BadRequest(format!("resourceVersion {rv:?} is not a number"))
                })
            })
            .transpose()?;
        let uid = body
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(String::from);
        let object = self.decode(kind, body, Some(name))?;
        let desired = object.to_value();
        for _ in 0..8 {
            let current = self
                .current_of(kind, name, expected, uid.as_deref())
                .await?;
            let stored = Self::to_object(&current)?;
            let next = merge_update(&stored, &desired, false)?;
            match self
                .write_next(kind, name, &current, &stored, next, dry_run)
                .await
            {
                Err(Error::Conflict { .. }) if expected.is_none() => continue,
                other => return other,
            }
        }
        Err(Error::Conflict {
            kind: kind.kind.into(),
            name: name.into(),
            detail: "too many concurrent writers".into(),
        })
    }

    /// Server-side apply: create when missing, else take spec and labels from `body`, merge
    /// annotations, and leave everything else. Unchanged objects are not written at all.
    pub async fn apply(
        &self,
        kind: &KindInfo,
        name: &str,
        body: Value,
        dry_run: bool,
    ) -> Result<(Value, ApplyOutcome)> {
        let object = self.decode(kind, body.clone(), Some(name))?;
        let desired = object.to_value();
        for _ in 0..8 {
            let Some(current) = self.store.get(&kind.key(name)).await? else {
                match self.create(kind, body.clone(), dry_run).await {
                    Err(Error::AlreadyExists { .. }) => continue,
                    other => return other.map(|v| (v, ApplyOutcome::Created)),
                }
            };
            let stored = Self::to_object(&current)?;
            let next = merge_update(&stored, &desired, true)?;
            if strip_rv(&next) == strip_rv(&stored) {
                return Ok((stored, ApplyOutcome::Unchanged));
            }
            match self
                .write_next(kind, name, &current, &stored, next, dry_run)
                .await
            {
                Err(Error::Conflict { .. }) => continue,
                other => return other.map(|v| (v, ApplyOutcome::Configured)),
            }
        }
        Err(Error::Conflict {
            kind: kind.kind.into(),
            name: name.into(),
            detail: "too many concurrent writers".into(),
        })
    }

    /// Writes `next` over `current` with compare-and-swap, bumping generation on a spec change
    /// and finishing a pending deletion when the last finalizer is gone.
    async fn write_next(
        &self,
        kind: &KindInfo,
        name: &str,
        current: &KeyValue,
        stored: &Value,
        mut next: Value,
        dry_run: bool,
    ) -> Result<Value> {
        if next.get("spec") != stored.get("spec") {
            if kind.kind == "Rollback" {
                return Err(Error::NotAllowed(format!(
                    "Rollback/{name}: spec is immutable once created (a rollback that started \
                     cannot be changed); create a new Rollback"
                )));
            }
            let generation = stored
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta(&mut next).insert("generation".into(), Value::from(generation + 1));
            stamp_actor(&mut next);
        }
        let deleting = stored.pointer("/metadata/deletionTimestamp").is_some();
        let finalizers_left = next
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if deleting {
            let old: Vec<&Value> = stored
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let added = next
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|f| !old.contains(&f)));
            if added {
                return Err(Error::BadRequest(format!(
                    "{}/{name} is being deleted; finalizers can only be removed now",
                    kind.kind
                )));
            }
            if !finalizers_left {
                if dry_run {
                    return Ok(next);
                }
                let (prev, rev) = self
                    .store
                    .delete(&kind.key(name), Some(current.mod_revision))
                    .await
                    .map_err(|e| Self::map_store(kind, name, e))?;
                let mut gone = Self::to_object(&prev)?;
                meta(&mut gone).insert("resourceVersion".into(), Value::String(rev.to_string()));
                return Ok(gone);
            }
        }
        if strip_rv(&next) == strip_rv(stored) {
            return Ok(stored.clone());
        }
        let bytes = Self::encode(&next)?;
        if dry_run {
            return Ok(next);
        }
        let kv = self
            .store
            .update(&kind.key(name), bytes, current.mod_revision)
            .await
            .map_err(|e| Self::map_store(kind, name, e))?;
        Self::to_object(&kv)
    }

    /// Replaces only `status`; the body's spec and metadata are ignored.
    pub async fn update_status(
        &self,
        kind: &KindInfo,
        name: &str,
        body: Value,
        dry_run: bool,
    ) -> Result<Value> {
        let expected = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|rv| rv.parse::<i64>().ok());
        let uid = body
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(String::from);
        if body.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
            return Err(Error::BadRequest(format!(
                "metadata.name must be {name:?}, the name in the URL"
            )));
        }
        // Decode for the status's types only: a status write must not fail on spec rules.
        let typed = AnyObject::from_value(body).map_err(|e| Error::Invalid {
            kind: kind.kind.into(),
            name: name.into(),
            causes: vec![e],
        })?;
        if typed.info() != kind {
            return Err(Error::BadRequest(format!(
                "the body is not a {}",
                kind.kind
            )));
        }
        let status = typed
            .to_value()
            .get("status")
            .cloned()
            .unwrap_or(Value::Null);
        if dry_run {
            let mut v = self.get(kind, name).await?;
            v.as_object_mut()
                .expect("object")
                .insert("status".into(), status);
            return Ok(v);
        }
        let kv = self
            .store
            .update_status(&kind.key(name), status, expected, uid.as_deref())
            .await
            .map_err(|e| Self::map_store(kind, name, e))?;
        Self::to_object(&kv)
    }

    /// Deletes now, or marks for deletion when finalizers remain. Returns the object and
    /// whether it is gone.
    pub async fn delete(
        &self,
        kind: &KindInfo,
        name: &str,
        options: DeleteOptions,
    ) -> Result<(Value, bool)> {
        let DeleteOptions {
            precondition,
            dry_run,
            orphan,
        } = options;
        for _ in 0..8 {
            let current = self.current_at(kind, name, precondition).await?;
            let mut stored = Self::to_object(&current)?;
            let has_finalizers = stored
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            if has_finalizers {
                let marked = stored.pointer("/metadata/deletionTimestamp").is_some();
                let orphaned = stored
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(ORPHAN_ANNOTATION))
                    .and_then(Value::as_str)
                    == Some("orphan");
                if marked && (!orphan || orphaned) {
                    return Ok((stored, false));
                }
                if !marked {
                    meta(&mut stored).insert(
                        "deletionTimestamp".into(),
                        serde_json::to_value(now()).expect("time"),
                    );
                }
                if orphan {
                    // In the same write as the deletion mark: a cleanup that starts
                    // between two writes would undo what the user asked to keep.
                    let annotations = meta(&mut stored)
                        .entry("annotations")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Some(a) = annotations.as_object_mut() {
                        a.insert(ORPHAN_ANNOTATION.into(), Value::String("orphan".into()));
                    }
                }
                if dry_run {
                    return Ok((stored, false));
                }
                match self
                    .store
                    .update(
                        &kind.key(name),
                        Self::encode(&stored)?,
                        current.mod_revision,
                    )
                    .await
                {
                    Ok(kv) => return Ok((Self::to_object(&kv)?, false)),
                    Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
                    Err(e) => return Err(Self::map_store(kind, name, e)),
                }
            }
            if dry_run {
                return Ok((stored, true));
            }
            match self
                .store
                .delete(&kind.key(name), Some(current.mod_revision))
                .await
            {
                Ok((prev, rev)) => {
                    let mut gone = Self::to_object(&prev)?;
                    meta(&mut gone)
                        .insert("resourceVersion".into(), Value::String(rev.to_string()));
                    return Ok((gone, true));
                }
                Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
                Err(e) => return Err(Self::map_store(kind, name, e)),
            }
        }
        Err(Error::Conflict {
            kind: kind.kind.into(),
            name: name.into(),
            detail: "too many concurrent writers".into(),
        })
    }

    /// Changes to objects of `kind` after resourceVersion `after` (exclusive), with bookmarks.
    pub async fn watch(
        &self,
        kind: &KindInfo,
        after: i64,
        selectors: Selectors,
        bookmarks: Option<Duration>,
    ) -> Result<impl futures::Stream<Item = Result<ObjectEvent>> + Send + use<>> {
        let stream = self
            .store
            .watch(&kind.key_prefix(), after + 1, bookmarks)
            .await
            .map_err(|e| match e {
                StoreError::Compacted { requested, compact_revision } => Error::Gone(format!(
                    "resourceVersion {} is too old (history before {compact_revision} was compacted); \
                     re-list and watch from the list's resourceVersion",
                    requested - 1
                )),
                other => Error::Store(other),
            })?;
        Ok(stream.filter_map(move |event| {
            let selectors = selectors.clone();
            async move {
                let event = match event {
                    Ok(e) => e,
                    Err(StoreError::Compacted { compact_revision, .. }) => {
                        return Some(Err(Error::Gone(format!(
                            "the watch fell behind compacted history (revision {compact_revision}); re-list"
                        ))));
                    }
                    Err(e) => return Some(Err(Error::Store(e))),
                };
                let converted = match event {
                    WatchEvent::Progress { revision } => return Some(Ok(ObjectEvent::Bookmark(revision))),
                    WatchEvent::Put(kv) => Self::to_object(&kv).map(|v| {
                        if kv.version == 1 { ObjectEvent::Added(v) } else { ObjectEvent::Modified(v) }
                    }),
                    WatchEvent::Delete { revision, prev: Some(prev), .. } => Self::to_object(&prev).map(|mut v| {
                        meta(&mut v).insert("resourceVersion".into(), Value::String(revision.to_string()));
                        ObjectEvent::Deleted(v)
                    }),
                    WatchEvent::Delete { prev: None, .. } => return None,
                };
                match converted {
                    Ok(ObjectEvent::Added(v)) if !selectors.matches(&v) => None,
                    Ok(ObjectEvent::Modified(v)) if !selectors.matches(&v) => None,
                    Ok(ObjectEvent::Deleted(v)) if !selectors.matches(&v) => None,
                    other => Some(other),
                }
            }
        }))
    }
}

/// Drains a watch into a Vec until `n` events arrived (test helper for reconciler tests).
#[doc(hidden)]
pub async fn collect_events(
    stream: impl futures::Stream<Item = Result<ObjectEvent>>,
    n: usize,
    timeout: Duration,
) -> Vec<ObjectEvent> {
    let mut out = Vec::new();
    let mut stream = std::pin::pin!(stream);
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(ObjectEvent::Bookmark(_)))) => continue,
            Ok(Some(Ok(e))) => out.push(e),
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests;
