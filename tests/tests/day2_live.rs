//! End to end: the day-2 verbs that act through the controller (`reconcile`, `wait`,
//! `suspend`/`resume`) on a booted test host over SSH. Every interval is an hour, so what
//! happens within the test happens because a verb asked for it, not because a resync came.

use hostkit_e2e::server::{Hostkit, stderr, stdout};
use hostkit_e2e::testhost::TestHost;

fn manifests(host: &TestHost, version: &str) -> String {
    format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {{name: target}}\nspec:\n  address: {}\n  interval: 1h\n  ssh:\n    user: root\n    identityFile: {}\n    hostKey: {{policy: pinned, key: \"{}\"}}\n    connectTimeout: 2s\n---\napiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  hosts: [target]\n  interval: 1h\n  files:\n    - {{path: /etc/web/version.txt, content: \"{version}\\n\"}}\n  daemon:\n    exec: [/bin/sleep, infinity]\n",
        host.address,
        host.key().display(),
        host.host_key()
    )
}

fn exit_code(s: &Hostkit, args: &[&str]) -> (Option<i32>, String, String) {
    let o = s.hkctl(args);
    (o.status.code(), stdout(&o), stderr(&o))
}

#[test]
fn reconcile_repairs_now_wait_sees_the_new_generation_and_suspend_holds_repairs() {
    let host = TestHost::boot();
    let s = Hostkit::controller();
    s.apply_yaml(&manifests(&host, "v1"));
    let o = s.hkctl_ok(&[
        "wait",
        "service/web",
        "--for=condition=Ready",
        "--timeout",
        "120s",
    ]);
    assert_eq!(stdout(&o), "service/web condition met\n");
    assert_eq!(host.sh("cat /etc/web/version.txt"), "v1\n");

    // Drift, repaired by the request (the next resync is an hour away).
    host.sh("echo tampered > /etc/web/version.txt");
    let o = s.hkctl_ok(&["reconcile", "service/web", "--wait", "--timeout", "60s"]);
    let text = stdout(&o);
    assert!(
        text.lines()
            .any(|l| l.starts_with("service/web reconciled in ") && l.contains("Ready=True")),
        "{text}"
    );
    // While it waited, the pass's steps: the events it recorded, one line each.
    assert!(
        text.lines()
            .any(|l| l.starts_with("service/web: DriftRepaired: target: ")),
        "{text}"
    );
    assert_eq!(host.sh("cat /etc/web/version.txt"), "v1\n");
    let o = s.hkctl_ok(&["reconcile", "host/target", "--wait", "--timeout", "60s"]);
    assert!(stdout(&o).contains("Ready=True"), "{}", stdout(&o));

    // Suspended: the pass plans and reports the drift, and leaves it.
    let o = s.hkctl_ok(&["suspend", "service/web"]);
    assert!(
        stdout(&o).starts_with("service/web suspended"),
        "{}",
        stdout(&o)
    );
    host.sh("echo tampered > /etc/web/version.txt");
    let (code, out, err) = exit_code(&s, &["reconcile", "svc/web", "--wait", "--timeout", "60s"]);
    assert_eq!(code, Some(1), "not Ready is exit 1: {out}{err}");
    assert!(out.contains("Ready=False Paused"), "{out}");
    assert_eq!(host.sh("cat /etc/web/version.txt"), "tampered\n");
    let drifted = s.get("service", "web").expect("service");
    assert_eq!(
        hostkit_e2e::server::condition_status(&drifted, "Drifted").as_deref(),
        Some("True"),
        "{drifted}"
    );
    s.hkctl_ok(&["resume", "service/web"]);
    s.hkctl_ok(&[
        "wait",
        "svc/web",
        "--for=condition=Drifted=False",
        "--timeout",
        "60s",
    ]);
    assert_eq!(host.sh("cat /etc/web/version.txt"), "v1\n");

    // wait after an apply: met only once the new generation is Ready, so the host has it.
    s.apply_yaml(&manifests(&host, "v2"));
    s.hkctl_ok(&[
        "wait",
        "svc/web",
        "--for=condition=Ready",
        "--timeout",
        "60s",
    ]);
    assert_eq!(host.sh("cat /etc/web/version.txt"), "v2\n");

    // apply --wait: a line per host step, then Ready; a failing generation is exit 1.
    let file = s.dir().join("v3.yaml");
    std::fs::write(&file, manifests(&host, "v3")).unwrap();
    let o = s.hkctl_ok(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "--timeout",
        "60s",
    ]);
    let text = stdout(&o);
    assert!(text.contains("service/web configured\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("service/web: target: generation ") && l.contains(" applied")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("service/web: Ready: ")),
        "{text}"
    );
    assert_eq!(host.sh("cat /etc/web/version.txt"), "v3\n");
    std::fs::write(
        &file,
        manifests(&host, "v4").replace("[/bin/sleep, infinity]", "[/bin/sh, -c, \"exit 3\"]"),
    )
    .unwrap();
    let (code, out, err) = exit_code(
        &s,
        &[
            "apply",
            "-f",
            file.to_str().unwrap(),
            "--wait",
            "--timeout",
            "60s",
        ],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("service/web: not Ready: ApplyFailed"),
        "{out}{err}"
    );
    s.apply_yaml(&manifests(&host, "v3"));
    s.hkctl_ok(&[
        "wait",
        "svc/web",
        "--for=condition=Ready",
        "--timeout",
        "60s",
    ]);

    let (code, _, err) = exit_code(
        &s,
        &[
            "wait",
            "svc/nope",
            "--for=condition=Ready",
            "--timeout",
            "1s",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("timed out") && err.contains("not found"),
        "{err}"
    );

    s.hkctl_ok(&["delete", "service/web"]);
    let o = s.hkctl_ok(&["wait", "service/web", "--for=delete", "--timeout", "90s"]);
    assert_eq!(stdout(&o), "service/web deleted\n");
    assert!(s.get("service", "web").is_none());
    assert_eq!(
        host.try_sh("test -e /etc/web/version.txt").0,
        1,
        "cleaned up"
    );
}

/// A Host that was never reached and a secret that is not set: the Service says Unknown
/// (not "in sync"), names the host and the secret, and `describe` shows the events.
#[test]
fn a_host_never_reached_and_a_missing_secret_read_unknown_with_an_event_each() {
    let host = TestHost::boot();
    let s = Hostkit::controller();
    let closed = hostkit_e2e::free_port();
    s.apply_yaml(&format!(
        "{}---\napiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {{name: nowhere}}\nspec:\n  address: 127.0.0.1\n  interval: 1h\n  ssh: {{user: root, port: {closed}, connectTimeout: 1s}}\n---\napiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {{name: lost}}\nspec:\n  hosts: [nowhere]\n  interval: 1h\n  files:\n    - {{path: /etc/lost.txt, content: \"x\\n\"}}\n---\napiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {{name: sec}}\nspec:\n  hosts: [target]\n  interval: 1h\n  env:\n    runtime:\n      path: /etc/sec/sec.env\n      secrets:\n        TOKEN: {{env: HOSTKIT_E2E_SECRET_NOT_SET}}\n  daemon:\n    exec: [/bin/sleep, infinity]\n    env: [runtime]\n",
        manifests(&host, "v1").split("---\napiVersion: hostkit.dev/v1alpha1\nkind: Service").next().unwrap()
    ));
    for (name, reason, needle) in [
        ("lost", "HostNotRead", "nowhere: "),
        ("sec", "SecretMissing", "env:HOSTKIT_E2E_SECRET_NOT_SET"),
    ] {
        s.hkctl_ok(&[
            "wait",
            &format!("service/{name}"),
            "--for=condition=Ready=Unknown",
            "--timeout",
            "60s",
        ]);
        let v = s.get("service", name).expect("service");
        for type_ in ["Ready", "Drifted", "Reconciling"] {
            let (status, r, message) = hostkit_e2e::server::condition(&v, type_).expect(type_);
            assert_eq!(
                (status.as_str(), r.as_str()),
                ("Unknown", reason),
                "{name} {type_}: {message}"
            );
            assert!(message.contains(needle), "{name} {type_}: {message}");
        }
        let (status, r, _) = hostkit_e2e::server::condition(&v, "Planned").unwrap();
        assert_eq!((status.as_str(), r.as_str()), ("False", reason), "{name}");
        let events = s.wait_events(&format!("service/{name}"), &[reason]);
        assert!(events.contains(needle), "{events}");
        let o = s.hkctl_ok(&["describe", "service", name]);
        let page = stdout(&o);
        let events_part = page.split("Events:").nth(1).unwrap_or_default();
        assert!(
            events_part.contains(reason),
            "describe shows the event:\n{page}"
        );
    }
    assert!(
        s.log()
            .lines()
            .all(|l| !l.contains("HOSTKIT_E2E_SECRET_NOT_SET=")),
        "no value logged"
    );
}

/// `hkctl plan -f`: the live plan of a proposed manifest, stored or not, with what a
/// Rollback could undo; nothing is stored. Exit 0 nothing, 1 changes, 2 error.
#[test]
fn plan_of_a_proposed_manifest_shows_changes_and_coverage_and_stores_nothing() {
    let host = TestHost::boot();
    let s = Hostkit::controller();
    s.apply_yaml(&manifests(&host, "v1"));
    s.hkctl_ok(&[
        "wait",
        "service/web",
        "--for=condition=Ready",
        "--timeout",
        "120s",
    ]);
    let before = s.get("service", "web").expect("service");
    let dir = tempfile::tempdir().unwrap();
    let proposed = dir.path().join("web.yaml");
    let service_only = |version: &str, name: &str| {
        let all = manifests(&host, version);
        all.split("---\n")
            .nth(1)
            .unwrap()
            .replace("name: web}", &format!("name: {name}}}"))
    };
    std::fs::write(&proposed, service_only("v2", "web")).unwrap();
    let f = proposed.to_str().unwrap();
    let (code, out, err) = exit_code(&s, &["plan", "-f", f]);
    assert_eq!(code, Some(1), "changes: {out}{err}");
    assert!(out.contains("~ file:/etc/web/version.txt"), "{out}");
    assert!(out.contains("Down plan on target: 1 step(s) undo"), "{out}");
    let after = s.get("service", "web").expect("service");
    assert_eq!(
        after["metadata"]["generation"], before["metadata"]["generation"],
        "nothing stored"
    );
    assert_eq!(
        host.sh("cat /etc/web/version.txt"),
        "v1\n",
        "nothing applied"
    );

    std::fs::write(&proposed, service_only("v1", "web")).unwrap();
    let (code, out, err) = exit_code(&s, &["plan", "-f", f]);
    assert_eq!(code, Some(0), "what is stored and applied: {out}{err}");

    // A Service that does not exist yet is planned from scratch, and still not stored.
    std::fs::write(
        &proposed,
        service_only("v3", "fresh").replace("/etc/web/", "/etc/fresh/"),
    )
    .unwrap();
    let (code, out, err) = exit_code(&s, &["plan", "-f", f, "-o", "json"]);
    assert_eq!(code, Some(1), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["plans"][0]["host"], "target", "{v}");
    assert!(v["coverage"][0]["reversible"].as_u64().unwrap() >= 1, "{v}");
    assert!(s.get("service", "fresh").is_none());

    // An invalid proposal is an error naming the field, exit 2.
    std::fs::write(
        &proposed,
        service_only("v2", "web").replace(
            "  hosts: [target]\n",
            "  hosts: [target]\n  daemon: {exec: [], restart: sometimes}\n",
        ),
    )
    .unwrap();
    let (code, _, err) = exit_code(&s, &["plan", "-f", f]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("restart") || err.contains("daemon"), "{err}");
    let (code, _, err) = exit_code(&s, &["plan", "service/nope"]);
    assert_eq!(code, Some(2), "{err}");
}

/// `hkctl logs`: the journal of a Service's units on two hosts, read by the server over
/// SSH, merged and prefixed; one host; one unit; `-f` follows, and ends its readers on the
/// hosts when the client goes away.
#[test]
fn logs_merge_hosts_follow_and_refuse_what_is_not_the_services() {
    use std::io::{BufRead, BufReader};
    use std::time::Duration;
    let (h1, h2) = (TestHost::boot(), TestHost::boot());
    let s = Hostkit::controller();
    let host_doc = |name: &str, h: &TestHost| {
        manifests(h, "v1")
            .split("---\n")
            .next()
            .unwrap()
            .replace("name: target}", &format!("name: {name}}}"))
    };
    s.apply_yaml(&format!(
        "{}---\n{}---\napiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {{name: chatty}}\nspec:\n  hosts: [h1, h2]\n  interval: 1h\n  daemon:\n    exec: [/bin/sh, -c, \"echo chatty-started; exec sleep infinity\"]\n  jobs:\n    - name: sweep\n      exec: [/bin/sh, -c, \"echo swept\"]\n      schedule: {{onCalendar: [hourly]}}\n",
        host_doc("h1", &h1),
        host_doc("h2", &h2)
    ));
    s.hkctl_ok(&[
        "wait",
        "service/chatty",
        "--for=condition=Ready",
        "--timeout",
        "120s",
    ]);
    let o = s.hkctl_ok(&["logs", "service/chatty"]);
    let text = stdout(&o);
    for h in ["h1", "h2"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("[{h}] ")) && l.ends_with("chatty-started")),
            "{text}"
        );
    }
    let o = s.hkctl_ok(&["logs", "svc", "chatty", "--host", "h2", "--tail", "50"]);
    assert!(
        stdout(&o).lines().all(|l| l.starts_with("[h2] ")),
        "{}",
        stdout(&o)
    );
    h1.sh("systemctl start chatty-sweep.service");
    let o = s.hkctl_ok(&["logs", "service/chatty", "--unit", "sweep", "--host", "h1"]);
    let text = stdout(&o);
    assert!(
        text.contains("swept") && !text.contains("chatty-started"),
        "{text}"
    );

    let (code, _, err) = exit_code(&s, &["logs", "service/chatty", "--unit", "sshd"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not one of its units"), "{err}");
    let (code, _, err) = exit_code(&s, &["logs", "service/chatty", "--host", "elsewhere"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("does not run on host elsewhere"), "{err}");
    let (code, _, err) = exit_code(
        &s,
        &["logs", "service/chatty", "--since", "yesterday; rm -rf /"],
    );
    assert_eq!(code, Some(1), "{err}");

    // Follow: a restart's lines arrive as they happen.
    let mut follow = hostkit_e2e::KillOnDrop(
        s.hkctl_command(&[
            "logs",
            "service/chatty",
            "--host",
            "h1",
            "-f",
            "--tail",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let out = follow.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The reader is running on h1 before anything is logged.
    assert!(hostkit_e2e::wait_until(Duration::from_secs(20), || h1
        .try_sh("pgrep -x journalctl")
        .0
        == 0));
    h1.sh("systemctl restart chatty.service");
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.ends_with("chatty-started")) {
        seen.push(
            rx.recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no followed line: {seen:?}")),
        );
    }
    assert!(seen.iter().all(|l| l.starts_with("[h1] ")), "{seen:?}");
    drop(follow);
    // The client went away: the reader on the host ends (at its next line at the latest).
    h1.sh("systemctl restart chatty.service");
    assert!(
        hostkit_e2e::wait_until(Duration::from_secs(20), || h1
            .try_sh("pgrep -x journalctl")
            .0
            != 0),
        "journalctl still runs on h1"
    );
}
