//! `hkctl wait KIND/NAME… --for=condition=TYPE[=STATUS] | --for=delete`: block until every
//! object is there, as kubectl wait. A condition counts only when it is about the object's
//! current generation, so `apply` then `wait` never passes on the previous spec's Ready.

use std::time::Duration;

use hostkit_api::kinds::KindInfo;
use serde_json::Value;

use super::{client, kind_arg, out, timeout};
use crate::client::Client;
use crate::config::Overrides;
use crate::output::kind_name;
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # After an apply, wait until the new spec is Ready on every host
  hkctl apply -f web.yaml && hkctl wait service/web --for=condition=Ready --timeout=5m

  # Wait for a condition to be False
  hkctl wait svc/web --for=condition=Drifted=False

  # Wait until a deletion has cleaned up the hosts and the object is gone
  hkctl delete svc/web && hkctl wait svc/web --for=delete")]
pub struct Args {
    /// KIND/NAME…, or KIND then NAMEs.
    #[arg(required = true, add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    targets: Vec<String>,
    /// `condition=TYPE` (status True), `condition=TYPE=STATUS`, or `delete`.
    #[arg(long = "for")]
    for_: String,
    /// How long to wait for all of them.
    #[arg(long, default_value = "30s")]
    timeout: String,
}

/// What "there" means.
#[derive(Debug, PartialEq)]
enum Wanted {
    Condition { type_: String, status: String },
    Deleted,
}

fn parse_for(text: &str) -> Result<Wanted> {
    if text == "delete" {
        return Ok(Wanted::Deleted);
    }
    let usage = || {
        Error::Usage(format!(
            "--for={text:?}: use condition=TYPE, condition=TYPE=True|False|Unknown or delete"
        ))
    };
    let rest = text.strip_prefix("condition=").ok_or_else(usage)?;
    let (type_, status) = match rest.split_once('=') {
        Some((t, s)) => (t, s),
        None => (rest, "True"),
    };
    let status = match status.to_ascii_lowercase().as_str() {
        "true" => "True",
        "false" => "False",
        "unknown" => "Unknown",
        _ => return Err(usage()),
    };
    if type_.is_empty() {
        return Err(usage());
    }
    Ok(Wanted::Condition {
        type_: type_.to_string(),
        status: status.to_string(),
    })
}

/// The objects to wait for.
fn targets(args: &[String]) -> Result<Vec<(&'static KindInfo, String)>> {
    let (first, names) = args.split_first().expect("clap requires one");
    let (info, name) = kind_arg(first)?;
    let mut all: Vec<(&'static KindInfo, String)> = name.into_iter().map(|n| (info, n)).collect();
    for a in names {
        if a.contains('/') {
            let (i, n) = kind_arg(a)?;
            all.push((i, n.unwrap_or_default()));
        } else {
            all.push((info, a.clone()));
        }
    }
    if all.is_empty() || all.iter().any(|(_, n)| n.is_empty()) {
        return Err(Error::Usage(
            "wait needs objects: KIND/NAME…, or KIND NAME…".into(),
        ));
    }
    Ok(all)
}

/// Whether `object` (`None`: not found) is as wanted, and if not, what it is now.
fn met(object: Option<&Value>, wanted: &Wanted) -> (bool, String) {
    match (wanted, object) {
        (Wanted::Deleted, None) => (true, "deleted".into()),
        (Wanted::Deleted, Some(_)) => (false, "still exists".into()),
        (Wanted::Condition { .. }, None) => (false, "not found".into()),
        (Wanted::Condition { type_, status }, Some(v)) => {
            let generation = v.pointer("/metadata/generation").and_then(Value::as_i64);
            let found = v
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == type_.as_str()));
            let Some(c) = found else {
                return (false, format!("no {type_} condition yet"));
            };
            let about = c.get("observedGeneration").and_then(Value::as_i64);
            if about.is_some() && generation.is_some() && about < generation {
                return (
                    false,
                    format!(
                        "{type_} is about generation {}, not {}",
                        about.unwrap_or_default(),
                        generation.unwrap_or_default()
                    ),
                );
            }
            let now = c["status"].as_str().unwrap_or("");
            (
                now == status,
                format!(
                    "{type_}={now} {}: {}",
                    c["reason"].as_str().unwrap_or(""),
                    c["message"].as_str().unwrap_or("")
                ),
            )
        }
    }
}

async fn read(c: &Client, info: &KindInfo, name: &str) -> Result<Option<Value>> {
    match c.get(info, name).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let wanted = parse_for(&args.for_)?;
    let all = targets(&args.targets)?;
    let limit = timeout(&args.timeout)?;
    let c = client(overrides)?;
    let deadline = tokio::time::Instant::now() + limit;
    let mut pending: Vec<(&'static KindInfo, String, String)> = all
        .into_iter()
        .map(|(i, n)| (i, n, String::new()))
        .collect();
    loop {
        let mut left = Vec::new();
        for (info, name, _) in pending {
            let (ok, now) = met(read(&c, info, &name).await?.as_ref(), &wanted);
            let shown = kind_name(info, &name);
            if ok {
                match wanted {
                    Wanted::Deleted => out(&format!("{shown} deleted\n")),
                    Wanted::Condition { .. } => out(&format!("{shown} condition met\n")),
                }
            } else {
                left.push((info, name, now));
            }
        }
        if left.is_empty() {
            return Ok(0);
        }
        if tokio::time::Instant::now() >= deadline {
            for (info, name, now) in &left {
                eprintln!(
                    "error: timed out after {} waiting for {} on {}: {now}",
                    args.timeout,
                    args.for_,
                    kind_name(info, name)
                );
            }
            return Ok(1);
        }
        pending = left;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn for_reads_conditions_with_a_status_or_delete() {
        assert_eq!(parse_for("delete").unwrap(), Wanted::Deleted);
        assert_eq!(
            parse_for("condition=Ready").unwrap(),
            Wanted::Condition {
                type_: "Ready".into(),
                status: "True".into()
            }
        );
        assert_eq!(
            parse_for("condition=Drifted=false").unwrap(),
            Wanted::Condition {
                type_: "Drifted".into(),
                status: "False".into()
            }
        );
        for bad in [
            "ready",
            "condition=",
            "condition=Ready=maybe",
            "jsonpath={.x}",
        ] {
            assert!(parse_for(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_condition_about_an_older_generation_does_not_count() {
        let ready = |about: i64| {
            json!({"metadata": {"generation": 3}, "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "Converged", "message": "ok",
                 "observedGeneration": about}]}})
        };
        let wanted = parse_for("condition=Ready").unwrap();
        let (ok, why) = met(Some(&ready(2)), &wanted);
        assert!(!ok && why.contains("generation 2, not 3"), "{why}");
        assert!(met(Some(&ready(3)), &wanted).0);
        assert!(!met(None, &wanted).0);
        assert!(met(None, &Wanted::Deleted).0);
    }
}
