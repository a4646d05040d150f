//! The api crate's errors.

use std::fmt;

/// One problem with one field of an object.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    /// Dotted path from the object root, e.g. `spec.daemon.restart` or `spec.storage[1].mode`.
    pub field: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// A problem with one document of a manifest file, located by file and line.
///
/// Displayed the way an operator wants to read it:
/// `toys.yaml:41: Service/exograph spec.daemon.restart: "sometimes" is not one of no, …`
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct DocumentError {
    pub file: String,
    pub line: usize,
    /// `Kind/name` when the document got far enough to tell.
    pub object: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        match (&self.object, &self.field) {
            (Some(o), Some(field)) => write!(f, "{o} {field}: ")?,
            (Some(o), None) => write!(f, "{o}: ")?,
            (None, Some(field)) => write!(f, "{field}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

/// Errors of the api crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object failed validation; every problem is listed.
    #[error("{object} is invalid: {}", .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid {
        object: String,
        errors: Vec<FieldError>,
    },
    /// A document of a manifest could not be used.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// A schema could not be written.
    #[error("writing schemas to {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
