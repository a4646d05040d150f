//! The etcd backend (etcd ≥ 3.4, v3 gRPC API).
//!
//! Compare-and-swap writes are etcd transactions on `mod_revision`/`create_revision`.
//! Lists are paged at one revision so a large list is still a consistent snapshot.
//! Watches resume after a dropped connection from the last revision they delivered, and
//! turn etcd's compaction notice into [`StoreError::Compacted`] so callers re-list.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use tokio::sync::mpsc;

use super::{KeyValue, ListResult, Result, Store, StoreError, WatchEvent, WatchStream, prefix_end};

const PAGE: i64 = 500;

/// A store on an etcd cluster; cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
}

fn err(e: etcd_client::Error) -> StoreError {
    match e {
        etcd_client::Error::GRpcStatus(s)
            if s.message().contains("required revision has been compacted") =>
        {
            StoreError::Compacted {
                requested: 0,
                compact_revision: 0,
            }
        }
        etcd_client::Error::GRpcStatus(s) if s.message().contains("requested lease not found") => {
            StoreError::LeaseNotFound(0)
        }
        etcd_client::Error::LeaseKeepAliveError(m) if m.contains("lease not found") => {
            StoreError::LeaseNotFound(0)
        }
        etcd_client::Error::GRpcStatus(s)
            if matches!(
                format!("{:?}", s.code()).as_str(),
                "Unavailable" | "DeadlineExceeded"
            ) =>
        {
            StoreError::Unavailable(s.message().to_string())
        }
        etcd_client::Error::TransportError(t) => StoreError::Unavailable(t.to_string()),
        other => StoreError::Backend(other.to_string()),
    }
}

fn convert(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: kv
            .key_str()
            .map_err(|e| StoreError::Backend(e.to_string()))?
            .to_string(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    })
}

impl EtcdStore {
    /// Connects to the given endpoints (`http://127.0.0.1:2379`).
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(err)?;
        let store = EtcdStore { client };
        store.current_revision().await?;
        Ok(store)
    }

    /// The first value of a failed transaction's `or_else` get, for error reporting.
    fn else_kv(resp: &etcd_client::TxnResponse) -> Option<KeyValue> {
        resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().and_then(|kv| convert(kv).ok()),
            _ => None,
        })
    }
}

#[async_trait]
impl Store for EtcdStore {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self.client.kv_client().get(key, None).await.map_err(err)?;
        resp.kvs().first().map(convert).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<ListResult> {
        let mut kv = self.client.kv_client();
        let end = prefix_end(prefix);
        let mut start = prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut items = Vec::new();
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision != 0 {
                options = options.with_revision(revision);
            }
            let resp = kv.get(start.clone(), Some(options)).await.map_err(err)?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            for kv in resp.kvs() {
                items.push(convert(kv)?);
            }
            if !resp.more() || resp.kvs().is_empty() {
                break;
            }
            let last = resp.kvs().last().expect("non-empty page").key().to_vec();
            start = last;
            start.push(0);
        }
        Ok(ListResult { items, revision })
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<KeyValue> {
        let put_options = lease.map(|l| PutOptions::new().with_lease(l));
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.clone(), put_options)])
            .or_else([TxnOp::get(key, None)]);
        let resp = match self.client.kv_client().txn(txn).await {
            Err(etcd_client::Error::GRpcStatus(s))
                if s.message().contains("requested lease not found") =>
            {
                return Err(StoreError::LeaseNotFound(lease.unwrap_or(0)));
            }
            other => other.map_err(err)?,
        };
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: lease.unwrap_or(0),
        })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key,
                CompareOp::Equal,
                expected_revision,
            )])
            .and_then([TxnOp::put(
                key,
                value.clone(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.client.kv_client().txn(txn).await.map_err(err)?;
        if !resp.succeeded() {
            return Err(match Self::else_kv(&resp) {
                None => StoreError::NotFound {
                    key: key.to_string(),
                },
                Some(kv) => StoreError::Conflict {
                    key: key.to_string(),
                    expected: expected_revision,
                    actual: kv.mod_revision,
                },
            });
        }
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let prev = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Put(mut p) => p.take_prev_key(),
            _ => None,
        });
        let prev = prev.ok_or_else(|| StoreError::NotFound {
            key: key.to_string(),
        })?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: prev.create_revision(),
            mod_revision: rev,
            version: prev.version() + 1,
            lease: prev.lease(),
        })
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        let compare = match expected_revision {
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.client.kv_client().txn(txn).await.map_err(err)?;
        if !resp.succeeded() {
            return Err(match (Self::else_kv(&resp), expected_revision) {
                (Some(kv), Some(expected)) => StoreError::Conflict {
                    key: key.to_string(),
                    expected,
                    actual: kv.mod_revision,
                },
                _ => StoreError::NotFound {
                    key: key.to_string(),
                },
            });
        }
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let prev = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Delete(d) => d.prev_kvs().first().map(convert),
                _ => None,
            })
            .transpose()?
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })?;
        Ok((prev, rev))
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: i64,
        progress: Option<Duration>,
    ) -> Result<WatchStream> {
        let from = if from_revision <= 0 {
            self.current_revision().await? + 1
        } else {
            from_revision
        };
        let (tx, rx) = mpsc::channel::<Result<WatchEvent>>(1024);
        let client = self.client.clone();
        let prefix = prefix.to_string();
        // Open the first watch here so a compacted start revision is reported to the caller.
        let first = open_watch(&client, &prefix, from).await?;
        tokio::spawn(follow(client, prefix, from, progress, first, tx));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn current_revision(&self) -> Result<i64> {
        let resp = self
            .client
            .kv_client()
            .get("/", Some(GetOptions::new().with_count_only()))
            .await
            .map_err(err)?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.client
            .kv_client()
            .compact(revision, None)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<i64> {
        let secs = ttl.as_secs().max(1) as i64;
        let resp = self
            .client
            .lease_client()
            .grant(secs, None)
            .await
            .map_err(err)?;
        Ok(resp.id())
    }

    async fn lease_keep_alive(&self, lease: i64) -> Result<Duration> {
        let not_found = |e: etcd_client::Error| match err(e) {
            StoreError::LeaseNotFound(_) => StoreError::LeaseNotFound(lease),
            other => other,
        };
        let (mut keeper, mut stream) = self
            .client
            .lease_client()
            .keep_alive(lease)
            .await
            .map_err(not_found)?;
        keeper.keep_alive().await.map_err(not_found)?;
        match stream.message().await.map_err(not_found)? {
            Some(resp) if resp.ttl() > 0 => Ok(Duration::from_secs(resp.ttl() as u64)),
            _ => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    async fn lease_revoke(&self, lease: i64) -> Result<()> {
        match self.client.lease_client().revoke(lease).await {
            Ok(_) => Ok(()),
            Err(e) => match err(e) {
                StoreError::LeaseNotFound(_) => Err(StoreError::LeaseNotFound(lease)),
                other => Err(other),
            },
        }
    }
}

/// Opens an etcd watch and waits for its creation, so a compacted revision fails here.
async fn open_watch(client: &Client, prefix: &str, from: i64) -> Result<etcd_client::WatchStream> {
    let options = WatchOptions::new()
        .with_range(prefix_end(prefix))
        .with_start_revision(from)
        .with_prev_key()
        .with_progress_notify();
    let mut stream = client
        .watch_client()
        .watch(prefix, Some(options))
        .await
        .map_err(err)?;
    // etcd answers a watch request with a "created" response, and reports a compacted
    // start revision in a later cancellation. Ask the key space first whether `from` is
    // still readable, so the caller hears about compaction now and not on the first event.
    let compacted = match client
        .kv_client()
        .get(
            prefix,
            Some(GetOptions::new().with_count_only().with_revision(from)),
        )
        .await
    {
        Err(e) => matches!(err(e), StoreError::Compacted { .. }),
        Ok(_) => false,
    };
    loop {
        let message = if compacted {
            tokio::time::timeout(Duration::from_secs(5), stream.message())
                .await
                .map_err(|_| StoreError::Compacted {
                    requested: from,
                    compact_revision: 0,
                })?
        } else {
            stream.message().await
        };
        match message.map_err(err)? {
            Some(resp) if resp.compact_revision() > 0 => {
                return Err(StoreError::Compacted {
                    requested: from,
                    compact_revision: resp.compact_revision(),
                });
            }
            Some(resp) if resp.canceled() => {
                return Err(StoreError::Backend(format!(
                    "etcd cancelled the watch: {}",
                    resp.cancel_reason()
                )));
            }
            Some(_) if compacted => continue,
            Some(_) => return Ok(stream),
            None => {
                return Err(StoreError::Unavailable(
                    "etcd closed the watch stream".into(),
                ));
            }
        }
    }
}

/// Forwards etcd watch responses, resuming from the last delivered revision after a
/// dropped connection (with backoff), and requesting progress bookmarks when asked.
async fn follow(
    client: Client,
    prefix: String,
    from: i64,
    progress: Option<Duration>,
    first: etcd_client::WatchStream,
    tx: mpsc::Sender<Result<WatchEvent>>,
) {
    let mut next = from;
    let mut stream = Some(first);
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut current = match stream.take() {
            Some(s) => s,
            None => match open_watch(&client, &prefix, next).await {
                Ok(s) => {
                    backoff = Duration::from_millis(200);
                    s
                }
                Err(e @ StoreError::Compacted { .. }) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, revision = next, "etcd watch reconnect failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = tx.closed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        let mut tick =
            progress.map(|p| tokio::time::interval_at(tokio::time::Instant::now() + p, p));
        loop {
            let message = tokio::select! {
                m = current.message() => m,
                _ = async { match &mut tick { Some(t) => { t.tick().await; } None => std::future::pending().await } } => {
                    if current.request_progress().await.is_err() {
                        break;
                    }
                    continue;
                }
                _ = tx.closed() => return,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) | Err(_) => break, // connection lost: resume from `next`
            };
            if resp.compact_revision() > 0 {
                let _ = tx
                    .send(Err(StoreError::Compacted {
                        requested: next,
                        compact_revision: resp.compact_revision(),
                    }))
                    .await;
                return;
            }
            if resp.canceled() {
                break;
            }
            if resp.events().is_empty() {
                if let Some(h) = resp.header()
                    && progress.is_some()
                    && h.revision() >= next - 1
                {
                    let revision = h.revision();
                    if tx
                        .send(Ok(WatchEvent::Progress { revision }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    next = next.max(revision + 1);
                }
                continue;
            }
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let converted = match event.event_type() {
                    etcd_client::EventType::Put => convert(kv).map(WatchEvent::Put),
                    etcd_client::EventType::Delete => Ok(WatchEvent::Delete {
                        key: kv.key_str().unwrap_or_default().to_string(),
                        revision: kv.mod_revision(),
                        prev: event.prev_kv().and_then(|p| convert(p).ok()),
                    }),
                };
                match converted {
                    Ok(ev) => {
                        next = ev.revision() + 1;
                        if tx.send(Ok(ev)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = tx.closed() => return,
        }
    }
}
