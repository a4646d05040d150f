//! HostKit's control plane: the store (embedded or etcd), the API server, and the
//! controller runtime behind the `hostkit` binary.

pub mod store;
