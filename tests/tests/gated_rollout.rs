//! Health-gated rollouts through the controller on three booted test hosts: v2 of a
//! Service answers its health check with 500. With `onUnhealthy: rollback` it reaches the
//! canary only and is taken back there byte for byte, the other hosts never change, and a
//! Rollback with reason Unhealthy records it. With `pause` the rollout holds until
//! `hkctl rollout resume` after a fix, then reaches the rest.

use std::time::Duration;

use hostkit_e2e::server::{Hostkit, condition, stderr, stdout};
use hostkit_e2e::testhost::TestHost;
use hostkit_e2e::wait_until;
use serde_json::Value;

/// A health endpoint that fails for any version but v1 until `/etc/NAME/ready-VERSION`
/// exists on the host.
const SERVER: &str = r#"import http.server, os, sys
port, name, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = version == "v1" or os.path.exists("/etc/%s/ready-%s" % (name, version))
        self.send_response(200 if ok else 500)
        self.end_headers()
        self.wfile.write(version.encode())
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

fn hosts_yaml(hosts: &[(&str, &TestHost)]) -> String {
    hosts
        .iter()
        .map(|(name, h)| {
            format!(
                "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}, labels: {{fleet: gated}}}}\nspec:\n  address: {}\n  ssh: {{user: root, identityFile: {}, hostKey: {{policy: pinned, key: \"{}\"}}}}\n---\n",
                h.address,
                h.key().display(),
                h.host_key()
            )
        })
        .collect()
}

fn service_yaml(name: &str, port: u16, version: &str, on_unhealthy: &str) -> String {
    let server: String = SERVER.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        r#"apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {{name: {name}}}
spec:
  hostSelector: {{matchLabels: {{fleet: gated}}}}
  interval: 1h
  rollout: {{canary: 1, maxParallel: 2, healthyFor: 2s, onUnhealthy: {on_unhealthy}}}
  files:
    - path: /opt/{name}/server.py
      content: |
{server}  daemon:
    exec: [/usr/bin/python3, /opt/{name}/server.py, "{port}", {name}, {version}]
    listen: [{{name: http, port: {port}}}]
  monitors:
    - http: {{path: /health}}
      every: 1s
      failureThreshold: 2
"#
    )
}

fn rollout_phase(s: &Hostkit, name: &str) -> Option<(i64, String)> {
    let v = s.get("service", name)?;
    let r = v.pointer("/status/rollout")?;
    Some((r["generation"].as_i64()?, r["phase"].as_str()?.to_string()))
}

fn wait_phase(s: &Hostkit, name: &str, generation: i64, phase: &str, secs: u64) {
    let reached = wait_until(Duration::from_secs(secs), || {
        rollout_phase(s, name) == Some((generation, phase.to_string()))
    });
    assert!(
        reached,
        "{name}: generation {generation} never {phase}: {:?}\n{}",
        s.get("service", name)
            .and_then(|v| v.get("status").cloned()),
        stdout(&s.hkctl(&["events", "--for", &format!("service/{name}")]))
    );
}

/// The unit file's digest and inode: a rewrite (temp + rename) changes the inode.
fn unit_file(h: &TestHost, name: &str) -> String {
    h.sh(&format!(
        "sha256sum /etc/systemd/system/{name}.service | cut -c1-64; stat -c %i /etc/systemd/system/{name}.service"
    ))
}

#[test]
fn an_unhealthy_canary_is_rolled_back_and_a_paused_rollout_resumes_after_a_fix() {
    let s = Hostkit::controller();
    let (a, b, c) = (TestHost::boot(), TestHost::boot(), TestHost::boot());
    s.apply_yaml(&hosts_yaml(&[("a", &a), ("b", &b), ("c", &c)]));

    // onUnhealthy: rollback.
    s.apply_yaml(&service_yaml("web", 8080, "v1", "rollback"));
    wait_phase(&s, "web", 1, "Complete", 120);
    let before: Vec<String> = [&a, &b, &c].iter().map(|h| unit_file(h, "web")).collect();
    s.apply_yaml(&service_yaml("web", 8080, "v2", "rollback"));
    wait_phase(&s, "web", 2, "RolledBack", 120);
    let after: Vec<String> = [&a, &b, &c].iter().map(|h| unit_file(h, "web")).collect();
    assert_eq!(
        after[0].lines().next(),
        before[0].lines().next(),
        "the canary runs v1's unit again, byte for byte"
    );
    assert_ne!(after[0], before[0], "the canary was changed, then put back");
    assert_eq!(after[1..], before[1..], "b and c were never touched");
    assert_eq!(
        a.sh("curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:8080/health"),
        "200"
    );
    let svc = s.get("service", "web").unwrap();
    let (status, reason, message) = condition(&svc, "Stalled").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "RolledBack"));
    assert!(
        message.contains("a: http: GET http://127.0.0.1:8080/health: 500, want 200"),
        "{message}"
    );
    let events = s.wait_events("service/web", &["MonitorFailing", "RolledBack"]);
    assert!(
        events.contains("a: http: GET http://127.0.0.1:8080/health: 500, want 200"),
        "{events}"
    );
    let rollbacks: Value =
        serde_json::from_str(&stdout(&s.hkctl(&["get", "rollbacks", "-o", "json"]))).unwrap();
    let unhealthy: Vec<&Value> = rollbacks["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r.pointer("/metadata/annotations/hostkit.dev~1reason")
                == Some(&Value::from("Unhealthy"))
        })
        .collect();
    assert_eq!(unhealthy.len(), 1, "{rollbacks}");
    assert_eq!(unhealthy[0]["spec"]["targetRef"]["name"], "web");
    let shown = stdout(&s.hkctl(&["rollout", "status", "service/web"]));
    assert!(
        shown.starts_with("service/web: RolledBack (generation 2), wave 1 of 2, hosts done: "),
        "{shown}"
    );

    // onUnhealthy: pause, then a fix on every host and a resume.
    s.apply_yaml(&service_yaml("api", 8081, "v1", "pause"));
    wait_phase(&s, "api", 1, "Complete", 120);
    s.apply_yaml(&service_yaml("api", 8081, "v2", "pause"));
    wait_phase(&s, "api", 2, "Paused", 120);
    let out = s.hkctl(&["rollout", "status", "service/api", "-w", "--timeout", "5s"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a paused rollout is not a finished one"
    );
    assert!(
        stdout(&out).contains("Paused (generation 2)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        b.sh("cat /etc/systemd/system/api.service | grep -c ' v2' || true")
            .trim(),
        "0",
        "a pause holds the other hosts"
    );
    for h in [&a, &b, &c] {
        h.sh("mkdir -p /etc/api && touch /etc/api/ready-v2");
    }
    let out = s.hkctl(&["rollout", "resume", "service/api"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "service/api: rollout resumed\n");
    let out = s.hkctl(&[
        "rollout",
        "status",
        "service/api",
        "-w",
        "--timeout",
        "120s",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("Complete (generation 2)"),
        "{}",
        stdout(&out)
    );
    for h in [&b, &c] {
        assert_eq!(h.sh("curl -s 127.0.0.1:8081/health"), "v2");
    }
    let out = s.hkctl(&["rollout", "resume", "service/api"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "nothing to resume: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("the rollout is not paused (phase Complete)"),
        "{}",
        stderr(&out)
    );
}
