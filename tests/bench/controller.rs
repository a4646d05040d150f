//! Controller speed on real parts: `hostkit serve` (embedded store) managing booted test
//! hosts over SSH.
//!
//! - apply-to-Ready latency: `hkctl apply` of a one-file change until the Service reports
//!   `Ready=True` for the new generation (p50/p95 of 20), beside a raw `ssh host` writing
//!   the same file (the floor any agentless tool pays);
//! - steady state with 10 hosts and 50 services (10 s resync): reconciles/s, CPU % and RSS
//!   of `hostkit serve`, RSS per managed host (hosts alone, then with their services),
//!   beside the RSS an OpenSSH ControlMaster holding one connection per host costs.
//!
//! Knobs for quick runs: `HK_BENCH_HOSTS`, `HK_BENCH_SERVICES`, `HK_BENCH_STEADY_SECS`.
//!
//! Run: `cargo bench -p hostkit-e2e --bench controller` (root: it boots containers).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hostkit_e2e::server::{Hostkit, ServeOptions};
use hostkit_e2e::testhost::TestHost;
use hostkit_e2e::{cpu_ticks, http_get_with, wait_until};

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

/// A `/proc/PID/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident memory, all of it (`VmRSS`): includes the binary's code pages, which fault in
/// once as code paths are first used and do not grow with hosts.
fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// Resident anonymous memory (`RssAnon`: heap, stacks): what grows with each managed host.
fn anon_kib(pid: u32) -> u64 {
    status_kib(pid, "RssAnon")
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

/// One row of the figures table.
fn row(figure: impl std::fmt::Display, value: impl std::fmt::Display) {
    println!("{figure:<66} {value:>14}");
}

fn mib(kib: u64) -> String {
    format!("{:.2} MiB", kib as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// `HK_BENCH_*` knobs, for quick runs while investigating.
fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n_hosts = knob("HK_BENCH_HOSTS", 10);
    let n_services = knob("HK_BENCH_SERVICES", 50);
    let steady = knob("HK_BENCH_STEADY_SECS", 30);
    let s = Hostkit::start(ServeOptions {
        controller: true,
        extra_args: vec!["--settle".into(), "0s".into()],
        ..Default::default()
    });
    let pid = s.pid().expect("pid");
    std::thread::sleep(Duration::from_secs(1));
    let (idle_rss, idle_anon) = (rss_kib(pid), anon_kib(pid));
    let hosts: Vec<TestHost> = (0..n_hosts).map(|_| TestHost::boot()).collect();
    let dir = tempfile::tempdir().unwrap();
    let apply = |file: &str, text: &str| {
        let f = dir.path().join(file);
        std::fs::write(&f, text).unwrap();
        let out = s.hkctl(&["apply", "-f", f.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let get = |plural: &str, name: &str| {
        http_get_with(
            s.port,
            &format!("/apis/hostkit.dev/v1alpha1/{plural}/{name}"),
            Some(&s.token),
        )
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
    };
    let ready = |plural: &str, name: &str, generation: i64| {
        get(plural, name).is_some_and(|v| {
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

    // Hosts alone first: what a managed host with nothing on it costs.
    let text: String = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| host_yaml(i, h))
        .collect();
    apply("hosts.yaml", &text);
    assert!(
        wait_until(Duration::from_secs(120), || (0..n_hosts).all(|i| ready(
            "hosts",
            &format!("h{i}"),
            1
        ))),
        "{}",
        s.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let (hosts_rss, hosts_anon) = (rss_kib(pid), anon_kib(pid));

    let text: String = (0..n_services)
        .map(|n| service_yaml(&format!("s{n}"), n % n_hosts, "v0"))
        .collect();
    let t = Instant::now();
    apply("services.yaml", &text);
    assert!(
        wait_until(Duration::from_secs(300), || (0..n_services).all(|n| ready(
            "services",
            &format!("s{n}"),
            1
        ))),
        "{}",
        s.log()
    );
    let converge_all = t.elapsed();

    // Latency of a one-file change, 20 times, beside a raw ssh writing one file.
    let mut latency = Vec::new();
    for i in 1..=20 {
        let text = service_yaml("s0", 0, "v0").replace("s0 3 v0", &format!("s0 3 v{i}"));
        let t = Instant::now();
        apply("one.yaml", &text);
        assert!(wait_until(Duration::from_secs(30), || ready(
            "services",
            "s0",
            1 + i as i64
        )));
        latency.push(t.elapsed());
    }
    let mut raw = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        hosts[0].sh(&format!("echo raw {i} > /srv/s0/raw.txt"));
        raw.push(t.elapsed());
    }

    // Steady state: resyncs only.
    let (r0, c0, t0) = (reconciles(&s), cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(steady as u64));
    let (r1, c1) = (reconciles(&s), cpu_ticks(pid));
    let wall = t0.elapsed().as_secs_f64();
    let ticks = 100.0; // USER_HZ on Linux
    let (rss, anon) = (rss_kib(pid), anon_kib(pid));

    // Peer: what an agentless tool pays to keep one SSH connection per host open
    // (OpenSSH's ControlMaster, which Ansible's ssh connection plugin uses).
    let sockets = tempfile::tempdir().unwrap();
    let mut masters = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let sock = sockets.path().join(format!("m{i}"));
        let child = std::process::Command::new("ssh")
            .args(["-M", "-N", "-o", "StrictHostKeyChecking=no"])
            .args([
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=error",
                "-i",
            ])
            .arg(h.key())
            .arg("-S")
            .arg(&sock)
            .arg(format!("root@{}", h.address))
            .spawn()
            .expect("ssh");
        masters.push(child);
        assert!(wait_until(Duration::from_secs(10), || sock.exists()));
    }
    std::thread::sleep(Duration::from_millis(500));
    let master_rss: u64 = masters.iter().map(|c| rss_kib(c.id())).sum();
    let master_anon: u64 = masters.iter().map(|c| anon_kib(c.id())).sum();
    for mut c in masters {
        let _ = c.kill();
        let _ = c.wait();
    }

    let per_host = |kib: u64| kib / n_hosts as u64;
    println!();
    row("figure", "value");
    row(
        format!("converge {n_hosts} hosts / {n_services} services from empty"),
        format!("{:.1} s", converge_all.as_secs_f64()),
    );
    row(
        "hkctl apply → Ready=True, one-file change, p50",
        ms(percentile(&mut latency, 0.5)),
    );
    row(
        "hkctl apply → Ready=True, one-file change, p95",
        ms(percentile(&mut latency, 0.95)),
    );
    row(
        "peer: raw `ssh host 'echo … > file'`, p50",
        ms(percentile(&mut raw, 0.5)),
    );
    row(
        format!(
            "steady state reconciles/s (10 s resync, {} objects)",
            n_hosts + n_services
        ),
        format!("{:.1}", (r1 - r0) / wall),
    );
    row(
        "steady state CPU of hostkit serve",
        format!("{:.1} %", (c1 - c0) as f64 / ticks / wall * 100.0),
    );
    let both = |rss: u64, anon: u64| format!("{} / {}", mib(rss), mib(anon));
    row(
        "hostkit serve, idle (no hosts): VmRSS / RssAnon",
        both(idle_rss, idle_anon),
    );
    row(
        format!("hostkit serve, {n_hosts} hosts, no services"),
        both(hosts_rss, hosts_anon),
    );
    row(
        format!("hostkit serve, {n_hosts} hosts / {n_services} services"),
        both(rss, anon),
    );
    let grown = |now: u64, idle: u64| per_host(now.saturating_sub(idle));
    row(
        "per managed host, hosts only",
        both(grown(hosts_rss, idle_rss), grown(hosts_anon, idle_anon)),
    );
    row(
        "per managed host, with its 5 services",
        both(grown(rss, idle_rss), grown(anon, idle_anon)),
    );
    row(
        "peer: OpenSSH ControlMaster (`ssh -M -N`) per host",
        both(per_host(master_rss), per_host(master_anon)),
    );
    println!(
        "\ntargets: apply→Ready p50 < 1 s on loopback; < 1 MiB RSS per managed host (RssAnon:\n\
         VmRSS also counts the binary's code pages, faulted in once, not per host)."
    );
}
