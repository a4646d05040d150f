//! `hkctl backup list|run|restore service/NAME --storage S`: a Service's storage
//! snapshots, read and taken by the controller on its hosts. A restore is shown first and
//! needs a yes (or `--yes`); what it replaced is snapshotted, and the printed command
//! puts it back.

use std::io::{BufRead, IsTerminal, Write};

use serde_json::Value;

use super::{client, out, target};
use crate::config::Overrides;
use crate::output::kind_name;
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # The snapshots of service/web's storage data on each of its hosts
  hkctl backup list service/web --storage data

  # Take one now
  hkctl backup run service/web --storage data

  # Put one back on host web-1 (shows the steps, asks first)
  hkctl backup restore service/web --storage data --host web-1 --id 20261201T231500Z-123456789")]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(clap::Args)]
struct Which {
    /// service/NAME (or `service NAME`).
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    target: String,
    name: Option<String>,
    /// The storage (its `name` in the Service's spec).
    #[arg(long)]
    storage: String,
    /// Only this host.
    #[arg(long)]
    host: Option<String>,
}

#[derive(clap::Subcommand)]
enum Verb {
    /// List each host's snapshots, newest first.
    List(Which),
    /// Take a snapshot now on each host (the backup job, as its timer would).
    Run(Which),
    /// Restore a snapshot on one host; what it replaces is snapshotted first.
    Restore {
        #[command(flatten)]
        which: Which,
        /// The snapshot (from `hkctl backup list`).
        #[arg(long)]
        id: String,
        /// Restore without asking.
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

fn service(w: &Which, verb: &str) -> Result<String> {
    let (info, name) = target(&w.target, w.name.as_deref(), verb)?;
    if info.kind != "Service" {
        return Err(Error::Usage(format!(
            "backups belong to a Service's storage (service/NAME), not {}s",
            info.kind
        )));
    }
    Ok(name)
}

fn query(w: &Which) -> Vec<(&'static str, String)> {
    let mut q = vec![("storage", w.storage.clone())];
    if let Some(h) = &w.host {
        q.push(("host", h.clone()));
    }
    q
}

/// `HOST  STORAGE  SNAPSHOT  BYTES  SHA256` rows of a BackupList.
fn table(list: &Value) -> String {
    let mut rows = vec![[
        "HOST".to_string(),
        "STORAGE".into(),
        "SNAPSHOT".into(),
        "BYTES".into(),
        "SHA256".into(),
    ]];
    for item in list["items"].as_array().into_iter().flatten() {
        let s = |k: &str| item[k].as_str().unwrap_or("").to_string();
        let snaps = item["snapshots"].as_array().cloned().unwrap_or_default();
        if snaps.is_empty() {
            rows.push([
                s("host"),
                s("storage"),
                "(none yet)".into(),
                String::new(),
                String::new(),
            ]);
        }
        for snap in snaps {
            let sha = snap["sha256"].as_str().unwrap_or("");
            rows.push([
                s("host"),
                s("storage"),
                snap["id"].as_str().unwrap_or("").to_string(),
                snap["bytes"].as_u64().unwrap_or(0).to_string(),
                sha.chars().take(12).collect(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:w$}"))
                .collect();
            format!("{}\n", line.join("   ").trim_end())
        })
        .collect()
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    match &args.verb {
        Verb::List(w) => {
            let name = service(w, "backup list")?;
            let c = client(overrides)?;
            out(&table(&c.backups(&name, &query(w)).await?));
            Ok(0)
        }
        Verb::Run(w) => {
            let name = service(w, "backup run")?;
            let c = client(overrides)?;
            let mut q = query(w);
            q.push(("op", "run".into()));
            out(&table(&c.backup_action(&name, &q).await?));
            Ok(0)
        }
        Verb::Restore { which: w, id, yes } => {
            let name = service(w, "backup restore")?;
            let c = client(overrides)?;
            let shown = kind_name(&hostkit_api::kinds::SERVICE_INFO, &name);
            let mut q = query(w);
            q.push(("restore", id.clone()));
            let plan = c.backups(&name, &q).await?;
            let host = plan["host"].as_str().unwrap_or("").to_string();
            let mut text = format!("Restore of {shown} storage {} on host {host}:\n", w.storage);
            for (i, step) in plan["steps"].as_array().into_iter().flatten().enumerate() {
                text.push_str(&format!("  {}. {}\n", i + 1, step.as_str().unwrap_or("")));
            }
            out(&text);
            if !yes {
                if !std::io::stdin().is_terminal() {
                    return Err(Error::Usage(
                        "not restoring: confirm on a terminal, or pass --yes".into(),
                    ));
                }
                eprint!("Restore? [y/N] ");
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer).ok();
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    out("not restored\n");
                    return Ok(1);
                }
            }
            let mut q = query(w);
            q.retain(|(k, _)| *k != "host");
            q.push(("host", host.clone()));
            q.push(("op", "restore".into()));
            q.push(("id", id.clone()));
            let done = c.backup_action(&name, &q).await?;
            let undo = done["undo"].as_str().unwrap_or("");
            out(&format!(
                "{shown}: restored {id} on {host}; to undo: hkctl backup restore {} --storage {} --host {host} --id {undo}\n",
                shown, w.storage
            ));
            Ok(0)
        }
    }
}
