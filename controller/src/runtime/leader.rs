//! Leader election on store leases (both backends): the leader holds `/hostkit/leader`
//! attached to a 15 s lease that it renews every 10 s; others retry every 2 s. Followers
//! keep serving the API and `/metrics`; only the leader reconciles.
//!
//! On a store only one process can have open (the embedded store), a leader key found at
//! start is a dead predecessor's: it is taken over at once instead of waiting out its
//! lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{Store, StoreError};

pub const KEY: &str = "/hostkit/leader";

/// Lease timings; tests shorten them.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    pub lease: Duration,
    pub renew: Duration,
    pub retry: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            lease: Duration::from_secs(15),
            renew: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// Campaigns until `shutdown` flips to true; publishes leadership on `leading`. On shutdown
/// the lease is revoked so another process takes over at once.
pub async fn campaign(
    store: Arc<dyn Store>,
    identity: String,
    timings: Timings,
    leading: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    if store.exclusive() {
        take_over(store.as_ref()).await;
    }
    loop {
        if *shutdown.borrow() {
            break;
        }
        let lease = match store.lease_grant(timings.lease).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "leader election: cannot grant a lease");
                if wait(&mut shutdown, timings.retry).await {
                    break;
                }
                continue;
            }
        };
        match store
            .create(KEY, identity.clone().into_bytes(), Some(lease))
            .await
        {
            Ok(_) => {
                tracing::info!(%identity, "became the leader");
                let _ = leading.send(true);
                loop {
                    if wait(&mut shutdown, timings.renew).await {
                        let _ = leading.send(false);
                        let _ = store.lease_revoke(lease).await;
                        return;
                    }
                    if let Err(e) = store.lease_keep_alive(lease).await {
                        tracing::warn!(error = %e, "lost leadership: lease renewal failed");
                        let _ = leading.send(false);
                        break;
                    }
                }
            }
            Err(StoreError::AlreadyExists { .. }) => {
                let _ = store.lease_revoke(lease).await;
                if wait(&mut shutdown, timings.retry).await {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "leader election: cannot write the leader key");
                let _ = store.lease_revoke(lease).await;
                if wait(&mut shutdown, timings.retry).await {
                    break;
                }
            }
        }
    }
    let _ = leading.send(false);
}

/// Removes the leader key a process that had the store before this one left behind.
async fn take_over(store: &dyn Store) {
    match store.get(KEY).await {
        Ok(Some(kv)) => {
            let before = String::from_utf8_lossy(&kv.value).into_owned();
            match store.delete(KEY, Some(kv.mod_revision)).await {
                Ok(_) => tracing::info!(
                    predecessor = %before,
                    "took over leadership at once: the store is this process's alone"
                ),
                Err(e) => tracing::warn!(error = %e, "could not remove the stale leader key"),
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the leader key"),
    }
}

/// Sleeps `d`; true when shutdown was requested meanwhile.
async fn wait(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|s| *s) => true,
    };
    stopped || *shutdown.borrow()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};

    /// A killed predecessor's leader key, with most of its lease left: a process that has
    /// the embedded store leads at once, instead of 15 s later.
    #[tokio::test]
    async fn on_the_embedded_store_a_dead_leaders_key_is_taken_over_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&dir.path().join("s.redb"), EmbeddedOptions::default()).unwrap(),
        );
        let lease = store.lease_grant(Duration::from_secs(3600)).await.unwrap();
        store
            .create(KEY, b"dead-1-8080".to_vec(), Some(lease))
            .await
            .unwrap();
        let (leading, mut led) = watch::channel(false);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(campaign(
            store.clone(),
            "me".into(),
            Timings::default(),
            leading,
            stopped,
        ));
        // (The guard `wait_for` returns is dropped at once: it holds the value locked.)
        let took = tokio::time::timeout(Duration::from_secs(1), led.wait_for(|l| *l))
            .await
            .is_ok();
        assert!(took, "still waiting for the dead leader's lease");
        let kv = store.get(KEY).await.unwrap().unwrap();
        assert_eq!(kv.value, b"me");
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}
