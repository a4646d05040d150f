//! The flags and the output of `hostkit plan`, `hostkit apply` and `hostkit down`; what
//! they do is `hostkit_engine::offline`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use hostkit_engine::offline::{self, ApplyRequest, Inputs, PlanFile};
use hostkit_engine::outcome::{ChangeResult, Status};

#[derive(clap::Args)]
pub struct PlanArgs {
    /// Manifest files or folders (Project, Host and Service objects).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Only this host (default: every Host in the manifests).
    #[arg(long)]
    host: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, default_value = "text", value_parser = ["text", "json"])]
    output: String,
    /// Also list unchanged resources (`=` lines).
    #[arg(long)]
    show_unchanged: bool,
    /// Also write the plans to this file, for `hostkit apply --plan`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The result of the last apply: resources it managed that are no longer declared
    /// become deletes.
    #[arg(long)]
    previous: Option<PathBuf>,
    /// A package lock file (per host: package → version); installed versions that differ
    /// from it are planned as updates back to the pinned version.
    #[arg(long)]
    lock: Option<PathBuf>,
    /// How many hosts to read and plan at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    parallel: u16,
    /// Print how long each phase took on each host (connect, read, plan), on stderr.
    #[arg(long)]
    timings: bool,
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    #[arg(long)]
    host: Option<String>,
    /// A plan file from `hostkit plan --out`; refused when the hosts changed since.
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Required: apply changes hosts.
    #[arg(long)]
    confirm: bool,
    /// Where to write what was applied and its down plan.
    #[arg(long, default_value = "applied.json")]
    out: PathBuf,
    #[arg(long)]
    previous: Option<PathBuf>,
    /// A package lock file: honoured, and updated with what this apply installed.
    #[arg(long)]
    lock: Option<PathBuf>,
    /// How long a (re)started unit must stay active, e.g. 300ms.
    #[arg(long, default_value = "300ms")]
    settle: String,
    /// How many hosts to apply to at once; each host's output is printed together, in
    /// host-name order, and the exit code is the worst host's.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    parallel: u16,
    /// Print how long each phase took on each host (connect, read, plan, apply script,
    /// unit start, settle), on stderr.
    #[arg(long)]
    timings: bool,
}

#[derive(clap::Args)]
pub struct DownArgs {
    /// An applied.json from `hostkit apply`.
    #[arg(long)]
    from: PathBuf,
    /// Only undo these resource ids.
    #[arg(long, num_args = 1..)]
    only: Vec<String>,
    #[arg(long)]
    confirm: bool,
    /// How many hosts to undo at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    parallel: u16,
}

/// Prints each manifest problem and says nothing was done.
fn explain(e: hostkit_engine::Error) -> anyhow::Error {
    if let hostkit_engine::Error::Manifests(errors) = &e {
        for m in errors {
            eprintln!("error: {m}");
        }
    }
    e.into()
}

/// Exit 0: nothing would change; 1: something would; errors are returned (exit 2).
pub async fn plan(args: PlanArgs) -> anyhow::Result<u8> {
    let inputs = Inputs {
        files: args.files,
        host: args.host,
        previous: args.previous,
        lock: args.lock,
        parallel: usize::from(args.parallel),
    };
    let text = args.output == "text";
    let show_unchanged = args.show_unchanged;
    let timings = args.timings;
    let mut print = |host: &str, planned: Result<&hostkit_engine::plan::Plan, &str>| match planned {
        Ok(p) => {
            if text {
                print!("{}", p.render_with(true, show_unchanged));
            }
            if timings {
                eprintln!("host {host}: timings: {}", p.timings.render());
            }
        }
        Err(e) => eprintln!("host {host}: cannot plan: {e}"),
    };
    let outcome = offline::plan(&inputs, &mut print).await.map_err(explain)?;
    let file = PlanFile {
        plans: outcome.plans,
    };
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&file)?);
    }
    if let Some(out) = &args.out {
        offline::write_atomic(out, &serde_json::to_vec_pretty(&file)?)?;
    }
    if !outcome.failed.is_empty() {
        let names: Vec<&str> = outcome.failed.iter().map(|(h, _)| h.as_str()).collect();
        eprintln!("error: could not plan host(s) {}", names.join(", "));
        return Ok(2);
    }
    Ok(u8::from(!file.plans.iter().all(|p| p.is_empty())))
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<u8> {
    if !args.confirm {
        bail!("hostkit apply changes hosts; run `hostkit plan` first, then add --confirm");
    }
    let settle = hostkit_api::values::Duration::parse(&args.settle)
        .map_err(|e| anyhow::anyhow!("--settle: {e}"))?
        .as_std();
    let expected = match &args.plan {
        Some(p) => Some(offline::read_plans(p)?),
        None => None,
    };
    let interactive = std::io::stderr().is_terminal();
    let req = ApplyRequest {
        inputs: Inputs {
            files: args.files,
            host: args.host,
            previous: args.previous,
            lock: args.lock.clone(),
            parallel: usize::from(args.parallel),
        },
        expected,
        settle,
        revision: chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string(),
        progress: Arc::new(move |r: &ChangeResult| {
            if interactive || r.status == Status::Failed {
                let mark = match r.status {
                    Status::Applied => "done",
                    Status::Failed => "FAILED",
                    Status::NotRun => "skipped",
                    Status::Interrupted => "interrupted",
                };
                eprintln!("  {} {} {mark}", r.action.symbol(), r.id);
            }
        }),
        report: Box::new(|host, what| eprintln!("host {host}: {what}")),
        timings: args.timings,
    };
    let outcome = offline::apply(&req).await.map_err(explain)?;
    offline::write_atomic(&args.out, &serde_json::to_vec_pretty(&outcome.applied)?)?;
    eprintln!("wrote {}", args.out.display());
    if let Some(path) = &args.lock {
        offline::write_atomic(path, &serde_json::to_vec_pretty(&outcome.lock)?)?;
        eprintln!("wrote {}", path.display());
    }
    if !outcome.ok {
        let names: Vec<&str> = outcome.failed.iter().map(|(h, _)| h.as_str()).collect();
        eprintln!("error: host(s) {} failed", names.join(", "));
    }
    Ok(if outcome.ok { 0 } else { 1 })
}

pub async fn down(args: DownArgs) -> anyhow::Result<u8> {
    let file = offline::read_applied(&args.from)?;
    let downs = offline::down_plans(&file, &args.only);
    for down in &downs {
        print!("{}", down.render());
    }
    if !args.confirm {
        eprintln!("dry run: add --confirm to run the down plan");
        return Ok(0);
    }
    let mut failed = Vec::new();
    offline::run_downs(
        &file,
        &downs,
        usize::from(args.parallel),
        |down, result| match result {
            Ok(result) => {
                for s in &result.steps {
                    if s.status == Status::Failed {
                        eprintln!("  {} FAILED: {}", s.id, s.message.as_deref().unwrap_or(""));
                    }
                }
                if result.ok {
                    eprintln!("host {}: down plan of {} done", down.host, down.revision);
                } else {
                    failed.push(down.host.clone());
                }
            }
            Err(e) => {
                eprintln!(
                    "host {}: down plan of {} failed: {e}",
                    down.host, down.revision
                );
                failed.push(down.host.clone());
            }
        },
    )
    .await;
    if !failed.is_empty() {
        eprintln!("error: host(s) {} failed", failed.join(", "));
        return Ok(1);
    }
    Ok(0)
}
