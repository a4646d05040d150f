//! `hkctl describe KIND NAME`: spec, conditions and events.

use super::{client, events, kind_arg, out};
use crate::config::Overrides;
use crate::output;
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Spec, conditions per host, and this object's events
  hkctl describe service exograph
  hkctl describe host/edge-1")]
pub struct Args {
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    kind: String,
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::names_of_typed_kind))]
    name: Option<String>,
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let (info, inline) = kind_arg(&args.kind)?;
    let name =
        args.name.clone().or(inline).ok_or_else(|| {
            Error::Usage("describe needs a name: hkctl describe KIND NAME".into())
        })?;
    let c = client(overrides)?;
    let object = c.get(info, &name).await?;
    let uid = object.pointer("/metadata/uid").and_then(|u| u.as_str());
    let events = events::about(&c, info.kind, &name, uid).await?;
    out(&output::describe(
        info,
        &object,
        &events,
        chrono::Utc::now(),
    ));
    Ok(0)
}
