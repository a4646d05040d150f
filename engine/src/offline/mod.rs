//! `hostkit plan`, `hostkit apply` and `hostkit down`: the engine without a server, like
//! HostKit's mix tasks. Manifests come from files ([`manifests`]), secrets from this
//! process's environment or files, and results go to JSON files the next command reads
//! (`--out`, `--previous`, `--lock`, `--from`). The `hostkit` binary parses the flags and
//! prints; everything it does lives here.

pub mod manifests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hostkit_api::kinds::HostSpec;
use serde::{Deserialize, Serialize};

use crate::apply::{self, Applied, ApplyOptions};
use crate::down::{DownPlan, DownResult, run_down};
use crate::outcome::ChangeResult;
use crate::plan::{self, PackageLock, Plan, Prepared};
use crate::resource::Resource;
use crate::secrets::Secrets;
use crate::transport::ssh::{Ssh, SshOptions};
use crate::{Error, Result};
use manifests::Desired;

/// What `hostkit apply --out` writes: per host, how to reach it and what was applied.
#[derive(Serialize, Deserialize)]
pub struct AppliedFile {
    pub hosts: BTreeMap<String, HostSpec>,
    pub applied: Vec<Applied>,
}

/// `--lock`: per host, the pinned version of each installed package.
#[derive(Default, Serialize, Deserialize)]
pub struct LockFile {
    pub hosts: BTreeMap<String, PackageLock>,
}

/// What `hostkit plan --out` writes and `hostkit apply --plan` checks against.
#[derive(Serialize, Deserialize)]
pub struct PlanFile {
    pub plans: Vec<Plan>,
}

/// Reads a JSON file one command wrote for another; `what` says what it should be.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::Input {
        path: path.display().to_string(),
        message: format!("cannot read it: {e}"),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Input {
        path: path.display().to_string(),
        message: format!("is not {what}: {e}"),
    })
}

/// Writes `bytes` to `path` through a temp file and a rename: a reader never sees half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let fail = |p: &Path, e: std::io::Error| Error::Input {
        path: p.display().to_string(),
        message: format!("cannot write it: {e}"),
    };
    std::fs::write(&tmp, bytes).map_err(|e| fail(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| fail(path, e))
}

/// Reads a lock file; a missing one is an empty lock (the first apply writes it).
pub fn read_lock(path: Option<&Path>) -> Result<LockFile> {
    match path {
        Some(p) if p.exists() => read_json(p, "a HostKit lock file"),
        _ => Ok(LockFile::default()),
    }
}

/// Reads an `applied.json` from `hostkit apply`.
pub fn read_applied(path: &Path) -> Result<AppliedFile> {
    read_json(path, "an applied.json from hostkit apply")
}

/// Reads a plan file from `hostkit plan --out`.
pub fn read_plans(path: &Path) -> Result<PlanFile> {
    read_json(path, "a plan file from hostkit plan --out")
}

/// The resources the last apply managed, per host (`--previous`): those no longer
/// declared become deletes.
fn previous(path: Option<&Path>) -> Result<BTreeMap<String, Vec<Resource>>> {
    let Some(path) = path else {
        return Ok(BTreeMap::new());
    };
    Ok(read_applied(path)?
        .applied
        .into_iter()
        .map(|a| (a.host, a.resources))
        .collect())
}

/// What the plan and apply commands read besides the manifests.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub files: Vec<PathBuf>,
    /// Only this host (default: every Host in the manifests).
    pub host: Option<String>,
    /// An `applied.json` of the last apply.
    pub previous: Option<PathBuf>,
    /// A package lock file.
    pub lock: Option<PathBuf>,
    /// How many hosts are worked on at once (at least 1).
    pub parallel: usize,
}

/// The manifests and files of one command, read once.
struct Loaded {
    desired: Desired,
    previous: BTreeMap<String, Vec<Resource>>,
    lock: LockFile,
    secrets: Secrets,
}

impl Loaded {
    fn read(inputs: &Inputs) -> Result<Loaded> {
        let mut desired = Desired::load(&inputs.files).map_err(Error::Manifests)?;
        let secrets = Secrets::default();
        desired.resolve_sources(&secrets)?;
        Ok(Loaded {
            desired,
            previous: previous(inputs.previous.as_deref())?,
            lock: read_lock(inputs.lock.as_deref())?,
            secrets,
        })
    }

    /// The hosts to visit, in name order.
    fn hosts(&self, only: Option<&str>) -> Result<Vec<String>> {
        let hosts = &self.desired.hosts;
        if let Some(h) = only
            && !hosts.contains_key(h)
        {
            return Err(Error::Invalid {
                object: format!("Host/{h}"),
                field: "--host".into(),
                message: format!(
                    "is not in the manifests (have: {})",
                    hosts.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        Ok(hosts
            .keys()
            .filter(|h| only.is_none_or(|o| o == h.as_str()))
            .cloned()
            .collect())
    }

    /// Connects to `host` and plans it; `None` when nothing is declared for it.
    async fn prepare(&self, host: &str) -> Result<Option<(Ssh, Prepared)>> {
        let resources = self.desired.resources_for(host)?;
        if resources.is_empty() {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let ssh = connect(host, &self.desired.hosts[host].spec, &self.secrets).await?;
        let connected = started.elapsed();
        let empty = PackageLock::new();
        let mut prepared = plan::prepare_locked(
            &ssh,
            &resources,
            self.previous.get(host).map(Vec::as_slice).unwrap_or(&[]),
            self.lock.hosts.get(host).unwrap_or(&empty),
            &[],
            &self.secrets,
        )
        .await?;
        prepared.plan.timings.0.insert(0, ("connect", connected));
        Ok(Some((ssh, prepared)))
    }
}

async fn connect(name: &str, spec: &HostSpec, secrets: &Secrets) -> Result<Ssh> {
    Ssh::connect(&SshOptions::from_host(name, spec, secrets)?).await
}

/// Runs `work` for each host, at most `parallel` at once, and hands each outcome to
/// `done` in host order as soon as it and every host before it are finished: output per
/// host stays together, in a stable order, however the hosts overlap.
async fn each_host<'a, T, F>(
    hosts: Vec<String>,
    parallel: usize,
    work: impl Fn(String) -> F,
    mut done: impl FnMut(String, T),
) where
    F: std::future::Future<Output = T> + 'a,
{
    use futures::StreamExt;
    let mut outcomes = futures::stream::iter(hosts.into_iter().map(|h| {
        let f = work(h.clone());
        async move { (h, f.await) }
    }))
    .buffered(parallel.max(1));
    while let Some((h, outcome)) = outcomes.next().await {
        done(h, outcome);
    }
}

/// What `hostkit plan` found: the plans, and the hosts that could not be planned (why).
pub struct PlanOutcome {
    pub plans: Vec<Plan>,
    pub failed: Vec<(String, String)>,
}

/// Plans every host the manifests declare (or `inputs.host`), `inputs.parallel` at once;
/// `each` sees every plan (or why a host could not be planned) in host-name order. A host
/// that cannot be reached does not stop the others.
pub async fn plan(
    inputs: &Inputs,
    each: &mut (dyn FnMut(&str, std::result::Result<&Plan, &str>) + Send),
) -> Result<PlanOutcome> {
    let loaded = Loaded::read(inputs)?;
    let hosts = loaded.hosts(inputs.host.as_deref())?;
    let mut out = PlanOutcome {
        plans: Vec::new(),
        failed: Vec::new(),
    };
    let loaded = &loaded;
    each_host(
        hosts,
        inputs.parallel,
        |h| async move { loaded.prepare(&h).await },
        |h, planned| match planned {
            Ok(Some((_, prepared))) => {
                each(&h, Ok(&prepared.plan));
                out.plans.push(prepared.plan);
            }
            Ok(None) => {}
            Err(e) => {
                let e = e.to_string();
                each(&h, Err(&e));
                out.failed.push((h, e));
            }
        },
    )
    .await;
    Ok(out)
}

/// Called with a host and a line about it (its plan's summary, then its outcome).
pub type Report = Box<dyn Fn(&str, &str) + Send + Sync>;

/// How `hostkit apply` runs.
pub struct ApplyRequest {
    pub inputs: Inputs,
    /// Plans from `hostkit plan --out`: a host whose fresh plan differs is refused.
    pub expected: Option<PlanFile>,
    /// How long a (re)started unit must stay active.
    pub settle: Duration,
    /// Names the backup folders of this apply.
    pub revision: String,
    /// Called for each change of a host once that host is done (in host order).
    pub progress: Arc<dyn Fn(&ChangeResult) + Send + Sync>,
    /// Called when a host is done: its plan's summary, then its outcome.
    pub report: Report,
    /// Also report how long each phase took on each host.
    pub timings: bool,
}

/// What an apply did: the file to write (every host that was changed, with its down
/// plan, also when another host failed), the lock after it, whether every host
/// succeeded, and the hosts that did not (why).
pub struct ApplyOutcome {
    pub applied: AppliedFile,
    pub lock: LockFile,
    pub ok: bool,
    pub failed: Vec<(String, String)>,
}

/// What one host's apply did: its plan's summary and the result; `None` when nothing is
/// declared for it.
type HostApplied = Option<(String, Applied)>;

/// One host's share of `hostkit apply`: plan, check against the plan file, apply.
async fn apply_host(loaded: &Loaded, req: &ApplyRequest, h: &str) -> Result<HostApplied> {
    let Some((ssh, prepared)) = loaded.prepare(h).await? else {
        return Ok(None);
    };
    if let Some(expected) = &req.expected {
        let plan = expected
            .plans
            .iter()
            .find(|p| p.host == h)
            .ok_or_else(|| Error::Input {
                path: "--plan".into(),
                message: format!("the plan file has no plan for host {h}"),
            })?;
        apply::check_fresh(plan, &prepared.plan)?;
    }
    let mut opts = ApplyOptions::new(&req.revision);
    opts.settle = req.settle;
    let mut applied = apply::apply(&ssh, &prepared, &opts).await?;
    let mut timings = prepared.plan.timings.clone();
    timings.extend(&applied.timings);
    applied.timings = timings;
    Ok(Some((prepared.plan.summary(), applied)))
}

/// Applies the manifests, `inputs.parallel` hosts at once. A host that fails (or cannot
/// be reached) does not stop the others; every host that was changed is in the result.
pub async fn apply(req: &ApplyRequest) -> Result<ApplyOutcome> {
    let mut loaded = Loaded::read(&req.inputs)?;
    let hosts = loaded.hosts(req.inputs.host.as_deref())?;
    let mut done: Vec<(String, Result<HostApplied>)> = Vec::new();
    {
        let shared = &loaded;
        each_host(
            hosts,
            req.inputs.parallel,
            |h| async move { apply_host(shared, req, &h).await },
            |h, outcome| {
                match &outcome {
                    Ok(Some((summary, applied))) => {
                        (req.report)(&h, summary);
                        for r in &applied.results {
                            (req.progress)(r);
                        }
                        match &applied.error {
                            Some(e) => (req.report)(&h, &format!("apply failed: {e}")),
                            None => (req.report)(
                                &h,
                                &format!("applied; down plan: {} steps", applied.down.steps.len()),
                            ),
                        }
                        if req.timings {
                            (req.report)(&h, &format!("timings: {}", applied.timings.render()));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => (req.report)(&h, &format!("failed: {e}")),
                }
                done.push((h, outcome));
            },
        )
        .await;
    }
    let mut out = AppliedFile {
        hosts: BTreeMap::new(),
        applied: Vec::new(),
    };
    let mut failed = Vec::new();
    for (h, outcome) in done {
        match outcome {
            Ok(Some((_, applied))) => {
                if let Some(e) = &applied.error {
                    failed.push((h.clone(), e.clone()));
                }
                if !applied.package_lock.is_empty() {
                    loaded
                        .lock
                        .hosts
                        .insert(h.clone(), applied.package_lock.clone());
                }
                out.hosts
                    .insert(h.clone(), loaded.desired.hosts[&h].spec.clone());
                out.applied.push(applied);
            }
            Ok(None) => {}
            Err(e) => failed.push((h, e.to_string())),
        }
    }
    Ok(ApplyOutcome {
        applied: out,
        lock: loaded.lock,
        ok: failed.is_empty(),
        failed,
    })
}

/// The down plans of an `applied.json`, newest host first, filtered by `only`.
pub fn down_plans(file: &AppliedFile, only: &[String]) -> Vec<DownPlan> {
    file.applied
        .iter()
        .rev()
        .map(|a| {
            if only.is_empty() {
                a.down.clone()
            } else {
                a.down.only(only)
            }
        })
        .collect()
}

/// Runs one host's down plan of an `applied.json`.
pub async fn run_host_down(file: &AppliedFile, down: &DownPlan) -> Result<DownResult> {
    let spec = file.hosts.get(&down.host).ok_or_else(|| Error::Input {
        path: "--from".into(),
        message: format!("has no connection for host {}", down.host),
    })?;
    let ssh = connect(&down.host, spec, &Secrets::default()).await?;
    run_down(&ssh, down).await
}

/// Runs the down plans `downs` (one per host), `parallel` hosts at once; `done` sees each
/// host's result in the order given. A host that fails does not stop the others.
pub async fn run_downs(
    file: &AppliedFile,
    downs: &[DownPlan],
    parallel: usize,
    mut done: impl FnMut(&DownPlan, Result<DownResult>),
) {
    let order: Vec<String> = (0..downs.len()).map(|i| i.to_string()).collect();
    each_host(
        order,
        parallel,
        |i| async move {
            let down = &downs[i.parse::<usize>().unwrap_or(0)];
            run_host_down(file, down).await
        },
        |i, result| done(&downs[i.parse::<usize>().unwrap_or(0)], result),
    )
    .await;
}
