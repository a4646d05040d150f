//! `hkctl logs service/NAME`: the journal of the Service's units (daemon and jobs), read by
//! the controller over its SSH access to the hosts, so the client needs no SSH credentials;
//! several hosts merged as their lines come, each prefixed `[host]`.

use std::io::Write;

use futures::StreamExt;

use super::{client, target};
use crate::config::Overrides;
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # The last 100 lines of every host's units
  hkctl logs service/web

  # Follow one host, from an hour ago
  hkctl logs svc/web --host edge-1 -f --since 1h

  # One job's unit, its last 20 lines
  hkctl logs service/web --unit sweep --tail 20")]
pub struct Args {
    /// service/NAME (or service NAME).
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    target: String,
    name: Option<String>,
    /// Only this host.
    #[arg(long)]
    host: Option<String>,
    /// Keep printing new lines until interrupted.
    #[arg(short, long)]
    follow: bool,
    /// Only lines newer than this, e.g. 10m or 1h.
    #[arg(long)]
    since: Option<String>,
    /// The last N lines of each host.
    #[arg(long, default_value_t = 100)]
    tail: u32,
    /// One unit: its name or one of the Service's job names.
    #[arg(long)]
    unit: Option<String>,
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let (info, name) = target(&args.target, args.name.as_deref(), "logs")?;
    if info.kind != "Service" {
        return Err(Error::Usage(format!(
            "logs are read for Services (service/NAME), not {}s",
            info.kind
        )));
    }
    if let Some(s) = &args.since {
        hostkit_api::values::Duration::parse_std(s)
            .map_err(|e| Error::Usage(format!("--since: {e}")))?;
    }
    let mut query = vec![
        ("tail", args.tail.to_string()),
        ("follow", args.follow.to_string()),
    ];
    for (k, v) in [
        ("host", &args.host),
        ("since", &args.since),
        ("unit", &args.unit),
    ] {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    let c = client(overrides)?;
    let mut stream = Box::pin(c.logs(&name, &query).await?);
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if stdout
            .write_all(&chunk)
            .and_then(|_| stdout.flush())
            .is_err()
        {
            break; // `hkctl logs … | head`
        }
    }
    Ok(0)
}
