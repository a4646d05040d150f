//! The one-machine store: a single redb file with etcd's semantics.
//!
//! Writes go through one writer thread that batches whatever requests are waiting into
//! one durable transaction (group commit), the way etcd batches its backend commits: a
//! burst of concurrent writes costs one fsync, not one each. Every write still gets its own
//! revision. Each committed change is appended to a bounded event log; watches replay that
//! log from their start revision and then follow a broadcast of new events. When the log
//! has been trimmed past a watcher's revision the watch fails with `Compacted`, exactly
//! like etcd, so the bound is real and callers must re-list.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    TableDefinition, WriteTransaction,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{KeyValue, ListResult, Result, Store, StoreError, WatchEvent, WatchStream};

mod codec;
mod writer;

use codec::*;
use writer::writer_loop;

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const EVENTS: TableDefinition<i64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const LEASES: TableDefinition<i64, &[u8]> = TableDefinition::new("leases");
const LEASE_KEYS: MultimapTableDefinition<i64, &str> = MultimapTableDefinition::new("lease_keys");

const REVISION: &str = "revision";
const COMPACT_REVISION: &str = "compact_revision";
const NEXT_LEASE: &str = "next_lease";

/// Tuning of the embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// How many events the log keeps for watches before older ones are compacted away.
    pub max_events: i64,
    /// redb page cache; small, because the working set of HostKit objects is small.
    pub cache_bytes: usize,
    /// How often expired leases are looked for.
    pub lease_check_interval: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_events: 50_000,
            cache_bytes: 32 * 1024 * 1024,
            lease_check_interval: Duration::from_millis(250),
        }
    }
}

/// The embedded store; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    writer: std::sync::mpsc::Sender<WriteRequest>,
    events: broadcast::Sender<Arc<WatchEvent>>,
}

enum Op {
    Create {
        key: String,
        value: Vec<u8>,
        lease: Option<i64>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: i64,
    },
    Delete {
        key: String,
        expected: Option<i64>,
    },
    Compact {
        revision: i64,
    },
    LeaseGrant {
        ttl_ms: i64,
    },
    LeaseKeepAlive {
        id: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    ExpireLeases {
        now_ms: i64,
    },
}

enum OpResult {
    Kv(KeyValue),
    Deleted(KeyValue, i64),
    Lease(i64),
    Ttl(Duration),
    Done,
}

struct WriteRequest {
    op: Op,
    reply: oneshot::Sender<Result<OpResult>>,
}

fn backend_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A counter in the meta table, or `default` before it was first written.
fn meta_value(
    meta: &impl ReadableTable<&'static str, i64>,
    key: &str,
    default: i64,
) -> Result<i64> {
    Ok(meta
        .get(key)
        .map_err(backend_err)?
        .map(|v| v.value())
        .unwrap_or(default))
}

/// The newest revision and the revision the event log is compacted to.
fn revisions(meta: &impl ReadableTable<&'static str, i64>) -> Result<(i64, i64)> {
    Ok((
        meta_value(meta, REVISION, 1)?,
        meta_value(meta, COMPACT_REVISION, 0)?,
    ))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path, options: EmbeddedOptions) -> Result<EmbeddedStore> {
        let db = Database::builder()
            .set_cache_size(options.cache_bytes)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                    "{} is in use by another process (another `hostkit serve` on the same data folder?)",
                    path.display()
                )),
                e => StoreError::Backend(format!("opening {}: {e}", path.display())),
            })?;
        let txn = db.begin_write().map_err(backend_err)?;
        {
            txn.open_table(KV).map_err(backend_err)?;
            txn.open_table(EVENTS).map_err(backend_err)?;
            txn.open_table(LEASES).map_err(backend_err)?;
            txn.open_multimap_table(LEASE_KEYS).map_err(backend_err)?;
            let mut meta = txn.open_table(META).map_err(backend_err)?;
            for (key, initial) in [(REVISION, 1i64), (COMPACT_REVISION, 0), (NEXT_LEASE, 1)] {
                if meta.get(key).map_err(backend_err)?.is_none() {
                    meta.insert(key, initial).map_err(backend_err)?;
                }
            }
        }
        txn.commit().map_err(backend_err)?;
        let db = Arc::new(db);
        let (events, _) = broadcast::channel(4096);
        let (writer, rx) = std::sync::mpsc::channel();
        let writer_db = db.clone();
        let writer_events = events.clone();
        let max_events = options.max_events.max(1);
        std::thread::Builder::new()
            .name("hostkit-store-writer".into())
            .spawn(move || writer_loop(writer_db, rx, writer_events, max_events))
            .map_err(backend_err)?;
        let store = EmbeddedStore {
            inner: Arc::new(Inner { db, writer, events }),
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(expire_leases(
                Arc::downgrade(&store.inner),
                options.lease_check_interval,
            ));
        }
        Ok(store)
    }

    /// Opens the store for a server. A predecessor that was just killed may still hold the
    /// file for a moment: waits up to `wait` for it, saying so.
    pub async fn open_for_server(
        path: &Path,
        options: EmbeddedOptions,
        wait: Duration,
    ) -> Result<EmbeddedStore> {
        let started = std::time::Instant::now();
        let mut said = false;
        let store = loop {
            match EmbeddedStore::open(path, options.clone()) {
                Ok(store) => break store,
                Err(StoreError::Unavailable(why)) if started.elapsed() < wait => {
                    if !said {
                        tracing::warn!("{why}; waiting up to {} s for it", wait.as_secs());
                        said = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(StoreError::Unavailable(why)) => {
                    return Err(StoreError::Unavailable(format!(
                        "{why}; waited {} s",
                        wait.as_secs()
                    )));
                }
                Err(e) => return Err(e),
            }
        };
        Ok(store)
    }

    async fn write(&self, op: Op) -> Result<OpResult> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .writer
            .send(WriteRequest { op, reply })
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(backend_err)?
    }
}

/// Looks for expired leases and asks the writer to delete them; stops with the store.
async fn expire_leases(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let db = inner.db.clone();
        let now = now_ms();
        let any_expired = tokio::task::spawn_blocking(move || -> Result<bool> {
            let txn = db.begin_read().map_err(backend_err)?;
            let leases = txn.open_table(LEASES).map_err(backend_err)?;
            for entry in leases.iter().map_err(backend_err)? {
                let (_, v) = entry.map_err(backend_err)?;
                if lease_expiry(v.value()) <= now {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await;
        if matches!(any_expired, Ok(Ok(true))) {
            let (reply, rx) = oneshot::channel();
            if inner
                .writer
                .send(WriteRequest {
                    op: Op::ExpireLeases { now_ms: now },
                    reply,
                })
                .is_err()
            {
                return;
            }
            drop(inner);
            let _ = rx.await;
        }
    }
}

fn read_meta(db: &Database) -> Result<(i64, i64)> {
    let txn = db.begin_read().map_err(backend_err)?;
    revisions(&txn.open_table(META).map_err(backend_err)?)
}

/// Events with revision ≥ `from` under `prefix`, and the head revision they were read at.
fn read_backlog(db: &Database, prefix: &str, from: i64) -> Result<(Vec<WatchEvent>, i64)> {
    let txn = db.begin_read().map_err(backend_err)?;
    let meta = txn.open_table(META).map_err(backend_err)?;
    let (head, compacted) = revisions(&meta)?;
    if from < compacted {
        return Err(StoreError::Compacted {
            requested: from,
            compact_revision: compacted,
        });
    }
    let log = txn.open_table(EVENTS).map_err(backend_err)?;
    let mut out = Vec::new();
    for entry in log.range(from..).map_err(backend_err)? {
        let (_, v) = entry.map_err(backend_err)?;
        let event = decode_event(v.value())?;
        if event_key(&event).starts_with(prefix) {
            out.push(event);
        }
    }
    Ok((out, head))
}

fn event_key(event: &WatchEvent) -> &str {
    match event {
        WatchEvent::Put(kv) => &kv.key,
        WatchEvent::Delete { key, .. } => key,
        WatchEvent::Progress { .. } => "",
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    /// The file is locked while open: no other process can be using it.
    fn exclusive(&self) -> bool {
        true
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend_err)?;
            let table = txn.open_table(KV).map_err(backend_err)?;
            match table.get(key.as_str()).map_err(backend_err)? {
                Some(v) => decode_record(&key, v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<ListResult> {
        let prefix = prefix.to_string();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend_err)?;
            let meta = txn.open_table(META).map_err(backend_err)?;
            let revision = meta_value(&meta, REVISION, 1)?;
            let table = txn.open_table(KV).map_err(backend_err)?;
            let mut items = Vec::new();
            for entry in table.range(prefix.as_str()..).map_err(backend_err)? {
                let (k, v) = entry.map_err(backend_err)?;
                let key = k.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                items.push(decode_record(key, v.value())?);
            }
            Ok(ListResult { items, revision })
        })
        .await
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<KeyValue> {
        match self
            .write(Op::Create {
                key: key.to_string(),
                value,
                lease,
            })
            .await?
        {
            OpResult::Kv(kv) => Ok(kv),
            _ => unreachable!("create returns a key-value"),
        }
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<KeyValue> {
        match self
            .write(Op::Update {
                key: key.to_string(),
                value,
                expected: expected_revision,
            })
            .await?
        {
            OpResult::Kv(kv) => Ok(kv),
            _ => unreachable!("update returns a key-value"),
        }
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        match self
            .write(Op::Delete {
                key: key.to_string(),
                expected: expected_revision,
            })
            .await?
        {
            OpResult::Deleted(kv, rev) => Ok((kv, rev)),
            _ => unreachable!("delete returns the deleted key-value"),
        }
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: i64,
        progress: Option<Duration>,
    ) -> Result<WatchStream> {
        // Subscribe before reading the backlog, so nothing committed in between is missed;
        // duplicates are dropped by revision below.
        let mut live = self.inner.events.subscribe();
        let prefix = prefix.to_string();
        let from = if from_revision <= 0 {
            self.current_revision().await? + 1
        } else {
            from_revision
        };
        let (backlog, head) = {
            let p = prefix.clone();
            self.read(move |db| read_backlog(db, &p, from)).await?
        };
        let (tx, rx) = mpsc::channel::<Result<WatchEvent>>(1024);
        let store = self.clone();
        tokio::spawn(async move {
            let mut last_seen = head.max(from - 1);
            for event in backlog {
                last_seen = last_seen.max(event.revision());
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            let mut tick = progress.map(|p| {
                let mut i = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
            loop {
                let next = tokio::select! {
                    r = live.recv() => r,
                    _ = async { match &mut tick { Some(t) => { t.tick().await; } None => std::future::pending().await } } => {
                        if tx.send(Ok(WatchEvent::Progress { revision: last_seen })).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    _ = tx.closed() => return,
                };
                match next {
                    Ok(event) => {
                        let rev = event.revision();
                        if rev <= last_seen {
                            continue;
                        }
                        last_seen = rev;
                        if event_key(&event).starts_with(prefix.as_str())
                            && tx.send(Ok((*event).clone())).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow for the live feed: catch up from the log, or fail as compacted.
                        let p = prefix.clone();
                        let from = last_seen + 1;
                        match store.read(move |db| read_backlog(db, &p, from)).await {
                            Ok((events, head)) => {
                                for event in events {
                                    if tx.send(Ok(event)).await.is_err() {
                                        return;
                                    }
                                }
                                last_seen = last_seen.max(head);
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        let _ = tx
                            .send(Err(StoreError::Unavailable("store closed".into())))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn current_revision(&self) -> Result<i64> {
        self.read(|db| read_meta(db).map(|(head, _)| head)).await
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.write(Op::Compact { revision }).await.map(|_| ())
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<i64> {
        match self
            .write(Op::LeaseGrant {
                ttl_ms: ttl.as_millis().max(1) as i64,
            })
            .await?
        {
            OpResult::Lease(id) => Ok(id),
            _ => unreachable!("lease grant returns an id"),
        }
    }

    async fn lease_keep_alive(&self, lease: i64) -> Result<Duration> {
        match self.write(Op::LeaseKeepAlive { id: lease }).await? {
            OpResult::Ttl(ttl) => Ok(ttl),
            _ => unreachable!("keep-alive returns a ttl"),
        }
    }

    async fn lease_revoke(&self, lease: i64) -> Result<()> {
        self.write(Op::LeaseRevoke { id: lease }).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn the_event_log_is_bounded_and_old_watches_are_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            max_events: 5,
            ..Default::default()
        };
        let store = EmbeddedStore::open(&dir.path().join("db.redb"), options).unwrap();
        let first = store.create("/k/0", b"0".to_vec(), None).await.unwrap();
        for i in 1..20 {
            store
                .create(&format!("/k/{i}"), b"x".to_vec(), None)
                .await
                .unwrap();
        }
        let err = match store.watch("/k/", first.mod_revision, None).await {
            Err(e) => e,
            Ok(_) => panic!("a watch from a trimmed revision must fail"),
        };
        assert!(
            matches!(err, StoreError::Compacted { requested, .. } if requested == first.mod_revision),
            "{err:?}"
        );
        let head = store.current_revision().await.unwrap();
        let mut recent = store.watch("/k/", head - 2, None).await.unwrap();
        let e = recent.next().await.unwrap().unwrap();
        assert_eq!(e.revision(), head - 2);
    }

    #[tokio::test]
    async fn a_server_waits_for_the_file_a_predecessor_still_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let first = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap();
        let lease = first.lease_grant(Duration::from_secs(3600)).await.unwrap();
        first
            .create("/hostkit/leader", b"dead".to_vec(), Some(lease))
            .await
            .unwrap();
        first.create("/kept", b"1".to_vec(), None).await.unwrap();
        let refused = EmbeddedStore::open_for_server(
            &path,
            EmbeddedOptions::default(),
            Duration::from_millis(300),
        )
        .await
        .err()
        .expect("the file is held");
        let message = refused.to_string();
        assert!(
            message.contains("in use by another process") && message.contains("waited"),
            "{message}"
        );
        drop(first);
        let store = EmbeddedStore::open_for_server(
            &path,
            EmbeddedOptions::default(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert!(store.exclusive());
        assert!(store.get("/kept").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let rev = {
            let store = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap();
            store
                .create("/a", b"1".to_vec(), None)
                .await
                .unwrap()
                .mod_revision
        };
        // The writer thread lets go of the file once every handle is dropped.
        let mut reopened = None;
        for _ in 0..100 {
            match EmbeddedStore::open(&path, EmbeddedOptions::default()) {
                Ok(s) => {
                    reopened = Some(s);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        let store = reopened.expect("the store reopens");
        let kv = store.get("/a").await.unwrap().unwrap();
        assert_eq!(kv.mod_revision, rev);
        assert_eq!(store.current_revision().await.unwrap(), rev);
    }
}
