//! What a Rollback does to its target object (a Service or a Host): hold its applies while
//! hosts are rolled back, release it after a failure, and set it back to the revision at
//! the end. Each is a read-modify-write of the target's metadata (and spec), retried when
//! someone else wrote in between.

use std::collections::BTreeMap;

use hostkit_api::KindInfo;
use hostkit_api::kinds::{HostSpec, Object, ServiceSpec};
use hostkit_api::{KindSpec, wellknown};
use serde_json::Value;

use crate::{Context, Result};

/// What a Rollback needs of its target, whichever kind it is.
pub(super) struct TargetObject {
    pub kind: &'static KindInfo,
    pub uid: Option<String>,
    pub generation: i64,
    pub labels: BTreeMap<String, String>,
    pub spec: Value,
    /// The highest revision number the target's status names.
    pub current_revision: Option<u64>,
}

/// The kind a `targetRef.kind` names, when it can be rolled back.
pub(super) fn target_kind(kind: &str) -> Option<&'static KindInfo> {
    match kind {
        "Service" => Some(ServiceSpec::INFO),
        "Host" => Some(HostSpec::INFO),
        _ => None,
    }
}

/// The target as the cache has it.
pub(super) fn cached_target(
    ctx: &dyn Context,
    kind: &'static KindInfo,
    name: &str,
) -> Option<TargetObject> {
    if kind == ServiceSpec::INFO {
        let o = ctx.cached::<ServiceSpec>(name)?;
        Some(TargetObject::of(
            &o,
            o.status.as_ref().and_then(|s| s.current_revision),
        ))
    } else {
        let o = ctx.cached::<HostSpec>(name)?;
        Some(TargetObject::of(
            &o,
            o.status.as_ref().and_then(|s| s.current_revision),
        ))
    }
}

impl TargetObject {
    fn of<K: KindSpec>(o: &Object<K>, current_revision: Option<u64>) -> TargetObject {
        TargetObject {
            kind: K::INFO,
            uid: o.metadata.uid.clone(),
            generation: o.metadata.generation.unwrap_or(1),
            labels: o.metadata.labels.clone(),
            spec: serde_json::to_value(&o.spec).expect("specs serialise"),
            current_revision,
        }
    }
}

/// The annotations of a stored object, created when missing.
fn annotations(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    v["metadata"]
        .as_object_mut()
        .expect("stored objects have metadata")
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()))
        .as_object_mut()
        .expect("annotations are a map")
}

/// Holds the target's own applies while `rollback` runs (a gone target is no error).
pub(super) async fn hold(
    ctx: &dyn Context,
    kind: &'static KindInfo,
    name: &str,
    rollback: &str,
) -> Result<()> {
    let held = ctx
        .modify(kind, name, None, |v| {
            let a = annotations(v);
            if a.get(wellknown::ROLLBACK_IN_PROGRESS)
                .and_then(Value::as_str)
                == Some(rollback)
            {
                return false;
            }
            a.insert(
                wellknown::ROLLBACK_IN_PROGRESS.into(),
                Value::String(rollback.into()),
            );
            true
        })
        .await;
    match held {
        Err(e) if e.is_not_found() => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Lets the target apply again after a failed rollback (it rolls forward to its spec).
pub(super) async fn release(
    ctx: &dyn Context,
    kind: &'static KindInfo,
    name: &str,
    rollback: &str,
) {
    let released = ctx
        .modify(kind, name, None, |v| {
            let a = annotations(v);
            let ours = a
                .get(wellknown::ROLLBACK_IN_PROGRESS)
                .and_then(Value::as_str)
                == Some(rollback);
            ours && a.remove(wellknown::ROLLBACK_IN_PROGRESS).is_some()
        })
        .await;
    match released {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            tracing::warn!(target = name, error = ?e, "could not release the target after a failed rollback")
        }
    }
}

/// How the target is set back at the end.
pub(super) struct Reset<'a> {
    pub rollback: &'a str,
    /// The revision it goes back to.
    pub to: u64,
    /// The revision's spec (a full rollback), or `None` with `only`.
    pub spec: Option<Value>,
    /// The resource ids restored by a rollback with `only`: held out of plans.
    pub only: &'a [String],
    /// The target's generation now (the held ids are tied to it).
    pub generation_now: i64,
    /// Recorded as who changed the spec.
    pub actor: String,
}

/// Sets the target back: its spec (a full rollback) or the held ids (`only`), in one write
/// with the annotations; returns the target's generation after it. A resumed rollback that
/// already did this changes nothing.
pub(super) async fn reset(
    ctx: &dyn Context,
    kind: &'static KindInfo,
    name: &str,
    r: &Reset<'_>,
) -> Result<i64> {
    let generation_of = |v: &Value| {
        v.pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(r.generation_now)
    };
    let mut generation = r.generation_now;
    let to = r.to.to_string();
    let written = ctx
        .modify(kind, name, Some(&r.actor), |current| {
            let done = current.pointer("/metadata/annotations").is_some_and(|a| {
                a.get(wellknown::ROLLBACK_IN_PROGRESS).is_none()
                    && a.get(wellknown::ROLLED_BACK_TO).and_then(Value::as_str) == Some(&to)
            });
            if done {
                generation = generation_of(current);
                return false;
            }
            if let Some(spec) = &r.spec {
                current["spec"] = spec.clone();
            }
            let a = annotations(current);
            if a.get(wellknown::ROLLBACK_IN_PROGRESS)
                .and_then(Value::as_str)
                == Some(r.rollback)
            {
                a.remove(wellknown::ROLLBACK_IN_PROGRESS);
            }
            a.insert(wellknown::ROLLED_BACK_TO.into(), Value::String(to.clone()));
            // A Service synced from git stays rolled back until its manifest changes there.
            if let Some(digest) = a.get(wellknown::SOURCE_DIGEST).cloned() {
                a.insert(wellknown::GIT_HOLD.into(), digest);
            }
            if r.only.is_empty() {
                a.remove(wellknown::HELD);
            } else {
                a.insert(
                    wellknown::HELD.into(),
                    Value::String(wellknown::format_held(r.generation_now, r.only)),
                );
            }
            true
        })
        .await?;
    Ok(written.as_ref().map(generation_of).unwrap_or(generation))
}
