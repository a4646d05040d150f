//! One file per `hkctl` verb: each has its flags (`Args`) and a `run` that talks to the API
//! server through [`crate::client`] and prints through [`crate::output`]. `main.rs` only
//! parses and dispatches.

pub mod api_resources;
pub mod apply;
pub mod backup;
pub mod config;
pub mod create;
pub mod delete;
pub mod describe;
pub mod diff;
pub mod edit;
pub mod events;
pub mod explain;
pub mod get;
pub mod history;
pub mod label;
pub mod lock;
pub mod logs;
pub mod patch;
pub mod plan;
pub mod reconcile;
pub mod release;
pub mod rollback;
pub mod rollout;
pub mod suspend;
pub mod sync;
pub mod version;
pub mod wait;
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
    let info = find_kind(kind).ok_or_else(|| unknown_kind(kind))?;
    Ok((info, name))
}

/// The error for a kind hkctl does not know, with the nearest known spelling when one is
/// close (`svcs`, `Servce`), as kubectl's "did you mean".
fn unknown_kind(kind: &str) -> Error {
    let lower = kind.to_ascii_lowercase();
    let spellings = KINDS.iter().flat_map(|k| {
        [k.singular, k.plural]
            .into_iter()
            .chain(k.short_names.iter().copied())
            .map(move |s| (s, k))
    });
    let nearest = spellings
        .map(|(s, k)| (strsim::damerau_levenshtein(&lower, s), s, k))
        .filter(|(d, s, _)| *d <= 2 && *d < s.len())
        .min_by_key(|(d, _, _)| *d);
    let known = KINDS
        .iter()
        .map(|k| format!("{} ({})", k.plural, k.short_names.join(",")))
        .collect::<Vec<_>>()
        .join(", ");
    match nearest {
        Some((_, _, k)) => Error::Usage(format!(
            "unknown kind {kind:?}; did you mean {:?}? (known kinds: {known})",
            k.singular
        )),
        None => Error::Usage(format!("unknown kind {kind:?}; known kinds: {known}")),
    }
}

/// `KIND/NAME` or `KIND NAME`: the one object a verb acts on.
pub fn target(text: &str, name: Option<&str>, verb: &str) -> Result<(&'static KindInfo, String)> {
    let (info, from_text) = kind_arg(text)?;
    match (from_text.as_deref(), name) {
        (Some(n), None) | (None, Some(n)) if !n.is_empty() => Ok((info, n.to_string())),
        (Some(_), Some(extra)) => Err(Error::Usage(format!(
            "{verb} takes KIND/NAME or KIND NAME, not both ({text} {extra})"
        ))),
        _ => Err(Error::Usage(format!(
            "{verb} needs an object: KIND/NAME or KIND NAME, e.g. service/web"
        ))),
    }
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
