//! The work queue: one entry per object (the earlier due time wins), never handing out an
//! object that is being reconciled, and counting failures in a row per object (reset by a
//! success or a new generation) for the backoff.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use hostkit_reconcilers::ObjectKey;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::metrics::RuntimeMetrics;

#[derive(Default)]
struct QueueState {
    due: HashMap<ObjectKey, Instant>,
    running: HashSet<ObjectKey>,
    failures: HashMap<ObjectKey, u32>,
    generations: HashMap<ObjectKey, i64>,
}

#[derive(Default)]
pub struct Queue {
    state: Mutex<QueueState>,
    notify: Notify,
}

impl Queue {
    pub fn add(&self, key: ObjectKey, at: Instant, metrics: &RuntimeMetrics) {
        let mut s = self.state.lock().expect("not poisoned");
        let e = s.due.entry(key).or_insert(at);
        if at < *e {
            *e = at;
        }
        metrics.workqueue_adds.inc();
        metrics.workqueue_depth.set(s.due.len() as i64);
        drop(s);
        self.notify.notify_one();
    }

    /// The next due object, waiting for one; None once `stop` is true.
    pub(super) async fn next(
        &self,
        stop: &mut watch::Receiver<bool>,
        metrics: &RuntimeMetrics,
    ) -> Option<ObjectKey> {
        loop {
            if *stop.borrow() {
                return None;
            }
            let now = Instant::now();
            let wait = {
                let mut s = self.state.lock().expect("not poisoned");
                let ready = s
                    .due
                    .iter()
                    .filter(|(k, _)| !s.running.contains(*k))
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, t)| (k.clone(), *t));
                match ready {
                    Some((k, t)) if t <= now => {
                        s.due.remove(&k);
                        s.running.insert(k.clone());
                        metrics.workqueue_depth.set(s.due.len() as i64);
                        metrics
                            .workqueue_queue_duration
                            .observe((now - t).as_secs_f64());
                        return Some(k);
                    }
                    Some((_, t)) => t - now,
                    None => Duration::from_secs(3600),
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.notify.notified() => {}
                _ = stop.changed() => {}
            }
        }
    }

    pub(super) fn done(&self, key: &ObjectKey) {
        self.state.lock().expect("not poisoned").running.remove(key);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Records the outcome and returns how many failures in a row this object has now.
    pub(super) fn outcome(&self, key: &ObjectKey, generation: i64, failed: bool) -> u32 {
        let mut s = self.state.lock().expect("not poisoned");
        let changed = s.generations.insert(key.clone(), generation) != Some(generation);
        if changed || !failed {
            s.failures.remove(key);
        }
        if failed {
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use hostkit_api::kinds::ServiceSpec;

    use super::*;

    fn svc(name: &str) -> ObjectKey {
        ObjectKey::of::<ServiceSpec>(name)
    }

    #[tokio::test]
    async fn the_queue_dedups_keeps_the_earlier_time_and_never_hands_out_a_running_key() {
        let q = Queue::default();
        let m = RuntimeMetrics::default();
        let (_tx, mut stop) = watch::channel(false);
        let now = Instant::now();
        q.add(svc("a"), now + Duration::from_secs(60), &m);
        q.add(svc("a"), now, &m);
        q.add(svc("b"), now + Duration::from_millis(30), &m);
        let first = q.next(&mut stop, &m).await.unwrap();
        assert_eq!(first.name, "a");
        // a is running: re-adding it does not hand it out again until done.
        q.add(svc("a"), Instant::now(), &m);
        let second = q.next(&mut stop, &m).await.unwrap();
        assert_eq!(
            second.name, "b",
            "b waited for its due time, a is still running"
        );
        q.done(&first);
        let third = q.next(&mut stop, &m).await.unwrap();
        assert_eq!(third.name, "a");
    }

    #[test]
    fn failures_reset_on_success_and_on_a_new_generation() {
        let q = Queue::default();
        let k = svc("a");
        assert_eq!(q.outcome(&k, 1, true), 1);
        assert_eq!(q.outcome(&k, 1, true), 2);
        assert_eq!(q.outcome(&k, 2, true), 1, "a spec change starts over");
        assert_eq!(q.outcome(&k, 2, false), 0);
        assert_eq!(q.outcome(&k, 2, true), 1);
    }
}
