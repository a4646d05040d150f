//! `hkctl rollout status|resume|abort service/NAME`: where a health-gated rollout stands
//! (`status.rollout`), and the two things an operator tells it, as `kubectl rollout` and
//! Argo Rollouts' `promote`/`abort` do. Resume and abort are annotations the Service pass
//! acts on once per value.

use std::time::Duration;

use hostkit_api::kinds::KindInfo;
use hostkit_api::wellknown;
use serde_json::Value;

use super::{client, out, target, timeout};
use crate::annotations::set_annotation;
use crate::client::Client;
use crate::config::Overrides;
use crate::output::kind_name;
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Where the rollout of service/web stands
  hkctl rollout status service/web

  # Follow it until it completes (exit 0), pauses or is rolled back (exit 1)
  hkctl rollout status service/web -w

  # Go on after a pause, once the unhealthy wave is fixed
  hkctl rollout resume service/web

  # Take back every host the rollout changed
  hkctl rollout abort service/web")]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(clap::Subcommand)]
enum Verb {
    /// Print the rollout's phase, wave and hosts done; -w follows it to the end.
    Status {
        /// service/NAME (or `service NAME`).
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
        target: String,
        name: Option<String>,
        /// Print a line at each change until the rollout completes, pauses or is rolled
        /// back.
        #[arg(short = 'w', long)]
        watch: bool,
        /// How long -w follows it.
        #[arg(long, default_value = "10m")]
        timeout: String,
    },
    /// Let a Paused rollout go on.
    Resume {
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
        target: String,
        name: Option<String>,
    },
    /// Run the down plans of every host the rollout changed, and stop it.
    Abort {
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
        target: String,
        name: Option<String>,
    },
}

/// A Service's target and name, refusing other kinds.
fn service(text: &str, name: Option<&str>, verb: &str) -> Result<(&'static KindInfo, String)> {
    let (info, name) = target(text, name, verb)?;
    if info.kind != "Service" {
        return Err(Error::Usage(format!(
            "{}s have no rollout; Services do (service/NAME)",
            info.kind
        )));
    }
    Ok((info, name))
}

/// One line of where the rollout stands, or why there is none.
fn line(shown: &str, v: &Value) -> (String, Option<String>) {
    let Some(r) = v.pointer("/status/rollout") else {
        return (
            format!(
                "{shown}: no health-gated rollout (no canary, healthyFor or monitors): every wave goes in one pass\n"
            ),
            None,
        );
    };
    let text = |p: &str| {
        r.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let num = |p: &str| r.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let done: Vec<&str> = r
        .pointer("/hostsDone")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let phase = text("/phase");
    (
        format!(
            "{shown}: {phase} (generation {}), wave {} of {}, hosts done: {}: {}\n",
            num("/generation"),
            num("/wave"),
            num("/waves"),
            if done.is_empty() {
                "none".to_string()
            } else {
                done.join(", ")
            },
            text("/message")
        ),
        Some(phase),
    )
}

async fn phase_of(c: &Client, info: &KindInfo, name: &str) -> Result<(Value, Option<String>)> {
    let v = c.get(info, name).await?;
    let phase = v
        .pointer("/status/rollout/phase")
        .and_then(Value::as_str)
        .map(String::from);
    Ok((v, phase))
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    match &args.verb {
        Verb::Status {
            target: t,
            name,
            watch,
            timeout: limit,
        } => {
            let (info, name) = service(t, name.as_deref(), "rollout status")?;
            let limit_text = limit;
            let limit = timeout(limit)?;
            let c = client(overrides)?;
            let shown = kind_name(info, &name);
            let deadline = tokio::time::Instant::now() + limit;
            let mut last = String::new();
            loop {
                let (v, _) = phase_of(&c, info, &name).await?;
                let (text, phase) = line(&shown, &v);
                if text != last {
                    out(&text);
                    last = text;
                }
                // Only the rollout of the spec as it is now counts as ended, and a resume or
                // abort asked for but not yet acted on is still to come.
                let asked = |key: &str, seen: &str| {
                    let annotation = v
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(key))
                        .and_then(Value::as_str);
                    annotation.is_some() && annotation != v.pointer(seen).and_then(Value::as_str)
                };
                let current = v.pointer("/status/rollout/generation")
                    == v.pointer("/metadata/generation")
                    && !asked(wellknown::ROLLOUT_RESUME, "/status/rollout/resumed")
                    && !asked(wellknown::ROLLOUT_ABORT, "/status/rollout/aborted");
                match phase.as_deref() {
                    _ if !watch => return Ok(0),
                    None => return Ok(0),
                    Some("Complete") if current => return Ok(0),
                    Some("Paused" | "RolledBack") if current => return Ok(1),
                    _ => {}
                }
                if tokio::time::Instant::now() >= deadline {
                    eprintln!("error: {shown}: the rollout did not end within {limit_text}");
                    return Ok(1);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Verb::Resume { target: t, name } => {
            let (info, name) = service(t, name.as_deref(), "rollout resume")?;
            let c = client(overrides)?;
            let shown = kind_name(info, &name);
            let (_, phase) = phase_of(&c, info, &name).await?;
            if phase.as_deref() != Some("Paused") {
                return Err(Error::Usage(format!(
                    "{shown}: the rollout is not paused (phase {})",
                    phase.as_deref().unwrap_or("none")
                )));
            }
            let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            set_annotation(&c, info, &name, wellknown::ROLLOUT_RESUME, Some(&stamp)).await?;
            out(&format!("{shown}: rollout resumed\n"));
            Ok(0)
        }
        Verb::Abort { target: t, name } => {
            let (info, name) = service(t, name.as_deref(), "rollout abort")?;
            let c = client(overrides)?;
            let shown = kind_name(info, &name);
            let (_, phase) = phase_of(&c, info, &name).await?;
            if !matches!(phase.as_deref(), Some("Progressing" | "Paused")) {
                return Err(Error::Usage(format!(
                    "{shown}: no rollout to abort (phase {})",
                    phase.as_deref().unwrap_or("none")
                )));
            }
            let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            set_annotation(&c, info, &name, wellknown::ROLLOUT_ABORT, Some(&stamp)).await?;
            out(&format!(
                "{shown}: rollout abort requested; the hosts it changed are being taken back\n"
            ));
            Ok(0)
        }
    }
}
