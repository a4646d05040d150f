//! A Host's package lock (`status.packageLock`): the Host reconciler is its only writer.
//! It records the version of each package the host's resources install (its own and its
//! Services') the first time a read sees it installed, every plan on the host pins those
//! versions, and `hkctl lock update` moves them to the newest the specs allow.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hostkit_api::kinds::PackageLockStatus;
use hostkit_engine::packages::lock;
use hostkit_engine::plan::PackageLock;
use hostkit_engine::resource::Resource;
use hostkit_engine::transport::Transport;

use crate::context::Note;

/// Acts once on a `hostkit.dev/lock-update` value the lock has not handled: asks the host
/// for the newest version of each package its spec allows and moves the lock there (the
/// plans that follow install them). A host never read yet has no known package manager:
/// the request waits for a pass that has one.
pub(crate) async fn update_if_asked(
    status: &mut PackageLockStatus,
    request: Option<&str>,
    transport: &dyn Transport,
    manager: Option<&str>,
    resources: &[Resource],
    now: DateTime<Utc>,
) -> Option<Note> {
    let request = request.filter(|r| status.updated_for.as_deref() != Some(*r))?;
    let manager = manager?;
    status.updated_for = Some(request.to_string());
    let wanted = lock::wanted(resources, manager);
    match lock::newest(transport, manager, &wanted).await {
        Ok(newest) => {
            let moved = changes(&status.packages, &newest);
            status.packages = newest;
            status.updated_at = Some(now);
            let message = if moved.is_empty() {
                format!(
                    "lock update: the {} locked package(s) are the newest their specs allow",
                    status.packages.len()
                )
            } else {
                format!("lock update: {}", moved.join(", "))
            };
            status.message = Some(message.clone());
            Some(Note::normal("PackageLockUpdated", message))
        }
        Err(e) => {
            let message = format!("lock update failed, the lock is unchanged: {e}");
            status.message = Some(message.clone());
            Some(Note::warning("PackageLockUpdateFailed", message))
        }
    }
}

/// After a read: packages seen installed for the first time are locked at that version,
/// and packages nothing on the host installs any more leave the lock.
pub(crate) fn record(
    status: &mut PackageLockStatus,
    resources: &[Resource],
    manager: &str,
    installed: &PackageLock,
) {
    let wanted = lock::wanted(resources, manager);
    status.packages = lock::merge(&status.packages, &wanted, installed);
}

/// `name old → new` for each package whose version moved (new ones as `name → new`).
fn changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    after
        .iter()
        .filter(|(n, v)| before.get(*n) != Some(*v))
        .map(|(n, v)| match before.get(n) {
            Some(old) => format!("{n} {old} → {v}"),
            None => format!("{n} → {v}"),
        })
        .collect()
}
