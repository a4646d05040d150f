//! Every monitor kind passing and failing on a real host: the demo Service converged on a
//! booted systemd test host, then its monitors run over SSH the way a reconcile's read
//! runs them (one script).

use std::collections::BTreeMap;
use std::time::Duration;

use hostkit_api::kinds::{Monitor, RestartPolicy};
use hostkit_e2e::engine::{converge, demo, demo_secrets, options, web_daemon};
use hostkit_e2e::testhost::TestHost;
use hostkit_engine::monitor;
use hostkit_engine::transport::ssh::Ssh;
use serde_json::json;

/// The results of `monitors` on the demo Service, by name: (ok, message).
async fn run(
    ssh: &Ssh,
    d: &hostkit_engine::offline::manifests::Desired,
    monitors: serde_json::Value,
) -> BTreeMap<String, (bool, String)> {
    let mut spec = d.services["web"].spec.clone();
    spec.monitors = serde_json::from_value::<Vec<Monitor>>(monitors).unwrap();
    let project = d.projects.get("demo").map(|p| &p.spec);
    let probes = hostkit_engine::expand::monitors("web", &spec, project).expect("probes");
    let results = monitor::run(ssh, &probes).await.expect("monitors ran");
    results
        .into_iter()
        .map(|r| (r.name, (r.ok, r.message)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_monitor_kind_passes_and_fails_on_a_real_host() {
    let host = TestHost::boot();
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    let (mut d, _) = demo("v1", 8080);
    {
        let daemon = web_daemon(&mut d);
        daemon.listen =
            vec![serde_json::from_value(json!({"name": "http", "port": 8080})).unwrap()];
        daemon.restart = Some(RestartPolicy::Always);
    }
    let resources = d.resources_for("target").unwrap();
    converge(&ssh, &resources, &[], &demo_secrets("t"), "r1").await;

    let passing = run(
        &ssh,
        &d,
        json!([
            {"systemd": {"unit": "demo-web.service", "subState": "running", "maxRestarts": 0}},
            {"http": {"path": "/index.html", "body": "v1"}},
            {"tcp": {}},
            {"file": {"path": "/etc/demo/web/version.txt", "mode": "0644", "maxAge": "1h"}},
            {"command": {"exec": ["/bin/sh", "-c", "id -un; test -r ${storage.data}/index.html"]}},
            {"journal": {"pattern": "Traceback"}},
        ]),
    )
    .await;
    for (name, (ok, message)) in &passing {
        assert!(ok, "{name} should pass: {message}");
    }
    assert_eq!(passing["systemd"].1, "demo-web.service is active/running");
    assert_eq!(
        passing["http"].1,
        "GET http://127.0.0.1:8080/index.html: 200"
    );
    assert_eq!(passing["tcp"].1, "127.0.0.1:8080 accepts connections");
    assert_eq!(
        passing["command"].1, "exit 0: demo-web",
        "runs as the service's user"
    );

    let failing = run(
        &ssh,
        &d,
        json!([
            {"name": "state", "systemd": {"unit": "demo-web.service", "expect": "inactive"}},
            {"name": "status", "http": {"path": "/missing"}},
            {"name": "body", "http": {"path": "/index.html", "body": "v2"}},
            {"name": "closed", "tcp": {"address": "127.0.0.1:1"}},
            {"name": "mode", "file": {"path": "/etc/demo/web/version.txt", "mode": "0600"}},
            {"name": "absent", "file": {"path": "/etc/demo/web/nope"}},
            {"name": "sandboxed", "command": {"exec": ["/bin/sh", "-c", "touch /etc/escaped"]}},
            {"name": "slow", "command": {"exec": ["/bin/sleep", "30"]}, "timeout": "1s"},
        ]),
    )
    .await;
    for (name, (ok, message)) in &failing {
        assert!(!ok, "{name} should fail: {message}");
    }
    assert_eq!(
        failing["state"].1,
        "demo-web.service is active/running, want inactive"
    );
    assert_eq!(
        failing["status"].1,
        "GET http://127.0.0.1:8080/missing: 404, want 200"
    );
    assert!(
        failing["body"]
            .1
            .ends_with("but the body does not contain \"v2\""),
        "{}",
        failing["body"].1
    );
    assert!(
        failing["closed"].1.contains("Connection refused"),
        "{}",
        failing["closed"].1
    );
    assert_eq!(
        failing["mode"].1,
        "/etc/demo/web/version.txt has mode 0644, want 0600"
    );
    assert!(
        failing["sandboxed"].1.contains("Read-only file system"),
        "the daemon's sandbox holds: {}",
        failing["sandboxed"].1
    );
    assert_eq!(host.try_sh("test -e /etc/escaped").0, 1);
    assert_eq!(failing["slow"].1, "timed out after 1s");
    // systemd ended the command's unit itself (a killed systemd-run would leave it running).
    let mut left = String::from("?");
    for _ in 0..50 {
        left = host.sh("systemctl list-units --no-legend 'run-*' | grep -c sleep || true");
        if left.trim() == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left.trim(), "0", "the timed-out command still runs");

    // A restart after the apply and a journal line since it: both fail, counted.
    host.sh("systemctl kill -s KILL demo-web.service");
    let mut after = BTreeMap::new();
    for _ in 0..50 {
        after = run(
            &ssh,
            &d,
            json!([
                {"systemd": {"unit": "demo-web.service", "maxRestarts": 0}},
                {"journal": {"pattern": "GET /index\\.html"}},
            ]),
        )
        .await;
        // Once the unit is back (it passes `activating/auto-restart` first).
        if after["systemd"].1.contains("restarted") && !after["journal"].0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        after["systemd"].1,
        "demo-web.service restarted 1 time(s) since the apply started it (at most 0)"
    );
    assert_eq!(
        after["journal"].1,
        "2 journal line(s) of demo-web.service match /GET /index\\.html/ since the apply (hkctl logs shows them)",
        "the two requests of the http monitors"
    );
    assert!(
        !after["journal"].1.contains("HTTP/1"),
        "the lines themselves stay out of status: {}",
        after["journal"].1
    );
}

/// Through the controller: a monitor past its threshold makes the Service `Healthy=False`
/// and not Ready, with an event, a metric and a row in `hkctl describe`; it recovers the
/// same way.
#[test]
fn a_failing_monitor_is_a_condition_an_event_a_metric_and_a_describe_row() {
    use hostkit_e2e::server::{Hostkit, condition, stdout};
    use hostkit_e2e::wait_until;

    let s = Hostkit::controller();
    let host = TestHost::boot();
    host.sh("touch /var/tmp/ready");
    s.apply_yaml(&format!(
        r#"apiVersion: hostkit.dev/v1alpha1
kind: Host
metadata: {{name: target}}
spec:
  address: {address}
  ssh: {{user: root, identityFile: {key}, hostKey: {{policy: pinned, key: "{hk}"}}}}
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {{name: web}}
spec:
  hosts: [target]
  interval: 1h
  files: [{{path: /etc/web/version.txt, content: "v1\n"}}]
  monitors:
    - name: ready
      file: {{path: /var/tmp/ready}}
      every: 1s
      failureThreshold: 2
"#,
        address = host.address,
        key = host.key().display(),
        hk = host.host_key()
    ));
    let healthy = |want: &str| {
        wait_until(Duration::from_secs(60), || {
            s.get("service", "web")
                .and_then(|v| condition(&v, "Healthy"))
                .is_some_and(|(status, _, _)| status == want)
        })
    };
    let service = || s.get("service", "web").unwrap();
    assert!(healthy("True"), "{:?}\n{}", service()["status"], s.log());
    assert_eq!(condition(&service(), "Ready").unwrap().0, "True");
    let up = "hostkit_monitor_up{kind=\"Service\",name=\"web\",host=\"target\",monitor=\"ready\",severity=\"critical\"}";
    assert!(s.metrics().contains(&format!("{up} 1")), "{}", s.metrics());

    host.sh("rm /var/tmp/ready");
    assert!(healthy("False"), "{:?}", service()["status"]);
    let (_, reason, message) = condition(&service(), "Ready").unwrap();
    assert_eq!(reason, "MonitorFailing");
    assert_eq!(message, "target: ready: /var/tmp/ready does not exist");
    s.wait_events("service/web", &["MonitorFailing"]);
    assert!(s.metrics().contains(&format!("{up} 0")));
    assert!(
        s.metrics()
            .contains("hostkit_monitor_duration_seconds{kind=\"Service\",name=\"web\",host=\"target\",monitor=\"ready\",severity=\"critical\"}")
    );
    // `hkctl get` shows it in its own column.
    let table = stdout(&s.hkctl(&["get", "svc", "web"]));
    let mut lines = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>());
    let (header, row) = (lines.next().unwrap(), lines.next().unwrap());
    let healthy_at = header
        .iter()
        .position(|h| *h == "HEALTHY")
        .expect("a HEALTHY column");
    assert_eq!(row[healthy_at], "False", "{table}");
    let page = stdout(&s.hkctl(&["describe", "service", "web"]));
    assert!(
        page.contains("Monitors:\n  HOST     MONITOR   KIND   SEVERITY   OK   SINCE")
            && page.contains("  target   ready     file   critical   no   "),
        "{page}"
    );

    host.sh("touch /var/tmp/ready");
    assert!(healthy("True"));
    s.wait_events("service/web", &["MonitorRecovered"]);
    assert!(wait_until(Duration::from_secs(10), || s
        .get("service", "web")
        .and_then(|v| condition(&v, "Ready"))
        .is_some_and(|c| c.0 == "True")));
}
