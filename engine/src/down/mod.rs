//! Down plans: what undoes an apply, step by step, derived from what actually ran.
//!
//! A down plan holds no file content: a restored file comes back from its backup on the
//! host, checked against the sha256 recorded when it was taken. A command's `down:` runs at
//! most once per run however often the plan is resumed (a marker beside the run's backups).
//! What cannot be undone (a package, an account, an irreversible command) is a `Skip` step
//! with its reason, never silently dropped; [`Coverage`] counts it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Result;
use crate::batch::{BATCH, batch_script, parse_batch};
use crate::outcome::{ChangeResult, Status};
use crate::plan::{Action, Prepared};
use crate::resource::{CommandSpec, Down, FileRole, Resource, Spec};
use crate::scripts::{command_script, failure_message, firewall_delete_script};
use crate::state::firewall_stamp;
use crate::transport::{Transport, sh_quote};

mod run;
#[cfg(test)]
use run::{ALREADY_UNDONE, down_script, once_script};
pub use run::{DownResult, run_down};

/// One step of a down plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "camelCase")]
pub enum DownAction {
    /// The apply created the file: remove it.
    #[serde(rename_all = "camelCase")]
    RemoveFile { path: String, unit: bool },
    /// The apply overwrote or deleted the file: put the backup back, byte-exact.
    #[serde(rename_all = "camelCase")]
    RestoreFile {
        path: String,
        backup: String,
        sha256: String,
        /// `sha256` is of the backup's salt and then its content.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        salted: bool,
        owner: String,
        group: String,
        #[serde(with = "hostkit_api::values::mode_text")]
        mode: u32,
        unit: bool,
    },
    #[serde(rename_all = "camelCase")]
    RestoreMeta {
        path: String,
        owner: String,
        group: String,
        #[serde(with = "hostkit_api::values::mode_text")]
        mode: u32,
    },
    #[serde(rename_all = "camelCase")]
    RemoveDir { path: String },
    #[serde(rename_all = "camelCase")]
    RestoreLink { path: String, to: Option<String> },
    #[serde(rename_all = "camelCase")]
    StopUnit { name: String, disable: bool },
    #[serde(rename_all = "camelCase")]
    RestartUnit { name: String },
    #[serde(rename_all = "camelCase")]
    RunCommand {
        command: Box<CommandSpec>,
        exec: Vec<String>,
    },
    #[serde(rename_all = "camelCase")]
    RestoreFirewall {
        table: String,
        backup: String,
        sha256: String,
    },
    #[serde(rename_all = "camelCase")]
    DeleteFirewall { table: String },
    /// The apply made a Service's first release: remove every release of it.
    #[serde(rename_all = "camelCase")]
    RemoveReleases { dir: String },
    #[serde(rename_all = "camelCase")]
    RestoreAccount {
        name: String,
        home: String,
        shell: String,
    },
    /// Nothing to do, on purpose (`down: noop`).
    Noop,
    /// Cannot be undone; reported, never silently dropped.
    #[serde(rename_all = "camelCase")]
    Skip { warning: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownStep {
    pub id: String,
    pub action: DownAction,
}

/// How much of an apply its down plan undoes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    pub reversible: usize,
    pub noop: usize,
    pub skipped: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownPlan {
    pub host: String,
    pub revision: String,
    pub steps: Vec<DownStep>,
    pub coverage: Coverage,
}

fn s(v: &Option<Value>, key: &str) -> Option<String> {
    v.as_ref()?.get(key)?.as_str().map(String::from)
}

/// What undoes one change.
enum Undo {
    Step(DownAction),
    /// A restart, which goes after every other step (once the files a unit reads are back).
    Restart(String),
    Nothing,
}

/// The owner, group and mode a path had before the change (`default_mode` when unknown).
fn meta_before(before: &Option<Value>, default_mode: u32) -> (String, String, u32) {
    (
        s(before, "owner").unwrap_or_else(|| "root".into()),
        s(before, "group").unwrap_or_else(|| "root".into()),
        s(before, "mode")
            .and_then(|m| u32::from_str_radix(&m, 8).ok())
            .unwrap_or(default_mode),
    )
}

/// How to undo `res`, a change of the resource `r` that ran.
fn undo_of(res: &ChangeResult, r: &Resource) -> Undo {
    let spec = &r.spec;
    let before = &res.before;
    let existed = before
        .as_ref()
        .map(|b| b.get("exists") != Some(&Value::Bool(false)) && b.get("type").is_some())
        .unwrap_or(false);
    Undo::Step(match spec {
        Spec::File { path, role, .. } => match (&res.backup, existed) {
            (Some(b), true) => {
                let (owner, group, mode) = meta_before(before, 0o644);
                DownAction::RestoreFile {
                    path: path.clone(),
                    backup: b.path.clone(),
                    sha256: b.sha256.clone(),
                    salted: b.salted,
                    owner,
                    group,
                    mode,
                    unit: *role == FileRole::Unit,
                }
            }
            (None, true) => {
                let (owner, group, mode) = meta_before(before, 0o644);
                DownAction::RestoreMeta {
                    path: path.clone(),
                    owner,
                    group,
                    mode,
                }
            }
            (_, false) if r.keep_on_rollback => DownAction::Skip {
                warning: format!("file {path} is kept (rollback: keep)"),
            },
            (_, false) => DownAction::RemoveFile {
                path: path.clone(),
                unit: *role == FileRole::Unit,
            },
        },
        Spec::Directory { .. } if res.action == Action::Delete => return Undo::Nothing,
        Spec::Directory { path, .. } if existed => {
            let (owner, group, mode) = meta_before(before, 0o755);
            DownAction::RestoreMeta {
                path: path.clone(),
                owner,
                group,
                mode,
            }
        }
        Spec::Directory {
            path,
            delete_if_created: true,
            ..
        } => DownAction::RemoveDir { path: path.clone() },
        Spec::Directory { path, .. } => DownAction::Skip {
            warning: format!(
                "directory {path} is kept (set rollback: deleteIfCreated to remove it)"
            ),
        },
        Spec::Symlink { path, .. } => DownAction::RestoreLink {
            path: path.clone(),
            to: s(before, "to"),
        },
        Spec::Account { name, .. } if existed || res.action == Action::Update => {
            DownAction::RestoreAccount {
                name: name.clone(),
                home: s(before, "home").unwrap_or_default(),
                shell: s(before, "shell").unwrap_or_default(),
            }
        }
        Spec::Account { name, .. } => DownAction::Skip {
            warning: format!("account {name} is kept (accounts are never removed)"),
        },
        Spec::Package { name, .. } => DownAction::Skip {
            warning: format!("package {name} is kept (packages are never removed)"),
        },
        Spec::Unit { name, .. } => {
            let was_active = s(before, "active").as_deref() == Some("active");
            if res.action == Action::Delete || was_active {
                return Undo::Restart(name.clone());
            }
            DownAction::StopUnit {
                name: name.clone(),
                disable: s(before, "enabled").as_deref() != Some("enabled"),
            }
        }
        Spec::Command(c) => match &c.down {
            Down::Exec(argv) => DownAction::RunCommand {
                command: Box::new(c.clone()),
                exec: argv.clone(),
            },
            Down::Noop => DownAction::Noop,
            Down::Irreversible => DownAction::Skip {
                warning: format!("command {} is irreversible (no down)", c.name),
            },
        },
        // The first release goes with everything it brought; a later one stays (its
        // `current` link switches back, to a release that is still there).
        Spec::Release(rel) => match res.action {
            Action::Create => DownAction::RemoveReleases {
                dir: rel.dir.clone(),
            },
            Action::Delete => DownAction::Skip {
                warning: format!(
                    "the releases in {} were removed; the spec's next pass fetches its release again",
                    rel.releases_dir()
                ),
            },
            _ => DownAction::Noop,
        },
        Spec::Firewall { table, .. } => match &res.backup {
            Some(b) => DownAction::RestoreFirewall {
                table: table.clone(),
                backup: b.path.clone(),
                sha256: b.sha256.clone(),
            },
            None => DownAction::DeleteFirewall {
                table: table.clone(),
            },
        },
    })
}

/// Where the apply backs up what `spec` had (`before`), as its scripts do: a regular file
/// before it is overwritten or removed, a loaded table before a new ruleset replaces it.
fn expected_backup(
    spec: &Spec,
    action: Action,
    before: &Option<Value>,
    root: &str,
) -> Option<crate::outcome::Backup> {
    let backup = |path: String, salted| crate::outcome::Backup {
        path,
        sha256: String::new(),
        salted,
    };
    match spec {
        Spec::File { path, .. } if s(before, "type").as_deref() == Some("file") => {
            Some(backup(crate::naming::file_backup(root, path), true))
        }
        Spec::Firewall { table, .. }
            if action != Action::Delete
                && before
                    .as_ref()
                    .and_then(|b| b.get("loaded"))
                    .is_some_and(|l| !l.is_null()) =>
        {
            Some(backup(crate::naming::firewall_backup(root, table), false))
        }
        _ => None,
    }
}

impl DownPlan {
    /// Derives the down plan from what ran: reverse order, unit restarts last (after the
    /// files they read are back).
    pub fn derive(
        host: &str,
        revision: &str,
        results: &[ChangeResult],
        prepared: &Prepared,
    ) -> DownPlan {
        let mut steps = Vec::new();
        let mut restarts = Vec::new();
        // A unit whose (re)start failed was still stopped or restarted: its undo is due
        // too. Other failed changes had no effect (files are renamed into place at the end).
        let undo_due = |r: &&ChangeResult| {
            r.status == Status::Applied || (r.status == Status::Failed && r.id.starts_with("unit:"))
        };
        for res in results.iter().rev().filter(undo_due) {
            let Some(r) = prepared.resources.get(&res.id) else {
                continue;
            };
            let id = res.id.clone();
            match undo_of(res, r) {
                Undo::Step(action) => steps.push(DownStep { id, action }),
                Undo::Restart(name) => restarts.push(DownStep {
                    id,
                    action: DownAction::RestartUnit { name },
                }),
                Undo::Nothing => {}
            }
        }
        steps.extend(restarts);
        let mut down = DownPlan {
            host: host.to_string(),
            revision: revision.to_string(),
            steps,
            coverage: Coverage::default(),
        };
        down.coverage = coverage(&down);
        down
    }

    /// The down plan of `prepared` as if every change ran, with each backup where the apply
    /// will put it and its sha256 still unknown: what history records before the apply
    /// starts. [`crate::run::settle`] narrows it to what did run after a crash.
    pub fn provisional(revision: &str, prepared: &Prepared) -> DownPlan {
        let root = crate::naming::backup_root(revision);
        let results: Vec<ChangeResult> = prepared
            .plan
            .changes
            .iter()
            .filter(|c| !matches!(c.action, Action::Noop | Action::ReadError))
            .map(|c| {
                let mut r = ChangeResult::not_run(&c.id, c.action, c.before.clone());
                r.status = Status::Applied;
                r.backup = prepared
                    .resources
                    .get(&c.id)
                    .and_then(|res| expected_backup(&res.spec, c.action, &c.before, &root));
                r
            })
            .collect();
        DownPlan::derive(&prepared.plan.host, revision, &results, prepared)
    }

    /// Keeps only the steps of `only` (resource ids); unit restarts of kept files stay.
    pub fn only(&self, only: &[String]) -> DownPlan {
        self::only(self, only)
    }

    pub fn render(&self) -> String {
        let mut out = format!(
            "down plan of {} on {}: {} steps ({} reversible, {} noop, {} skipped)\n",
            self.revision,
            self.host,
            self.steps.len(),
            self.coverage.reversible,
            self.coverage.noop,
            self.coverage.skipped.len()
        );
        for s in &self.steps {
            let what = match &s.action {
                DownAction::RemoveFile { path, .. } => format!("remove {path}"),
                DownAction::RestoreFile { path, backup, .. } => {
                    format!("restore {path} from {backup}")
                }
                DownAction::RestoreMeta {
                    path,
                    owner,
                    group,
                    mode,
                } => format!("restore {path} to {owner}:{group} {mode:04o}"),
                DownAction::RemoveDir { path } => format!("remove directory {path} if empty"),
                DownAction::RestoreLink { path, to: Some(t) } => {
                    format!("point {path} back to {t}")
                }
                DownAction::RestoreLink { path, to: None } => format!("remove symlink {path}"),
                DownAction::StopUnit { name, .. } => format!("stop {name}"),
                DownAction::RestartUnit { name } => format!("restart {name}"),
                DownAction::RunCommand { exec, .. } => format!("run {}", exec.join(" ")),
                DownAction::RestoreFirewall { table, .. } => {
                    format!("reload previous table {table}")
                }
                DownAction::DeleteFirewall { table } => format!("delete table {table}"),
                DownAction::RestoreAccount { name, .. } => format!("restore account {name}"),
                DownAction::RemoveReleases { dir } => format!("remove every release in {dir}"),
                DownAction::Noop if s.id.starts_with("release:") => {
                    "keep the release (the current link points back at the previous one)".into()
                }
                DownAction::Noop => "nothing (down: noop)".into(),
                DownAction::Skip { warning } => format!("skip: {warning}"),
            };
            out.push_str(&format!("  {}  {what}\n", s.id));
        }
        out
    }
}

/// Keeps the steps of `only` (resource ids), and, when a file of them is restored, the
/// unit restarts of the down plan: a daemon must read its restored config.
pub fn only(down: &DownPlan, only: &[String]) -> DownPlan {
    if only.is_empty() {
        return down.clone();
    }
    let mut d = down.clone();
    let restores_files = down
        .steps
        .iter()
        .any(|s| only.contains(&s.id) && s.id.starts_with("file:"));
    d.steps.retain(|s| {
        only.contains(&s.id)
            || (restores_files && matches!(s.action, DownAction::RestartUnit { .. }))
    });
    d.coverage = coverage(&d);
    d
}

/// Recounts a down plan's coverage after filtering.
pub fn coverage(down: &DownPlan) -> Coverage {
    let mut c = Coverage::default();
    for s in &down.steps {
        match &s.action {
            DownAction::Noop => c.noop += 1,
            DownAction::Skip { warning } => c.skipped.push((s.id.clone(), warning.clone())),
            _ => c.reversible += 1,
        }
    }
    c
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::naming::backup_root;
    use crate::transport::Recording;

    pub(crate) fn plan_of(steps: Vec<(&str, DownAction)>) -> DownPlan {
        let mut d = DownPlan {
            host: "h".into(),
            revision: "r".into(),
            steps: steps
                .into_iter()
                .map(|(id, action)| DownStep {
                    id: id.into(),
                    action,
                })
                .collect(),
            coverage: Coverage::default(),
        };
        d.coverage = coverage(&d);
        d
    }

    fn demo() -> DownPlan {
        plan_of(vec![
            (
                "file:/etc/a.env",
                DownAction::RemoveFile {
                    path: "/etc/a.env".into(),
                    unit: false,
                },
            ),
            (
                "file:/etc/b.conf",
                DownAction::RemoveFile {
                    path: "/etc/b.conf".into(),
                    unit: false,
                },
            ),
            (
                "command:migrate",
                DownAction::Skip {
                    warning: "command migrate is irreversible (no down)".into(),
                },
            ),
            ("command:seed", DownAction::Noop),
            (
                "unit:app.service",
                DownAction::RestartUnit {
                    name: "app.service".into(),
                },
            ),
        ])
    }

    #[test]
    fn only_keeps_the_named_steps_and_the_restarts_of_restored_files() {
        let d = only(&demo(), &["file:/etc/a.env".into()]);
        let ids: Vec<&str> = d.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["file:/etc/a.env", "unit:app.service"]);
        assert_eq!(d.coverage.reversible, 2);
        let d = only(&demo(), &["command:seed".into()]);
        let ids: Vec<&str> = d.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["command:seed"], "no file restored: no restart");
        assert_eq!(only(&demo(), &[]).steps.len(), 5);
    }

    #[test]
    fn coverage_reports_irreversible_and_noop_steps() {
        let c = coverage(&demo());
        assert_eq!(c.reversible, 3);
        assert_eq!(c.noop, 1);
        assert_eq!(
            c.skipped,
            [(
                "command:migrate".to_string(),
                "command migrate is irreversible (no down)".to_string()
            )]
        );
    }

    fn unit_down_plan() -> DownPlan {
        let step = |id: &str, action| DownStep {
            id: id.into(),
            action,
        };
        DownPlan {
            host: "h".into(),
            revision: "web-g2-1".into(),
            steps: vec![
                step(
                    "file:/etc/systemd/system/web.service",
                    DownAction::RemoveFile {
                        path: "/etc/systemd/system/web.service".into(),
                        unit: true,
                    },
                ),
                step("command:warm", DownAction::Noop),
                step(
                    "unit:web",
                    DownAction::RestartUnit {
                        name: "web.service".into(),
                    },
                ),
            ],
            coverage: Coverage::default(),
        }
    }

    #[tokio::test]
    async fn a_down_plan_is_one_round_trip_with_the_reload_before_the_restart() {
        let t = Recording::default();
        let r = run_down(&t, &unit_down_plan()).await.unwrap();
        assert!(r.ok);
        assert!(r.steps.iter().all(|s| s.status == Status::Applied));
        let scripts = t.recorded();
        assert_eq!(scripts.len(), 1, "{scripts:?}");
        let s = &scripts[0];
        let rm = s.find("rm -f /etc/systemd/system/web.service").unwrap();
        let reload = s.find("systemctl daemon-reload").unwrap();
        let restart = s.find("systemctl restart web.service").unwrap();
        assert!(rm < reload && reload < restart, "{s}");
        assert_eq!(s.matches("daemon-reload").count(), 1, "{s}");
    }

    #[tokio::test]
    async fn a_failed_down_step_is_named_with_its_output_and_ends_the_plan() {
        let t = Recording::default();
        t.reply(
            "systemctl restart",
            crate::transport::Output {
                stdout:
                    b"HK_BEGIN 0\nHK_END 0 0\nHK_BEGIN 1\nJob for web.service failed.\nHK_END 1 1\n"
                        .to_vec(),
                ..Default::default()
            },
        );
        let r = run_down(&t, &unit_down_plan()).await.unwrap();
        assert!(!r.ok);
        let status: Vec<Status> = r.steps.iter().map(|s| s.status).collect();
        assert_eq!(status, [Status::Applied, Status::Applied, Status::Failed]);
        assert!(
            r.steps[2]
                .message
                .as_deref()
                .is_some_and(|m| m.contains("Job for web.service failed.")),
            "{:?}",
            r.steps[2]
        );
        // A connection that ends before anything reports is an error to retry, not a result.
        let t = Recording::default();
        t.reply(
            "systemctl restart",
            crate::transport::Output {
                status: 255,
                stderr: b"Connection reset".to_vec(),
                ..Default::default()
            },
        );
        let e = run_down(&t, &unit_down_plan()).await.unwrap_err();
        assert!(e.to_string().contains("Connection reset"), "{e}");
    }

    /// The wrapper's shell logic, run by the real `sh` with the marker folder moved into a
    /// temp dir.
    #[test]
    fn a_commands_down_runs_once_across_resumes_and_again_if_it_failed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let run = |inner: &str| {
            let script = once_script("web-g2-1", "command:migrate", inner)
                .replace(&backup_root(""), &format!("{}/", dir.path().display()));
            assert!(!script.contains("/var/lib/hostkit"), "{script}");
            std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap()
        };
        let marker = dir
            .path()
            .join("web-g2-1/undone")
            .join(hex::encode("command:migrate"));
        let failing = format!("echo tried >> {}; exit 3", log.display());
        assert_eq!(run(&failing).status.code(), Some(3));
        assert!(!marker.exists(), "a failed down leaves no marker");
        let ok = format!("echo done >> {}", log.display());
        assert_eq!(run(&ok).status.code(), Some(0));
        assert!(marker.exists());
        let again = run(&ok);
        assert_eq!(again.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&again.stdout).contains(ALREADY_UNDONE));
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "tried\ndone\n",
            "ran until it succeeded, then never again"
        );
    }

    /// Backup and restore under the real `sh`: the recorded sha256 is salted (a plain hash of
    /// the old content never reaches history), a restore checks it, a tampered backup is
    /// refused.
    #[test]
    fn a_backup_is_salted_and_checked_before_it_is_restored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.env");
        let root = dir.path().join("backups/run1");
        std::fs::write(&file, "SECRET=hunter2\n").unwrap();
        let sh = |script: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .output()
                .unwrap()
        };
        let path = file.to_str().unwrap();
        let out = sh(&crate::scripts::backup_script(path, root.to_str().unwrap()));
        let backup = crate::scripts::parse_backups(&String::from_utf8_lossy(&out.stdout))
            .next()
            .unwrap();
        assert!(backup.salted);
        use sha2::Digest;
        let plain = hex::encode(sha2::Sha256::digest(b"SECRET=hunter2\n"));
        assert_ne!(
            backup.sha256, plain,
            "history must not hold a plain hash of the content"
        );
        std::fs::write(&file, "SECRET=changed\n").unwrap();
        let restore = DownAction::RestoreFile {
            path: path.into(),
            backup: backup.path.clone(),
            sha256: backup.sha256.clone(),
            salted: true,
            owner: "root".into(),
            group: "root".into(),
            mode: 0o600,
            unit: false,
        };
        let script = down_script(&restore)
            .unwrap()
            .replace("chown root:root \"$t\"; ", "");
        let ok = sh(&script);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stdout)
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "SECRET=hunter2\n");
        std::fs::write(&backup.path, "SECRET=forged\n").unwrap();
        let refused = sh(&script);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stdout).contains("does not match"));
    }
}
