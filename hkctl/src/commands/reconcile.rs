//! `hkctl reconcile KIND/NAME [--wait]`: ask for a whole pass now (read the hosts, repair
//! drift, apply what is due) instead of at the next resync, as `flux reconcile` does.

use super::{client, out, target, timeout};
use crate::config::Overrides;
use crate::output::kind_name;
use crate::reconcile::{condition, handled, request};
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Repair a drifted Service now and print how the pass ended (exit 1 unless Ready)
  hkctl reconcile service/web --wait

  # Re-read a Host's facts and conditions now, without waiting
  hkctl reconcile host/edge-1")]
pub struct Args {
    /// service/NAME, host/NAME or gitsource/NAME (or KIND then NAME).
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    target: String,
    name: Option<String>,
    /// Wait for the pass to end and print its Ready condition (exit 0: Ready, 1: not).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "2m")]
    timeout: String,
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let (info, name) = target(&args.target, args.name.as_deref(), "reconcile")?;
    if !matches!(info.kind, "Service" | "Host" | "GitSource") {
        return Err(Error::Usage(format!(
            "{}s are not reconciled on request; Services, Hosts and GitSources are",
            info.kind
        )));
    }
    let limit = timeout(&args.timeout)?;
    let c = client(overrides)?;
    let shown = kind_name(info, &name);
    let started = std::time::Instant::now();
    let mut progress = match args.wait {
        true => Some(crate::progress::EventTail::start(&c, info, &name).await?),
        false => None,
    };
    let stamp = request(&c, info, &name).await?;
    if !args.wait {
        out(&format!("{shown}: reconcile requested\n"));
        return Ok(0);
    }
    let Some(object) = handled(&c, info, &name, &stamp, limit, progress.as_mut()).await? else {
        eprintln!(
            "error: {shown}: the controller has not finished a pass within {}; is it running?",
            args.timeout
        );
        return Ok(1);
    };
    let (status, reason, message) = condition(&object, "Ready").unwrap_or_else(|| {
        (
            "Unknown".into(),
            "NoCondition".into(),
            "the pass wrote no Ready condition".into(),
        )
    });
    out(&format!(
        "{shown} reconciled in {:.1}s: Ready={status} {reason}: {message}\n",
        started.elapsed().as_secs_f64()
    ));
    Ok(u8::from(status != "True"))
}
