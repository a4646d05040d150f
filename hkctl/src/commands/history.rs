//! `hkctl history service/NAME` (or `host/NAME`): the revisions, newest last.

use hostkit_api::kinds::find_kind;

use super::{client, out};
use crate::Result;
use crate::config::Overrides;
use crate::rollout;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # A Service's revisions; * marks the one its hosts run
  hkctl history service/web
  hkctl history host/edge-1")]
pub struct Args {
    /// service/NAME (or NAME), or host/NAME.
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    target: String,
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let (kind, name) = rollout::target_of(&args.target)?;
    let c = client(overrides)?;
    let target = c.get(find_kind(kind).expect("a kind"), name).await?;
    let revs = rollout::revisions(&c, kind, name).await?;
    if revs.is_empty() {
        out(&format!(
            "{}/{name} has no revisions yet (nothing applied)\n",
            kind.to_lowercase()
        ));
    } else {
        out(&rollout::history_table(&target, &revs, chrono::Utc::now()));
    }
    Ok(0)
}
