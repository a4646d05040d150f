//! How units start, fail, settle and log on a real host: the engine against a booted
//! systemd test host over SSH.

use std::time::Duration;

use hostkit_e2e::engine::{converge, demo, demo_secrets, options, prepare, web_daemon};
use hostkit_e2e::testhost::TestHost;
use hostkit_engine::apply::{self, ApplyOptions};
use hostkit_engine::transport::ssh::Ssh;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_unit_stops_the_apply_with_its_journal() {
    let host = TestHost::boot();
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    let (mut d, _) = demo("v1", 8080);
    let spec = &mut d.services.get_mut("web").unwrap().spec;
    spec.daemon.as_mut().unwrap().exec = vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo cannot-start >&2; exit 3".into(),
    ];
    spec.commands.push(hostkit_api::kinds::Command {
        name: "announce".into(),
        exec: vec![
            "/bin/sh".into(),
            "-c".into(),
            "touch /var/tmp/announced".into(),
        ],
        phase: Some(hostkit_api::kinds::Phase::AfterStart),
        down: Some(hostkit_api::kinds::CommandDown::Noop),
        ..Default::default()
    });
    let resources = d.resources_for("target").unwrap();
    let prepared = prepare(&ssh, &resources, &[], &demo_secrets("t")).await;
    let applied = apply::apply(&ssh, &prepared, &ApplyOptions::new("r1"))
        .await
        .unwrap();
    assert!(!applied.ok);
    let error = applied.error.clone().unwrap();
    assert!(error.starts_with("unit:demo-web.service"), "{error}");
    assert!(
        error.contains("cannot-start"),
        "journal tail missing: {error}"
    );
    let unit_at = applied
        .results
        .iter()
        .position(|r| r.id == "unit:demo-web.service")
        .unwrap();
    assert!(
        applied.results[..unit_at]
            .iter()
            .all(|r| r.status == hostkit_engine::outcome::Status::Applied)
    );
    let later = &applied.results[unit_at + 1..];
    assert!(
        later.iter().any(|r| r.id == "command:web/announce"),
        "{:?}",
        applied.results
    );
    assert!(
        later
            .iter()
            .all(|r| r.status == hostkit_engine::outcome::Status::NotRun)
    );
    // The untouched later change really did not happen.
    assert_ne!(host.try_sh("test -e /var/tmp/announced").0, 0);
}

/// A unit that is crash-looping (NRestarts grows, and an explicit restart does not reset it) and is then given a
/// working version, as a rollback or a fix does: the apply's own restart starts it, and the
/// settle check counts only restarts after that start, not the ones before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_unit_given_a_working_version_settles() {
    let host = TestHost::boot();
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    let with = |exec: Vec<String>, version: &str| {
        let (mut d, _) = demo(version, 8080);
        let daemon = web_daemon(&mut d);
        daemon.exec = exec;
        daemon.restart = serde_json::from_value(serde_json::json!("always")).unwrap();
        daemon.restart_sec = serde_json::from_value(serde_json::json!("400ms")).unwrap();
        d.resources_for("target").unwrap()
    };
    let broken = with(vec!["/bin/sh".into(), "-c".into(), "exit 3".into()], "v1");
    let prepared = prepare(&ssh, &broken, &[], &demo_secrets("t")).await;
    let applied = apply::apply(&ssh, &prepared, &ApplyOptions::new("r1"))
        .await
        .unwrap();
    assert!(!applied.ok, "a unit that exits fails the apply");
    // Let it loop a little, and apply while it is still looping (as an automatic rollback
    // does right after the failed apply); a unit that already gave up counts from 0 again.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let restarts: u32 = host
        .sh("systemctl show -p NRestarts --value demo-web.service")
        .trim()
        .parse()
        .unwrap();
    assert!(restarts >= 1, "it crash-looped: {restarts}");

    let (d, _) = demo("v2", 8080);
    let good = with(
        d.services["web"].spec.daemon.as_ref().unwrap().exec.clone(),
        "v2",
    );
    let prepared = prepare(&ssh, &good, &broken, &demo_secrets("t")).await;
    let applied = apply::apply(&ssh, &prepared, &ApplyOptions::new("r2"))
        .await
        .unwrap();
    assert!(applied.ok, "{:?}", applied.error);
    assert_eq!(
        host.sh("systemctl is-active demo-web.service").trim(),
        "active"
    );
}

/// `daemon.logs` does what it says on a real host: stdout appended to the file named,
/// stderr in the journal under the identifier given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_logs_go_where_the_spec_says() {
    let host = TestHost::boot();
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    let (mut d, _) = demo("v1", 8080);
    let daemon = web_daemon(&mut d);
    daemon.exec = vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo to-stdout; echo to-stderr >&2; exec sleep infinity".into(),
    ];
    daemon.isolate = None;
    daemon.logs = Some(
        serde_json::from_value(serde_json::json!({
            "identifier": "hk-ident",
            "stdout": "append:/var/log/hk-out.log",
            "stderr": "journal",
        }))
        .unwrap(),
    );
    let resources = d.resources_for("target").unwrap();
    converge(&ssh, &resources, &[], &demo_secrets("t"), "r1").await;
    assert!(
        hostkit_e2e::wait_until(Duration::from_secs(10), || host
            .try_sh("grep -qx to-stdout /var/log/hk-out.log")
            .0
            == 0),
        "stdout not in the file: {}",
        host.try_sh("cat /var/log/hk-out.log").1
    );
    assert!(
        hostkit_e2e::wait_until(Duration::from_secs(10), || host
            .try_sh("journalctl -t hk-ident --no-pager -o cat | grep -qx to-stderr")
            .0
            == 0),
        "stderr not in the journal as hk-ident: {}",
        host.try_sh("journalctl -u demo-web.service --no-pager | tail -5")
            .1
    );
    assert_ne!(
        host.try_sh("grep -q to-stderr /var/log/hk-out.log").0,
        0,
        "stderr went to the journal, not the file"
    );
}

/// `network: {allow: [...], deny: any}` reaches the unit as `IPAddressAllow=`/`IPAddressDeny=`
/// and systemd enforces it: a daemon listening on every address answers on loopback, and
/// from outside only once the harness's own address is in `allow`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_policy_of_cidrs_is_enforced_by_systemd() {
    let host = TestHost::boot();
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    let with = |allow: serde_json::Value| {
        let (mut d, _) = demo("v1", 8080);
        let daemon = web_daemon(&mut d);
        daemon.exec[4] = "0.0.0.0".into();
        daemon.isolate.as_mut().unwrap().network = Some(
            serde_json::from_value(serde_json::json!({"allow": allow, "deny": "any"})).unwrap(),
        );
        d.resources_for("target").unwrap()
    };
    let from_outside = || {
        std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}"])
            .arg(format!("http://{}:8080/", host.address))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let r1 = with(serde_json::json!(["loopback", "10.44.0.0/24"]));
    converge(&ssh, &r1, &[], &demo_secrets("t"), "r1").await;
    let shown = host.sh("systemctl show -p IPAddressAllow -p IPAddressDeny demo-web.service");
    // systemd prints each set in no fixed order.
    let set = |key: &str| -> std::collections::BTreeSet<String> {
        shown
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_default()
            .split(' ')
            .map(String::from)
            .collect()
    };
    let want = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        set("IPAddressAllow="),
        want(&["10.44.0.0/24", "127.0.0.0/8", "::1/128"]),
        "{shown}"
    );
    assert_eq!(
        set("IPAddressDeny="),
        want(&["0.0.0.0/0", "::/0"]),
        "{shown}"
    );
    assert_eq!(
        host.sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/"),
        "200"
    );
    assert_ne!(
        from_outside(),
        "200",
        "the harness's address is not allowed"
    );

    let r2 = with(serde_json::json!([
        "loopback",
        format!("{}/32", host.gateway)
    ]));
    converge(&ssh, &r2, &r1, &demo_secrets("t"), "r2").await;
    assert!(
        hostkit_e2e::wait_until(Duration::from_secs(10), || from_outside() == "200"),
        "{}",
        host.sh("systemctl show -p IPAddressAllow demo-web.service")
    );
}

/// Units start together and are judged after one shared settle window: a daemon that
/// crashes 100 ms after it started is caught by that window and named (with its journal),
/// and the timer started beside it is applied, not blamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_that_crashes_after_starting_is_caught_by_the_shared_settle_window() {
    use hostkit_engine::outcome::Status;
    let host = TestHost::boot();
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    let (mut d, _) = demo("v1", 8080);
    web_daemon(&mut d).exec = vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo starting; sleep 0.1; echo crashed-late >&2; exit 1".into(),
    ];
    let resources = d.resources_for("target").unwrap();
    let prepared = prepare(&ssh, &resources, &[], &demo_secrets("t")).await;
    let applied = apply::apply(&ssh, &prepared, &ApplyOptions::new("r1"))
        .await
        .unwrap();
    assert!(!applied.ok);
    let error = applied.error.clone().unwrap();
    assert!(
        error.starts_with(
            "unit:demo-web.service: exit status 1: demo-web.service did not stay active"
        ),
        "{error}"
    );
    assert!(
        error.contains("crashed-late"),
        "the journal is in the message: {error}"
    );
    let status = |id: &str| {
        applied
            .results
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.status)
            .unwrap_or_else(|| panic!("no result for {id}: {:?}", applied.results))
    };
    assert_eq!(status("unit:demo-web.service"), Status::Failed);
    assert_eq!(status("unit:demo-web-tick.timer"), Status::Applied);
    assert_eq!(
        host.sh("systemctl is-active demo-web-tick.timer"),
        "active\n"
    );
    // The down plan undoes both: each was (re)started.
    let ids: Vec<&str> = applied.down.steps.iter().map(|s| s.id.as_str()).collect();
    assert!(
        ids.contains(&"unit:demo-web.service") && ids.contains(&"unit:demo-web-tick.timer"),
        "{ids:?}"
    );
    // Fixed, the same units converge, and the restart counts monitors read are written.
    web_daemon(&mut d).exec = vec!["/bin/sleep".into(), "infinity".into()];
    let resources = d.resources_for("target").unwrap();
    converge(
        &ssh,
        &resources,
        &applied.resources,
        &demo_secrets("t"),
        "r2",
    )
    .await;
    assert_eq!(
        host.sh("cat /var/lib/hostkit/restarts/demo-web.service /var/lib/hostkit/restarts/demo-web-tick.timer"),
        "0\n0\n"
    );
}
