//! The Service reconciler on this machine's real shell and files (the `Local` transport):
//! policy windows driven by an injected clock, rollout waves and stop-at-first-failure,
//! drift. No sleeps: time is the `now` the test passes in.

mod common;

use common::*;

#[tokio::test]
async fn a_deny_window_holds_the_apply_until_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let mut hosts = TestHosts::default();
    hosts.add("h1", false, None);
    let sink = Recorder::default();
    let windows = vec![(
        "nightly-freeze".to_string(),
        serde_json::from_value::<PolicyWindowSpec>(json!({
            "kind": "deny", "schedule": "0 10 * * *", "duration": "1h"
        }))
        .unwrap(),
    )];
    let s = spec(dir.path(), "v1", &["h1"], 1);
    let run = |now, status| Run {
        spec: &s,
        hosts: &["h1"],
        status,
        windows: &windows,
        now,
        generation: 1,
    };

    // 10:30: the window is open: planned, reported, not applied; wake at 11:00.
    let r = reconcile(run(at(10, 30), ServiceStatus::default()), &hosts, &sink).await;
    assert_eq!(
        condition(&r.status, "WindowBlocked").0,
        ConditionStatus::True
    );
    assert_eq!(
        condition(&r.status, "Ready"),
        (ConditionStatus::False, "ChangesPending".into())
    );
    assert_eq!(r.status.hosts[0].pending.create, 1);
    assert_eq!(
        r.wake_at,
        Some(at(11, 0)),
        "requeued at the window's close, not polled"
    );
    assert!(!dir.path().join("version.txt").exists());
    assert!(hosts.applied().is_empty());

    // 11:00: closed: applied, Ready.
    let r = reconcile(run(at(11, 0), r.status), &hosts, &sink).await;
    assert_eq!(
        condition(&r.status, "WindowBlocked").0,
        ConditionStatus::False
    );
    assert_eq!(
        condition(&r.status, "Ready"),
        (ConditionStatus::True, "Converged".into())
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("version.txt")).unwrap(),
        "v1\n"
    );
    let reasons: Vec<&str> = sink
        .notes
        .lock()
        .unwrap()
        .iter()
        .map(|n| n.reason)
        .collect();
    assert_eq!(reasons, ["Planned", "WindowBlocked", "Planned", "Applied"]);
}

#[tokio::test]
async fn drift_is_corrective_and_a_new_generation_is_intentional() {
    let dir = tempfile::tempdir().unwrap();
    let mut hosts = TestHosts::default();
    hosts.add("h1", false, None);
    let sink = Recorder::default();
    let s1 = spec(dir.path(), "v1", &["h1"], 1);
    let run = |spec, status, generation| Run {
        spec,
        hosts: &["h1"],
        status,
        windows: &[],
        now: at(9, 0),
        generation,
    };
    let r = reconcile(run(&s1, ServiceStatus::default(), 1), &hosts, &sink).await;
    assert_eq!(r.hosts[0].applied, Some((service::Intent::Intentional, 1)));
    std::fs::write(dir.path().join("version.txt"), "tampered\n").unwrap();
    let r = reconcile(run(&s1, r.status, 1), &hosts, &sink).await;
    assert_eq!(r.hosts[0].applied, Some((service::Intent::Corrective, 1)));
    assert_eq!(
        condition(&r.status, "Drifted"),
        (ConditionStatus::False, "DriftRepaired".into())
    );
    let s2 = spec(dir.path(), "v2", &["h1"], 1);
    let r = reconcile(run(&s2, r.status, 2), &hosts, &sink).await;
    assert_eq!(r.hosts[0].applied, Some((service::Intent::Intentional, 1)));
    assert_eq!(r.status.hosts[0].last_applied_generation, Some(2));
    // History has the two intentional applies, not the repair.
    let runs = sink.kept();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter()
            .all(|(h, run)| h == "h1" && run.ok && !run.down.steps.is_empty())
    );
    assert_eq!(r.status.hosts[0].revision, Some(2));
    assert_eq!(r.status.current_revision, Some(2));
}

#[tokio::test]
async fn a_host_never_read_leaves_what_it_holds_unknown_and_a_converged_plan_says_nothing_pending()
{
    let dir = tempfile::tempdir().unwrap();
    let mut hosts = TestHosts::default();
    hosts.add("h1", false, None);
    let sink = Recorder::default();
    let s = spec(dir.path(), "v1", &["down"], 1);
    let run = |hosts: &'static [&'static str], status, spec| Run {
        spec,
        hosts,
        status,
        windows: &[],
        now: at(9, 0),
        generation: 1,
    };
    let r = reconcile(run(&["down"], ServiceStatus::default(), &s), &hosts, &sink).await;
    for type_ in ["Drifted", "Reconciling", "Applied", "Ready"] {
        let c = r
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap();
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::Unknown, "HostNotRead"),
            "{type_}: {c:?}"
        );
        assert!(
            c.message.contains("down: ") && c.message.contains("connection refused"),
            "{c:?}"
        );
    }
    let planned = r
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Planned")
        .unwrap();
    assert_eq!(
        (planned.status, planned.reason.as_str()),
        (ConditionStatus::False, "HostNotRead")
    );
    assert_eq!(
        condition(&r.status, "Ready"),
        (ConditionStatus::Unknown, "HostNotRead".into())
    );

    let notes = sink.notes.lock().unwrap().clone();
    assert!(
        notes
            .iter()
            .any(|n| n.reason == "HostNotRead" && n.message.starts_with("down: ")),
        "a host not read is an event: {notes:?}"
    );

    // A secret that cannot be resolved: the host is read but no plan can be made; the
    // conditions say which secret, and so does an event.
    let mut with_secret = spec(dir.path(), "v1", &["h1"], 1);
    with_secret.env = serde_json::from_value(json!({"runtime": {
        "path": dir.path().join("web.env"),
        "secrets": {"TOKEN": {"env": "HOSTKIT_TEST_SECRET_THAT_IS_NOT_SET"}},
    }}))
    .unwrap();
    let r = reconcile(
        run(&["h1"], ServiceStatus::default(), &with_secret),
        &hosts,
        &sink,
    )
    .await;
    let planned = r
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Planned")
        .unwrap();
    assert_eq!(
        (planned.status, planned.reason.as_str()),
        (ConditionStatus::False, "SecretMissing"),
        "{planned:?}"
    );
    assert!(
        planned
            .message
            .contains("env:HOSTKIT_TEST_SECRET_THAT_IS_NOT_SET"),
        "{planned:?}"
    );
    assert_eq!(
        condition(&r.status, "Ready"),
        (ConditionStatus::Unknown, "SecretMissing".into())
    );
    let notes = sink.notes.lock().unwrap().clone();
    assert!(
        notes.iter().any(|n| n.reason == "SecretMissing"
            && n.message.contains("HOSTKIT_TEST_SECRET_THAT_IS_NOT_SET")),
        "{notes:?}"
    );

    // No host selected at all: said by the conditions, and by an event.
    let r = reconcile(run(&[], ServiceStatus::default(), &s), &hosts, &sink).await;
    assert_eq!(
        condition(&r.status, "Ready"),
        (ConditionStatus::False, "NoTargetHosts".into())
    );
    assert!(
        sink.notes
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.reason == "NoTargetHosts"),
        "a Service that selects no Host is an event"
    );

    // A host that is read and converged: the plan's count is not left at what was applied.
    let s = spec(dir.path(), "v1", &["h1"], 1);
    let r = reconcile(run(&["h1"], ServiceStatus::default(), &s), &hosts, &sink).await;
    assert_eq!(condition(&r.status, "Ready").0, ConditionStatus::True);
    let planned = r
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Planned")
        .unwrap();
    assert_eq!(
        planned.message, "0 change(s) pending on 1 host(s)",
        "{planned:?}"
    );
    assert_eq!(condition(&r.status, "Drifted").0, ConditionStatus::False);
}

#[tokio::test]
async fn a_generation_that_was_rolled_back_automatically_is_not_applied_again_when_woken() {
    let dir = tempfile::tempdir().unwrap();
    let mut hosts = TestHosts::default();
    hosts.add("h1", true, None);
    let sink = Recorder::default();
    let mut s = spec(dir.path(), "v1", &["h1"], 1);
    s.rollout.as_mut().unwrap().auto_rollback = true;
    let run = |status, generation| Run {
        spec: &s,
        hosts: &["h1"],
        status,
        windows: &[],
        now: at(9, 0),
        generation,
    };
    let r = reconcile(run(ServiceStatus::default(), 1), &hosts, &sink).await;
    assert_eq!(
        condition(&r.status, "Stalled"),
        (ConditionStatus::True, "AutoRolledBack".into())
    );
    let tried = hosts.applied().len();
    assert!(tried > 0);
    // Woken again (a Host label, a window): the same generation is planned, not applied.
    let r = reconcile(run(r.status, 1), &hosts, &sink).await;
    assert_eq!(hosts.applied().len(), tried, "applied again");
    assert_eq!(
        condition(&r.status, "Stalled"),
        (ConditionStatus::True, "AutoRolledBack".into())
    );
    assert_eq!(condition(&r.status, "Ready").0, ConditionStatus::False);
    // A new generation is tried.
    let r = reconcile(run(r.status, 2), &hosts, &sink).await;
    assert!(hosts.applied().len() > tried);
    assert_eq!(
        condition(&r.status, "Stalled").0,
        ConditionStatus::True,
        "failed again"
    );
}

#[tokio::test]
async fn a_requested_pass_is_marked_handled_only_in_the_status_that_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut hosts = TestHosts::default();
    hosts.add("h1", false, None);
    let sink = Recorder::default();
    let s = spec(dir.path(), "v1", &["h1"], 1);
    let run = |status| Run {
        spec: &s,
        hosts: &["h1"],
        status,
        windows: &[],
        now: at(9, 0),
        generation: 1,
    };
    let r = reconcile(run(ServiceStatus::default()), &hosts, &sink).await;
    assert_eq!(r.status.last_handled_requested_at, None);
    std::fs::write(dir.path().join("version.txt"), "tampered\n").unwrap();
    sink.stamps.lock().unwrap().clear();
    let r = reconcile_asked(run(r.status), Some("t1"), &hosts, &sink).await;
    assert_eq!(r.status.last_handled_requested_at.as_deref(), Some("t1"));
    let stamps = sink.stamps.lock().unwrap().clone();
    assert!(
        stamps.len() >= 2,
        "a plan status, then the final one: {stamps:?}"
    );
    assert_eq!(stamps.last(), Some(&Some("t1".to_string())));
    assert!(
        stamps[..stamps.len() - 1].iter().all(Option::is_none),
        "only the final status says the request was handled: {stamps:?}"
    );
    // The pass it answered is a whole one: the drift was repaired.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("version.txt")).unwrap(),
        "v1\n"
    );
    assert_eq!(condition(&r.status, "Ready").0, ConditionStatus::True);
}

#[tokio::test]
async fn paused_plans_and_reports_drift_without_applying() {
    let dir = tempfile::tempdir().unwrap();
    let mut hosts = TestHosts::default();
    hosts.add("h1", false, None);
    let sink = Recorder::default();
    let s = spec(dir.path(), "v1", &["h1"], 1);
    let paused = ServiceSpec {
        paused: true,
        ..s.clone()
    };
    let run = |spec, status, generation| Run {
        spec,
        hosts: &["h1"],
        status,
        windows: &[],
        now: at(9, 0),
        generation,
    };
    let r = reconcile(run(&s, ServiceStatus::default(), 1), &hosts, &sink).await;
    // Pausing is a new generation asking for the same host state.
    let r = reconcile(run(&paused, r.status, 2), &hosts, &sink).await;
    std::fs::write(dir.path().join("version.txt"), "tampered\n").unwrap();
    let r = reconcile(run(&paused, r.status, 2), &hosts, &sink).await;
    assert_eq!(condition(&r.status, "Drifted").0, ConditionStatus::True);
    assert_eq!(
        condition(&r.status, "Ready"),
        (ConditionStatus::False, "Paused".into())
    );
    assert!(r.hosts[0].drifted);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("version.txt")).unwrap(),
        "tampered\n"
    );
    // Unpaused (generation 3, same resources): the repair is corrective, not intentional.
    let r = reconcile(run(&s, r.status, 3), &hosts, &sink).await;
    assert_eq!(r.hosts[0].applied, Some((service::Intent::Corrective, 1)));
    assert_eq!(
        condition(&r.status, "Drifted"),
        (ConditionStatus::False, "DriftRepaired".into())
    );
}

#[tokio::test]
async fn one_host_at_a_time_stops_at_the_first_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mut hosts = TestHosts::default();
    hosts.add("h1", false, None);
    hosts.add("h2", true, None);
    hosts.add("h3", false, None);
    let sink = Recorder::default();
    let s = spec(dir.path(), "v1", &["h1", "h2", "h3"], 1);
    let r = reconcile(
        Run {
            spec: &s,
            hosts: &["h1", "h2", "h3"],
            status: ServiceStatus::default(),
            windows: &[],
            now: at(9, 0),
            generation: 1,
        },
        &hosts,
        &sink,
    )
    .await;
    assert_eq!(hosts.applied(), ["h1", "h2"], "h3 untouched");
    let failure = r.failure.expect("the rollout failed");
    assert!(!failure.terminal);
    assert!(failure.message.starts_with("h2: "), "{}", failure.message);
    assert_eq!(
        condition(&r.status, "Applied"),
        (ConditionStatus::False, "ApplyFailed".into())
    );
    let h3 = r.status.hosts.iter().find(|h| h.host == "h3").unwrap();
    assert_eq!(h3.last_applied_generation, None);
    assert_eq!(h3.pending.create, 1, "h3 still reports its plan");
}

#[tokio::test]
async fn max_parallel_applies_a_wave_at_once_and_stops_after_a_failed_wave() {
    let dir = tempfile::tempdir().unwrap();
    let mut hosts = TestHosts::default();
    // h1 and h2 form the first wave and must be in flight together to pass the barrier.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    hosts.add("h1", false, Some(barrier.clone()));
    hosts.add("h2", true, Some(barrier));
    hosts.add("h3", false, None);
    hosts.add("h4", false, None);
    let sink = Recorder::default();
    let all = ["h1", "h2", "h3", "h4"];
    let s = spec(dir.path(), "v1", &all, 2);
    let r = reconcile(
        Run {
            spec: &s,
            hosts: &all,
            status: ServiceStatus::default(),
            windows: &[],
            now: at(9, 0),
            generation: 1,
        },
        &hosts,
        &sink,
    )
    .await;
    assert_eq!(
        hosts.applied(),
        ["h1", "h2"],
        "the wave after the failure never started"
    );
    assert!(r.failure.is_some());
    let applied: Vec<(&str, Option<u64>)> = r
        .status
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.last_applied_generation))
        .collect();
    assert_eq!(
        applied,
        [("h1", Some(1)), ("h2", None), ("h3", None), ("h4", None)]
    );
}

fn two_files(dir: &std::path::Path, version: &str, extra: bool) -> ServiceSpec {
    let mut files =
        vec![json!({"path": dir.join("version.txt"), "content": format!("{version}\n")})];
    if extra {
        files.push(json!({"path": dir.join("extra.txt"), "content": "extra\n"}));
    }
    serde_json::from_value(json!({"hosts": ["h1"], "files": files})).unwrap()
}

/// The controller's view of a crash mid-apply: the host ran the script, the answer never
/// came. History had the run before the apply began; the next pass settles it from the
/// host's journal, and a later spec that drops a file removes it from the host.
#[tokio::test]
async fn an_apply_whose_answer_was_lost_is_settled_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut hosts = TestHosts::default();
    hosts.add("h1", false, None);
    let sink = Recorder::default();
    let s1 = two_files(dir.path(), "v1", true);
    let run = |spec, status, generation| Run {
        spec,
        hosts: &["h1"],
        status,
        windows: &[],
        now: at(9, 0),
        generation,
    };
    hosts.lose_answers("h1", true);
    let r = reconcile(run(&s1, ServiceStatus::default(), 1), &hosts, &sink).await;
    assert!(r.failure.is_some());
    assert!(
        dir.path().join("extra.txt").exists(),
        "the host did apply it"
    );
    let kept = sink.kept();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].1.pending, "recorded ahead, outcome unknown");

    hosts.lose_answers("h1", false);
    let r = reconcile(run(&s1, r.status, 1), &hosts, &sink).await;
    assert!(r.failure.is_none(), "{:?}", r.failure);
    let kept = sink.kept();
    assert_eq!(kept.len(), 1, "settled, not a second run");
    let settled = &kept[0].1;
    assert!(!settled.pending && settled.ok);
    assert!(
        settled
            .changes
            .iter()
            .all(|c| c.status == hostkit_engine::outcome::Status::Applied)
    );
    assert_eq!(settled.down.steps.len(), 2, "{:?}", settled.down);
    assert!(
        sink.notes
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.reason == "ApplySettled" && n.message.contains("2 of 2"))
    );
    assert_eq!(
        condition(&r.status, "Ready"),
        (ConditionStatus::True, "Converged".into())
    );

    // Generation 2 drops extra.txt: it leaves the host, and the run can put it back.
    let s2 = two_files(dir.path(), "v2", false);
    let r = reconcile(run(&s2, r.status, 2), &hosts, &sink).await;
    assert!(r.failure.is_none(), "{:?}", r.failure);
    assert!(!dir.path().join("extra.txt").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("version.txt")).unwrap(),
        "v2\n"
    );
    let kept = sink.kept();
    let g2 = &kept.last().unwrap().1;
    let deleted = g2
        .changes
        .iter()
        .find(|c| c.id.ends_with("extra.txt"))
        .expect("the dropped file is a change");
    assert_eq!(deleted.action, hostkit_engine::plan::Action::Delete);
    assert!(g2.down.steps.iter().any(|s| s.id.ends_with("extra.txt")
        && matches!(
            s.action,
            hostkit_engine::down::DownAction::RestoreFile { .. }
        )));
}
