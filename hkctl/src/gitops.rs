//! `hkctl sync gitsource/NAME` and `hkctl resume KIND/NAME`: ask a GitSource to sync now
//! and wait for it, and release an object a Rollback held back from git.

use std::time::Duration;

use hostkit_api::kinds::{KindInfo, find_kind};
use hostkit_api::wellknown;
use serde_json::Value;

use crate::client::Client;
use crate::{Error, Result};

/// Sets or removes one annotation with a read-modify-write, retrying when the controller
/// wrote the object in between.
async fn set_annotation(
    c: &Client,
    kind: &KindInfo,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> Result<bool> {
    for _ in 0..8 {
        let mut v = c.get(kind, name).await?;
        let meta = v
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| Error::Protocol("an object without metadata".into()))?;
        let a = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()))
            .as_object_mut()
            .ok_or_else(|| Error::Protocol("annotations are not a map".into()))?;
        let changed = match value {
            Some(x) => {
                a.insert(key.into(), Value::String(x.into())) != Some(Value::String(x.into()))
            }
            None => a.remove(key).is_some(),
        };
        if !changed {
            return Ok(false);
        }
        match c.replace(kind, name, &v).await {
            Ok(_) => return Ok(true),
            Err(Error::Server { code: 409, .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Protocol(format!(
        "{}/{name} kept changing; try again",
        kind.singular
    )))
}

/// How a sync ended.
pub struct Synced {
    pub ok: bool,
    pub message: String,
}

/// Asks the GitSource to sync now (even when suspended) and waits for the controller to
/// act on it.
pub async fn sync(c: &Client, name: &str, timeout: Duration) -> Result<Synced> {
    let kind = find_kind("gitsources").expect("a kind");
    let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    set_annotation(c, kind, name, wellknown::REQUESTED_AT, Some(&stamp)).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let v = c.get(kind, name).await?;
        if v.pointer("/status/lastHandledRequestedAt")
            .and_then(Value::as_str)
            == Some(&stamp)
        {
            let ready = v
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
                .unwrap_or_default();
            return Ok(Synced {
                ok: ready["status"] == "True",
                message: ready["message"].as_str().unwrap_or("").to_string(),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Synced {
                ok: false,
                message: format!(
                    "the controller has not synced gitsource/{name} within {}s; is it running?",
                    timeout.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lets git apply an object again that a Rollback held back; true when it was held.
pub async fn resume(c: &Client, kind: &KindInfo, name: &str) -> Result<bool> {
    set_annotation(c, kind, name, wellknown::GIT_HOLD, None).await
}
