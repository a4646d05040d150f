//! A Host's OpenTelemetry Collector config through the controller on a booted host: the
//! Host pass writes it from the Services on the host, and rewrites it when a Service's
//! telemetry intent changes (the Service wakes its Hosts).

use std::time::Duration;

use hostkit_e2e::server::Hostkit;
use hostkit_e2e::testhost::TestHost;
use hostkit_e2e::wait_until;

fn manifests(h: &TestHost, observability: &str) -> String {
    format!(
        r#"apiVersion: hostkit.dev/v1alpha1
kind: Host
metadata: {{name: target}}
spec:
  address: {address}
  interval: 1h
  otelCollector: {{endpoint: "127.0.0.1:4317", insecure: true}}
  ssh: {{user: root, identityFile: {key}, hostKey: {{policy: pinned, key: "{hk}"}}}}
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {{name: web}}
spec:
  hosts: [target]
  interval: 1h
  daemon:
    exec: [/bin/sleep, infinity]
    listen: [{{name: metrics, port: 9100}}]
  observability: {observability}
"#,
        address = h.address,
        key = h.key().display(),
        hk = h.host_key()
    )
}

#[test]
fn the_host_pass_writes_the_collector_config_and_follows_a_services_intent() {
    let s = Hostkit::controller();
    let host = TestHost::boot();
    s.apply_yaml(&manifests(&host, "{logs: true}"));
    let config = || host.try_sh("cat /etc/otelcol-contrib/config.yaml").1;
    assert!(
        wait_until(Duration::from_secs(60), || config()
            .contains("\"journald/web\"")),
        "{}\n{}",
        config(),
        s.log()
    );
    let text = config();
    let v: serde_json::Value =
        serde_json::from_str(&text).expect("the config is JSON (and so YAML)");
    hostkit_engine::render::otel::check_structure(&v).unwrap();
    assert_eq!(v["receivers"]["journald/web"]["units"][0], "web.service");
    assert!(v["receivers"].get("prometheus/web").is_none());
    assert_eq!(
        host.sh("stat -c '%a %U' /etc/otelcol-contrib/config.yaml")
            .trim(),
        "644 root"
    );

    // The Service now serves metrics: its Host is woken and the file rewritten (the Host's
    // own interval is an hour, so nothing else would).
    s.apply_yaml(&manifests(
        &host,
        "{logs: true, metrics: {listener: metrics}}",
    ));
    assert!(
        wait_until(Duration::from_secs(60), || config()
            .contains("\"prometheus/web\"")),
        "{}",
        config()
    );
    assert!(config().contains("\"127.0.0.1:9100\""));
}
