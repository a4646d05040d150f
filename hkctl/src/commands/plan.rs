//! `hkctl plan service/NAME`: what applying would change on the Service's hosts now
//! (exit 0: nothing, 2: changes).

use super::{client, out};
use crate::Result;
use crate::config::Overrides;

#[derive(clap::Args)]
pub struct Args {
    /// service/NAME (or NAME).
    target: String,
    /// Only this host.
    #[arg(long)]
    host: Option<String>,
    #[arg(short, long, default_value = "text", value_parser = ["text", "json"])]
    output: String,
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let target = &args.target;
    let name = target
        .strip_prefix("service/")
        .or_else(|| target.strip_prefix("svc/"))
        .unwrap_or(target);
    let v = client(overrides)?.plan(name, args.host.as_deref()).await?;
    if args.output == "json" {
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v["plans"]).unwrap_or_default()
        ));
    } else {
        out(v["text"].as_str().unwrap_or(""));
    }
    let empty = v["plans"].as_array().is_some_and(|ps| {
        ps.iter().all(|p| {
            p["changes"]
                .as_array()
                .is_some_and(|cs| cs.iter().all(|c| c["action"] == "noop"))
        })
    });
    Ok(if empty { 0 } else { 2 })
}
