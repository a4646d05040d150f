//! `hkctl edit KIND/NAME`: the object in `$EDITOR` (`$VISUAL`, else `vi`), written back
//! whole with its resourceVersion when the editor exits, as `kubectl edit` does: an error
//! (a field the server refuses, or someone else's write in between) reopens the file with
//! the error on top and your edits kept; an empty or unchanged file changes nothing.

use serde_json::Value;

use super::{client, out, target};
use crate::config::Overrides;
use crate::output::{kind_name, to_yaml};
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Edit a Service in $EDITOR
  hkctl edit service/web

  # With another editor for once
  EDITOR=nano hkctl edit host edge-1")]
pub struct Args {
    /// KIND/NAME, or KIND then NAME.
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    target: String,
    name: Option<String>,
}

const HEADER: &str = "# Edit the object below. Lines starting with '#' are ignored; an empty file\n# cancels the edit. If the server refuses it, this file opens again with the reason.\n#\n";

/// The object as the file shows it (status and server fields are shown but not written:
/// the server keeps its own).
fn file_text(object: &Value, error: Option<&str>) -> String {
    let mut text = String::from(HEADER);
    if let Some(e) = error {
        for line in e.lines() {
            text.push_str(&format!("# error: {line}\n"));
        }
        text.push_str("#\n");
    }
    text.push_str(&to_yaml(object));
    text
}

/// What the user left, without comment lines; `None` when nothing is left.
fn edited(text: &str) -> Option<String> {
    let kept: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    (!kept.trim().is_empty()).then_some(kept)
}

fn run_editor(path: &std::path::Path) -> Result<()> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    // The editor may carry arguments (`code --wait`): the shell splits it, the file is
    // passed as its own argument, never pasted into the command.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("hkctl-edit")
        .arg(path)
        .status()
        .map_err(|source| Error::Io {
            path: editor.clone(),
            source,
        })?;
    if !status.success() {
        return Err(Error::Usage(format!(
            "the editor ({editor}) exited with {status}; nothing was changed"
        )));
    }
    Ok(())
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let (info, name) = target(&args.target, args.name.as_deref(), "edit")?;
    let c = client(overrides)?;
    let original = c.get(info, &name).await?;
    let dir = tempfile::tempdir().map_err(|source| Error::Io {
        path: "a temp folder".into(),
        source,
    })?;
    let path = dir.path().join(format!("{}-{name}.yaml", info.singular));
    let write = |text: &str| {
        std::fs::write(&path, text).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })
    };
    write(&file_text(&original, None))?;
    let shown = kind_name(info, &name);
    // What was last refused: saved again unchanged, it ends the edit (as kubectl does)
    // rather than reopening the same refusal for ever.
    let mut refused: Option<(String, String)> = None;
    loop {
        run_editor(&path)?;
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let Some(body) = edited(&text) else {
            out("Edit cancelled, no changes made.\n");
            return Ok(0);
        };
        if let Some((last, why)) = &refused
            && *last == body
        {
            eprintln!("error: {why}");
            eprintln!("error: saved unchanged after the error: nothing was changed");
            return Ok(1);
        }
        let value: Value = match serde_saphyr::from_str(&body) {
            Ok(v) => v,
            Err(e) => {
                let why = format!("not YAML: {e}");
                eprintln!("error: {why} (the file opens again)");
                write(&format!("{HEADER}# error: {why}\n#\n{body}"))?;
                refused = Some((body, why));
                continue;
            }
        };
        if value == original {
            out("Edit cancelled, no changes made.\n");
            return Ok(0);
        }
        match c.replace(info, &name, &value).await {
            Ok(_) => {
                out(&format!("{shown} edited\n"));
                return Ok(0);
            }
            Err(
                e @ Error::Server {
                    code: 400 | 409 | 422,
                    ..
                },
            ) => {
                eprintln!("error: {e} (the file opens again)");
                let mut reopened = HEADER.to_string();
                for line in e.to_string().lines() {
                    reopened.push_str(&format!("# error: {line}\n"));
                }
                reopened.push_str("#\n");
                reopened.push_str(&body);
                write(&reopened)?;
                refused = Some((body, e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_dropped_and_an_empty_file_cancels() {
        let v = serde_json::json!({"kind": "Project", "metadata": {"name": "p"}});
        let text = file_text(&v, Some("spec.x: bad\nsecond line"));
        assert!(
            text.contains("# error: spec.x: bad\n# error: second line\n"),
            "{text}"
        );
        let body = edited(&text).unwrap();
        assert!(!body.contains('#'), "{body}");
        let back: Value = serde_saphyr::from_str(&body).unwrap();
        assert_eq!(back, v);
        assert_eq!(edited("# only\n#comments\n\n"), None);
    }
}
