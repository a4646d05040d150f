//! File writes as one step: a run of file changes that follow one another in the plan is
//! written into a staging folder beside each target's folder, made durable with one
//! `sync`, and renamed into place with one `mv` per folder.
//!
//! Each file is still replaced atomically (rename(2) from a folder inside its own folder,
//! so on the same filesystem); what the run saves is a subshell, an `mv` and a `chown` per
//! file (≈3 ms each on a test host; 200 files cost ≈0.9 s one by one). A step that fails
//! part-way puts back what it had already renamed (the previous file, kept as a hard link
//! in the staging folder, or nothing where there was none), so a failed file change still
//! changed nothing, as the down plan assumes.

use std::collections::BTreeMap;

use super::{Applying, Step};
use crate::plan::{Action, Change};
use crate::resource::{Edge, FileRole, Resource, Spec};
use crate::scripts::{b64, backup_script, sh_single};
use crate::transport::sh_quote;

/// The line that names, by its index in the step, the file a failed files step failed on.
pub(super) const FAILED_MARK: &str = "HK_FILE_FAILED ";

/// Which of a failed files step's files it failed on.
pub(super) fn failed_file(text: &str) -> Option<usize> {
    text.lines()
        .find_map(|l| l.strip_prefix(FAILED_MARK))
        .and_then(|k| k.trim().parse().ok())
}

/// The failure's message without the marker line.
pub(super) fn without_mark(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with(FAILED_MARK))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// At most this many files in one step: their names go on a few command lines.
const GROUP_FILES: usize = 128;
/// And at most this many content bytes, so that a batch stays under its byte budget.
const GROUP_BYTES: usize = 1 << 20;

/// One file a files step writes.
pub(crate) struct Staged<'a> {
    pub path: &'a str,
    pub bytes: &'a [u8],
    pub owner: &'a str,
    pub group: &'a str,
    pub mode: u32,
    /// A regular file was there when planned: it is backed up (when backups are taken)
    /// and kept for a put-back.
    pub existed: bool,
    /// The parent folder is not a managed directory: the step creates it.
    pub make_parent: bool,
}

impl Applying<'_> {
    /// One step for the file writes from `i` on that follow one another in the graph order
    /// (nothing between them depends on any of them). A Caddy site file is a step of its
    /// own: Caddy's reload follows it, and its failure must not fail the others.
    pub(super) fn files_step(&mut self, i: usize) -> Step {
        let prepared = self.prepared;
        let mut ids = Vec::new();
        let mut files = Vec::new();
        let mut bytes = 0usize;
        let mut caddy = false;
        for c in &self.changes[i..] {
            let r = &prepared.resources[&c.id];
            let Some((f, role)) = staged(c, r, prepared.bytes.get(&r.id)) else {
                break;
            };
            if self.done.contains(&c.id)
                || (!files.is_empty()
                    && (role == FileRole::Caddy
                        || files.len() >= GROUP_FILES
                        || bytes + f.bytes.len() > GROUP_BYTES))
            {
                break;
            }
            bytes += f.bytes.len();
            match role {
                FileRole::Unit => self.units_dirty = true,
                FileRole::Caddy => caddy = true,
                _ => {}
            }
            ids.push(c.id.clone());
            files.push(f);
            if caddy {
                break;
            }
        }
        let first = self.staged;
        let (mut script, used) =
            write_files_script(&files, &self.opts.revision, first, self.root.as_deref());
        self.staged += used;
        if caddy {
            script.push_str(crate::scripts::CADDY_RELOAD);
        }
        Step::Run { ids, script }
    }
}

/// The write of `c` and its file's role, when it is a file create or update.
fn staged<'a>(
    c: &Change,
    r: &'a Resource,
    bytes: Option<&'a Vec<u8>>,
) -> Option<(Staged<'a>, FileRole)> {
    let Spec::File {
        path,
        owner,
        group,
        mode,
        role,
        ..
    } = &r.spec
    else {
        return None;
    };
    if !matches!(c.action, Action::Create | Action::Update) {
        return None;
    }
    let bytes = bytes?;
    let parent = parent_of(path);
    let f = Staged {
        path,
        bytes,
        owner,
        group,
        mode: *mode,
        existed: c
            .before
            .as_ref()
            .and_then(|b| b.get("type"))
            .is_some_and(|t| t == "file"),
        make_parent: !r
            .depends_on
            .iter()
            .any(|d| d.edge == Edge::ParentDirectory && d.id == Resource::directory_id(parent)),
    };
    Some((f, *role))
}

fn parent_of(path: &str) -> &str {
    std::path::Path::new(path)
        .parent()
        .and_then(|p| p.to_str())
        .unwrap_or("/")
}

fn name_of(path: &str) -> &str {
    std::path::Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

/// The staging folder of the `n`th folder an apply (`run`) writes into: `.hostkit.<run>.<n>`
/// inside it, created exclusively (never an existing folder) and named by the run, so that
/// what a crash cut off is found and removed when the run is settled
/// ([`crate::scripts::temp_glob`]). New files wait in its `n/`, previous ones (hard links)
/// in its `o/`.
pub fn staging_dir(dir: &str, run: &str, n: usize) -> String {
    format!("{}/.hostkit.{run}.{n}", dir.trim_end_matches('/'))
}

/// The script that writes `files` (each atomically, with owner and mode, the previous
/// regular file backed up into `backup_root` when given) and puts everything back when a
/// rename fails. Staging folders are numbered from `first`; returns how many it used.
pub(crate) fn write_files_script(
    files: &[Staged],
    run: &str,
    first: usize,
    backup_root: Option<&str>,
) -> (String, usize) {
    // Folders in the order first written, each with its staging folder.
    let mut dirs: Vec<(&str, String)> = Vec::new();
    let mut at: BTreeMap<&str, usize> = BTreeMap::new();
    for f in files {
        let d = parent_of(f.path);
        at.entry(d).or_insert_with(|| {
            dirs.push((d, staging_dir(d, run, first + dirs.len())));
            dirs.len() - 1
        });
    }
    let staged_new = |f: &Staged| {
        sh_quote(&format!(
            "{}/n/{}",
            dirs[at[parent_of(f.path)]].1,
            name_of(f.path)
        ))
    };
    let staged_old = |f: &Staged| {
        sh_quote(&format!(
            "{}/o/{}",
            dirs[at[parent_of(f.path)]].1,
            name_of(f.path)
        ))
    };
    let q = |v: &[String]| v.join(" ");

    let in_dir = |d: &str, f: &&Staged| parent_of(f.path) == d;
    let first_in = |d: &str| files.iter().position(|f| in_dir(d, &f)).unwrap_or(0);
    // Which file a failure is about: `hk_at` is set before each part of the work, and
    // the marker names it (the step's other files were not changed either).
    let mut s = format!("set -eu\nhk_fail() {{ printf '{FAILED_MARK}%s\\n' \"$1\"; exit 1; }}\n");
    for (d, _) in &dirs {
        if files.iter().any(|f| f.make_parent && in_dir(d, &f)) {
            s.push_str(&format!(
                "[ -d {0} ] || mkdir -p -- {0} || hk_fail {1}\n",
                sh_quote(d),
                first_in(d)
            ));
        }
    }
    let mut folders = Vec::new();
    for (d, st) in &dirs {
        folders.push(sh_quote(st));
        folders.push(sh_quote(&format!("{st}/n")));
        if files.iter().any(|f| f.existed && in_dir(d, &f)) {
            folders.push(sh_quote(&format!("{st}/o")));
        }
    }
    // Created exclusively (no -p): a folder of that name that is not ours fails the step
    // and is never written into or removed. On failure only what this mkdir made goes,
    // with rmdir (which leaves anything holding files).
    let mut undo = folders.clone();
    undo.reverse();
    s.push_str(&format!(
        "mkdir -m 0700 -- {} || {{ rmdir -- {} 2>/dev/null; hk_fail 0; }}\n",
        q(&folders),
        q(&undo)
    ));
    let all: Vec<String> = dirs.iter().map(|(_, st)| sh_quote(st)).collect();
    s.push_str(&format!(
        "hk_at=0\ntrap {} EXIT\n",
        sh_single(&format!(
            "rc=$?; rm -rf -- {}; [ \"$rc\" -eq 0 ] || printf '{FAILED_MARK}%s\\n' \"$hk_at\"",
            q(&all)
        ))
    ));

    // Contents: text by the shell's own printf (no process, no argv), other bytes through
    // base64. Created exclusively, with the mode's permission bits from the umask.
    s.push_str("set -C\n");
    for (k, f) in files.iter().enumerate() {
        let t = staged_new(f);
        s.push_str(&format!(
            "hk_at={k}; umask {:04o}\n",
            0o666 & !f.mode & 0o777
        ));
        match std::str::from_utf8(f.bytes) {
            Ok(text) if !f.bytes.contains(&0) => {
                s.push_str(&format!("printf '%s' {} > {t}\n", sh_single(text)));
            }
            _ => s.push_str(&format!(
                "base64 -d > {t} <<'HOSTKIT_CONTENT_EOF'\n{}\nHOSTKIT_CONTENT_EOF\n",
                b64(f.bytes)
            )),
        }
    }
    s.push_str("set +C\numask 0022\n");
    // Owners, then modes (chown clears set-id bits): one call per value. As root, a new
    // file is already root:root, and a mode within 0666 was set by the umask; execute or
    // special bits (setuid, setgid, sticky) need the chmod.
    // A failing owner or mode is blamed on the first file that has it.
    let mut owners: BTreeMap<(&str, &str), (usize, Vec<String>)> = BTreeMap::new();
    let mut modes: BTreeMap<u32, (usize, Vec<String>)> = BTreeMap::new();
    for (k, f) in files.iter().enumerate() {
        if f.owner != "root" || f.group != "root" {
            let e = owners.entry((f.owner, f.group)).or_insert((k, Vec::new()));
            e.1.push(staged_new(f));
        }
        if f.mode & !0o666 != 0 {
            modes
                .entry(f.mode)
                .or_insert((k, Vec::new()))
                .1
                .push(staged_new(f));
        }
    }
    for ((o, g), (k, paths)) in &owners {
        s.push_str(&format!(
            "hk_at={k}; chown -- {}:{} {}\n",
            sh_quote(o),
            sh_quote(g),
            q(paths)
        ));
    }
    for (m, (k, paths)) in &modes {
        s.push_str(&format!("hk_at={k}; chmod -- {m:04o} {}\n", q(paths)));
    }
    let news: Vec<String> = files.iter().map(staged_new).collect();
    s.push_str(&format!("sync -- {} 2>/dev/null || sync\n", q(&news)));

    // The previous files: backed up (when asked), and kept as hard links for a put-back.
    for (k, f) in files.iter().enumerate().filter(|(_, f)| f.existed) {
        s.push_str(&format!("hk_at={k}\n"));
        if let Some(root) = backup_root {
            s.push_str(&backup_script(f.path, root));
        }
        s.push_str(&format!(
            "if [ -f {p} ] && [ ! -L {p} ]; then ln -- {p} {o}; fi\n",
            p = sh_quote(f.path),
            o = staged_old(f)
        ));
    }

    // Renamed into place, one `mv` per folder; a failure puts back what had moved.
    s.push_str("hk_put_back() {\n");
    for f in files {
        s.push_str(&format!(
            "  [ -e {n} ] || {{ if [ -e {o} ]; then mv -f -- {o} {p}; else rm -f -- {p}; fi; }}\n",
            n = staged_new(f),
            o = staged_old(f),
            p = sh_quote(f.path)
        ));
    }
    s.push_str("}\n");
    for (d, _) in &dirs {
        let moving: Vec<(usize, String)> = files
            .iter()
            .enumerate()
            .filter(|(_, f)| in_dir(d, f))
            .map(|(k, f)| (k, staged_new(f)))
            .collect();
        // The first file still staged after a failed mv is the one it failed on.
        let blame: String = moving
            .iter()
            .rev()
            .map(|(k, n)| format!("[ ! -e {n} ] || hk_at={k}; "))
            .collect();
        let names: Vec<String> = moving.into_iter().map(|(_, n)| n).collect();
        s.push_str(&format!(
            "mv -f -t {} -- {} || {{ {blame}hk_put_back; exit 1; }}\n",
            sh_quote(d),
            q(&names)
        ));
    }
    (s, dirs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    }

    fn file<'a>(path: &'a str, bytes: &'a [u8], mode: u32, existed: bool) -> Staged<'a> {
        Staged {
            path,
            bytes,
            owner: "root",
            group: "root",
            mode,
            existed,
            make_parent: true,
        }
    }

    fn leftovers(dir: &std::path::Path) -> Vec<String> {
        walk(dir)
            .into_iter()
            .filter(|p| p.contains(".hostkit."))
            .collect()
    }

    fn walk(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.display().to_string());
            if p.is_dir() && !p.is_symlink() {
                out.extend(walk(&p));
            }
        }
        out
    }

    /// Under the real `sh`: files in two folders (one still to be made), text and binary
    /// content, an executable setgid mode, a previous file backed up; nothing staged is left.
    #[test]
    fn a_run_of_files_lands_with_contents_modes_and_backups() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        std::fs::write(dir.path().join("old.conf"), "before\n").unwrap();
        let (a, b, c) = (
            format!("{d}/old.conf"),
            format!("{d}/new/it's \"odd\" $HOME.txt"),
            format!("{d}/new/run.sh"),
        );
        let binary = [0u8, 159, 146, 150, 10];
        let files = [
            file(&a, b"after\n", 0o640, true),
            file(&b, &binary, 0o644, false),
            file(&c, b"#!/bin/sh\necho '$x'\n", 0o2750, false),
        ];
        let root = format!("{d}/backups/r1");
        let (script, used) = write_files_script(&files, "r1", 7, Some(&root));
        assert_eq!(used, 2, "one staging folder per target folder");
        let out = sh(&script);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "after\n");
        assert_eq!(std::fs::read(&b).unwrap(), binary);
        assert_eq!(
            std::fs::read_to_string(&c).unwrap(),
            "#!/bin/sh\necho '$x'\n"
        );
        let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode(&a), mode(&b), mode(&c)), (0o640, 0o644, 0o2750));
        let backups: Vec<_> =
            crate::scripts::parse_backups(&String::from_utf8_lossy(&out.stdout)).collect();
        assert_eq!(backups.len(), 1);
        assert_eq!(backups[0].path, crate::naming::file_backup(&root, &a));
        assert_eq!(
            std::fs::read_to_string(&backups[0].path).unwrap(),
            "before\n"
        );
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    /// A rename that fails in the second folder (its target is a folder) puts back what the
    /// first folder had already received: the previous file (same inode) and no new one.
    #[test]
    fn a_rename_that_fails_part_way_puts_back_what_had_moved() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        std::fs::create_dir_all(dir.path().join("b/blocked")).unwrap();
        std::fs::write(dir.path().join("a.conf"), "before\n").unwrap();
        let inode = std::fs::metadata(dir.path().join("a.conf")).unwrap().ino();
        let (a, fresh, blocked) = (
            format!("{d}/a.conf"),
            format!("{d}/fresh.conf"),
            format!("{d}/b/blocked"),
        );
        let files = [
            file(&a, b"after\n", 0o644, true),
            file(&fresh, b"new\n", 0o644, false),
            file(&blocked, b"x\n", 0o644, false),
        ];
        let (script, _) = write_files_script(&files, "r2", 0, None);
        let out = sh(&script);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            failed_file(&String::from_utf8_lossy(&out.stdout)),
            Some(2),
            "the marker names the file whose rename failed"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("blocked"),
            "the failure names the file: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "before\n");
        assert_eq!(std::fs::metadata(&a).unwrap().ino(), inode);
        assert!(!std::path::Path::new(&fresh).exists());
        assert!(std::path::Path::new(&blocked).is_dir());
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    /// A staging folder that exists already (not ours) fails the step and is neither
    /// written into nor removed.
    #[test]
    fn an_existing_staging_folder_fails_the_step_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let planted = staging_dir(d, "r3", 0);
        std::fs::create_dir_all(format!("{planted}/n")).unwrap();
        let target = format!("{d}/x.conf");
        let (script, _) = write_files_script(&[file(&target, b"x\n", 0o644, false)], "r3", 0, None);
        std::fs::write(format!("{planted}/n/theirs"), "kept\n").unwrap();
        let out = sh(&script);
        assert!(!out.status.success());
        assert!(!std::path::Path::new(&target).exists());
        assert_eq!(
            std::fs::read_to_string(format!("{planted}/n/theirs")).unwrap(),
            "kept\n"
        );
        assert_eq!(
            std::fs::read_dir(format!("{planted}/n")).unwrap().count(),
            1
        );
    }

    /// An owner that does not exist is blamed on the first file that has it, and nothing
    /// of the step lands.
    #[test]
    fn a_bad_owner_names_its_first_file_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let paths: Vec<String> = (0..3).map(|i| format!("{d}/f{i}")).collect();
        let mut files: Vec<Staged> = paths
            .iter()
            .map(|p| file(p, b"x\n", 0o644, false))
            .collect();
        files[1].owner = "no-such-user-hk";
        files[2].owner = "no-such-user-hk";
        let (script, _) = write_files_script(&files, "r4", 0, None);
        let out = sh(&script);
        assert!(!out.status.success());
        assert_eq!(failed_file(&String::from_utf8_lossy(&out.stdout)), Some(1));
        assert_eq!(walk(dir.path()), Vec::<String>::new(), "nothing lands");
    }
}
