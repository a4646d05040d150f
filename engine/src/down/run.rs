//! Running a down plan on a host: each step's script, batched like an apply, with a
//! command's `down:` guarded so it runs at most once per run.

use super::*;

pub(super) fn down_script(action: &DownAction) -> Option<String> {
    Some(match action {
        DownAction::RemoveFile { path, .. } => format!("rm -f {}\n", sh_quote(path)),
        DownAction::RemoveReleases { dir } => crate::release::script::remove_all(dir),
        DownAction::RestoreFile {
            path,
            backup,
            sha256,
            salted,
            owner,
            group,
            mode,
            ..
        } => format!(
            r#"set -eu
b={b}; p={p}
[ "$({digest} | sha256sum | cut -c1-64)" = {sha} ] || {{ echo "backup $b does not match its recorded sha256; refusing to restore"; exit 1; }}
d=$(dirname "$p"); mkdir -p "$d"
t=$(mktemp "$d/.hostkit.XXXXXX"); trap 'rm -f "$t"' EXIT
cp "$b" "$t"; chown {o}:{g} "$t"; chmod {mode:04o} "$t"; sync "$t" 2>/dev/null || sync
mv -f "$t" "$p"; trap - EXIT
"#,
            b = sh_quote(backup),
            p = sh_quote(path),
            sha = sh_quote(sha256),
            digest = if *salted {
                let salt = crate::naming::salt_of(backup);
                format!(r#"{{ cat {}; cat "$b"; }}"#, sh_quote(&salt))
            } else {
                r#"cat "$b""#.to_string()
            },
            o = sh_quote(owner),
            g = sh_quote(group)
        ),
        DownAction::RestoreMeta {
            path,
            owner,
            group,
            mode,
        } => format!(
            "set -eu\nchown {o}:{g} {p}\nchmod {mode:04o} {p}\n",
            p = sh_quote(path),
            o = sh_quote(owner),
            g = sh_quote(group)
        ),
        // As the original: a directory the apply created goes only if nothing else was put
        // in it since; one that holds files is kept, and the step says so.
        DownAction::RemoveDir { path } => format!(
            "if [ -d {p} ] && ! rmdir -- {p} 2>/dev/null; then echo \"kept {path}: not empty\"; fi\n",
            p = sh_quote(path),
            path = path.replace('"', "")
        ),
        DownAction::RestoreLink { path, to: Some(to) } => format!(
            "set -eu\nt={p}.hostkit.$$\nln -s {to} \"$t\"\nmv -Tf \"$t\" {p}\n",
            p = sh_quote(path),
            to = sh_quote(to)
        ),
        DownAction::RestoreLink { path, to: None } => format!("rm -f {}\n", sh_quote(path)),
        DownAction::StopUnit { name, disable } => format!(
            "systemctl {} {} 2>&1 || true\n",
            if *disable { "disable --now" } else { "stop" },
            sh_quote(name)
        ),
        DownAction::RestartUnit { name } => {
            // A unit that failed hit its start limit: clear it, or restart is refused.
            format!(
                "systemctl reset-failed {n} 2>/dev/null || true\nset -e\nsystemctl restart {n}\n",
                n = sh_quote(name)
            )
        }
        DownAction::RunCommand { command, exec } => command_script(command, exec, false),
        DownAction::RestoreFirewall {
            table,
            backup,
            sha256,
        } => format!(
            "set -eu\nb={b}\n[ \"$(sha256sum < \"$b\" | cut -c1-64)\" = {sha} ] || {{ echo 'firewall backup changed; refusing'; exit 1; }}\nnft -f \"$b\"\nrm -f {stamp}\n",
            b = sh_quote(backup),
            sha = sh_quote(sha256),
            stamp = sh_quote(&firewall_stamp(table))
        ),
        DownAction::DeleteFirewall { table } => firewall_delete_script(table),
        DownAction::RestoreAccount { name, home, shell } => format!(
            "set -eu\nusermod --home {} --shell {} {}\n",
            sh_quote(home),
            sh_quote(shell),
            sh_quote(name)
        ),
        DownAction::Noop | DownAction::Skip { .. } => return None,
    })
}

pub(super) const ALREADY_UNDONE: &str = "already run by an interrupted attempt of this rollback";

/// Wraps a command's down script so that it runs once per run, however often the down plan
/// is resumed: files restore idempotently, but a command's `down:` may not be (a migration
/// down, a counter). A marker beside the run's backups records success; a command that was
/// interrupted while it ran has no marker and runs again (at least once, never twice after
/// it finished).
pub(super) fn once_script(run: &str, step: &str, script: &str) -> String {
    let marker = crate::naming::undone_marker(run, step);
    format!(
        "m={m}\nif [ -e \"$m\" ]; then echo '{ALREADY_UNDONE}'; exit 0; fi\n(\n{script}\n) || exit $?\nmkdir -p \"$(dirname \"$m\")\" && : > \"$m\"\n",
        m = sh_quote(&marker)
    )
}

/// The outcome of running a down plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DownResult {
    pub ok: bool,
    pub steps: Vec<ChangeResult>,
}

/// Runs a down plan step by step, stopping at the first failure. `daemon-reload` runs
/// after unit files change and before any unit is restarted.
pub async fn run_down(transport: &dyn Transport, down: &DownPlan) -> Result<DownResult> {
    // The scripts, in order; steps with none (noop, skipped) only report.
    let mut scripts: Vec<Option<String>> = Vec::new();
    let mut units_dirty = false;
    for step in &down.steps {
        let Some(mut script) = down_script(&step.action) else {
            scripts.push(None);
            continue;
        };
        if matches!(
            step.action,
            DownAction::RestartUnit { .. } | DownAction::StopUnit { .. }
        ) && units_dirty
        {
            script = format!("systemctl daemon-reload\n{script}");
            units_dirty = false;
        }
        if matches!(
            step.action,
            DownAction::RemoveFile { unit: true, .. } | DownAction::RestoreFile { unit: true, .. }
        ) {
            units_dirty = true;
        }
        if matches!(step.action, DownAction::RunCommand { .. }) {
            script = once_script(&down.revision, &step.id, &script);
        }
        scripts.push(Some(script));
    }
    let mut runnable: Vec<&str> = scripts.iter().flatten().map(String::as_str).collect();
    if units_dirty {
        // Unit files changed and no restart followed: systemd still has to see them.
        runnable.push("systemctl daemon-reload");
    }
    // One round trip per batch; a failure ends the batch and the down plan.
    let mut outputs: Vec<Option<(i32, String)>> = Vec::new();
    for chunk in runnable.chunks(BATCH) {
        let out = transport.run(&batch_script(chunk.iter().copied())).await?;
        let reported = parse_batch(&out.stdout_text(), chunk.len());
        let failed = reported
            .iter()
            .any(|o| o.as_ref().is_some_and(|(rc, _)| *rc != 0));
        if !failed && reported.iter().any(Option::is_none) {
            return Err(crate::Error::Transport {
                host: transport.host().to_string(),
                message: format!(
                    "the down plan stopped without reporting (exit status {}): {}",
                    out.status,
                    out.stderr_text().trim()
                ),
            });
        }
        outputs.extend(reported);
        if failed {
            break;
        }
    }

    let mut outputs = outputs.into_iter();
    let mut steps = Vec::new();
    let mut ok = true;
    for (step, script) in down.steps.iter().zip(&scripts) {
        let mut result = ChangeResult::not_run(&step.id, Action::Update, None);
        if ok {
            match (
                script,
                script.as_ref().and_then(|_| outputs.next().flatten()),
            ) {
                (None, _) => {
                    result.status = Status::Applied;
                    if let DownAction::Skip { warning } = &step.action {
                        tracing::warn!(host = transport.host(), id = %step.id, "{warning}");
                        result.message = Some(warning.clone());
                    }
                }
                (Some(_), Some((0, text))) => {
                    result.status = Status::Applied;
                    if text.contains(ALREADY_UNDONE) {
                        result.message = Some(ALREADY_UNDONE.into());
                    }
                }
                (Some(_), Some((rc, text))) => {
                    result.status = Status::Failed;
                    result.message = Some(failure_message(rc, &text));
                    ok = false;
                }
                (Some(_), None) => {
                    result.message = Some("not attempted: an earlier step failed".into());
                    ok = false;
                }
            }
        }
        steps.push(result);
    }
    Ok(DownResult { ok, steps })
}
