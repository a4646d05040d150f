//! A Service's monitors in its reconcile pass, on this machine's real shell: they run in
//! the one state read (no extra round trip), their thresholds decide `Healthy`, `Ready`
//! waits for it, transitions are events, and results read before an apply are not
//! taken as the new version's.

mod common;

use common::*;

fn monitored(dir: &std::path::Path, monitors: serde_json::Value) -> ServiceSpec {
    serde_json::from_value(json!({
        "hosts": ["h1"],
        "files": [{"path": dir.join("version.txt"), "content": "v1\n"}],
        "monitors": monitors,
    }))
    .unwrap()
}

fn pass<'a>(spec: &'a ServiceSpec, status: ServiceStatus, now: DateTime<Utc>) -> Run<'a> {
    Run {
        spec,
        hosts: &["h1"],
        status,
        windows: &[],
        now,
        generation: 1,
    }
}

fn reasons(sink: &Recorder) -> Vec<&'static str> {
    sink.notes
        .lock()
        .unwrap()
        .iter()
        .map(|n| n.reason)
        .collect()
}

#[tokio::test]
async fn monitors_run_in_the_state_read_and_ready_waits_for_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ready.flag");
    std::fs::write(&flag, "ok").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let spec = monitored(
        dir.path(),
        json!([
            {"name": "flag", "file": {"path": flag}, "failureThreshold": 2, "every": "5s"},
            {"tcp": {"address": format!("127.0.0.1:{port}")}},
            {"name": "optional", "file": {"path": dir.path().join("absent")}, "severity": "warning", "failureThreshold": 1},
        ]),
    );
    let mut hosts = TestHosts::default();
    hosts.add("h1", false, None);
    let sink = Recorder::default();

    // The first pass applies: what its read found predates the change, so it says nothing.
    let r = reconcile(
        pass(&spec, ServiceStatus::default(), at(10, 0)),
        &hosts,
        &sink,
    )
    .await;
    assert_eq!(r.hosts[0].applied.map(|a| a.1), Some(1));
    let m = &r.status.hosts[0].monitors;
    assert_eq!(m.len(), 3);
    assert!(m.iter().all(|m| m.ok.is_none()), "{m:?}");
    assert!(
        m[0].message.contains("changed by this pass's apply"),
        "{m:?}"
    );
    assert_eq!(
        condition(&r.status, "Healthy"),
        (ConditionStatus::Unknown, "MonitorsPending".into())
    );
    assert_eq!(
        condition(&r.status, "Ready"),
        (ConditionStatus::Unknown, "MonitorsPending".into())
    );
    assert_eq!(
        r.wake_at,
        Some(at(10, 0) + chrono::Duration::seconds(5)),
        "again at the shortest every"
    );

    // Converged: one script per pass, monitors and all.
    let before = hosts.execs("h1");
    let r = reconcile(pass(&spec, r.status, at(10, 1)), &hosts, &sink).await;
    assert_eq!(
        hosts.execs("h1") - before,
        1,
        "the monitors added a round trip"
    );
    let m = &r.status.hosts[0].monitors;
    assert_eq!(m[0].ok, Some(true), "{m:?}");
    assert_eq!(m[1].ok, Some(true), "{m:?}");
    assert_eq!(m[1].name, "tcp");
    assert_eq!(
        m[2].ok,
        Some(false),
        "a warning fails at once with failureThreshold 1"
    );
    assert_eq!(
        condition(&r.status, "Healthy"),
        (ConditionStatus::True, "MonitorsPassing".into())
    );
    assert_eq!(
        condition(&r.status, "Ready"),
        (ConditionStatus::True, "Converged".into())
    );
    let healthy = r
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Healthy")
        .unwrap();
    assert!(
        healthy.message.contains("warning: h1: optional:"),
        "{}",
        healthy.message
    );

    // The flag goes: one failure is under the threshold, the second decides.
    std::fs::remove_file(&flag).unwrap();
    let r = reconcile(pass(&spec, r.status, at(10, 2)), &hosts, &sink).await;
    assert_eq!(r.status.hosts[0].monitors[0].ok, Some(true));
    assert!(
        r.status.hosts[0].monitors[0]
            .message
            .ends_with("(1 of 2 failures)")
    );
    assert_eq!(condition(&r.status, "Ready").0, ConditionStatus::True);
    let r = reconcile(pass(&spec, r.status, at(10, 3)), &hosts, &sink).await;
    assert_eq!(r.status.hosts[0].monitors[0].ok, Some(false));
    assert_eq!(
        condition(&r.status, "Healthy"),
        (ConditionStatus::False, "MonitorFailing".into())
    );
    assert_eq!(
        condition(&r.status, "Ready"),
        (ConditionStatus::False, "MonitorFailing".into())
    );
    let ready = r
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        ready.message,
        format!("h1: flag: {} does not exist", flag.display())
    );
    assert_eq!(
        reasons(&sink)
            .iter()
            .filter(|r| **r == "MonitorFailing")
            .count(),
        2,
        "the warning once, the flag once: {:?}",
        reasons(&sink)
    );

    // Back: recovered, an event, Ready again.
    std::fs::write(&flag, "ok").unwrap();
    let r = reconcile(pass(&spec, r.status, at(10, 4)), &hosts, &sink).await;
    assert_eq!(condition(&r.status, "Ready").0, ConditionStatus::True);
    assert!(reasons(&sink).contains(&"MonitorRecovered"));
    drop(listener);
}

#[tokio::test]
async fn a_host_not_read_leaves_its_monitors_unknown_and_no_monitors_is_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let spec = monitored(dir.path(), json!([{"file": {"path": "/"}}]));
    let hosts = TestHosts::default(); // h1 never answers
    let sink = Recorder::default();
    let r = reconcile(
        pass(&spec, ServiceStatus::default(), at(10, 0)),
        &hosts,
        &sink,
    )
    .await;
    let m = &r.status.hosts[0].monitors[0];
    assert_eq!(m.ok, None);
    assert!(
        m.message.starts_with("not run:") && m.message.contains("connection refused"),
        "{m:?}"
    );
    assert_eq!(condition(&r.status, "Healthy").0, ConditionStatus::Unknown);

    let plain = monitored(dir.path(), json!([]));
    let mut hosts = TestHosts::default();
    hosts.add("h1", false, None);
    let r = reconcile(
        pass(&plain, ServiceStatus::default(), at(10, 0)),
        &hosts,
        &sink,
    )
    .await;
    assert_eq!(
        condition(&r.status, "Healthy"),
        (ConditionStatus::True, "NoMonitors".into())
    );
    assert_eq!(
        condition(&r.status, "Ready"),
        (ConditionStatus::True, "Converged".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_monitor_is_asked_by_the_controller_for_every_host() {
    let prom = PromWithExporter::start();
    prom.wait_for("test_errors == 0").await;
    let url = prom.url();
    let dir = tempfile::tempdir().unwrap();
    let spec = monitored(
        dir.path(),
        json!([{"prometheus": {"query": "test_errors < 1"}, "failureThreshold": 1}]),
    );
    let mut hosts = TestHosts::default();
    hosts.add("h1", false, None);
    let sink = Recorder::default();
    fn asked(url: &str) -> Asked<'_> {
        Asked {
            prometheus: Some(url),
            ..Default::default()
        }
    }
    let at_ = |m| pass(&spec, ServiceStatus::default(), at(10, m));
    let r = reconcile_annotated(at_(0), asked(&url), &hosts, &sink).await;
    let before = hosts.execs("h1");
    let r = reconcile_annotated(pass(&spec, r.status, at(10, 1)), asked(&url), &hosts, &sink).await;
    assert_eq!(
        hosts.execs("h1") - before,
        1,
        "asked of Prometheus, not the host"
    );
    let m = &r.status.hosts[0].monitors[0];
    assert_eq!(
        (m.name.as_str(), m.kind.as_str()),
        ("prometheus", "prometheus")
    );
    assert_eq!(m.ok, Some(true), "{m:?}");
    assert_eq!(condition(&r.status, "Healthy").0, ConditionStatus::True);

    prom.set_errors(3).await;
    let r = reconcile_annotated(pass(&spec, r.status, at(10, 2)), asked(&url), &hosts, &sink).await;
    let m = &r.status.hosts[0].monitors[0];
    assert_eq!(m.ok, Some(false));
    assert_eq!(m.message, "test_errors < 1 does not hold");
    assert_eq!(
        condition(&r.status, "Healthy"),
        (ConditionStatus::False, "MonitorFailing".into())
    );

    // Prometheus not answering is not a failure of the service: unknown, saying why.
    let r = reconcile_annotated(
        pass(&spec, r.status, at(10, 3)),
        asked("http://127.0.0.1:1"),
        &hosts,
        &sink,
    )
    .await;
    let m = &r.status.hosts[0].monitors[0];
    assert_eq!(m.ok, None);
    assert!(
        m.message
            .starts_with("not run: Prometheus at http://127.0.0.1:1"),
        "{m:?}"
    );
    assert_eq!(condition(&r.status, "Healthy").0, ConditionStatus::Unknown);
}
