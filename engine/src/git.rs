//! Where a GitSource's manifests come from: a git repository fetched into a bare cache
//! with gix (no worktree: files are read straight from the commit's tree), or a plain
//! folder. Both give a [`Snapshot`]: a revision label and the manifest files under the
//! chosen path, sorted, so the controller can parse and apply them all or nothing.
//!
//! Credentials are secret references, resolved here and only here: an SSH key given as an
//! environment variable is written to a 0600 file for the fetch and removed after it; a
//! token answers the HTTP credential request in memory. None of them reaches the cache's
//! config or a message.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use hostkit_api::kinds::{GitAuth, GitRef};
use hostkit_api::values::SecretRef;
use sha2::{Digest, Sha256};

use crate::secrets::Secrets;
use crate::{Error, Result};

/// The manifests of one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// `main@sha1:<40 hex>`, `v1.2.0@sha1:…`, `sha1:…`, or `sha256:<hex>` for a folder.
    pub revision: String,
    /// The commit id (or folder digest) alone.
    pub id: String,
    /// (path relative to the source's path, content), sorted by path.
    pub files: Vec<(String, String)>,
}

impl Snapshot {
    /// `main@sha1:abcdef1`: the revision with a short id, for tables.
    pub fn short(revision: &str) -> String {
        match revision.rsplit_once(':') {
            Some((head, id)) if id.len() > 7 => format!("{head}:{}", &id[..7]),
            _ => revision.to_string(),
        }
    }
}

fn manifest(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

pub(crate) fn fetch_error(url: &str, e: impl std::error::Error) -> Error {
    // The whole chain: the remote's own words are usually at the end of it.
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    Error::Transport {
        host: url.to_string(),
        message,
    }
}

/// A secret that must be a file for `ssh`: the path itself, or the value written to a
/// private temporary file that is removed when dropped.
pub(crate) struct SecretFile {
    path: PathBuf,
    temporary: bool,
}

impl SecretFile {
    fn new(secrets: &Secrets, r: &SecretRef, dir: &Path, name: &str) -> Result<SecretFile> {
        match r {
            SecretRef::File(p) => {
                let expanded = match p.strip_prefix("~/") {
                    Some(rest) => format!("{}/{rest}", std::env::var("HOME").unwrap_or_default()),
                    None => p.clone(),
                };
                Ok(SecretFile {
                    path: PathBuf::from(expanded),
                    temporary: false,
                })
            }
            SecretRef::Env(_) => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let value = secrets.resolve(r)?;
                let path = dir.join(format!(".{name}-{}", std::process::id()));
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)?;
                f.write_all(value.as_bytes())?;
                f.write_all(b"\n")?;
                Ok(SecretFile {
                    path,
                    temporary: true,
                })
            }
        }
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Sets (or clears) `core.sshCommand` in the cache's own config: one source's key never
/// leaks into another's fetch, as a process-wide GIT_SSH_COMMAND would.
pub(crate) fn set_ssh_command(cache: &Path, command: Option<&str>) -> Result<()> {
    let config = cache.join("config");
    let text = std::fs::read_to_string(&config).unwrap_or_default();
    let mut kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("sshCommand"))
        .collect();
    let line;
    if let Some(cmd) = command {
        line = format!(
            "\tsshCommand = {}",
            cmd.replace('\\', "\\\\").replace('"', "\\\"")
        );
        match kept.iter().position(|l| l.trim() == "[core]") {
            Some(i) => kept.insert(i + 1, &line),
            None => {
                kept.push("[core]");
                kept.push(&line);
            }
        }
    }
    let mut out = kept.join("\n");
    out.push('\n');
    let tmp = cache.join(".config.tmp");
    std::fs::write(&tmp, out)?;
    std::fs::rename(&tmp, &config)?;
    Ok(())
}

fn quote(p: &Path) -> String {
    crate::transport::sh_quote(&p.display().to_string())
}

/// Fetches `url` at `reference` into the bare repository `cache` (created on first use)
/// and reads the manifests under `path`. Blocking: run it off the async threads.
pub fn fetch(
    cache: &Path,
    url: &str,
    reference: &GitRef,
    path: Option<&str>,
    auth: Option<&GitAuth>,
    secrets: &Secrets,
) -> Result<Snapshot> {
    std::fs::create_dir_all(cache)?;
    let fresh = !cache.join("HEAD").exists();
    if fresh {
        gix::init_bare(cache).map_err(|e| fetch_error(url, e))?;
    }
    let (ssh_command, files) = ssh_command(url, cache, auth, secrets)?;
    set_ssh_command(cache, ssh_command.as_deref())?;
    let token = match auth.and_then(|a| a.token.as_ref()) {
        Some(t) => Some(secrets.resolve(t)?),
        None => None,
    };
    let wanted = Wanted::of(reference);
    receive(cache, url, &wanted, token)?;
    // The key files go as soon as the fetch is done.
    drop(files);
    let repo = gix::open(cache).map_err(|e| fetch_error(url, e))?;
    let (id, label) = resolve(&repo, url, reference, &wanted)?;
    let mut files = read_tree(&repo, url, id, path, &label)?;
    files.sort();
    Ok(Snapshot {
        revision: label,
        id: id.to_string(),
        files,
    })
}

/// SSH: the key and known_hosts of this source only, host keys always checked. The files
/// live as long as the returned list.
pub(crate) fn ssh_command(
    url: &str,
    cache: &Path,
    auth: Option<&GitAuth>,
    secrets: &Secrets,
) -> Result<(Option<String>, Vec<SecretFile>)> {
    let mut files = Vec::new();
    let ssh_command = if url.starts_with("ssh://") {
        let mut cmd =
            String::from("ssh -o BatchMode=yes -o ConnectTimeout=10 -o StrictHostKeyChecking=yes");
        if let Some(k) = auth.and_then(|a| a.ssh_key.as_ref()) {
            let f = SecretFile::new(secrets, k, cache, "key")?;
            cmd.push_str(&format!(" -o IdentitiesOnly=yes -i {}", quote(&f.path)));
            files.push(f);
        }
        if let Some(k) = auth.and_then(|a| a.known_hosts.as_ref()) {
            let f = SecretFile::new(secrets, k, cache, "known_hosts")?;
            cmd.push_str(&format!(" -o UserKnownHostsFile={}", quote(&f.path)));
            files.push(f);
        }
        Some(cmd)
    } else {
        None
    };
    Ok((ssh_command, files))
}

/// What to fetch for a reference: the refspec, the ref it lands in (none for a commit),
/// and whether one commit of history is enough.
struct Wanted {
    refspec: String,
    tracking: Option<String>,
    shallow: bool,
}

impl Wanted {
    fn of(reference: &GitRef) -> Wanted {
        let (refspec, tracking, shallow) =
            match (&reference.branch, &reference.tag, &reference.commit) {
                (Some(b), _, _) => (
                    format!("+refs/heads/{b}:refs/remotes/origin/{b}"),
                    Some(format!("refs/remotes/origin/{b}")),
                    true,
                ),
                (_, Some(t), _) => (
                    format!("+refs/tags/{t}:refs/tags/{t}"),
                    Some(format!("refs/tags/{t}")),
                    true,
                ),
                // A commit: fetch every branch with history (servers rarely serve a bare id).
                _ => (
                    "+refs/heads/*:refs/remotes/origin/*".to_string(),
                    None,
                    false,
                ),
            };
        Wanted {
            refspec,
            tracking,
            shallow,
        }
    }
}

/// Fetches `wanted` from `url` into the cache, answering an HTTP credential request with
/// `token` (in memory only).
fn receive(cache: &Path, url: &str, wanted: &Wanted, token: Option<String>) -> Result<()> {
    let repo = gix::open(cache).map_err(|e| fetch_error(url, e))?;
    let remote = repo
        .remote_at(url)
        .map_err(|e| fetch_error(url, e))?
        .with_refspecs(Some(wanted.refspec.as_str()), gix::remote::Direction::Fetch)
        .map_err(|e| fetch_error(url, e))?;
    let mut connection = remote
        .connect(gix::remote::Direction::Fetch)
        .map_err(|e| fetch_error(url, e))?;
    if let Some(token) = token {
        connection = connection.with_credentials(move |action| match action {
            gix::credentials::helper::Action::Get(ctx) => {
                Ok(Some(gix::credentials::protocol::Outcome {
                    identity: gix::sec::identity::Account {
                        username: ctx
                            .username
                            .clone()
                            .unwrap_or_else(|| "x-access-token".into()),
                        password: token.clone(),
                        oauth_refresh_token: None,
                    },
                    next: gix::credentials::helper::NextAction::from(ctx),
                }))
            }
            _ => Ok(None),
        });
    }
    let mut prepare = connection
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|e| fetch_error(url, e))?;
    if wanted.shallow {
        prepare = prepare.with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(
            NonZeroU32::new(1).expect("non-zero"),
        ));
    }
    prepare
        .receive(gix::progress::Discard, &AtomicBool::new(false))
        .map_err(|e| fetch_error(url, e))?;
    Ok(())
}

/// The commit the reference names now, and its label (`main@sha1:…`).
fn resolve(
    repo: &gix::Repository,
    url: &str,
    reference: &GitRef,
    wanted: &Wanted,
) -> Result<(gix::ObjectId, String)> {
    Ok(match (&wanted.tracking, &reference.commit) {
        (Some(r), _) => {
            let reference_ = repo
                .find_reference(r.as_str())
                .map_err(|e| Error::Transport {
                    host: url.to_string(),
                    message: format!("{r} is not in the repository: {e}"),
                })?;
            let id = reference_
                .into_fully_peeled_id()
                .map_err(|e| fetch_error(url, e))?
                .detach();
            let name = reference
                .branch
                .clone()
                .or(reference.tag.clone())
                .unwrap_or_default();
            (id, format!("{name}@sha1:{id}"))
        }
        (None, Some(c)) => {
            let id = repo
                .rev_parse_single(c.as_str())
                .map_err(|e| Error::Transport {
                    host: url.to_string(),
                    message: format!("commit {c} is not on any branch of the repository: {e}"),
                })?
                .detach();
            (id, format!("sha1:{id}"))
        }
        (None, None) => {
            return Err(Error::Invalid {
                object: "GitSource".into(),
                field: "spec.ref".into(),
                message: "give one of branch, tag, commit".into(),
            });
        }
    })
}

/// The manifest files (path, text) under `path` of the commit's tree.
fn read_tree(
    repo: &gix::Repository,
    url: &str,
    id: gix::ObjectId,
    path: Option<&str>,
    label: &str,
) -> Result<Vec<(String, String)>> {
    let commit = repo
        .find_object(id)
        .map_err(|e| fetch_error(url, e))?
        .peel_to_commit()
        .map_err(|e| fetch_error(url, e))?;
    let mut tree = commit.tree().map_err(|e| fetch_error(url, e))?;
    if let Some(p) = path.filter(|p| !p.is_empty() && *p != ".") {
        let entry = tree
            .lookup_entry_by_path(p)
            .map_err(|e| fetch_error(url, e))?
            .ok_or_else(|| Error::Invalid {
                object: "GitSource".into(),
                field: "spec.path".into(),
                message: format!("{p:?} is not a folder at {label}"),
            })?;
        tree = entry
            .object()
            .map_err(|e| fetch_error(url, e))?
            .peel_to_tree()
            .map_err(|e| fetch_error(url, e))?;
    }
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse()
        .breadthfirst(&mut recorder)
        .map_err(|e| fetch_error(url, e))?;
    let mut files = Vec::new();
    for entry in recorder.records {
        let p = entry.filepath.to_string();
        if !entry.mode.is_blob() || !manifest(&p) {
            continue;
        }
        let blob = repo
            .find_object(entry.oid)
            .map_err(|e| fetch_error(url, e))?;
        let text = String::from_utf8(blob.data.clone()).map_err(|_| Error::Invalid {
            object: "GitSource".into(),
            field: "spec.path".into(),
            message: format!("{p} at {label} is not UTF-8 text"),
        })?;
        files.push((p, text));
    }
    Ok(files)
}

/// Reads every `*.yaml`/`*.yml` below `dir` (sub-folders included, hidden ones skipped);
/// the revision is a digest of the paths and contents, so an unchanged folder reads the
/// same.
pub fn read_folder(dir: &Path) -> Result<Snapshot> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::Transport {
                host: dir.display().to_string(),
                message: format!("cannot read the folder: {e}"),
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out)?;
            } else if manifest(name) {
                let text = std::fs::read_to_string(&p).map_err(|e| Error::Transport {
                    host: p.display().to_string(),
                    message: e.to_string(),
                })?;
                let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
                out.push((rel, text));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for (p, t) in &files {
        h.update(p.as_bytes());
        h.update([0]);
        h.update(t.as_bytes());
        h.update([0]);
    }
    let id = hex::encode(h.finalize());
    Ok(Snapshot {
        revision: format!("sha256:{id}"),
        id,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.email=t@example.com",
                "-c",
                "user.name=t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn fetches_a_branch_a_tag_and_a_commit_and_reads_only_manifests_under_the_path() {
        let work = tempfile::tempdir().unwrap();
        let repo = work.path().join("repo");
        std::fs::create_dir_all(repo.join("hosts/prod/sub")).unwrap();
        git(&repo, &["init", "-q"]);
        std::fs::write(repo.join("hosts/prod/a.yaml"), "a: 1\n").unwrap();
        std::fs::write(repo.join("hosts/prod/sub/b.yml"), "b: 1\n").unwrap();
        std::fs::write(repo.join("hosts/prod/notes.txt"), "not a manifest").unwrap();
        std::fs::write(repo.join("other.yaml"), "outside: path\n").unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "one"]);
        git(&repo, &["tag", "v1"]);
        let first = String::from_utf8(
            std::process::Command::new("git")
                .args(["rev-parse", "HEAD"])
                .current_dir(&repo)
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_string();
        std::fs::write(repo.join("hosts/prod/a.yaml"), "a: 2\n").unwrap();
        git(&repo, &["commit", "-qam", "two"]);

        let url = format!("file://{}", repo.display());
        let cache = work.path().join("cache");
        let secrets = Secrets::default();
        let branch = GitRef {
            branch: Some("main".into()),
            ..Default::default()
        };
        let s = fetch(&cache, &url, &branch, Some("hosts/prod"), None, &secrets).unwrap();
        assert!(s.revision.starts_with("main@sha1:"), "{}", s.revision);
        assert_eq!(
            s.files,
            [
                ("a.yaml".to_string(), "a: 2\n".to_string()),
                ("sub/b.yml".to_string(), "b: 1\n".to_string())
            ]
        );
        assert_eq!(
            Snapshot::short(&s.revision),
            format!("main@sha1:{}", &s.id[..7])
        );

        let tag = GitRef {
            tag: Some("v1".into()),
            ..Default::default()
        };
        let t = fetch(&cache, &url, &tag, Some("hosts/prod"), None, &secrets).unwrap();
        assert_eq!(t.files[0].1, "a: 1\n");
        assert_eq!(t.id, first);

        let commit = GitRef {
            commit: Some(first[..10].to_string()),
            ..Default::default()
        };
        let c = fetch(&cache, &url, &commit, Some("hosts/prod"), None, &secrets).unwrap();
        assert_eq!(c.id, first);
        assert_eq!(c.revision, format!("sha1:{first}"));

        let missing = fetch(&cache, &url, &branch, Some("nope"), None, &secrets).unwrap_err();
        assert!(
            missing.to_string().contains("\"nope\" is not a folder"),
            "{missing}"
        );
        let gone = fetch(
            &work.path().join("c2"),
            "file:///nonexistent/repo",
            &branch,
            None,
            None,
            &secrets,
        )
        .unwrap_err();
        assert!(gone.to_string().contains("/nonexistent/repo"), "{gone}");
    }

    #[test]
    fn a_folder_reads_like_a_tree_and_its_revision_follows_its_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), "a: 1\n").unwrap();
        std::fs::write(dir.path().join("sub/b.yml"), "b: 1\n").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "no").unwrap();
        let one = read_folder(dir.path()).unwrap();
        assert_eq!(
            one.files
                .iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>(),
            ["a.yaml", "sub/b.yml"]
        );
        assert_eq!(read_folder(dir.path()).unwrap().revision, one.revision);
        std::fs::write(dir.path().join("a.yaml"), "a: 2\n").unwrap();
        assert_ne!(read_folder(dir.path()).unwrap().revision, one.revision);
    }

    #[test]
    fn the_ssh_command_lives_in_the_cache_config_and_is_replaced_not_stacked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config"), "[core]\n\tbare = true\n").unwrap();
        set_ssh_command(dir.path(), Some("ssh -i /k1")).unwrap();
        set_ssh_command(dir.path(), Some("ssh -i /k2")).unwrap();
        let text = std::fs::read_to_string(dir.path().join("config")).unwrap();
        assert_eq!(text.matches("sshCommand").count(), 1, "{text}");
        assert!(text.contains("sshCommand = ssh -i /k2"), "{text}");
        set_ssh_command(dir.path(), None).unwrap();
        assert!(
            !std::fs::read_to_string(dir.path().join("config"))
                .unwrap()
                .contains("sshCommand")
        );
    }
}
