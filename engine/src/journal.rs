//! The write-ahead journal of an apply, kept on the host beside the run's backups
//! (`/var/lib/hostkit/backups/<run>/journal`).
//!
//! The controller records a run in history before its first change is sent, and completes
//! the record from the apply's answer. When the controller dies in between, the answer is
//! lost, but the host still knows: every step appends `B <label>` before it runs and
//! `E <label> <rc>` after, to a file, before the controller is told on stdout. Reading the
//! journal and the backups beside it ([`read`]) is how an interrupted run is settled:
//! which changes ran, which were cut off, and the sha256 of every backup they took.

use std::collections::{BTreeMap, BTreeSet};

use crate::naming::{backup_root, journal_path};
use crate::transport::{Transport, sh_quote};
use crate::{Error, Result};

/// The journal's one-word name for the change ids one step covers.
pub fn label(ids: &[String]) -> String {
    hex::encode(ids.join("\n"))
}

fn ids_of(label: &str) -> Vec<String> {
    hex::decode(label)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(|s| s.split('\n').map(String::from).collect())
        .unwrap_or_default()
}

/// What a host shows of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Found {
    /// Change ids whose step began.
    pub began: BTreeSet<String>,
    /// Change ids whose step ended, with its exit code.
    pub ended: BTreeMap<String, i32>,
    /// Each backup the run took (its path), with the sha256 a restore checks.
    pub backups: BTreeMap<String, String>,
    /// The shell of the run's last batch is still running (its process id).
    pub running: Option<u32>,
}

/// The script that creates the run's folder and journal (0700/0600) before its first step.
pub(crate) fn open_script(run: &str) -> String {
    format!(
        "(umask 077; mkdir -p {root} && : >> {j})\n",
        root = sh_quote(&backup_root(run)),
        j = sh_quote(&journal_path(run))
    )
}

/// Lists the journal (`J <line>`) and every backup with its sha256 (`S <sha> <path>`),
/// computed as the backup script computed it (file backups salted, rulesets plain).
fn read_script(run: &str) -> String {
    format!(
        r#"d={d}
[ -d "$d" ] || exit 0
[ -f "$d/journal" ] && sed 's/^/J /' "$d/journal"
last=$(grep '^P ' "$d/journal" 2>/dev/null | tail -n 1)
if [ -n "$last" ]; then
  set -- $last
  if [ -n "${{3:-}}" ] && [ "$(cut -d' ' -f22 /proc/$2/stat 2>/dev/null)" = "$3" ]; then echo "RUNNING $2"; fi
fi
if [ -d "$d/files" ]; then
  find "$d/files" -type f | while IFS= read -r f; do
    s="$d/salts/${{f#"$d/files/"}}"
    printf 'S %s %s\n' "$( {{ cat "$s" 2>/dev/null; cat "$f"; }} | sha256sum | cut -c1-64)" "$f"
  done
fi
if [ -d "$d/firewall" ]; then
  find "$d/firewall" -type f | while IFS= read -r f; do
    printf 'S %s %s\n' "$(sha256sum < "$f" | cut -c1-64)" "$f"
  done
fi
"#,
        d = sh_quote(&backup_root(run))
    )
}

fn parse(stdout: &str) -> Found {
    let mut found = Found::default();
    for line in stdout.lines() {
        let mut f = line.splitn(3, ' ');
        match (f.next(), f.next(), f.next()) {
            (Some("J"), Some("B"), Some(label)) => found.began.extend(ids_of(label)),
            (Some("J"), Some("E"), Some(rest)) => {
                let mut r = rest.split(' ');
                let (Some(label), Some(rc)) = (r.next(), r.next()) else {
                    continue;
                };
                let rc = rc.parse().unwrap_or(1);
                for id in ids_of(label) {
                    found.ended.insert(id, rc);
                }
            }
            (Some("S"), Some(sha), Some(path)) => {
                found.backups.insert(path.to_string(), sha.to_string());
            }
            (Some("RUNNING"), Some(pid), None) => found.running = pid.parse().ok(),
            _ => {}
        }
    }
    found
}

/// Reads what `run` left on the host (nothing, when it never reached it).
pub async fn read(transport: &dyn Transport, run: &str) -> Result<Found> {
    let out = transport.run(&read_script(run)).await?;
    if out.status != 0 {
        return Err(Error::Transport {
            host: transport.host().to_string(),
            message: format!("reading the journal of {run}: {}", out.stderr_text().trim()),
        });
    }
    Ok(parse(&out.stdout_text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The read script under the real `sh`, its folder moved into a temp dir: a journal
    /// whose last batch's shell is alive says so, and stops saying so once it is gone.
    #[test]
    fn a_run_whose_shell_still_runs_is_reported_running() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("r1");
        std::fs::create_dir_all(&run_dir).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let start = stat.split(' ').nth(21).unwrap();
        std::fs::write(
            run_dir.join("journal"),
            format!("P 1 1\nB 00\nP {pid} {start}\n"),
        )
        .unwrap();
        let script =
            read_script("r1").replace(&backup_root(""), &format!("{}/", dir.path().display()));
        let read = || {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            parse(&String::from_utf8_lossy(&out.stdout))
        };
        assert_eq!(read().running, Some(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(read().running, None);
    }

    #[test]
    fn a_label_names_every_id_of_its_step_in_one_word() {
        let ids = vec!["package:curl".to_string(), "file:/etc/a b".to_string()];
        let l = label(&ids);
        assert!(l.chars().all(|c| c.is_ascii_hexdigit()), "{l}");
        assert_eq!(ids_of(&l), ids);
    }

    /// The journal as a real shell writes it under the batch protocol, cut off in the
    /// middle of a step (as a controller crash cuts an apply), then read back.
    #[test]
    fn the_journal_shows_what_ended_what_was_cut_off_and_what_never_began() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("journal");
        let (a, b, c) = (
            label(&["file:/a".into()]),
            label(&["unit:x.service".into()]),
            label(&["file:/c".into()]),
        );
        let script = crate::batch::journaled_batch_script(
            [
                (a.as_str(), "true"),
                (b.as_str(), "kill -9 $$"),
                (c.as_str(), "true"),
            ],
            Some(j.to_str().unwrap()),
        );
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let text = std::fs::read_to_string(&j).unwrap();
        let listed: String = text.lines().map(|l| format!("J {l}\n")).collect();
        let found = parse(&format!(
            "{listed}S abc /var/lib/hostkit/backups/r/files/a\n"
        ));
        assert_eq!(
            found.ended,
            BTreeMap::from([("file:/a".to_string(), 0)]),
            "{text}"
        );
        assert!(found.began.contains("unit:x.service"));
        assert!(!found.began.contains("file:/c"));
        assert_eq!(
            found.backups["/var/lib/hostkit/backups/r/files/a"],
            "abc".to_string()
        );
    }
}
