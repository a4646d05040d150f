//! `hkctl diff -f`: what apply would change, as unified diffs of the server's dry-run
//! merge (exit 0: none, 1: differences, 2: error).

use super::{Files, client, out};
use crate::config::Overrides;
use crate::manifests::load;
use crate::output;
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # What applying would change, as unified diffs (exit 0: none, 1: some, 2: error)
  hkctl diff -f manifests/examples/")]
pub struct Args {
    #[command(flatten)]
    manifests: Files,
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let loaded = load(&args.manifests.files, args.manifests.recursive)?;
    if let Some(e) = loaded.errors.first() {
        for e in &loaded.errors {
            eprintln!("error: {e}");
        }
        return Err(Error::Usage(format!(
            "{} invalid document(s); nothing compared (first: {}:{})",
            loaded.errors.len(),
            e.file,
            e.line
        )));
    }
    let c = client(overrides)?;
    let mut differs = false;
    for d in &loaded.documents {
        let info = d.object.info();
        let name = d.object.meta().name.clone();
        let live = match c.get(info, &name).await {
            Ok(v) => Some(v),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let (merged, _) = c.apply(info, &name, &d.object.to_value(), true).await?;
        let text = output::unified_diff(&output::kind_name(info, &name), live.as_ref(), &merged);
        if !text.is_empty() {
            differs = true;
            out(&text);
        }
    }
    Ok(u8::from(differs))
}
