//! `hkctl sync gitsource/NAME` and `hkctl release KIND/NAME`: ask a GitSource to sync now
//! and wait for it, and release an object a Rollback held back from git.

use std::time::Duration;

use hostkit_api::kinds::{KindInfo, find_kind};
use hostkit_api::wellknown;

use crate::Result;
use crate::annotations::set_annotation;
use crate::client::Client;

/// How a sync ended.
pub struct Synced {
    pub ok: bool,
    pub message: String,
}

/// Asks the GitSource to sync now (even when suspended) and waits for the controller to
/// act on it.
pub async fn sync(c: &Client, name: &str, timeout: Duration) -> Result<Synced> {
    let kind = find_kind("gitsources").expect("a kind");
    let mut progress = crate::progress::EventTail::start(c, kind, name).await?;
    let stamp = crate::reconcile::request(c, kind, name).await?;
    Ok(
        match crate::reconcile::handled(c, kind, name, &stamp, timeout, Some(&mut progress)).await?
        {
            Some(v) => {
                let (status, _, message) =
                    crate::reconcile::condition(&v, "Ready").unwrap_or_default();
                Synced {
                    ok: status == "True",
                    message,
                }
            }
            None => Synced {
                ok: false,
                message: format!(
                    "the controller has not synced gitsource/{name} within {}s; is it running?",
                    timeout.as_secs()
                ),
            },
        },
    )
}

/// Lets git apply an object again that a Rollback held back; true when it was held.
pub async fn release(c: &Client, kind: &KindInfo, name: &str) -> Result<bool> {
    set_annotation(c, kind, name, wellknown::GIT_HOLD, None).await
}
