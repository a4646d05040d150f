//! `hkctl label` and `hkctl annotate`: set (`key=value`) and remove (`key-`) labels or
//! annotations with one merge patch, as kubectl does; changing a value that is already set
//! needs `--overwrite`, so a typo cannot silently move an object out of a selector.

use serde_json::{Map, Value, json};

use super::{client, out, target};
use crate::client::PatchType;
use crate::config::Overrides;
use crate::output::kind_name;
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Put a Host in the canary group
  hkctl label host/edge-1 tier=canary

  # Move it back (the value is already set, so --overwrite)
  hkctl label host edge-1 tier=stable --overwrite

  # Remove the label
  hkctl label host/edge-1 tier-")]
pub struct LabelArgs {
    #[command(flatten)]
    args: Args,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Say who owns a Service
  hkctl annotate service/web owner=team-search

  # Remove the annotation
  hkctl annotate svc/web owner-")]
pub struct AnnotateArgs {
    #[command(flatten)]
    args: Args,
}

#[derive(clap::Args)]
struct Args {
    /// KIND/NAME, or KIND then NAME.
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    target: String,
    /// `key=value` to set, `key-` to remove (after NAME when the kind stands alone).
    #[arg(required = true)]
    changes: Vec<String>,
    /// Replace a value that is already set.
    #[arg(long)]
    overwrite: bool,
    /// Show what would be stored without storing it.
    #[arg(long)]
    dry_run: bool,
}

pub async fn label(overrides: &Overrides, a: &LabelArgs) -> Result<u8> {
    run(overrides, &a.args, "labels", "labeled").await
}

pub async fn annotate(overrides: &Overrides, a: &AnnotateArgs) -> Result<u8> {
    run(overrides, &a.args, "annotations", "annotated").await
}

/// One change asked for: a value to set, or `None` to remove the key.
fn parse(change: &str) -> Result<(String, Option<String>)> {
    if let Some((k, v)) = change.split_once('=') {
        if k.is_empty() {
            return Err(Error::Usage(format!(
                "{change:?}: the key before = is empty"
            )));
        }
        return Ok((k.to_string(), Some(v.to_string())));
    }
    match change.strip_suffix('-') {
        Some(k) if !k.is_empty() => Ok((k.to_string(), None)),
        _ => Err(Error::Usage(format!(
            "{change:?} is neither key=value (set) nor key- (remove)"
        ))),
    }
}

async fn run(overrides: &Overrides, args: &Args, field: &str, done: &str) -> Result<u8> {
    let mut changes = args.changes.iter().map(String::as_str).collect::<Vec<_>>();
    // `hkctl label host edge-1 tier=x`: the first word after a bare kind is the name.
    let name = match args.target.contains('/') {
        true => None,
        false if !changes.is_empty() && !changes[0].contains('=') && !changes[0].ends_with('-') => {
            Some(changes.remove(0))
        }
        false => None,
    };
    let (info, name) = target(&args.target, name, "change")?;
    let changes = changes.into_iter().map(parse).collect::<Result<Vec<_>>>()?;
    if changes.is_empty() {
        return Err(Error::Usage(
            "nothing to change: give key=value or key-".into(),
        ));
    }
    let c = client(overrides)?;
    let object = c.get(info, &name).await?;
    let current = object
        .pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut patch = Map::new();
    for (key, value) in &changes {
        let old = current.get(key).and_then(Value::as_str);
        match value {
            Some(v) if old.is_some_and(|o| o != v) && !args.overwrite => {
                return Err(Error::Usage(format!(
                    "{}: {field} {key:?} is already {:?}; pass --overwrite to replace it",
                    kind_name(info, &name),
                    old.unwrap_or_default()
                )));
            }
            Some(v) if old != Some(v.as_str()) => {
                patch.insert(key.clone(), Value::String(v.clone()));
            }
            None if old.is_some() => {
                patch.insert(key.clone(), Value::Null);
            }
            _ => {}
        }
    }
    let suffix = if args.dry_run { " (dry run)" } else { "" };
    if patch.is_empty() {
        out(&format!("{} not {done}{suffix}\n", kind_name(info, &name)));
        return Ok(0);
    }
    let body = json!({"metadata": {field: patch}});
    c.patch(info, &name, PatchType::Merge, &body, args.dry_run)
        .await?;
    out(&format!("{} {done}{suffix}\n", kind_name(info, &name)));
    Ok(0)
}
