//! `hkctl explain service.spec.daemon`: field docs from the JSON Schemas.

use super::{kind_arg, out};
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  hkctl explain service
  hkctl explain service.spec.daemon.isolate
  hkctl explain host.spec.ssh.hostKey")]
pub struct Args {
    /// A kind, or a kind and a field path: `service.spec.daemon.isolate`.
    path: String,
}

pub fn run(args: &Args) -> Result<u8> {
    let (kind, field) = match args.path.split_once('.') {
        Some((k, f)) => (k, f),
        None => (args.path.as_str(), ""),
    };
    let (info, _) = kind_arg(kind)?;
    out(&hostkit_api::schema::explain(info, field).map_err(Error::Usage)?);
    Ok(0)
}
