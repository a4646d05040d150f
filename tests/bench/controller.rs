//! Controller speed on real parts: `hostkit serve` (embedded store) managing booted test
//! hosts over SSH.
//!
//! - apply-to-Ready latency: `hkctl apply` of a one-file change until the Service reports
//!   `Ready=True` for the new generation (p50/p95 of 20), beside a raw `ssh host` writing
//!   the same file (the floor any agentless tool pays);
//! - steady state with 10 hosts and 50 services (10 s resync): reconciles/s, CPU % and RSS
//!   of `hostkit serve`, RSS per managed host.
//!
//! Run: `cargo bench -p hostkit-e2e --bench controller` (root: it boots containers).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hostkit_e2e::server::{Hostkit, ServeOptions};
use hostkit_e2e::testhost::TestHost;
use hostkit_e2e::{http_get_with, wait_until};

fn host_yaml(i: usize, h: &TestHost) -> String {
    format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {{name: h{i}}}\nspec:\n  address: {}\n  interval: 10s\n  ssh: {{user: root, identityFile: {}, hostKey: {{policy: pinned, key: \"{}\"}}}}\n---\n",
        h.address,
        h.key().display(),
        h.host_key()
    )
}

fn service_yaml(name: &str, host: usize, version: &str) -> String {
    let mut s = format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  hosts: [h{host}]\n  interval: 10s\n  files:\n"
    );
    for f in 0..5 {
        writeln!(
            s,
            "    - {{path: /srv/{name}/f{f}.txt, content: \"{name} {f} {version}\\n\"}}"
        )
        .unwrap();
    }
    s.push_str("---\n");
    s
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn reconciles(s: &Hostkit) -> f64 {
    s.metrics()
        .lines()
        .filter(|l| l.starts_with("hostkit_reconcile_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let s = Hostkit::start(ServeOptions {
        controller: true,
        extra_args: vec!["--settle".into(), "0s".into()],
        ..Default::default()
    });
    let pid = s.pid().expect("pid");
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = rss_kib(pid);
    let hosts: Vec<TestHost> = (0..10).map(|_| TestHost::boot()).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut all = String::new();
    for (i, h) in hosts.iter().enumerate() {
        all.push_str(&host_yaml(i, h));
    }
    for n in 0..50 {
        all.push_str(&service_yaml(&format!("s{n}"), n % 10, "v0"));
    }
    let f = dir.path().join("all.yaml");
    std::fs::write(&f, &all).unwrap();
    let t = Instant::now();
    assert!(
        s.hkctl(&["apply", "-f", f.to_str().unwrap()])
            .status
            .success()
    );
    let ready = |name: &str, generation: i64| {
        http_get_with(
            s.port,
            &format!("/apis/hostkit.dev/v1alpha1/services/{name}"),
            Some(&s.token),
        )
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .is_some_and(|v| {
            v.pointer("/status/observedGeneration")
                .and_then(|g| g.as_i64())
                == Some(generation)
                && v.pointer("/status/conditions")
                    .and_then(|c| c.as_array())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
        })
    };
    assert!(
        wait_until(Duration::from_secs(300), || (0..50)
            .all(|n| ready(&format!("s{n}"), 1))),
        "{}",
        s.log()
    );
    let converge_all = t.elapsed();

    // Latency of a one-file change, 20 times.
    let mut latency = Vec::new();
    for i in 1..=20 {
        let m = dir.path().join("one.yaml");
        let mut text = service_yaml("s0", 0, "v0");
        text = text.replace("s0 3 v0", &format!("s0 3 v{i}"));
        std::fs::write(&m, text).unwrap();
        let t = Instant::now();
        assert!(
            s.hkctl(&["apply", "-f", m.to_str().unwrap()])
                .status
                .success()
        );
        let ok = wait_until(Duration::from_secs(30), || ready("s0", 1 + i as i64));
        assert!(ok);
        latency.push(t.elapsed());
    }
    let mut raw = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        hosts[0].sh(&format!("echo raw {i} > /srv/s0/raw.txt"));
        raw.push(t.elapsed());
    }

    // Steady state: 30 s of resyncs.
    let (r0, c0, t0) = (reconciles(&s), cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(30));
    let (r1, c1) = (reconciles(&s), cpu_ticks(pid));
    let wall = t0.elapsed().as_secs_f64();
    let ticks = 100.0; // USER_HZ on Linux
    let rss = rss_kib(pid);

    println!("\n{:<62} {:>14}", "figure", "value");
    println!(
        "{:<62} {:>14}",
        "converge 10 hosts / 50 services from empty",
        format!("{:.1} s", converge_all.as_secs_f64())
    );
    println!(
        "{:<62} {:>14}",
        "hkctl apply → Ready=True, one-file change, p50",
        format!(
            "{:.0} ms",
            percentile(&mut latency, 0.5).as_secs_f64() * 1e3
        )
    );
    println!(
        "{:<62} {:>14}",
        "hkctl apply → Ready=True, one-file change, p95",
        format!(
            "{:.0} ms",
            percentile(&mut latency, 0.95).as_secs_f64() * 1e3
        )
    );
    println!(
        "{:<62} {:>14}",
        "peer: raw `ssh host 'echo … > file'`, p50",
        format!("{:.0} ms", percentile(&mut raw, 0.5).as_secs_f64() * 1e3)
    );
    println!(
        "{:<62} {:>14}",
        "steady state reconciles/s (10 s resync, 60 objects)",
        format!("{:.1}", (r1 - r0) / wall)
    );
    println!(
        "{:<62} {:>14}",
        "steady state CPU of hostkit serve",
        format!("{:.1} %", (c1 - c0) as f64 / ticks / wall * 100.0)
    );
    println!(
        "{:<62} {:>14}",
        "RSS of hostkit serve, idle (no hosts)",
        format!("{:.1} MiB", idle_rss as f64 / 1024.0)
    );
    println!(
        "{:<62} {:>14}",
        "RSS of hostkit serve, 10 hosts / 50 services",
        format!("{:.1} MiB", rss as f64 / 1024.0)
    );
    println!(
        "{:<62} {:>14}",
        "RSS per managed host ((loaded − idle) / 10)",
        format!(
            "{:.2} MiB",
            (rss.saturating_sub(idle_rss)) as f64 / 1024.0 / 10.0
        )
    );
    println!("\ntargets: apply→Ready p50 < 1 s on loopback; < 1 MiB RSS per managed host.");
}
