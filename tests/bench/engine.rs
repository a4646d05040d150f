//! Host engine speed on one real test host: 200 files, 20 directories, 2 accounts and 20
//! units. Prints first converge, no-op plan and plan-after-one-edit times, and beside them
//! the time of one raw `ssh host 'sha256sum <the 200 files>'` measured in the same run.
//!
//! Run: `cargo bench -p hostkit-e2e --bench engine` (needs root: it boots a container).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hostkit_e2e::testhost::TestHost;
use hostkit_engine::apply::{self, ApplyOptions};
use hostkit_engine::offline::manifests::Desired;
use hostkit_engine::plan;
use hostkit_engine::resource::Resource;
use hostkit_engine::secrets::Secrets;
use hostkit_engine::transport::ssh::Ssh;

fn manifests() -> String {
    let mut y = String::from(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {name: bench}\nspec: {address: 127.0.0.1}\n",
    );
    for s in ["alpha", "beta"] {
        write!(
            y,
            "---\napiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {{name: {s}}}\nspec:\n  hosts: [bench]\n  account: {{system: true}}\n  storage: [{{name: data}}]\n  directories:\n"
        )
        .unwrap();
        for d in 0..9 {
            writeln!(y, "    - {{path: /srv/{s}/d{d}, mode: \"0755\"}}").unwrap();
        }
        y.push_str("  files:\n");
        for f in 0..100 {
            writeln!(
                y,
                "    - {{path: /srv/{s}/d{}/f{f}.txt, content: \"{s} file {f}\\n\"}}",
                f % 9
            )
            .unwrap();
        }
        writeln!(y, "  daemon: {{exec: [/bin/sleep, infinity]}}").unwrap();
        y.push_str("  jobs:\n");
        for j in 0..9 {
            writeln!(
                y,
                "    - {{name: j{j}, exec: [/bin/true], schedule: {{onCalendar: [\"*-*-* 0{j}:00:00\"]}}}}"
            )
            .unwrap();
        }
    }
    y
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bench.yaml"), manifests()).unwrap();
    let desired = Desired::load(&[dir.path().join("bench.yaml")]).expect("bench manifests");
    let resources: Vec<Resource> = desired.resources_for("bench").unwrap();
    let count = |k: &str| resources.iter().filter(|r| r.id.starts_with(k)).count();
    println!(
        "resources: {} files ({} of them unit files), {} directories, {} accounts, {} units",
        count("file:"),
        resources
            .iter()
            .filter(|r| r.id.starts_with("file:/etc/systemd"))
            .count(),
        count("directory:"),
        count("account:"),
        count("unit:")
    );
    let host = TestHost::boot();
    let opts = hostkit_e2e::engine::options(&host);
    let secrets = Secrets::default();

    // First converge: connect, read, plan, apply (settle 0: units are checked active once).
    let t = Instant::now();
    let ssh = Ssh::connect(&opts).await.unwrap();
    let prepared = plan::prepare(&ssh, &resources, &[], &secrets)
        .await
        .unwrap();
    let mut o = ApplyOptions::new("bench");
    o.settle = Duration::ZERO;
    let applied = apply::apply(&ssh, &prepared, &o).await.unwrap();
    let first = t.elapsed();
    assert!(applied.ok, "{:?}", applied.error);
    let changes = prepared.plan.changes.len() - prepared.plan.count(plan::Action::Noop);

    // No-op plan, over the open connection and with a fresh connection.
    let mut noop = Vec::new();
    let mut noop_connect = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let p = plan::prepare(&ssh, &resources, &[], &secrets)
            .await
            .unwrap();
        noop.push(t.elapsed());
        assert!(p.plan.is_empty(), "{}", p.plan.render(false));
        let t = Instant::now();
        let fresh = Ssh::connect(&opts).await.unwrap();
        plan::prepare(&fresh, &resources, &[], &secrets)
            .await
            .unwrap();
        noop_connect.push(t.elapsed());
    }
    host.sh("echo edit >> /srv/alpha/d3/f12.txt");
    let mut edited = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let p = plan::prepare(&ssh, &resources, &[], &secrets)
            .await
            .unwrap();
        edited.push(t.elapsed());
        assert_eq!(p.plan.count(plan::Action::Update), 1);
    }

    // The peer: one raw ssh call hashing the same 200 files (connection set-up included).
    let files: Vec<String> = resources
        .iter()
        .filter(|r| r.id.starts_with("file:/srv/"))
        .filter_map(|r| r.path().map(String::from))
        .collect();
    let cmd = format!("sha256sum {}", files.join(" "));
    let mut raw = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let out = std::process::Command::new("ssh")
            .args([
                "-q",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-i",
            ])
            .arg(host.key())
            .arg(format!("root@{}", host.address))
            .arg(&cmd)
            .output()
            .unwrap();
        raw.push(t.elapsed());
        assert!(out.status.success());
    }
    let raw = median(raw);
    println!("\n{:<58} {:>10}", "figure", "time");
    println!(
        "{:<58} {:>10}",
        format!("first converge ({changes} changes, settle 0)"),
        ms(first)
    );
    println!(
        "{:<58} {:>10}",
        "no-op plan, open connection (median of 7)",
        ms(median(noop.clone()))
    );
    println!(
        "{:<58} {:>10}",
        "no-op plan incl. SSH connect (median of 7)",
        ms(median(noop_connect.clone()))
    );
    println!(
        "{:<58} {:>10}",
        "plan after one hand edit (median of 7)",
        ms(median(edited))
    );
    println!(
        "{:<58} {:>10}",
        "peer: raw `ssh host 'sha256sum <200 files>'` (median of 7)",
        ms(raw)
    );
    println!(
        "\nno-op plan / raw ssh: {:.2}x (open connection), {:.2}x (with connect); target <= 3x. first converge target < 2 s.",
        median(noop).as_secs_f64() / raw.as_secs_f64(),
        median(noop_connect).as_secs_f64() / raw.as_secs_f64()
    );
}
