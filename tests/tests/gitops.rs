//! GitSources end to end: real git repositories (the `git` CLI) served as `file://`, by
//! `git daemon` on a loopback port, and over SSH from a booted test host; and a folder
//! source. The real `hostkit serve` syncs them; `hkctl` checks what landed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hostkit_e2e::etcd::EtcdServer;
use hostkit_e2e::server::{Hostkit, condition, stderr, stdout};
use hostkit_e2e::testhost::TestHost;
use hostkit_e2e::{free_port, git, wait_until};
use serde_json::Value;

/// A git repository with a work tree, committed to with the real `git`.
struct Repo {
    dir: PathBuf,
}

impl Repo {
    fn new(parent: &Path) -> Repo {
        let dir = parent.join("infra");
        std::fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q"], &[]);
        Repo { dir }
    }

    /// Writes (`Some`) or removes (`None`) files, commits, returns the commit id.
    fn commit(&self, files: &[(&str, Option<&str>)], message: &str) -> String {
        for (path, content) in files {
            let p = self.dir.join(path);
            match content {
                Some(text) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, text).unwrap();
                }
                None => {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        git(&self.dir, &["add", "-A"], &[]);
        git(&self.dir, &["commit", "-qm", message, "--allow-empty"], &[]);
        git(&self.dir, &["rev-parse", "HEAD"], &[])
    }

    fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

/// `git daemon` serving a folder on a free loopback port; killed on drop.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = free_port();
        let child = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        assert!(wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }));
        GitDaemon { child, port }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        hostkit_e2e::stop_child(&mut self.child, true);
    }
}

fn gitsource(name: &str, url: &str, path: &str, extra: &str) -> String {
    format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: GitSource\nmetadata: {{name: {name}}}\nspec:\n  url: {url}\n  ref: {{branch: main}}\n  path: {path}\n  interval: 2s\n  prune: true\n{extra}"
    )
}

fn project(name: &str, data: &str, extra_meta: &str) -> String {
    format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Project\nmetadata:\n  name: {name}\n{extra_meta}spec:\n  roots: {{data: {data}}}\n"
    )
}

fn window(name: &str) -> String {
    format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: PolicyWindow\nmetadata: {{name: {name}}}\nspec: {{kind: deny, schedule: \"0 3 * * *\", duration: 1h}}\n"
    )
}

fn ready_at(s: &Hostkit, gs: &str, commit: &str) -> bool {
    s.get("gitsource", gs).is_some_and(|v| {
        v.pointer("/status/lastAppliedCommit")
            .and_then(Value::as_str)
            .is_some_and(|c| c.ends_with(commit))
            && condition(&v, "Ready").is_some_and(|(st, _, _)| st == "True")
    })
}

fn data_root(s: &Hostkit, name: &str) -> Option<String> {
    s.get("project", name)?
        .pointer("/spec/roots/data")?
        .as_str()
        .map(String::from)
}

/// Sync, change, prune, all-or-nothing validation, hand edits, conflicts, suspend and
/// `hkctl sync`, from a `file://` repository.
fn file_scenario(s: &Hostkit) {
    let work = tempfile::tempdir().unwrap();
    let repo = Repo::new(work.path());
    let c1 = repo.commit(
        &[
            (
                "hosts/prod/projects.yaml",
                Some(&project("p1", "/srv/one", "")),
            ),
            ("hosts/prod/windows/w1.yml", Some(&window("w1"))),
            ("hosts/prod/README.md", Some("not a manifest")),
            ("staging.yaml", Some(&project("outside", "/srv/x", ""))),
        ],
        "one",
    );
    s.apply_yaml(&gitsource("infra", &repo.url(), "hosts/prod", ""));
    assert!(
        wait_until(Duration::from_secs(20), || ready_at(s, "infra", &c1)),
        "{:?}\n{}",
        s.get("gitsource", "infra")
            .and_then(|v| v.get("status").cloned()),
        s.log()
    );
    let p1 = s.get("project", "p1").expect("synced");
    assert_eq!(p1["metadata"]["labels"]["hostkit.dev/gitsource"], "infra");
    let source = p1["metadata"]["annotations"]["hostkit.dev/source"]
        .as_str()
        .unwrap();
    assert_eq!(source, format!("gitsource/infra@main@sha1:{}", &c1[..7]));
    assert_eq!(
        p1["metadata"]["annotations"]["hostkit.dev/changed-by"],
        "gitsource/infra"
    );
    assert!(s.get("policywindow", "w1").is_some());
    assert!(
        s.get("project", "outside").is_none(),
        "only the path is synced"
    );
    let table = stdout(&s.hkctl(&["get", "gs"]));
    let row = table
        .lines()
        .find(|l| l.starts_with("infra"))
        .unwrap_or("")
        .to_string();
    assert!(
        row.contains("True") && row.contains(&format!("main@sha1:{}", &c1[..7])),
        "{table}"
    );
    assert!(
        row.split_whitespace().any(|c| c == "2"),
        "2 objects: {table}"
    );

    let describe = stdout(&s.hkctl(&["describe", "gs", "infra"]));
    assert!(
        describe.contains("inventory")
            && describe.contains("name: p1")
            && describe.contains("Synced"),
        "{describe}"
    );

    // A change lands within an interval.
    let c2 = repo.commit(
        &[(
            "hosts/prod/projects.yaml",
            Some(&project("p1", "/srv/two", "")),
        )],
        "two",
    );
    assert!(wait_until(Duration::from_secs(10), || data_root(s, "p1")
        .as_deref()
        == Some("/srv/two")));
    assert!(wait_until(Duration::from_secs(10), || ready_at(
        s, "infra", &c2
    )));

    // A hand edit: git wins at the next sync, and says so.
    s.apply_yaml(&project("p1", "/srv/by-hand", ""));
    assert!(
        wait_until(Duration::from_secs(10), || data_root(s, "p1").as_deref()
            == Some("/srv/two")),
        "git did not win over the hand edit"
    );
    s.wait_events("gitsource/infra", &["HandEditReverted"]);

    // A bad document: nothing of that commit is applied (not even its good change), Ready
    // names the file, line and field; fixing it syncs.
    let bad_service = "apiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {name: broken}\nspec:\n  hostSelector: {matchLabels: {env: nowhere}}\n  daemon:\n    exec: [/bin/true]\n    restart: sometimes\n";
    let c3 = repo.commit(
        &[
            (
                "hosts/prod/projects.yaml",
                Some(&project("p1", "/srv/three", "")),
            ),
            ("hosts/prod/bad.yaml", Some(bad_service)),
        ],
        "bad",
    );
    assert!(
        wait_until(Duration::from_secs(10), || s
            .get("gitsource", "infra")
            .and_then(|v| condition(&v, "Ready"))
            .is_some_and(
                |(st, reason, _)| st == "False" && reason == "ValidationFailed"
            )),
        "{:?}",
        s.get("gitsource", "infra")
            .and_then(|v| v.get("status").cloned())
    );
    let (_, _, message) = condition(&s.get("gitsource", "infra").unwrap(), "Ready").unwrap();
    assert!(
        message.contains("bad.yaml:8") && message.contains("spec.daemon.restart"),
        "{message}"
    );
    assert!(
        message.contains(&c3[..7]) || message.contains(&c3),
        "{message}"
    );
    assert_eq!(
        data_root(s, "p1").as_deref(),
        Some("/srv/two"),
        "all or nothing"
    );
    assert!(s.get("service", "broken").is_none());
    let gs = s.get("gitsource", "infra").unwrap();
    assert!(
        gs["status"]["lastAppliedCommit"]
            .as_str()
            .unwrap()
            .ends_with(&c2)
    );
    let fixed = bad_service.replace("sometimes", "on-failure");
    let c4 = repo.commit(&[("hosts/prod/bad.yaml", Some(&fixed))], "fix");
    assert!(wait_until(Duration::from_secs(10), || ready_at(
        s, "infra", &c4
    )));
    assert_eq!(data_root(s, "p1").as_deref(), Some("/srv/three"));
    assert!(s.get("service", "broken").is_some());

    // Prune: a removed file's objects go; an object annotated prune: disabled stays.
    let kept = project(
        "keeper",
        "/srv/k",
        "  annotations: {hostkit.dev/prune: disabled}\n",
    );
    let c5 = repo.commit(&[("hosts/prod/keeper.yaml", Some(&kept))], "keeper");
    assert!(wait_until(Duration::from_secs(10), || ready_at(
        s, "infra", &c5
    )));
    let c6 = repo.commit(
        &[
            ("hosts/prod/windows/w1.yml", None),
            ("hosts/prod/keeper.yaml", None),
        ],
        "remove",
    );
    assert!(wait_until(Duration::from_secs(10), || ready_at(
        s, "infra", &c6
    )));
    assert!(
        wait_until(Duration::from_secs(10), || s
            .get("policywindow", "w1")
            .is_none()),
        "pruned"
    );
    assert!(
        s.get("project", "keeper").is_some(),
        "prune: disabled keeps it"
    );
    s.wait_events("gitsource/infra", &["Pruned"]);

    // Another source that defines the same object does not take it over.
    let other = tempfile::tempdir().unwrap();
    let repo2 = Repo::new(other.path());
    repo2.commit(
        &[("p.yaml", Some(&project("p1", "/srv/theirs", "")))],
        "theirs",
    );
    s.apply_yaml(&gitsource("rival", &repo2.url(), ".", ""));
    assert!(
        wait_until(Duration::from_secs(10), || s
            .get("gitsource", "rival")
            .and_then(|v| condition(&v, "Ready"))
            .is_some_and(|(st, reason, m)| st == "False"
                && reason == "Conflict"
                && m.contains("Project/p1 belongs to GitSource/infra"))),
        "{:?}",
        s.get("gitsource", "rival")
            .and_then(|v| v.get("status").cloned())
    );
    assert_eq!(data_root(s, "p1").as_deref(), Some("/srv/three"));
    assert!(s.hkctl(&["delete", "gitsource", "rival"]).status.success());

    // Suspended: nothing syncs, until `hkctl sync` asks for it (and waits).
    s.apply_yaml(&gitsource(
        "infra",
        &repo.url(),
        "hosts/prod",
        "  suspend: true\n",
    ));
    std::thread::sleep(Duration::from_millis(500));
    let c7 = repo.commit(
        &[(
            "hosts/prod/projects.yaml",
            Some(&project("p1", "/srv/seven", "")),
        )],
        "seven",
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        data_root(s, "p1").as_deref(),
        Some("/srv/three"),
        "suspended"
    );
    let out = s.hkctl_ok(&["sync", "gitsource/infra"]);
    assert!(
        stdout(&out).contains(&format!("main@sha1:{c7}")),
        "{}",
        stdout(&out)
    );
    assert_eq!(data_root(s, "p1").as_deref(), Some("/srv/seven"));

    // Deleting a source without prune keeps its objects and releases them (the label goes),
    // so another source may take them; deleting one with prune takes its objects along.
    s.apply_yaml(
        &gitsource("infra", &repo.url(), "hosts/prod", "").replace("prune: true", "prune: false"),
    );
    let out = s.hkctl(&["delete", "gitsource", "infra", "--wait", "--timeout", "30s"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let p1 = s
        .get("project", "p1")
        .expect("kept: the source did not prune");
    assert!(
        p1["metadata"]["labels"]
            .get("hostkit.dev/gitsource")
            .is_none(),
        "{p1}"
    );
    s.wait_events("gitsource/infra", &["Released"]);
    assert!(
        wait_until(Duration::from_secs(5), || !s
            .data_dir()
            .join("gitsources/infra")
            .exists()),
        "the git cache goes with the source"
    );
    s.apply_yaml(&gitsource("rival", &repo2.url(), ".", ""));
    assert!(
        wait_until(Duration::from_secs(10), || data_root(s, "p1").as_deref()
            == Some("/srv/theirs")),
        "a released object is taken over: {:?}",
        s.get("gitsource", "rival")
            .and_then(|v| v.get("status").cloned())
    );
    let out = s.hkctl(&["delete", "gitsource", "rival", "--wait", "--timeout", "30s"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        wait_until(Duration::from_secs(10), || s.get("project", "p1").is_none()),
        "pruned with its source"
    );
}

#[test]
fn a_file_repository_syncs_on_the_embedded_store() {
    let s = Hostkit::controller();
    file_scenario(&s);
}

/// `git daemon` on loopback, with etcd; an unreachable remote fails with the remote's
/// message and retries with backoff, and the other source keeps syncing.
#[test]
fn git_daemon_and_an_unreachable_remote_on_etcd() {
    let etcd = EtcdServer::start();
    let s = Hostkit::controller_on_etcd(&etcd.url);
    let work = tempfile::tempdir().unwrap();
    let repo = Repo::new(work.path());
    let c1 = repo.commit(
        &[("p.yaml", Some(&project("served", "/srv/d1", "")))],
        "one",
    );
    let daemon = GitDaemon::start(work.path());
    let url = format!("git://127.0.0.1:{}/infra", daemon.port);
    s.apply_yaml(&gitsource("daemon", &url, ".", ""));
    assert!(
        wait_until(Duration::from_secs(20), || ready_at(&s, "daemon", &c1)),
        "{:?}\n{}",
        s.get("gitsource", "daemon")
            .and_then(|v| v.get("status").cloned()),
        s.log()
    );
    let closed = free_port();
    s.apply_yaml(&gitsource(
        "nowhere",
        &format!("git://127.0.0.1:{closed}/infra"),
        ".",
        "",
    ));
    assert!(
        wait_until(Duration::from_secs(20), || s
            .get("gitsource", "nowhere")
            .and_then(|v| condition(&v, "ArtifactFailed"))
            .is_some_and(
                |(st, _, m)| st == "True" && m.to_lowercase().contains("refused")
            )),
        "{:?}",
        s.get("gitsource", "nowhere")
            .and_then(|v| v.get("status").cloned())
    );
    let c2 = repo.commit(
        &[("p.yaml", Some(&project("served", "/srv/d2", "")))],
        "two",
    );
    assert!(
        wait_until(Duration::from_secs(15), || ready_at(&s, "daemon", &c2)),
        "the other source kept syncing"
    );
    assert_eq!(data_root(&s, "served").as_deref(), Some("/srv/d2"));
    // Retries back off: a handful of attempts in these seconds, not one per 20 ms.
    let m = s.metrics();
    let retries: f64 = m
        .lines()
        .find(|l| l.starts_with("hostkit_workqueue_retries_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(
        (1.0..30.0).contains(&retries),
        "retries with backoff: {retries}"
    );
}

/// A folder source picks up an edit within 2 s (file notifications; the interval is an
/// hour).
#[test]
fn a_folder_source_picks_up_an_edit_within_two_seconds() {
    let s = Hostkit::controller();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("manifests");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("p.yaml"), project("local", "/srv/f1", "")).unwrap();
    s.apply_yaml(&format!(
            "apiVersion: hostkit.dev/v1alpha1\nkind: GitSource\nmetadata: {{name: folder}}\nspec:\n  directory: {}\n  interval: 1h\n  prune: true\n",
            folder.display()
        ),
    );
    assert!(wait_until(Duration::from_secs(20), || data_root(
        &s, "local"
    )
    .as_deref()
        == Some("/srv/f1")));
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    std::fs::write(folder.join("p.yaml"), project("local", "/srv/f2", "")).unwrap();
    assert!(
        wait_until(Duration::from_secs(2), || data_root(&s, "local").as_deref()
            == Some("/srv/f2")),
        "not picked up within 2 s"
    );
    eprintln!("folder edit synced in {:?}", started.elapsed());
    std::fs::remove_file(folder.join("p.yaml")).unwrap();
    assert!(
        wait_until(Duration::from_secs(2), || s
            .get("project", "local")
            .is_none()),
        "pruned"
    );
}

/// Over SSH from a booted test host (key auth, host key checked), the repository also
/// describes that host and a Service on it: a Rollback holds the Service back from git until
/// its manifest changes, and `hkctl release` releases it. Wrong credentials fail with the
/// remote's message and leave the other source alone.
#[test]
fn ssh_from_a_test_host_with_a_rollback_hold() {
    let s = Hostkit::controller();
    let host = TestHost::boot();
    let work = tempfile::tempdir().unwrap();
    host.sh("git init -q --bare -b main /srv/infra.git");
    let known_hosts = work.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("{} {}\n", host.address, host.host_key()),
    )
    .unwrap();
    let ssh_env = vec![(
        "GIT_SSH_COMMAND",
        format!(
            "ssh -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
            host.key().display(),
            known_hosts.display()
        ),
    )];
    let url = format!("ssh://root@{}/srv/infra.git", host.address);
    let repo = Repo::new(work.path());
    let manifests = |v: &str| {
        format!(
            "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {{name: target}}\nspec:\n  address: {}\n  interval: 2s\n  ssh: {{user: root, identityFile: {}, hostKey: {{policy: pinned, key: \"{}\"}}}}\n---\napiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  hosts: [target]\n  interval: 2s\n  files: [{{path: /etc/web.txt, content: \"{v}\\n\"}}]\n",
            host.address,
            host.key().display(),
            host.host_key()
        )
    };
    let push = |msg: &str, v: &str| {
        let c = repo.commit(&[("prod/web.yaml", Some(&manifests(v)))], msg);
        git(
            &repo.dir,
            &["push", "-q", &url, "HEAD:refs/heads/main"],
            &ssh_env,
        );
        c
    };
    let c1 = push("v1", "v1");
    let auth = format!(
        "  auth:\n    sshKey: {{file: {}}}\n    knownHosts: {{file: {}}}\n",
        host.key().display(),
        known_hosts.display()
    );
    s.apply_yaml(&gitsource("infra", &url, "prod", &auth));
    assert!(
        wait_until(Duration::from_secs(30), || ready_at(&s, "infra", &c1)),
        "{:?}\n{}",
        s.get("gitsource", "infra")
            .and_then(|v| v.get("status").cloned()),
        s.log()
    );
    assert!(wait_until(Duration::from_secs(60), || host
        .try_sh("cat /etc/web.txt")
        .1
        == "v1\n"));
    let c2 = push("v2", "v2");
    assert!(wait_until(Duration::from_secs(30), || host
        .try_sh("cat /etc/web.txt")
        .1
        == "v2\n"));
    assert!(wait_until(Duration::from_secs(10), || ready_at(
        &s, "infra", &c2
    )));
    // History names the commit each revision came from.
    let history = stdout(&s.hkctl(&["history", "service/web"]));
    assert!(
        history.contains(&format!("gitsource/infra@main@sha1:{}", &c2[..7]))
            && history.contains(&format!("gitsource/infra@main@sha1:{}", &c1[..7])),
        "{history}"
    );

    // Roll back: git does not re-apply v2, and lists the Service as held.
    s.hkctl_ok(&["rollback", "service/web", "--timeout", "60s"]);
    assert_eq!(host.sh("cat /etc/web.txt"), "v1\n");
    assert!(
        wait_until(Duration::from_secs(10), || s
            .get("gitsource", "infra")
            .is_some_and(|v| v["status"]["held"][0]["name"] == "web")),
        "{:?}",
        s.get("gitsource", "infra")
            .and_then(|v| v.get("status").cloned())
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(host.sh("cat /etc/web.txt"), "v1\n", "held through syncs");
    // A new commit that changes the Service ends the hold.
    push("v3", "v3");
    assert!(wait_until(Duration::from_secs(30), || host
        .try_sh("cat /etc/web.txt")
        .1
        == "v3\n"));
    // Held again (the previous revision is the first rollback's: v1), then released by hand.
    s.hkctl_ok(&["rollback", "service/web", "--timeout", "60s"]);
    assert_eq!(host.sh("cat /etc/web.txt"), "v1\n");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(host.sh("cat /etc/web.txt"), "v1\n");
    let out = s.hkctl(&["release", "service/web"]);
    assert!(
        stdout(&out).contains("released"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(wait_until(Duration::from_secs(30), || host
        .try_sh("cat /etc/web.txt")
        .1
        == "v3\n"));

    // Wrong credentials: the remote's refusal, and the good source is unaffected.
    let wrong_key = work.path().join("wrong_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&wrong_key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let bad_auth = format!(
        "  auth:\n    sshKey: {{file: {}}}\n    knownHosts: {{file: {}}}\n",
        wrong_key.display(),
        known_hosts.display()
    );
    s.apply_yaml(&gitsource("denied", &url, "prod", &bad_auth));
    assert!(
        wait_until(Duration::from_secs(20), || s
            .get("gitsource", "denied")
            .and_then(|v| condition(&v, "ArtifactFailed"))
            .is_some_and(
                |(st, _, m)| st == "True" && m.contains("Permission denied")
            )),
        "{:?}",
        s.get("gitsource", "denied")
            .and_then(|v| v.get("status").cloned())
    );
    let gs = s.get("gitsource", "infra").unwrap();
    assert_eq!(
        condition(&gs, "Ready").map(|c| c.0).as_deref(),
        Some("True")
    );
}

/// A smart-HTTP git server over TLS on loopback, the way a forge serves one: `git
/// http-backend` as a CGI behind axum, answering only HTTP Basic auth whose password is the
/// access token (any user name). Stopped on drop.
struct HttpsGit {
    port: u16,
    handle: axum_server::Handle<std::net::SocketAddr>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Cgi {
    root: PathBuf,
    token: String,
}

impl HttpsGit {
    fn start(root: &Path, token: &str, cert_pem: &str, key_pem: &str) -> HttpsGit {
        use axum::extract::{Request, State};
        use axum::response::{IntoResponse, Response};
        use base64::Engine;
        use std::sync::Arc;

        async fn cgi(State(cgi): State<Arc<Cgi>>, request: Request) -> Response {
            use axum::http::{HeaderName, HeaderValue, StatusCode, header};
            let (parts, body) = request.into_parts();
            let authorized = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()?.strip_prefix("Basic "))
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .is_some_and(|c| c.split_once(':').is_some_and(|(_, p)| p == cgi.token));
            if !authorized {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")],
                    "authentication required\n",
                )
                    .into_response();
            }
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let header_env = |name: HeaderName| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let mut child = tokio::process::Command::new("git")
                .arg("http-backend")
                .env("GIT_PROJECT_ROOT", &cgi.root)
                .env("GIT_HTTP_EXPORT_ALL", "1")
                .env("REQUEST_METHOD", parts.method.as_str())
                .env("PATH_INFO", parts.uri.path())
                .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
                .env("CONTENT_TYPE", header_env(header::CONTENT_TYPE))
                .env("CONTENT_LENGTH", body.len().to_string())
                .env(
                    "HTTP_CONTENT_ENCODING",
                    header_env(header::CONTENT_ENCODING),
                )
                .env(
                    "HTTP_GIT_PROTOCOL",
                    header_env(HeaderName::from_static("git-protocol")),
                )
                .env("REMOTE_USER", "ops")
                .env("REMOTE_ADDR", "127.0.0.1")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("git http-backend");
            let mut stdin = child.stdin.take().unwrap();
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(&body).await;
            });
            let output = child.wait_with_output().await.unwrap();
            let _ = writer.await;
            // CGI output: headers (with an optional `Status:`), a blank line, the body.
            let out = output.stdout;
            let split = out
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| (i, 4))
                .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
                .expect("CGI headers end with a blank line");
            let head = String::from_utf8_lossy(&out[..split.0]).to_string();
            let mut response =
                Response::new(axum::body::Body::from(out[split.0 + split.1..].to_vec()));
            for line in head.lines() {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                if name.eq_ignore_ascii_case("status") {
                    let code = value.split(' ').next().unwrap().parse().unwrap();
                    *response.status_mut() = StatusCode::from_u16(code).unwrap();
                } else {
                    response.headers_mut().append(
                        HeaderName::from_bytes(name.as_bytes()).unwrap(),
                        HeaderValue::from_str(value).unwrap(),
                    );
                }
            }
            response
        }

        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = axum_server::Handle::new();
        let app = axum::Router::new().fallback(cgi).with_state(Arc::new(Cgi {
            root: root.to_path_buf(),
            token: token.to_string(),
        }));
        let config = runtime
            .block_on(axum_server::tls_rustls::RustlsConfig::from_pem(
                cert_pem.as_bytes().to_vec(),
                key_pem.as_bytes().to_vec(),
            ))
            .expect("TLS config");
        let server = axum_server::bind_rustls(([127, 0, 0, 1], port).into(), config)
            .handle(handle.clone())
            .serve(app.into_make_service());
        runtime.spawn(server);
        assert!(wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }));
        HttpsGit {
            port,
            handle,
            runtime: Some(runtime),
        }
    }
}

impl Drop for HttpsGit {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// HTTPS with an access token from the server's environment, the server's certificate
/// trusted through `SSL_CERT_FILE` (a private CA, as many forges inside a company have). A
/// wrong token fails with the remote's answer and does not disturb the good source.
#[test]
fn https_with_a_token_and_a_private_ca() {
    let work = tempfile::tempdir().unwrap();
    let repo = Repo::new(work.path());
    let c1 = repo.commit(
        &[("prod/p.yaml", Some(&project("web", "/srv/w1", "")))],
        "one",
    );
    let served = work.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let bare = served.join("infra.git");
    git(
        work.path(),
        &["clone", "-q", "--bare", &repo.url(), bare.to_str().unwrap()],
        &[],
    );
    let push = || {
        git(
            &repo.dir,
            &[
                "push",
                "-q",
                &format!("file://{}", bare.display()),
                "HEAD:refs/heads/main",
            ],
            &[],
        )
    };
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let server = HttpsGit::start(
        &served,
        "s3cret-t0ken",
        &cert.cert.pem(),
        &cert.signing_key.serialize_pem(),
    );
    let s = Hostkit::start(hostkit_e2e::server::ServeOptions {
        controller: true,
        env: vec![
            ("SSL_CERT_FILE".into(), ca.display().to_string()),
            ("GIT_TOKEN".into(), "s3cret-t0ken".into()),
            ("OLD_TOKEN".into(), "revoked".into()),
        ],
        ..Default::default()
    });
    let url = format!("https://127.0.0.1:{}/infra.git", server.port);
    let auth = "  auth:\n    token: {env: GIT_TOKEN}\n";
    s.apply_yaml(&gitsource("forge", &url, "prod", auth));
    assert!(
        wait_until(Duration::from_secs(20), || ready_at(&s, "forge", &c1)),
        "{:?}\n{}",
        s.get("gitsource", "forge")
            .and_then(|v| v.get("status").cloned()),
        s.log()
    );
    assert_eq!(data_root(&s, "web").as_deref(), Some("/srv/w1"));
    let c2 = repo.commit(
        &[("prod/p.yaml", Some(&project("web", "/srv/w2", "")))],
        "two",
    );
    push();
    let out = s.hkctl(&["sync", "gitsource/forge", "--timeout", "20s"]);
    assert!(
        stdout(&out).contains(&c2[..7]),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(data_root(&s, "web").as_deref(), Some("/srv/w2"));

    // A revoked token: the server's refusal, and the good source keeps its Ready.
    s.apply_yaml(&gitsource(
        "revoked",
        &url,
        "prod",
        "  auth:\n    token: {env: OLD_TOKEN}\n",
    ));
    assert!(
        wait_until(Duration::from_secs(20), || s
            .get("gitsource", "revoked")
            .and_then(|v| condition(&v, "ArtifactFailed"))
            .is_some_and(|(st, _, m)| st == "True" && m.contains("401"))),
        "{:?}",
        s.get("gitsource", "revoked")
            .and_then(|v| v.get("status").cloned())
    );
    let gs = s.get("gitsource", "forge").unwrap();
    assert_eq!(
        condition(&gs, "Ready").map(|c| c.0).as_deref(),
        Some("True")
    );
    // The token is a reference: its value is nowhere in the store, the status or the log.
    let stored = stdout(&s.hkctl(&["get", "gitsource", "-o", "yaml"]));
    assert!(stored.contains("GIT_TOKEN"));
    assert!(!stored.contains("s3cret-t0ken") && !s.log().contains("s3cret-t0ken"));
}
