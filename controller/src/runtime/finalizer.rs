//! Finalizers, kube-runtime's way: every reconciled object carries
//! [`FINALIZER`](hostkit_api::wellknown::FINALIZER) from its first reconcile, so that a
//! delete waits for its cleanup (a Service's files leave its hosts first). [`step`] says
//! what an object needs now; [`set`] adds or removes the finalizer.

use std::sync::Arc;

use hostkit_api::kinds::{KindInfo, KindSpec, Object};
use hostkit_api::wellknown::{CASCADE, FINALIZER};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::objects::Objects;

/// What an object needs from the runtime now.
pub enum Step<K: KindSpec> {
    /// New: add the finalizer first (then reconcile).
    AddFinalizer,
    /// Alive and finalized: reconcile it.
    Apply(Arc<Object<K>>),
    /// Being deleted: clean up (unless `orphan`: `--cascade=orphan` leaves the hosts as
    /// they are), then remove the finalizer.
    Cleanup {
        object: Arc<Object<K>>,
        orphan: bool,
    },
    /// Being deleted and no longer ours: nothing to do.
    Done,
}

pub fn step<K: KindSpec>(object: Arc<Object<K>>) -> Step<K> {
    let has_finalizer = object.metadata.finalizers.iter().any(|f| f == FINALIZER);
    match (object.metadata.deletion_timestamp.is_some(), has_finalizer) {
        (true, false) => Step::Done,
        (true, true) => {
            let orphan =
                object.metadata.annotations.get(CASCADE).map(String::as_str) == Some("orphan");
            Step::Cleanup { object, orphan }
        }
        (false, false) => Step::AddFinalizer,
        (false, true) => Step::Apply(object),
    }
}

/// Adds or removes [`FINALIZER`], retrying on conflicts. A gone object is no error.
/// With `uid`, only that object: one deleted and created again under the same name (whose
/// watch event the cache may not have yet) is left alone.
pub async fn set(
    objects: &Objects,
    kind: &KindInfo,
    name: &str,
    present: bool,
    uid: Option<&str>,
) -> Result<()> {
    for _ in 0..5 {
        let mut v = match objects.get(kind, name).await {
            Ok(v) => v,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if uid.is_some_and(|uid| uid_of(&v) != uid) {
            return Ok(());
        }
        let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let list = meta
            .entry("finalizers")
            .or_insert_with(|| Value::Array(vec![]));
        let Some(arr) = list.as_array_mut() else {
            return Ok(());
        };
        if arr.iter().any(|x| x == FINALIZER) == present {
            return Ok(());
        }
        if present {
            arr.push(Value::String(FINALIZER.into()));
        } else {
            arr.retain(|x| x != FINALIZER);
        }
        match objects.update(kind, name, v, false).await {
            Ok(_) => return Ok(()),
            Err(Error::Conflict { .. }) => continue,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict {
        kind: kind.kind.into(),
        name: name.into(),
        detail: "finalizer update kept conflicting".into(),
    })
}

fn uid_of(v: &Value) -> &str {
    v.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether the store still holds this very object (same uid), marked for deletion and
/// finalized by us. A cleanup runs only then: the cache can lag behind a delete, and a
/// second cleanup under the same name could undo the object created in its place.
pub async fn still_to_clean(
    objects: &Objects,
    kind: &KindInfo,
    name: &str,
    uid: &str,
) -> Result<bool> {
    match objects.get(kind, name).await {
        Ok(v) => Ok(uid_of(&v) == uid
            && v.pointer("/metadata/deletionTimestamp").is_some()
            && v.pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|x| x == FINALIZER))),
        Err(Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hostkit_api::kinds::{HostSpec, find_kind};
    use serde_json::json;

    use super::*;
    use crate::objects::DeleteOptions;
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};

    #[tokio::test]
    async fn a_cleanup_and_its_release_touch_only_the_object_they_were_for() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("s.redb"), EmbeddedOptions::default()).unwrap();
        let objects = Objects::new(Arc::new(store), Duration::from_secs(3600));
        let host = find_kind("host").unwrap();
        let doc = json!({"apiVersion": "hostkit.dev/v1alpha1", "kind": "Host",
                         "metadata": {"name": "h", "finalizers": [FINALIZER]},
                         "spec": {"address": "127.0.0.1"}});
        let old = objects.create(host, doc.clone(), false).await.unwrap();
        let old_uid = old["metadata"]["uid"].as_str().unwrap().to_string();
        assert!(
            !still_to_clean(&objects, host, "h", &old_uid).await.unwrap(),
            "not deleting"
        );
        objects
            .delete(host, "h", DeleteOptions::default())
            .await
            .unwrap();
        assert!(still_to_clean(&objects, host, "h", &old_uid).await.unwrap());
        set(&objects, host, "h", false, Some(&old_uid))
            .await
            .unwrap();
        assert!(objects.get(host, "h").await.is_err(), "released and gone");
        assert!(
            !still_to_clean(&objects, host, "h", &old_uid).await.unwrap(),
            "gone"
        );

        // Created again under the name: a late cleanup of the old one finds nothing to do,
        // and its release leaves the new object's finalizer.
        let new = objects.create(host, doc, false).await.unwrap();
        objects
            .delete(host, "h", DeleteOptions::default())
            .await
            .unwrap();
        assert!(!still_to_clean(&objects, host, "h", &old_uid).await.unwrap());
        set(&objects, host, "h", false, Some(&old_uid))
            .await
            .unwrap();
        let stored = objects.get(host, "h").await.unwrap();
        assert_eq!(stored["metadata"]["finalizers"], json!([FINALIZER]));
        assert_eq!(stored["metadata"]["uid"], new["metadata"]["uid"]);
    }

    #[test]
    fn an_object_is_finalized_first_cleaned_up_on_delete_and_left_alone_after() {
        let mut o = Object::new("a", HostSpec::default());
        assert!(matches!(step(Arc::new(o.clone())), Step::AddFinalizer));
        o.metadata.finalizers.push(FINALIZER.into());
        assert!(matches!(step(Arc::new(o.clone())), Step::Apply(_)));
        o.metadata.deletion_timestamp = Some(chrono::Utc::now());
        assert!(matches!(
            step(Arc::new(o.clone())),
            Step::Cleanup { orphan: false, .. }
        ));
        o.metadata
            .annotations
            .insert(CASCADE.into(), "orphan".into());
        assert!(matches!(
            step(Arc::new(o.clone())),
            Step::Cleanup { orphan: true, .. }
        ));
        o.metadata.finalizers.clear();
        assert!(matches!(step(Arc::new(o)), Step::Done));
    }
}
