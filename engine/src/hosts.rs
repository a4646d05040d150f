//! The connections to hosts and their apply locks, shared by every plan and apply of a
//! process, so that a host is connected once and changed by one thing at a time.
//!
//! [`Hosts`] is the boundary reconcilers go through; [`Pool`] is the real one (one SSH
//! connection per host, reused until it fails); tests supply their own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hostkit_api::kinds::HostSpec;

use crate::Result;
use crate::secrets::Secrets;
use crate::transport::Transport;
use crate::transport::ssh::{Ssh, SshOptions};

/// Connections and apply locks, owned by the caller so they outlive one reconcile.
#[async_trait::async_trait]
pub trait Hosts: Send + Sync {
    /// A connected transport for `name` (reused between reconciles).
    async fn transport(&self, name: &str, spec: &HostSpec) -> Result<Arc<dyn Transport>>;
    /// A new connection to `name` (the host key checked again), which from now on serves
    /// [`Hosts::transport`] too: a Host reconcile calls it, so a host whose key changed is
    /// refused within one reconcile even while an old connection still works.
    async fn verify(&self, name: &str, spec: &HostSpec) -> Result<Arc<dyn Transport>> {
        self.forget(name);
        self.transport(name, spec).await
    }
    /// Forgets a connection that failed, so the next call reconnects.
    fn forget(&self, name: &str);
    /// Held while planning and applying on `name`: two objects never change one host at once.
    async fn lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()>;
}

/// A live connection and the [`SshOptions::identity`] it was made for.
type Connection = (String, Arc<dyn Transport>);

/// One SSH connection per host, and one apply lock per host. A connection serves only the
/// Host settings it was made for ([`SshOptions::identity`]): a changed address, port, user,
/// key or host-key policy makes a new one, and the old one is dropped.
#[derive(Default)]
pub struct Pool {
    connections: Mutex<HashMap<String, Connection>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    secrets: Secrets,
}

#[async_trait::async_trait]
impl Hosts for Pool {
    async fn transport(&self, name: &str, spec: &HostSpec) -> Result<Arc<dyn Transport>> {
        let opts = SshOptions::from_host(name, spec, &self.secrets)?;
        let identity = opts.identity();
        {
            let mut connections = self.connections.lock().expect("not poisoned");
            match connections.get(name) {
                Some((made_for, t)) if *made_for == identity => return Ok(t.clone()),
                Some(_) => {
                    tracing::info!(
                        host = name,
                        "the Host's connection settings changed; reconnecting"
                    );
                    connections.remove(name);
                }
                None => {}
            }
        }
        let t: Arc<dyn Transport> = Arc::new(Ssh::connect(&opts).await?);
        self.connections
            .lock()
            .expect("not poisoned")
            .insert(name.to_string(), (identity, t.clone()));
        Ok(t)
    }

    fn forget(&self, name: &str) {
        self.connections.lock().expect("not poisoned").remove(name);
    }

    async fn lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self
            .locks
            .lock()
            .expect("not poisoned")
            .entry(name.to_string())
            .or_default()
            .clone();
        m.lock_owned().await
    }
}
