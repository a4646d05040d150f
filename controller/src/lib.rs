//! `hostkit-controller`: HostKit's control plane behind the `hostkit` binary. The
//! [`store`] (embedded redb or etcd, one trait, one conformance suite), the object
//! semantics on top of it ([`objects`]: validation, generation, finalizers, server-side
//! apply), the API server ([`server`]), the controller [`runtime`] (watchers, typed cache,
//! queue, finalizers, backoff, leader election), and [`serve`], which wires them together
//! with the reconcilers.
//!
//! Where to start reading: [`serve::run`] shows every piece and how it connects. What each
//! kind means is not here but in `hostkit-reconcilers`; what happens on a host is in
//! `hostkit-engine`. The runtime knows nothing of files or systemd.

pub mod context;
pub mod error;
pub mod events;
pub mod install;
pub mod live_plans;
pub mod objects;
pub mod readiness;
pub mod runtime;
pub mod serve;
pub mod server;
pub mod store;

pub use error::{Error, Result};
