//! `hkctl backup list|run|restore service/NAME --storage S`: a Service's storage snapshots
//! on its hosts, read and taken by the controller over SSH (the client needs no SSH
//! credentials). A restore is shown first (`dryRun`), then run on one host; it snapshots
//! what it replaces, and that snapshot's id undoes it.
//!
//! A restore holds the host's apply lock (the reconcilers' own), so no apply of the host
//! runs during it; it is not gated by policy windows: it is an operator's explicit act.
//!
//! Nothing a client sends reaches a host's shell as text: the storage must be one of the
//! Service's with a backup, the id must have a snapshot id's shape, the host must be one
//! the Service selects.

use hostkit_api::kinds::{BackupPlan, ProjectSpec, ServiceSpec};
use hostkit_engine::backup::{self, Restore};
use hostkit_engine::naming::Conventions;
use hostkit_engine::secrets::Secrets;
use hostkit_engine::transport::ssh::{Ssh, SshOptions};
use serde_json::{Value, json};

use crate::{Context, Error, Result};

/// What a backup request names.
#[derive(Clone, Debug, Default)]
pub struct BackupQuery {
    pub storage: String,
    pub host: Option<String>,
}

/// One storage's backup as the host knows it.
struct Target {
    storage_path: String,
    root: String,
    job_unit: String,
    daemon_unit: Option<String>,
    plan: BackupPlan,
    hosts: Vec<SshOptions>,
}

async fn target(ctx: &dyn Context, name: &str, q: &BackupQuery) -> Result<Target> {
    let svc = ctx.fetch::<ServiceSpec>(name).await?;
    let project = match &svc.spec.project {
        Some(p) => Some(ctx.fetch::<ProjectSpec>(p).await?.spec),
        None => None,
    };
    let invalid = |field: &str, message: String| Error::Invalid {
        object: format!("Service/{name}"),
        field: field.into(),
        message,
    };
    let with_backup: Vec<&str> = svc
        .spec
        .storage
        .iter()
        .filter(|s| s.backup.as_ref().and_then(|b| b.plan()).is_some())
        .map(|s| s.name.as_str())
        .collect();
    let storage = svc
        .spec
        .storage
        .iter()
        .find(|s| s.name == q.storage)
        .and_then(|s| s.backup.as_ref()?.plan().map(|p| (s, p)));
    let Some((storage, plan)) = storage else {
        return Err(invalid(
            "storage",
            format!(
                "{:?} is not a storage with a backup; its storage with backups: {}",
                q.storage,
                if with_backup.is_empty() {
                    "none".to_string()
                } else {
                    with_backup.join(", ")
                }
            ),
        ));
    };
    let c = Conventions::new(project.as_ref());
    let path = c
        .storage_path(name, &svc.spec, &storage.name)
        .ok_or_else(|| invalid("storage", "has no path".into()))?;
    let storage_path = c
        .expand(name, &svc.spec, &path)
        .map_err(|e| invalid("storage", e.to_string()))?;
    let secrets = Secrets::keyed();
    let hosts =
        super::live_plan::ssh_targets(ctx, name, &svc.spec, q.host.as_deref(), &secrets).await?;
    if hosts.is_empty() {
        return Err(invalid("host", "selects no Host".into()));
    }
    Ok(Target {
        storage_path,
        root: backup::root(name, &storage.name),
        job_unit: c.unit(
            name,
            None,
            Some(&backup::job_name(&storage.name)),
            ".service",
        ),
        daemon_unit: svc
            .spec
            .daemon
            .as_ref()
            .map(|_| c.daemon_unit(name, &svc.spec)),
        plan,
        hosts,
    })
}

fn upstream(host: &str, e: impl std::fmt::Display) -> Error {
    Error::Retry(format!("{host}: {e}"))
}

/// `{kind: BackupList, items: [{host, storage, root, keep, snapshots}]}`, newest first.
pub async fn list(ctx: &dyn Context, name: &str, q: &BackupQuery) -> Result<Value> {
    each_host(ctx, name, q, false).await
}

/// Takes a snapshot on each host now (the backup job, as its timer would), then lists.
pub async fn run(ctx: &dyn Context, name: &str, q: &BackupQuery) -> Result<Value> {
    each_host(ctx, name, q, true).await
}

/// One connection per host: the backup job first when `run`, then the listing.
async fn each_host(ctx: &dyn Context, name: &str, q: &BackupQuery, run: bool) -> Result<Value> {
    let t = target(ctx, name, q).await?;
    let mut items = Vec::new();
    for opts in &t.hosts {
        let ssh = Ssh::connect(opts)
            .await
            .map_err(|e| upstream(&opts.name, e))?;
        if run {
            backup::run_now(&ssh, &t.job_unit)
                .await
                .map_err(|e| upstream(&opts.name, e))?;
        }
        let snaps = backup::list(&ssh, &t.root)
            .await
            .map_err(|e| upstream(&opts.name, e))?;
        items.push(json!({
            "host": opts.name, "storage": q.storage, "root": t.root,
            "keep": t.plan.keep, "snapshots": snaps,
        }));
    }
    Ok(json!({"kind": "BackupList", "items": items}))
}

/// Restores snapshot `id` on one host: with `dry_run`, only the steps
/// (`{kind: RestorePlan, host, steps}`); else `{kind: RestoreResult, host, restored, undo}`.
pub async fn restore(
    ctx: &dyn Context,
    hosts: &dyn hostkit_engine::hosts::Hosts,
    name: &str,
    q: &BackupQuery,
    id: &str,
    dry_run: bool,
) -> Result<Value> {
    if !backup::is_snapshot_id(id) {
        return Err(Error::Invalid {
            object: format!("Service/{name}"),
            field: "id".into(),
            message: format!(
                "{id:?} is not a snapshot id (hkctl backup list shows them, e.g. 20261201T231500Z-123456789)"
            ),
        });
    }
    let t = target(ctx, name, q).await?;
    let [opts] = t.hosts.as_slice() else {
        return Err(Error::Invalid {
            object: format!("Service/{name}"),
            field: "host".into(),
            message: format!(
                "runs on {} hosts ({}): name the one to restore with --host",
                t.hosts.len(),
                t.hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    };
    let r = Restore {
        source: t.storage_path.clone(),
        root: t.root.clone(),
        id: id.to_string(),
        entries: t.plan.paths.clone(),
        units: t.daemon_unit.iter().cloned().collect(),
    };
    let ssh = Ssh::connect(opts)
        .await
        .map_err(|e| upstream(&opts.name, e))?;
    let snaps = backup::list(&ssh, &t.root)
        .await
        .map_err(|e| upstream(&opts.name, e))?;
    if !snaps.iter().any(|s| s.id == id) {
        return Err(Error::Invalid {
            object: format!("Service/{name}"),
            field: "id".into(),
            message: format!("{}: no snapshot {id} of storage {}", opts.name, q.storage),
        });
    }
    if dry_run {
        return Ok(json!({"kind": "RestorePlan", "host": opts.name, "steps": r.describe()}));
    }
    // An apply on this host waits for the restore (and the restore for an apply): an
    // apply's restart in the middle would start the daemon on half-replaced data.
    let _guard = hosts.lock(&opts.name).await;
    let undo = backup::restore(&ssh, &r)
        .await
        .map_err(|e| upstream(&opts.name, e))?;
    Ok(json!({"kind": "RestoreResult", "host": opts.name, "restored": id, "undo": undo}))
}
