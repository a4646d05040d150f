//! HostKit's object model: the `hostkit.dev/v1alpha1` kinds, Kubernetes-style metadata and
//! conditions, validation with field paths, server-side defaults, manifest parsing with
//! line-numbered errors, and JSON Schemas.
//!
//! This crate does no I/O, so the CLI, the controller and tests can all depend on it cheaply
//! and agree on exactly one definition of every field.
//!
//! Where to start reading: [`kinds`] (`Object<S>`, `KindSpec`, `AnyObject`, then one file per
//! kind), [`meta`] for metadata and conditions, [`manifest`] for how YAML becomes objects.
//! Not here: anything that talks to a host, the store or HTTP.

pub mod config;
pub mod decode;
pub mod error;
pub mod kinds;
pub mod manifest;
pub mod meta;
pub mod schema;
pub mod validate;
pub mod values;
pub mod wellknown;

pub use error::{DocumentError, Error, FieldError};
pub use kinds::{API_VERSION, AnyObject, KINDS, KindInfo, KindSpec, Object, find_kind};
pub use meta::{Condition, ConditionStatus, LabelSelector, ObjectMeta};

/// Largest object the API accepts, serialised as JSON (the same limit as etcd's default request).
pub const MAX_OBJECT_BYTES: usize = 1024 * 1024;
