//! `hkctl`: flags in, library calls, exit codes out.
//!
//! Exit codes: 0 success; 1 any failure (with the server's message on stderr).
//! `hkctl diff`: 0 no differences, 1 differences, 2 error.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use futures::StreamExt;
use hkctl::client::{Client, ListOptions};
use hkctl::config::{Overrides, resolve};
use hkctl::manifests::load;
use hkctl::output::{self, Format};
use hkctl::{Error, Result};
use hostkit_api::kinds::{KINDS, KindInfo, find_kind};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "hkctl",
    version,
    about = "Control HostKit: apply, get, describe, diff and delete objects"
)]
struct Cli {
    /// Config file (default: $HKCTL_CONFIG or ~/.config/hostkit/config.yaml).
    #[arg(long, global = true, env = "HKCTL_CONFIG")]
    config: Option<std::path::PathBuf>,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DryRun {
    None,
    Client,
    Server,
}

#[derive(Subcommand)]
enum Command {
    /// Create or update objects from manifests.
    Apply {
        /// Files or folders; `-` reads standard input.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        /// Also read sub-folders.
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Validate only: locally (client) or on the server without storing (server).
        #[arg(long, value_enum, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
        dry_run: DryRun,
    },
    /// List objects, or show some.
    Get {
        /// A kind (service, svc, services…) or kind/name.
        kind: String,
        names: Vec<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Label selector, e.g. tier=search,env!=dev.
        #[arg(short = 'l', long)]
        selector: Option<String>,
        /// Field selector, e.g. spec.project=toys.
        #[arg(long)]
        field_selector: Option<String>,
        /// After listing, watch for changes.
        #[arg(short, long)]
        watch: bool,
    },
    /// Show an object's details, conditions and events.
    Describe { kind: String, name: Option<String> },
    /// Delete objects by kind and name, or those in manifests.
    Delete {
        kind: Option<String>,
        names: Vec<String>,
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Wait until the objects are gone (finalizers done).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "60s")]
        timeout: String,
        #[arg(long)]
        dry_run: bool,
        /// Treat "not found" as success.
        #[arg(long)]
        ignore_not_found: bool,
        /// `orphan` leaves what a Service put on its hosts as it is; `background` (the
        /// default) removes it before the object goes.
        #[arg(long, default_value = "background", value_parser = ["background", "orphan"])]
        cascade: String,
    },
    /// Show the live plan of a Service: what applying would change on its hosts now.
    Plan {
        /// service/NAME (or NAME).
        target: String,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        #[arg(short, long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
    /// List policy windows (open now, next transition) and whether each Service may apply.
    Windows,
    /// Sync a GitSource now (even when suspended), wait, and print the revision applied
    /// (exit 0: synced, 1: the sync failed).
    Sync {
        /// gitsource/NAME (or gs/NAME, or NAME).
        target: String,
        /// How long to wait.
        #[arg(long, default_value = "2m")]
        timeout: String,
    },
    /// Let git apply an object again that a Rollback held back (KIND/NAME).
    Resume { target: String },
    /// List the revisions of a Service or a Host: number, age, hosts, changes, source.
    History {
        /// service/NAME (or NAME), or host/NAME.
        target: String,
    },
    /// Roll a Service (or a Host's own resources) back by running the down plans of its
    /// newer revisions; waits and prints each host's result (exit 0: complete, 1: failed or
    /// still running).
    Rollback {
        /// service/NAME (or NAME), or host/NAME.
        target: String,
        /// The revision to go back to (default: the previous one).
        #[arg(long)]
        to_revision: Option<u64>,
        /// Only these resource ids, e.g. file:/etc/web/runtime.env (repeat for more).
        #[arg(long = "only", value_name = "ID")]
        only: Vec<String>,
        /// Run even while a policy window denies changes.
        #[arg(long)]
        force: bool,
        /// Why, recorded on the Rollback.
        #[arg(long)]
        reason: Option<String>,
        /// Create it and return at once.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait.
        #[arg(long, default_value = "10m")]
        timeout: String,
    },
    /// Show what apply would change (exit 0: none, 1: differences, 2: error).
    Diff {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        #[arg(short = 'R', long)]
        recursive: bool,
    },
    /// Document a kind or one of its fields: `hkctl explain service.spec.daemon`.
    Explain { path: String },
    /// Show recent events.
    Events {
        /// Only events about this object, e.g. service/exograph.
        #[arg(long = "for")]
        for_object: Option<String>,
        #[arg(short, long)]
        watch: bool,
    },
    /// Print client and server versions.
    Version,
    /// Print a shell completion script.
    Completion { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_diff = matches!(cli.command, Command::Diff { .. });
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

fn kind_arg(text: &str) -> Result<(&'static KindInfo, Option<String>)> {
    let (kind, name) = match text.split_once('/') {
        Some((k, n)) => (k, Some(n.to_string())),
        None => (text, None),
    };
    let info = find_kind(kind).ok_or_else(|| {
        Error::Usage(format!(
            "unknown kind {kind:?}; known kinds: {}",
            KINDS
                .iter()
                .map(|k| format!("{} ({})", k.plural, k.short_names.join(",")))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    Ok((info, name))
}

fn client(cli: &Cli) -> Result<Client> {
    Client::new(&resolve(&Overrides {
        config: cli.config.clone(),
        server: cli.server.clone(),
        token: cli.token.clone(),
        certificate_authority: cli.certificate_authority.clone(),
    })?)
}

fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`hkctl get … | head`) is not an error worth a message.
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

async fn run(cli: Cli) -> Result<u8> {
    match &cli.command {
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "hkctl", &mut std::io::stdout());
            Ok(0)
        }
        Command::Explain { path } => {
            let (kind, field) = match path.split_once('.') {
                Some((k, f)) => (k, f),
                None => (path.as_str(), ""),
            };
            let (info, _) = kind_arg(kind)?;
            out(&hostkit_api::schema::explain(info, field).map_err(Error::Usage)?);
            Ok(0)
        }
        Command::Plan {
            target,
            host,
            output: fmt,
        } => {
            let name = target
                .strip_prefix("service/")
                .or_else(|| target.strip_prefix("svc/"))
                .unwrap_or(target);
            let v = client(&cli)?.plan(name, host.as_deref()).await?;
            if fmt == "json" {
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
        Command::Sync { target, timeout } => {
            let name = match target.split_once('/') {
                Some(("gitsource" | "gitsources" | "gs", n)) => n,
                Some((k, _)) => {
                    return Err(Error::Usage(format!(
                        "{k:?}: only GitSources sync (gitsource/NAME)"
                    )));
                }
                None => target.as_str(),
            };
            let timeout = hostkit_api::values::Duration::parse(timeout)
                .map_err(Error::Usage)?
                .as_std();
            let c = client(&cli)?;
            let synced = hkctl::gitops::sync(&c, name, timeout).await?;
            if synced.ok {
                out(&format!("gitsource/{name} synced: {}\n", synced.message));
                Ok(0)
            } else {
                eprintln!("error: gitsource/{name}: {}", synced.message);
                Ok(1)
            }
        }
        Command::Resume { target } => {
            let (info, name) = kind_arg(target)?;
            let name = name
                .ok_or_else(|| Error::Usage("resume needs KIND/NAME, e.g. service/web".into()))?;
            let c = client(&cli)?;
            if hkctl::gitops::resume(&c, info, &name).await? {
                out(&format!(
                    "{} resumed: its GitSource applies it at the next sync\n",
                    hkctl::output::kind_name(info, &name)
                ));
            } else {
                out(&format!(
                    "{} was not held\n",
                    hkctl::output::kind_name(info, &name)
                ));
            }
            Ok(0)
        }
        Command::History { target } => {
            let (kind, name) = hkctl::rollout::target_of(target)?;
            let c = client(&cli)?;
            let svc = c.get(find_kind(kind).expect("kind"), name).await?;
            let revs = hkctl::rollout::revisions(&c, kind, name).await?;
            if revs.is_empty() {
                out(&format!(
                    "{}/{name} has no revisions yet (nothing applied)\n",
                    kind.to_lowercase()
                ));
            } else {
                out(&hkctl::rollout::history_table(
                    &svc,
                    &revs,
                    chrono::Utc::now(),
                ));
            }
            Ok(0)
        }
        Command::Rollback {
            target,
            to_revision,
            only,
            force,
            reason,
            no_wait,
            timeout,
        } => {
            let (kind, name) = hkctl::rollout::target_of(target)?;
            let timeout = hostkit_api::values::Duration::parse(timeout)
                .map_err(Error::Usage)?
                .as_std();
            let c = client(&cli)?;
            let request = hkctl::rollout::Request {
                kind,
                name,
                to_revision: *to_revision,
                only,
                force: *force,
                reason: reason.as_deref(),
            };
            let rb = hkctl::rollout::create(&c, &request, chrono::Utc::now()).await?;
            out(&format!("rollback/{rb} created\n"));
            if *no_wait {
                return Ok(0);
            }
            let done = hkctl::rollout::follow(&c, &rb, timeout, out).await?;
            Ok(if done { 0 } else { 1 })
        }
        Command::Windows => {
            let c = client(&cli)?;
            let now = chrono::Utc::now();
            let (windows, _) = c
                .list(
                    find_kind("policywindows").expect("kind"),
                    &ListOptions::default(),
                )
                .await?;
            let mut rows = vec![vec![
                "WINDOW".to_string(),
                "KIND".into(),
                "SCHEDULE".into(),
                "DURATION".into(),
                "OPEN".into(),
                "NEXT TRANSITION".into(),
            ]];
            for w in &windows {
                let next = w.pointer("/status/nextTransition").and_then(Value::as_str);
                rows.push(vec![
                    w.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    w.pointer("/spec/kind")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    w.pointer("/spec/schedule")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    w.pointer("/spec/duration")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    match w.pointer("/status/open").and_then(Value::as_bool) {
                        Some(true) => "yes".into(),
                        Some(false) => "no".into(),
                        None => "<unknown>".into(),
                    },
                    next.map(|t| format!("{t} (in {})", output::age_until(t, now)))
                        .unwrap_or_else(|| "<none>".into()),
                ]);
            }
            out(&output::render_table(
                Some(&rows[0]),
                &rows[1..],
                &mut Vec::new(),
            ));
            let (services, _) = c
                .list(
                    find_kind("services").expect("kind"),
                    &ListOptions::default(),
                )
                .await?;
            let mut rows = vec![vec![
                "SERVICE".to_string(),
                "APPLY NOW".into(),
                "REASON".into(),
            ]];
            for s in &services {
                let blocked = s
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "WindowBlocked"))
                    .cloned();
                let (allowed, reason) = match blocked {
                    Some(c) if c["status"] == "True" => (
                        "no".to_string(),
                        c["message"].as_str().unwrap_or("").to_string(),
                    ),
                    Some(_) => ("yes".into(), "no window blocks it".into()),
                    None => ("<unknown>".into(), "not reconciled yet".into()),
                };
                let paused = s.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
                rows.push(vec![
                    s.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    if paused { "no".into() } else { allowed },
                    if paused { "spec.paused".into() } else { reason },
                ]);
            }
            out("\n");
            out(&output::render_table(
                Some(&rows[0]),
                &rows[1..],
                &mut Vec::new(),
            ));
            Ok(0)
        }
        Command::Version => {
            out(&format!("Client Version: {}\n", env!("CARGO_PKG_VERSION")));
            let server = client(&cli)?.server_version().await?;
            out(&format!("Server Version: {server}\n"));
            Ok(0)
        }
        Command::Apply {
            files,
            recursive,
            dry_run,
        } => apply(&cli, files, *recursive, *dry_run).await,
        Command::Get {
            kind,
            names,
            output,
            selector,
            field_selector,
            watch,
        } => {
            let (info, name) = kind_arg(kind)?;
            let mut names = names.clone();
            names.extend(name);
            let options = ListOptions {
                label_selector: selector.clone(),
                field_selector: field_selector.clone(),
            };
            get(&client(&cli)?, info, &names, *output, &options, *watch).await
        }
        Command::Describe { kind, name } => {
            let (info, inline) = kind_arg(kind)?;
            let name = name.clone().or(inline).ok_or_else(|| {
                Error::Usage("describe needs a name: hkctl describe KIND NAME".into())
            })?;
            let c = client(&cli)?;
            let object = c.get(info, &name).await?;
            let events = events_for(&c, info.kind, &name).await?;
            out(&output::describe(
                info,
                &object,
                &events,
                chrono::Utc::now(),
            ));
            Ok(0)
        }
        Command::Delete {
            kind,
            names,
            files,
            recursive,
            wait,
            timeout,
            dry_run,
            ignore_not_found,
            cascade,
        } => {
            let mut targets = Vec::new();
            if !files.is_empty() {
                let loaded = load(files, *recursive)?;
                for e in &loaded.errors {
                    eprintln!("error: {e}");
                }
                for d in loaded.documents {
                    targets.push((d.object.info(), d.object.meta().name.clone()));
                }
            } else {
                let kind = kind
                    .as_deref()
                    .ok_or_else(|| Error::Usage("delete needs KIND NAME or -f FILE".into()))?;
                let (info, inline) = kind_arg(kind)?;
                let mut names = names.clone();
                names.extend(inline);
                if names.is_empty() {
                    return Err(Error::Usage(format!(
                        "delete needs at least one {} name",
                        info.singular
                    )));
                }
                targets.extend(names.into_iter().map(|n| (info, n)));
            }
            let timeout = hostkit_api::values::Duration::parse(timeout)
                .map_err(Error::Usage)?
                .as_std();
            let c = client(&cli)?;
            let how = DeleteHow {
                wait: *wait,
                timeout,
                dry_run: *dry_run,
                ignore_not_found: *ignore_not_found,
                orphan: cascade == "orphan",
            };
            delete(&c, &targets, how).await
        }
        Command::Diff { files, recursive } => diff(&cli, files, *recursive).await,
        Command::Events { for_object, watch } => {
            let c = client(&cli)?;
            let info = find_kind("events").expect("Event is a kind");
            let field_selector = match for_object {
                Some(o) => {
                    let (k, n) = kind_arg(o)?;
                    let n = n.ok_or_else(|| Error::Usage("--for needs KIND/NAME".into()))?;
                    Some(format!(
                        "spec.involvedObject.kind={},spec.involvedObject.name={n}",
                        k.kind
                    ))
                }
                None => None,
            };
            let options = ListOptions {
                label_selector: None,
                field_selector,
            };
            let (mut items, rv) = c.list(info, &options).await?;
            sort_events(&mut items);
            let mut widths = Vec::new();
            out(&output::render_table(
                Some(&event_headers()),
                &event_rows(&items),
                &mut widths,
            ));
            if *watch {
                let mut stream = std::pin::pin!(c.watch(info, Some(&rv), &options).await?);
                while let Some(line) = stream.next().await {
                    let line = line?;
                    match line.type_.as_str() {
                        "ADDED" | "MODIFIED" => out(&output::render_table(
                            None,
                            &event_rows(&[line.object]),
                            &mut widths,
                        )),
                        "ERROR" => return Err(watch_error(&line.object)),
                        _ => {}
                    }
                }
            }
            Ok(0)
        }
    }
}

fn event_headers() -> Vec<String> {
    ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        .map(String::from)
        .to_vec()
}

fn event_rows(items: &[Value]) -> Vec<Vec<String>> {
    let now = chrono::Utc::now();
    items
        .iter()
        .map(|e| {
            let s = |p: &str| {
                e.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let last = s("/spec/lastTimestamp");
            vec![
                output::age(
                    if last.is_empty() {
                        e.pointer("/metadata/creationTimestamp")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    } else {
                        &last
                    },
                    now,
                ),
                s("/spec/type"),
                s("/spec/reason"),
                format!(
                    "{}/{}",
                    s("/spec/involvedObject/kind").to_lowercase(),
                    s("/spec/involvedObject/name")
                ),
                s("/spec/message"),
            ]
        })
        .collect()
}

fn sort_events(items: &mut [Value]) {
    items.sort_by_key(|e| {
        e.pointer("/spec/lastTimestamp")
            .or_else(|| e.pointer("/metadata/creationTimestamp"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    });
}

async fn events_for(c: &Client, kind: &str, name: &str) -> Result<Vec<Value>> {
    let info = find_kind("events").expect("Event is a kind");
    let options = ListOptions {
        label_selector: None,
        field_selector: Some(format!(
            "spec.involvedObject.kind={kind},spec.involvedObject.name={name}"
        )),
    };
    let (mut items, _) = c.list(info, &options).await?;
    sort_events(&mut items);
    Ok(items)
}

fn watch_error(object: &Value) -> Error {
    Error::Server {
        code: object.get("code").and_then(Value::as_u64).unwrap_or(500) as u16,
        reason: object
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        message: object
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("watch failed")
            .to_string(),
    }
}

async fn apply(cli: &Cli, files: &[String], recursive: bool, dry_run: DryRun) -> Result<u8> {
    let loaded = load(files, recursive)?;
    let mut failed = !loaded.errors.is_empty();
    for e in &loaded.errors {
        eprintln!("error: {e}");
    }
    if dry_run == DryRun::Client {
        for d in &loaded.documents {
            out(&format!(
                "{} validated (dry run)\n",
                output::kind_name(d.object.info(), &d.object.meta().name)
            ));
        }
        return Ok(u8::from(failed));
    }
    let c = client(cli)?;
    let server_dry_run = dry_run == DryRun::Server;
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
    for (d, info, name, result) in results {
        match result {
            Ok((_, outcome)) => {
                let suffix = if server_dry_run {
                    " (server dry run)"
                } else {
                    ""
                };
                out(&format!(
                    "{} {outcome}{suffix}\n",
                    output::kind_name(info, &name)
                ));
            }
            // Unreachable, unauthenticated or read-only: every other document would fail the same way.
            Err(
                e @ (Error::Unreachable { .. }
                | Error::Server {
                    code: 401 | 403, ..
                }),
            ) => return Err(e),
            Err(e) => {
                failed = true;
                eprintln!("error: {}:{}: {} {e}", d.file, d.line, d.display_name());
            }
        }
    }
    Ok(u8::from(failed))
}

async fn get(
    c: &Client,
    info: &'static KindInfo,
    names: &[String],
    format: Format,
    options: &ListOptions,
    watch: bool,
) -> Result<u8> {
    let now = chrono::Utc::now();
    let (objects, rv, single) = if names.is_empty() {
        let (items, rv) = c.list(info, options).await?;
        (items, Some(rv), false)
    } else {
        let mut items = Vec::new();
        let mut failed = None;
        for n in names {
            match c.get(info, n).await {
                Ok(v) => items.push(v),
                Err(e) => {
                    eprintln!("error: {e}");
                    failed = Some(e);
                }
            }
        }
        if items.is_empty()
            && let Some(e) = failed
        {
            return Err(e);
        }
        (items, None, names.len() == 1)
    };
    let mut widths = Vec::new();
    match format {
        Format::Table | Format::Wide => {
            if objects.is_empty() && !watch {
                eprintln!("No {} found.", info.plural);
            } else {
                let (headers, rows) = output::table(info, &objects, format == Format::Wide, now);
                out(&output::render_table(Some(&headers), &rows, &mut widths));
            }
        }
        Format::Name => {
            for o in &objects {
                out(&format!(
                    "{}\n",
                    output::kind_name(
                        info,
                        o.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    )
                ));
            }
        }
        Format::Json | Format::Yaml => {
            let value = if single {
                objects[0].clone()
            } else {
                serde_json::json!({
                    "apiVersion": hostkit_api::API_VERSION,
                    "kind": "List",
                    "metadata": {"resourceVersion": rv.clone().unwrap_or_default()},
                    "items": objects,
                })
            };
            if format == Format::Json {
                out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                ));
            } else {
                out(&output::to_yaml(&value));
            }
        }
    }
    if watch {
        let rv = match rv {
            Some(rv) => rv,
            None => c.list(info, options).await?.1,
        };
        let mut stream = std::pin::pin!(c.watch(info, Some(&rv), options).await?);
        while let Some(line) = stream.next().await {
            let line = line?;
            let object = line.object;
            if !names.is_empty()
                && !names
                    .iter()
                    .any(|n| object.pointer("/metadata/name").and_then(Value::as_str) == Some(n))
            {
                continue;
            }
            match line.type_.as_str() {
                "ADDED" | "MODIFIED" | "DELETED" => match format {
                    Format::Table | Format::Wide => {
                        let (headers, rows) = output::table(
                            info,
                            std::slice::from_ref(&object),
                            format == Format::Wide,
                            chrono::Utc::now(),
                        );
                        let header = if widths.is_empty() {
                            Some(headers.as_slice())
                        } else {
                            None
                        };
                        out(&output::render_table(header, &rows, &mut widths));
                    }
                    Format::Name => out(&format!(
                        "{}\n",
                        output::kind_name(
                            info,
                            object
                                .pointer("/metadata/name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                        )
                    )),
                    Format::Json => out(&format!(
                        "{}\n",
                        serde_json::to_string(&object).unwrap_or_default()
                    )),
                    Format::Yaml => out(&format!("---\n{}", output::to_yaml(&object))),
                },
                "ERROR" => return Err(watch_error(&object)),
                _ => {}
            }
        }
    }
    Ok(0)
}

/// `hkctl delete`'s flags.
struct DeleteHow {
    wait: bool,
    timeout: std::time::Duration,
    dry_run: bool,
    ignore_not_found: bool,
    orphan: bool,
}

async fn delete(c: &Client, targets: &[(&'static KindInfo, String)], how: DeleteHow) -> Result<u8> {
    let DeleteHow {
        wait,
        timeout,
        dry_run,
        ignore_not_found,
        orphan,
    } = how;
    let mut failed = false;
    let mut pending = Vec::new();
    for (info, name) in targets {
        let label = output::kind_name(info, name);
        match c.delete(info, name, dry_run, orphan).await {
            Ok((_, true)) => out(&format!(
                "{label} deleted{}\n",
                if dry_run { " (dry run)" } else { "" }
            )),
            Ok((_, false)) => {
                out(&format!(
                    "{label} deletion requested (waiting for finalizers)\n"
                ));
                pending.push((*info, name.clone()));
            }
            Err(e) if e.is_not_found() && ignore_not_found => {}
            Err(e @ Error::Unreachable { .. }) => return Err(e),
            Err(e) => {
                failed = true;
                eprintln!("error: {e}");
            }
        }
    }
    if wait && !dry_run {
        let deadline = tokio::time::Instant::now() + timeout;
        for (info, name) in pending {
            loop {
                match c.get(info, &name).await {
                    Err(e) if e.is_not_found() => {
                        out(&format!("{} deleted\n", output::kind_name(info, &name)));
                        break;
                    }
                    Err(e) => return Err(e),
                    Ok(_) if tokio::time::Instant::now() >= deadline => {
                        eprintln!(
                            "error: timed out waiting for {} to be deleted",
                            output::kind_name(info, &name)
                        );
                        failed = true;
                        break;
                    }
                    Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                }
            }
        }
    }
    Ok(u8::from(failed))
}

async fn diff(cli: &Cli, files: &[String], recursive: bool) -> Result<u8> {
    let loaded = load(files, recursive)?;
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
    let c = client(cli)?;
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
