//! `hkctl`: flags in, one command per verb (`hkctl::commands`), exit codes out.
//!
//! Exit codes: 0 success; 1 any failure (with the server's message on stderr).
//! `hkctl diff` and `hkctl plan` (as `hostkit plan`): 0 nothing would change, 1 something
//! would, 2 error.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use hkctl::Result;
use hkctl::commands::*;
use hkctl::config::Overrides;

#[derive(Parser)]
#[command(
    name = "hkctl",
    version,
    about = "Control HostKit: apply, get, describe, diff and delete objects",
    after_help = "Examples:
  # Apply manifests, then watch the Services converge
  hkctl apply -f manifests/examples/
  hkctl get svc -w

  # Why is it not Ready? Conditions per host, and its events
  hkctl describe service/web

  # Repair drift now, and roll back a bad release
  hkctl reconcile service/web --wait
  hkctl rollback service/web

  # Each verb has its own examples
  hkctl get --help"
)]
struct Cli {
    /// Config file (default: $HKCTL_CONFIG or ~/.config/hostkit/config.yaml).
    #[arg(long, global = true, env = "HKCTL_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// The config file's context to use (default: its currentContext).
    #[arg(long, global = true, env = "HKCTL_CONTEXT")]
    context: Option<String>,
    /// API server URL, e.g. http://127.0.0.1:7443.
    #[arg(long, global = true, env = "HKCTL_SERVER")]
    server: Option<String>,
    /// Bearer token.
    #[arg(long, global = true, env = "HKCTL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) for an HTTPS server.
    #[arg(long, global = true)]
    certificate_authority: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or update objects from manifests.
    Apply(apply::Args),
    /// List objects, or show some.
    Get(get::Args),
    /// Show an object's details, conditions and events.
    Describe(describe::Args),
    /// Delete objects by kind and name, or those in manifests.
    Delete(delete::Args),
    /// Show the live plan of a Service: what applying would change on its hosts now
    /// (exit 0: nothing, 1: changes, 2: error).
    Plan(plan::Args),
    /// List policy windows (open now, next transition) and whether each Service may apply.
    #[command(after_help = "Examples:\n  hkctl windows")]
    Windows,
    /// Sync a GitSource now (even when suspended), wait, and print the revision applied
    /// (exit 0: synced, 1: the sync failed).
    Sync(sync::Args),
    /// Print the journal of a Service's units on its hosts (read by the controller over SSH).
    Logs(logs::Args),
    /// Run a whole pass of a Service, Host or GitSource now; --wait prints how it ended.
    Reconcile(reconcile::Args),
    /// Wait until objects have a condition, or are gone.
    Wait(wait::Args),
    /// Let git apply an object again that a Rollback held back (KIND/NAME).
    Release(release::Args),
    /// Stop applying a Service or Host (it still plans), or syncing a GitSource.
    Suspend(suspend::SuspendArgs),
    /// Undo `hkctl suspend`.
    Resume(suspend::ResumeArgs),
    /// Edit an object in $EDITOR and write it back (reopened when the server refuses it).
    Edit(edit::Args),
    /// Change some fields of an object: a merge patch or a JSON patch.
    Patch(patch::Args),
    /// Set (`key=value`) or remove (`key-`) labels.
    Label(label::LabelArgs),
    /// Set (`key=value`) or remove (`key-`) annotations.
    Annotate(label::AnnotateArgs),
    /// Create objects from manifests; an object that exists is an error.
    Create(create::CreateArgs),
    /// Write whole objects from manifests over the stored ones.
    Replace(create::ReplaceArgs),
    /// List the kinds the server serves, with their short names.
    ApiResources(api_resources::Args),
    /// List the revisions of a Service or a Host: number, age, hosts, changes, source.
    History(history::Args),
    /// Roll a Service (or a Host's own resources) back by running the down plans of its
    /// newer revisions; waits and prints each host's result (exit 0: complete, 1: failed or
    /// still running).
    Rollback(rollback::Args),
    /// Follow a health-gated rollout (status [-w]), or go on after a pause (resume), or take
    /// it back (abort).
    Rollout(rollout::Args),
    /// Show a Host's package lock, or move it to the newest versions the specs allow.
    Lock(lock::Args),
    /// List, take or restore snapshots of a Service's storage (storage[].backup).
    Backup(backup::Args),
    /// Show what apply would change (exit 0: none, 1: differences, 2: error).
    Diff(diff::Args),
    /// Document a kind or one of its fields: `hkctl explain service.spec.daemon`.
    Explain(explain::Args),
    /// Show recent events.
    Events(events::Args),
    /// Show and change the config file's contexts (servers and tokens).
    Config(config::Args),
    /// Print client and server versions.
    #[command(after_help = "Examples:\n  hkctl version")]
    Version,
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  # bash, for this shell\n  source <(hkctl completion bash)\n\n  # zsh, for every shell\n  hkctl completion zsh > \"${fpath[1]}/_hkctl\""
    )]
    Completion { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    // `COMPLETE=bash hkctl` prints the shell's hook; the hook calls back here with the
    // words typed, and kinds and object names come back (see hkctl::completion).
    clap_complete::CompleteEnv::with_factory(Cli::command).complete();
    let cli = Cli::parse();
    let is_diff = matches!(cli.command, Command::Diff { .. } | Command::Plan { .. });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if is_diff { 2 } else { 1 })
        }
    }
}

async fn run(cli: Cli) -> Result<u8> {
    let o = Overrides {
        config: cli.config,
        context: cli.context,
        server: cli.server,
        token: cli.token,
        certificate_authority: cli.certificate_authority,
    };
    match &cli.command {
        Command::Apply(args) => apply::run(&o, args).await,
        Command::Get(args) => get::run(&o, args).await,
        Command::Describe(args) => describe::run(&o, args).await,
        Command::Delete(args) => delete::run(&o, args).await,
        Command::Plan(args) => plan::run(&o, args).await,
        Command::Windows => windows::run(&o).await,
        Command::Sync(args) => sync::run(&o, args).await,
        Command::Logs(args) => logs::run(&o, args).await,
        Command::Reconcile(args) => reconcile::run(&o, args).await,
        Command::Wait(args) => wait::run(&o, args).await,
        Command::Release(args) => release::run(&o, args).await,
        Command::Suspend(args) => suspend::suspend(&o, args).await,
        Command::Resume(args) => suspend::resume(&o, args).await,
        Command::Edit(args) => edit::run(&o, args).await,
        Command::Patch(args) => patch::run(&o, args).await,
        Command::Label(args) => label::label(&o, args).await,
        Command::Annotate(args) => label::annotate(&o, args).await,
        Command::Create(args) => create::create(&o, args).await,
        Command::Replace(args) => create::replace(&o, args).await,
        Command::ApiResources(args) => api_resources::run(&o, args).await,
        Command::History(args) => history::run(&o, args).await,
        Command::Rollback(args) => rollback::run(&o, args).await,
        Command::Rollout(args) => rollout::run(&o, args).await,
        Command::Lock(args) => lock::run(&o, args).await,
        Command::Backup(args) => backup::run(&o, args).await,
        Command::Diff(args) => diff::run(&o, args).await,
        Command::Explain(args) => explain::run(args),
        Command::Events(args) => events::run(&o, args).await,
        Command::Config(args) => config::run(&o, args),
        Command::Version => version::run(&o).await,
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "hkctl", &mut std::io::stdout());
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap checks flag names only when a command is parsed: this parses none, but checks
    /// every verb's (a verb whose flag clashes with a global one would panic in use).
    #[test]
    fn every_verb_has_flags_clap_accepts() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }

    /// `hkctl --help` and every verb's help show examples, as kubectl's do, and every
    /// example names a verb hkctl has.
    #[test]
    fn every_verb_has_examples_of_real_verbs() {
        let mut cmd = <super::Cli as clap::CommandFactory>::command();
        let verbs: Vec<String> = cmd
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        let mut missing = Vec::new();
        let mut check = |name: &str, help: String| {
            if !help.contains("Examples:") {
                missing.push(name.to_string());
            }
            for line in help
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("hkctl "))
            {
                // The first word that is neither a global flag nor its value.
                let mut words = line.split_whitespace().skip(1);
                let mut verb = "";
                while let Some(w) = words.next() {
                    if let Some(flag) = w.strip_prefix("--") {
                        if [
                            "context",
                            "server",
                            "token",
                            "config",
                            "certificate-authority",
                        ]
                        .contains(&flag)
                        {
                            words.next();
                        }
                        continue;
                    }
                    verb = w;
                    break;
                }
                assert!(
                    verbs.iter().any(|v| v == verb),
                    "{name}: example {line:?} has no verb"
                );
            }
        };
        check("hkctl", cmd.render_long_help().to_string());
        for sub in cmd.get_subcommands_mut() {
            let name = sub.get_name().to_string();
            if name == "help" {
                continue;
            }
            check(&name, sub.render_long_help().to_string());
        }
        assert!(missing.is_empty(), "verbs without examples: {missing:?}");
    }
}
