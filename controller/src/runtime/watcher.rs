//! The watcher of one kind, as an explicit state machine (kube-runtime's shape): list at
//! one revision, then watch from it; after a disconnect, resume from the last revision
//! seen (no re-list, nothing replayed, nothing missed); re-list only when the store says
//! that revision was compacted, or events would be silently lost.
//!
//! [`Watcher::step`] does one I/O step and says what happened; the runtime feeds the
//! cache and the queue from it and sleeps when told to. Reconnects back off from 800 ms
//! to 30 s with jitter, and the backoff resets once a watch stayed up for 2 minutes.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio::time::Instant;

use super::backoff::Backoff;
use crate::error::Error;
use crate::objects::ObjectEvent;

/// Where the objects come from: the object API in production, a script in tests.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// All objects, and the revision they were read at.
    async fn list(&self) -> Result<(Vec<Value>, i64), Error>;
    /// Changes after `revision` (exclusive). `Error::Gone` when it was compacted.
    async fn watch(
        &self,
        revision: i64,
    ) -> Result<BoxStream<'static, Result<ObjectEvent, Error>>, Error>;
}

/// What the cache should do.
#[derive(Debug)]
pub enum Event {
    /// A fresh list: the cache becomes exactly these objects.
    Restarted(Vec<Value>),
    Applied(Value),
    Deleted(Value),
}

/// The outcome of one step.
#[derive(Debug)]
pub enum Step {
    Event(Event),
    /// Progress without an object change (a watch opened, a bookmark).
    Progress,
    /// The store failed; step again after `retry_in`.
    Failed {
        error: Error,
        retry_in: Duration,
    },
}

enum State {
    /// Nothing known: list first (at start, and after compaction).
    Empty,
    /// Everything up to `revision` is in the cache; open a watch from there.
    Resumable { revision: i64 },
    /// A watch is open; everything up to `revision` has been handed out.
    Watching {
        revision: i64,
        stream: BoxStream<'static, Result<ObjectEvent, Error>>,
        since: Instant,
    },
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::Resumable { .. } => "Resumable",
            State::Watching { .. } => "Watching",
        }
    }
}

/// Watches one kind from a [`Source`].
pub struct Watcher<S> {
    source: S,
    state: State,
    backoff: Backoff,
}

fn revision_of(v: &Value) -> Option<i64> {
    v.pointer("/metadata/resourceVersion")?
        .as_str()?
        .parse()
        .ok()
}

impl<S: Source> Watcher<S> {
    pub fn new(source: S) -> Watcher<S> {
        Watcher {
            source,
            state: State::Empty,
            backoff: Backoff::new(),
        }
    }

    /// The state's name, for logs and tests.
    pub fn state(&self) -> &'static str {
        self.state.name()
    }

    /// The last revision handed out, if any.
    pub fn revision(&self) -> Option<i64> {
        match &self.state {
            State::Empty => None,
            State::Resumable { revision } | State::Watching { revision, .. } => Some(*revision),
        }
    }

    fn fail(&mut self, error: Error) -> Step {
        let retry_in = self.backoff.failed();
        Step::Failed { error, retry_in }
    }

    /// Does one step of I/O.
    pub async fn step(&mut self) -> Step {
        match std::mem::replace(&mut self.state, State::Empty) {
            State::Empty => match self.source.list().await {
                Ok((items, revision)) => {
                    self.state = State::Resumable { revision };
                    Step::Event(Event::Restarted(items))
                }
                Err(e) => self.fail(e),
            },
            State::Resumable { revision } => match self.source.watch(revision).await {
                Ok(stream) => {
                    self.state = State::Watching {
                        revision,
                        stream,
                        since: Instant::now(),
                    };
                    Step::Progress
                }
                Err(Error::Gone(why)) => {
                    tracing::info!(%why, "watch history compacted; re-listing");
                    Step::Progress // state is Empty: the next step lists
                }
                Err(e) => {
                    self.state = State::Resumable { revision };
                    self.fail(e)
                }
            },
            State::Watching {
                revision,
                mut stream,
                since,
            } => {
                let next = stream.next().await;
                if since.elapsed() >= Backoff::STABLE {
                    self.backoff.reset();
                }
                let keep = |revision| State::Watching {
                    revision,
                    stream,
                    since,
                };
                match next {
                    Some(Ok(ObjectEvent::Added(v) | ObjectEvent::Modified(v))) => {
                        self.state = keep(revision_of(&v).unwrap_or(revision).max(revision));
                        Step::Event(Event::Applied(v))
                    }
                    Some(Ok(ObjectEvent::Deleted(v))) => {
                        self.state = keep(revision_of(&v).unwrap_or(revision).max(revision));
                        Step::Event(Event::Deleted(v))
                    }
                    Some(Ok(ObjectEvent::Bookmark(r))) => {
                        self.state = keep(r.max(revision));
                        Step::Progress
                    }
                    Some(Err(Error::Gone(why))) => {
                        tracing::info!(%why, "watch fell behind compacted history; re-listing");
                        Step::Progress
                    }
                    Some(Err(e)) => {
                        self.state = State::Resumable { revision };
                        self.fail(e)
                    }
                    None => {
                        self.state = State::Resumable { revision };
                        self.fail(Error::Store(crate::store::StoreError::Unavailable(
                            "watch ended".into(),
                        )))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::*;
    use crate::store::StoreError;

    fn obj(name: &str, rv: i64) -> Value {
        json!({"metadata": {"name": name, "resourceVersion": rv.to_string()}})
    }

    type Script = VecDeque<Result<Vec<Result<ObjectEvent, Error>>, Error>>;

    /// Answers lists with `objects` and each watch with the next scripted stream,
    /// recording the calls.
    #[derive(Clone, Default)]
    struct Scripted {
        calls: Arc<Mutex<Vec<String>>>,
        watches: Arc<Mutex<Script>>,
        list_revision: Arc<Mutex<i64>>,
    }

    #[async_trait::async_trait]
    impl Source for Scripted {
        async fn list(&self) -> Result<(Vec<Value>, i64), Error> {
            let rev = *self.list_revision.lock().unwrap();
            self.calls.lock().unwrap().push(format!("list@{rev}"));
            Ok((vec![obj("a", rev)], rev))
        }
        async fn watch(
            &self,
            revision: i64,
        ) -> Result<BoxStream<'static, Result<ObjectEvent, Error>>, Error> {
            self.calls.lock().unwrap().push(format!("watch>{revision}"));
            match self.watches.lock().unwrap().pop_front() {
                Some(Ok(events)) => Ok(futures::stream::iter(events).boxed()),
                Some(Err(e)) => Err(e),
                None => Ok(futures::stream::pending().boxed()),
            }
        }
    }

    fn unavailable() -> Error {
        Error::Store(StoreError::Unavailable("connection reset".into()))
    }

    #[tokio::test]
    async fn lists_then_watches_from_the_list_revision() {
        let s = Scripted::default();
        *s.list_revision.lock().unwrap() = 7;
        s.watches
            .lock()
            .unwrap()
            .push_back(Ok(vec![Ok(ObjectEvent::Modified(obj("a", 9)))]));
        let mut w = Watcher::new(s.clone());
        assert!(matches!(w.step().await, Step::Event(Event::Restarted(v)) if v.len() == 1));
        assert_eq!(w.state(), "Resumable");
        assert!(matches!(w.step().await, Step::Progress));
        assert!(matches!(w.step().await, Step::Event(Event::Applied(_))));
        assert_eq!(w.revision(), Some(9));
        assert_eq!(*s.calls.lock().unwrap(), ["list@7", "watch>7"]);
    }

    #[tokio::test]
    async fn a_disconnect_resumes_from_the_last_revision_without_a_relist() {
        let s = Scripted::default();
        *s.list_revision.lock().unwrap() = 3;
        s.watches.lock().unwrap().extend([
            Ok(vec![
                Ok(ObjectEvent::Modified(obj("a", 5))),
                Ok(ObjectEvent::Bookmark(8)),
                Err(unavailable()),
            ]),
            Err(unavailable()),
            Ok(vec![Ok(ObjectEvent::Deleted(obj("a", 10)))]),
        ]);
        let mut w = Watcher::new(s.clone());
        let mut events = Vec::new();
        let mut delays = Vec::new();
        for _ in 0..9 {
            match w.step().await {
                Step::Event(e) => events.push(e),
                Step::Progress => {}
                Step::Failed { retry_in, .. } => delays.push(retry_in),
            }
            if matches!(events.last(), Some(Event::Deleted(_))) {
                break;
            }
        }
        assert_eq!(
            *s.calls.lock().unwrap(),
            ["list@3", "watch>3", "watch>8", "watch>8"],
            "resumed from the bookmark's revision, listed once"
        );
        assert!(matches!(
            events[..],
            [Event::Restarted(_), Event::Applied(_), Event::Deleted(_)]
        ));
        assert_eq!(delays.len(), 2);
        assert!(delays[0] >= Duration::from_millis(720) && delays[0] <= Duration::from_millis(880));
        assert!(
            delays[1] >= Duration::from_millis(1440) && delays[1] <= Duration::from_millis(1760),
            "doubles: {delays:?}"
        );
    }

    #[tokio::test]
    async fn compaction_relists() {
        let s = Scripted::default();
        *s.list_revision.lock().unwrap() = 3;
        s.watches.lock().unwrap().extend([
            Ok(vec![Err(Error::Gone("compacted".into()))]),
            Err(Error::Gone("compacted".into())),
        ]);
        let mut w = Watcher::new(s.clone());
        w.step().await; // list@3
        w.step().await; // watch>3
        *s.list_revision.lock().unwrap() = 20;
        assert!(matches!(w.step().await, Step::Progress), "Gone mid-stream");
        assert_eq!(w.state(), "Empty");
        assert!(matches!(w.step().await, Step::Event(Event::Restarted(_))));
        assert!(matches!(w.step().await, Step::Progress), "Gone on open");
        assert_eq!(w.state(), "Empty");
        assert_eq!(
            *s.calls.lock().unwrap(),
            ["list@3", "watch>3", "list@20", "watch>20"]
        );
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_resets() {
        let mut b = Backoff::new();
        let d: Vec<f64> = (0..9).map(|_| b.failed().as_secs_f64()).collect();
        let want = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0];
        for (got, want) in d.iter().zip(want) {
            assert!((got / want - 1.0).abs() <= 0.1 + 1e-9, "{d:?}");
        }
        b.reset();
        assert!(b.failed() <= Duration::from_millis(880));
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_up_two_minutes_resets_the_backoff() {
        let s = Scripted::default();
        let mut w = Watcher::new(s.clone());
        s.watches.lock().unwrap().extend([
            Err(unavailable()),
            Err(unavailable()),
            Err(unavailable()),
        ]);
        w.step().await; // list
        for _ in 0..3 {
            assert!(matches!(w.step().await, Step::Failed { .. }));
        }
        // The fourth watch stays up (pending) for 2 minutes, then yields a bookmark.
        let (tx, rx) = futures::channel::mpsc::unbounded();
        struct Late(
            Mutex<Option<futures::channel::mpsc::UnboundedReceiver<Result<ObjectEvent, Error>>>>,
        );
        #[async_trait::async_trait]
        impl Source for Late {
            async fn list(&self) -> Result<(Vec<Value>, i64), Error> {
                Ok((vec![], 0))
            }
            async fn watch(
                &self,
                _: i64,
            ) -> Result<BoxStream<'static, Result<ObjectEvent, Error>>, Error> {
                Ok(self.0.lock().unwrap().take().expect("one watch").boxed())
            }
        }
        let mut w = Watcher {
            source: Late(Mutex::new(Some(rx))),
            state: State::Resumable { revision: 0 },
            backoff: w.backoff.clone(),
        };
        assert!(matches!(w.step().await, Step::Progress));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(121)).await;
            tx.unbounded_send(Ok(ObjectEvent::Bookmark(1))).unwrap();
            drop(tx);
        });
        assert!(matches!(w.step().await, Step::Progress), "bookmark");
        match w.step().await {
            Step::Failed { retry_in, .. } => {
                assert!(retry_in <= Duration::from_millis(880), "{retry_in:?}")
            }
            other => panic!("{other:?}"),
        }
    }
}
