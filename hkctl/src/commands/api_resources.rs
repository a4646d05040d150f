//! `hkctl api-resources`: the kinds the server serves, with their short names.

use serde_json::Value;

use super::{client, out};
use crate::config::Overrides;
use crate::output::render_table;
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  hkctl api-resources
  hkctl api-resources -o name")]
pub struct Args {
    /// `name`: only the resource names.
    #[arg(short, long)]
    output: Option<String>,
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let c = client(overrides)?;
    let list = c.discovery().await?;
    let version = list
        .get("groupVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let resources = list
        .get("resources")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Protocol("discovery without resources".into()))?;
    let text = |r: &Value, f: &str| r.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    match args.output.as_deref() {
        Some("name") => {
            for r in resources {
                out(&format!("{}\n", text(r, "name")));
            }
        }
        Some(other) => {
            return Err(Error::Usage(format!(
                "-o {other:?}: only -o name is supported"
            )));
        }
        None => {
            let rows: Vec<Vec<String>> = resources
                .iter()
                .map(|r| {
                    let short = r
                        .get("shortNames")
                        .and_then(Value::as_array)
                        .map(|s| {
                            s.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default();
                    vec![text(r, "name"), short, version.clone(), text(r, "kind")]
                })
                .collect();
            let headers = ["NAME", "SHORTNAMES", "APIVERSION", "KIND"].map(String::from);
            out(&render_table(Some(&headers), &rows, &mut Vec::new()));
        }
    }
    Ok(0)
}
