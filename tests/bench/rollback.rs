//! Rollback speed on real parts: `hostkit serve` (embedded store) and booted test hosts.
//!
//! A Service on every host (an env file, five files and a daemon) goes from revision 1 to
//! revision 2; then `hkctl rollback service/web` runs the down plans host by host (restore
//! from the hosts' backups, daemon-reload, restart) and waits until `Complete=True`. Beside
//! it, in the same run: rolling forward again by applying revision 2's manifest (the plan and
//! apply path), and the floor an operator's shell script pays — one `ssh` per host copying
//! saved files back and restarting the unit, host after host.
//!
//! Knob: `HK_BENCH_HOSTS` (default 5).
//!
//! Run: `cargo bench -p hostkit-e2e --bench rollback` (root: it boots containers).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hostkit_e2e::server::{Hostkit, ServeOptions, condition_status};
use hostkit_e2e::testhost::TestHost;
use hostkit_e2e::wait_until;

fn manifests(hosts: &[TestHost], version: &str) -> String {
    let mut s = String::new();
    for (i, h) in hosts.iter().enumerate() {
        write!(
            s,
            "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {{name: h{i}}}\nspec:\n  address: {}\n  interval: 30s\n  ssh: {{user: root, identityFile: {}, hostKey: {{policy: pinned, key: \"{}\"}}}}\n---\n",
            h.address,
            h.key().display(),
            h.host_key()
        )
        .unwrap();
    }
    let names: Vec<String> = (0..hosts.len()).map(|i| format!("h{i}")).collect();
    write!(
        s,
        "apiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  hosts: [{}]\n  interval: 30s\n  env:\n    runtime:\n      path: /etc/web/runtime.env\n      set: {{VERSION: \"{version}\"}}\n  files:\n",
        names.join(", ")
    )
    .unwrap();
    for f in 0..5 {
        writeln!(
            s,
            "    - {{path: /etc/web/f{f}.conf, content: \"f{f} {version}\\n\"}}"
        )
        .unwrap();
    }
    s.push_str("  daemon:\n    env: [runtime]\n    exec: [/bin/sh, -c, \"echo $VERSION > /run/web-version; exec sleep infinity\"]\n");
    s
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn row(figure: impl std::fmt::Display, value: impl std::fmt::Display) {
    println!("{figure:<66} {value:>14}");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("HK_BENCH_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let s = Hostkit::start(ServeOptions {
        controller: true,
        extra_args: vec!["--settle".into(), "0s".into()],
        ..Default::default()
    });
    let hosts: Vec<TestHost> = (0..n).map(|_| TestHost::boot()).collect();
    let ready_at = |generation: i64| {
        s.get("service", "web").is_some_and(|v| {
            v.pointer("/status/observedGeneration")
                .and_then(|g| g.as_i64())
                == Some(generation)
                && condition_status(&v, "Ready").as_deref() == Some("True")
        })
    };
    let paths: Vec<String> = std::iter::once("/etc/web/runtime.env".to_string())
        .chain((0..5).map(|f| format!("/etc/web/f{f}.conf")))
        .collect();

    s.apply_yaml(&manifests(&hosts, "v1"));
    assert!(
        wait_until(Duration::from_secs(180), || ready_at(1)),
        "{}",
        s.log()
    );
    let v1 = hosts[0].listing(&paths);
    for h in &hosts {
        h.sh("rm -rf /var/tmp/v1 && cp -a /etc/web /var/tmp/v1");
    }
    s.apply_yaml(&manifests(&hosts, "v2"));
    assert!(
        wait_until(Duration::from_secs(180), || ready_at(2)),
        "{}",
        s.log()
    );

    let t = Instant::now();
    s.hkctl_ok(&["rollback", "service/web", "--timeout", "300s"]);
    let rollback = t.elapsed();
    for h in &hosts {
        assert_eq!(h.listing(&paths), v1, "rolled back on {}", h.address);
        assert_eq!(h.sh("cat /run/web-version"), "v1\n");
    }

    // Forward again with the manifest: the plan/apply path over the same changes.
    let generation = s
        .get("service", "web")
        .and_then(|v| v.pointer("/metadata/generation").and_then(|g| g.as_i64()))
        .unwrap();
    let t = Instant::now();
    s.apply_yaml(&manifests(&hosts, "v2"));
    assert!(
        wait_until(Duration::from_secs(180), || ready_at(generation + 1)),
        "{}",
        s.log()
    );
    let forward = t.elapsed();

    // The floor: a shell script restoring saved copies, host after host.
    let t = Instant::now();
    for h in &hosts {
        h.sh("cp -a /var/tmp/v1/. /etc/web/ && systemctl restart web.service");
    }
    let raw = t.elapsed();
    assert_eq!(hosts[0].listing(&paths), v1);

    println!();
    row("figure", "value");
    row(
        format!("hkctl rollback service/web → Complete, {n} hosts"),
        ms(rollback),
    );
    row("  = per host", ms(rollback / n as u32));
    row(
        format!("hkctl apply of revision 2 again → Ready, {n} hosts"),
        ms(forward),
    );
    row(
        format!("peer: ssh per host (cp saved files back, restart), {n} hosts"),
        ms(raw),
    );
    println!(
        "\nEach host: 6 files restored from sha-checked backups (temp + rename), daemon-reload,\n\
         the unit restarted; the rollback also writes a Revision and resets the Service's spec."
    );
}
