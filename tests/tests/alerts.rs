//! Alert rules: promtool's unit tests, and a real Prometheus scraping `hostkit serve`
//! whose drift alert goes pending after a hand edit the controller may not repair.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hostkit_e2e::server::{Hostkit, stderr, stdout};
use hostkit_e2e::testhost::TestHost;
use hostkit_e2e::{free_port, http_get, stop_child, wait_until};

fn alerts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/alerts")
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(alerts_dir().join("hostkit.rules.yaml"))
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new("promtool")
        .args(["test", "rules", "hostkit.rules.test.yaml"])
        .current_dir(alerts_dir())
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        stop_child(&mut self.0, false);
    }
}

#[test]
fn prometheus_scrapes_hostkit_and_the_drift_alert_goes_pending() {
    let s = Hostkit::controller();
    let host = TestHost::boot();
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        r#"apiVersion: hostkit.dev/v1alpha1
kind: Host
metadata: {{name: target}}
spec:
  address: {address}
  interval: 2s
  ssh: {{user: root, identityFile: {key}, hostKey: {{policy: pinned, key: "{hk}"}}}}
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {{name: web}}
spec:
  hosts: [target]
  interval: 2s
  files: [{{path: /etc/web/version.txt, content: "v1\n"}}]
"#,
        address = host.address,
        key = host.key().display(),
        hk = host.host_key()
    );
    let f = dir.path().join("m.yaml");
    std::fs::write(&f, manifest).unwrap();
    assert!(
        s.hkctl(&["apply", "-f", f.to_str().unwrap()])
            .status
            .success()
    );
    let ready = || {
        let out = s.hkctl(&["get", "service", "web", "-o", "json"]);
        stdout(&out).contains("\"Converged\"")
    };
    assert!(wait_until(Duration::from_secs(60), ready), "{}", s.log());
    // Freeze applies, then edit by hand: drift that stays.
    let w = dir.path().join("w.yaml");
    std::fs::write(&w, "apiVersion: hostkit.dev/v1alpha1\nkind: PolicyWindow\nmetadata: {name: freeze}\nspec: {kind: deny, schedule: \"* * * * *\", duration: 1h}\n").unwrap();
    let out = s.hkctl(&["apply", "-f", w.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_secs(1));
    host.sh("echo tampered > /etc/web/version.txt");
    assert!(wait_until(Duration::from_secs(30), || s
        .metrics()
        .contains(
            "hostkit_drift{kind=\"Service\",name=\"web\",host=\"target\"} 1"
        )));

    let prom_port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{}]\nscrape_configs:\n  - job_name: hostkit\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            alerts_dir().join("hostkit.rules.yaml").display(),
            s.port
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prom = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus"),
    );
    let pending = wait_until(Duration::from_secs(60), || {
        http_get(prom_port, "/api/v1/alerts").is_some_and(|b| {
            b.contains("HostKitDriftPersisting") && b.contains("\"state\":\"pending\"")
        })
    });
    assert!(
        pending,
        "alerts: {:?}\nprometheus log: {}",
        http_get(prom_port, "/api/v1/alerts"),
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
    );
    // The series carries names only, never paths or resource ids.
    let series = http_get(prom_port, "/api/v1/query?query=hostkit_drift").unwrap_or_default();
    assert!(
        series.contains("\"name\":\"web\"") && !series.contains("/etc/web"),
        "{series}"
    );
}
