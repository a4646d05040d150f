//! `hkctl create -f` and `hkctl replace -f`: the imperative writes. `create` fails on an
//! object that exists (where `apply` would update it); `replace` writes the whole object
//! over the stored one (it must exist; a `resourceVersion` in the manifest makes the write
//! fail if the object changed since), dropping labels and annotations the file does not have.

use super::{Files, client, out};
use crate::Result;
use crate::config::Overrides;
use crate::manifests::load;
use crate::output::kind_name;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Create the objects of a file; any that exists already is an error
  hkctl create -f web.yaml")]
pub struct CreateArgs {
    #[command(flatten)]
    manifests: Files,
    /// Validate on the server without storing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Write the whole object as the file has it
  hkctl replace -f web.yaml

  # Edit a copy and write it back, failing if someone changed it meanwhile
  hkctl get svc web -o yaml > web.yaml && $EDITOR web.yaml && hkctl replace -f web.yaml")]
pub struct ReplaceArgs {
    #[command(flatten)]
    manifests: Files,
}

pub async fn create(overrides: &Overrides, args: &CreateArgs) -> Result<u8> {
    write(
        overrides,
        &args.manifests,
        Verb::Create {
            dry_run: args.dry_run,
        },
    )
    .await
}

pub async fn replace(overrides: &Overrides, args: &ReplaceArgs) -> Result<u8> {
    write(overrides, &args.manifests, Verb::Replace).await
}

#[derive(Clone, Copy)]
enum Verb {
    Create { dry_run: bool },
    Replace,
}

async fn write(overrides: &Overrides, files: &Files, verb: Verb) -> Result<u8> {
    let loaded = load(&files.files, files.recursive)?;
    let mut failed = !loaded.errors.is_empty();
    for e in &loaded.errors {
        eprintln!("error: {e}");
    }
    let c = client(overrides)?;
    for d in &loaded.documents {
        let info = d.object.info();
        let name = d.object.meta().name.clone();
        let body = d.object.to_value();
        let result = match verb {
            Verb::Create { dry_run } => c.create_with(info, &body, dry_run).await.map(|_| {
                if dry_run {
                    "created (server dry run)"
                } else {
                    "created"
                }
            }),
            Verb::Replace => c.replace(info, &name, &body).await.map(|_| "replaced"),
        };
        match result {
            Ok(done) => out(&format!("{} {done}\n", kind_name(info, &name))),
            Err(e) if e.fails_every_document() => return Err(e),
            Err(e) => {
                failed = true;
                eprintln!("error: {}:{}: {} {e}", d.file, d.line, d.display_name());
            }
        }
    }
    Ok(u8::from(failed))
}
