//! hkctl: a kubectl-like client of the HostKit API server.
//!
//! Where to start reading: [`commands`] has one file per verb (`hkctl apply` is
//! `commands/apply.rs`); the binary only parses flags, dispatches and maps errors to exit
//! codes. The verbs share: where the server is ([`config`]), talking to it ([`client`]),
//! reading manifests ([`manifests`]), printing objects ([`output`]), a Service's history and
//! rollbacks ([`rollout`]), and GitOps sources ([`gitops`]). hkctl never talks to the
//! store: only to the API server.

pub mod annotations;
pub mod client;
pub mod commands;
pub mod completion;
pub mod config;
pub mod converge;
pub mod gitops;
pub mod manifests;
pub mod output;
pub mod progress;
pub mod reconcile;
pub mod reflector;
pub mod rollout;

/// Errors hkctl reports; the server's own message is kept verbatim.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("cannot reach the HostKit API server at {server}: {message}")]
    Unreachable { server: String, message: String },
    /// The server answered with an error status.
    #[error("{message}")]
    Server {
        code: u16,
        reason: String,
        message: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl Error {
    /// True for a 404 from the server.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Server { code: 404, .. })
    }

    /// Unreachable, unauthenticated or read-only: a verb writing many documents stops at
    /// the first such error, since every other document would fail the same way.
    pub fn fails_every_document(&self) -> bool {
        matches!(
            self,
            Error::Unreachable { .. }
                | Error::Server {
                    code: 401 | 403,
                    ..
                }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
