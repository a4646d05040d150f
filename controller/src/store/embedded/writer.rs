//! The single writer: requests from a channel are committed in groups (one fsync for many
//! writes), each operation applied in the group's transaction with its own outcome;
//! revisions assigned, events logged (and the log bounded) and fanned out after the commit.

use super::*;

pub(super) fn writer_loop(
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
