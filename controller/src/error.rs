//! The controller crate's errors, and how each maps onto an API status.

use hostkit_api::FieldError;
use hostkit_api::meta::{ApiStatus, StatusDetails};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: String, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: String, name: String },
    #[error("{kind} {name:?} was changed by someone else ({detail}); get it again and retry")]
    Conflict {
        kind: String,
        name: String,
        detail: String,
    },
    #[error("{kind}/{name} is invalid: {}", causes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid {
        kind: String,
        name: String,
        causes: Vec<FieldError>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Gone(String),
    #[error("object is {0} bytes; objects may be at most 1 MiB")]
    TooLarge(usize),
    #[error("no valid bearer token: pass one with --token, HKCTL_TOKEN or the hkctl config file")]
    Unauthorized,
    #[error("user {user:?} may only read; writing needs an admin token")]
    Forbidden { user: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(String),
    /// The object may exist but this write is not something the API does (a spec that is
    /// immutable, a kind only the controller writes).
    #[error("{0}")]
    NotAllowed(String),
    /// A host (or another system the request needs) failed: the request was fine, and the
    /// store too.
    #[error("{0}")]
    Upstream(String),
    /// A reconcile that did not finish, with its cause and the object it happened to.
    #[error("{object}: {source}")]
    Reconcile {
        object: String,
        #[source]
        source: hostkit_reconcilers::Error,
    },
}

impl Error {
    /// The HTTP status code and the Kubernetes-style reason.
    pub fn code_and_reason(&self) -> (u16, &'static str) {
        match self {
            Error::NotFound { .. } => (404, "NotFound"),
            Error::AlreadyExists { .. } => (409, "AlreadyExists"),
            Error::Conflict { .. } => (409, "Conflict"),
            Error::Invalid { .. } => (422, "Invalid"),
            Error::BadRequest(_) => (400, "BadRequest"),
            Error::Gone(_) | Error::Store(StoreError::Compacted { .. }) => (410, "Expired"),
            Error::TooLarge(_) => (413, "RequestEntityTooLarge"),
            Error::Unauthorized => (401, "Unauthorized"),
            Error::Forbidden { .. } => (403, "Forbidden"),
            Error::NotAllowed(_) => (405, "MethodNotAllowed"),
            Error::Store(StoreError::Unavailable(_)) => (503, "ServiceUnavailable"),
            Error::Upstream(_) => (502, "BadGateway"),
            Error::Store(_) | Error::Config(_) | Error::Reconcile { .. } => (500, "InternalError"),
        }
    }

    /// True when retrying cannot help until the object changes.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Error::Reconcile { source, .. } if source.is_terminal())
    }

    /// The error as the body the API returns.
    pub fn to_status(&self) -> ApiStatus {
        let (code, reason) = self.code_and_reason();
        let details = match self {
            Error::NotFound { kind, name }
            | Error::AlreadyExists { kind, name }
            | Error::Conflict { kind, name, .. } => Some(StatusDetails {
                kind: Some(kind.clone()),
                name: Some(name.clone()),
                causes: vec![],
            }),
            Error::Invalid { kind, name, causes } => Some(StatusDetails {
                kind: Some(kind.clone()),
                name: Some(name.clone()),
                causes: causes.clone(),
            }),
            _ => None,
        };
        ApiStatus {
            kind: "Status".into(),
            status: "Failure".into(),
            message: self.to_string(),
            reason: reason.into(),
            code,
            details,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
