//! Apply and down plans.
//!
//! Changes run in graph order, one at a time, and the first failure stops the apply:
//! later changes are left untouched. Files are written atomically (temp file in the same
//! directory, fsync, owner and mode set, rename); a file-like resource's previous bytes are
//! backed up on the host under `/var/lib/hostkit/backups/<revision>/` (0600) first, and the
//! backup's sha256 is recorded. From what actually ran, [`DownPlan::derive`] builds the plan
//! that undoes it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::expand::STATE_DIR;
use crate::plan::{Action, Change, Plan, Prepared};
use crate::resource::{CommandSpec, Down, FileRole, Resource, Spec};
use crate::state::{INPUTS_FN, firewall_stamp};
use crate::transport::{Output, Transport, sh_quote};
use crate::{Error, Result};

/// Where backups of one revision live on the host.
pub fn backup_root(revision: &str) -> String {
    format!("{STATE_DIR}/backups/{revision}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Applied,
    Failed,
    /// Not attempted: a read error, or an earlier change failed.
    NotRun,
}

/// A backup of a file-like resource taken before it was overwritten or deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub path: String,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeResult {
    pub id: String,
    pub action: Action,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The state before the change (from the plan's read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
    /// Package versions this change installed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub locked: crate::plan::PackageLock,
}

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
    pub results: Vec<ChangeResult>,
    /// The desired resources (secret references only), the next plan's `previous`.
    pub resources: Vec<Resource>,
    /// The plan's lock plus what this apply installed: the next plan's lock.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub package_lock: crate::plan::PackageLock,
    pub down: DownPlan,
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
}

impl ApplyOptions {
    pub fn new(revision: impl Into<String>) -> Self {
        ApplyOptions {
            revision: revision.into(),
            settle: Duration::from_millis(300),
            progress: None,
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

fn b64(bytes: &[u8]) -> String {
    let s = base64::engine::general_purpose::STANDARD.encode(bytes);
    // 76-column lines keep every shell and base64 implementation happy.
    s.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("base64 is ascii"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The script that backs up `path` (when it is a regular file) into `root`, printing
/// `BACKUP\t<path>\t<sha256>`.
fn backup_script(path: &str, root: &str) -> String {
    format!(
        r#"if [ -f {p} ] && [ ! -L {p} ]; then
  b={root}{p}
  (umask 077; mkdir -p "$(dirname "$b")")
  cp {p} "$b"; chmod 600 "$b"
  printf 'BACKUP\t%s\t%s\n' "$b" "$(sha256sum < "$b" | cut -c1-64)"
fi
"#,
        p = sh_quote(path),
        root = sh_quote(root),
    )
}

/// A fresh temp-file name next to `path` (created exclusively, so never an existing file).
pub fn temp_path(path: &str) -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let parent = std::path::Path::new(path)
        .parent()
        .and_then(|p| p.to_str())
        .unwrap_or("/");
    format!(
        "{}/.hostkit.{}.{nanos:x}.{seq}",
        parent.trim_end_matches('/'),
        std::process::id()
    )
}

/// Creates `temp` exclusively with `bytes`, owner and mode (no fsync, no rename). Text is
/// written by the shell's own `printf` (no process, no argv); bytes with NUL or invalid
/// UTF-8 go through `base64 -d`.
fn temp_write_script(temp: &str, bytes: &[u8], owner: &str, group: &str, mode: u32) -> String {
    let t = sh_quote(temp);
    let mut s = format!("set -C\numask {:04o}\n", 0o666 & !mode & 0o777);
    match std::str::from_utf8(bytes) {
        Ok(text) if !bytes.contains(&0) => {
            s.push_str(&format!("printf '%s' {} > {t}\n", sh_single(text)));
        }
        _ => s.push_str(&format!(
            "base64 -d > {t} <<'HOSTKIT_CONTENT_EOF'\n{}\nHOSTKIT_CONTENT_EOF\n",
            b64(bytes)
        )),
    }
    s.push_str("set +C\n");
    // As root, a new file is already root:root, and a mode without x or special bits is
    // set by the umask at creation: no chown/chmod process for the common case.
    if owner != "root" || group != "root" {
        s.push_str(&format!(
            "chown {}:{} {t}\n",
            sh_quote(owner),
            sh_quote(group)
        ));
    }
    if mode & !0o666 != 0 {
        s.push_str(&format!("chmod {mode:04o} {t}\n"));
    }
    s
}

/// The script that writes `bytes` to `path` atomically with owner and mode: a temp file
/// created exclusively in the same directory, fsync, owner and mode, rename. When `temp`
/// was already written and fsynced by [`prewrite_script`], only the backup and the rename
/// remain.
#[allow(clippy::too_many_arguments)]
pub fn write_file_script(
    path: &str,
    temp: &str,
    bytes: &[u8],
    owner: &str,
    group: &str,
    mode: u32,
    backup_root: Option<&str>,
    make_parent: bool,
) -> String {
    let parent = std::path::Path::new(path)
        .parent()
        .and_then(|p| p.to_str())
        .unwrap_or("/");
    let mut s = String::from("set -eu\n");
    s.push_str(&format!(
        "p={}\nd={}\nt={}\n",
        sh_quote(path),
        sh_quote(parent),
        sh_quote(temp)
    ));
    if make_parent {
        s.push_str("[ -d \"$d\" ] || mkdir -p \"$d\"\n");
    }
    s.push_str("trap 'rm -f \"$t\"' EXIT\nif [ ! -f \"$t\" ]; then\n");
    s.push_str(&temp_write_script(temp, bytes, owner, group, mode));
    s.push_str("sync \"$t\" 2>/dev/null || sync\nfi\n");
    if let Some(root) = backup_root {
        s.push_str(&backup_script(path, root));
    }
    s.push_str("mv -f \"$t\" \"$p\"\ntrap - EXIT\n");
    s
}

/// Writes the temp files of a run of file changes ahead, then fsyncs them all with one
/// `sync`: each change then only renames its (already durable) temp file, in order. A temp
/// that cannot be written here is simply absent, and its own change writes it and reports
/// the real error. Nothing visible changes: temps are hidden names in existing folders.
fn prewrite_script(files: &[(String, &[u8], &str, &str, u32)]) -> String {
    let mut s = String::new();
    let mut temps = Vec::new();
    for (temp, bytes, owner, group, mode) in files {
        let parent = std::path::Path::new(temp)
            .parent()
            .and_then(|p| p.to_str())
            .unwrap_or("/");
        s.push_str(&format!(
            "if [ -d {} ]; then (\n{}) >/dev/null 2>&1 || rm -f {}; fi\n",
            sh_quote(parent),
            temp_write_script(temp, bytes, owner, group, *mode),
            sh_quote(temp)
        ));
        temps.push(sh_quote(temp));
    }
    s.push_str(&format!(
        "for t in {}; do [ -f \"$t\" ] && set -- \"$@\" \"$t\"; done\n[ $# -eq 0 ] || sync \"$@\" 2>/dev/null || sync\n",
        temps.join(" ")
    ));
    s
}

/// Always single-quotes (also the empty string and plain words).
fn sh_single(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Enables a unit the way `systemctl enable` does for `WantedBy=` (a link in each target's
/// `.wants/`), without the manager round trip that costs ~90 ms per unit.
fn enable_script(name: &str, wanted_by: &[String]) -> String {
    if wanted_by.is_empty() {
        return format!("systemctl enable --quiet {} 2>&1 || true\n", sh_quote(name));
    }
    let mut s = String::new();
    for t in wanted_by {
        let w = sh_quote(&format!("{}/{t}.wants", crate::expand::UNIT_DIR));
        s.push_str(&format!(
            "[ -d {w} ] || mkdir -p {w}\nln -sfn {} {w}/{}\n",
            sh_quote(&format!("{}/{name}", crate::expand::UNIT_DIR)),
            sh_quote(name)
        ));
    }
    s
}

fn unit_start_script(name: &str, wanted_by: &[String], settle: Duration) -> String {
    let enable = enable_script(name, wanted_by);
    let n = sh_quote(name);
    let settle_ms = settle.as_millis();
    let settle = format!("{}.{:03}", settle_ms / 1000, settle_ms % 1000);
    format!(
        r#"set -u
{enable}if ! systemctl restart {n} 2>&1; then
  echo "HOSTKIT_JOURNAL"; journalctl -u {n} -n 20 --no-pager 2>&1; exit 1
fi
hk_state() {{ systemctl show -p ActiveState --value {n}; }}
i=0
while :; do
  s=$(hk_state)
  case "$s" in
    active) break ;;
    failed|inactive) echo "{name} is $s"; echo "HOSTKIT_JOURNAL"; journalctl -u {n} -n 20 --no-pager 2>&1; exit 1 ;;
  esac
  i=$((i+1)); [ $i -gt 100 ] && {{ echo "{name} did not become active within 10s (state $s)"; echo "HOSTKIT_JOURNAL"; journalctl -u {n} -n 20 --no-pager 2>&1; exit 1; }}
  sleep 0.1
done
if [ {settle_ms} -gt 0 ]; then
  sleep {settle}
  s=$(hk_state); r=$(systemctl show -p NRestarts --value {n})
  if [ "$s" != active ] || [ "${{r:-0}}" != 0 ]; then echo "{name} did not stay active (state $s, restarts ${{r:-0}})"; echo "HOSTKIT_JOURNAL"; journalctl -u {n} -n 20 --no-pager 2>&1; exit 1; fi
fi
"#,
    )
}

fn command_script(c: &CommandSpec, argv: &[String], write_stamp: bool) -> String {
    let mut s = String::from(INPUTS_FN);
    s.push_str("set -u\n");
    let mut inner = String::new();
    if let Some(cwd) = &c.cwd {
        inner.push_str(&format!("cd {} && ", sh_quote(cwd)));
    }
    for f in &c.env_files {
        inner.push_str(&format!("set -a && . {} && set +a && ", sh_quote(f)));
    }
    for (k, v) in &c.environment {
        inner.push_str(&format!("export {k}={} && ", sh_quote(v)));
    }
    inner.push_str("exec ");
    if let Some(u) = &c.user {
        inner.push_str(&format!("runuser -u {} -- ", sh_quote(u)));
    }
    if let Some(t) = c.timeout_secs {
        inner.push_str(&format!("timeout {t} "));
    }
    inner.push_str(
        &argv
            .iter()
            .map(|a| sh_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let codes = if c.success_codes.is_empty() {
        "0".to_string()
    } else {
        c.success_codes
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    s.push_str(&format!(
        r#"out=$( ( {inner} ) 2>&1 </dev/null ); code=$?
ok=0; for c in {codes}; do [ "$code" = "$c" ] && ok=1; done
if [ $ok = 0 ]; then printf '%s\n' "$out" | tail -n 20; echo "exit status $code"; exit 1; fi
"#
    ));
    if write_stamp {
        let inputs = c
            .inputs
            .iter()
            .map(|i| sh_quote(i))
            .collect::<Vec<_>>()
            .join(" ");
        s.push_str(&format!(
            "ih=-; {}\nmkdir -p \"$(dirname {sp})\"\nprintf '%s %s\\n' {stamp} \"$ih\" > {sp}\n",
            if c.inputs.is_empty() {
                String::new()
            } else {
                format!("ih=$(hk_ih {inputs})")
            },
            sp = sh_quote(&c.stamp_path),
            stamp = sh_quote(&c.stamp),
        ));
    } else {
        s.push_str(&format!("rm -f {}\n", sh_quote(&c.stamp_path)));
    }
    s
}

fn firewall_load_script(table: &str, file: &str, backup_root: &str) -> String {
    let t = sh_quote(table);
    format!(
        r#"set -eu
f={f}
if nft list table inet {t} >/dev/null 2>&1; then
  b={root}/firewall-inet-{table}.nft
  (umask 077; mkdir -p {root})
  {{ echo "table inet {table}"; echo "delete table inet {table}"; nft list table inet {t}; }} > "$b"; chmod 600 "$b"
  printf 'BACKUP\t%s\t%s\n' "$b" "$(sha256sum < "$b" | cut -c1-64)"
fi
nft -c -f "$f"
nft -f "$f"
l=$(nft list table inet {t})
mkdir -p "$(dirname {stamp})"
printf '%s %s\n' "$(printf '%s\n' "$l" | sha256sum | cut -c1-64)" "$(sha256sum < "$f" | cut -c1-64)" > {stamp}
"#,
        f = sh_quote(file),
        root = sh_quote(backup_root),
        stamp = sh_quote(&firewall_stamp(table)),
    )
}

/// Installs `names` (pinned to `lock` where it has them) in one call, then prints a
/// `LOCK<TAB>name<TAB>version` line per installed package.
fn package_script(manager: &str, names: &[String], lock: &crate::plan::PackageLock) -> String {
    let spec = |n: &String| match (lock.get(n), manager) {
        (Some(v), "apt-get") => sh_quote(&format!("{n}={v}")),
        (Some(v), "dnf") => sh_quote(&format!("{n}-{v}")),
        _ => sh_quote(n),
    };
    let list = names.iter().map(spec).collect::<Vec<_>>().join(" ");
    let plain = names
        .iter()
        .map(|n| sh_quote(n))
        .collect::<Vec<_>>()
        .join(" ");
    match manager {
        "dnf" => format!(
            "set -e\ndnf install -y {list}\nrpm -q --qf 'LOCK\\t%{{NAME}}\\t%{{VERSION}}-%{{RELEASE}}\\n' {plain}\n"
        ),
        "apk" => format!("set -e\napk add {list}\n"),
        "pacman" => format!(
            "set -e\npacman -S --noconfirm --needed {list}\npacman -Q {plain} | while read -r n v; do printf 'LOCK\\t%s\\t%s\\n' \"$n\" \"$v\"; done\n"
        ),
        _ => format!(
            "set -e\nexport DEBIAN_FRONTEND=noninteractive\no=\"-y -q --no-install-recommends --allow-downgrades\"\napt-get install $o {list} 2>&1 || {{ apt-get update -q 2>&1 && apt-get install $o {list} 2>&1; }}\ndpkg-query -W -f='LOCK\\t${{Package}}\\t${{Version}}\\n' {plain}\n"
        ),
    }
}

/// The `LOCK` lines a package install printed.
fn parse_lock(text: &str) -> crate::plan::PackageLock {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            match f.as_slice() {
                ["LOCK", name, version] => Some((name.to_string(), version.to_string())),
                _ => None,
            }
        })
        .collect()
}

fn parse_backup(text: &str) -> Option<Backup> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split('\t').collect();
        match f.as_slice() {
            ["BACKUP", path, sha] => Some(Backup {
                path: path.to_string(),
                sha256: sha.to_string(),
            }),
            _ => None,
        }
    })
}

fn output_message(out: &Output) -> String {
    let mut text = out.stdout_text();
    text.push_str(&out.stderr_text());
    failure_message(out.status, &text)
}

fn failure_message(status: i32, text: &str) -> String {
    let text = text.replace("HOSTKIT_JOURNAL\n", "journal:\n");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("BACKUP\t"))
        .collect();
    let tail = &lines[lines.len().saturating_sub(25)..];
    format!("exit status {status}: {}", tail.join("\n"))
}

/// Changes sent to the host in one script (each still runs on its own, in order, and the
/// first failure ends the script): one round trip per batch instead of per change.
const BATCH: usize = 64;
const BATCH_BYTES: usize = 4 << 20;

struct Pending {
    ids: Vec<String>,
    result: ChangeResult,
    script: String,
}

/// One script that runs `steps` in order, each in its own subshell between begin/end
/// markers, and ends after the first that fails.
fn batch_script<'a>(steps: impl IntoIterator<Item = &'a str>) -> String {
    let mut script = String::new();
    for (i, step) in steps.into_iter().enumerate() {
        script.push_str(&format!(
            "printf 'HK_BEGIN {i}\\n'\n(\n{step}\n) 2>&1 </dev/null\nrc=$?\nprintf 'HK_END {i} %s\\n' \"$rc\"\n[ \"$rc\" -eq 0 ] || exit 0\n"
        ));
    }
    script
}

/// Each step's exit code and output from a [`batch_script`]'s stdout; `None` for steps that
/// did not report (not reached, or the connection ended).
fn parse_batch(stdout: &str, n: usize) -> Vec<Option<(i32, String)>> {
    let mut outputs = vec![None; n];
    let mut current: Option<(usize, String)> = None;
    for line in stdout.lines() {
        if let Some(i) = line.strip_prefix("HK_BEGIN ") {
            current = i.parse().ok().map(|i| (i, String::new()));
        } else if let Some(rest) = line.strip_prefix("HK_END ") {
            let mut f = rest.split(' ');
            let i: usize = f.next().and_then(|x| x.parse().ok()).unwrap_or(usize::MAX);
            let rc: i32 = f.next().and_then(|x| x.parse().ok()).unwrap_or(1);
            if let Some((ci, text)) = current.take()
                && ci == i
                && i < n
            {
                outputs[i] = Some((rc, text));
            }
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    outputs
}

/// Runs the pending changes as one script with a begin/end marker around each, and
/// records each change's own outcome.
#[allow(clippy::too_many_arguments)] // the apply loop's state, passed apart to keep borrows simple
async fn flush(
    transport: &dyn Transport,
    pending: &mut Vec<Pending>,
    cleanup: &mut Vec<String>,
    changes: &[&Change],
    results: &mut Vec<ChangeResult>,
    done: &mut BTreeSet<String>,
    failed: &mut Option<String>,
    progress: &Option<Progress>,
) {
    if pending.is_empty() {
        return;
    }
    let mut script = String::new();
    if !cleanup.is_empty() {
        // Temps written ahead for changes that did not run (after a failure) go away.
        let list: Vec<String> = cleanup.drain(..).map(|t| sh_quote(&t)).collect();
        script.push_str(&format!(
            "trap 'rm -f {}' EXIT\n",
            list.join(" ").replace('\'', "'\\''")
        ));
    }
    script.push_str(&batch_script(pending.iter().map(|p| p.script.as_str())));
    let mut outputs: Vec<Option<(i32, String)>> = vec![None; pending.len()];
    let mut transport_error = None;
    match transport.run(&script).await {
        Err(e) => transport_error = Some(e.to_string()),
        Ok(out) => {
            outputs = parse_batch(&out.stdout_text(), pending.len());
            if outputs.iter().any(Option::is_none) && out.status != 0 {
                transport_error = Some(format!(
                    "exit status {}: {}",
                    out.status,
                    out.stderr_text().trim()
                ));
            }
        }
    }
    for (i, p) in pending.drain(..).enumerate() {
        let mut result = p.result;
        match &outputs[i] {
            Some((0, text)) => {
                result.status = Status::Applied;
                result.backup = parse_backup(text);
                result.locked = parse_lock(text);
            }
            Some((rc, text)) => {
                result.status = Status::Failed;
                let msg = failure_message(*rc, text);
                result.message = Some(msg.clone());
                failed.get_or_insert_with(|| format!("{}: {msg}", result.id));
            }
            None if failed.is_none() => {
                let msg = transport_error
                    .clone()
                    .unwrap_or_else(|| "the host did not report this change".into());
                result.status = Status::Failed;
                result.message = Some(msg.clone());
                *failed = Some(format!("{}: {msg}", result.id));
            }
            None => {
                result.message = Some("not attempted: an earlier change failed".into());
            }
        }
        for id in &p.ids {
            done.insert(id.clone());
            let mut r = result.clone();
            r.id = id.clone();
            if let Some(c) = changes.iter().find(|c| &c.id == id) {
                r.before = c.before.clone();
            }
            if let Some(p) = progress {
                p(&r);
            }
            results.push(r);
        }
    }
}

/// Applies a prepared plan. Returns what ran (also on failure, with `ok: false`).
pub async fn apply(
    transport: &dyn Transport,
    prepared: &Prepared,
    opts: &ApplyOptions,
) -> Result<Applied> {
    let facts_manager = prepared.facts.get("packageManager").map(String::as_str);
    let root = backup_root(&opts.revision);
    let mut results: Vec<ChangeResult> = Vec::new();
    let mut failed: Option<String> = None;
    let mut units_dirty = false;
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut temps: BTreeMap<String, String> = BTreeMap::new();
    let mut prewritten: BTreeSet<String> = BTreeSet::new();
    let mut cleanup: Vec<String> = Vec::new();
    let changes: Vec<&Change> = prepared
        .plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Noop)
        .collect();
    for (i, change) in changes.iter().enumerate() {
        if done.contains(&change.id) {
            continue;
        }
        let mut result = ChangeResult {
            id: change.id.clone(),
            action: change.action,
            status: Status::NotRun,
            message: None,
            before: change.before.clone(),
            backup: None,
            locked: BTreeMap::new(),
        };
        if failed.is_some() {
            result.message = Some("not attempted: an earlier change failed".into());
            results.push(result);
            continue;
        }
        if change.action == Action::ReadError {
            result.message = Some(format!("not changed: {}", change.reason));
            results.push(result);
            continue;
        }
        let r = &prepared.resources[&change.id];
        let mut batch: Vec<String> = vec![change.id.clone()];
        let script = match (&r.spec, change.action) {
            (Spec::File { path, .. } | Spec::Symlink { path, .. }, Action::Delete) => {
                let mut s = String::from("set -eu\n");
                s.push_str(&backup_script(path, &root));
                s.push_str(&format!("rm -f {}\n", sh_quote(path)));
                if matches!(
                    r.spec,
                    Spec::File {
                        role: FileRole::Unit,
                        ..
                    }
                ) {
                    units_dirty = true;
                }
                s
            }
            (
                Spec::File {
                    path,
                    owner,
                    group,
                    mode,
                    role,
                    ..
                },
                _,
            ) => {
                let existed = change
                    .before
                    .as_ref()
                    .and_then(|b| b.get("type"))
                    .is_some_and(|t| t == "file");
                let parent = std::path::Path::new(path)
                    .parent()
                    .and_then(|p| p.to_str())
                    .unwrap_or("/");
                let parent_managed = r.depends_on.iter().any(|d| {
                    d.edge == crate::resource::Edge::ParentDirectory
                        && d.id == crate::resource::Resource::directory_id(parent)
                });
                let mut s = String::new();
                if !prewritten.contains(&change.id) {
                    // Write the temps of this and the following file changes ahead and
                    // fsync them together; each change still renames its own, in order.
                    let room = BATCH.saturating_sub(pending.len());
                    let run: Vec<&Change> = changes[i..]
                        .iter()
                        .take(room)
                        .take_while(|c| {
                            matches!(c.action, Action::Create | Action::Update)
                                && matches!(prepared.resources[&c.id].spec, Spec::File { .. })
                        })
                        .copied()
                        .collect();
                    if run.len() > 1 {
                        let mut files = Vec::new();
                        for c in &run {
                            if let Spec::File {
                                path,
                                owner,
                                group,
                                mode,
                                ..
                            } = &prepared.resources[&c.id].spec
                            {
                                let t = temps
                                    .entry(c.id.clone())
                                    .or_insert_with(|| temp_path(path))
                                    .clone();
                                cleanup.push(t.clone());
                                files.push((
                                    t,
                                    prepared.bytes[&c.id].as_slice(),
                                    owner.as_str(),
                                    group.as_str(),
                                    *mode,
                                ));
                            }
                            prewritten.insert(c.id.clone());
                        }
                        s.push_str(&prewrite_script(&files));
                    }
                }
                let temp = temps
                    .entry(change.id.clone())
                    .or_insert_with(|| temp_path(path))
                    .clone();
                s.push_str(&write_file_script(
                    path,
                    &temp,
                    &prepared.bytes[&r.id],
                    owner,
                    group,
                    *mode,
                    existed.then_some(root.as_str()),
                    !parent_managed,
                ));
                match role {
                    FileRole::Unit => units_dirty = true,
                    FileRole::Caddy => s.push_str("if systemctl is-active -q caddy 2>/dev/null; then systemctl reload caddy; fi\n"),
                    _ => {}
                }
                s
            }
            (Spec::Directory { .. }, Action::Delete) => {
                result.message =
                    Some("kept: directories are not removed when they leave the spec".into());
                result.status = Status::Applied;
                results.push(result);
                continue;
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
            ) => format!(
                "set -eu\nmkdir -p {p}\nchown {o}:{g} {p}\nchmod {mode:04o} {p}\n",
                p = sh_quote(path),
                o = sh_quote(owner),
                g = sh_quote(group)
            ),
            (Spec::Symlink { path, to }, _) => format!(
                "set -eu\nd=$(dirname {p}); mkdir -p \"$d\"; t=\"$d/.hostkit.$$\"\nln -s {to} \"$t\"\nmv -Tf \"$t\" {p}\n",
                p = sh_quote(path),
                to = sh_quote(to)
            ),
            (
                Spec::Account {
                    name,
                    system,
                    home,
                    shell,
                    groups,
                },
                Action::Create,
            ) => format!(
                "set -eu\nuseradd {}--no-create-home --home-dir {} --shell {} --user-group {}{}\n",
                if *system { "--system " } else { "" },
                sh_quote(home),
                sh_quote(shell),
                if groups.is_empty() {
                    String::new()
                } else {
                    format!("--groups {} ", sh_quote(&groups.join(",")))
                },
                sh_quote(name)
            ),
            (
                Spec::Account {
                    name,
                    home,
                    shell,
                    groups,
                    ..
                },
                Action::Update,
            ) => format!(
                "set -eu\nusermod --home {} --shell {} {}{}\n",
                sh_quote(home),
                sh_quote(shell),
                if groups.is_empty() {
                    String::new()
                } else {
                    format!("--append --groups {} ", sh_quote(&groups.join(",")))
                },
                sh_quote(name)
            ),
            (Spec::Package { .. }, Action::Create | Action::Update) => {
                let names: Vec<String> = changes[i..]
                    .iter()
                    .filter(|c| matches!(c.action, Action::Create | Action::Update))
                    .filter_map(|c| match &prepared.resources[&c.id].spec {
                        Spec::Package { name } => Some((c.id.clone(), name.clone())),
                        _ => None,
                    })
                    .map(|(id, name)| {
                        batch.push(id);
                        name
                    })
                    .collect();
                batch.dedup();
                let manager = facts_manager.unwrap_or("apt-get");
                let mut real: Vec<String> = names
                    .iter()
                    .flat_map(|n| crate::packages::names(n, manager))
                    .collect();
                real.dedup();
                package_script(manager, &real, &prepared.lock)
            }
            (Spec::Unit { name, .. }, Action::Delete) => {
                units_dirty = true;
                format!("systemctl disable --now {} 2>&1 || true\n", sh_quote(name))
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
                if units_dirty {
                    s.push_str("systemctl daemon-reload\n");
                    units_dirty = false;
                }
                if *start {
                    s.push_str(&unit_start_script(name, wanted_by, opts.settle));
                } else {
                    s.push_str(&enable_script(name, wanted_by));
                }
                s
            }
            (Spec::Command(c), _) => command_script(c, &c.exec, true),
            (Spec::Firewall { table, .. }, Action::Delete) => format!(
                "nft delete table inet {} 2>&1 || true\nrm -f {}\n",
                sh_quote(table),
                sh_quote(&firewall_stamp(table))
            ),
            (Spec::Firewall { table, file }, _) => firewall_load_script(table, file, &root),
            (Spec::Account { .. } | Spec::Package { .. }, _) => {
                result.status = Status::Applied;
                result.message = Some("kept: accounts and packages are not removed".into());
                results.push(result);
                continue;
            }
        };
        tracing::debug!(host = transport.host(), id = %change.id, "applying");
        done.extend(batch.iter().cloned());
        pending.push(Pending {
            ids: batch,
            result,
            script,
        });
        if pending.len() >= BATCH
            || pending.iter().map(|p| p.script.len()).sum::<usize>() > BATCH_BYTES
        {
            flush(
                transport,
                &mut pending,
                &mut cleanup,
                &changes,
                &mut results,
                &mut done,
                &mut failed,
                &opts.progress,
            )
            .await;
        }
    }
    flush(
        transport,
        &mut pending,
        &mut cleanup,
        &changes,
        &mut results,
        &mut done,
        &mut failed,
        &opts.progress,
    )
    .await;
    if units_dirty && failed.is_none() {
        let out = transport.run("systemctl daemon-reload").await?;
        if out.status != 0 {
            failed = Some(format!("systemctl daemon-reload: {}", output_message(&out)));
        }
    }
    let resources: Vec<Resource> = prepared
        .plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Delete)
        .filter_map(|c| prepared.resources.get(&c.id).cloned())
        .collect();
    let down = DownPlan::derive(&prepared.plan.host, &opts.revision, &results, prepared);
    let mut package_lock = prepared.lock.clone();
    for r in &results {
        package_lock.extend(r.locked.clone());
    }
    Ok(Applied {
        package_lock,
        host: prepared.plan.host.clone(),
        revision: opts.revision.clone(),
        plan_fingerprint: prepared.plan.fingerprint.clone(),
        ok: failed.is_none(),
        error: failed,
        results,
        resources,
        down,
    })
}

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
        owner: String,
        group: String,
        mode: u32,
        unit: bool,
    },
    #[serde(rename_all = "camelCase")]
    RestoreMeta {
        path: String,
        owner: String,
        group: String,
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
            let before = &res.before;
            let existed = before
                .as_ref()
                .map(|b| b.get("exists") != Some(&Value::Bool(false)) && b.get("type").is_some())
                .unwrap_or(false);
            let action = match &r.spec {
                Spec::File { path, role, .. } => match (&res.backup, existed) {
                    (Some(b), true) => DownAction::RestoreFile {
                        path: path.clone(),
                        backup: b.path.clone(),
                        sha256: b.sha256.clone(),
                        owner: s(before, "owner").unwrap_or_else(|| "root".into()),
                        group: s(before, "group").unwrap_or_else(|| "root".into()),
                        mode: s(before, "mode")
                            .and_then(|m| u32::from_str_radix(&m, 8).ok())
                            .unwrap_or(0o644),
                        unit: *role == FileRole::Unit,
                    },
                    (None, true) => DownAction::RestoreMeta {
                        path: path.clone(),
                        owner: s(before, "owner").unwrap_or_else(|| "root".into()),
                        group: s(before, "group").unwrap_or_else(|| "root".into()),
                        mode: s(before, "mode")
                            .and_then(|m| u32::from_str_radix(&m, 8).ok())
                            .unwrap_or(0o644),
                    },
                    (_, false) => DownAction::RemoveFile {
                        path: path.clone(),
                        unit: *role == FileRole::Unit,
                    },
                },
                Spec::Directory {
                    path,
                    delete_if_created,
                    ..
                } => {
                    if res.action == Action::Delete {
                        continue;
                    }
                    if existed {
                        DownAction::RestoreMeta {
                            path: path.clone(),
                            owner: s(before, "owner").unwrap_or_else(|| "root".into()),
                            group: s(before, "group").unwrap_or_else(|| "root".into()),
                            mode: s(before, "mode")
                                .and_then(|m| u32::from_str_radix(&m, 8).ok())
                                .unwrap_or(0o755),
                        }
                    } else if *delete_if_created {
                        DownAction::RemoveDir { path: path.clone() }
                    } else {
                        DownAction::Skip {
                            warning: format!(
                                "directory {path} is kept (set rollback: deleteIfCreated to remove it)"
                            ),
                        }
                    }
                }
                Spec::Symlink { path, .. } => DownAction::RestoreLink {
                    path: path.clone(),
                    to: s(before, "to"),
                },
                Spec::Account { name, .. } => {
                    if existed || res.action == Action::Update {
                        DownAction::RestoreAccount {
                            name: name.clone(),
                            home: s(before, "home").unwrap_or_default(),
                            shell: s(before, "shell").unwrap_or_default(),
                        }
                    } else {
                        DownAction::Skip {
                            warning: format!("account {name} is kept (accounts are never removed)"),
                        }
                    }
                }
                Spec::Package { name } => DownAction::Skip {
                    warning: format!("package {name} is kept (packages are never removed)"),
                },
                Spec::Unit { name, .. } => {
                    let was_active = s(before, "active").as_deref() == Some("active");
                    let was_enabled = s(before, "enabled").as_deref() == Some("enabled");
                    if res.action == Action::Delete {
                        restarts.push(DownStep {
                            id: res.id.clone(),
                            action: DownAction::RestartUnit { name: name.clone() },
                        });
                        continue;
                    }
                    if was_active {
                        restarts.push(DownStep {
                            id: res.id.clone(),
                            action: DownAction::RestartUnit { name: name.clone() },
                        });
                        continue;
                    }
                    DownAction::StopUnit {
                        name: name.clone(),
                        disable: !was_enabled,
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
            };
            steps.push(DownStep {
                id: res.id.clone(),
                action,
            });
        }
        steps.extend(restarts);
        let mut down = DownPlan {
            host: host.to_string(),
            revision: revision.to_string(),
            steps,
            coverage: Coverage::default(),
        };
        down.coverage = crate::history::coverage(&down);
        down
    }

    /// Keeps only the steps of `only` (resource ids); unit restarts of kept files stay.
    pub fn only(&self, only: &[String]) -> DownPlan {
        crate::history::only(self, only)
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
                DownAction::RemoveDir { path } => format!("remove directory {path}"),
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
                DownAction::Noop => "nothing (down: noop)".into(),
                DownAction::Skip { warning } => format!("skip: {warning}"),
            };
            out.push_str(&format!("  {}  {what}\n", s.id));
        }
        out
    }
}

fn down_script(action: &DownAction) -> Option<String> {
    Some(match action {
        DownAction::RemoveFile { path, .. } => format!("rm -f {}\n", sh_quote(path)),
        DownAction::RestoreFile {
            path,
            backup,
            sha256,
            owner,
            group,
            mode,
            ..
        } => format!(
            r#"set -eu
b={b}; p={p}
[ "$(sha256sum < "$b" | cut -c1-64)" = {sha} ] || {{ echo "backup $b does not match its recorded sha256; refusing to restore"; exit 1; }}
d=$(dirname "$p"); mkdir -p "$d"
t=$(mktemp "$d/.hostkit.XXXXXX"); trap 'rm -f "$t"' EXIT
cp "$b" "$t"; chown {o}:{g} "$t"; chmod {mode:04o} "$t"; sync "$t" 2>/dev/null || sync
mv -f "$t" "$p"; trap - EXIT
"#,
            b = sh_quote(backup),
            p = sh_quote(path),
            sha = sh_quote(sha256),
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
        DownAction::RemoveDir { path } => format!("rm -rf -- {}\n", sh_quote(path)),
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
        DownAction::DeleteFirewall { table } => format!(
            "nft delete table inet {} 2>&1 || true\nrm -f {}\n",
            sh_quote(table),
            sh_quote(&firewall_stamp(table))
        ),
        DownAction::RestoreAccount { name, home, shell } => format!(
            "set -eu\nusermod --home {} --shell {} {}\n",
            sh_quote(home),
            sh_quote(shell),
            sh_quote(name)
        ),
        DownAction::Noop | DownAction::Skip { .. } => return None,
    })
}

const ALREADY_UNDONE: &str = "already run by an interrupted attempt of this rollback";

/// Wraps a command's down script so that it runs once per run, however often the down plan
/// is resumed: files restore idempotently, but a command's `down:` may not be (a migration
/// down, a counter). A marker beside the run's backups records success; a command that was
/// interrupted while it ran has no marker and runs again (at least once, never twice after
/// it finished).
fn once_script(run: &str, step: &str, script: &str) -> String {
    let marker = format!("{}/.undone/{}", backup_root(run), hex::encode(step));
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
        let mut result = ChangeResult {
            id: step.id.clone(),
            action: Action::Update,
            status: Status::NotRun,
            message: None,
            before: None,
            backup: None,
            locked: BTreeMap::new(),
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::Desired;
    use crate::plan;
    use crate::secrets::Secrets;
    use crate::state::{HostState, PathState};
    use crate::transport::Recording;

    fn demo() -> Vec<Resource> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("d.yaml");
        std::fs::write(
            &f,
            r#"
apiVersion: hostkit.dev/v1alpha1
kind: Host
metadata: {name: h}
spec: {address: 127.0.0.1}
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {name: app}
spec:
  hosts: [h]
  account: {system: true}
  storage: [{name: data}]
  env:
    runtime:
      set: {A: "1"}
  daemon: {exec: [/bin/sleep, infinity], env: [runtime]}
  commands:
    - name: migrate
      exec: [/bin/true]
      phase: beforeStart
      down: noop
"#,
        )
        .unwrap();
        Desired::load(&[f]).unwrap().resources_for("h").unwrap()
    }

    fn empty_host(resources: &[Resource]) -> HostState {
        let mut st = HostState::default();
        for r in resources {
            match &r.spec {
                Spec::File { .. } | Spec::Directory { .. } => {
                    st.paths.insert(r.id.clone(), PathState::Absent);
                }
                Spec::Account { .. } => {
                    st.accounts.insert(r.id.clone(), None);
                }
                _ => {}
            }
        }
        st
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
            .join("web-g2-1/.undone")
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

    #[tokio::test]
    async fn apply_sends_changes_in_graph_order_with_one_reload_before_units() {
        let resources = demo();
        let prepared = plan::compute(
            "h",
            &resources,
            &[],
            &empty_host(&resources),
            &Secrets::default(),
        )
        .unwrap();
        let t = Recording::default();
        let applied = apply(&t, &prepared, &ApplyOptions::new("r1"))
            .await
            .unwrap();
        assert!(applied.ok, "{:?}", applied.error);
        let scripts = t.recorded();
        assert_eq!(scripts.len(), 1, "one batch");
        let s = &scripts[0];
        let at = |needle: &str| {
            s.find(needle)
                .unwrap_or_else(|| panic!("{needle} missing in:\n{s}"))
        };
        // account → storage → env file and unit file → command → reload → start.
        assert!(at("useradd --system") < at("mkdir -p /var/lib/app"));
        assert!(at("mkdir -p /var/lib/app") < at("p=/etc/app/runtime.env"));
        assert!(at("p=/etc/systemd/system/app.service") < at("exec /bin/true"));
        assert!(at("exec /bin/true") < at("systemctl daemon-reload"));
        assert!(at("systemctl daemon-reload") < at("systemctl restart app.service"));
        assert_eq!(s.matches("systemctl daemon-reload").count(), 1);
        assert!(s.contains("ln -sfn /etc/systemd/system/app.service /etc/systemd/system/multi-user.target.wants/app.service"));
        // The down plan undoes it in reverse: stop the unit, remove the files; the account
        // and the created storage folder are kept with warnings.
        let down: Vec<String> = applied.down.steps.iter().map(|s| s.id.clone()).collect();
        assert_eq!(down.first().map(String::as_str), Some("unit:app.service"));
        assert!(
            applied
                .down
                .coverage
                .skipped
                .iter()
                .any(|(id, _)| id == "account:app")
        );
        assert_eq!(applied.down.coverage.noop, 1);
    }

    #[test]
    fn package_installs_pin_locked_versions_and_report_what_they_installed() {
        let mut lock = crate::plan::PackageLock::new();
        lock.insert("tree".into(), "2.1.0-1".into());
        let names = vec!["tree".to_string(), "jq".to_string()];
        let apt = package_script("apt-get", &names, &lock);
        assert!(apt.contains("apt-get install $o tree=2.1.0-1 jq"), "{apt}");
        assert!(apt.contains("dpkg-query -W -f='LOCK"));
        let dnf = package_script("dnf", &names, &lock);
        assert!(dnf.contains("dnf install -y tree-2.1.0-1 jq"), "{dnf}");
        let parsed = parse_lock("noise\nLOCK\ttree\t2.1.0-1\nLOCK\tjq\t1.6\n");
        assert_eq!(parsed.get("jq").map(String::as_str), Some("1.6"));
        assert_eq!(parsed.len(), 2);
    }

    #[tokio::test]
    async fn a_failed_change_ends_the_batch_and_later_ones_are_not_run() {
        let resources = demo();
        let prepared = plan::compute(
            "h",
            &resources,
            &[],
            &empty_host(&resources),
            &Secrets::default(),
        )
        .unwrap();
        let t = Recording::default();
        t.reply(
            "useradd",
            Output {
                status: 0,
                stdout: b"HK_BEGIN 0\nuseradd: permission denied\nHK_END 0 1\n".to_vec(),
                ..Default::default()
            },
        );
        let applied = apply(&t, &prepared, &ApplyOptions::new("r1"))
            .await
            .unwrap();
        assert!(!applied.ok);
        assert!(
            applied
                .error
                .as_deref()
                .unwrap()
                .starts_with("account:app: exit status 1")
        );
        assert!(
            applied
                .error
                .as_deref()
                .unwrap()
                .contains("permission denied")
        );
        assert!(
            applied.results[1..]
                .iter()
                .all(|r| r.status == Status::NotRun)
        );
        assert!(
            applied.down.steps.is_empty(),
            "nothing ran, nothing to undo"
        );
    }
}
