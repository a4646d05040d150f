//! The host engine: turns a desired resource set into changes on a real host, knowing
//! nothing of the store, HTTP or the work queue.
//!
//! The flow is the original HostKit's, made explicit and testable piece by piece:
//! [`expand`] turns a Service (with its Project's conventions, [`naming`]) into
//! [`resource::Resource`]s; [`render`] produces the file contents (systemd units, nftables,
//! Caddyfiles, env and config files) as pure functions; [`state`] reads every resource of a
//! host in one remote exec; [`plan`] diffs desired against current and orders the changes;
//! [`apply`] executes them over a [`transport::Transport`] and derives the down plan that
//! undoes them.

pub mod apply;
pub mod expand;
pub mod gitsource;
pub mod history;
pub mod host;
pub mod instance;
pub mod manifests;
pub mod naming;
pub mod packages;
pub mod plan;
pub mod render;
pub mod resource;
pub mod secrets;
pub mod service;
pub mod ssh;
pub mod state;
pub mod transport;
pub mod windows;

/// Errors of the host engine. Those a user can cause name the object and field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `${…}` reference that the service does not define.
    #[error("Service/{service}: unknown reference ${{{reference}}}")]
    UnknownReference { service: String, reference: String },
    /// A spec that cannot be expanded into resources.
    #[error("{object} {field}: {message}")]
    Invalid {
        object: String,
        field: String,
        message: String,
    },
    /// A secret reference whose value cannot be read on this machine.
    #[error("secret {reference}: {message}")]
    Secret { reference: String, message: String },
    /// The resource graph is not a DAG or names something that does not exist.
    #[error("resource graph: {0}")]
    Graph(String),
    /// Could not connect after every configured attempt.
    #[error("host {host} is unreachable after {attempts} attempt(s): {message}")]
    Unreachable {
        host: String,
        attempts: u32,
        message: String,
    },
    /// The host's key is not the one we expect: refused, never accepted silently.
    #[error("host {host}: host key refused: {message}")]
    HostKey { host: String, message: String },
    /// The server refused our credentials.
    #[error("host {host}: authentication as {user} failed: {message}")]
    Auth {
        host: String,
        user: String,
        message: String,
    },
    /// The connection broke or a command could not be sent.
    #[error("host {host}: {message}")]
    Transport { host: String, message: String },
    /// The state-read script itself failed (not one resource: those are `read_error` changes).
    #[error("host {host}: reading state failed: {message}")]
    Read { host: String, message: String },
    /// The host changed since the plan was made.
    #[error(
        "host {host}: the plan is stale; these resources changed since it was made: {}. Plan again.",
        changed.join(", ")
    )]
    StalePlan { host: String, changed: Vec<String> },
    /// A change failed; later changes were not attempted.
    #[error("{id}: {message}")]
    Apply { id: String, message: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
