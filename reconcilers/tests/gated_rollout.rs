//! Health-gated rollouts on this machine's real shell: a canary first, the next wave only
//! once the changed hosts' monitors pass (for `healthyFor`), and an unhealthy wave either
//! taken back (`onUnhealthy: rollback`) or held (`pause`) until `hkctl rollout resume`.
//! Each host has its own folder (`/hk-host/`), so what one host runs is not another's.

mod common;

use common::*;

/// Version `v` of a Service on h1..h3 whose monitor passes where `/hk-host/healthy` exists.
fn gated(version: &str, rollout: serde_json::Value) -> ServiceSpec {
    serde_json::from_value(json!({
        "hosts": ["h1", "h2", "h3"],
        "rollout": rollout,
        "files": [{"path": "/hk-host/version.txt", "content": format!("{version}\n")}],
        "monitors": [{"name": "healthy", "file": {"path": "/hk-host/healthy"}, "failureThreshold": 1}],
    }))
    .unwrap()
}

const HOSTS: &[&str] = &["h1", "h2", "h3"];

fn three_hosts() -> TestHosts {
    let mut hosts = TestHosts::default();
    for h in HOSTS {
        hosts.add(h, false, None);
        std::fs::write(hosts.root(h).join("healthy"), "").unwrap();
    }
    hosts
}

/// The scripts with changes (applies, down plans) host `h` was sent.
fn changes_sent(hosts: &TestHosts, h: &str) -> usize {
    hosts.applied().iter().filter(|a| *a == h).count()
}

fn version(hosts: &TestHosts, h: &str) -> String {
    std::fs::read_to_string(hosts.root(h).join("version.txt")).unwrap_or_default()
}

fn pass<'a>(
    spec: &'a ServiceSpec,
    status: ServiceStatus,
    generation: i64,
    now: DateTime<Utc>,
) -> Run<'a> {
    Run {
        spec,
        hosts: HOSTS,
        status,
        windows: &[],
        now,
        generation,
    }
}

fn phase(r: &Report) -> (String, u32) {
    let ro = r.status.rollout.as_ref().expect("status.rollout");
    (ro.phase.clone(), ro.wave)
}

/// Rolls generation `generation` out to completion, one pass a minute from `start`.
async fn roll_out(
    spec: &ServiceSpec,
    mut status: ServiceStatus,
    generation: i64,
    start: DateTime<Utc>,
    hosts: &TestHosts,
    sink: &Recorder,
) -> ServiceStatus {
    for i in 0..10 {
        let r = reconcile(
            pass(
                spec,
                status,
                generation,
                start + chrono::Duration::minutes(i),
            ),
            hosts,
            sink,
        )
        .await;
        status = r.status;
        if status
            .rollout
            .as_ref()
            .is_some_and(|r| r.phase == "Complete")
        {
            return status;
        }
    }
    panic!(
        "generation {generation} did not complete: {:?}",
        status.rollout
    );
}

#[tokio::test]
async fn a_canary_goes_first_and_each_wave_waits_for_the_last_to_stay_healthy() {
    let hosts = three_hosts();
    let sink = Recorder::default();
    let spec = gated(
        "v1",
        json!({"canary": 1, "maxParallel": 2, "healthyFor": "30s"}),
    );

    let r = reconcile(
        pass(&spec, ServiceStatus::default(), 1, at(10, 0)),
        &hosts,
        &sink,
    )
    .await;
    assert_eq!(hosts.applied(), ["h1"], "the canary alone: {:#?}", r.status);
    assert_eq!(phase(&r), ("Progressing".into(), 1));
    assert_eq!(r.status.rollout.as_ref().unwrap().waves, 2);
    assert_eq!(
        condition(&r.status, "Ready"),
        (ConditionStatus::False, "RolloutProgressing".into())
    );
    assert_eq!(version(&hosts, "h2"), "");

    // Its monitor passes now: healthy since 10:01, so the next wave waits until 10:01:30.
    let r = reconcile(pass(&spec, r.status, 1, at(10, 1)), &hosts, &sink).await;
    assert_eq!(hosts.applied(), ["h1"]);
    assert!(
        r.wake_at
            .is_some_and(|t| t <= at(10, 1) + chrono::Duration::seconds(30))
    );
    assert!(
        r.status
            .rollout
            .as_ref()
            .unwrap()
            .message
            .contains("next wave at 10:01:30")
    );

    let r = reconcile(pass(&spec, r.status, 1, at(10, 2)), &hosts, &sink).await;
    assert_eq!(
        hosts.applied(),
        ["h1", "h2", "h3"],
        "the second wave is the other two at once"
    );
    assert_eq!(phase(&r), ("Progressing".into(), 2));

    let status = roll_out(&spec, r.status, 1, at(10, 3), &hosts, &sink).await;
    assert_eq!(
        condition(&status, "Ready"),
        (ConditionStatus::True, "Converged".into())
    );
    assert_eq!(status.rollout.unwrap().hosts_done, ["h1", "h2", "h3"]);
}

#[tokio::test]
async fn a_monitor_failing_after_the_rollout_completed_takes_nothing_back() {
    let hosts = three_hosts();
    let sink = Recorder::default();
    let v1 = gated("v1", json!({"canary": 1, "onUnhealthy": "rollback"}));
    let status = roll_out(&v1, ServiceStatus::default(), 1, at(10, 0), &hosts, &sink).await;
    let sent: Vec<usize> = HOSTS.iter().map(|h| changes_sent(&hosts, h)).collect();
    std::fs::remove_file(hosts.root("h2").join("healthy")).unwrap();
    let r = reconcile(pass(&v1, status, 1, at(10, 30)), &hosts, &sink).await;
    assert_eq!(phase(&r).0, "Complete");
    assert_eq!(condition(&r.status, "Healthy").1, "MonitorFailing");
    assert!(r.hosts.iter().all(|h| h.gate_rollback.is_none()));
    let after: Vec<usize> = HOSTS.iter().map(|h| changes_sent(&hosts, h)).collect();
    assert_eq!(after, sent, "no host was changed");
    assert_eq!(version(&hosts, "h2"), "v1\n");
}

#[tokio::test]
async fn an_unhealthy_canary_is_rolled_back_and_the_other_hosts_never_change() {
    let hosts = three_hosts();
    let sink = Recorder::default();
    let rollout = json!({"canary": 1, "onUnhealthy": "rollback"});
    let v1 = gated("v1", rollout.clone());
    let status = roll_out(&v1, ServiceStatus::default(), 1, at(10, 0), &hosts, &sink).await;
    let before: Vec<String> = HOSTS.iter().map(|h| version(&hosts, h)).collect();
    assert_eq!(before, ["v1\n", "v1\n", "v1\n"]);
    let sent = |h| changes_sent(&hosts, h);
    let (h1, h2, h3) = (sent("h1"), sent("h2"), sent("h3"));

    // v2 on the canary, whose monitor then fails.
    let v2 = gated("v2", rollout);
    let r = reconcile(pass(&v2, status, 2, at(11, 0)), &hosts, &sink).await;
    assert_eq!(sent("h1"), h1 + 1);
    assert_eq!(version(&hosts, "h1"), "v2\n");
    std::fs::remove_file(hosts.root("h1").join("healthy")).unwrap();
    let r = reconcile(pass(&v2, r.status, 2, at(11, 1)), &hosts, &sink).await;

    assert_eq!(
        version(&hosts, "h1"),
        "v1\n",
        "the canary is back, byte for byte"
    );
    assert_eq!(version(&hosts, "h2"), "v1\n");
    assert_eq!(version(&hosts, "h3"), "v1\n");
    assert_eq!(
        (sent("h2"), sent("h3")),
        (h2, h3),
        "h2 and h3 never changed"
    );
    assert_eq!(sent("h1"), h1 + 2, "h1: the apply, then its down plan");
    assert_eq!(phase(&r).0, "RolledBack");
    assert_eq!(
        condition(&r.status, "Stalled"),
        (ConditionStatus::True, "RolledBack".into())
    );
    assert_eq!(
        condition(&r.status, "Ready"),
        (ConditionStatus::False, "RolledBack".into())
    );
    let healthy = r
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Healthy")
        .unwrap();
    assert_eq!(healthy.reason, "MonitorFailing");
    assert!(
        healthy.message.starts_with("h1: healthy:")
            && healthy
                .message
                .ends_with("(seen before the rollback; runs again at the next pass)"),
        "Healthy=False names the monitor and when it was seen: {}",
        healthy.message
    );
    let (undone, why) = r.hosts[0].gate_rollback.clone().expect("h1 taken back");
    assert!(undone.ok);
    assert!(
        why.contains("h1: healthy:") && why.contains("does not exist"),
        "{why}"
    );
    assert!(
        r.failure.as_ref().is_some_and(|f| f.terminal),
        "not retried as is"
    );

    // Woken again (a monitor, a Host label): the rolled-back generation stays off.
    std::fs::write(hosts.root("h1").join("healthy"), "").unwrap();
    let r = reconcile(pass(&v2, r.status, 2, at(11, 5)), &hosts, &sink).await;
    assert_eq!(version(&hosts, "h1"), "v1\n");
    assert_eq!(sent("h1"), h1 + 2);
    assert_eq!(phase(&r).0, "RolledBack");
}

#[tokio::test]
async fn an_unhealthy_wave_pauses_until_resumed_after_a_fix() {
    let hosts = three_hosts();
    let sink = Recorder::default();
    let rollout = json!({"canary": 1, "onUnhealthy": "pause"});
    let v1 = gated("v1", rollout.clone());
    let status = roll_out(&v1, ServiceStatus::default(), 1, at(10, 0), &hosts, &sink).await;
    let applies = hosts.applied().len();
    let v2 = gated("v2", rollout);
    let r = reconcile(pass(&v2, status, 2, at(11, 0)), &hosts, &sink).await;
    std::fs::remove_file(hosts.root("h1").join("healthy")).unwrap();
    let r = reconcile(pass(&v2, r.status, 2, at(11, 1)), &hosts, &sink).await;
    assert_eq!(phase(&r).0, "Paused");
    assert!(
        r.status
            .rollout
            .as_ref()
            .unwrap()
            .message
            .contains("hkctl rollout resume")
    );
    assert_eq!(condition(&r.status, "Ready").1, "Paused");
    assert_eq!(version(&hosts, "h1"), "v2\n", "a pause changes nothing");

    // Fixed, but not resumed: still held.
    std::fs::write(hosts.root("h1").join("healthy"), "").unwrap();
    let r = reconcile(pass(&v2, r.status, 2, at(11, 2)), &hosts, &sink).await;
    assert_eq!(phase(&r).0, "Paused");
    assert_eq!(hosts.applied().len(), applies + 1);

    // Resumed: the gate sees the canary healthy and the next wave goes.
    let asked = Asked {
        resume: Some("2026-11-23T11:03:00Z"),
        ..Default::default()
    };
    let r = reconcile_annotated(pass(&v2, r.status, 2, at(11, 3)), asked, &hosts, &sink).await;
    assert_eq!(phase(&r), ("Progressing".into(), 2));
    assert_eq!(hosts.applied().len(), applies + 2);
    assert_eq!(version(&hosts, "h2"), "v2\n");
    assert_eq!(
        r.status.rollout.as_ref().unwrap().resumed.as_deref(),
        Some("2026-11-23T11:03:00Z")
    );
}

#[tokio::test]
async fn an_aborted_rollout_takes_back_what_it_changed() {
    let hosts = three_hosts();
    let sink = Recorder::default();
    let rollout = json!({"canary": 1});
    let v1 = gated("v1", rollout.clone());
    let status = roll_out(&v1, ServiceStatus::default(), 1, at(10, 0), &hosts, &sink).await;
    let v2 = gated("v2", rollout);
    let r = reconcile(pass(&v2, status, 2, at(11, 0)), &hosts, &sink).await;
    assert_eq!(version(&hosts, "h1"), "v2\n");
    let asked = Asked {
        abort: Some("2026-11-23T11:01:00Z"),
        ..Default::default()
    };
    let r = reconcile_annotated(pass(&v2, r.status, 2, at(11, 1)), asked, &hosts, &sink).await;
    assert_eq!(version(&hosts, "h1"), "v1\n");
    assert_eq!(phase(&r).0, "RolledBack");
    let (_, why) = r.hosts[0].gate_rollback.clone().unwrap();
    assert!(why.starts_with("aborted"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_analysis_gates_the_next_wave() {
    let prom = PromWithExporter::start();
    prom.wait_for("test_errors == 0").await;
    let url = prom.url();
    let hosts = three_hosts();
    let sink = Recorder::default();
    let rollout = json!({"canary": 1, "onUnhealthy": "pause", "analysis": [
        {"prometheus": {"query": "test_errors < 1", "for": "1m"}}
    ]});
    let asked = || Asked {
        prometheus: Some(&url),
        ..Default::default()
    };
    let v1 = gated("v1", rollout.clone());
    // v1 on the canary, then the analysis must hold for a minute before the rest.
    let r = reconcile_annotated(
        pass(&v1, ServiceStatus::default(), 1, at(10, 0)),
        asked(),
        &hosts,
        &sink,
    )
    .await;
    assert_eq!(changes_sent(&hosts, "h1"), 1);
    let r = reconcile_annotated(pass(&v1, r.status, 1, at(10, 1)), asked(), &hosts, &sink).await;
    let ro = r.status.rollout.clone().unwrap();
    assert_eq!(ro.analysis[0].ok, Some(true), "{ro:?}");
    assert!(ro.message.contains("next wave at 10:02:00"), "{ro:?}");
    assert_eq!(
        changes_sent(&hosts, "h2"),
        0,
        "held for the analysis's minute"
    );
    let r = reconcile_annotated(pass(&v1, r.status, 1, at(10, 2)), asked(), &hosts, &sink).await;
    assert_eq!(
        changes_sent(&hosts, "h2"),
        1,
        "the minute passed: the next wave went"
    );
    let mut status = r.status;
    for m in 3..10 {
        status = reconcile_annotated(pass(&v1, status, 1, at(10, m)), asked(), &hosts, &sink)
            .await
            .status;
    }
    assert_eq!(status.rollout.as_ref().unwrap().phase, "Complete");

    // v2: the canary changes, then the errors rise: the analysis no longer holds.
    let v2 = gated("v2", rollout);
    let r = reconcile_annotated(pass(&v2, status, 2, at(11, 0)), asked(), &hosts, &sink).await;
    assert_eq!(version(&hosts, "h1"), "v2\n");
    prom.set_errors(5).await;
    let r = reconcile_annotated(pass(&v2, r.status, 2, at(11, 1)), asked(), &hosts, &sink).await;
    let ro = r.status.rollout.clone().unwrap();
    assert_eq!(ro.phase, "Paused", "{ro:?}");
    assert!(
        ro.message
            .contains("analysis \"test_errors < 1\" does not hold"),
        "{ro:?}"
    );
    assert_eq!(version(&hosts, "h2"), "v1\n");

    // A Prometheus that does not answer is not a pass: the gate waits, saying why.
    prom.set_errors(0).await;
    let gone = Asked {
        prometheus: Some("http://127.0.0.1:1"),
        resume: Some("r1"),
        ..Default::default()
    };
    let r = reconcile_annotated(pass(&v2, r.status, 2, at(11, 2)), gone, &hosts, &sink).await;
    let ro = r.status.rollout.clone().unwrap();
    assert_eq!(ro.phase, "Progressing");
    assert_eq!(ro.analysis[0].ok, None);
    assert!(
        ro.message.contains("Prometheus at http://127.0.0.1:1"),
        "{ro:?}"
    );
    assert_eq!(version(&hosts, "h2"), "v1\n");
}
