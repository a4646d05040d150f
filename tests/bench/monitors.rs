//! What monitors cost a reconcile: the no-op read-and-plan of the demo Service on one real
//! test host over an open SSH connection, with 0 and with 5 monitors (systemd, http, tcp,
//! file, journal) run in the same round trip (p50/p95 of 30 each), and beside it, in the
//! same run, the same five checks the way an agentless tool runs them: one OpenSSH exec
//! per check.
//!
//! Run: `cargo bench -p hostkit-e2e --bench monitors` (root: it boots a container).

use std::process::Command;
use std::time::{Duration, Instant};

use hostkit_api::kinds::Monitor;
use hostkit_e2e::engine::{converge, demo, demo_secrets, options, web_daemon};
use hostkit_e2e::testhost::TestHost;
use hostkit_engine::plan;
use hostkit_engine::transport::ssh::Ssh;
use serde_json::json;

const ROUNDS: usize = 30;

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let host = TestHost::boot();
    runtime.block_on(async {
        let ssh = Ssh::connect(&options(&host)).await.expect("connect");
        let (mut d, _) = demo("v1", 8080);
        let daemon = web_daemon(&mut d);
        daemon.listen =
            vec![serde_json::from_value(json!({"name": "http", "port": 8080})).unwrap()];
        let secrets = demo_secrets("t");
        let resources = d.resources_for("target").unwrap();
        converge(&ssh, &resources, &[], &secrets, "r1").await;

        let mut spec = d.services["web"].spec.clone();
        spec.monitors = serde_json::from_value::<Vec<Monitor>>(json!([
            {"systemd": {"unit": "demo-web.service", "maxRestarts": 0}},
            {"http": {"path": "/index.html", "body": "v1"}},
            {"tcp": {}},
            {"file": {"path": "/etc/demo/web/version.txt", "mode": "0644"}},
            {"journal": {"pattern": "Traceback"}},
        ]))
        .unwrap();
        let project = d.projects.get("demo").map(|p| &p.spec);
        let probes = hostkit_engine::expand::monitors("web", &spec, project).unwrap();

        let timed = |probes: Vec<hostkit_engine::monitor::Probe>| {
            let (ssh, resources, secrets) = (&ssh, &resources, &secrets);
            async move {
                let mut v = Vec::new();
                for _ in 0..ROUNDS {
                    let t = Instant::now();
                    let p = plan::prepare_probed(ssh, resources, &[], &probes, secrets)
                        .await
                        .unwrap();
                    v.push(t.elapsed());
                    assert!(p.plan.is_empty(), "converged");
                    assert!(p.monitors.iter().all(|m| m.ok), "{:?}", p.monitors);
                }
                v
            }
        };
        let mut none = timed(Vec::new()).await;
        let mut five = timed(probes).await;

        // The peer: each check its own `ssh host <check>`, as an agentless runner does.
        let checks = [
            "systemctl is-active demo-web.service",
            "curl -sf http://127.0.0.1:8080/index.html | grep -q v1",
            "bash -c ': </dev/tcp/127.0.0.1/8080'",
            "test \"$(stat -c %a /etc/demo/web/version.txt)\" = 644",
            "! journalctl -u demo-web.service -b -q -o cat | grep -q Traceback",
        ];
        let mut peer = Vec::new();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            for c in checks {
                let out = Command::new("ssh")
                    .args([
                        "-q",
                        "-o",
                        "BatchMode=yes",
                        "-o",
                        "StrictHostKeyChecking=no",
                    ])
                    .args(["-o", "UserKnownHostsFile=/dev/null", "-i"])
                    .arg(host.key())
                    .arg(format!("root@{}", host.address))
                    .arg(c)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{c}");
            }
            peer.push(t.elapsed());
        }

        let (n50, n95) = (percentile(&mut none, 0.5), percentile(&mut none, 0.95));
        let (f50, f95) = (percentile(&mut five, 0.5), percentile(&mut five, 0.95));
        let (p50, p95) = (percentile(&mut peer, 0.5), percentile(&mut peer, 0.95));
        println!(
            "no-op reconcile read of the demo Service ({} resources), {ROUNDS} rounds each:",
            resources.len()
        );
        println!("| figure | p50 | p95 |");
        println!("|---|---|---|");
        println!("| 0 monitors | {} | {} |", ms(n50), ms(n95));
        println!(
            "| 5 monitors, same round trip | {} | {} |",
            ms(f50),
            ms(f95)
        );
        println!(
            "| cost of the 5 monitors | {} | – |",
            ms(f50.saturating_sub(n50))
        );
        println!(
            "| peer: the 5 checks as 5 OpenSSH execs | {} | {} |",
            ms(p50),
            ms(p95)
        );
    });
}
