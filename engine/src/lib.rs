//! `hostkit-engine`: the host engine. It turns a desired resource set into changes on a
//! real host and knows nothing of the store, HTTP or the work queue: give it resources and
//! a [`transport::Transport`], get back a plan or an apply result. Everything here can be
//! tested against a real host with no controller running.
//!
//! Where to start reading: [`expand`] turns a Service (with its Project's conventions,
//! [`naming`]) into [`resource::Resource`]s; [`render`] produces file contents (systemd
//! units, nftables, Caddyfiles, env and config files) as pure functions; [`state`] reads
//! every resource of a host in one remote exec; [`plan`] diffs desired against current and
//! orders the changes; [`apply`] executes them (shell snippets in [`scripts`], batched by
//! [`batch`], each step written ahead to the host's [`journal`]) and derives the [`down`]
//! plan that undoes them; [`run`] is what history keeps of one apply, settling one a crash
//! interrupted, and undoing it. [`hosts`] holds the connections and per-host apply locks
//! ([`transport`]: SSH, the local shell, a recording fake).
//!
//! Also here, because they are the engine's other inputs and outputs: [`secrets`] (values
//! resolved at apply time, never stored), [`packages`] (semantic package names), [`git`]
//! (fetching a GitSource's manifests), [`release`] (application code from git, built on
//! the host), [`instance`] (machines behind an Instance), and
//! [`offline`] (`hostkit plan/apply/down` without a server).
//!
//! Not here: what a kind *means* to the controller (`hostkit-reconcilers`), the store, the
//! API server and the queue (`hostkit-controller`).

pub mod apply;
pub mod backup;
pub mod batch;
pub mod down;
pub mod expand;
pub mod git;
pub mod hosts;
pub mod instance;
pub mod journal;
pub mod monitor;
pub mod naming;
pub mod offline;
pub mod outcome;
pub mod packages;
pub mod plan;
pub mod release;
pub mod render;
pub mod resource;
pub mod run;
pub mod scripts;
pub mod secrets;
pub mod state;
pub mod timings;
pub mod transport;

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
    /// A file given to an offline command cannot be read, or is not what it should be.
    #[error("{path} {message}")]
    Input { path: String, message: String },
    /// Manifests that do not validate; each message names file, line, object and field.
    #[error("{} invalid document(s); nothing was planned", .0.len())]
    Manifests(Vec<String>),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
