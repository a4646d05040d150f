//! `hkctl suspend` and `hkctl resume`: stop and restart a Service's or Host's applies
//! (`spec.paused`: it still plans and reports drift) or a GitSource's syncs
//! (`spec.suspend`), as `flux suspend`/`flux resume` do.

use hostkit_api::kinds::KindInfo;
use hostkit_api::wellknown;
use serde_json::{Value, json};

use super::{client, out, target};
use crate::client::PatchType;
use crate::config::Overrides;
use crate::output::kind_name;
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Stop applying to a Service's hosts (it still plans and reports drift)
  hkctl suspend service/web

  # Stop syncing a GitSource
  hkctl suspend gitsource/toys")]
pub struct SuspendArgs {
    #[command(flatten)]
    args: Args,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:
  hkctl resume service/web
  hkctl resume gs/toys")]
pub struct ResumeArgs {
    #[command(flatten)]
    args: Args,
}

#[derive(clap::Args)]
struct Args {
    /// service/NAME, host/NAME or gitsource/NAME (or KIND then NAME).
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    target: String,
    name: Option<String>,
}

/// The spec field that suspends a kind, and what it stops.
fn field_of(kind: &KindInfo) -> Result<(&'static str, &'static str)> {
    match kind.kind {
        "Service" | "Host" => Ok(("paused", "plans only, applies nothing")),
        "GitSource" => Ok(("suspend", "does not sync")),
        other => Err(Error::Usage(format!(
            "{other}s cannot be suspended; Services, Hosts and GitSources can"
        ))),
    }
}

pub async fn suspend(overrides: &Overrides, a: &SuspendArgs) -> Result<u8> {
    run(overrides, &a.args, true).await
}

pub async fn resume(overrides: &Overrides, a: &ResumeArgs) -> Result<u8> {
    run(overrides, &a.args, false).await
}

async fn run(overrides: &Overrides, args: &Args, suspend: bool) -> Result<u8> {
    let verb = if suspend { "suspend" } else { "resume" };
    let (info, name) = target(&args.target, args.name.as_deref(), verb)?;
    let (field, effect) = field_of(info)?;
    let c = client(overrides)?;
    let object = c.get(info, &name).await?;
    let shown = kind_name(info, &name);
    let now = object
        .pointer(&format!("/spec/{field}"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if now == suspend {
        let state = if suspend {
            "suspended"
        } else {
            "not suspended"
        };
        out(&format!("{shown} was already {state}\n"));
        return Ok(0);
    }
    c.patch(
        info,
        &name,
        PatchType::Merge,
        &json!({"spec": {field: suspend}}),
        false,
    )
    .await?;
    if suspend {
        out(&format!("{shown} suspended (spec.{field}: {effect})\n"));
    } else {
        out(&format!("{shown} resumed\n"));
    }
    if let Some(gs) = object
        .pointer(&format!(
            "/metadata/labels/{}",
            wellknown::GITSOURCE.replace('/', "~1")
        ))
        .and_then(Value::as_str)
    {
        eprintln!(
            "note: gitsource/{gs} applies {shown}; when its manifest changes in git, git's \
             spec.{field} wins (suspend the GitSource to stop that)"
        );
    }
    Ok(0)
}
