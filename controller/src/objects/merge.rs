//! What an update or a server-side apply keeps of the stored object and takes from the
//! request: spec, labels and (merged or replaced) annotations from the request; status and
//! the server's fields from the store.

use super::*;

pub(super) fn strip_rv(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}

/// The object that results from writing `desired` over `stored`: user-owned fields from
/// `desired`, server-owned fields and status from `stored`. With `merge_annotations`
/// (apply), annotations are merged instead of replaced and finalizers are kept.
pub(super) fn merge_update(
    stored: &Value,
    desired: &Value,
    merge_annotations: bool,
) -> Result<Value> {
    let mut next = stored.clone();
    let obj = next.as_object_mut().expect("object");
    match desired.get("spec") {
        Some(spec) => obj.insert("spec".into(), spec.clone()),
        None => obj.remove("spec"),
    };
    let desired_meta = desired
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let m = meta(&mut next);
    for field in ["labels", "ownerReferences"] {
        match desired_meta.get(field) {
            Some(v) => m.insert(field.into(), v.clone()),
            None if field == "ownerReferences" && merge_annotations => None,
            None => m.remove(field),
        };
    }
    if merge_annotations {
        let mut merged = m
            .get("annotations")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(a) = desired_meta.get("annotations").and_then(Value::as_object) {
            for (k, v) in a {
                merged.insert(k.clone(), v.clone());
            }
        }
        if merged.is_empty() {
            m.remove("annotations");
        } else {
            m.insert("annotations".into(), Value::Object(merged));
        }
        if let Some(f) = desired_meta.get("finalizers").and_then(Value::as_array) {
            let mut all = m
                .get("finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for x in f {
                if !all.contains(x) {
                    all.push(x.clone());
                }
            }
            m.insert("finalizers".into(), Value::Array(all));
        }
    } else {
        for field in ["annotations", "finalizers"] {
            match desired_meta.get(field) {
                Some(v) => m.insert(field.into(), v.clone()),
                None => m.remove(field),
            };
        }
    }
    Ok(next)
}
