//! What a sync writes: the revision's documents parsed and validated all or nothing
//! ([`parse`]), each applied as the source ([`apply_one`]) unless another source owns it or
//! a Rollback holds it, and objects the revision no longer has pruned ([`prune_one`]) or,
//! when the source goes without pruning, released ([`release_one`]).

use std::collections::BTreeMap;

use hostkit_api::kinds::KindInfo;
use hostkit_api::manifest::{Document, parse_documents};
use hostkit_api::{AnyObject, DocumentError, wellknown};
use hostkit_engine::git::Snapshot;
use serde_json::Value;
use sha2::Digest;

use crate::context::Applied as Written;
use crate::{Context, Error, Result};

/// Kinds applied first go first: what others refer to exists before them.
const ORDER: [&str; 8] = [
    "Project",
    "Host",
    "PolicyWindow",
    "Instance",
    "GitSource",
    "Service",
    "Rollback",
    "Event",
];

/// What one document becomes in the store.
pub struct Desired {
    pub doc: Document,
    /// The object as the server stores it (defaulted), to compare with the live one.
    defaulted: AnyObject,
    body: Value,
    pub digest: String,
}

fn digest(v: &Value) -> String {
    hex::encode(sha2::Sha256::digest(v.to_string().as_bytes()))[..16].to_string()
}

fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.pointer("/metadata/annotations")?.get(key)?.as_str()
}

fn label<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.pointer("/metadata/labels")?.get(key)?.as_str()
}

/// Parses and validates every document of the revision; any error fails them all.
pub fn parse(
    source: &str,
    snapshot: &Snapshot,
) -> std::result::Result<Vec<Desired>, Vec<DocumentError>> {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (path, text) in &snapshot.files {
        for r in parse_documents(path, text) {
            match r {
                Ok(d) => docs.push(d),
                Err(e) => errors.extend(e),
            }
        }
    }
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for d in &docs {
        let at = format!("{}:{}", d.file, d.line);
        let refuse = |field: Option<&str>, message: String| DocumentError {
            file: d.file.clone(),
            line: d.line,
            object: Some(d.display_name()),
            field: field.map(String::from),
            message,
        };
        let kind = d.object.info().kind;
        if matches!(kind, "Revision" | "Event") {
            errors.push(refuse(
                Some("kind"),
                format!("{kind} objects are written by the controller, not synced from git"),
            ));
        }
        if kind == "GitSource" && d.object.meta().name == source {
            errors.push(refuse(None, "a GitSource cannot manage itself".into()));
        }
        if let Some(first) = seen.insert(d.display_name(), at.clone()) {
            errors.push(refuse(
                None,
                format!("defined twice (also at {first}); define each object once"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    docs.sort_by_key(|d| {
        ORDER
            .iter()
            .position(|k| *k == d.object.info().kind)
            .unwrap_or(ORDER.len())
    });
    Ok(docs
        .into_iter()
        .map(|doc| {
            let digest = digest(&doc.object.to_value());
            // Compared with the stored object, which the server defaulted.
            let mut defaulted = doc.object.clone();
            defaulted.apply_defaults();
            let body = defaulted.to_value();
            Desired {
                doc,
                defaulted,
                body,
                digest,
            }
        })
        .collect())
}

/// The cached object of any kind, typed.
fn cached(ctx: &dyn Context, kind: &'static KindInfo, name: &str) -> Option<AnyObject> {
    macro_rules! find {
        ($($variant:ident => $spec:ty,)*) => {
            $(if kind == <$spec as hostkit_api::KindSpec>::INFO {
                return ctx
                    .cached::<$spec>(name)
                    .map(|o| AnyObject::$variant(Box::new((*o).clone())));
            })*
        };
    }
    hostkit_api::for_each_kind!(find);
    None
}

/// What applying one object did.
pub enum Outcome {
    Written { reverted: bool },
    Unchanged,
    Held,
    Conflict(String),
}

/// Applies one object as `source` at `revision_source` (`gitsource/infra@main@sha1:…`).
pub async fn apply_one(
    ctx: &dyn Context,
    source: &str,
    d: &Desired,
    revision_source: &str,
) -> Result<Outcome> {
    let info = d.doc.object.info();
    let name = d.doc.object.meta().name.clone();
    // The watch cache first: a no-change sync then reads nothing from the store. A cache a
    // moment behind only delays noticing a hand edit to the next sync; every write below
    // is a server-side apply against the stored object.
    let live = match cached(ctx, info, &name) {
        Some(o) => Some(o),
        None => match ctx.get(info, &name).await {
            Ok(v) => AnyObject::from_value(v).ok(),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        },
    };
    let live_meta = live.as_ref().map(AnyObject::meta);
    if let Some(m) = live_meta {
        if let Some(owner) = m.labels.get(wellknown::GITSOURCE).filter(|o| *o != source) {
            return Ok(Outcome::Conflict(owner.clone()));
        }
        if m.annotations.get(wellknown::GIT_HOLD) == Some(&d.digest) {
            return Ok(Outcome::Held);
        }
    }
    let unchanged_in_git =
        live_meta.and_then(|m| m.annotations.get(wellknown::SOURCE_DIGEST)) == Some(&d.digest);
    // The revision that last changed the object: kept while the manifest is unchanged, so
    // an unchanged object is not rewritten for every commit.
    let stamp = match live_meta.and_then(|m| m.annotations.get(wellknown::SOURCE)) {
        Some(s) if unchanged_in_git => s.clone(),
        _ => revision_source.to_string(),
    };
    let mut labels = d.doc.object.meta().labels.clone();
    labels.insert(wellknown::GITSOURCE.into(), source.to_string());
    // The manifest's annotations and ours; others on the live object stay.
    let mut ours = d.doc.object.meta().annotations.clone();
    ours.insert(wellknown::SOURCE_DIGEST.to_string(), d.digest.clone());
    ours.insert(wellknown::SOURCE.to_string(), stamp);
    if let Some(l) = &live
        && unchanged_in_git
        && already_applied(l, &d.defaulted, &labels, &ours)
    {
        return Ok(Outcome::Unchanged);
    }
    let mut body = d.body.clone();
    let meta = body["metadata"].as_object_mut().expect("metadata");
    meta.insert(
        "labels".into(),
        serde_json::to_value(&labels).expect("labels"),
    );
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    for (k, v) in &ours {
        annotations[k] = Value::String(v.clone());
    }
    let written = ctx
        .apply(info, &name, body, &format!("gitsource/{source}"))
        .await?;
    // A hold that git has moved past is over.
    if live_meta.is_some_and(|m| m.annotations.contains_key(wellknown::GIT_HOLD)) {
        remove_annotation(ctx, info, &name, wellknown::GIT_HOLD).await?;
    }
    Ok(match written {
        Written::Unchanged => Outcome::Unchanged,
        Written::Created => Outcome::Written { reverted: false },
        Written::Configured => Outcome::Written {
            reverted: unchanged_in_git,
        },
    })
}

/// Whether `live` already has what applying `desired` would set: its spec, its labels, and
/// the annotations the apply sets (others may be there too).
fn already_applied(
    live: &AnyObject,
    desired: &AnyObject,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> bool {
    let m = live.meta();
    live.spec_eq(desired)
        && m.labels == *labels
        && annotations
            .iter()
            .all(|(k, v)| m.annotations.get(k) == Some(v))
}

/// Deletes an object this source applied and no longer has; false when it is not ours any
/// more, is gone already, or opts out with `hostkit.dev/prune: disabled`.
pub async fn prune_one(ctx: &dyn Context, source: &str, kind: &str, name: &str) -> Result<bool> {
    let Some(info) = hostkit_api::kinds::kind_by_name(kind) else {
        return Ok(false);
    };
    let live = match ctx.get(info, name).await {
        Ok(v) => v,
        Err(Error::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    if label(&live, wellknown::GITSOURCE) != Some(source)
        || annotation(&live, wellknown::PRUNE) == Some("disabled")
    {
        return Ok(false);
    }
    match ctx.delete(info, name).await {
        Ok(_) | Err(Error::NotFound { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Removes this source's label from an object it applied; false when it is not ours.
pub async fn release_one(ctx: &dyn Context, source: &str, kind: &str, name: &str) -> Result<bool> {
    let Some(info) = hostkit_api::kinds::kind_by_name(kind) else {
        return Ok(false);
    };
    let release = |v: &mut Value| {
        label(v, wellknown::GITSOURCE) == Some(source)
            && v.pointer_mut("/metadata/labels")
                .and_then(Value::as_object_mut)
                .is_some_and(|l| l.remove(wellknown::GITSOURCE).is_some())
    };
    match ctx.modify(info, name, None, release).await {
        Ok(written) => Ok(written.is_some()),
        Err(Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes one annotation (metadata only), retrying on conflicts.
pub async fn remove_annotation(
    ctx: &dyn Context,
    info: &'static KindInfo,
    name: &str,
    key: &str,
) -> Result<()> {
    let remove = |v: &mut Value| {
        v.pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
            .is_some_and(|a| a.remove(key).is_some())
    };
    ctx.modify(info, name, None, remove).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn service(v: Value) -> AnyObject {
        AnyObject::from_value(v).unwrap()
    }

    #[test]
    fn an_object_is_already_applied_when_spec_labels_and_our_annotations_match() {
        let desired = service(
            json!({"apiVersion": "hostkit.dev/v1alpha1", "kind": "Service",
            "metadata": {"name": "a"}, "spec": {"hosts": ["h1"]}}),
        );
        let labels = BTreeMap::from([("hostkit.dev/gitsource".to_string(), "g".to_string())]);
        let ours = BTreeMap::from([("hostkit.dev/source-digest".to_string(), "d1".to_string())]);
        let live = json!({"apiVersion": "hostkit.dev/v1alpha1", "kind": "Service",
            "metadata": {"name": "a", "labels": {"hostkit.dev/gitsource": "g"},
                "annotations": {"hostkit.dev/source-digest": "d1", "hostkit.dev/changed-by": "gitsource/g"}},
            "spec": {"hosts": ["h1"]}, "status": {"observedGeneration": 1}});
        assert!(
            already_applied(&service(live.clone()), &desired, &labels, &ours),
            "other annotations and status do not matter"
        );
        let mut edited = live.clone();
        edited["spec"]["hosts"] = json!(["h2"]);
        assert!(
            !already_applied(&service(edited), &desired, &labels, &ours),
            "a hand edit of the spec"
        );
        let mut relabelled = live.clone();
        relabelled["metadata"]["labels"]["team"] = json!("x");
        assert!(
            !already_applied(&service(relabelled), &desired, &labels, &ours),
            "git owns the labels"
        );
        let mut moved = live;
        moved["metadata"]["annotations"]["hostkit.dev/source-digest"] = json!("d0");
        assert!(!already_applied(&service(moved), &desired, &labels, &ours));
    }

    #[test]
    fn digests_follow_the_manifest() {
        assert_eq!(digest(&json!({"a": 1})), digest(&json!({"a": 1})));
        assert_ne!(digest(&json!({"a": 1})), digest(&json!({"a": 2})));
        assert_eq!(digest(&json!({"a": 1})).len(), 16);
    }
}
