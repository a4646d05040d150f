//! Application delivery from git (`spec.source`) on booted test hosts, from a real
//! `git daemon` on the host side of the test host's veth: the controller resolves each tag
//! to a commit, the host fetches exactly that commit into `releases/<commit>`, builds it as
//! the Service's user in the daemon's sandbox, switches `current` and restarts the daemon;
//! a rollback switches back with the git server down; a failing build leaves `current`
//! where it was and says which step failed; pruning keeps `keep` and what history needs.

use std::path::Path;
use std::time::Duration;

use hostkit_e2e::engine::{converge, demo, demo_secrets, options};
use hostkit_e2e::gitserver::GitDaemon;
use hostkit_e2e::server::{Hostkit, condition, stdout};
use hostkit_e2e::testhost::TestHost;
use hostkit_e2e::{git, wait_until};
use hostkit_engine::transport::ssh::Ssh;

const BUILD: &str = r#"set -e
mkdir -p out
cp VERSION out/VERSION
id -un > out/built-by
if touch /srv/shop/from-build 2>/dev/null; then echo writable > out/sandbox; else echo read-only > out/sandbox; fi
"#;
const RUN: &str = "cp \"$(dirname \"$0\")/out/VERSION\" /srv/shop/running\nexec sleep 1000000\n";

/// A bare repository `shop.git` under `base` with tags v1, v2 (good) and broken (a build
/// that fails); returns each tag's commit.
fn repository(base: &Path) -> Vec<(String, String)> {
    let work = base.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(base, &["init", "-q", "--bare", "shop.git"], &[]);
    git(&work, &["init", "-q"], &[]);
    let mut tags = Vec::new();
    for (tag, build) in [
        ("v1", BUILD.to_string()),
        ("v2", BUILD.to_string()),
        (
            "broken",
            "echo 'compile error in lib/shop.ex' >&2\nexit 3\n".to_string(),
        ),
    ] {
        std::fs::write(work.join("VERSION"), format!("{tag}\n")).unwrap();
        std::fs::write(work.join("build.sh"), build).unwrap();
        std::fs::write(work.join("run.sh"), RUN).unwrap();
        git(&work, &["add", "-A"], &[]);
        git(&work, &["commit", "-q", "-m", tag], &[]);
        git(&work, &["tag", "-a", tag, "-m", tag], &[]);
        tags.push((tag.to_string(), git(&work, &["rev-parse", "HEAD"], &[])));
    }
    git(
        &work,
        &[
            "push",
            "-q",
            "--tags",
            &format!("{}/shop.git", base.display()),
            "HEAD:refs/heads/main",
        ],
        &[],
    );
    tags
}

fn service(url: &str, tag: &str) -> String {
    format!(
        r#"apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {{name: shop}}
spec:
  hosts: [target]
  interval: 1h
  account: {{system: true}}
  storage:
    - {{name: data, path: /srv/shop}}
  source:
    git: {url}
    ref: {{tag: {tag}}}
    build: [[/bin/sh, build.sh]]
  daemon:
    exec: [/bin/sh, "${{source.current}}/run.sh"]
    workingDirectory: "${{source.current}}"
    isolate: {{writable: [data]}}
"#
    )
}

/// Waits until the Service has finished a pass of its newest generation with `type_`
/// at `status`, and returns the Service.
fn wait_pass(s: &Hostkit, type_: &str, status: &str) -> serde_json::Value {
    let mut last = None;
    let done = wait_until(Duration::from_secs(120), || {
        let Some(v) = s.get("service", "shop") else {
            return false;
        };
        let current = v["status"]["observedGeneration"] == v["metadata"]["generation"]
            && condition(&v, type_).is_some_and(|(st, _, _)| st == status)
            && condition(&v, "Reconciling").is_some_and(|(st, _, _)| st == "False");
        last = Some(v);
        current
    });
    assert!(
        done,
        "service/shop {type_} is not {status}: {:?}\n{}",
        last.map(|v| v["status"].clone()),
        s.log()
    );
    last.unwrap()
}

#[test]
fn a_service_deploys_from_git_rolls_back_without_a_fetch_and_keeps_current_on_a_failed_build() {
    let s = Hostkit::controller();
    let host = TestHost::boot();
    let base = tempfile::tempdir().unwrap();
    let tags = repository(base.path());
    let (v1, v2) = (&tags[0].1, &tags[1].1);
    let mut daemon = GitDaemon::serve(base.path(), &host.gateway);
    let url = daemon.url("shop.git");
    s.apply_yaml(&host.manifest("target", ""));
    s.apply_yaml(&service(&url, "v1"));

    let v = wait_pass(&s, "Ready", "True");
    assert_eq!(v["status"]["source"]["commit"], v1.as_str(), "{v:?}");
    assert_eq!(v["status"]["source"]["ref"], "tag v1");
    assert_eq!(v["status"]["hosts"][0]["sourceCommit"], v1.as_str());
    assert_eq!(
        host.sh("readlink /opt/shop/current"),
        format!("/opt/shop/releases/{v1}\n")
    );
    assert_eq!(
        host.sh("cat /srv/shop/running"),
        "v1\n",
        "the daemon runs v1"
    );
    let out = format!("/opt/shop/releases/{v1}/out");
    assert_eq!(
        host.sh(&format!("cat {out}/built-by")),
        "shop\n",
        "built as the service's user"
    );
    assert_eq!(
        host.sh(&format!("cat {out}/sandbox")),
        "read-only\n",
        "the build cannot write the daemon's storage"
    );
    assert_eq!(
        host.sh(&format!(
            "stat -c '%U %a' /opt/shop/releases/{v1} {out}/VERSION"
        )),
        "root 755\nroot 644\n",
        "a release cannot be changed by the daemon that runs it"
    );
    assert_eq!(
        host.sh(&format!(
            "test -e /opt/shop/releases/{v1}/.git && echo git || echo no-git"
        )),
        "no-git\n"
    );
    // The Revision records the commit, by its release resource.
    let revisions: serde_json::Value =
        serde_json::from_str(&stdout(&s.hkctl(&["get", "revisions", "-o", "json"]))).unwrap();
    let release = &revisions["items"][0]["spec"]["release"];
    assert_eq!(
        (&release["commit"], &release["ref"], &release["git"]),
        (
            &serde_json::json!(v1),
            &serde_json::json!("tag v1"),
            &serde_json::json!(url)
        ),
        "{revisions}"
    );

    // Where the pass's time went, per phase.
    let metrics = s.metrics();
    for phase in [
        "connect",
        "read",
        "plan",
        "apply script",
        "unit start",
        "settle",
    ] {
        assert!(
            metrics.contains(&format!(
                "hostkit_reconcile_phase_seconds_count{{kind=\"Service\",phase=\"{phase}\"}}"
            )),
            "{phase} is not observed:\n{metrics}"
        );
    }

    // v2: a new release beside v1, `current` switched, the daemon restarted on it.
    s.apply_yaml(&service(&url, "v2"));
    let v = wait_pass(&s, "Ready", "True");
    assert_eq!(v["status"]["hosts"][0]["sourceCommit"], v2.as_str());
    assert_eq!(
        host.sh("readlink /opt/shop/current"),
        format!("/opt/shop/releases/{v2}\n")
    );
    assert_eq!(host.sh("cat /srv/shop/running"), "v2\n");
    assert_eq!(host.sh("ls /opt/shop/releases | sort"), {
        let mut both = [v1.clone(), v2.clone()];
        both.sort();
        format!("{}\n{}\n", both[0], both[1])
    });

    // The rollback switches back to the release that is still there: with the git server
    // down, so it cannot have fetched.
    daemon.stop();
    s.hkctl_ok(&["rollback", "service/shop", "--timeout", "90s"]);
    assert_eq!(
        host.sh("readlink /opt/shop/current"),
        format!("/opt/shop/releases/{v1}\n")
    );
    assert_eq!(host.sh("cat /srv/shop/running"), "v1\n", "restarted on v1");
    // Back at tag v1, the Service stays Ready with the server still down: the commit is
    // the one its Revision was built from, and the status says the server did not answer.
    let v = wait_pass(&s, "Ready", "True");
    assert_eq!(v["spec"]["source"]["ref"]["tag"], "v1");
    assert_eq!(v["status"]["hosts"][0]["sourceCommit"], v1.as_str());
    assert!(
        v["status"]["source"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot resolve tag v1")),
        "{:?}",
        v["status"]["source"]
    );
    assert_eq!(host.sh("cat /srv/shop/running"), "v1\n");

    // A build that fails: `current` stays on v1, nothing half-made is left, and the
    // Service says which step failed and why.
    daemon.start_again();
    s.apply_yaml(&service(&url, "broken"));
    let v = wait_pass(&s, "Ready", "False");
    let (_, reason, message) = condition(&v, "Ready").unwrap();
    assert_eq!(reason, "ApplyFailed", "{message}");
    assert!(
        message.contains("build step 1 of 1 (/bin/sh build.sh) failed with exit status 3")
            && message.contains("compile error in lib/shop.ex"),
        "{message}"
    );
    assert_eq!(
        host.sh("readlink /opt/shop/current"),
        format!("/opt/shop/releases/{v1}\n")
    );
    assert_eq!(host.sh("cat /srv/shop/running"), "v1\n");
    // The controller retries the failed apply (with backoff), and each try makes an
    // incoming folder while it builds: between tries, none is left.
    assert!(
        wait_until(Duration::from_secs(20), || host
            .sh("ls -A /opt/shop/releases | grep -c '^\\.' || true")
            == "0\n"),
        "an incoming or step folder is left: {}",
        host.sh("ls -A /opt/shop/releases")
    );
    assert_eq!(host.sh("systemctl is-active shop.service"), "active\n");

    // Deleting the Service takes its releases and the link with it.
    s.hkctl_ok(&["delete", "service/shop", "--wait"]);
    assert_eq!(
        host.sh("test -e /opt/shop && echo left || echo gone"),
        "gone\n"
    );
}

/// Pruning on the host: with `keep: 2` the two newest stay, a commit the history protects
/// stays too, and a release is made once (the plan of a commit already there is empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_keep_releases_and_those_history_needs() {
    use hostkit_engine::resource::Spec;
    let host = TestHost::boot();
    let base = tempfile::tempdir().unwrap();
    let work = base.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(base.path(), &["init", "-q", "--bare", "app.git"], &[]);
    git(&work, &["init", "-q"], &[]);
    let mut commits = Vec::new();
    for n in 1..=4 {
        std::fs::write(work.join("VERSION"), format!("{n}\n")).unwrap();
        git(&work, &["add", "-A"], &[]);
        git(&work, &["commit", "-q", "-m", &n.to_string()], &[]);
        commits.push(git(&work, &["rev-parse", "HEAD"], &[]));
    }
    git(
        &work,
        &[
            "push",
            "-q",
            &format!("{}/app.git", base.path().display()),
            "HEAD:refs/heads/main",
        ],
        &[],
    );
    let daemon = GitDaemon::serve(base.path(), &host.gateway);
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    let secrets = demo_secrets("t");
    let resources_at = |commit: &str, protect: &[String]| {
        let (mut d, _) = demo("v1", 8080);
        let spec = &mut d.services.get_mut("web").unwrap().spec;
        spec.source = Some(
            serde_json::from_value(serde_json::json!({
                "git": daemon.url("app.git"), "ref": {"commit": commit}, "keep": 2
            }))
            .unwrap(),
        );
        let mut rs = d.resources_for("target").unwrap();
        for r in &mut rs {
            if let Spec::Release(rel) = &mut r.spec {
                rel.protect = protect.to_vec();
            }
        }
        rs
    };
    let mut previous = Vec::new();
    for (i, c) in commits.iter().enumerate() {
        // The last release is made with the second commit protected (a kept Revision's):
        // it is neither among the two newest nor the one `current` names then.
        let protect = if i == 3 {
            vec![commits[1].clone()]
        } else {
            Vec::new()
        };
        let rs = resources_at(c, &protect);
        previous = converge(&ssh, &rs, &previous, &secrets, &format!("r{i}"))
            .await
            .resources;
        if i == 2 {
            let mut want = [commits[1].clone(), commits[2].clone()];
            want.sort();
            assert_eq!(
                host.sh("ls /opt/web/releases | sort"),
                format!("{}\n", want.join("\n")),
                "keep: 2"
            );
        }
    }
    let mut want = commits[1..].to_vec();
    want.sort();
    assert_eq!(
        host.sh("ls /opt/web/releases | sort"),
        format!("{}\n", want.join("\n")),
        "the two newest and the protected one"
    );
    assert_eq!(
        host.sh("readlink /opt/web/current"),
        format!("/opt/web/releases/{}\n", commits[3])
    );
    // Already there: the plan of the same commit is empty.
    let rs = resources_at(&commits[3], &[]);
    let p = hostkit_e2e::engine::prepare(&ssh, &rs, &previous, &secrets).await;
    assert!(p.plan.is_empty(), "{}", p.plan.render(true));
}
