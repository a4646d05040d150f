//! Label and annotation keys HostKit reads and writes, in one place so that the server,
//! the controller and hkctl agree on every spelling.

/// The finalizer through which deletes are cleaned up on hosts.
pub const FINALIZER: &str = "hostkit.dev/cleanup";

/// `orphan`: the object's deletion leaves its hosts as they are.
pub const CASCADE: &str = "hostkit.dev/cascade";

/// Who last changed an object's spec: `user/<name>`, `gitsource/<name>@<commit>`,
/// `rollback/<name>`. Set by the server when a write bumps `generation`.
pub const CHANGED_BY: &str = "hostkit.dev/changed-by";

/// On a Service: the Rollback that is running on it; the Service plans but does not
/// apply until it finishes.
pub const ROLLBACK_IN_PROGRESS: &str = "hostkit.dev/rollback-in-progress";

/// On a Service: the Revision a Rollback set its spec back to.
pub const ROLLED_BACK_TO: &str = "hostkit.dev/rolled-back-to";

/// On a Service: `<generation>:<id>,<id>…`, resource ids a partial Rollback put back and
/// that stay out of plans while the spec is at that generation.
pub const HELD: &str = "hostkit.dev/held";

/// On a Revision (label): the kind and name of the object it records.
pub const TARGET_KIND: &str = "hostkit.dev/target-kind";
pub const TARGET_NAME: &str = "hostkit.dev/target";

/// On a Rollback: why it was created when not by a user (`AutoRollback`).
pub const ROLLBACK_REASON: &str = "hostkit.dev/reason";

/// On a Host an Instance created: the Instance that owns it.
pub const INSTANCE: &str = "hostkit.dev/instance";

/// On objects a GitSource applied (label): the GitSource's name.
pub const GITSOURCE: &str = "hostkit.dev/gitsource";

/// On objects a GitSource applied: `gitsource/<name>@<revision>` of the commit that last
/// changed them.
pub const SOURCE: &str = "hostkit.dev/source";

/// On objects a GitSource applied: a digest of the manifest as git has it.
pub const SOURCE_DIGEST: &str = "hostkit.dev/source-digest";

/// `disabled` on an object keeps a GitSource from pruning it.
pub const PRUNE: &str = "hostkit.dev/prune";

/// On a GitSource, Service or Host: any new value asks for a whole pass now (`hkctl sync`
/// and `hkctl reconcile` set the time); the status's `lastHandledRequestedAt` says when
/// it was done.
pub const REQUESTED_AT: &str = "hostkit.dev/requestedAt";

/// On an object a Rollback set back: the source digest git had then. The GitSource does
/// not re-apply the object until its manifest in git changes (or `hkctl release`).
pub const GIT_HOLD: &str = "hostkit.dev/git-hold";

/// Parses [`HELD`]: the generation and the ids.
pub fn parse_held(value: &str) -> Option<(i64, Vec<String>)> {
    let (generation, ids) = value.split_once(':')?;
    let generation = generation.trim().parse().ok()?;
    let ids = ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    Some((generation, ids))
}

/// Formats [`HELD`].
pub fn format_held(generation: i64, ids: &[String]) -> String {
    format!("{generation}:{}", ids.join(","))
}

/// Set by `hkctl lock update` (a timestamp) on a Host: its package lock moves to the
/// newest versions the specs allow, once per value (`status.packageLock.updatedFor`).
pub const LOCK_UPDATE: &str = "hostkit.dev/lock-update";

/// Set by `hkctl rollout resume` (a timestamp): a Paused rollout goes on. Acted on once
/// per value (`status.rollout.resumed`).
pub const ROLLOUT_RESUME: &str = "hostkit.dev/rollout-resume";

/// Set by `hkctl rollout abort` (a timestamp): the hosts the rollout changed are taken back
/// and the generation is not applied again until the spec changes.
pub const ROLLOUT_ABORT: &str = "hostkit.dev/rollout-abort";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_round_trips_and_rejects_garbage() {
        let ids = vec!["file:/etc/a.env".to_string(), "unit:a.service".to_string()];
        assert_eq!(parse_held(&format_held(4, &ids)), Some((4, ids)));
        assert_eq!(parse_held("x:file:/a"), None);
        assert_eq!(parse_held("nothing"), None);
        // Ids carry colons themselves: only the first one separates the generation.
        assert_eq!(
            parse_held("2:file:/a,file:/b"),
            Some((2, vec!["file:/a".into(), "file:/b".into()]))
        );
    }
}
