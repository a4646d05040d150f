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

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use hostkit_api::DocumentError;
use hostkit_api::kinds::{GitRef, GitSourceSpec, GitSourceStatus};
use hostkit_api::manifest::{Document, parse_documents};
use hostkit_reconcilers::gitsource::{self, Snapshot};
use sha2::Digest;

use super::*;
use crate::error::Error;
use crate::objects::ApplyOutcome;

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

/// Folder sources watched for changes, by GitSource name.
#[derive(Default)]
pub struct FolderWatches {
    watching: std::sync::Mutex<BTreeMap<String, (PathBuf, notify::RecommendedWatcher)>>,
    /// The last revision each source parsed, and what it became: a resync of an unchanged
    /// revision skips parsing and validating (most of a no-change sync's work).
    parsed: std::sync::Mutex<BTreeMap<String, Parsed>>,
}

/// A revision and the objects it parsed into.
type Parsed = (String, std::sync::Arc<Vec<Desired>>);

fn digest(v: &Value) -> String {
    hex::encode(sha2::Sha256::digest(v.to_string().as_bytes()))[..16].to_string()
}

fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.pointer("/metadata/annotations")?.get(key)?.as_str()
}

fn label<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.pointer("/metadata/labels")?.get(key)?.as_str()
}

/// What one document becomes in the store.
struct Desired {
    doc: Document,
    body: Value,
    digest: String,
}

impl Controllers {
    pub(super) async fn reconcile_gitsource(&self, v: Value) -> Result<Action, Failure> {
        let kind = kind_of("gitsources");
        let gs: Object<GitSourceSpec> = typed(&v)?;
        let name = gs.metadata.name.clone();
        let generation = gs.metadata.generation.unwrap_or(1);
        let now = (self.clock)();
        let mut status = gs.status.clone().unwrap_or_default();
        status.observed_generation = Some(generation);
        let interval = gs
            .spec
            .interval
            .as_ref()
            .map(|d| d.as_std())
            .unwrap_or(Duration::from_secs(60));
        let requested = gs
            .metadata
            .annotations
            .get(wellknown::REQUESTED_AT)
            .cloned();
        let asked = requested.is_some() && requested != status.last_handled_requested_at;
        self.watch_folder(&gs);
        if gs.spec.suspend && !asked {
            cond(
                &mut status.conditions,
                "Reconciling",
                false,
                "Suspended",
                "spec.suspend: not syncing".into(),
                generation,
                now,
            );
            self.write_status(kind, &v, serde_json::to_value(&status).expect("status"))
                .await;
            return Ok(Action::AwaitChange);
        }

        // 1. The artifact.
        let fetched = self.fetch_source(&gs).await;
        let snapshot = match fetched {
            Ok(s) => s,
            Err(message) => {
                cond(
                    &mut status.conditions,
                    "ArtifactFailed",
                    true,
                    "FetchFailed",
                    message.clone(),
                    generation,
                    now,
                );
                cond(
                    &mut status.conditions,
                    "Ready",
                    false,
                    "ArtifactFailed",
                    message.clone(),
                    generation,
                    now,
                );
                cond(
                    &mut status.conditions,
                    "Reconciling",
                    false,
                    "ArtifactFailed",
                    "retrying with backoff".into(),
                    generation,
                    now,
                );
                if asked {
                    status.last_handled_requested_at = requested.clone();
                }
                self.report_failed_sync(&v, &status, "ArtifactFailed", message.clone())
                    .await;
                return Err(Failure::Transient(message));
            }
        };
        status.last_fetched_commit = Some(snapshot.revision.clone());
        cond(
            &mut status.conditions,
            "ArtifactFailed",
            false,
            "Fetched",
            format!("fetched {}", snapshot.revision),
            generation,
            now,
        );

        // 2. Everything parses and validates, or nothing is applied.
        let cached = self
            .folders
            .parsed
            .lock()
            .expect("not poisoned")
            .get(&name)
            .filter(|(revision, _)| *revision == snapshot.revision)
            .map(|(_, d)| d.clone());
        let parsed = match cached {
            Some(d) => Ok(d),
            None => self.desired(&name, &snapshot).map(std::sync::Arc::new),
        };
        let desired = match parsed {
            Ok(d) => {
                self.folders
                    .parsed
                    .lock()
                    .expect("not poisoned")
                    .insert(name.clone(), (snapshot.revision.clone(), d.clone()));
                d
            }
            Err(errors) => {
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
                cond(
                    &mut status.conditions,
                    "Ready",
                    false,
                    "ValidationFailed",
                    message.clone(),
                    generation,
                    now,
                );
                cond(
                    &mut status.conditions,
                    "Stalled",
                    true,
                    "ValidationFailed",
                    "waiting for a new revision".into(),
                    generation,
                    now,
                );
                cond(
                    &mut status.conditions,
                    "Reconciling",
                    false,
                    "ValidationFailed",
                    "waiting for a new revision".into(),
                    generation,
                    now,
                );
                if asked {
                    status.last_handled_requested_at = requested.clone();
                }
                self.report_failed_sync(&v, &status, "ValidationFailed", message)
                    .await;
                return Ok(Action::Requeue(jitter(interval)));
            }
        };
        cond(
            &mut status.conditions,
            "Stalled",
            false,
            "Valid",
            "every document validates".into(),
            generation,
            now,
        );

        // 3. Apply, in kind order, a few at once.
        let source = format!("gitsource/{name}@{}", Snapshot::short(&snapshot.revision));
        let mut notes = Vec::new();
        let mut inventory = Vec::new();
        let mut held = Vec::new();
        let mut conflicts = Vec::new();
        let mut failures = Vec::new();
        let mut results: Vec<Result<Applied, String>> = Vec::with_capacity(desired.len());
        for chunk in desired.chunks(16) {
            let batch =
                futures::future::join_all(chunk.iter().map(|d| self.apply_one(&name, d, &source)))
                    .await;
            results.extend(batch);
        }
        for (d, r) in desired.iter().zip(results) {
            let obj = hostkit_api::meta::ObjectRef {
                kind: d.doc.object.info().kind.to_string(),
                name: d.doc.object.meta().name.clone(),
                uid: None,
            };
            match r {
                Ok(Applied::Written { reverted }) => {
                    if reverted {
                        notes.push(Note {
                            warning: true,
                            reason: "HandEditReverted",
                            message: format!(
                                "{}: changed outside git; set back to {}",
                                d.doc.display_name(),
                                snapshot.revision
                            ),
                        });
                    }
                    inventory.push(obj);
                }
                Ok(Applied::Unchanged) => inventory.push(obj),
                Ok(Applied::Held) => {
                    inventory.push(obj.clone());
                    held.push(obj);
                }
                Ok(Applied::Conflict(owner)) => {
                    conflicts.push(format!(
                        "{} belongs to GitSource/{owner}",
                        d.doc.display_name()
                    ));
                }
                Err(e) => failures.push(format!("{}: {e}", d.doc.display_name())),
            }
        }
        for c in &conflicts {
            notes.push(Note {
                warning: true,
                reason: "Conflict",
                message: format!("{c}; not taken over"),
            });
        }

        // 4. Prune what the revision no longer has.
        let keep: BTreeSet<(String, String)> = desired
            .iter()
            .map(|d| {
                (
                    d.doc.object.info().kind.to_string(),
                    d.doc.object.meta().name.clone(),
                )
            })
            .collect();
        if gs.spec.prune && failures.is_empty() {
            for old in &status.inventory {
                if keep.contains(&(old.kind.clone(), old.name.clone())) {
                    continue;
                }
                match self.prune_one(&name, &old.kind, &old.name).await {
                    Ok(true) => notes.push(Note {
                        warning: false,
                        reason: "Pruned",
                        message: format!(
                            "{}/{} is no longer in {}",
                            old.kind, old.name, snapshot.revision
                        ),
                    }),
                    Ok(false) => {}
                    Err(e) => failures.push(format!("pruning {}/{}: {e}", old.kind, old.name)),
                }
            }
        }

        // 5. Status.
        inventory.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        held.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        let changed_revision =
            status.last_applied_commit.as_deref() != Some(snapshot.revision.as_str());
        status.inventory = inventory;
        status.held = held;
        status.last_sync_time = Some(now);
        if asked {
            status.last_handled_requested_at = requested.clone();
        }
        if failures.is_empty() {
            status.last_applied_commit = Some(snapshot.revision.clone());
        }
        let mut problems: Vec<String> = conflicts.clone();
        problems.extend(failures.iter().cloned());
        let count = status.inventory.len();
        if problems.is_empty() {
            cond(
                &mut status.conditions,
                "Ready",
                true,
                "Synced",
                format!("applied {count} object(s) at {}", snapshot.revision),
                generation,
                now,
            );
        } else {
            let reason = if failures.is_empty() {
                "Conflict"
            } else {
                "ApplyFailed"
            };
            cond(
                &mut status.conditions,
                "Ready",
                false,
                reason,
                problems.join("; "),
                generation,
                now,
            );
        }
        cond(
            &mut status.conditions,
            "Reconciling",
            false,
            "Idle",
            format!("next sync in {}s", interval.as_secs()),
            generation,
            now,
        );
        if changed_revision && failures.is_empty() {
            notes.push(Note {
                warning: false,
                reason: "Synced",
                message: format!("applied {count} object(s) at {}", snapshot.revision),
            });
        }
        self.write_status(kind, &v, serde_json::to_value(&status).expect("status"))
            .await;
        self.record(kind, &v, &notes).await;
        if !failures.is_empty() {
            return Err(Failure::Transient(failures.join("; ")));
        }
        Ok(Action::Requeue(jitter(interval)))
    }

    /// Fetches the git revision (off the async threads) or reads the folder.
    async fn fetch_source(&self, gs: &Object<GitSourceSpec>) -> Result<Snapshot, String> {
        let spec = gs.spec.clone();
        let cache = self.data_dir.join("gitsources").join(&gs.metadata.name);
        let secrets = self.secrets.clone();
        tokio::task::spawn_blocking(move || match (&spec.url, &spec.directory) {
            (Some(url), _) => {
                let reference = spec.ref_.clone().unwrap_or(GitRef {
                    branch: Some("main".into()),
                    ..Default::default()
                });
                gitsource::fetch(
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
                gitsource::read_folder(&root)
            }
            (None, None) => Err(hostkit_reconcilers::Error::Invalid {
                object: "GitSource".into(),
                field: "spec.url".into(),
                message: "name a repository with url or a folder with directory".into(),
            }),
        })
        .await
        .map_err(|e| format!("the fetch task failed: {e}"))?
        .map_err(|e| e.to_string())
    }

    /// Parses and validates every document; any error fails them all.
    fn desired(
        &self,
        source: &str,
        snapshot: &Snapshot,
    ) -> Result<Vec<Desired>, Vec<DocumentError>> {
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
            let kind = d.object.info().kind;
            if matches!(kind, "Revision" | "Event") {
                errors.push(DocumentError {
                    file: d.file.clone(),
                    line: d.line,
                    object: Some(d.display_name()),
                    field: Some("kind".into()),
                    message: format!(
                        "{kind} objects are written by the controller, not synced from git"
                    ),
                });
            }
            if kind == "GitSource" && d.object.meta().name == source {
                errors.push(DocumentError {
                    file: d.file.clone(),
                    line: d.line,
                    object: Some(d.display_name()),
                    field: None,
                    message: "a GitSource cannot manage itself".into(),
                });
            }
            if let Some(first) = seen.insert(d.display_name(), at.clone()) {
                errors.push(DocumentError {
                    file: d.file.clone(),
                    line: d.line,
                    object: Some(d.display_name()),
                    field: None,
                    message: format!("defined twice (also at {first}); define each object once"),
                });
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
                let body = doc.object.to_value();
                let digest = digest(&body);
                // Compared with the stored object, which the server defaulted.
                let mut defaulted = doc.object.clone();
                defaulted.apply_defaults();
                let body = defaulted.to_value();
                Desired { doc, body, digest }
            })
            .collect())
    }

    async fn apply_one(
        &self,
        source: &str,
        d: &Desired,
        revision_source: &str,
    ) -> Result<Applied, String> {
        let info = kind_of(d.doc.object.info().plural);
        let name = d.doc.object.meta().name.clone();
        // The watch cache first: a no-change sync then reads nothing from the store. A
        // cache a moment behind only delays noticing a hand edit to the next sync; every
        // write below is a server-side apply against the stored object.
        let live = match self.caches.get(info.plural, &name) {
            Some(v) => Some(v),
            None => match self.objects.get(info, &name).await {
                Ok(v) => Some(v),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e.to_string()),
            },
        };
        if let Some(live) = &live {
            if let Some(owner) = label(live, wellknown::GITSOURCE).filter(|o| *o != source) {
                return Ok(Applied::Conflict(owner.to_string()));
            }
            if annotation(live, wellknown::GIT_HOLD) == Some(d.digest.as_str()) {
                return Ok(Applied::Held);
            }
        }
        let unchanged_in_git = live
            .as_ref()
            .and_then(|l| annotation(l, wellknown::SOURCE_DIGEST))
            .is_some_and(|dg| dg == d.digest);
        let mut body = d.body.clone();
        let meta = body["metadata"].as_object_mut().expect("metadata");
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        labels[wellknown::GITSOURCE] = Value::String(source.to_string());
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        annotations[wellknown::SOURCE_DIGEST] = Value::String(d.digest.clone());
        // The revision that last changed the object: kept while the manifest is unchanged,
        // so an unchanged object is not rewritten for every commit.
        let stamp = if unchanged_in_git {
            live.as_ref()
                .and_then(|l| annotation(l, wellknown::SOURCE))
                .unwrap_or(revision_source)
                .to_string()
        } else {
            revision_source.to_string()
        };
        annotations[wellknown::SOURCE] = Value::String(stamp);
        if let Some(l) = &live
            && unchanged_in_git
            && already_applied(l, &body)
        {
            return Ok(Applied::Unchanged);
        }
        let (_, outcome) = crate::objects::as_actor(
            format!("gitsource/{source}"),
            self.objects.apply(info, &name, body, false),
        )
        .await
        .map_err(|e| e.to_string())?;
        // A hold that git has moved past is over.
        if live
            .as_ref()
            .is_some_and(|l| annotation(l, wellknown::GIT_HOLD).is_some())
        {
            self.remove_annotation(info, &name, wellknown::GIT_HOLD)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(match outcome {
            ApplyOutcome::Unchanged => Applied::Unchanged,
            ApplyOutcome::Created => Applied::Written { reverted: false },
            ApplyOutcome::Configured => Applied::Written {
                reverted: unchanged_in_git,
            },
        })
    }

    /// Deletes an object this source applied and no longer has; false when it is not ours
    /// any more, is gone already, or opts out with `hostkit.dev/prune: disabled`.
    async fn prune_one(&self, source: &str, kind: &str, name: &str) -> Result<bool, Error> {
        let Some(info) = hostkit_api::kinds::kind_by_name(kind) else {
            return Ok(false);
        };
        let live = match self.objects.get(info, name).await {
            Ok(v) => v,
            Err(Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        if label(&live, wellknown::GITSOURCE) != Some(source)
            || annotation(&live, wellknown::PRUNE) == Some("disabled")
        {
            return Ok(false);
        }
        match self
            .objects
            .delete(info, name, crate::objects::DeleteOptions::default())
            .await
        {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Writes a failed sync's status and its warning event.
    async fn report_failed_sync(
        &self,
        v: &Value,
        status: &GitSourceStatus,
        reason: &'static str,
        message: String,
    ) {
        let kind = kind_of("gitsources");
        self.write_status(kind, v, serde_json::to_value(status).expect("status"))
            .await;
        self.record(
            kind,
            v,
            &[Note {
                warning: true,
                reason,
                message,
            }],
        )
        .await;
    }

    /// Deleting a source, as Flux does: with `prune: true` the objects of its inventory go
    /// too (their finalizers then clean the hosts; `hostkit.dev/prune: disabled` keeps one);
    /// with `prune: false` they stay and are released (the source label is removed), so
    /// another source may take them over. `hkctl delete --cascade=orphan` skips this and
    /// leaves them labelled.
    pub(super) async fn cleanup_gitsource(&self, v: Value) -> Result<(), Failure> {
        let kind = kind_of("gitsources");
        let gs: Object<GitSourceSpec> = typed(&v)?;
        let name = gs.metadata.name.clone();
        let inventory = gs
            .status
            .as_ref()
            .map(|s| s.inventory.clone())
            .unwrap_or_default();
        let mut done = Vec::new();
        for r in &inventory {
            let result = if gs.spec.prune {
                self.prune_one(&name, &r.kind, &r.name).await
            } else {
                self.release_one(&name, &r.kind, &r.name).await
            };
            match result {
                Ok(true) => done.push(format!("{}/{}", r.kind, r.name)),
                Ok(false) => {}
                Err(e) => return Err(Failure::Transient(format!("{}/{}: {e}", r.kind, r.name))),
            }
        }
        if !done.is_empty() {
            self.record(
                kind,
                &v,
                &[Note {
                    warning: false,
                    reason: if gs.spec.prune { "Pruned" } else { "Released" },
                    message: format!(
                        "{} with the source: {}",
                        if gs.spec.prune { "deleted" } else { "released" },
                        done.join(", ")
                    ),
                }],
            )
            .await;
        }
        Ok(())
    }

    /// Stops watching a deleted source's folder and removes its git cache.
    pub(super) fn forget_gitsource(&self, name: &str) {
        self.unwatch_folder(name);
        let cache = self.data_dir.join("gitsources").join(name);
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            if cache.exists()
                && let Err(e) = std::fs::remove_dir_all(&cache)
            {
                tracing::warn!(gitsource = %name, error = %e, "could not remove the git cache");
            }
        });
    }

    /// Removes this source's label from an object it applied; false when it is not ours.
    async fn release_one(&self, source: &str, kind: &str, name: &str) -> Result<bool, Error> {
        let Some(info) = hostkit_api::kinds::kind_by_name(kind) else {
            return Ok(false);
        };
        let release = |v: &mut Value| {
            label(v, wellknown::GITSOURCE) == Some(source)
                && v.pointer_mut("/metadata/labels")
                    .and_then(Value::as_object_mut)
                    .is_some_and(|l| l.remove(wellknown::GITSOURCE).is_some())
        };
        match self.edit_metadata(info, name, release).await {
            Err(Error::NotFound { .. }) => Ok(false),
            other => other,
        }
    }

    /// Removes one annotation (metadata only), retrying on conflicts.
    pub(super) async fn remove_annotation(
        &self,
        info: &'static KindInfo,
        name: &str,
        key: &str,
    ) -> Result<(), Error> {
        let remove = |v: &mut Value| {
            v.pointer_mut("/metadata/annotations")
                .and_then(Value::as_object_mut)
                .is_some_and(|a| a.remove(key).is_some())
        };
        self.edit_metadata(info, name, remove).await.map(|_| ())
    }

    /// Reads the object, lets `edit` change its metadata (false: nothing to change) and
    /// writes it back, again from a fresh read when someone else wrote in between.
    async fn edit_metadata(
        &self,
        info: &'static KindInfo,
        name: &str,
        edit: impl Fn(&mut Value) -> bool,
    ) -> Result<bool, Error> {
        for _ in 0..8 {
            let mut v = self.objects.get(info, name).await?;
            if !edit(&mut v) {
                return Ok(false);
            }
            match self.objects.update(info, name, v, false).await {
                Ok(_) => return Ok(true),
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict {
            kind: info.kind.into(),
            name: name.into(),
            detail: "kept changing".into(),
        })
    }

    /// Watches a folder source's directory: a change wakes the GitSource 200 ms later (a
    /// burst of writes is one sync). Notifications are hints; the interval's full re-read
    /// is the safety net.
    fn watch_folder(&self, gs: &Object<GitSourceSpec>) {
        use notify::Watcher;
        let name = gs.metadata.name.clone();
        let mut watching = self.folders.watching.lock().expect("not poisoned");
        let Some(dir) = gs.spec.directory.as_ref().map(PathBuf::from) else {
            watching.remove(&name);
            return;
        };
        if watching.get(&name).is_some_and(|(d, _)| *d == dir) {
            return;
        }
        let wake = self.wake.clone();
        let key: Key = ("gitsources", name.clone());
        let handler = move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                wake(key.clone(), Duration::from_millis(200));
            }
        };
        match notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(&dir, notify::RecursiveMode::Recursive)?;
            Ok(w)
        }) {
            Ok(w) => {
                watching.insert(name, (dir, w));
            }
            Err(e) => {
                tracing::warn!(gitsource = %name, dir = %dir.display(), error = %e, "cannot watch the folder; relying on the interval")
            }
        }
    }

    /// Stops watching a deleted source and forgets what it parsed.
    pub(super) fn unwatch_folder(&self, name: &str) {
        self.folders
            .watching
            .lock()
            .expect("not poisoned")
            .remove(name);
        self.folders
            .parsed
            .lock()
            .expect("not poisoned")
            .remove(name);
    }
}

/// Whether `live` already has what applying `body` would set: its spec, its labels, and
/// the body's annotations (others may be there too).
fn already_applied(live: &Value, body: &Value) -> bool {
    let annotations_there = body
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_none_or(|want| {
            want.iter().all(|(k, v)| {
                live.pointer("/metadata/annotations").and_then(|a| a.get(k)) == Some(v)
            })
        });
    live.get("spec") == body.get("spec")
        && live.pointer("/metadata/labels") == body.pointer("/metadata/labels")
        && annotations_there
}

/// What applying one object did.
enum Applied {
    Written { reverted: bool },
    Unchanged,
    Held,
    Conflict(String),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_object_is_already_applied_when_spec_labels_and_our_annotations_match() {
        let body = json!({"metadata": {"name": "a", "labels": {"hostkit.dev/gitsource": "g"},
            "annotations": {"hostkit.dev/source-digest": "d1"}}, "spec": {"x": 1}});
        let mut live = body.clone();
        live["metadata"]["annotations"]["hostkit.dev/changed-by"] = json!("gitsource/g");
        live["status"] = json!({"ready": true});
        assert!(
            already_applied(&live, &body),
            "other annotations and status do not matter"
        );
        let mut edited = live.clone();
        edited["spec"]["x"] = json!(2);
        assert!(!already_applied(&edited, &body), "a hand edit of the spec");
        let mut relabelled = live.clone();
        relabelled["metadata"]["labels"]["team"] = json!("x");
        assert!(!already_applied(&relabelled, &body), "git owns the labels");
        let mut moved = live;
        moved["metadata"]["annotations"]["hostkit.dev/source-digest"] = json!("d0");
        assert!(!already_applied(&moved, &body));
    }

    #[test]
    fn digests_follow_the_manifest() {
        assert_eq!(digest(&json!({"a": 1})), digest(&json!({"a": 1})));
        assert_ne!(digest(&json!({"a": 1})), digest(&json!({"a": 2})));
        assert_eq!(digest(&json!({"a": 1})).len(), 16);
    }
}
