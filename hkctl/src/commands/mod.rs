//! One file per `hkctl` verb: each has its flags (`Args`) and a `run` that talks to the API
//! server through [`crate::client`] and prints through [`crate::output`]. `main.rs` only
//! parses and dispatches.

pub mod apply;
pub mod delete;
pub mod describe;
pub mod diff;
pub mod events;
pub mod explain;
pub mod get;
pub mod history;
pub mod plan;
pub mod resume;
pub mod rollback;
pub mod sync;
pub mod version;
pub mod windows;

use std::io::Write;

use hostkit_api::kinds::{KINDS, KindInfo, find_kind};

use crate::client::Client;
use crate::config::{Overrides, resolve};
use crate::{Error, Result};

/// `-f FILE… [-R]`: the manifests a verb reads.
#[derive(clap::Args)]
pub struct Files {
    /// Files or folders; `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Also read sub-folders.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

/// `service`, `svc/web`, `services`: a kind and maybe a name.
pub fn kind_arg(text: &str) -> Result<(&'static KindInfo, Option<String>)> {
    let (kind, name) = match text.split_once('/') {
        Some((k, n)) => (k, Some(n.to_string())),
        None => (text, None),
    };
    let info = find_kind(kind).ok_or_else(|| {
        Error::Usage(format!(
            "unknown kind {kind:?}; known kinds: {}",
            KINDS
                .iter()
                .map(|k| format!("{} ({})", k.plural, k.short_names.join(",")))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    Ok((info, name))
}

/// A client for the server the flags, environment or config file name.
pub fn client(overrides: &Overrides) -> Result<Client> {
    Client::new(&resolve(overrides)?)
}

/// Writes to stdout; a closed pipe (`hkctl get … | head`) is not an error worth a message.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// A `--timeout` flag's value.
pub fn timeout(text: &str) -> Result<std::time::Duration> {
    hostkit_api::values::Duration::parse_std(text).map_err(Error::Usage)
}
