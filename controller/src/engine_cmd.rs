//! `hostkit plan`, `hostkit apply` and `hostkit down`: the host engine without a server,
//! like HostKit's mix tasks. Manifests come from files, secrets from this process's
//! environment or files, and results go to JSON files the next command reads.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, bail};
use hostkit_api::kinds::HostSpec;
use hostkit_reconcilers::apply::{self, Applied, ApplyOptions, Status};
use hostkit_reconcilers::manifests::Desired;
use hostkit_reconcilers::plan::{self, PackageLock, Plan, Prepared};
use hostkit_reconcilers::resource::Resource;
use hostkit_reconcilers::secrets::Secrets;
use hostkit_reconcilers::ssh::{Ssh, SshOptions};
use serde::{Deserialize, Serialize};

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
}

/// What `hostkit apply --out` writes: per host, how to reach it and what was applied.
#[derive(Serialize, Deserialize)]
struct AppliedFile {
    hosts: BTreeMap<String, HostSpec>,
    applied: Vec<Applied>,
}

/// `--lock`: per host, the pinned version of each installed package.
#[derive(Default, Serialize, Deserialize)]
struct LockFile {
    hosts: BTreeMap<String, PackageLock>,
}

fn read_lock(path: &Option<PathBuf>) -> anyhow::Result<LockFile> {
    match path {
        Some(p) if p.exists() => serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{} is not a HostKit lock file", p.display())),
        _ => Ok(LockFile::default()),
    }
}

#[derive(Serialize, Deserialize)]
struct PlanFile {
    plans: Vec<Plan>,
}

fn load(files: &[PathBuf]) -> anyhow::Result<Desired> {
    Desired::load(files).map_err(|errors| {
        for e in &errors {
            eprintln!("error: {e}");
        }
        anyhow::anyhow!("{} invalid document(s); nothing was planned", errors.len())
    })
}

fn previous(path: &Option<PathBuf>) -> anyhow::Result<BTreeMap<String, Vec<Resource>>> {
    let Some(path) = path else {
        return Ok(BTreeMap::new());
    };
    let f: AppliedFile = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| {
        format!(
            "{} is not an applied.json from hostkit apply",
            path.display()
        )
    })?;
    Ok(f.applied
        .into_iter()
        .map(|a| (a.host, a.resources))
        .collect())
}

fn hosts<'a>(d: &'a Desired, only: &Option<String>) -> anyhow::Result<Vec<&'a String>> {
    if let Some(h) = only
        && !d.hosts.contains_key(h)
    {
        bail!(
            "Host/{h} is not in the manifests (have: {})",
            d.hosts.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(d.hosts
        .keys()
        .filter(|h| only.as_ref().is_none_or(|o| o == *h))
        .collect())
}

async fn connect(name: &str, spec: &HostSpec, secrets: &Secrets) -> anyhow::Result<Ssh> {
    let opts = SshOptions::from_host(name, spec, secrets)?;
    Ok(Ssh::connect(&opts).await?)
}

async fn prepare(
    ssh: &Ssh,
    resources: &[Resource],
    previous: &[Resource],
    lock: Option<&PackageLock>,
    secrets: &Secrets,
) -> anyhow::Result<Prepared> {
    let empty = PackageLock::new();
    Ok(plan::prepare_locked(ssh, resources, previous, lock.unwrap_or(&empty), secrets).await?)
}

/// Exit 0: nothing would change; 2: something would; errors are returned (exit 1).
pub async fn plan(args: PlanArgs) -> anyhow::Result<u8> {
    let d = load(&args.files)?;
    let prev = previous(&args.previous)?;
    let lock = read_lock(&args.lock)?;
    let secrets = Secrets::default();
    let mut plans = Vec::new();
    for h in hosts(&d, &args.host)? {
        let resources = d.resources_for(h)?;
        if resources.is_empty() {
            continue;
        }
        let ssh = connect(h, &d.hosts[h].spec, &secrets).await?;
        let prepared = prepare(
            &ssh,
            &resources,
            prev.get(h).map(Vec::as_slice).unwrap_or(&[]),
            lock.hosts.get(h),
            &secrets,
        )
        .await?;
        if args.output == "text" {
            print!("{}", prepared.plan.render_with(true, args.show_unchanged));
        }
        plans.push(prepared.plan);
    }
    if args.output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&PlanFile {
                plans: plans.clone()
            })?
        );
    }
    if let Some(out) = &args.out {
        write_atomic(
            out,
            &serde_json::to_vec_pretty(&PlanFile {
                plans: plans.clone(),
            })?,
        )?;
    }
    Ok(if plans.iter().all(|p| p.is_empty()) {
        0
    } else {
        2
    })
}

fn write_atomic(path: &PathBuf, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<u8> {
    if !args.confirm {
        bail!("hostkit apply changes hosts; run `hostkit plan` first, then add --confirm");
    }
    let settle = hostkit_api::values::Duration::parse(&args.settle)
        .map_err(|e| anyhow::anyhow!("--settle: {e}"))?
        .as_std();
    let d = load(&args.files)?;
    let prev = previous(&args.previous)?;
    let mut lock = read_lock(&args.lock)?;
    let expected: Option<PlanFile> = match &args.plan {
        Some(p) => Some(
            serde_json::from_slice(
                &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| {
                format!("{} is not a plan file from hostkit plan --out", p.display())
            })?,
        ),
        None => None,
    };
    let secrets = Secrets::default();
    let revision = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut out = AppliedFile {
        hosts: BTreeMap::new(),
        applied: Vec::new(),
    };
    let mut ok = true;
    let interactive = std::io::stderr().is_terminal();
    for h in hosts(&d, &args.host)? {
        let resources = d.resources_for(h)?;
        if resources.is_empty() {
            continue;
        }
        let ssh = connect(h, &d.hosts[h].spec, &secrets).await?;
        let prepared = prepare(
            &ssh,
            &resources,
            prev.get(h).map(Vec::as_slice).unwrap_or(&[]),
            lock.hosts.get(h),
            &secrets,
        )
        .await?;
        if let Some(expected) = &expected {
            let plan = expected
                .plans
                .iter()
                .find(|p| &p.host == h)
                .with_context(|| format!("the plan file has no plan for host {h}"))?;
            apply::check_fresh(plan, &prepared.plan)?;
        }
        eprintln!("host {h}: {}", prepared.plan.summary());
        let mut opts = ApplyOptions::new(&revision);
        opts.settle = settle;
        opts.progress = Some(Box::new(move |r| {
            if interactive || r.status == Status::Failed {
                let mark = match r.status {
                    Status::Applied => "done",
                    Status::Failed => "FAILED",
                    Status::NotRun => "skipped",
                };
                eprintln!("  {} {} {mark}", r.action.symbol(), r.id);
            }
        }));
        let applied = apply::apply(&ssh, &prepared, &opts).await?;
        if let Some(e) = &applied.error {
            eprintln!("host {h}: apply failed: {e}");
            ok = false;
        } else {
            eprintln!(
                "host {h}: applied; down plan: {} steps",
                applied.down.steps.len()
            );
        }
        if !applied.package_lock.is_empty() {
            lock.hosts.insert(h.clone(), applied.package_lock.clone());
        }
        out.hosts.insert(h.clone(), d.hosts[h].spec.clone());
        out.applied.push(applied);
        if !ok {
            break;
        }
    }
    write_atomic(&args.out, &serde_json::to_vec_pretty(&out)?)?;
    eprintln!("wrote {}", args.out.display());
    if let Some(path) = &args.lock {
        write_atomic(path, &serde_json::to_vec_pretty(&lock)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(if ok { 0 } else { 1 })
}

pub async fn down(args: DownArgs) -> anyhow::Result<u8> {
    let f: AppliedFile = serde_json::from_slice(
        &std::fs::read(&args.from).with_context(|| format!("reading {}", args.from.display()))?,
    )
    .with_context(|| {
        format!(
            "{} is not an applied.json from hostkit apply",
            args.from.display()
        )
    })?;
    let secrets = Secrets::default();
    let mut ok = true;
    for a in f.applied.iter().rev() {
        let down = if args.only.is_empty() {
            a.down.clone()
        } else {
            a.down.only(&args.only)
        };
        print!("{}", down.render());
        if !args.confirm {
            continue;
        }
        let spec = f.hosts.get(&a.host).with_context(|| {
            format!(
                "{} has no connection for host {}",
                args.from.display(),
                a.host
            )
        })?;
        let ssh = connect(&a.host, spec, &secrets).await?;
        let result = apply::run_down(&ssh, &down).await?;
        for s in &result.steps {
            if s.status == Status::Failed {
                eprintln!("  {} FAILED: {}", s.id, s.message.as_deref().unwrap_or(""));
            }
        }
        if !result.ok {
            ok = false;
            break;
        }
        eprintln!("host {}: down plan of {} done", a.host, a.revision);
    }
    if !args.confirm {
        eprintln!("dry run: add --confirm to run the down plan");
    }
    Ok(if ok { 0 } else { 1 })
}
