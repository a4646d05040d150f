//! `hkctl sync gitsource/NAME`: sync now (even when suspended), wait, print the revision
//! applied (exit 0: synced, 1: the sync failed).

use super::{client, out, timeout};
use crate::config::Overrides;
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Sync a GitSource now and print the commit applied
  hkctl sync gitsource/infra --timeout 1m")]
pub struct Args {
    /// gitsource/NAME (or gs/NAME, or NAME).
    target: String,
    /// How long to wait.
    #[arg(long, default_value = "2m")]
    timeout: String,
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let name = match args.target.split_once('/') {
        Some(("gitsource" | "gitsources" | "gs", n)) => n,
        Some((k, _)) => {
            return Err(Error::Usage(format!(
                "{k:?}: only GitSources sync (gitsource/NAME)"
            )));
        }
        None => args.target.as_str(),
    };
    let timeout = timeout(&args.timeout)?;
    let c = client(overrides)?;
    let synced = crate::gitops::sync(&c, name, timeout).await?;
    if synced.ok {
        out(&format!("gitsource/{name} synced: {}\n", synced.message));
        Ok(0)
    } else {
        eprintln!("error: gitsource/{name}: {}", synced.message);
        Ok(1)
    }
}
