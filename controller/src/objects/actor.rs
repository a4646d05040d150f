//! Who makes a write: the caller's identity travels with the request (a task-local) and a
//! write that changes a spec records it in `hostkit.dev/changed-by`.

use super::*;

tokio::task_local! {
    static ACTOR: String;
}

/// Runs `f` with the writes it makes attributed to `actor` (`user/alice`,
/// `gitsource/infra@abc123`, `rollback/web-undo`): a write that changes an object's spec
/// records it in the `hostkit.dev/changed-by` annotation, which Revisions cite as their
/// source. The API server wraps every request in the caller's identity.
pub async fn as_actor<F: std::future::Future>(actor: String, f: F) -> F::Output {
    ACTOR.scope(actor, f).await
}

pub(super) fn stamp_actor(v: &mut Value) {
    if let Ok(actor) = ACTOR.try_with(Clone::clone) {
        let annotations = meta(v)
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(
                hostkit_api::wellknown::CHANGED_BY.into(),
                Value::String(actor),
            );
        }
    }
}
