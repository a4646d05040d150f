//! `hkctl delete KIND NAME…` or `-f FILE`: delete, optionally wait for the finalizers
//! (a Service's files leave its hosts first), or orphan what it put on its hosts.

use hostkit_api::kinds::KindInfo;

use super::{client, kind_arg, out, timeout};
use crate::client::Client;
use crate::config::Overrides;
use crate::manifests::load;
use crate::output::kind_name;
use crate::progress::EventTail;
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Delete a Service: its hosts are cleaned up first (unit stopped, files removed)
  hkctl delete service/web --wait

  # Delete what a file declares
  hkctl delete -f web.yaml

  # Remove the object but leave its hosts as they are
  hkctl delete svc web --cascade=orphan")]
pub struct Args {
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    kind: Option<String>,
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::names_of_typed_kind))]
    names: Vec<String>,
    #[arg(short = 'f', long = "filename")]
    files: Vec<String>,
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Wait until the objects are gone (finalizers done).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "60s")]
    timeout: String,
    #[arg(long)]
    dry_run: bool,
    /// Treat "not found" as success.
    #[arg(long)]
    ignore_not_found: bool,
    /// `orphan` leaves what a Service put on its hosts as it is; `background` (the
    /// default) removes it before the object goes.
    #[arg(long, default_value = "background", value_parser = ["background", "orphan"])]
    cascade: String,
}

/// The objects the arguments name.
fn targets(args: &Args) -> Result<Vec<(&'static KindInfo, String)>> {
    let mut targets = Vec::new();
    if !args.files.is_empty() {
        let loaded = load(&args.files, args.recursive)?;
        for e in &loaded.errors {
            eprintln!("error: {e}");
        }
        // Last first, as an uninstall goes: a file lists what others depend on (a Project,
        // a Host) before its dependents, which then start going before what they need.
        for d in loaded.documents.iter().rev() {
            targets.push((d.object.info(), d.object.meta().name.clone()));
        }
        return Ok(targets);
    }
    let kind = args
        .kind
        .as_deref()
        .ok_or_else(|| Error::Usage("delete needs KIND NAME or -f FILE".into()))?;
    let (info, inline) = kind_arg(kind)?;
    let mut names = args.names.clone();
    names.extend(inline);
    if names.is_empty() {
        return Err(Error::Usage(format!(
            "delete needs at least one {} name",
            info.singular
        )));
    }
    targets.extend(names.into_iter().map(|n| (info, n)));
    Ok(targets)
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let targets = targets(args)?;
    let timeout = timeout(&args.timeout)?;
    let c = client(overrides)?;
    let orphan = args.cascade == "orphan";
    let mut failed = false;
    let mut pending = Vec::new();
    for (info, name) in &targets {
        let label = kind_name(info, name);
        // The cleanup's events (per host) are printed while --wait waits.
        let progress = match args.wait && !args.dry_run {
            true => Some(EventTail::start(&c, info, name).await?),
            false => None,
        };
        match c.delete(info, name, args.dry_run, orphan).await {
            Ok((_, true)) => out(&format!(
                "{label} deleted{}\n",
                if args.dry_run { " (dry run)" } else { "" }
            )),
            Ok((_, false)) => {
                out(&format!(
                    "{label} deletion requested (waiting for finalizers)\n"
                ));
                pending.push((*info, name.clone(), progress));
            }
            Err(e) if e.is_not_found() && args.ignore_not_found => {}
            Err(e @ Error::Unreachable { .. }) => return Err(e),
            Err(e) => {
                failed = true;
                eprintln!("error: {e}");
            }
        }
    }
    if args.wait && !args.dry_run {
        let deadline = tokio::time::Instant::now() + timeout;
        for (info, name, mut progress) in pending {
            if !gone(&c, info, &name, deadline, progress.as_mut()).await? {
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

/// Waits until the object is gone; false when the deadline passed first.
async fn gone(
    c: &Client,
    info: &'static KindInfo,
    name: &str,
    deadline: tokio::time::Instant,
    mut progress: Option<&mut EventTail>,
) -> Result<bool> {
    loop {
        if let Some(p) = progress.as_deref_mut() {
            p.print_new(c).await?;
        }
        match c.get(info, name).await {
            Err(e) if e.is_not_found() => {
                if let Some(p) = progress.as_deref_mut() {
                    p.print_new(c).await?;
                }
                out(&format!("{} deleted\n", kind_name(info, name)));
                return Ok(true);
            }
            Err(e) => return Err(e),
            Ok(_) if tokio::time::Instant::now() >= deadline => {
                eprintln!(
                    "error: timed out waiting for {} to be deleted",
                    kind_name(info, name)
                );
                return Ok(false);
            }
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}
