//! `source`: application code delivered from git. The host fetches one exact commit into
//! `releases/<commit>` under the Service's source folder, builds it there, and a `current`
//! link switches to it; a rollback switches the link back to a release that is still on
//! the host.
//!
//! Every string here reaches a shell command line on the host (quoted) and git's own
//! argument parser, so each is checked for the one shape it may have: a URL of an allowed
//! scheme without credentials, a ref name git accepts, a full commit id, a relative path.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::GitRef;
use crate::validate::{Validator, check_argv, check_secret, is_line_safe};
use crate::values::SecretRef;

/// Releases kept on a host when `keep` is not given.
pub const DEFAULT_KEEP: u32 = 5;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// The repository: an `https://`, `http://`, `git://` or `ssh://` URL (credentials go in
    /// `auth`, never in the URL).
    pub git: String,
    /// Exactly one of `tag`, `branch` or `commit` (a full 40-hex id). A branch is resolved
    /// again at every resync: a new commit is a new rollout.
    #[serde(rename = "ref")]
    pub ref_: GitRef,
    /// The application's folder inside the repository (default `.`): builds run there and
    /// `${source.current}` names it in the current release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Build steps, each a command and its arguments, run in order in the new release as
    /// the Service's user with the daemon's sandbox; the first that fails stops the
    /// release, and `current` stays where it was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build: Vec<Vec<String>>,
    /// Releases kept on the host, newest first (default 5); the current one and any a
    /// kept Revision needs are never pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// For `ssh://`: a deploy key and the server's host key, as secret references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SourceAuth>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceAuth {
    /// The private deploy key (OpenSSH format).
    pub ssh_key: SecretRef,
    /// `known_hosts` line(s) for the git server: host keys are always checked.
    pub known_hosts: SecretRef,
}

impl Source {
    /// The folder inside the repository, `None` for its top.
    pub fn subdir(&self) -> Option<&str> {
        self.path
            .as_deref()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty() && *p != ".")
    }

    pub fn keep(&self) -> u32 {
        self.keep.unwrap_or(DEFAULT_KEEP)
    }

    /// `tag v1.4.2`, `branch main` or `commit <id>`: the ref as people say it.
    pub fn ref_label(&self) -> String {
        match (&self.ref_.tag, &self.ref_.branch, &self.ref_.commit) {
            (Some(t), _, _) => format!("tag {t}"),
            (_, Some(b), _) => format!("branch {b}"),
            (_, _, Some(c)) => format!("commit {c}"),
            _ => "no ref".into(),
        }
    }
}

/// Is `id` a full commit id (what the host fetches by)?
pub fn is_commit_id(id: &str) -> bool {
    id.len() == 40
        && id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// A ref name git accepts and a shell word cannot be confused with an option: the rules
/// of `git check-ref-format`, narrowed to common characters.
fn check_ref_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '+'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a ref name: letters, digits and . _ - / +, not starting with - / or ., without '..'"
        ))
    }
}

/// The URL's scheme is one the host's git may use, and it carries no password.
fn check_url(url: &str) -> Result<(), String> {
    const SCHEMES: [&str; 4] = ["https://", "http://", "git://", "ssh://"];
    let Some(rest) = SCHEMES.iter().find_map(|s| url.strip_prefix(s)) else {
        return Err(format!(
            "{url:?} is not a git URL; valid schemes: https://, http://, git://, ssh://"
        ));
    };
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || !is_line_safe(c)) {
        return Err(format!(
            "{url:?} must be one line without spaces, at most 2048 characters"
        ));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("{url:?} names no server"));
    }
    if let Some((user, _)) = authority.rsplit_once('@')
        && user.contains(':')
    {
        return Err(format!(
            "{url:?} holds a password; give an ssh:// URL with auth.sshKey instead"
        ));
    }
    Ok(())
}

pub(super) fn check_source(s: &Source, has_user: bool, v: &mut Validator) {
    match check_url(&s.git) {
        Ok(()) => {
            let ssh = s.git.starts_with("ssh://");
            match (&s.auth, ssh) {
                (None, true) => v.err(
                    "auth",
                    "an ssh:// source needs auth.sshKey (a deploy key) and auth.knownHosts",
                ),
                (Some(_), false) => v.err(
                    "auth",
                    "auth is for ssh:// URLs (a deploy key); this source is fetched without credentials",
                ),
                _ => {}
            }
        }
        Err(e) => v.err("git", e),
    }
    let r = &s.ref_;
    match (&r.tag, &r.branch, &r.commit) {
        (Some(t), None, None) => v.check("ref.tag", check_ref_name(t)),
        (None, Some(b), None) => v.check("ref.branch", check_ref_name(b)),
        (None, None, Some(c)) if !is_commit_id(c) => v.err(
            "ref.commit",
            format!("{c:?} is not a full commit id (40 lowercase hex digits): the host fetches that exact commit"),
        ),
        (None, None, Some(_)) => {}
        _ => v.err("ref", "give exactly one of tag, branch, commit"),
    }
    if let Some(p) = &s.path {
        let ok = !p.starts_with('/')
            && !p.split('/').any(|seg| seg == "..")
            && p.len() <= 1024
            && p.chars().all(|c| !c.is_control());
        if !ok {
            v.err(
                "path",
                format!("{p:?} must be a folder inside the repository (relative, no '..')"),
            );
        }
    }
    for (i, step) in s.build.iter().enumerate() {
        check_argv(&format!("build[{i}]"), step, v);
    }
    if let Some(k) = s.keep
        && !(1..=100).contains(&k)
    {
        v.err("keep", format!("{k} releases: keep 1 to 100"));
    }
    if let Some(a) = &s.auth {
        check_secret("auth.sshKey", &a.ssh_key, v);
        check_secret("auth.knownHosts", &a.known_hosts, v);
    }
    if !has_user {
        v.err(
            "git",
            "releases are fetched and built as the Service's user: declare spec.account (or daemon.user)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(s: &Source) -> Vec<String> {
        let mut v = Validator::default();
        check_source(s, true, &mut v);
        v.into_errors().into_iter().map(|e| e.to_string()).collect()
    }

    fn tag(url: &str, t: &str) -> Source {
        Source {
            git: url.into(),
            ref_: GitRef {
                tag: Some(t.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn good_sources_pass() {
        assert!(errors(&tag("https://git.example.com/acme/shop.git", "v1.4.2")).is_empty());
        assert!(errors(&tag("git://10.0.0.1/shop", "release/2026-12")).is_empty());
    }

    #[test]
    fn hostile_urls_refs_and_paths_are_refused() {
        for url in [
            "ext::sh -c touch% /tmp/x",
            "file:///etc",
            "/srv/repo",
            "-uhttps://x",
            "https://user:secret@git.example.com/r.git",
            "https://git.example.com/r.git\nExecStart=/bin/sh",
            "https:///nohost",
        ] {
            let e = errors(&tag(url, "v1"));
            assert!(e.iter().any(|m| m.starts_with("git")), "{url:?}: {e:?}");
        }
        for t in [
            "--upload-pack=touch /tmp/x",
            "a..b",
            "v1.lock",
            "x y",
            "",
            "/abs",
        ] {
            let e = errors(&tag("https://h/r", t));
            assert!(e.iter().any(|m| m.starts_with("ref.tag")), "{t:?}: {e:?}");
        }
        let mut s = tag("https://h/r", "v1");
        s.ref_.commit = Some("abc1234".into());
        s.ref_.tag = None;
        let e = errors(&s);
        assert!(e[0].contains("full commit id"), "{e:?}");
        s.ref_.branch = Some("main".into());
        assert!(errors(&s)[0].contains("exactly one"));
        let mut s = tag("https://h/r", "v1");
        s.path = Some("../../etc".into());
        assert!(errors(&s)[0].starts_with("path"));
        s.path = None;
        s.build = vec![vec![]];
        assert!(errors(&s)[0].starts_with("build[0]"));
        s.build = vec![];
        s.keep = Some(0);
        assert!(errors(&s)[0].starts_with("keep"));
    }

    #[test]
    fn ssh_needs_a_deploy_key_and_others_take_none() {
        let e = errors(&tag("ssh://git@h/r.git", "v1"));
        assert!(e[0].contains("auth.sshKey"), "{e:?}");
        let mut s = tag("https://h/r", "v1");
        s.auth = Some(SourceAuth {
            ssh_key: SecretRef::Env("K".into()),
            known_hosts: SecretRef::Env("H".into()),
        });
        assert!(errors(&s)[0].contains("auth is for ssh://"));
        s.git = "ssh://git@h/r.git".into();
        assert!(errors(&s).is_empty());
    }

    #[test]
    fn a_source_needs_a_user() {
        let mut v = Validator::default();
        check_source(&tag("https://h/r", "v1"), false, &mut v);
        let e: Vec<String> = v.into_errors().iter().map(|e| e.to_string()).collect();
        assert!(e[0].contains("spec.account"), "{e:?}");
    }
}
