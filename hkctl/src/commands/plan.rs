//! `hkctl plan service/NAME` and `hkctl plan -f FILE|DIR`: what applying the stored Service,
//! or a proposed one that is not stored (a pull request's), would change on its hosts now,
//! and what of that a Rollback could undo. Exit 0: nothing would change, 1: something
//! would, 2: error — as `hkctl diff` and `hostkit plan`.

use serde_json::Value;

use super::{client, out};
use crate::config::Overrides;
use crate::manifests::load;
use crate::output::kind_name;
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # What applying the stored Service would change now
  hkctl plan service/web

  # A proposed manifest, not stored: its per-host changes and what a rollback could undo
  hkctl plan -f services/web.yaml
  hkctl plan -f services/ -R --host edge-1")]
pub struct Args {
    /// service/NAME (or NAME); without -f.
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    target: Option<String>,
    /// Files or folders of proposed manifests (their Services are planned, not stored).
    #[arg(short = 'f', long = "filename", conflicts_with = "target")]
    files: Vec<String>,
    /// Also read sub-folders of -f.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Only this host.
    #[arg(long)]
    host: Option<String>,
    #[arg(short, long, default_value = "text", value_parser = ["text", "json"])]
    output: String,
}

/// True when a plan list changes nothing.
fn empty(v: &Value) -> bool {
    v["plans"].as_array().is_some_and(|ps| {
        ps.iter().all(|p| {
            p["changes"]
                .as_array()
                .is_some_and(|cs| cs.iter().all(|c| c["action"] == "noop"))
        })
    })
}

/// One line per host: what its down plan could undo.
fn coverage_text(v: &Value) -> String {
    let mut text = String::new();
    for c in v["coverage"].as_array().into_iter().flatten() {
        let skipped = c["skipped"].as_array().cloned().unwrap_or_default();
        text.push_str(&format!(
            "Down plan on {}: {} step(s) undo, {} need nothing, {} cannot be undone",
            c["host"].as_str().unwrap_or(""),
            c["reversible"],
            c["noop"],
            skipped.len()
        ));
        for s in &skipped {
            text.push_str(&format!(
                "\n  ! {}: {}",
                s["id"].as_str().unwrap_or(""),
                s["warning"].as_str().unwrap_or("")
            ));
        }
        text.push('\n');
    }
    text
}

fn show(v: &Value, json: bool) {
    if json {
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({
                "plans": v["plans"], "coverage": v["coverage"]
            }))
            .unwrap_or_default()
        ));
    } else {
        out(v["text"].as_str().unwrap_or(""));
        out(&coverage_text(v));
    }
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let json = args.output == "json";
    let c = client(overrides)?;
    if args.files.is_empty() {
        let target = args.target.as_deref().ok_or_else(|| {
            Error::Usage("plan needs service/NAME or -f FILE (a proposed manifest)".into())
        })?;
        let name = target
            .strip_prefix("service/")
            .or_else(|| target.strip_prefix("svc/"))
            .unwrap_or(target);
        let v = c.plan(name, args.host.as_deref()).await?;
        show(&v, json);
        return Ok(u8::from(!empty(&v)));
    }
    let loaded = load(&args.files, args.recursive)?;
    if let Some(e) = loaded.errors.first() {
        for e in &loaded.errors {
            eprintln!("error: {e}");
        }
        return Err(Error::Usage(format!(
            "{} invalid document(s); nothing planned (first: {}:{})",
            loaded.errors.len(),
            e.file,
            e.line
        )));
    }
    let mut changes = false;
    let mut planned = 0;
    for d in &loaded.documents {
        let info = d.object.info();
        let name = d.object.meta().name.clone();
        if info.kind != "Service" {
            eprintln!(
                "note: {} is not planned (only Services are; apply it to see its effect)",
                kind_name(info, &name)
            );
            continue;
        }
        let v = c
            .plan_proposed(&name, &d.object.to_value(), args.host.as_deref())
            .await
            .map_err(|e| {
                Error::Usage(format!("{}:{}: {} {e}", d.file, d.line, d.display_name()))
            })?;
        planned += 1;
        changes |= !empty(&v);
        show(&v, json);
    }
    if planned == 0 {
        return Err(Error::Usage("the files hold no Service to plan".into()));
    }
    Ok(u8::from(changes))
}
