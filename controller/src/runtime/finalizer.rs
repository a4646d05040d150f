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
pub async fn set(objects: &Objects, kind: &KindInfo, name: &str, present: bool) -> Result<()> {
    for _ in 0..5 {
        let mut v = match objects.get(kind, name).await {
            Ok(v) => v,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
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

#[cfg(test)]
mod tests {
    use hostkit_api::kinds::HostSpec;

    use super::*;

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
