//! The controller end to end: the real `hostkit serve` (embedded store and etcd), `hkctl`,
//! and booted systemd test hosts reached over SSH.

use std::time::Duration;

use hostkit_e2e::etcd::EtcdServer;
use hostkit_e2e::server::{Hostkit, ServeOptions, condition, stderr, stdout};
use hostkit_e2e::testhost::TestHost;
use hostkit_e2e::wait_until;
use serde_json::Value;

fn manifests(host: &TestHost, version: &str, interval: &str) -> String {
    format!(
        r#"apiVersion: hostkit.dev/v1alpha1
kind: Host
metadata:
  name: target
  labels: {{env: test}}
spec:
  address: {address}
  interval: {interval}
  ssh:
    user: root
    identityFile: {key}
    hostKey: {{policy: pinned, key: "{host_key}"}}
    retry: {{attempts: 2, baseDelay: 100ms, maxDelay: 200ms}}
    connectTimeout: 2s
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata:
  name: web
  labels: {{tier: front}}
spec:
  hosts: [target]
  interval: {interval}
  account: {{system: true}}
  storage: [{{name: data, mode: "0750"}}]
  files:
    - path: /etc/web/version.txt
      content: "{version}\n"
    - path: /var/lib/web/index.html
      content: "<h1>{version}</h1>\n"
      owner: ${{service.user}}
  daemon:
    exec: [/usr/bin/python3, -m, http.server, --bind, 127.0.0.1, "8080", --directory, /var/lib/web]
"#,
        address = host.address,
        key = host.key().display(),
        host_key = host.host_key(),
    )
}

fn is(s: &Hostkit, kind: &str, name: &str, type_: &str, status: &str) -> bool {
    s.get(kind, name)
        .and_then(|v| condition(&v, type_))
        .is_some_and(|(st, _, _)| st == status)
}

/// The controller has seen the Service's current generation.
fn observed(s: &Hostkit, name: &str) -> bool {
    s.get("service", name).is_some_and(|v| {
        v.pointer("/status/observedGeneration").is_some()
            && v.pointer("/status/observedGeneration") == v.pointer("/metadata/generation")
    })
}

fn metric(s: &Hostkit, name_and_labels: &str) -> Option<f64> {
    s.metrics()
        .lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Marks the Service in a manifest `paused: true`.
fn paused(manifest: &str) -> String {
    manifest.replacen(
        "  hosts: [target]\n",
        "  hosts: [target]\n  paused: true\n",
        1,
    )
}

/// A second Host and a one-file Service on it.
fn side(host: &TestHost, version: &str) -> String {
    format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {{name: other}}\nspec:\n  address: {}\n  interval: 3s\n  ssh: {{user: root, identityFile: {}, hostKey: {{policy: pinned, key: \"{}\"}}}}\n---\napiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {{name: side}}\nspec:\n  hosts: [other]\n  interval: 3s\n  files: [{{path: /etc/side.txt, content: \"{version}\\n\"}}]\n",
        host.address,
        host.key().display(),
        host.host_key()
    )
}

fn controller_scenario(s: &Hostkit) {
    let host = TestHost::boot();
    let other = &TestHost::boot();
    s.apply_yaml(&manifests(&host, "v1", "3s"));

    // 1. Ready, the unit runs, describe shows conditions and events.
    assert!(
        wait_until(Duration::from_secs(60), || is(
            s, "service", "web", "Ready", "True"
        )),
        "Service never became Ready: {:?}\n{}",
        s.get("service", "web")
            .and_then(|v| v.get("status").cloned()),
        s.log()
    );
    assert_eq!(host.sh("systemctl is-active web.service").trim(), "active");
    assert!(wait_until(Duration::from_secs(30), || is(
        s,
        "host",
        "target",
        "Reachable",
        "True"
    )));
    let h = s.get("host", "target").unwrap();
    assert_eq!(
        h.pointer("/status/facts/osId").and_then(Value::as_str),
        Some("debian")
    );
    let d = stdout(&s.hkctl(&["describe", "service", "web"]));
    assert!(d.contains("Ready") && d.contains("Applied"), "{d}");
    assert!(d.contains("Applied") && d.contains("applied"), "{d}");
    assert_eq!(metric(s, "hostkit_host_up{host=\"target\"}"), Some(1.0));
    let out = s.hkctl_ok(&["plan", "service/web"]);
    assert!(
        stdout(&out).contains("Plan: 0 to create, 0 to update"),
        "{}",
        stdout(&out)
    );

    // 2. A hand edit is drift: detected and repaired within a resync, counted as corrective.
    host.sh("echo tampered > /etc/web/version.txt");
    assert!(
        wait_until(Duration::from_secs(30), || host
            .sh("cat /etc/web/version.txt")
            == "v1\n"),
        "drift was not repaired"
    );
    // The events are written after the repair itself, so the file may be back first.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let events = stdout(&s.hkctl(&["events"]));
            events.contains("DriftDetected") && events.contains("DriftRepaired")
        }),
        "{}",
        stdout(&s.hkctl(&["events"]))
    );
    assert!(
        metric(
            s,
            "hostkit_changes_applied_total{host=\"target\",intent=\"corrective\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(wait_until(Duration::from_secs(10), || is(
        s, "service", "web", "Drifted", "False"
    )));
    assert_eq!(
        metric(
            s,
            "hostkit_drift{kind=\"Service\",name=\"web\",host=\"target\"}"
        ),
        Some(0.0)
    );

    // 2b. Drift that cannot be repaired (paused) stays visible: Drifted=True, the gauge at 1;
    // unpaused, the repair still counts as corrective (same resources, new generation).
    let corrective = || {
        metric(
            s,
            "hostkit_changes_applied_total{host=\"target\",intent=\"corrective\"}",
        )
        .unwrap_or(0.0)
    };
    let before = corrective();
    s.apply_yaml(&paused(&manifests(&host, "v1", "3s")));
    assert!(wait_until(Duration::from_secs(20), || observed(s, "web")));
    host.sh("echo tampered-while-paused > /etc/web/version.txt");
    assert!(
        wait_until(Duration::from_secs(20), || is(
            s, "service", "web", "Drifted", "True"
        ) && metric(
            s,
            "hostkit_drift{kind=\"Service\",name=\"web\",host=\"target\"}"
        ) == Some(1.0)),
        "{:?}",
        s.get("service", "web")
            .and_then(|v| v.get("status").cloned())
    );
    assert_eq!(
        host.sh("cat /etc/web/version.txt"),
        "tampered-while-paused\n"
    );
    s.apply_yaml(&manifests(&host, "v1", "3s"));
    assert!(wait_until(Duration::from_secs(20), || host
        .sh("cat /etc/web/version.txt")
        == "v1\n"));
    assert!(wait_until(Duration::from_secs(10), || corrective() > before));

    // 3. An open deny window: the change is planned, not applied, until the window goes.
    s.open_deny_window("freeze", "{services: {names: [web]}}");
    s.apply_yaml(&manifests(&host, "v2", "3s"));
    assert!(
        wait_until(Duration::from_secs(30), || is(
            s,
            "service",
            "web",
            "WindowBlocked",
            "True"
        )),
        "{:?}",
        s.get("service", "web")
            .and_then(|v| v.get("status").cloned())
    );
    let svc = s.get("service", "web").unwrap();
    let pending = &svc
        .pointer("/status/hosts/0/pending")
        .cloned()
        .unwrap_or_default();
    assert!(pending["update"].as_u64().unwrap_or(0) >= 1, "{svc}");
    assert_eq!(
        host.sh("cat /etc/web/version.txt"),
        "v1\n",
        "nothing applied while the window is open"
    );
    let out = s.hkctl(&["plan", "service/web", "--host", "target"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("~ file:/etc/web/version.txt"),
        "{}",
        stdout(&out)
    );
    let windows = stdout(&s.hkctl(&["windows"]));
    let freeze = windows
        .lines()
        .find(|l| l.starts_with("freeze"))
        .unwrap_or_default()
        .to_string();
    assert!(
        freeze.contains("deny") && freeze.contains("yes"),
        "{windows}"
    );
    let web = windows
        .lines()
        .find(|l| l.starts_with("web"))
        .unwrap_or_default()
        .to_string();
    assert!(
        web.contains("no") && web.contains("deny window freeze is open"),
        "{windows}"
    );
    let out = s.hkctl(&["delete", "policywindow", "freeze"]);
    assert!(out.status.success());
    assert!(
        wait_until(Duration::from_secs(30), || host
            .sh("cat /etc/web/version.txt")
            == "v2\n"),
        "the change did not apply after the window went"
    );
    assert!(wait_until(Duration::from_secs(20), || is(
        s, "service", "web", "Ready", "True"
    )));

    // 4. sshd stopped: the host is unreachable; restarted: it recovers on its own.
    // Another host keeps converging meanwhile.
    s.apply_yaml(&side(other, "v1"));
    assert!(wait_until(Duration::from_secs(30), || is(
        s, "service", "side", "Ready", "True"
    )));
    // Stopping sshd keeps open sessions; kill them too, as a reboot or a crash would.
    host.nsenter("systemctl stop ssh; pkill sshd; true");
    assert!(
        wait_until(Duration::from_secs(60), || is(
            s,
            "host",
            "target",
            "Reachable",
            "False"
        )),
        "{:?}",
        s.get("host", "target")
            .and_then(|v| v.get("status").cloned())
    );
    assert_eq!(metric(s, "hostkit_host_up{host=\"target\"}"), Some(0.0));
    // Not read is not known: Ready (and what depends on the host) is Unknown, with why.
    assert!(wait_until(Duration::from_secs(30), || is(
        s, "service", "web", "Ready", "Unknown"
    )));
    s.apply_yaml(&side(other, "v2"));
    assert!(
        wait_until(Duration::from_secs(30), || other.sh("cat /etc/side.txt")
            == "v2\n"),
        "the other host stopped converging while one was down"
    );
    // One retry: a start racing the killed sessions' exit has failed once in CI-like runs;
    // the journal says why if it happens twice.
    let (mut started, _, mut err) = host.try_nsenter("systemctl start ssh");
    if !started {
        std::thread::sleep(Duration::from_millis(500));
        (started, _, err) = host.try_nsenter("systemctl reset-failed ssh; systemctl start ssh");
    }
    assert!(
        started,
        "{err}\n{}",
        host.nsenter("journalctl -u ssh --no-pager | tail -40; true")
    );
    assert!(
        wait_until(Duration::from_secs(90), || is(
            s,
            "host",
            "target",
            "Reachable",
            "True"
        )),
        "the host did not recover"
    );
    assert!(
        wait_until(Duration::from_secs(60), || is(
            s, "service", "web", "Ready", "True"
        )),
        "its service did not recover"
    );

    // 6a. Delete with --cascade=orphan: the object goes, the host keeps the files.
    s.apply_yaml("apiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {name: kept}\nspec:\n  hosts: [target]\n  files: [{path: /etc/kept.txt, content: \"kept\\n\"}]\n",
    );
    assert!(wait_until(Duration::from_secs(30), || is(
        s, "service", "kept", "Ready", "True"
    )));
    let out = s.hkctl(&["delete", "service", "kept", "--cascade", "orphan", "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(s.get("service", "kept").is_none());
    assert_eq!(host.sh("cat /etc/kept.txt"), "kept\n");
    let m = s.metrics();
    assert!(
        !m.contains("name=\"kept\""),
        "an orphaned Service's series are gone too (the host is left alone, not the metrics):\n{m}"
    );

    // 6. Delete: the files and the unit leave the host, then the object is gone.
    let out = s.hkctl(&["delete", "service", "web", "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(Duration::from_secs(30), || s
        .get("service", "web")
        .is_none()));
    assert_ne!(host.try_sh("test -e /etc/web/version.txt").0, 0);
    assert_ne!(host.try_sh("test -e /etc/systemd/system/web.service").0, 0);
    assert_ne!(host.try_sh("systemctl is-active web.service").0, 0);
    let m = s.metrics();
    assert!(
        !m.contains("name=\"web\""),
        "a deleted Service's series are gone:\n{m}"
    );
}

#[test]
fn controller_on_the_embedded_store() {
    let s = Hostkit::controller();
    controller_scenario(&s);
}

#[test]
fn controller_on_etcd() {
    let etcd = EtcdServer::start();
    let s = Hostkit::controller_on_etcd(&etcd.url);
    controller_scenario(&s);
}

/// Two controllers on one etcd: exactly one reconciles; when it dies the other takes over
/// within the lease time, and nothing is applied twice.
#[test]
fn leader_failover_on_etcd_applies_nothing_twice() {
    let etcd = EtcdServer::start();
    let opts = || ServeOptions {
        etcd: Some(etcd.url.clone()),
        controller: true,
        extra_args: vec!["--leader-lease".into(), "3s".into()],
        ..Default::default()
    };
    let mut a = Hostkit::start(opts());
    let mut b = Hostkit::start(opts());
    let leader = |s: &Hostkit| metric(s, "hostkit_leader_election_master_status") == Some(1.0);
    assert!(
        wait_until(Duration::from_secs(10), || leader(&a) ^ leader(&b)),
        "exactly one leader"
    );
    let host = TestHost::boot();
    let with_command = |version: &str| {
        manifests(&host, version, "2s").replace(
            "  daemon:",
            &format!("  commands:\n    - name: count\n      exec: [/bin/sh, -c, \"echo {version} >> /var/tmp/runs\"]\n      down: noop\n  daemon:"),
        )
    };
    a.apply_yaml(&with_command("v1"));
    assert!(wait_until(Duration::from_secs(60), || is(
        &a, "service", "web", "Ready", "True"
    )));
    // A few resyncs on the leader, then kill it without a goodbye.
    std::thread::sleep(Duration::from_secs(3));
    let (dead, survivor) = if leader(&a) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    dead.stop(true);
    let started = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || leader(survivor)),
        "no takeover"
    );
    let takeover = started.elapsed();
    assert!(
        takeover < Duration::from_secs(8),
        "takeover took {takeover:?} with a 3 s lease"
    );
    survivor.apply_yaml(&with_command("v2"));
    assert!(
        wait_until(Duration::from_secs(60), || host
            .sh("cat /etc/web/version.txt")
            == "v2\n"),
        "the new leader did not apply"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        host.sh("cat /var/tmp/runs"),
        "v1\nv2\n",
        "each generation's command ran exactly once"
    );
}

/// SIGTERM while a change is being applied: the change finishes, the process exits 0, and
/// after a restart nothing runs twice.
#[test]
fn sigterm_lets_the_inflight_apply_finish() {
    let mut s = Hostkit::controller();
    let host = TestHost::boot();
    let slow = manifests(&host, "v1", "3s").replace(
        "  daemon:",
        "  commands:\n    - name: migrate\n      exec: [/bin/sh, -c, \"echo started >> /var/tmp/runs; sleep 3; echo finished >> /var/tmp/runs\"]\n      down: noop\n  daemon:",
    );
    s.apply_yaml(&slow);
    assert!(
        wait_until(Duration::from_secs(60), || host
            .try_sh("cat /var/tmp/runs")
            .1
            .contains("started")),
        "{}",
        s.log()
    );
    let status = s.terminate(Duration::from_secs(60));
    assert_eq!(
        status.and_then(|st| st.code()),
        Some(0),
        "hostkit serve did not exit cleanly: {}",
        s.log()
    );
    assert_eq!(host.sh("cat /var/tmp/runs"), "started\nfinished\n");
    assert_eq!(
        host.sh("cat /etc/web/version.txt"),
        "v1\n",
        "the rest of the plan ran too"
    );
    s.start_again();
    assert!(wait_until(Duration::from_secs(60), || is(
        &s, "service", "web", "Ready", "True"
    )));
    assert_eq!(
        host.sh("cat /var/tmp/runs"),
        "started\nfinished\n",
        "the command did not run again"
    );
}
