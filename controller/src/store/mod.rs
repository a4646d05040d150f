//! The key-value store behind the API: etcd semantics, two backends.
//!
//! Everything above this module (the API server, the controller runtime) speaks only this
//! trait, so a one-machine install on the [`embedded`] backend and a cluster on [`etcd`]
//! behave the same: one global revision counter, per-key create/mod revisions,
//! compare-and-swap updates, watches that resume from a revision and fail loudly with
//! [`StoreError::Compacted`] when that revision is gone (so callers re-list instead of
//! silently missing events), and leases for leader election and expiring events.

pub mod embedded;
pub mod etcd;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;

/// A stored value with its etcd-style revision bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision at which the key was created (stays the same across updates).
    pub create_revision: i64,
    /// Revision of the last write to the key; the API's `resourceVersion`.
    pub mod_revision: i64,
    /// Number of writes since creation, starting at 1.
    pub version: i64,
    /// Lease the key is attached to, 0 for none.
    pub lease: i64,
}

/// All keys under a prefix as of one revision.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The store revision the list reflects; watch from `revision + 1` to miss nothing.
    pub revision: i64,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated; `kv.version == 1` means created.
    Put(KeyValue),
    /// A key was deleted at `revision`; `prev` is its last value.
    Delete {
        key: String,
        revision: i64,
        prev: Option<KeyValue>,
    },
    /// Every change up to `revision` has been delivered (a bookmark).
    Progress { revision: i64 },
}

impl WatchEvent {
    /// The revision this event brings the watcher up to.
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { revision, .. } | WatchEvent::Progress { revision } => *revision,
        }
    }
}

/// A stream of watch events; it ends with an error when the watch cannot go on.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// What can go wrong in a store. The variants a caller acts on are distinct
/// (`Conflict` → re-read and retry, `Compacted` → re-list), the rest are opaque.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{key} already exists")]
    AlreadyExists { key: String },
    #[error("{key} not found")]
    NotFound { key: String },
    #[error("{key} was changed by someone else: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: i64,
        actual: i64,
    },
    #[error(
        "revision {requested} is too old: the store has compacted history before revision \
         {compact_revision}; re-list and watch from the list's revision"
    )]
    Compacted {
        requested: i64,
        compact_revision: i64,
    },
    #[error("lease {0} not found (expired or revoked)")]
    LeaseNotFound(i64),
    /// The key holds another object than the writer read: it was deleted and created again.
    #[error(
        "{key} is another object now: uid {actual}, not {expected} (deleted and created again)"
    )]
    UidMismatch {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("stored value of {key} is not a JSON object: {message}")]
    Corrupt { key: String, message: String },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// etcd's data model as a trait. Keys are UTF-8 paths such as `/hostkit/services/exograph`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A name for logs and metrics: `embedded` or `etcd`.
    fn backend(&self) -> &'static str;

    /// True when no other process can use this store while this one has it open (the
    /// embedded store's file lock): whatever another process left in it, that process is
    /// gone.
    fn exclusive(&self) -> bool {
        false
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Every key under `prefix`, read page by page at one revision.
    async fn list(&self, prefix: &str) -> Result<ListResult>;

    /// Stores a new key; fails with `AlreadyExists` if it is there.
    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<KeyValue>;

    /// Replaces a key if its mod revision is still `expected_revision` (compare-and-swap).
    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<KeyValue>;

    /// Deletes a key, optionally only at `expected_revision`; returns (last value, revision of deletion).
    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)>;

    /// Changes under `prefix` from `from_revision` (inclusive; 0 = from now on), with a
    /// `Progress` bookmark every `progress` when given.
    async fn watch(
        &self,
        prefix: &str,
        from_revision: i64,
        progress: Option<Duration>,
    ) -> Result<WatchStream>;

    /// The newest revision of the store.
    async fn current_revision(&self) -> Result<i64>;

    /// Forgets history before `revision`; watches from older revisions then fail with `Compacted`.
    async fn compact(&self, revision: i64) -> Result<()>;

    /// A lease that expires `ttl` after its last keep-alive, deleting the keys attached to it.
    async fn lease_grant(&self, ttl: Duration) -> Result<i64>;

    /// Renews a lease; returns its TTL.
    async fn lease_keep_alive(&self, lease: i64) -> Result<Duration>;

    /// Ends a lease now, deleting its keys.
    async fn lease_revoke(&self, lease: i64) -> Result<()>;

    /// Replaces only the `status` field of the JSON object at `key`, never its spec.
    ///
    /// With `expected_revision` it is a compare-and-swap; without, it retries on conflicts
    /// so a status writer never clobbers a concurrent spec update. With `expected_uid`, a
    /// status meant for an object that was deleted never lands on the one created in its
    /// place under the same name.
    async fn update_status(
        &self,
        key: &str,
        status: serde_json::Value,
        expected_revision: Option<i64>,
        expected_uid: Option<&str>,
    ) -> Result<KeyValue> {
        let mut attempts = 0;
        loop {
            let current = self.get(key).await?.ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })?;
            if let Some(expected) = expected_revision
                && expected != current.mod_revision
            {
                return Err(StoreError::Conflict {
                    key: key.to_string(),
                    expected,
                    actual: current.mod_revision,
                });
            }
            let mut object: serde_json::Value =
                serde_json::from_slice(&current.value).map_err(|e| StoreError::Corrupt {
                    key: key.to_string(),
                    message: e.to_string(),
                })?;
            if let Some(expected) = expected_uid {
                let actual = object
                    .pointer("/metadata/uid")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default();
                if actual != expected {
                    return Err(StoreError::UidMismatch {
                        key: key.to_string(),
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
            }
            let Some(map) = object.as_object_mut() else {
                return Err(StoreError::Corrupt {
                    key: key.to_string(),
                    message: "not an object".into(),
                });
            };
            map.insert("status".to_string(), status.clone());
            let bytes = serde_json::to_vec(&object).expect("JSON values serialise");
            match self.update(key, bytes, current.mod_revision).await {
                Err(StoreError::Conflict { .. }) if expected_revision.is_none() && attempts < 8 => {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }
}

/// The first key after every key that starts with `prefix` (etcd's range end).
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(
            prefix_end("/hostkit/services/"),
            b"/hostkit/services0".to_vec()
        );
        assert_eq!(prefix_end("a"), b"b".to_vec());
    }
}
