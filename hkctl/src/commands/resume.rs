//! `hkctl resume KIND/NAME`: let git apply an object again that a Rollback held back.

use super::{client, kind_arg, out};
use crate::config::Overrides;
use crate::output::kind_name;
use crate::{Error, Result};

#[derive(clap::Args)]
pub struct Args {
    /// KIND/NAME, e.g. service/web.
    target: String,
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let (info, name) = kind_arg(&args.target)?;
    let name =
        name.ok_or_else(|| Error::Usage("resume needs KIND/NAME, e.g. service/web".into()))?;
    let c = client(overrides)?;
    if crate::gitops::resume(&c, info, &name).await? {
        out(&format!(
            "{} resumed: its GitSource applies it at the next sync\n",
            kind_name(info, &name)
        ));
    } else {
        out(&format!("{} was not held\n", kind_name(info, &name)));
    }
    Ok(0)
}
