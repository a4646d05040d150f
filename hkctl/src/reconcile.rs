//! Asking the controller for a whole pass now: `hkctl reconcile` and `hkctl sync` set the
//! `hostkit.dev/requestedAt` annotation to a fresh time, and the controller writes that
//! value to `status.lastHandledRequestedAt` with the status that ends the pass, so the
//! object read then says how that very pass ended.

use std::time::Duration;

use hostkit_api::kinds::KindInfo;
use hostkit_api::wellknown;
use serde_json::Value;

use crate::Result;
use crate::annotations::set_annotation;
use crate::client::Client;
use crate::progress::EventTail;

/// Sets the request annotation; the value to wait for.
pub async fn request(c: &Client, kind: &KindInfo, name: &str) -> Result<String> {
    let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    set_annotation(c, kind, name, wellknown::REQUESTED_AT, Some(&stamp)).await?;
    Ok(stamp)
}

/// Waits until the pass asked for with `stamp` has ended: the object then, or `None` when
/// `timeout` passed first. `progress` prints the object's events as they are recorded.
pub async fn handled(
    c: &Client,
    kind: &KindInfo,
    name: &str,
    stamp: &str,
    timeout: Duration,
    mut progress: Option<&mut EventTail>,
) -> Result<Option<Value>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let v = c.get(kind, name).await?;
        if let Some(p) = progress.as_deref_mut() {
            p.print_new(c).await?;
        }
        if v.pointer("/status/lastHandledRequestedAt")
            .and_then(Value::as_str)
            == Some(stamp)
        {
            return Ok(Some(v));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A condition of `object`: (status, reason, message), or `None` when it has none.
pub fn condition(object: &Value, type_: &str) -> Option<(String, String, String)> {
    let c = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == type_)?;
    let text = |f: &str| c[f].as_str().unwrap_or("").to_string();
    Some((text("status"), text("reason"), text("message")))
}
