//! Machines an `Instance` owns, behind one [`Backend`] trait: `read` what exists,
//! `ensure` it exists and answers over SSH, `destroy` it.
//!
//! [`Nspawn`] runs a machine as a booted `systemd-nspawn` container on the controller's
//! own machine, in its own network namespace reached over a veth pair (a /30 from
//! 10.232.0.0/16), with a generated SSH key bound in as root's `authorized_keys`.
//! Ephemeral machines boot the registered image read-only with a throwaway overlay;
//! persistent ones get their own copy of it, which survives a restart. The container is
//! started in its own process group, so a controller restart does not take it down; its pid,
//! its init's pid and its network live in `<state>/<name>/machine.json`, which is how `read`
//! finds it again and how a container whose nspawn was killed is ended before a restart.
//!
//! [`Forward`] is a port forward from the controller's loopback into a machine (`expose`).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::{Error, Result};

mod forward;
mod nspawn;
mod process;

pub use forward::Forward;
pub use nspawn::{ExitHook, Nspawn};

/// A machine as the backend sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// The address the controller reaches it at.
    pub address: String,
    pub ssh_port: u16,
    /// The private key root accepts.
    pub identity_file: PathBuf,
    /// The machine's ed25519 host key (`ssh-ed25519 AAAA…`), when the image has one.
    pub host_key: Option<String>,
    pub running: bool,
}

/// What an Instance asks of its backend.
#[derive(Clone, Debug)]
pub struct Request {
    pub name: String,
    pub image: String,
    pub persistent: bool,
    /// `backend.options`, passed through.
    pub options: BTreeMap<String, serde_json::Value>,
}

#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// The machine of `name`, if one exists.
    async fn read(&self, name: &str) -> Result<Option<Machine>>;
    /// Creates the machine if missing, starts it if stopped, and waits until it answers.
    async fn ensure(&self, request: &Request) -> Result<Machine>;
    /// Stops the machine and removes everything it had.
    async fn destroy(&self, name: &str) -> Result<()>;
}

fn invalid(object: &str, field: &str, message: String) -> Error {
    Error::Invalid {
        object: object.into(),
        field: field.into(),
        message,
    }
}

fn io(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Transport {
        host: "localhost".into(),
        message: format!("{what}: {e}"),
    }
}
