//! Revisions and Rollbacks end to end: the real `hostkit serve` (embedded store and etcd),
//! `hkctl history`/`rollback`, and booted systemd test hosts.

use std::time::Duration;

use hostkit_e2e::etcd::EtcdServer;
use hostkit_e2e::server::{Hostkit, condition_status, stderr, stdout};
use hostkit_e2e::testhost::TestHost;
use hostkit_e2e::wait_until;
use serde_json::Value;

/// Paths the service manages: a checksum listing of them is the host's state.
const MANAGED: [&str; 3] = [
    "/etc/web/runtime.env",
    "/etc/web/motd",
    "/etc/systemd/system/web.service",
];

fn host_yaml(name: &str, host: &TestHost) -> String {
    format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}}}\nspec:\n  address: {}\n  interval: 2s\n  ssh: {{user: root, identityFile: {}, hostKey: {{policy: pinned, key: \"{}\"}}}}\n---\n",
        host.address,
        host.key().display(),
        host.host_key()
    )
}

/// Revision `v` of the service; `commands` adds three commands with each kind of `down:`.
fn service_yaml(hosts: &str, v: &str, commands: bool, extra: &str) -> String {
    let mut s = format!(
        r#"apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {{name: web}}
spec:
  hosts: [{hosts}]
  interval: 2s
{extra}  env:
    runtime:
      path: /etc/web/runtime.env
      set: {{VERSION: "{v}"}}
  files:
    - path: /etc/web/motd
      content: "web {v}\n"
  daemon:
    description: web {v}
    env: [runtime]
    exec: [/bin/sh, -c, "echo $VERSION > /run/web-version; exec sleep infinity"]
"#
    );
    if commands {
        s.push_str(
            r#"  commands:
    - name: stamp
      exec: [/bin/sh, -c, "echo up >> /var/tmp/stamp"]
      down: {exec: [/bin/sh, -c, "echo down >> /var/tmp/stamp"]}
    - name: warm
      exec: [/bin/true]
      down: noop
    - name: schema
      exec: [/bin/true]
      down: irreversible
"#,
        );
    }
    s
}

/// The Service is Ready at its current generation (the condition's own observedGeneration).
fn ready(s: &Hostkit) -> bool {
    s.get("service", "web").is_some_and(|v| {
        v.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "Ready"
                        && c["status"] == "True"
                        && c.get("observedGeneration") == v.pointer("/metadata/generation")
                })
            })
    })
}

fn wait_ready(s: &Hostkit) {
    assert!(
        wait_until(Duration::from_secs(60), || ready(s)),
        "not Ready: {:?}\n{}",
        s.get("service", "web")
            .and_then(|v| v.get("status").cloned()),
        s.log()
    );
}

fn listing(h: &TestHost) -> String {
    h.listing(&MANAGED.map(String::from))
}

fn rollback(s: &Hostkit, args: &[&str]) -> std::process::Output {
    let mut all = vec!["rollback", "service/web", "--timeout", "90s"];
    all.extend_from_slice(args);
    s.hkctl(&all)
}

fn newest_rollback(s: &Hostkit) -> Value {
    let out = s.hkctl(&["get", "rollbacks", "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut items = v["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(|r| {
        r.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .map(String::from)
    });
    items.pop().expect("a rollback")
}

fn scenario(s: &Hostkit) {
    let host = TestHost::boot();
    let dir = tempfile::tempdir().unwrap();
    s.apply_yaml(&host_yaml("target", &host));

    // Revision 1, then revision 2 changes the env file and the unit and adds commands.
    s.apply_yaml(&service_yaml("target", "v1", false, ""));
    wait_ready(s);
    assert_eq!(host.sh("cat /run/web-version"), "v1\n");
    let v1 = listing(&host);
    s.apply_yaml(&service_yaml("target", "v2", true, ""));
    wait_ready(s);
    assert_eq!(host.sh("cat /run/web-version"), "v2\n");
    assert_eq!(host.sh("cat /var/tmp/stamp"), "up\n");
    assert_ne!(listing(&host), v1);
    let history = stdout(&s.hkctl(&["history", "service/web"]));
    assert!(history.contains("user/admin"), "{history}");
    assert_eq!(history.lines().count(), 3, "{history}");

    // Revisions are the controller's: the API refuses to write them.
    let rev2 = s.get("revision", "web-2").expect("Revision web-2");
    assert!(
        rev2.to_string().contains("backups"),
        "down plans reference backups: {rev2}"
    );
    assert!(
        !rev2.to_string().contains("web v1"),
        "no file content in history"
    );
    // Modes in down plans read as people write them ("0644"), not as numbers (420).
    fn down_modes(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
        match v {
            serde_json::Value::Object(m) => {
                if m.contains_key("do")
                    && let Some(mode) = m.get("mode")
                {
                    out.push(mode.clone());
                }
                m.values().for_each(|x| down_modes(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| down_modes(x, out)),
            _ => {}
        }
    }
    let mut modes = Vec::new();
    down_modes(&rev2, &mut modes);
    assert!(!modes.is_empty(), "no down step with a mode in {rev2}");
    for m in &modes {
        let text = m.as_str().unwrap_or_default();
        assert!(
            text.len() == 4 && text.chars().all(|c| ('0'..='7').contains(&c)),
            "down plan mode {m}"
        );
    }
    let f = dir.path().join("rev.json");
    std::fs::write(&f, serde_json::to_string(&rev2).unwrap()).unwrap();
    let out = s.hkctl(&["apply", "-f", f.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("written by the controller"),
        "{}",
        stderr(&out)
    );

    // 3. A deny window holds the rollback; --force runs it.
    s.apply_yaml("apiVersion: hostkit.dev/v1alpha1\nkind: PolicyWindow\nmetadata: {name: freeze}\nspec: {kind: deny, schedule: \"* * * * *\", duration: 1h}\n",
    );
    let out = s.hkctl(&["rollback", "service/web", "--timeout", "4s"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("waiting: "), "{}", stdout(&out));
    assert_eq!(host.sh("cat /run/web-version"), "v2\n", "nothing ran");
    let waiting = newest_rollback(s);
    assert_eq!(
        condition_status(&waiting, "WindowBlocked").as_deref(),
        Some("True")
    );
    // A waiting rollback is deleted (it never ran; deleting it undoes nothing).
    let name = waiting
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    assert!(
        s.hkctl(&["delete", "rollback", &name, "--wait"])
            .status
            .success()
    );

    // 1 + 4. Roll back to revision 1 (forced through the window): the host's managed
    // paths are byte-for-byte revision 1's; the unit runs the old config; each kind of
    // command `down:` is reported.
    let out = rollback(s, &["--force", "--reason", "bad runtime config"]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}\n{}",
        stderr(&out),
        s.log()
    );
    assert!(text.contains("rolling back from revision 2 to 1"), "{text}");
    assert!(
        text.contains("skipped command:web/schema: command schema is irreversible"),
        "{text}"
    );
    assert_eq!(listing(&host), v1);
    assert_eq!(host.sh("cat /run/web-version"), "v1\n");
    assert_eq!(
        host.sh("cat /var/tmp/stamp"),
        "up\ndown\n",
        "down: exec ran once"
    );
    let rb = newest_rollback(s);
    assert_eq!(
        condition_status(&rb, "Complete").as_deref(),
        Some("True"),
        "{rb}"
    );
    // `hkctl get rb` says so too (it said Pending: a Rollback has no Ready condition).
    let name = rb["metadata"]["name"].as_str().unwrap();
    let table = stdout(&s.hkctl(&["get", "rb", name]));
    assert!(table.contains("RolledBack"), "{table}");
    let cov = &rb["status"]["hosts"][0]["coverage"];
    assert_eq!(cov["noop"], 1, "{rb}");
    assert_eq!(cov["skipped"][0]["id"], "command:web/schema", "{rb}");
    assert!(cov["reversible"].as_u64().unwrap() >= 4, "{rb}");
    assert_eq!(rb["status"]["newRevision"], 3);
    // The rollback's revision is the current one, in status and in `hkctl history`.
    assert!(
        wait_until(Duration::from_secs(10), || s
            .get("service", "web")
            .is_some_and(|v| v["status"]["currentRevision"] == 3)),
        "{:?}",
        s.get("service", "web").map(|v| v["status"].clone())
    );
    let history = stdout(&s.hkctl(&["history", "service/web"]));
    let current: Vec<&str> = history.lines().filter(|l| l.contains("current")).collect();
    assert!(
        current.len() == 1 && current[0].starts_with('3') && current[0].contains("rollback to 1"),
        "{history}"
    );
    assert!(
        s.hkctl(&["delete", "policywindow", "freeze"])
            .status
            .success()
    );

    // The Service stays on revision 1's spec through the next resyncs.
    let svc = s.get("service", "web").unwrap();
    assert_eq!(svc["spec"]["env"]["runtime"]["set"]["VERSION"], "v1");
    assert_eq!(
        svc["metadata"]["annotations"]["hostkit.dev/rolled-back-to"],
        "1"
    );
    assert!(
        svc["metadata"]["annotations"]["hostkit.dev/changed-by"]
            .as_str()
            .unwrap()
            .starts_with("rollback/")
    );
    wait_ready(s);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(listing(&host), v1, "not re-applied by resyncs");
    let history = stdout(&s.hkctl(&["history", "service/web"]));
    assert!(history.contains("rollback to 1, current"), "{history}");

    // 2a. toRevision across two revisions: revision 4 (v2), 5 (v3), then back to 1... which
    // the history still has.
    s.apply_yaml(&service_yaml("target", "v2", true, ""));
    wait_ready(s);
    s.apply_yaml(&service_yaml("target", "v3", true, ""));
    wait_ready(s);
    assert_eq!(host.sh("cat /run/web-version"), "v3\n");
    let out = rollback(s, &["--to-revision", "3"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("revision(s) 5, 4 undone"),
        "{}",
        stdout(&out)
    );
    assert_eq!(listing(&host), v1, "two revisions crossed");
    assert_eq!(host.sh("cat /run/web-version"), "v1\n");
    wait_ready(s);

    // 2b. `only:` puts back one file and holds it; the rest stays.
    s.apply_yaml(&service_yaml("target", "v4", false, ""));
    wait_ready(s);
    let out = rollback(s, &["--only", "file:/etc/web/runtime.env"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        host.sh("cat /etc/web/runtime.env")
            .contains("VERSION=\"v1\"")
    );
    assert_eq!(
        host.sh("cat /etc/web/motd"),
        "web v4\n",
        "only the one file"
    );
    assert_eq!(
        host.sh("cat /run/web-version"),
        "v1\n",
        "the unit restarted to read its restored env file"
    );
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        host.sh("cat /etc/web/runtime.env")
            .contains("VERSION=\"v1\""),
        "held through resyncs"
    );
    let svc = s.get("service", "web").unwrap();
    assert_eq!(
        svc["status"]["hosts"][0]["held"][0],
        "file:/etc/web/runtime.env"
    );
    assert_eq!(
        condition_status(&svc, "Ready").as_deref(),
        Some("True"),
        "{svc}"
    );
    // A new spec ends the hold.
    s.apply_yaml(&service_yaml("target", "v5", false, ""));
    wait_ready(s);
    assert!(
        host.sh("cat /etc/web/runtime.env")
            .contains("VERSION=\"v5\"")
    );

    // History is pruned to revisionHistoryLimit, and a pruned revision's backups leave
    // the host.
    let rev4 = s.get("revision", "web-4").expect("Revision web-4");
    let run4 = rev4["spec"]["hosts"][0]["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        host.try_sh(&format!("test -d /var/lib/hostkit/backups/{run4}"))
            .0,
        0
    );
    s.apply_yaml(&service_yaml(
        "target",
        "v6",
        false,
        "  revisionHistoryLimit: 2\n",
    ));
    wait_ready(s);
    assert!(
        wait_until(Duration::from_secs(30), || stdout(&s.hkctl(&[
            "get",
            "revisions",
            "-o",
            "name"
        ]))
        .lines()
        .count()
            == 2),
        "{}",
        stdout(&s.hkctl(&["history", "service/web"]))
    );
    assert!(
        wait_until(Duration::from_secs(30), || host
            .try_sh(&format!("test -d /var/lib/hostkit/backups/{run4}"))
            .0
            != 0),
        "backups of a pruned revision stay on the host"
    );

    // Deleting the Service removes its history and the backups on the host.
    let backups = host.sh("ls /var/lib/hostkit/backups | wc -l");
    assert_ne!(backups.trim(), "0");
    assert!(
        s.hkctl(&["delete", "service", "web", "--wait"])
            .status
            .success()
    );
    assert!(wait_until(Duration::from_secs(30), || {
        let out = s.hkctl(&["get", "revisions", "-o", "name"]);
        stdout(&out).trim().is_empty()
    }));
    assert!(wait_until(Duration::from_secs(30), || host
        .sh("ls /var/lib/hostkit/backups | grep -c '^web-' || true")
        .trim()
        == "0"));
}

#[test]
fn rollback_on_the_embedded_store() {
    let s = Hostkit::controller();
    scenario(&s);
}

#[test]
fn rollback_on_etcd() {
    let etcd = EtcdServer::start();
    let s = Hostkit::controller_on_etcd(&etcd.url);
    scenario(&s);
}

/// Done-when 5: a revision whose unit fails to start is rolled back on that host by
/// itself, and the next host is never touched.
#[test]
fn auto_rollback_undoes_a_failed_host_and_stops_the_rollout() {
    let s = Hostkit::controller();
    let (h1, h2) = (TestHost::boot(), TestHost::boot());
    s.apply_yaml(&format!("{}{}", host_yaml("h1", &h1), host_yaml("h2", &h2)));
    let rollout = "  rollout: {maxParallel: 1, autoRollback: true}\n";
    s.apply_yaml(&service_yaml("h1, h2", "v1", false, rollout));
    wait_ready(&s);
    let (l1, l2) = (listing(&h1), listing(&h2));
    // Revision 2's daemon exits at once: the apply fails on h1, the first host.
    let broken =
        service_yaml("h1, h2", "v2", false, rollout).replace("exec sleep infinity", "exit 3");
    s.apply_yaml(&broken);
    assert!(
        wait_until(Duration::from_secs(60), || s
            .get("service", "web")
            .is_some_and(
                |v| condition_status(&v, "Stalled").as_deref() == Some("True")
            )),
        "{:?}\n{}",
        s.get("service", "web")
            .and_then(|v| v.get("status").cloned()),
        s.log()
    );
    assert_eq!(listing(&h1), l1, "h1 is back at revision 1");
    assert_eq!(h1.sh("systemctl is-active web.service").trim(), "active");
    assert_eq!(h1.sh("cat /run/web-version"), "v1\n");
    assert_eq!(listing(&h2), l2, "h2 was never touched");
    let rb = newest_rollback(&s);
    assert_eq!(
        rb["metadata"]["annotations"]["hostkit.dev/reason"],
        "AutoRollback"
    );
    assert_eq!(condition_status(&rb, "Complete").as_deref(), Some("True"));
    assert_eq!(rb["status"]["hosts"][0]["host"], "h1");
    s.wait_events("service/web", &["AutoRollback"]);
    // Stalled waits for a spec change rather than failing the same way every backoff.
    let svc = s.get("service", "web").unwrap();
    assert!(
        svc.to_string().contains("rolled back automatically"),
        "{svc}"
    );
    // The unit's journal tail is said once, in the ApplyFailed event; the conditions say
    // what failed and where the journal is.
    let conditions = svc["status"]["conditions"].to_string();
    assert!(!conditions.contains("journal:"), "{conditions}");
    assert!(
        conditions.contains("its journal is in the ApplyFailed event"),
        "{conditions}"
    );
    let o = s.hkctl_ok(&["get", "events", "-o", "json"]);
    let events: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let with_journal: Vec<&serde_json::Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.to_string().contains("journal:"))
        .collect();
    assert_eq!(with_journal.len(), 1, "{with_journal:?}");
    assert_eq!(with_journal[0]["spec"]["reason"], "ApplyFailed");
}

/// Done-when 6: the controller killed in the middle of a rollback; after a restart the
/// rollback completes, and no file is left half-written.
#[test]
fn a_rollback_survives_a_controller_crash() {
    let mut s = Hostkit::controller();
    let host = TestHost::boot();
    s.apply_yaml(&host_yaml("target", &host));
    s.apply_yaml(&service_yaml("target", "v1", false, ""));
    wait_ready(&s);
    let v1 = listing(&host);
    // Revision 2's command `slow` takes 3 s to undo: time enough to kill the controller in
    // it. Down plans run in reverse, so `quick` (listed after it) is undone before it.
    let slow = service_yaml("target", "v2", false, "").replace(
        "  daemon:",
        "  commands:\n    - name: slow\n      exec: [/bin/true]\n      down: {exec: [/bin/sh, -c, \"echo start >> /var/tmp/undo; sleep 3; echo end >> /var/tmp/undo\"]}\n    - name: quick\n      exec: [/bin/true]\n      down: {exec: [/bin/sh, -c, \"echo quick >> /var/tmp/undo\"]}\n  daemon:",
    );
    s.apply_yaml(&slow);
    wait_ready(&s);
    let out = s.hkctl(&["rollback", "service/web", "--no-wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(Duration::from_secs(30), || host
            .try_sh("cat /var/tmp/undo")
            .1
            .contains("start")),
        "{}",
        s.log()
    );
    s.stop(true);
    s.start_again();
    let rb = newest_rollback(&s);
    let name = rb["metadata"]["name"].as_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(60), || s
            .get("rollback", &name)
            .is_some_and(
                |v| condition_status(&v, "Complete").as_deref() == Some("True")
            )),
        "{:?}\n{}",
        s.get("rollback", &name),
        s.log()
    );
    assert_eq!(listing(&host), v1);
    assert_eq!(host.sh("cat /run/web-version"), "v1\n");
    let leftovers = host.sh("find /etc/web /etc/systemd/system -name '.hostkit*' | wc -l");
    assert_eq!(leftovers.trim(), "0", "no temp file left behind");
    // The command undone before the crash did not run again; the one it interrupted did.
    let undo = host.sh("cat /var/tmp/undo");
    assert_eq!(undo.matches("quick").count(), 1, "{undo}");
    assert!(undo.ends_with("end\n"), "{undo}");
    wait_ready(&s);
}

/// Host/target with a firewall allowing `ports` (and `extra` spec lines, e.g. bootstrap).
fn host_with_firewall(host: &TestHost, ports: &str, extra: &str) -> String {
    host_yaml("target", host).replace(
        "  interval: 2s\n",
        &format!("  interval: 2s\n{extra}  firewall:\n    rules:\n      - allow: {{tcp: [{ports}]}}\n        from: any\n    default: allow\n"),
    )
}

/// Host/target is Ready at `generation` (its condition's own observedGeneration).
fn host_ready_at(s: &Hostkit, generation: i64) -> bool {
    s.get("host", "target").is_some_and(|v| {
        v.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "Ready"
                        && c["status"] == "True"
                        && c["observedGeneration"] == generation
                })
            })
    })
}

/// A Host's own resources have revisions too: a firewall change rolled back with
/// `hkctl rollback host/NAME` puts the ruleset file and the loaded table back; and a deny
/// window on the host holds a firewall change back until the window goes.
#[test]
fn a_hosts_firewall_rolls_back_and_waits_for_its_window() {
    let s = Hostkit::controller();
    let host = TestHost::boot();
    let with_firewall = |ports: &str| host_with_firewall(&host, ports, "");
    let host_ready = |generation: i64| host_ready_at(&s, generation);
    s.apply_yaml(&with_firewall("22"));
    assert!(
        wait_until(Duration::from_secs(60), || host_ready(1)),
        "{}",
        s.log()
    );
    let ruleset = "/etc/nftables.d/hostkit.nft";
    let v1 = host.listing(&[ruleset.to_string()]);
    let table_v1 = host.sh("nft list ruleset | grep -c dport || true");
    s.apply_yaml(&with_firewall("22, 8080"));
    assert!(
        wait_until(Duration::from_secs(60), || host_ready(2)),
        "{}",
        s.log()
    );
    assert_ne!(host.listing(&[ruleset.to_string()]), v1);
    let loaded = host.sh("nft list ruleset");
    assert!(
        loaded.contains("8080"),
        "{loaded}\n{}",
        host.sh(&format!("cat {ruleset}"))
    );
    let history = stdout(&s.hkctl(&["history", "host/target"]));
    assert_eq!(history.lines().count(), 3, "{history}");

    let out = s.hkctl(&["rollback", "host/target", "--timeout", "60s"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}\n{}",
        stdout(&out),
        stderr(&out),
        s.log()
    );
    assert_eq!(
        host.listing(&[ruleset.to_string()]),
        v1,
        "the ruleset file is back"
    );
    assert!(
        !host.sh("nft list ruleset").contains("8080"),
        "the loaded table is back"
    );
    assert_eq!(
        host.sh("nft list ruleset | grep -c dport || true"),
        table_v1
    );
    let h = s.get("host", "target").unwrap();
    assert_eq!(
        h["metadata"]["annotations"]["hostkit.dev/rolled-back-to"],
        "1"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !host.sh("nft list ruleset").contains("8080"),
        "not re-applied by resyncs"
    );

    // A deny window on the host holds its firewall change back until the window goes.
    s.open_deny_window("freeze", "{hosts: {names: [target]}}");
    s.apply_yaml(&with_firewall("22, 9090"));
    assert!(
        wait_until(Duration::from_secs(30), || s
            .get("host", "target")
            .is_some_and(
                |v| condition_status(&v, "WindowBlocked").as_deref() == Some("True")
            )),
        "{:?}",
        s.get("host", "target")
            .and_then(|v| v.get("status").cloned())
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !host.sh("nft list ruleset").contains("9090"),
        "nothing applied in the window"
    );
    assert!(
        s.hkctl(&["delete", "policywindow", "freeze"])
            .status
            .success()
    );
    assert!(
        wait_until(Duration::from_secs(30), || host
            .sh("nft list ruleset")
            .contains("9090")),
        "applied once the window is gone: {}",
        s.log()
    );
}

/// `only` on a Host: just the firewall goes back (its ruleset file and the loaded table),
/// the package installed in the same revision stays, resyncs do not re-apply the firewall,
/// and the next spec change ends the hold.
#[test]
fn a_host_rollback_with_only_restores_just_that_resource() {
    let s = Hostkit::controller();
    let host = TestHost::boot();
    let spec = |ports: &str, packages: &str| host_with_firewall(&host, ports, packages);
    let at = |generation: i64| host_ready_at(&s, generation);
    s.apply_yaml(&spec("22", ""));
    assert!(wait_until(Duration::from_secs(60), || at(1)), "{}", s.log());
    let with_tree = "  bootstrap:\n    packages: [tree]\n";
    s.apply_yaml(&spec("22, 8080", with_tree));
    assert!(
        wait_until(Duration::from_secs(120), || at(2)),
        "{}",
        s.log()
    );
    assert!(host.sh("nft list ruleset").contains("8080"));
    assert_eq!(host.try_sh("command -v tree").0, 0);

    s.hkctl_ok(&[
        "rollback",
        "host/target",
        "--only",
        "firewall:inet/hostkit",
        "--only",
        "file:/etc/nftables.d/hostkit.nft",
        "--timeout",
        "60s",
    ]);
    assert!(
        !host.sh("nft list ruleset").contains("8080"),
        "the table is back"
    );
    assert_eq!(host.try_sh("command -v tree").0, 0, "the package stays");
    let h = s.get("host", "target").unwrap();
    assert!(
        h["metadata"]["annotations"]["hostkit.dev/held"]
            .as_str()
            .is_some_and(|v| v.contains("firewall:inet/hostkit")),
        "{h}"
    );
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !host.sh("nft list ruleset").contains("8080"),
        "held through resyncs"
    );
    // A new spec ends the hold.
    s.apply_yaml(&spec("22, 9090", with_tree));
    assert!(
        wait_until(Duration::from_secs(30), || host
            .sh("nft list ruleset")
            .contains("9090")),
        "{}",
        s.log()
    );
}
