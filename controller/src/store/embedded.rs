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

/// Record layout: create_revision, mod_revision, version, lease (i64 LE each), then the value.
fn encode_record(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + kv.value.len());
    for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&kv.value);
    out
}

fn decode_record(key: &str, bytes: &[u8]) -> Result<KeyValue> {
    if bytes.len() < 32 {
        return Err(StoreError::Backend(format!("record of {key} is truncated")));
    }
    let n = |i: usize| i64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Ok(KeyValue {
        key: key.to_string(),
        create_revision: n(0),
        mod_revision: n(1),
        version: n(2),
        lease: n(3),
        value: bytes[32..].to_vec(),
    })
}

/// Event layout: kind (0 put, 1 delete), revision, key length, key, record.
fn encode_event(event: &WatchEvent) -> Vec<u8> {
    let (kind, revision, key, record) = match event {
        WatchEvent::Put(kv) => (0u8, kv.mod_revision, &kv.key, Some(kv)),
        WatchEvent::Delete {
            key,
            revision,
            prev,
        } => (1u8, *revision, key, prev.as_ref()),
        WatchEvent::Progress { .. } => unreachable!("progress events are never logged"),
    };
    let mut out = vec![kind];
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    if let Some(kv) = record {
        out.extend_from_slice(&encode_record(kv));
    }
    out
}

fn decode_event(bytes: &[u8]) -> Result<WatchEvent> {
    let bad = || StoreError::Backend("event log entry is truncated".into());
    let kind = *bytes.first().ok_or_else(bad)?;
    let revision = i64::from_le_bytes(
        bytes
            .get(1..9)
            .ok_or_else(bad)?
            .try_into()
            .expect("8 bytes"),
    );
    let klen = u32::from_le_bytes(
        bytes
            .get(9..13)
            .ok_or_else(bad)?
            .try_into()
            .expect("4 bytes"),
    ) as usize;
    let key =
        std::str::from_utf8(bytes.get(13..13 + klen).ok_or_else(bad)?).map_err(backend_err)?;
    let rest = &bytes[13 + klen..];
    match kind {
        0 => Ok(WatchEvent::Put(decode_record(key, rest)?)),
        _ => Ok(WatchEvent::Delete {
            key: key.to_string(),
            revision,
            prev: if rest.is_empty() {
                None
            } else {
                Some(decode_record(key, rest)?)
            },
        }),
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path, options: EmbeddedOptions) -> Result<EmbeddedStore> {
        let db = Database::builder()
            .set_cache_size(options.cache_bytes)
            .create(path)
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
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

fn lease_value(ttl_ms: i64, expires_ms: i64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&ttl_ms.to_le_bytes());
    out[8..].copy_from_slice(&expires_ms.to_le_bytes());
    out
}

fn lease_ttl(v: &[u8]) -> i64 {
    i64::from_le_bytes(v[..8].try_into().expect("8 bytes"))
}

fn lease_expiry(v: &[u8]) -> i64 {
    i64::from_le_bytes(v[8..16].try_into().expect("8 bytes"))
}

fn writer_loop(
    db: Arc<Database>,
    rx: std::sync::mpsc::Receiver<WriteRequest>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    max_events: i64,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut produced = Vec::new();
        let outcome = (|| -> Result<Vec<Result<OpResult>>> {
            let txn = db.begin_write().map_err(backend_err)?;
            let mut results = Vec::with_capacity(batch.len());
            for req in &batch {
                results.push(apply_op(&txn, &req.op, &mut produced)?);
            }
            trim_events(&txn, max_events)?;
            txn.commit().map_err(backend_err)?;
            Ok(results)
        })();
        match outcome {
            Ok(results) => {
                for (req, result) in batch.into_iter().zip(results) {
                    let _ = req.reply.send(result);
                }
                for event in produced {
                    let _ = events.send(Arc::new(event));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedded store commit failed");
                for req in batch {
                    let _ = req.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The tables of a write transaction, and the watch events its operations produce.
struct Tables<'t> {
    kv: redb::Table<'t, &'static str, &'static [u8]>,
    meta: redb::Table<'t, &'static str, i64>,
    log: redb::Table<'t, i64, &'static [u8]>,
    leases: redb::Table<'t, i64, &'static [u8]>,
    lease_keys: redb::MultimapTable<'t, i64, &'static str>,
    produced: &'t mut Vec<WatchEvent>,
}

/// Applies one operation inside the batch's transaction. `Ok(Err(_))` is the operation's own
/// failure (a conflict, say), which leaves the transaction usable; `Err(_)` aborts the batch.
fn apply_op(
    txn: &WriteTransaction,
    op: &Op,
    produced: &mut Vec<WatchEvent>,
) -> Result<Result<OpResult>> {
    let mut t = Tables {
        kv: txn.open_table(KV).map_err(backend_err)?,
        meta: txn.open_table(META).map_err(backend_err)?,
        log: txn.open_table(EVENTS).map_err(backend_err)?,
        leases: txn.open_table(LEASES).map_err(backend_err)?,
        lease_keys: txn.open_multimap_table(LEASE_KEYS).map_err(backend_err)?,
        produced,
    };
    match op {
        Op::Create { key, value, lease } => t.create(key, value, lease.unwrap_or(0)),
        Op::Update {
            key,
            value,
            expected,
        } => t.update(key, value, *expected),
        Op::Delete { key, expected } => t.delete(key, *expected),
        Op::Compact { revision } => t.compact(*revision),
        Op::LeaseGrant { ttl_ms } => {
            let id = meta_value(&t.meta, NEXT_LEASE, 1)?;
            t.meta.insert(NEXT_LEASE, id + 1).map_err(backend_err)?;
            t.leases
                .insert(id, lease_value(*ttl_ms, now_ms() + ttl_ms).as_slice())
                .map_err(backend_err)?;
            Ok(Ok(OpResult::Lease(id)))
        }
        Op::LeaseKeepAlive { id } => {
            let ttl = match t.leases.get(*id).map_err(backend_err)? {
                Some(v) if lease_expiry(v.value()) > now_ms() => lease_ttl(v.value()),
                _ => return Ok(Err(StoreError::LeaseNotFound(*id))),
            };
            t.leases
                .insert(*id, lease_value(ttl, now_ms() + ttl).as_slice())
                .map_err(backend_err)?;
            Ok(Ok(OpResult::Ttl(Duration::from_millis(ttl as u64))))
        }
        Op::LeaseRevoke { id } => {
            if t.leases.get(*id).map_err(backend_err)?.is_none() {
                return Ok(Err(StoreError::LeaseNotFound(*id)));
            }
            t.end_leases(vec![*id])
        }
        Op::ExpireLeases { now_ms } => {
            let mut expired = Vec::new();
            for entry in t.leases.iter().map_err(backend_err)? {
                let (k, v) = entry.map_err(backend_err)?;
                if lease_expiry(v.value()) <= *now_ms {
                    expired.push(k.value());
                }
            }
            t.end_leases(expired)
        }
    }
}

impl Tables<'_> {
    fn current(&self, key: &str) -> Result<Option<KeyValue>> {
        match self.kv.get(key).map_err(backend_err)? {
            Some(v) => decode_record(key, v.value()).map(Some),
            None => Ok(None),
        }
    }

    fn next_revision(&mut self) -> Result<i64> {
        let rev = meta_value(&self.meta, REVISION, 1)? + 1;
        self.meta.insert(REVISION, rev).map_err(backend_err)?;
        Ok(rev)
    }

    /// Appends `event` to the log and hands it to the watchers after the commit.
    fn record(&mut self, event: WatchEvent) -> Result<()> {
        self.log
            .insert(event.revision(), encode_event(&event).as_slice())
            .map_err(backend_err)?;
        self.produced.push(event);
        Ok(())
    }

    fn put(&mut self, kv: &KeyValue) -> Result<()> {
        self.kv
            .insert(kv.key.as_str(), encode_record(kv).as_slice())
            .map_err(backend_err)?;
        self.record(WatchEvent::Put(kv.clone()))
    }

    /// Removes the key of `old` at a new revision; `unlink` also drops it from its lease's
    /// keys (not needed when the whole lease goes).
    fn remove(&mut self, old: KeyValue, unlink: bool) -> Result<i64> {
        let rev = self.next_revision()?;
        self.kv.remove(old.key.as_str()).map_err(backend_err)?;
        if unlink && old.lease != 0 {
            self.lease_keys
                .remove(old.lease, old.key.as_str())
                .map_err(backend_err)?;
        }
        self.record(WatchEvent::Delete {
            key: old.key.clone(),
            revision: rev,
            prev: Some(old),
        })?;
        Ok(rev)
    }

    fn create(&mut self, key: &str, value: &[u8], lease: i64) -> Result<Result<OpResult>> {
        if self.current(key)?.is_some() {
            return Ok(Err(StoreError::AlreadyExists { key: key.into() }));
        }
        if lease != 0 && self.leases.get(lease).map_err(backend_err)?.is_none() {
            return Ok(Err(StoreError::LeaseNotFound(lease)));
        }
        let rev = self.next_revision()?;
        let kv = KeyValue {
            key: key.to_string(),
            value: value.to_vec(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease,
        };
        if lease != 0 {
            self.lease_keys.insert(lease, key).map_err(backend_err)?;
        }
        self.put(&kv)?;
        Ok(Ok(OpResult::Kv(kv)))
    }

    /// The key's current record, when it exists at `expected` (or any revision).
    fn expect(&self, key: &str, expected: Option<i64>) -> Result<Result<KeyValue>> {
        let Some(old) = self.current(key)? else {
            return Ok(Err(StoreError::NotFound { key: key.into() }));
        };
        match expected {
            Some(e) if e != old.mod_revision => Ok(Err(StoreError::Conflict {
                key: key.into(),
                expected: e,
                actual: old.mod_revision,
            })),
            _ => Ok(Ok(old)),
        }
    }

    fn update(&mut self, key: &str, value: &[u8], expected: i64) -> Result<Result<OpResult>> {
        let old = match self.expect(key, Some(expected))? {
            Ok(old) => old,
            Err(e) => return Ok(Err(e)),
        };
        let kv = KeyValue {
            value: value.to_vec(),
            mod_revision: self.next_revision()?,
            version: old.version + 1,
            ..old
        };
        self.put(&kv)?;
        Ok(Ok(OpResult::Kv(kv)))
    }

    fn delete(&mut self, key: &str, expected: Option<i64>) -> Result<Result<OpResult>> {
        let old = match self.expect(key, expected)? {
            Ok(old) => old,
            Err(e) => return Ok(Err(e)),
        };
        let rev = self.remove(old.clone(), true)?;
        Ok(Ok(OpResult::Deleted(old, rev)))
    }

    fn compact(&mut self, revision: i64) -> Result<Result<OpResult>> {
        let (head, compacted) = revisions(&self.meta)?;
        if revision > head {
            return Ok(Err(StoreError::Backend(format!(
                "cannot compact to revision {revision}: the newest revision is {head}"
            ))));
        }
        if revision <= compacted {
            return Ok(Err(StoreError::Compacted {
                requested: revision,
                compact_revision: compacted,
            }));
        }
        self.log
            .retain_in(..revision, |_, _| false)
            .map_err(backend_err)?;
        self.meta
            .insert(COMPACT_REVISION, revision)
            .map_err(backend_err)?;
        Ok(Ok(OpResult::Done))
    }

    /// Ends leases: their keys are deleted (with watch events), then the leases.
    fn end_leases(&mut self, ids: Vec<i64>) -> Result<Result<OpResult>> {
        for lease in ids {
            let keys: Vec<String> = self
                .lease_keys
                .get(lease)
                .map_err(backend_err)?
                .map(|k| k.map(|k| k.value().to_string()).map_err(backend_err))
                .collect::<Result<_>>()?;
            for key in keys {
                if let Some(old) = self.current(&key)? {
                    self.remove(old, false)?;
                }
            }
            self.lease_keys.remove_all(lease).map_err(backend_err)?;
            self.leases.remove(lease).map_err(backend_err)?;
        }
        Ok(Ok(OpResult::Done))
    }
}

/// Keeps the event log at most `max_events` long by compacting its oldest part.
fn trim_events(txn: &WriteTransaction, max_events: i64) -> Result<()> {
    let mut meta = txn.open_table(META).map_err(backend_err)?;
    let (head, compacted) = revisions(&meta)?;
    let keep_from = head - max_events + 1;
    if keep_from > compacted.max(1) {
        let mut log = txn.open_table(EVENTS).map_err(backend_err)?;
        log.retain_in(..keep_from, |_, _| false)
            .map_err(backend_err)?;
        meta.insert(COMPACT_REVISION, keep_from)
            .map_err(backend_err)?;
    }
    Ok(())
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
