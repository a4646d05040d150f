//! HostKit's control plane: the store (embedded or etcd), the object semantics on top of
//! it, the API server, and the controller runtime behind the `hostkit` binary.

pub mod controllers;
pub mod error;
pub mod events;
pub mod leader;
pub mod objects;
pub mod runtime;
pub mod serve;
pub mod server;
pub mod store;
pub mod watcher;

pub use error::{Error, Result};
