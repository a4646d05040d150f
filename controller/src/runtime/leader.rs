//! Leader election on store leases (both backends): the leader holds `/hostkit/leader`
//! attached to a 15 s lease that it renews every 10 s; others retry every 2 s. Followers
//! keep serving the API and `/metrics`; only the leader reconciles.

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

/// Sleeps `d`; true when shutdown was requested meanwhile.
async fn wait(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|s| *s) => true,
    };
    stopped || *shutdown.borrow()
}
