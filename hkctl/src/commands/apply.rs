//! `hkctl apply -f`: server-side apply of every document, up to 16 at once, results in
//! manifest order; a bad document is reported with its file and line and the rest go ahead.

use futures::StreamExt;

use super::{Files, client, out};
use crate::Result;
use crate::config::Overrides;
use crate::manifests::load;
use crate::output::kind_name;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DryRun {
    None,
    Client,
    Server,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Create or update every object in a folder (server-side apply)
  hkctl apply -f manifests/examples/

  # Check on the server what would be stored, storing nothing
  hkctl apply -f web.yaml --dry-run=server

  # From standard input
  cat web.yaml | hkctl apply -f -

  # Apply and follow each Service's hosts until the new generation is Ready
  hkctl apply -f web.yaml --wait --timeout 10m")]
pub struct Args {
    #[command(flatten)]
    manifests: Files,
    /// Validate only: locally (client) or on the server without storing (server).
    #[arg(long, value_enum, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    dry_run: DryRun,
    /// Then follow each Service and Host until its new generation is Ready, a line per
    /// host step (exit 1 when one fails or the time runs out).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits for each object.
    #[arg(long, default_value = "5m")]
    timeout: String,
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let loaded = load(&args.manifests.files, args.manifests.recursive)?;
    let mut failed = !loaded.errors.is_empty();
    for e in &loaded.errors {
        eprintln!("error: {e}");
    }
    if args.dry_run == DryRun::Client {
        for d in &loaded.documents {
            out(&format!(
                "{} validated (dry run)\n",
                kind_name(d.object.info(), &d.object.meta().name)
            ));
        }
        return Ok(u8::from(failed));
    }
    let c = client(overrides)?;
    let server_dry_run = args.dry_run == DryRun::Server;
    // Up to 16 requests in flight, results printed in manifest order.
    let results = futures::stream::iter(loaded.documents.iter().map(|d| {
        let c = c.clone();
        async move {
            let info = d.object.info();
            let name = d.object.meta().name.clone();
            let result = c
                .apply(info, &name, &d.object.to_value(), server_dry_run)
                .await;
            (d, info, name, result)
        }
    }))
    .buffered(16)
    .collect::<Vec<_>>()
    .await;
    let mut written = Vec::new();
    for (d, info, name, result) in results {
        match result {
            Ok((object, outcome)) => {
                if args.wait && !server_dry_run && matches!(info.kind, "Service" | "Host") {
                    let generation = object
                        .pointer("/metadata/generation")
                        .and_then(serde_json::Value::as_i64)
                        .unwrap_or(1);
                    written.push((info, name.clone(), generation));
                }
                let suffix = if server_dry_run {
                    " (server dry run)"
                } else {
                    ""
                };
                out(&format!("{} {outcome}{suffix}\n", kind_name(info, &name)));
            }
            Err(e) if e.fails_every_document() => return Err(e),
            Err(e) => {
                failed = true;
                eprintln!("error: {}:{}: {} {e}", d.file, d.line, d.display_name());
            }
        }
    }
    if !written.is_empty() {
        let limit = super::timeout(&args.timeout)?;
        for (info, name, generation) in written {
            if !crate::converge::follow(&c, info, &name, generation, limit).await? {
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}
