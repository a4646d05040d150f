//! Apply: a prepared plan's changes run on the host in graph order, and the first failure
//! stops the apply (later changes are left untouched).
//!
//! Files are written atomically (staged in a folder inside the same directory, fsync, owner
//! and mode set, rename: `files_step.rs`); a file-like resource's previous bytes are backed
//! up on the host under `/var/lib/hostkit/backups/<revision>/files/` (0600) first, and the
//! backup's sha256 is recorded. Changes travel in batches ([`crate::batch`]): one round trip per batch, each
//! change still judged on its own, and each written to the run's journal on the host
//! ([`crate::journal`]) as it begins and ends. From what actually ran, [`DownPlan::derive`]
//! builds the plan that undoes it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::batch::{BATCH, BATCH_BYTES, journaled_batch_script, parse_batch};
use crate::down::DownPlan;
use crate::journal;
use crate::naming::{backup_root, journal_path};
use crate::outcome::{ChangeResult, Status};
use crate::packages;
use crate::plan::{Action, Change, PackageLock, Plan, Prepared};
use crate::resource::{FileRole, Resource, Spec};
use crate::scripts::{self, output_message};
use crate::transport::Transport;
use crate::{Error, Result};

mod files_step;
mod packages_step;
mod units;

/// What an apply did, and how to undo it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub host: String,
    pub revision: String,
    pub plan_fingerprint: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The host stopped answering before it reported every step it was sent (the
    /// connection ended): what ran is known only to its journal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
    pub results: Vec<ChangeResult>,
    /// The desired resources (secret references only), the next plan's `previous`.
    pub resources: Vec<Resource>,
    /// The plan's lock plus what this apply installed: the next plan's lock.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub package_lock: PackageLock,
    pub down: DownPlan,
    /// How long the apply's scripts, unit starts and settle windows took.
    #[serde(skip)]
    pub timings: crate::timings::Timings,
}

impl Applied {
    /// How many changes ended with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.results.iter().filter(|r| r.status == status).count()
    }
}

/// Called after each change with its result.
pub type Progress = Box<dyn Fn(&ChangeResult) + Send + Sync>;

pub struct ApplyOptions {
    /// Names the backup folder and the result.
    pub revision: String,
    /// How long a (re)started unit must stay active before the apply goes on.
    pub settle: Duration,
    /// Called after each change (for progress lines and events).
    pub progress: Option<Progress>,
    /// Back up what changes and journal each step: an apply that history keeps. A repair
    /// of drift or a deleted object's cleanup is never undone, and leaves nothing behind.
    pub backups: bool,
}

impl ApplyOptions {
    pub fn new(revision: impl Into<String>) -> Self {
        ApplyOptions {
            revision: revision.into(),
            settle: Duration::from_millis(300),
            progress: None,
            backups: true,
        }
    }
}

/// Refuses `expected` when the fresh plan differs in what it would touch: a change whose
/// host state or desired state is not the same any more, or a new change.
pub fn check_fresh(expected: &Plan, fresh: &Plan) -> Result<()> {
    let mut changed = Vec::new();
    for c in fresh.changes.iter().filter(|c| c.action != Action::Noop) {
        match expected.changes.iter().find(|e| e.id == c.id) {
            Some(e)
                if e.action == c.action
                    && e.fingerprint == c.fingerprint
                    && e.desired == c.desired => {}
            _ => changed.push(c.id.clone()),
        }
    }
    for e in expected.changes.iter().filter(|c| c.action != Action::Noop) {
        if !fresh
            .changes
            .iter()
            .any(|c| c.id == e.id && c.action != Action::Noop)
            && !changed.contains(&e.id)
        {
            changed.push(e.id.clone());
        }
    }
    if changed.is_empty() {
        Ok(())
    } else {
        Err(Error::StalePlan {
            host: fresh.host.clone(),
            changed,
        })
    }
}

/// Changes waiting to be sent in the next batch.
struct Pending {
    /// The changes this script covers (several for one package install).
    ids: Vec<String>,
    result: ChangeResult,
    script: String,
}

/// What one change needs on the host.
enum Step {
    /// A script to run, for these change ids.
    Run { ids: Vec<String>, script: String },
    /// Nothing to run; this is its result (a kept directory, account or package).
    Done(ChangeResult),
}

/// An apply in progress: the results so far and what the next batch carries.
struct Applying<'a> {
    prepared: &'a Prepared,
    opts: &'a ApplyOptions,
    /// The changes that do something, in graph order.
    changes: Vec<&'a Change>,
    /// `/var/lib/hostkit/backups/<revision>`, when the apply takes backups.
    root: Option<String>,
    /// The run's folder and journal are not created yet.
    unopened: bool,
    results: Vec<ChangeResult>,
    /// The first failure, naming the change.
    failed: Option<String>,
    /// A step was sent and never reported.
    lost: bool,
    /// A unit file changed since the last `daemon-reload`.
    units_dirty: bool,
    /// Changes already sent (a package install covers several).
    done: BTreeSet<String>,
    pending: Vec<Pending>,
    /// Staging folders named so far ([`files_step::staging_dir`]).
    staged: usize,
    timings: crate::timings::Timings,
}

/// Applies a prepared plan. Returns what ran (also on failure, with `ok: false`).
pub async fn apply(
    transport: &dyn Transport,
    prepared: &Prepared,
    opts: &ApplyOptions,
) -> Result<Applied> {
    let changes: Vec<&Change> = prepared
        .plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Noop)
        .collect();
    let mut a = Applying {
        prepared,
        opts,
        changes,
        root: opts.backups.then(|| backup_root(&opts.revision)),
        unopened: opts.backups,
        results: Vec::new(),
        failed: None,
        lost: false,
        units_dirty: false,
        done: BTreeSet::new(),
        pending: Vec::new(),
        staged: 0,
        timings: Default::default(),
    };
    for i in 0..a.changes.len() {
        let change = a.changes[i];
        if a.done.contains(&change.id) {
            continue;
        }
        let mut result = ChangeResult::not_run(&change.id, change.action, change.before.clone());
        if a.failed.is_some() {
            result.message = Some("not attempted: an earlier change failed".into());
            a.results.push(result);
            continue;
        }
        if change.action == Action::ReadError {
            result.message = Some(format!("not changed: {}", change.reason));
            a.results.push(result);
            continue;
        }
        match a.step(i, change) {
            Step::Done(mut done) => {
                done.before = change.before.clone();
                a.results.push(done);
            }
            Step::Run { ids, script } => {
                tracing::debug!(host = transport.host(), id = %change.id, "applying");
                a.done.extend(ids.iter().cloned());
                a.pending.push(Pending {
                    ids,
                    result,
                    script,
                });
                if a.pending.len() >= BATCH
                    || a.pending.iter().map(|p| p.script.len()).sum::<usize>() > BATCH_BYTES
                {
                    a.flush(transport).await;
                }
            }
        }
    }
    a.flush(transport).await;
    if a.units_dirty && a.failed.is_none() {
        let t = std::time::Instant::now();
        let out = transport.run("systemctl daemon-reload").await?;
        a.timings.add("apply script", t.elapsed());
        if out.status != 0 {
            a.failed = Some(format!("systemctl daemon-reload: {}", output_message(&out)));
        }
    }
    Ok(a.finish())
}

impl Applying<'_> {
    /// The script for change `i` (or its result, when nothing needs to run).
    fn step(&mut self, i: usize, change: &Change) -> Step {
        let r = &self.prepared.resources[&change.id];
        let run = |script: String| Step::Run {
            ids: vec![change.id.clone()],
            script,
        };
        let kept = |message: &str| {
            let mut done = ChangeResult::not_run(&change.id, change.action, None);
            done.status = Status::Applied;
            done.message = Some(message.into());
            Step::Done(done)
        };
        match (&r.spec, change.action) {
            (Spec::File { path, role, .. }, Action::Delete) => {
                if *role == FileRole::Unit {
                    self.units_dirty = true;
                }
                run(scripts::remove_file_script(path, self.root.as_deref()))
            }
            (Spec::Symlink { path, .. }, Action::Delete) => {
                run(scripts::remove_file_script(path, self.root.as_deref()))
            }
            (Spec::File { .. }, _) => self.files_step(i),
            (Spec::Directory { .. }, Action::Delete) => {
                kept("kept: directories are not removed when they leave the spec")
            }
            (
                Spec::Directory {
                    path,
                    owner,
                    group,
                    mode,
                    ..
                },
                _,
            ) => run(scripts::directory_script(path, owner, group, *mode)),
            (Spec::Symlink { path, to }, _) => run(scripts::symlink_script(path, to)),
            (
                Spec::Account {
                    name,
                    system,
                    home,
                    shell,
                    groups,
                },
                Action::Create,
            ) => run(scripts::useradd_script(name, *system, home, shell, groups)),
            (
                Spec::Account {
                    name,
                    home,
                    shell,
                    groups,
                    ..
                },
                Action::Update,
            ) => run(scripts::usermod_script(name, home, shell, groups)),
            (Spec::Package { .. }, Action::Create | Action::Update) => self.packages_step(i),
            (Spec::Unit { name, .. }, Action::Delete) => {
                self.units_dirty = true;
                run(scripts::unit_disable_script(name))
            }
            (
                Spec::Unit {
                    name,
                    start,
                    wanted_by,
                },
                _,
            ) => {
                let mut s = String::new();
                if self.units_dirty {
                    s.push_str("systemctl daemon-reload\n");
                    self.units_dirty = false;
                }
                if *start {
                    return self.units_step(i, s);
                }
                s.push_str(&scripts::enable_script(name, wanted_by));
                run(s)
            }
            (Spec::Command(c), _) => run(scripts::command_script(c, &c.exec, true)),
            (Spec::Firewall { table, .. }, Action::Delete) => {
                run(scripts::firewall_delete_script(table))
            }
            (Spec::Firewall { table, file }, _) => run(scripts::firewall_load_script(
                table,
                file,
                self.root.as_deref(),
            )),
            (Spec::Release(rel), Action::Delete) => {
                run(crate::release::script::remove_all(&rel.dir))
            }
            (Spec::Release(rel), _) => run(crate::release::script::apply(rel)),
            (Spec::Account { .. } | Spec::Package { .. }, _) => {
                kept("kept: accounts and packages are not removed")
            }
        }
    }

    /// Runs the pending changes as one script with a begin/end marker around each, and
    /// records each change's own outcome.
    async fn flush(&mut self, transport: &dyn Transport) {
        if self.pending.is_empty() {
            return;
        }
        let mut script = String::new();
        if self.unopened {
            script.push_str(&journal::open_script(&self.opts.revision));
            self.unopened = false;
        }
        let labels: Vec<String> = self
            .pending
            .iter()
            .map(|p| journal::label(&p.ids))
            .collect();
        let journal = self
            .root
            .is_some()
            .then(|| journal_path(&self.opts.revision));
        script.push_str(&journaled_batch_script(
            labels
                .iter()
                .zip(&self.pending)
                .map(|(l, p)| (l.as_str(), p.script.as_str())),
            journal.as_deref(),
        ));
        let mut outputs: Vec<Option<(i32, String)>> = vec![None; self.pending.len()];
        let mut transport_error = None;
        let started = std::time::Instant::now();
        let ran = transport.run(&script).await;
        let took = started.elapsed();
        match ran {
            Err(e) => transport_error = Some(e.to_string()),
            Ok(out) => {
                outputs = parse_batch(&out.stdout_text(), self.pending.len());
                if outputs.iter().any(Option::is_none) && out.status != 0 {
                    transport_error = Some(format!(
                        "exit status {}: {}",
                        out.status,
                        out.stderr_text().trim()
                    ));
                }
            }
        }
        // The units' own start and settle times, out of the batch's round trip.
        let (mut units_ms, mut settle_ms) = (0u64, 0u64);
        for (_, text) in outputs.iter().flatten() {
            if let Some((u, s)) = units::timing(text) {
                units_ms += u;
                settle_ms += s;
            }
        }
        let (units_t, settle_t) = (
            std::time::Duration::from_millis(units_ms),
            std::time::Duration::from_millis(settle_ms),
        );
        self.timings.add(
            "apply script",
            took.saturating_sub(units_t).saturating_sub(settle_t),
        );
        if units_ms > 0 || settle_ms > 0 {
            self.timings.add("unit start", units_t);
            self.timings.add("settle", settle_t);
        }
        let pending = std::mem::take(&mut self.pending);
        for (p, output) in pending.into_iter().zip(outputs) {
            let mut result = p.result;
            // The one change of a shared step that failed, and what the others did.
            let mut failed_only: Option<(String, Status)> = None;
            let mut backups = Vec::new();
            match output {
                Some((0, text)) => {
                    result.status = Status::Applied;
                    backups = scripts::parse_backups(&text).collect();
                    result.backup = backups.first().cloned();
                    result.locked = packages::parse_lock(&text);
                }
                Some((rc, text)) => {
                    result.status = Status::Failed;
                    // Units started together: only the one named failed.
                    if p.ids.len() > 1
                        && let Some(u) = units::failed_unit(&text)
                    {
                        // Units started together: the others were restarted, and stayed up.
                        failed_only = Some((format!("unit:{u}"), Status::Applied));
                    } else if p.ids.len() > 1
                        && let Some(k) = files_step::failed_file(&text)
                        && let Some(id) = p.ids.get(k)
                    {
                        // Files written together: the others were put back, not changed.
                        failed_only = Some((id.clone(), Status::NotRun));
                    }
                    let text = units::without_mark(&files_step::without_mark(&text));
                    let msg = scripts::failure_message(rc, &text);
                    result.message = Some(msg.clone());
                    let id = failed_only
                        .as_ref()
                        .map(|(id, _)| id.clone())
                        .unwrap_or_else(|| result.id.clone());
                    self.failed.get_or_insert_with(|| format!("{id}: {msg}"));
                }
                None if self.failed.is_none() => {
                    let msg = transport_error
                        .clone()
                        .unwrap_or_else(|| "the host did not report this change".into());
                    result.status = Status::Failed;
                    result.message = Some(msg.clone());
                    self.failed = Some(format!("{}: {msg}", result.id));
                    self.lost = true;
                }
                None => {
                    result.message = Some("not attempted: an earlier change failed".into());
                }
            }
            for id in &p.ids {
                self.done.insert(id.clone());
                let mut r = result.clone();
                r.id = id.clone();
                if let Some((failed, others)) = failed_only.as_ref().filter(|(f, _)| f != id) {
                    r.status = *others;
                    r.message = (*others == Status::NotRun).then(|| {
                        format!("not changed: written in one step with {failed}, which failed")
                    });
                }
                if let Some(c) = self.changes.iter().find(|c| &c.id == id) {
                    r.before = c.before.clone();
                }
                if p.ids.len() > 1 {
                    // Files written together: each has its own backup, found by its path.
                    let own = self.root.as_deref().zip(id.strip_prefix("file:"));
                    r.backup = own.and_then(|(root, path)| {
                        let at = crate::naming::file_backup(root, path);
                        backups.iter().find(|b| b.path == at).cloned()
                    });
                }
                if let Some(progress) = &self.opts.progress {
                    progress(&r);
                }
                self.results.push(r);
            }
        }
    }

    /// What ran, the lock it leaves, and the down plan that undoes it.
    fn finish(self) -> Applied {
        let prepared = self.prepared;
        let resources: Vec<Resource> = prepared
            .plan
            .changes
            .iter()
            .filter(|c| c.action != Action::Delete)
            .filter_map(|c| prepared.resources.get(&c.id).cloned())
            .collect();
        let down = DownPlan::derive(
            &prepared.plan.host,
            &self.opts.revision,
            &self.results,
            prepared,
        );
        let mut package_lock = prepared.lock.clone();
        for r in &self.results {
            package_lock.extend(r.locked.clone());
        }
        Applied {
            package_lock,
            host: prepared.plan.host.clone(),
            revision: self.opts.revision.clone(),
            plan_fingerprint: prepared.plan.fingerprint.clone(),
            ok: self.failed.is_none(),
            error: self.failed,
            lost: self.lost,
            results: self.results,
            resources,
            down,
            timings: self.timings,
        }
    }
}

#[cfg(test)]
mod tests;
