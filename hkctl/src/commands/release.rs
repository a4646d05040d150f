//! `hkctl release KIND/NAME`: let git apply an object again that a Rollback held back
//! (the `hostkit.dev/git-hold` annotation).

use super::{client, out, target};
use crate::Result;
use crate::config::Overrides;
use crate::output::kind_name;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # After `hkctl rollback service/web`, let its GitSource apply git's version again
  hkctl release service/web")]
pub struct Args {
    /// KIND/NAME, e.g. service/web.
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    target: String,
    name: Option<String>,
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let (info, name) = target(&args.target, args.name.as_deref(), "release")?;
    let c = client(overrides)?;
    if crate::gitops::release(&c, info, &name).await? {
        out(&format!(
            "{} released: its GitSource applies it at the next sync\n",
            kind_name(info, &name)
        ));
    } else {
        out(&format!("{} was not held\n", kind_name(info, &name)));
    }
    Ok(0)
}
