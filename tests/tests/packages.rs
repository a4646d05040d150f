//! Packages as a Service asks for them, on a booted Debian test host with its own apt
//! repository: `as:` installs the distribution's name, `version:` picks the newest match
//! the host's index offers (and downgrades to follow the spec), `update: true` refreshes
//! the index first where the default does not, and a version nothing offers fails naming
//! what is offered.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use hostkit_e2e::engine::{options, prepare, target_resources};
use hostkit_e2e::testhost::TestHost;
use hostkit_engine::apply::{self, Applied, ApplyOptions};
use hostkit_engine::plan::Action;
use hostkit_engine::secrets::Secrets;
use hostkit_engine::transport::ssh::Ssh;

/// Builds `hk-demo_VERSION.deb` (it installs `/usr/share/hk-demo/version`) in `dir`.
fn build_deb(dir: &Path, version: &str) {
    let root = dir.join(format!("src-{version}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/hk-demo")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: hk-demo\nVersion: {version}\nArchitecture: all\nMaintainer: HostKit tests <tests@hostkit.invalid>\nDescription: a package HostKit's tests install\n"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("usr/share/hk-demo/version"),
        format!("{version}\n"),
    )
    .unwrap();
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(dir.join(format!("hk-demo_{version}_all.deb")))
        .output()
        .expect("dpkg-deb runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// `gzip -9n` of `data`.
fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .arg("-9n")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip runs");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Publishes the folder's debs to the host's `/srv/hk-repo` with a fresh `Packages` index
/// (the host's apt reads it only when something runs `apt-get update`).
fn publish(host: &TestHost, dir: &Path) {
    let out = Command::new("apt-ftparchive")
        .args(["packages", "."])
        .current_dir(dir)
        .output()
        .expect("apt-ftparchive runs");
    assert!(out.status.success());
    // Compressed only: apt then keeps its own copy of the index (a plain `Packages` under
    // `file:` is read in place, and the host's index could not be older than the repo).
    std::fs::write(dir.join("Packages.gz"), gzip(&out.stdout)).unwrap();
    let mut script = String::from("set -e; mkdir -p /srv/hk-repo; ");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&path).unwrap());
        script.push_str(&format!("echo {b64} | base64 -d > /srv/hk-repo/{name}; "));
    }
    host.sh(&script);
}

fn manifests(package: &str) -> String {
    format!(
        r#"
apiVersion: hostkit.dev/v1alpha1
kind: Host
metadata: {{name: target}}
spec: {{address: 127.0.0.1}}
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {{name: shop}}
spec:
  hosts: [target]
  packages:
    - {package}
"#
    )
}

/// Plans and applies the Service with `package`; returns the package change's action and
/// reason, and what the apply did.
async fn apply_package(ssh: &Ssh, package: &str) -> (Action, String, Applied) {
    let resources = target_resources(&manifests(package));
    let prepared = prepare(ssh, &resources, &[], &Secrets::default()).await;
    let change = prepared
        .plan
        .changes
        .iter()
        .find(|c| c.id == "package:demo")
        .unwrap_or_else(|| panic!("no package change:\n{}", prepared.plan.render(true)))
        .clone();
    let applied = apply::apply(ssh, &prepared, &ApplyOptions::new("r1"))
        .await
        .expect("apply runs");
    (change.action, change.reason, applied)
}

fn installed(host: &TestHost) -> String {
    host.sh("dpkg-query -W -f='${Version}' hk-demo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_version_and_update_reach_the_host() {
    let host = TestHost::boot();
    let repo = tempfile::tempdir().unwrap();
    build_deb(repo.path(), "1.0.0-1");
    build_deb(repo.path(), "2.6.1-1");
    publish(&host, repo.path());
    host.sh(
        "echo 'deb [trusted=yes] file:/srv/hk-repo ./' > /etc/apt/sources.list.d/hk-repo.list && apt-get update -q >/dev/null 2>&1",
    );
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");

    // `as:` is the package apt installs; the glob picks the newest match the index has.
    let (action, reason, applied) =
        apply_package(&ssh, r#"{name: demo, as: hk-demo, version: "2.6.*"}"#).await;
    assert_eq!(action, Action::Create, "{reason}");
    assert_eq!(reason, "not installed: hk-demo");
    assert!(applied.ok, "{:?}", applied.error);
    assert_eq!(installed(&host), "2.6.1-1");
    assert_eq!(
        applied.package_lock.get("hk-demo").map(String::as_str),
        Some("2.6.1-1")
    );
    let (action, _, _) =
        apply_package(&ssh, r#"{name: demo, as: hk-demo, version: "2.6.*"}"#).await;
    assert_eq!(action, Action::Noop, "an installed match is in sync");

    // A newer release reaches the repository; the host's index does not know it yet.
    build_deb(repo.path(), "2.6.3-1");
    publish(&host, repo.path());

    // The spec moves down: the plan says why and apt downgrades.
    let (action, reason, applied) =
        apply_package(&ssh, r#"{name: demo, as: hk-demo, version: "1.*"}"#).await;
    assert_eq!(action, Action::Update);
    assert_eq!(reason, "hk-demo 2.6.1-1 installed, wants 1.*");
    assert!(applied.ok, "{:?}", applied.error);
    assert_eq!(installed(&host), "1.0.0-1");

    // Without `update` the index the host has decides: 2.6.1, not the unseen 2.6.3.
    let (_, _, applied) =
        apply_package(&ssh, r#"{name: demo, as: hk-demo, version: "2.6.*"}"#).await;
    assert!(applied.ok, "{:?}", applied.error);
    assert_eq!(installed(&host), "2.6.1-1");
    apply_package(&ssh, r#"{name: demo, as: hk-demo, version: "1.*"}"#).await;
    assert_eq!(installed(&host), "1.0.0-1");

    // With `update: true` the index is refreshed first and 2.6.3 is the newest match.
    let (_, _, applied) = apply_package(
        &ssh,
        r#"{name: demo, as: hk-demo, version: "2.6.*", update: true}"#,
    )
    .await;
    assert!(applied.ok, "{:?}", applied.error);
    assert_eq!(installed(&host), "2.6.3-1");
    assert_eq!(host.sh("cat /usr/share/hk-demo/version"), "2.6.3-1\n");

    // A version nothing offers: the apply fails naming the package and what is offered,
    // and the installed version stays.
    let (action, _, applied) =
        apply_package(&ssh, r#"{name: demo, as: hk-demo, version: "9.*"}"#).await;
    assert_eq!(action, Action::Update);
    assert!(!applied.ok);
    let message = applied
        .results
        .iter()
        .find(|r| r.id == "package:demo")
        .and_then(|r| r.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("package hk-demo: no version matching 9.* in the package index (it offers: 2.6.3-1 2.6.1-1 1.0.0-1)"),
        "{message}"
    );
    assert_eq!(installed(&host), "2.6.3-1");
}

/// Through the controller: the Host's lock records what the Service installed, a host that
/// drifted to another version is put back to the locked one, and `hkctl lock update` moves
/// the lock (and so the host) to the newest version the spec allows.
#[test]
fn the_controller_keeps_a_package_lock_per_host_and_lock_update_moves_it() {
    use hostkit_e2e::server::{Hostkit, stdout};
    use hostkit_e2e::wait_until;
    use std::time::Duration;

    let s = Hostkit::controller();
    let host = TestHost::boot();
    let repo = tempfile::tempdir().unwrap();
    build_deb(repo.path(), "1.0.0-1");
    build_deb(repo.path(), "2.6.1-1");
    publish(&host, repo.path());
    host.sh(
        "echo 'deb [trusted=yes] file:/srv/hk-repo ./' > /etc/apt/sources.list.d/hk-repo.list && apt-get update -q >/dev/null 2>&1",
    );
    s.apply_yaml(&format!(
        r#"{host}---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {{name: shop}}
spec:
  hosts: [target]
  interval: 1h
  packages:
    - {{name: demo, as: hk-demo, version: "2.6.*"}}
"#,
        host = host.manifest("target", "  interval: 1h\n")
    ));
    let locked = || {
        s.get("host", "target").and_then(|v| {
            v.pointer("/status/packageLock/packages/hk-demo")
                .and_then(|x| x.as_str())
                .map(String::from)
        })
    };
    assert!(
        wait_until(Duration::from_secs(90), || locked().as_deref()
            == Some("2.6.1-1")),
        "{:?}\n{}",
        s.get("host", "target").map(|v| v["status"].clone()),
        s.log()
    );
    assert_eq!(installed(&host), "2.6.1-1");
    let yaml = stdout(&s.hkctl(&["get", "host", "target", "-o", "yaml"]));
    assert!(
        yaml.contains("packageLock:\n    packages:\n      hk-demo: 2.6.1-1"),
        "{yaml}"
    );
    let shown = stdout(&s.hkctl(&["lock", "show", "host/target"]));
    assert_eq!(shown, "PACKAGE  VERSION\nhk-demo  2.6.1-1\n");

    // 2.6.3 is published and someone upgrades by hand: it matches the glob, but the lock
    // says 2.6.1, and the next pass puts 2.6.1 back.
    build_deb(repo.path(), "2.6.3-1");
    publish(&host, repo.path());
    host.sh("apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q hk-demo=2.6.3-1 >/dev/null 2>&1");
    assert_eq!(installed(&host), "2.6.3-1");
    s.hkctl_ok(&["reconcile", "service/shop", "--wait"]);
    assert_eq!(installed(&host), "2.6.1-1", "{}", s.log());
    s.wait_events("service/shop", &["DriftRepaired"]);

    // The operator moves the lock: the Host pass asks the host for the newest 2.6.*, and
    // the Service, woken by the lock's change, installs it.
    let o = s.hkctl(&[
        "lock",
        "update",
        "host/target",
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), s.log());
    assert_eq!(
        stdout(&o),
        "host/target: lock update: hk-demo 2.6.1-1 → 2.6.3-1\nPACKAGE  VERSION\nhk-demo  2.6.3-1\n"
    );
    assert!(
        wait_until(Duration::from_secs(60), || installed(&host) == "2.6.3-1"),
        "{}",
        s.log()
    );
    s.wait_events("host/target", &["PackageLockUpdated"]);
    s.wait_condition("service", "shop", "Ready", "True", Duration::from_secs(30));
    // Not a Host: refused with what would be valid.
    let o = s.hkctl(&["lock", "update", "service/shop"]);
    assert!(!o.status.success());
    assert!(
        hostkit_e2e::server::stderr(&o)
            .contains("package locks belong to Hosts (host/NAME), not Services"),
        "{}",
        hostkit_e2e::server::stderr(&o)
    );
}
