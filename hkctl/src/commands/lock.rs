//! `hkctl lock show|update host/NAME`: a Host's package lock (`status.packageLock`), and
//! the one way to move it. The update is an annotation the Host pass acts on once per
//! value: it asks the host for the newest version each spec allows and re-pins there; the
//! plans that follow install them (inside policy windows, like any change).

use std::time::Duration;

use hostkit_api::kinds::KindInfo;
use hostkit_api::wellknown;
use serde_json::Value;

use super::{client, out, target, timeout};
use crate::annotations::set_annotation;
use crate::config::Overrides;
use crate::output::kind_name;
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # The versions host/web-1 is locked to
  hkctl lock show host/web-1

  # Move the lock to the newest versions the specs allow, and wait for the answer
  hkctl lock update host/web-1 --wait")]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(clap::Subcommand)]
enum Verb {
    /// Print each locked package and its version.
    Show {
        /// host/NAME (or `host NAME`).
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
        target: String,
        name: Option<String>,
    },
    /// Re-resolve every locked package to the newest version its spec allows.
    Update {
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
        target: String,
        name: Option<String>,
        /// Wait for the Host pass to act on it and print what moved (exit 1: it failed).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "2m")]
        timeout: String,
    },
}

/// A Host's target and name, refusing other kinds.
fn host(text: &str, name: Option<&str>, verb: &str) -> Result<(&'static KindInfo, String)> {
    let (info, name) = target(text, name, verb)?;
    if info.kind != "Host" {
        return Err(Error::Usage(format!(
            "package locks belong to Hosts (host/NAME), not {}s",
            info.kind
        )));
    }
    Ok((info, name))
}

/// `NAME  VERSION` lines of the lock, or why there are none.
fn table(shown: &str, v: &Value) -> String {
    let packages = v
        .pointer("/status/packageLock/packages")
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty());
    let Some(packages) = packages else {
        return format!(
            "{shown}: no locked packages (a package is locked once a read sees it installed)\n"
        );
    };
    let width = packages.keys().map(String::len).max().unwrap_or(0).max(7);
    let mut text = format!("{:width$}  VERSION\n", "PACKAGE");
    for (name, version) in packages {
        text.push_str(&format!(
            "{name:width$}  {}\n",
            version.as_str().unwrap_or("")
        ));
    }
    text
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    match &args.verb {
        Verb::Show { target: t, name } => {
            let (info, name) = host(t, name.as_deref(), "lock show")?;
            let c = client(overrides)?;
            let v = c.get(info, &name).await?;
            out(&table(&kind_name(info, &name), &v));
            Ok(0)
        }
        Verb::Update {
            target: t,
            name,
            wait,
            timeout: limit,
        } => {
            let (info, name) = host(t, name.as_deref(), "lock update")?;
            let limit_text = limit;
            let limit = timeout(limit)?;
            let c = client(overrides)?;
            let shown = kind_name(info, &name);
            c.get(info, &name).await?;
            let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            set_annotation(&c, info, &name, wellknown::LOCK_UPDATE, Some(&stamp)).await?;
            if !wait {
                out(&format!("{shown}: lock update requested\n"));
                return Ok(0);
            }
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                let v = c.get(info, &name).await?;
                let lock = v.pointer("/status/packageLock");
                let handled = lock
                    .and_then(|l| l.get("updatedFor"))
                    .and_then(Value::as_str)
                    == Some(stamp.as_str());
                if handled {
                    let message = lock
                        .and_then(|l| l.get("message"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    out(&format!("{shown}: {message}\n"));
                    out(&table(&shown, &v));
                    return Ok(if message.starts_with("lock update failed") {
                        1
                    } else {
                        0
                    });
                }
                if tokio::time::Instant::now() >= deadline {
                    eprintln!(
                        "error: {shown}: the lock update was not acted on within {limit_text} (is the host reachable?)"
                    );
                    return Ok(1);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}
