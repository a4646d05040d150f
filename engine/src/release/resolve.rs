//! Which commit a Service's `source.ref` names now, asked of the repository by the
//! controller (an `ls-remote`: refs only, no objects), so that the commit is known before
//! anything is planned and is what the Revision records.

use std::path::Path;

use hostkit_api::kinds::{GitAuth, Source, is_commit_id};

use crate::git::{fetch_error, set_ssh_command, ssh_command};
use crate::secrets::Secrets;
use crate::{Error, Result};

/// A resolved ref.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub commit: String,
    /// The full ref name it came from (empty for a commit ref).
    pub fallback_ref: String,
}

/// The full ref name `source.ref` asks for (`refs/tags/v1`), or `None` for a commit.
pub fn ref_name(source: &Source) -> Option<String> {
    match (&source.ref_.tag, &source.ref_.branch) {
        (Some(t), _) => Some(format!("refs/tags/{t}")),
        (None, Some(b)) => Some(format!("refs/heads/{b}")),
        _ => None,
    }
}

/// Resolves `source.ref` with a bare repository of its own in a new private temporary
/// folder (never one that already existed: a planted git config must not be read),
/// removed afterwards. Blocking.
pub fn resolve_once(source: &Source, secrets: &Secrets) -> Result<Resolved> {
    use std::os::unix::fs::DirBuilderExt;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "hostkit-source-{}-{seq}-{nanos}",
        std::process::id()
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let resolved = resolve(&dir, source, secrets);
    let _ = std::fs::remove_dir_all(&dir);
    resolved
}

/// Resolves `source.ref`. `cache` is a folder this source may keep a bare repository in
/// (gix needs one to talk to a remote; nothing is fetched into it). Blocking: run it off
/// the async threads.
pub fn resolve(cache: &Path, source: &Source, secrets: &Secrets) -> Result<Resolved> {
    let Some(wanted) = ref_name(source) else {
        return match &source.ref_.commit {
            Some(c) if is_commit_id(c) => Ok(Resolved {
                commit: c.clone(),
                fallback_ref: String::new(),
            }),
            _ => Err(Error::Invalid {
                object: "source".into(),
                field: "spec.source.ref".into(),
                message: "give exactly one of tag, branch, commit (a full 40-hex id)".into(),
            }),
        };
    };
    let url = source.git.as_str();
    std::fs::create_dir_all(cache)?;
    if !cache.join("HEAD").exists() {
        gix::init_bare(cache).map_err(|e| fetch_error(url, e))?;
    }
    let auth = source.auth.as_ref().map(|a| GitAuth {
        ssh_key: Some(a.ssh_key.clone()),
        known_hosts: Some(a.known_hosts.clone()),
        token: None,
    });
    let (command, files) = ssh_command(url, cache, auth.as_ref(), secrets)?;
    set_ssh_command(cache, command.as_deref())?;
    let repo = gix::open(cache).map_err(|e| fetch_error(url, e))?;
    let refspec = format!("{wanted}:{wanted}");
    let remote = repo
        .remote_at(url)
        .map_err(|e| fetch_error(url, e))?
        .with_refspecs(Some(refspec.as_str()), gix::remote::Direction::Fetch)
        .map_err(|e| fetch_error(url, e))?;
    let connection = remote
        .connect(gix::remote::Direction::Fetch)
        .map_err(|e| fetch_error(url, e))?;
    let (map, _) = connection
        .ref_map(gix::progress::Discard, Default::default())
        .map_err(|e| fetch_error(url, e))?;
    drop(files);
    for r in &map.remote_refs {
        let (name, target, peeled) = r.unpack();
        if name == wanted.as_bytes() {
            // An annotated tag names a tag object: the commit is what it peels to.
            let id = peeled.or(target).ok_or_else(|| Error::Transport {
                host: url.to_string(),
                message: format!("{wanted} names no commit (an empty branch?)"),
            })?;
            return Ok(Resolved {
                commit: id.to_string(),
                fallback_ref: wanted,
            });
        }
    }
    Err(Error::Transport {
        host: url.to_string(),
        message: format!("{} is not in the repository", source.ref_label()),
    })
}
