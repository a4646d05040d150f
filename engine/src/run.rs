//! What a Revision keeps of each apply, and undoing it.
//!
//! A [`Run`] is one apply on one host, reduced to what a rollback needs: the changes and
//! their outcome, and the down plan with its backup references and sha256s. It holds no
//! file content and no secret (the down plan restores bytes from backups on the host).
//! [`undo`] runs the down plans of several runs, newest first, so that a rollback across
//! revisions walks the host back one apply at a time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::apply::Applied;
use crate::down::{self, Coverage, DownPlan};
use crate::naming::backup_root;
use crate::outcome::Status;
use crate::plan::Action;
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
}

impl Run {
    pub fn from_applied(applied: &Applied, time: DateTime<Utc>) -> Run {
        Run {
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
    use crate::down::DownAction;
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
