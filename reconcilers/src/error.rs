//! Why a reconcile did not finish, and whether trying again can help.

/// The reconcilers' one error type. The runtime keeps it with the object it happened to
/// (kube-runtime's `ReconcilerFailed(err, ObjectRef)`); [`Error::is_terminal`] says whether
/// to back off and retry or to wait for the spec to change (controller-runtime's
/// `TerminalError`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: String, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: String, name: String },
    #[error("{kind} {name:?} was changed by someone else ({detail})")]
    Conflict {
        kind: String,
        name: String,
        detail: String,
    },
    /// A spec that cannot work as written (a window's schedule, an image that does not
    /// exist), naming the object and field.
    #[error("{object} {field}: {message}")]
    Invalid {
        object: String,
        field: String,
        message: String,
    },
    /// The store failed, or refused a write for a reason other than the ones above.
    #[error("store: {0}")]
    Store(String),
    /// A host could not be reached, read or changed; an image could not boot; a git
    /// remote did not answer.
    #[error(transparent)]
    Engine(#[from] hostkit_engine::Error),
    /// A stored object that does not decode as its kind (written by another version).
    #[error("{kind}/{name} does not decode: {message}")]
    Decode {
        kind: String,
        name: String,
        message: String,
    },
    /// The spec cannot work as it is; the reconciler has said so in `Stalled=True`, and
    /// retrying will not help until the spec changes.
    #[error("{0}")]
    Stalled(String),
    /// Work that did not finish (a host that failed, something still going): retried with
    /// backoff.
    #[error("{0}")]
    Retry(String),
}

impl Error {
    /// True when retrying cannot help until the object changes.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Error::Stalled(_) | Error::Decode { .. } | Error::Invalid { .. }
        )
    }

    /// True when the request (the object as written) is at fault, not a host or the store.
    pub fn is_bad_request(&self) -> bool {
        use hostkit_engine::Error as Engine;
        match self {
            Error::Decode { .. } | Error::Invalid { .. } | Error::Stalled(_) => true,
            Error::Engine(e) => {
                matches!(e, Engine::Invalid { .. } | Engine::UnknownReference { .. })
            }
            _ => false,
        }
    }

    /// True for a store 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
