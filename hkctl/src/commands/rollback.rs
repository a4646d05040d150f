//! `hkctl rollback service/NAME`: create a Rollback, wait, and print each host's result
//! (exit 0: complete, 1: failed or still running).

use super::{client, out, timeout};
use crate::Result;
use crate::config::Overrides;
use crate::rollout;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Back to the previous revision, waiting for each host
  hkctl rollback service/web

  # Back to revision 3, even inside a deny window, with a reason
  hkctl rollback svc/web --to-revision 3 --force --reason \"bad config in 4\"

  # Only one file of the newest revision
  hkctl rollback service/web --only file:/etc/web/runtime.env")]
pub struct Args {
    /// service/NAME (or NAME), or host/NAME.
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    target: String,
    /// The revision to go back to (default: the previous one).
    #[arg(long)]
    to_revision: Option<u64>,
    /// Only these resource ids, e.g. file:/etc/web/runtime.env (repeat for more).
    #[arg(long = "only", value_name = "ID")]
    only: Vec<String>,
    /// Run even while a policy window denies changes.
    #[arg(long)]
    force: bool,
    /// Why, recorded on the Rollback.
    #[arg(long)]
    reason: Option<String>,
    /// Create it and return at once.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait.
    #[arg(long, default_value = "10m")]
    timeout: String,
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let (kind, name) = rollout::target_of(&args.target)?;
    let timeout = timeout(&args.timeout)?;
    let c = client(overrides)?;
    let request = rollout::Request {
        kind,
        name,
        to_revision: args.to_revision,
        only: &args.only,
        force: args.force,
        reason: args.reason.as_deref(),
    };
    let rb = rollout::create(&c, &request, chrono::Utc::now()).await?;
    out(&format!("rollback/{rb} created\n"));
    if args.no_wait {
        return Ok(0);
    }
    let done = rollout::follow(&c, &rb, timeout, out).await?;
    Ok(if done { 0 } else { 1 })
}
