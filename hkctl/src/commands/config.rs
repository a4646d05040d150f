//! `hkctl config get-contexts|current-context|use-context|set-context|delete-context|view`:
//! edit the config file's contexts, as `kubectl config` edits a kubeconfig. Tokens are never
//! printed.

use hostkit_api::config::{ConfigFile, Context};

use super::out;
use crate::config::{Overrides, path, read, write};
use crate::output::render_table;
use crate::{Error, Result};

#[derive(clap::Subcommand)]
pub enum Verb {
    /// List the contexts; `*` marks the current one.
    GetContexts,
    /// Print the current context's name.
    CurrentContext,
    /// Make a context the current one.
    UseContext { name: String },
    /// Add a context, or change the fields given of an existing one.
    SetContext(SetContext),
    /// Remove a context.
    DeleteContext { name: String },
    /// Print the config file, tokens redacted.
    View,
}

/// The context's server, token and CA are the global `--server`, `--token` and
/// `--certificate-authority` given with it.
#[derive(clap::Args)]
pub struct SetContext {
    name: String,
    /// Also make it the current context.
    #[arg(long)]
    current: bool,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # A second server, then switch to it
  hkctl config set-context prod --server https://hostkit.prod:7443 --token \"$TOKEN\" --certificate-authority ca.pem
  hkctl config use-context prod

  # One command against another context
  hkctl --context local get svc

  hkctl config get-contexts")]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

pub fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let file_path = path(overrides)?;
    let mut file = read(&file_path)?.unwrap_or_default();
    match &args.verb {
        Verb::GetContexts => {
            let rows: Vec<Vec<String>> = file
                .contexts
                .iter()
                .map(|c| {
                    let mark = if file.current_context.as_deref() == Some(c.name.as_str()) {
                        "*"
                    } else {
                        ""
                    };
                    vec![mark.to_string(), c.name.clone(), c.server.clone()]
                })
                .collect();
            if rows.is_empty() {
                eprintln!(
                    "No contexts in {} (the top-level server is {}).",
                    file_path.display(),
                    if file.server.is_empty() {
                        "not set"
                    } else {
                        &file.server
                    }
                );
                return Ok(0);
            }
            let headers = ["CURRENT", "NAME", "SERVER"].map(String::from);
            out(&render_table(Some(&headers), &rows, &mut Vec::new()));
        }
        Verb::CurrentContext => match &file.current_context {
            Some(c) => out(&format!("{c}\n")),
            None => {
                eprintln!("error: no current context is set");
                return Ok(1);
            }
        },
        Verb::UseContext { name } => {
            known(&file, name)?;
            file.current_context = Some(name.clone());
            write(&file_path, &file)?;
            out(&format!("Switched to context {name:?}.\n"));
        }
        Verb::SetContext(s) => {
            let server_url = &overrides.server;
            let bearer = &overrides.token;
            let ca = &overrides.certificate_authority;
            let existing = file.contexts.iter_mut().find(|c| c.name == s.name);
            let created = existing.is_none();
            match existing {
                Some(c) => {
                    if let Some(v) = server_url {
                        c.server = v.clone();
                    }
                    if let Some(v) = bearer {
                        c.token = Some(v.clone());
                    }
                    if let Some(v) = ca {
                        c.certificate_authority = Some(v.clone());
                    }
                }
                None => {
                    let server = server_url.clone().ok_or_else(|| {
                        Error::Usage(format!(
                            "a new context needs --server (context {:?} does not exist yet)",
                            s.name
                        ))
                    })?;
                    file.contexts.push(Context {
                        name: s.name.clone(),
                        server,
                        token: bearer.clone(),
                        certificate_authority: ca.clone(),
                    });
                }
            }
            if s.current {
                file.current_context = Some(s.name.clone());
            }
            write(&file_path, &file)?;
            let what = if created { "created" } else { "modified" };
            out(&format!("Context {:?} {what}.\n", s.name));
        }
        Verb::DeleteContext { name } => {
            known(&file, name)?;
            file.contexts.retain(|c| &c.name != name);
            if file.current_context.as_deref() == Some(name.as_str()) {
                file.current_context = None;
            }
            write(&file_path, &file)?;
            out(&format!("Deleted context {name:?}.\n"));
        }
        Verb::View => {
            let mut shown = file.clone();
            let redact = |t: &mut Option<String>| {
                if t.is_some() {
                    *t = Some("REDACTED".into());
                }
            };
            redact(&mut shown.token);
            for c in &mut shown.contexts {
                redact(&mut c.token);
            }
            out(&crate::output::to_yaml(
                &serde_json::to_value(&shown).unwrap_or_default(),
            ));
        }
    }
    Ok(0)
}

fn known(file: &ConfigFile, name: &str) -> Result<()> {
    if file.contexts.iter().any(|c| c.name == name) {
        return Ok(());
    }
    let names: Vec<&str> = file.contexts.iter().map(|c| c.name.as_str()).collect();
    Err(Error::Usage(format!(
        "no context {name:?}; known: {}",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    )))
}
