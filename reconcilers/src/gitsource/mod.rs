//! The GitSource reconciler: keeps the store equal to a path of a git ref (or a folder),
//! the way Flux's source and kustomize controllers do.
//!
//! A sync is all or nothing: every document of the revision is parsed and validated before
//! anything is written; one bad document leaves every object as the last good revision had
//! it. Objects are applied as `gitsource/<name>` (recorded in `hostkit.dev/changed-by`),
//! labelled with the source and annotated with the revision that last changed them and a
//! digest of their manifest. Git wins over hand edits at the next sync (with an event); an
//! object another source owns is never taken over; a Rollback's hold keeps git from
//! re-applying an object until its manifest changes in git. With `prune: true`, objects of
//! the inventory that the revision no longer has are deleted (their finalizers then clean
//! the hosts), unless annotated `hostkit.dev/prune: disabled`.

mod apply;
mod folder;

pub use folder::FolderWatches;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use hostkit_api::kinds::{GitRef, GitSourceSpec, GitSourceStatus, Object};
use hostkit_api::meta::{ObjectRef, Observed};
use hostkit_api::{DocumentError, KindSpec, wellknown};
use hostkit_engine::git::{self, Snapshot};

use crate::{Action, Error, Note, Reconciler, Reconcilers, Result, jitter, resync_interval};
use apply::{Desired, Outcome};

/// What applying a revision's objects came to.
#[derive(Default)]
struct Applied {
    notes: Vec<Note>,
    inventory: Vec<ObjectRef>,
    held: Vec<ObjectRef>,
    conflicts: Vec<String>,
    failures: Vec<String>,
}

/// One sync in progress.
struct Sync {
    at: Observed,
    status: GitSourceStatus,
    /// `hkctl sync` asked for this sync (`hostkit.dev/requestedAt` not handled yet).
    asked: bool,
    requested: Option<String>,
}

impl Sync {
    fn set(&mut self, type_: &str, ok: bool, reason: &str, message: impl Into<String>) {
        self.at
            .set(&mut self.status.conditions, type_, ok, reason, message);
    }

    /// Marks an `hkctl sync` request as handled (it waits for this).
    fn handled(&mut self) {
        if self.asked {
            self.status.last_handled_requested_at = self.requested.clone();
        }
    }
}

#[async_trait::async_trait]
impl Reconciler<GitSourceSpec> for Reconcilers {
    async fn reconcile(&self, gs: Arc<Object<GitSourceSpec>>) -> Result<Action> {
        let ctx = self.ctx.as_ref();
        let generation = gs.metadata.generation.unwrap_or(1);
        let mut status = gs.status.clone().unwrap_or_default();
        status.observed_generation = Some(generation);
        let requested = gs
            .metadata
            .annotations
            .get(wellknown::REQUESTED_AT)
            .cloned();
        let asked = requested.is_some() && requested != status.last_handled_requested_at;
        let mut s = Sync {
            at: Observed::new(ctx.now(), Some(generation)),
            status,
            asked,
            requested,
        };
        let interval = resync_interval(gs.spec.interval.as_ref());
        self.folders.watch(&gs, self.ctx.clone());
        if gs.spec.suspend && !asked {
            s.set(
                "Reconciling",
                false,
                "Suspended",
                "spec.suspend: not syncing",
            );
            ctx.write_status(&gs, &s.status).await;
            return Ok(Action::AwaitChange);
        }

        // 1. The artifact.
        let snapshot = match self.fetch(&gs).await {
            Ok(snapshot) => snapshot,
            Err(message) => {
                s.set("ArtifactFailed", true, "FetchFailed", message.clone());
                s.set("Ready", false, "ArtifactFailed", message.clone());
                s.set(
                    "Reconciling",
                    false,
                    "ArtifactFailed",
                    "retrying with backoff",
                );
                s.handled();
                let note = Note::warning("ArtifactFailed", message.clone());
                return Err(ctx
                    .stop(&gs, &s.status, Some(note), Error::Retry(message))
                    .await);
            }
        };
        s.status.last_fetched_commit = Some(snapshot.revision.clone());
        let fetched = format!("fetched {}", snapshot.revision);
        s.set("ArtifactFailed", false, "Fetched", fetched);

        // 2. Everything parses and validates, or nothing is applied.
        let desired = match self.parsed(gs.name(), &snapshot) {
            Ok(d) => d,
            Err(errors) => {
                let message = invalid_message(&snapshot, &s.status, &errors);
                s.set("Ready", false, "ValidationFailed", message.clone());
                s.set(
                    "Stalled",
                    true,
                    "ValidationFailed",
                    "waiting for a new revision",
                );
                s.set(
                    "Reconciling",
                    false,
                    "ValidationFailed",
                    "waiting for a new revision",
                );
                s.handled();
                ctx.write_status(&gs, &s.status).await;
                let note = Note::warning("ValidationFailed", message);
                ctx.note(GitSourceSpec::INFO, gs.name(), &[note]).await;
                return Ok(Action::Requeue(jitter(interval)));
            }
        };
        s.set("Stalled", false, "Valid", "every document validates");

        // 3. Apply, in kind order, a few at once; 4. prune what the revision no longer has.
        let mut applied = self.apply_all(gs.name(), &desired, &snapshot).await;
        if gs.spec.prune && applied.failures.is_empty() {
            let previous = s.status.inventory.clone();
            self.prune(gs.name(), &mut applied, &previous, &desired, &snapshot)
                .await;
        }

        // 5. Status.
        let failures = applied.failures.join("; ");
        let notes = self.conclude(&mut s, applied, &snapshot, interval);
        ctx.write_status(&gs, &s.status).await;
        ctx.note(GitSourceSpec::INFO, gs.name(), &notes).await;
        if !failures.is_empty() {
            return Err(Error::Retry(failures));
        }
        Ok(Action::Requeue(jitter(interval)))
    }

    /// Deleting a source, as Flux does: with `prune: true` the objects of its inventory go
    /// too (their finalizers then clean the hosts; `hostkit.dev/prune: disabled` keeps
    /// one); with `prune: false` they stay and are released (the source label is removed),
    /// so another source may take them over. `hkctl delete --cascade=orphan` skips this and
    /// leaves them labelled.
    async fn cleanup(&self, gs: Arc<Object<GitSourceSpec>>) -> Result<()> {
        let ctx = self.ctx.as_ref();
        let name = gs.name();
        let inventory = gs
            .status
            .as_ref()
            .map(|s| s.inventory.clone())
            .unwrap_or_default();
        let mut done = Vec::new();
        for r in &inventory {
            let result = if gs.spec.prune {
                apply::prune_one(ctx, name, &r.kind, &r.name).await
            } else {
                apply::release_one(ctx, name, &r.kind, &r.name).await
            };
            match result {
                Ok(true) => done.push(format!("{}/{}", r.kind, r.name)),
                Ok(false) => {}
                Err(e) => return Err(Error::Retry(format!("{}/{}: {e}", r.kind, r.name))),
            }
        }
        if !done.is_empty() {
            let (reason, verb) = if gs.spec.prune {
                ("Pruned", "deleted")
            } else {
                ("Released", "released")
            };
            let note = Note::normal(
                reason,
                format!("{verb} with the source: {}", done.join(", ")),
            );
            ctx.note(GitSourceSpec::INFO, name, &[note]).await;
        }
        Ok(())
    }

    /// Stops watching a deleted source's folder and removes its git cache.
    fn forget(&self, gs: &Object<GitSourceSpec>) {
        let name = gs.name().to_string();
        self.folders.forget(&name);
        let cache = self.data_dir.join("gitsources").join(&name);
        tokio::task::spawn_blocking(move || {
            if cache.exists()
                && let Err(e) = std::fs::remove_dir_all(&cache)
            {
                tracing::warn!(gitsource = %name, error = %e, "could not remove the git cache");
            }
        });
    }
}

impl Reconcilers {
    /// Fetches the git revision (off the async threads) or reads the folder.
    async fn fetch(&self, gs: &Object<GitSourceSpec>) -> std::result::Result<Snapshot, String> {
        let spec = gs.spec.clone();
        let cache = self.data_dir.join("gitsources").join(gs.name());
        let secrets = self.secrets.clone();
        tokio::task::spawn_blocking(move || match (&spec.url, &spec.directory) {
            (Some(url), _) => {
                let reference = spec.ref_.clone().unwrap_or(GitRef {
                    branch: Some("main".into()),
                    ..Default::default()
                });
                git::fetch(
                    &cache,
                    url,
                    &reference,
                    spec.path.as_deref(),
                    spec.auth.as_ref(),
                    &secrets,
                )
            }
            (None, Some(dir)) => {
                let root = match &spec.path {
                    Some(p) => PathBuf::from(dir).join(p),
                    None => PathBuf::from(dir),
                };
                git::read_folder(&root)
            }
            (None, None) => Err(hostkit_engine::Error::Invalid {
                object: "GitSource".into(),
                field: "spec.url".into(),
                message: "name a repository with url or a folder with directory".into(),
            }),
        })
        .await
        .map_err(|e| format!("the fetch task failed: {e}"))?
        .map_err(|e| e.to_string())
    }

    /// The revision's objects: parsed once per revision (a resync of the same revision
    /// reuses them).
    fn parsed(
        &self,
        source: &str,
        snapshot: &Snapshot,
    ) -> std::result::Result<Arc<Vec<Desired>>, Vec<DocumentError>> {
        if let Some(d) = self.folders.parsed(source, &snapshot.revision) {
            return Ok(d);
        }
        let d = Arc::new(apply::parse(source, snapshot)?);
        self.folders.remember(source, &snapshot.revision, d.clone());
        Ok(d)
    }

    /// Applies every object, 16 at a time, and sorts the outcomes.
    async fn apply_all(&self, source: &str, desired: &[Desired], snapshot: &Snapshot) -> Applied {
        let ctx = self.ctx.as_ref();
        let stamp = format!("gitsource/{source}@{}", Snapshot::short(&snapshot.revision));
        let mut results = Vec::with_capacity(desired.len());
        for chunk in desired.chunks(16) {
            let batch = futures::future::join_all(
                chunk
                    .iter()
                    .map(|d| apply::apply_one(ctx, source, d, &stamp)),
            )
            .await;
            results.extend(batch);
        }
        let mut out = Applied::default();
        for (d, r) in desired.iter().zip(results) {
            let obj = ObjectRef {
                kind: d.doc.object.info().kind.to_string(),
                name: d.doc.object.meta().name.clone(),
                uid: None,
            };
            match r {
                Ok(Outcome::Written { reverted }) => {
                    if reverted {
                        out.notes.push(Note::warning(
                            "HandEditReverted",
                            format!(
                                "{}: changed outside git; set back to {}",
                                d.doc.display_name(),
                                snapshot.revision
                            ),
                        ));
                    }
                    out.inventory.push(obj);
                }
                Ok(Outcome::Unchanged) => out.inventory.push(obj),
                Ok(Outcome::Held) => {
                    out.inventory.push(obj.clone());
                    out.held.push(obj);
                }
                Ok(Outcome::Conflict(owner)) => out.conflicts.push(format!(
                    "{} belongs to GitSource/{owner}",
                    d.doc.display_name()
                )),
                Err(e) => out.failures.push(format!("{}: {e}", d.doc.display_name())),
            }
        }
        for c in &out.conflicts {
            out.notes
                .push(Note::warning("Conflict", format!("{c}; not taken over")));
        }
        out
    }

    /// Deletes the objects of the previous inventory that the revision no longer has.
    async fn prune(
        &self,
        source: &str,
        applied: &mut Applied,
        previous: &[ObjectRef],
        desired: &[Desired],
        snapshot: &Snapshot,
    ) {
        let ctx = self.ctx.as_ref();
        let keep: BTreeSet<(String, String)> = desired
            .iter()
            .map(|d| {
                (
                    d.doc.object.info().kind.to_string(),
                    d.doc.object.meta().name.clone(),
                )
            })
            .collect();
        for old in previous {
            if keep.contains(&(old.kind.clone(), old.name.clone())) {
                continue;
            }
            match apply::prune_one(ctx, source, &old.kind, &old.name).await {
                Ok(true) => applied.notes.push(Note::normal(
                    "Pruned",
                    format!(
                        "{}/{} is no longer in {}",
                        old.kind, old.name, snapshot.revision
                    ),
                )),
                Ok(false) => {}
                Err(e) => applied
                    .failures
                    .push(format!("pruning {}/{}: {e}", old.kind, old.name)),
            }
        }
    }

    /// The status after applying; the events to record.
    fn conclude(
        &self,
        s: &mut Sync,
        mut applied: Applied,
        snapshot: &Snapshot,
        interval: std::time::Duration,
    ) -> Vec<Note> {
        applied
            .inventory
            .sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        applied
            .held
            .sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        let changed_revision =
            s.status.last_applied_commit.as_deref() != Some(snapshot.revision.as_str());
        s.status.inventory = applied.inventory;
        s.status.held = applied.held;
        s.status.last_sync_time = Some(s.at.now);
        s.handled();
        let failed = !applied.failures.is_empty();
        if !failed {
            s.status.last_applied_commit = Some(snapshot.revision.clone());
        }
        let count = s.status.inventory.len();
        let mut problems = applied.conflicts.clone();
        problems.extend(applied.failures.iter().cloned());
        if problems.is_empty() {
            let message = format!("applied {count} object(s) at {}", snapshot.revision);
            s.set("Ready", true, "Synced", message);
        } else {
            let reason = if failed { "ApplyFailed" } else { "Conflict" };
            s.set("Ready", false, reason, problems.join("; "));
        }
        let next = format!("next sync in {}s", interval.as_secs());
        s.set("Reconciling", false, "Idle", next);
        let mut notes = applied.notes;
        if changed_revision && !failed {
            notes.push(Note::normal(
                "Synced",
                format!("applied {count} object(s) at {}", snapshot.revision),
            ));
        }
        notes
    }
}

/// Why a revision was refused: its first five problems, and that the last good objects stay.
fn invalid_message(
    snapshot: &Snapshot,
    status: &GitSourceStatus,
    errors: &[DocumentError],
) -> String {
    let shown: Vec<String> = errors.iter().take(5).map(|e| e.to_string()).collect();
    let mut message = format!(
        "{}: {} (nothing from this revision was applied; the objects of {} stay)",
        snapshot.revision,
        shown.join("; "),
        status
            .last_applied_commit
            .as_deref()
            .unwrap_or("no earlier revision")
    );
    if errors.len() > 5 {
        message.push_str(&format!("; and {} more", errors.len() - 5));
    }
    message
}
