//! `hkctl patch KIND/NAME -p PATCH [--type merge|json]`: change some fields of a stored
//! object without writing the whole of it; the server patches the object as stored now.

use super::{client, out, target};
use crate::client::PatchType;
use crate::config::Overrides;
use crate::output::kind_name;
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Pause a Service (plans only, applies nothing)
  hkctl patch service/web -p '{\"spec\":{\"paused\":true}}'

  # The same as YAML
  hkctl patch svc web -p 'spec: {paused: true}'

  # A JSON patch: fails unless the field has the value the test expects
  hkctl patch svc/web --type json -p '[{\"op\":\"test\",\"path\":\"/spec/paused\",\"value\":true},{\"op\":\"replace\",\"path\":\"/spec/paused\",\"value\":false}]'")]
pub struct Args {
    /// KIND/NAME, or KIND then NAME.
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    target: String,
    name: Option<String>,
    /// The patch, JSON or YAML.
    #[arg(short, long)]
    patch: String,
    /// merge: a JSON merge patch (RFC 7386); json: a list of operations (RFC 6902).
    #[arg(long = "type", value_enum, default_value = "merge")]
    patch_type: PatchType,
    /// Show the result without storing it.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let (info, name) = target(&args.target, args.name.as_deref(), "patch")?;
    let body: serde_json::Value = serde_saphyr::from_str(&args.patch)
        .map_err(|e| Error::Usage(format!("--patch is not JSON or YAML: {e}")))?;
    let c = client(overrides)?;
    let before = c.get(info, &name).await?;
    let after = c
        .patch(info, &name, args.patch_type, &body, args.dry_run)
        .await?;
    let what = if before == after {
        "patched (no change)"
    } else {
        "patched"
    };
    let suffix = if args.dry_run { " (dry run)" } else { "" };
    out(&format!("{} {what}{suffix}\n", kind_name(info, &name)));
    Ok(0)
}
