//! One annotation set or removed on an object, for the verbs that ask the controller
//! something through annotations (`reconcile`, `sync`, `release`).

use hostkit_api::kinds::KindInfo;
use serde_json::{Value, json};

use crate::Result;
use crate::client::{Client, PatchType};

/// Sets or removes one annotation with a merge patch (the server applies it to the object
/// as stored, so a controller's write in between is never lost); true when it changed.
pub(crate) async fn set_annotation(
    c: &Client,
    kind: &KindInfo,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> Result<bool> {
    let before = c.get(kind, name).await?;
    let current = before
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str);
    if current == value {
        return Ok(false);
    }
    let patch = json!({"metadata": {"annotations": {key: value}}});
    c.patch(kind, name, PatchType::Merge, &patch, false).await?;
    Ok(true)
}
