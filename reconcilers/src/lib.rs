//! The host engine: turns a desired resource set into changes on a real host, knowing
//! nothing of the store, HTTP or the work queue.
//!
//! Today it holds the naming conventions every resource is derived from ([`naming`]);
//! expansion into resources, state reads, plans, apply, down plans and transports build on it.

pub mod naming;

/// Errors of the host engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `${…}` reference that the service does not define.
    #[error("Service/{service}: unknown reference ${{{reference}}}")]
    UnknownReference { service: String, reference: String },
}
