//! Whether the controller can make progress, for `/readyz`: every worker it started is
//! still there, and no reconcile has been running for longer than [`STUCK`]. A process whose
//! workers died, or whose workers all hang on one host, is not ready, whatever its store says.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hostkit_reconcilers::ObjectKey;

/// A reconcile running longer than this is stuck (a host that neither answers nor fails).
pub const STUCK: Duration = Duration::from_secs(600);

#[derive(Default)]
pub struct Health {
    started: AtomicUsize,
    alive: Arc<AtomicUsize>,
    running: Arc<Mutex<HashMap<ObjectKey, Instant>>>,
}

/// Held by a worker for as long as it runs (also through a panic's unwinding).
pub struct Worker {
    alive: Arc<AtomicUsize>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Held while one object is reconciled.
pub struct Running {
    key: ObjectKey,
    running: Arc<Mutex<HashMap<ObjectKey, Instant>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.running.lock().expect("not poisoned").remove(&self.key);
    }
}

impl Health {
    /// A worker starts.
    pub fn worker(&self) -> Worker {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.alive.fetch_add(1, Ordering::SeqCst);
        Worker {
            alive: self.alive.clone(),
        }
    }

    /// `key` is being reconciled until the guard drops.
    pub fn running(&self, key: &ObjectKey) -> Running {
        self.running
            .lock()
            .expect("not poisoned")
            .insert(key.clone(), Instant::now());
        Running {
            key: key.clone(),
            running: self.running.clone(),
        }
    }

    /// Why the controller cannot make progress, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let (started, alive) = (
            self.started.load(Ordering::SeqCst),
            self.alive.load(Ordering::SeqCst),
        );
        if alive < started {
            return Err(format!(
                "{} of {started} reconcile workers are gone",
                started - alive
            ));
        }
        let running = self.running.lock().expect("not poisoned");
        if let Some((key, since)) = running
            .iter()
            .filter(|(_, t)| t.elapsed() > STUCK)
            .min_by_key(|(_, t)| **t)
        {
            return Err(format!(
                "{key} has been reconciling for {}s",
                since.elapsed().as_secs()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use hostkit_api::kinds::ServiceSpec;

    use super::*;

    #[test]
    fn a_gone_worker_makes_the_controller_unready() {
        let h = Health::default();
        let a = h.worker();
        let _b = h.worker();
        let _r = h.running(&ObjectKey::of::<ServiceSpec>("web"));
        assert_eq!(h.check(), Ok(()));
        drop(a);
        assert_eq!(h.check().unwrap_err(), "1 of 2 reconcile workers are gone");
    }
}
