//! Folder sources: the directory is watched with inotify, and a change wakes the GitSource
//! 200 ms later (a burst of writes is one sync). Notifications are hints; the interval's
//! full re-read is the safety net. Also the last parse of each source, so a resync of an
//! unchanged revision skips parsing and validating (most of a no-change sync's work).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hostkit_api::kinds::{GitSourceSpec, Object};

use super::apply::Desired;
use crate::{Context, ObjectKey};

/// A revision and the objects it parsed into.
pub(super) type Parsed = (String, Arc<Vec<Desired>>);

/// Folder sources being watched, and what each source parsed last, by GitSource name.
#[derive(Default)]
pub struct FolderWatches {
    watching: Mutex<BTreeMap<String, (PathBuf, notify::RecommendedWatcher)>>,
    parsed: Mutex<BTreeMap<String, Parsed>>,
}

impl FolderWatches {
    /// What `source` parsed at `revision`, if that is the revision it parsed last.
    pub(super) fn parsed(&self, source: &str, revision: &str) -> Option<Arc<Vec<Desired>>> {
        self.parsed
            .lock()
            .expect("not poisoned")
            .get(source)
            .filter(|(r, _)| r == revision)
            .map(|(_, d)| d.clone())
    }

    pub(super) fn remember(&self, source: &str, revision: &str, desired: Arc<Vec<Desired>>) {
        self.parsed
            .lock()
            .expect("not poisoned")
            .insert(source.to_string(), (revision.to_string(), desired));
    }

    /// Watches a folder source's directory (and stops watching one that no longer has
    /// one); a watch that cannot be set up is logged and the interval carries on.
    pub(super) fn watch(&self, gs: &Object<GitSourceSpec>, ctx: Arc<dyn Context>) {
        use notify::Watcher;
        let name = gs.name().to_string();
        let mut watching = self.watching.lock().expect("not poisoned");
        let Some(dir) = gs.spec.directory.as_ref().map(PathBuf::from) else {
            watching.remove(&name);
            return;
        };
        if watching.get(&name).is_some_and(|(d, _)| *d == dir) {
            return;
        }
        let key = ObjectKey::of::<GitSourceSpec>(name.clone());
        let handler = move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                ctx.wake(key.clone(), Duration::from_millis(200));
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
    pub(super) fn forget(&self, name: &str) {
        self.watching.lock().expect("not poisoned").remove(name);
        self.parsed.lock().expect("not poisoned").remove(name);
    }
}
