//! Processes die: `hostkit serve` killed with SIGKILL in the middle of converging a real
//! host keeps a history that describes that host (nothing applied without a Revision, no
//! backup that no Revision names, no temp file), and `hkctl get -w` outlives the server it
//! watches and a compaction of the history it was watching from.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hostkit_e2e::etcd::EtcdServer;
use hostkit_e2e::server::{Hostkit, condition};
use hostkit_e2e::testhost::TestHost;
use hostkit_e2e::wait_until;
use serde_json::Value;

fn host_yaml(host: &TestHost) -> String {
    format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {{name: target}}\nspec:\n  address: {}\n  interval: 2s\n  ssh:\n    user: root\n    identityFile: {}\n    hostKey: {{policy: pinned, key: \"{}\"}}\n    retry: {{attempts: 2, baseDelay: 100ms, maxDelay: 200ms}}\n    connectTimeout: 2s\n---\n",
        host.address,
        host.key().display(),
        host.host_key()
    )
}

/// Generation `n`: every file changes, one file is new (and the last one's goes), the
/// daemon restarts, and a command takes a while: an apply long enough to be cut.
fn service_yaml(n: u32) -> String {
    format!(
        r#"apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {{name: crashy}}
spec:
  hosts: [target]
  interval: 2s
  revisionHistoryLimit: 50
  files:
    - {{path: /etc/crashy/version.conf, content: "v{n}\n"}}
    - {{path: /etc/crashy/g{n}.conf, content: "g{n}\n"}}
    - {{path: /etc/crashy/a.conf, content: "a{n}\n"}}
    - {{path: /etc/crashy/b.conf, content: "b{n}\n"}}
  env:
    runtime:
      set: {{GEN: "{n}"}}
  commands:
    - name: slow
      exec: [/bin/sh, -c, "sleep 0.4"]
      environment: {{GEN: "{n}"}}
      down: noop
  daemon:
    exec: [/bin/sleep, infinity]
    env: [runtime]
"#
    )
}

/// A small generator for kill moments (no dependency needed; the seed is printed).
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn revisions(s: &Hostkit) -> Vec<Value> {
    let out = s.hkctl(&["get", "revisions", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut revs: Vec<Value> = v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.pointer("/spec/targetRef/name") == Some(&Value::from("crashy")))
        .collect();
    revs.sort_by_key(|r| r.pointer("/spec/revision").and_then(Value::as_u64));
    revs
}

fn converged(s: &Hostkit, host: &TestHost, n: u32) -> bool {
    let Some(svc) = s.get("service", "crashy") else {
        return false;
    };
    svc.pointer("/status/observedGeneration").is_some()
        && svc.pointer("/status/observedGeneration") == svc.pointer("/metadata/generation")
        && condition(&svc, "Ready").is_some_and(|(st, _, _)| st == "True")
        && host.try_nsenter("cat /etc/crashy/version.conf").1 == format!("v{n}\n")
}

/// History and the host agree: no run is still pending, the files under /etc/crashy are
/// exactly those of the revision the host runs, no temp file is left, every backup
/// folder of the service belongs to a recorded run and every recorded run has its folder.
fn agree(s: &Hostkit, host: &TestHost, n: u32) {
    let revs = revisions(s);
    let svc = s.get("service", "crashy").unwrap();
    let runs: Vec<&Value> = revs
        .iter()
        .flat_map(|r| r["spec"]["hosts"].as_array().into_iter().flatten())
        .flat_map(|h| h["runs"].as_array().into_iter().flatten())
        .collect();
    assert!(
        runs.iter().all(|r| r["pending"] != Value::Bool(true)),
        "generation {n}: a run is still pending: {revs:#?}"
    );
    let current = svc
        .pointer("/status/hosts/0/revision")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("generation {n}: no revision for the host: {svc:#}"));
    let rev = revs
        .iter()
        .find(|r| r.pointer("/spec/revision").and_then(Value::as_u64) == Some(current))
        .expect("the host's revision exists");
    assert_eq!(
        rev.pointer("/spec/generation").and_then(Value::as_i64),
        svc.pointer("/metadata/generation").and_then(Value::as_i64),
        "generation {n}: the host's revision is not its spec's"
    );
    let recorded: BTreeSet<String> = rev["spec"]["resources"]
        .as_array()
        .expect("the revision records its resources")
        .iter()
        .filter_map(|r| r.pointer("/spec/path").and_then(Value::as_str))
        .filter_map(|p| p.strip_prefix("/etc/crashy/"))
        .map(String::from)
        .collect();
    let listed: BTreeSet<String> = host
        .nsenter("ls -A /etc/crashy")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        listed, recorded,
        "generation {n}: /etc/crashy vs revision {current}"
    );
    let temps = host.nsenter(
        "find /etc/crashy /etc/systemd/system /var/lib/hostkit -name '.hostkit.*' 2>/dev/null",
    );
    assert_eq!(temps, "", "generation {n}: temp files left");
    let ids: BTreeSet<String> = runs
        .iter()
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect();
    let folders: BTreeSet<String> = host
        .nsenter("ls /var/lib/hostkit/backups 2>/dev/null | grep '^crashy-' || true")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        folders, ids,
        "generation {n}: backup folders on the host vs runs in history"
    );
}

#[test]
fn a_controller_killed_at_random_moments_leaves_history_that_describes_the_host() {
    let host = TestHost::boot();
    let mut s = Hostkit::controller();
    s.apply_yaml(&(host_yaml(&host) + &service_yaml(1)));
    assert!(
        wait_until(Duration::from_secs(90), || converged(&s, &host, 1)),
        "generation 1 never converged\n{}",
        s.log()
    );
    agree(&s, &host, 1);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill moments seeded with {seed}");
    let mut moments = Moments(seed);
    let started = Instant::now();
    for n in 2..=21 {
        s.apply_yaml(&service_yaml(n));
        let after = moments.next_ms(900);
        std::thread::sleep(Duration::from_millis(after));
        s.stop(true);
        s.start_again();
        assert!(
            wait_until(Duration::from_secs(90), || converged(&s, &host, n)),
            "generation {n} (killed {after} ms after apply) never converged\n{}",
            s.log()
        );
        agree(&s, &host, n);
    }
    let cut = revisions(&s)
        .iter()
        .flat_map(|r| r["spec"]["hosts"].as_array().cloned().unwrap_or_default())
        .flat_map(|h| h["runs"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["settled"] == Value::Bool(true))
        .count();
    eprintln!(
        "20 kills in {:.0} s; {cut} of them cut an apply the controller then settled from the host's journal",
        started.elapsed().as_secs_f64()
    );
    assert!(
        cut >= 3,
        "too few kills landed in an apply to prove anything"
    );
    let events = s.wait_events("service/crashy", &["ApplySettled"]);
    assert!(events.contains("was interrupted"), "{events}");

    // The settled runs undo like any other: back to revision 1, file for file.
    s.hkctl_ok(&[
        "rollback",
        "service/crashy",
        "--to-revision",
        "1",
        "--timeout",
        "180s",
    ]);
    let listed = host.nsenter("ls -A /etc/crashy");
    assert_eq!(
        listed.lines().collect::<BTreeSet<_>>(),
        ["a.conf", "b.conf", "g1.conf", "runtime.env", "version.conf"]
            .into_iter()
            .collect::<BTreeSet<_>>(),
        "{listed}"
    );
    assert_eq!(host.nsenter("cat /etc/crashy/version.conf"), "v1\n");
    let env = host.nsenter("cat /etc/crashy/runtime.env");
    assert!(env.ends_with("\nGEN=\"1\"\n"), "{env}");
}

fn project(name: &str, label: &str) -> String {
    format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Project\nmetadata: {{name: {name}, labels: {{step: \"{label}\"}}}}\nspec: {{}}\n"
    )
}

/// What `hkctl get projects -w --output-watch-events -o json` printed: (type, name, step
/// label) per line.
fn watched(file: &std::path::Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let s = |p: &str| {
                v.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            (
                s("/type"),
                s("/object/metadata/name"),
                s("/object/metadata/labels/step"),
            )
        })
        .collect()
}

/// The server `hkctl get -w` talks to is killed; meanwhile another server on the same etcd
/// changes things and etcd's history is compacted past where the watch was. The watch
/// reconnects, is told to re-list, and prints what happened meanwhile, once each.
#[test]
fn a_watch_outlives_its_server_and_a_compaction() {
    let etcd = EtcdServer::start();
    let mut a = Hostkit::with_etcd(&etcd.url);
    let b = Hostkit::with_etcd(&etcd.url);
    a.apply_yaml(&project("w1", "1"));
    let out_path = a.dir().join("watch.out");
    let mut watch = a
        .hkctl_command(&[
            "get",
            "projects",
            "-w",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(a.dir().join("watch.err")).unwrap())
        .spawn()
        .unwrap();
    let saw = |want: (&str, &str, &str)| {
        wait_until(Duration::from_secs(30), || {
            watched(&out_path).contains(&(want.0.into(), want.1.into(), want.2.into()))
        })
    };
    // The watch has listed (what exists now is its starting point, not an event) before
    // anything changes: a change made before the list would be in it, not in the events.
    assert!(wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&out_path).is_ok_and(|t| t.contains("\"w1\""))
    }));
    a.apply_yaml(&project("w2", "2"));
    a.apply_yaml(&project("w1", "3"));
    assert!(saw(("MODIFIED", "w1", "3")), "{:?}", watched(&out_path));

    // The watched server dies; the other one changes things, and history is compacted.
    a.stop(true);
    b.apply_yaml(&project("w3", "4"));
    assert!(b.hkctl(&["delete", "project", "w2"]).status.success());
    b.apply_yaml(&project("w1", "5"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store =
            hostkit_controller::store::etcd::EtcdStore::connect(std::slice::from_ref(&etcd.url))
                .await
                .unwrap();
        let head = hostkit_controller::store::Store::current_revision(&store)
            .await
            .unwrap();
        hostkit_controller::store::Store::compact(&store, head)
            .await
            .unwrap();
    });
    a.start_again();
    a.apply_yaml(&project("w4", "6"));
    assert!(
        saw(("ADDED", "w4", "6")),
        "{:?}\n{}",
        watched(&out_path),
        std::fs::read_to_string(a.dir().join("watch.err")).unwrap_or_default()
    );
    let _ = watch.kill();
    let _ = watch.wait();
    let lines = watched(&out_path);
    let expected: Vec<(String, String, String)> = [
        // What the list had, as ADDED (kubectl's --output-watch-events does the same).
        ("ADDED", "w1", "1"),
        ("ADDED", "w2", "2"),
        ("MODIFIED", "w1", "3"),
        ("ADDED", "w3", "4"),
        ("DELETED", "w2", "2"),
        ("MODIFIED", "w1", "5"),
        ("ADDED", "w4", "6"),
    ]
    .iter()
    .map(|(t, n, l)| (t.to_string(), n.to_string(), l.to_string()))
    .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(sorted, want, "every change once, nothing twice: {lines:?}");
    let err = std::fs::read_to_string(a.dir().join("watch.err")).unwrap_or_default();
    assert!(err.contains("reconnecting"), "{err}");
}
