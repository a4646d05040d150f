//! What a Revision keeps of each apply, and undoing it.
//!
//! A [`Run`] is one apply on one host, reduced to what a rollback needs: the changes and
//! their outcome, and the down plan with its backup references and sha256s. It holds no
//! file content and no secret (the down plan restores bytes from backups on the host).
//! [`undo`] runs the down plans of several runs, newest first, so that a rollback across
//! revisions walks the host back one apply at a time.
//!
//! History is written ahead: [`Run::provisional`] is recorded (`pending`) before the apply
//! starts, and replaced by [`Run::from_applied`] when it ends. A run still pending after a
//! crash is settled from the host's journal by [`settle`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::apply::Applied;
use crate::down::{self, Coverage, DownAction, DownPlan};
use crate::journal;
use crate::naming::backup_root;
use crate::outcome::Status;
use crate::plan::{Action, Prepared};
use crate::resource::Spec;
use crate::transport::{Transport, sh_quote};

/// One change of a run, as history shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunChange {
    pub id: String,
    pub action: Action,
    pub status: Status,
}

/// One apply on one host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// Names the run and its backup folder on the host.
    pub id: String,
    pub time: DateTime<Utc>,
    pub ok: bool,
    pub changes: Vec<RunChange>,
    pub down: DownPlan,
    /// Recorded before the apply began and not completed since: the controller may have
    /// died in between. Its down plan assumes every change ran, with backups whose sha256
    /// is not known yet; [`settle`] makes it true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
    /// Completed from the host's journal ([`settle`]): the controller stopped during the
    /// apply and never heard how it ended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settled: bool,
}

impl Run {
    /// The run of `prepared`, recorded before it is applied as `revision` (the run id).
    pub fn provisional(revision: &str, prepared: &Prepared, time: DateTime<Utc>) -> Run {
        Run {
            id: revision.to_string(),
            time,
            ok: false,
            changes: prepared
                .plan
                .changes
                .iter()
                .filter(|c| c.action != Action::Noop)
                .map(|c| RunChange {
                    id: c.id.clone(),
                    action: c.action,
                    status: match prepared.resources.get(&c.id).map(|r| &r.spec) {
                        // Kept without running anything (see the apply): done already.
                        Some(
                            Spec::Directory { .. } | Spec::Account { .. } | Spec::Package { .. },
                        ) if c.action == Action::Delete => Status::Applied,
                        _ => Status::NotRun,
                    },
                })
                .collect(),
            down: DownPlan::provisional(revision, prepared),
            pending: true,
            settled: false,
        }
    }

    pub fn from_applied(applied: &Applied, time: DateTime<Utc>) -> Run {
        Run {
            pending: false,
            settled: false,
            id: applied.revision.clone(),
            time,
            ok: applied.ok,
            changes: applied
                .results
                .iter()
                .filter(|r| r.status != Status::NotRun)
                .map(|r| RunChange {
                    id: r.id.clone(),
                    action: r.action,
                    status: r.status,
                })
                .collect(),
            down: applied.down.clone(),
        }
    }
}

/// Settles a run that history recorded as pending, from what the host shows: `None` when
/// it never reached the host (its folder, if any, is removed), else the run as it happened,
/// complete with the sha256 of each backup it took. A change that began and never reported
/// its end is `interrupted`, and its undo is kept: every undo step is safe to run on a
/// change that did not happen (a restore puts back the same bytes, a removal finds
/// nothing), and leaving it out could strand a change on the host.
pub async fn settle(transport: &dyn Transport, pending: &Run) -> Result<Option<Run>> {
    let found = journal::read(transport, &pending.id).await?;
    if let Some(pid) = found.running {
        return Err(crate::Error::Transport {
            host: transport.host().to_string(),
            message: format!(
                "the apply {} is still running on the host (pid {pid}), started by a controller that stopped; it is settled once it ends",
                pending.id
            ),
        });
    }
    remove_temps(transport, pending).await?;
    if found.began.is_empty() {
        remove_backups(transport, std::slice::from_ref(&pending.id)).await?;
        return Ok(None);
    }
    let status_of = |id: &str, planned: Status| match found.ended.get(id) {
        Some(0) => Status::Applied,
        Some(_) => Status::Failed,
        None if found.began.contains(id) => Status::Interrupted,
        None => planned,
    };
    let mut run = pending.clone();
    run.pending = false;
    run.settled = true;
    for c in &mut run.changes {
        c.status = status_of(&c.id, c.status);
    }
    run.ok = run
        .changes
        .iter()
        .all(|c| c.status == Status::Applied || c.action == Action::ReadError);
    let status: std::collections::BTreeMap<String, Status> = run
        .changes
        .iter()
        .map(|c| (c.id.clone(), c.status))
        .collect();
    run.down.steps.retain_mut(|step| {
        let s = status.get(&step.id).copied().unwrap_or(Status::NotRun);
        let due = match s {
            Status::Applied | Status::Interrupted => true,
            // As in the apply's own down plan: a unit whose start failed was still
            // stopped or restarted; other failed changes had no effect.
            Status::Failed => step.id.starts_with("unit:"),
            Status::NotRun => false,
        };
        due && adopt_backup(&mut step.action, &found.backups, s)
    });
    run.down.coverage = down::coverage(&run.down);
    Ok(Some(run))
}

/// Removes the staging folders a cut-off apply left beside the files it was writing.
async fn remove_temps(transport: &dyn Transport, pending: &Run) -> Result<()> {
    let dirs: std::collections::BTreeSet<&str> = pending
        .changes
        .iter()
        .filter_map(|c| c.id.strip_prefix("file:"))
        .filter_map(|p| std::path::Path::new(p).parent()?.to_str())
        .collect();
    if dirs.is_empty() {
        return Ok(());
    }
    let mut script = String::new();
    for d in dirs {
        script.push_str(&format!(
            "rm -rf -- {}\n",
            crate::scripts::temp_glob(d, &pending.id)
        ));
    }
    let out = transport.run(&script).await?;
    if out.status != 0 {
        return Err(crate::Error::Transport {
            host: transport.host().to_string(),
            message: format!(
                "removing the temps of {}: {}",
                pending.id,
                out.stderr_text().trim()
            ),
        });
    }
    Ok(())
}

/// Fills in the sha256 of the backup a restore step needs. Without the backup, a change that
/// was cut off never got past it (the backup is taken before the rename): nothing to undo.
/// One that completed found no regular file to back up after all: undoing it removes.
fn adopt_backup(
    action: &mut DownAction,
    backups: &std::collections::BTreeMap<String, String>,
    status: Status,
) -> bool {
    match action {
        DownAction::RestoreFile {
            path,
            backup,
            sha256,
            unit,
            ..
        } => match backups.get(backup.as_str()) {
            Some(sha) => {
                *sha256 = sha.clone();
                true
            }
            None if status == Status::Applied => {
                *action = DownAction::RemoveFile {
                    path: path.clone(),
                    unit: *unit,
                };
                true
            }
            None => false,
        },
        DownAction::RestoreFirewall {
            table,
            backup,
            sha256,
        } => match backups.get(backup.as_str()) {
            Some(sha) => {
                *sha256 = sha.clone();
                true
            }
            None if status == Status::Applied => {
                *action = DownAction::DeleteFirewall {
                    table: table.clone(),
                };
                true
            }
            None => false,
        },
        _ => true,
    }
}

/// The outcome of undoing runs on one host.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Undone {
    pub ok: bool,
    /// Run ids whose down plans completed.
    pub runs: Vec<String>,
    pub coverage: Coverage,
    /// The first failure, naming the step.
    pub error: Option<String>,
}

/// Runs the down plans of `runs` (give them newest first), filtered by `only`, stopping at
/// the first failure. Every step is idempotent except a command's own `down:`; a rollback
/// resumed after a crash re-runs the run it was in.
pub async fn undo(transport: &dyn Transport, runs: &[&Run], only_ids: &[String]) -> Result<Undone> {
    let mut out = Undone {
        ok: true,
        ..Default::default()
    };
    for run in runs {
        let down = down::only(&run.down, only_ids);
        let c = down::coverage(&down);
        out.coverage.reversible += c.reversible;
        out.coverage.noop += c.noop;
        out.coverage.skipped.extend(c.skipped);
        let result = down::run_down(transport, &down).await?;
        if !result.ok {
            out.ok = false;
            out.error = result
                .steps
                .iter()
                .find(|s| s.status == Status::Failed)
                .map(|s| format!("{}: {}", s.id, s.message.clone().unwrap_or_default()));
            return Ok(out);
        }
        out.runs.push(run.id.clone());
    }
    Ok(out)
}

/// Removes the backup folders of pruned runs from a host.
pub async fn remove_backups(transport: &dyn Transport, run_ids: &[String]) -> Result<()> {
    if run_ids.is_empty() {
        return Ok(());
    }
    let mut script = String::from("set -e\n");
    for id in run_ids {
        // Run ids are ours (`<name>-g<generation>-<time>`), but quote them anyway: a path
        // built from data is never trusted to be a single word.
        script.push_str(&format!("rm -rf -- {}\n", sh_quote(&backup_root(id))));
    }
    let out = transport.run(&script).await?;
    if out.status != 0 {
        return Err(crate::Error::Transport {
            host: transport.host().to_string(),
            message: format!("removing backups: {}", out.stderr_text().trim()),
        });
    }
    Ok(())
}

/// Removes the backups of an apply that no history keeps (a drift repair, a deleted
/// object's cleanup, an apply undone at once). Best effort: a leftover folder costs disk
/// space, never correctness.
pub async fn discard_backups(transport: &dyn Transport, run: &str) {
    if let Err(e) = remove_backups(transport, &[run.to_string()]).await {
        tracing::warn!(host = transport.host(), run, error = %e, "could not remove backups");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::down::tests::plan_of as plan;
    use crate::transport::Recording;

    #[tokio::test]
    async fn undo_runs_newest_first_and_stops_at_a_failure() {
        let t = Recording::default();
        let newer = Run {
            id: "svc-g2".into(),
            time: Utc::now(),
            ok: true,
            changes: vec![],
            down: plan(vec![(
                "file:/x",
                DownAction::RemoveFile {
                    path: "/x-from-g2".into(),
                    unit: false,
                },
            )]),
            pending: false,
            settled: false,
        };
        let older = Run {
            id: "svc-g1".into(),
            down: plan(vec![(
                "file:/x",
                DownAction::RemoveFile {
                    path: "/x-from-g1".into(),
                    unit: false,
                },
            )]),
            ..newer.clone()
        };
        let done = undo(&t, &[&newer, &older], &[]).await.unwrap();
        assert!(done.ok);
        assert_eq!(done.runs, ["svc-g2", "svc-g1"]);
        let scripts = t.recorded();
        assert!(scripts[0].contains("/x-from-g2") && scripts[1].contains("/x-from-g1"));

        let t = Recording::default();
        t.reply(
            "x-from-g2",
            crate::transport::Output {
                stdout: b"HK_BEGIN 0\nrm: cannot remove '/x-from-g2': Read-only file system\nHK_END 0 1\n"
                    .to_vec(),
                ..Default::default()
            },
        );
        let done = undo(&t, &[&newer, &older], &[]).await.unwrap();
        assert!(!done.ok);
        assert!(done.runs.is_empty());
        let error = done.error.unwrap();
        assert!(
            error.starts_with("file:/x: ") && error.contains("Read-only file system"),
            "{error}"
        );
        assert_eq!(t.recorded().len(), 1, "the older run was not touched");
    }

    /// A plan of three changes: an overwritten file, a unit, a new file.
    fn three_changes() -> Prepared {
        use crate::resource::{Content, FileRole, Resource};
        use crate::state::{HostState, PathState, UnitState};
        let file = |path: &str| {
            Resource::new(
                format!("file:{path}"),
                "web",
                Spec::File {
                    path: path.into(),
                    content: Content::text("new\n"),
                    owner: "root".into(),
                    group: "root".into(),
                    mode: 0o644,
                    role: FileRole::Config,
                },
            )
        };
        let mut unit = Resource::new(
            "unit:web.service",
            "web",
            Spec::Unit {
                name: "web.service".into(),
                start: true,
                wanted_by: vec![],
            },
        );
        unit.depends("file:/etc/web/a.conf", crate::resource::Edge::UnitFile);
        let resources = vec![file("/etc/web/a.conf"), unit, file("/etc/web/c.conf")];
        let mut st = HostState::default();
        st.paths.insert(
            "file:/etc/web/a.conf".into(),
            PathState::File {
                owner: "root".into(),
                group: "root".into(),
                mode: 0o644,
                sha256: "0".repeat(64),
                size: 4,
                content: None,
            },
        );
        st.paths
            .insert("file:/etc/web/c.conf".into(), PathState::Absent);
        st.units.insert(
            "web.service".into(),
            UnitState {
                load: "loaded".into(),
                active: "inactive".into(),
                enabled: "disabled".into(),
                ..Default::default()
            },
        );
        crate::plan::compute(
            "h",
            &resources,
            &[],
            &st,
            &crate::secrets::Secrets::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_provisional_run_undoes_every_change_with_backups_where_the_apply_puts_them() {
        let run = Run::provisional("web-g2-1", &three_changes(), Utc::now());
        assert!(run.pending && !run.ok);
        assert!(run.changes.iter().all(|c| c.status == Status::NotRun));
        let restore = run
            .down
            .steps
            .iter()
            .find(|s| s.id == "file:/etc/web/a.conf")
            .unwrap();
        assert_eq!(
            restore.action,
            DownAction::RestoreFile {
                path: "/etc/web/a.conf".into(),
                backup: "/var/lib/hostkit/backups/web-g2-1/files/etc/web/a.conf".into(),
                sha256: String::new(),
                salted: true,
                owner: "root".into(),
                group: "root".into(),
                mode: 0o644,
                unit: false,
            }
        );
        assert!(
            run.down.steps.iter().any(|s| s.id == "file:/etc/web/c.conf"
                && matches!(s.action, DownAction::RemoveFile { .. }))
        );
    }

    #[tokio::test]
    async fn settling_keeps_what_ran_or_was_cut_off_and_drops_what_never_began() {
        let pending = Run::provisional("web-g2-1", &three_changes(), Utc::now());
        let label = |id: &str| journal::label(&[id.to_string()]);
        let t = Recording::default();
        t.reply(
            "sed 's/^/J /'",
            crate::transport::Output {
                stdout: format!(
                    "J B {a}\nJ E {a} 0\nJ B {u}\nS {sha} /var/lib/hostkit/backups/web-g2-1/files/etc/web/a.conf\n",
                    a = label("file:/etc/web/a.conf"),
                    u = label("unit:web.service"),
                    sha = "ab".repeat(32),
                )
                .into_bytes(),
                ..Default::default()
            },
        );
        let run = settle(&t, &pending)
            .await
            .unwrap()
            .expect("it reached the host");
        assert!(!run.pending && run.settled && !run.ok);
        let status: Vec<(&str, Status)> = run
            .changes
            .iter()
            .map(|c| (c.id.as_str(), c.status))
            .collect();
        assert_eq!(
            status,
            [
                ("file:/etc/web/a.conf", Status::Applied),
                ("file:/etc/web/c.conf", Status::NotRun),
                ("unit:web.service", Status::Interrupted),
            ]
        );
        let steps: Vec<&str> = run.down.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(steps, ["unit:web.service", "file:/etc/web/a.conf"]);
        assert!(matches!(
            &run.down.steps[1].action,
            DownAction::RestoreFile { sha256, .. } if *sha256 == "ab".repeat(32)
        ));

        // Nothing began: the run never reached the host, and its folder goes.
        let t = Recording::default();
        assert_eq!(settle(&t, &pending).await.unwrap(), None);
        let scripts = t.recorded();
        assert!(
            scripts[1].contains("rm -rf -- /etc/web/.hostkit.web-g2-1.*\n"),
            "the staging folders it left go: {}",
            scripts[1]
        );
        assert!(scripts[2].contains("rm -rf -- /var/lib/hostkit/backups/web-g2-1\n"));

        // Its shell still runs (a controller was killed, the host has not noticed yet):
        // nothing is settled until it ends.
        let t = Recording::default();
        t.reply(
            "sed 's/^/J /'",
            crate::transport::Output {
                stdout: b"RUNNING 4242\n".to_vec(),
                ..Default::default()
            },
        );
        let e = settle(&t, &pending).await.unwrap_err().to_string();
        assert!(e.contains("still running") && e.contains("4242"), "{e}");
        assert_eq!(t.recorded().len(), 1, "nothing touched");
    }

    #[tokio::test]
    async fn removing_backups_quotes_each_folder() {
        let t = Recording::default();
        remove_backups(&t, &["web-g1-20261122T100000".into(), "it's".into()])
            .await
            .unwrap();
        let s = &t.recorded()[0];
        assert!(
            s.contains("rm -rf -- /var/lib/hostkit/backups/web-g1-20261122T100000\n"),
            "{s}"
        );
        assert!(
            s.contains("rm -rf -- '/var/lib/hostkit/backups/it'\\''s'"),
            "{s}"
        );
    }
}
