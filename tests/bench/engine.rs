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

/// One `ssh` that creates what `resources` declare (accounts, folders, files with their
/// owners and modes, unit files as `systemctl enable` links), reloads systemd and starts
/// the units, checking nothing: the least any tool must do for the same first converge.
/// Files travel as one tar stream; owners and modes are set with one call per value.
/// Returns how long it took, connection included.
fn raw_converge(host: &TestHost, resources: &[Resource]) -> Duration {
    use hostkit_engine::resource::Spec;
    use std::collections::BTreeMap;
    let stage = tempfile::tempdir().unwrap();
    let mut script = String::from("set -e\n");
    let (mut dirs, mut units, mut links) = (Vec::new(), Vec::new(), Vec::new());
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut modes: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for r in resources {
        match &r.spec {
            Spec::Account { name, home, .. } => script.push_str(&format!(
                "useradd --system --home-dir {home} --shell /usr/sbin/nologin {name}\n"
            )),
            Spec::Directory {
                path,
                owner,
                group,
                mode,
                ..
            } => {
                dirs.push(path.clone());
                owners
                    .entry(format!("{owner}:{group}"))
                    .or_default()
                    .push(path.clone());
                modes.entry(*mode).or_default().push(path.clone());
            }
            Spec::File {
                path,
                content,
                owner,
                group,
                mode,
                ..
            } => {
                let local = stage.path().join(path.trim_start_matches('/'));
                std::fs::create_dir_all(local.parent().unwrap()).unwrap();
                std::fs::write(&local, &content.text).unwrap();
                owners
                    .entry(format!("{owner}:{group}"))
                    .or_default()
                    .push(path.clone());
                modes.entry(*mode).or_default().push(path.clone());
            }
            Spec::Unit {
                name, wanted_by, ..
            } => {
                for t in wanted_by {
                    dirs.push(format!("/etc/systemd/system/{t}.wants"));
                    links.push(format!(
                        "/etc/systemd/system/{name} /etc/systemd/system/{t}.wants/{name}"
                    ));
                }
                units.push(name.clone());
            }
            _ => {}
        }
    }
    let tar = std::process::Command::new("tar")
        .args(["-C"])
        .arg(stage.path())
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    script.push_str(&format!(
        "mkdir -p {}\nhead -c {} | tar -x --no-same-owner -C / -f -\n",
        dirs.join(" "),
        tar.stdout.len()
    ));
    for (o, paths) in &owners {
        script.push_str(&format!("chown {o} {}\n", paths.join(" ")));
    }
    for (m, paths) in &modes {
        script.push_str(&format!("chmod {m:o} {}\n", paths.join(" ")));
    }
    for l in &links {
        script.push_str(&format!("ln -sf {l}\n"));
    }
    script.push_str(&format!(
        "systemctl daemon-reload\nsystemctl start {}\n",
        units.join(" ")
    ));
    use std::io::Write;
    let t = Instant::now();
    let mut child = std::process::Command::new("ssh")
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
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "the raw converge failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
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
    let secrets = Secrets::default();

    // The floor: one `ssh` on a fresh host that makes the same folders, files and units
    // and starts the units, with nothing checked.
    let floor_host = TestHost::boot();
    let floor = raw_converge(&floor_host, &resources);
    drop(floor_host);

    // First converge with the default settle (300 ms: every started unit must stay active
    // that long), on a fresh host: connect, read, plan, apply.
    let settled_host = TestHost::boot();
    let t = Instant::now();
    let ssh = Ssh::connect(&hostkit_e2e::engine::options(&settled_host))
        .await
        .unwrap();
    let prepared = plan::prepare(&ssh, &resources, &[], &secrets)
        .await
        .unwrap();
    let applied = apply::apply(&ssh, &prepared, &ApplyOptions::new("bench"))
        .await
        .unwrap();
    let first_settled = t.elapsed();
    assert!(applied.ok, "{:?}", applied.error);
    drop(ssh);
    drop(settled_host);

    // First converge with settle 0 (units are checked active once).
    let host = TestHost::boot();
    let opts = hostkit_e2e::engine::options(&host);
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
        format!("first converge ({changes} changes, default settle 300 ms)"),
        ms(first_settled)
    );
    println!(
        "{:<58} {:>10}",
        format!("first converge ({changes} changes, settle 0)"),
        ms(first)
    );
    println!(
        "{:<58} {:>10}",
        "floor: one raw `ssh` writing the same and starting the units",
        ms(floor)
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
        "\nfirst converge / floor: {:.2}x (default settle), {:.2}x (settle 0); target <= 2x with the default settle.",
        first_settled.as_secs_f64() / floor.as_secs_f64(),
        first.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "no-op plan / raw ssh: {:.2}x (open connection), {:.2}x (with connect); target <= 3x. first converge target < 2 s.",
        median(noop).as_secs_f64() / raw.as_secs_f64(),
        median(noop_connect).as_secs_f64() / raw.as_secs_f64()
    );
    drop(ssh);
    drop(host);
    fleet().await;
}

/// Ten hosts, 20 files and one unit each: `hostkit apply --parallel 10`'s first converge
/// and `hostkit plan`'s no-op over all ten, beside the floor (ten raw `ssh` converges at
/// once) on the same hosts once HostKit's down plans have put them back.
async fn fleet() {
    use hostkit_engine::offline::{self, ApplyRequest, Inputs};
    const HOSTS: usize = 10;
    let hosts: Vec<TestHost> = (0..HOSTS).map(|_| TestHost::boot()).collect();
    let mut y = String::new();
    for (i, h) in hosts.iter().enumerate() {
        y.push_str(&h.manifest(&format!("h{i}"), ""));
        write!(
            y,
            "---\napiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {{name: s{i}}}\nspec:\n  hosts: [h{i}]\n  directories: [{{path: /srv/s{i}}}]\n  files:\n"
        )
        .unwrap();
        for f in 0..20 {
            writeln!(
                y,
                "    - {{path: /srv/s{i}/f{f}.txt, content: \"{i} {f}\\n\"}}"
            )
            .unwrap();
        }
        y.push_str("  daemon: {exec: [/bin/sleep, infinity]}\n---\n");
    }
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("fleet.yaml");
    std::fs::write(&m, &y).unwrap();
    let inputs = Inputs {
        files: vec![m.clone()],
        parallel: HOSTS,
        ..Default::default()
    };
    let req = ApplyRequest {
        inputs: inputs.clone(),
        expected: None,
        settle: Duration::from_millis(300),
        revision: "fleet".into(),
        progress: std::sync::Arc::new(|_| {}),
        report: Box::new(|_, _| {}),
        timings: false,
    };
    let t = Instant::now();
    let outcome = offline::apply(&req).await.unwrap();
    let first = t.elapsed();
    assert!(outcome.ok, "{:?}", outcome.failed);
    let mut noop = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let p = offline::plan(&inputs, &mut |_, _| {}).await.unwrap();
        noop.push(t.elapsed());
        assert!(p.plans.iter().all(|p| p.is_empty()) && p.failed.is_empty());
    }
    // Back to clean hosts, then the floor on them, all ten at once.
    let downs = offline::down_plans(&outcome.applied, &[]);
    offline::run_downs(&outcome.applied, &downs, HOSTS, |d, r| {
        assert!(r.is_ok_and(|r| r.ok), "down of {}", d.host)
    })
    .await;
    let desired = Desired::load(&[m]).unwrap();
    let t = Instant::now();
    std::thread::scope(|scope| {
        for (i, h) in hosts.iter().enumerate() {
            let resources = desired.resources_for(&format!("h{i}")).unwrap();
            scope.spawn(move || raw_converge(h, &resources));
        }
    });
    let floor = t.elapsed();
    let noop = median(noop);
    println!(
        "\n{:<58} {:>10}",
        "10 hosts, 20 files + 1 unit each", "time"
    );
    println!(
        "{:<58} {:>10}",
        "first converge (--parallel 10, default settle)",
        ms(first)
    );
    println!(
        "{:<58} {:>10}",
        "no-op plan of all ten, with connects (median of 5)",
        ms(noop)
    );
    println!(
        "{:<58} {:>10}",
        "floor: ten raw `ssh` converges at once",
        ms(floor)
    );
    println!(
        "\n10 hosts: first converge / floor {:.2}x (target <= 1.5x); no-op {} (target <= 600 ms).",
        first.as_secs_f64() / floor.as_secs_f64(),
        ms(noop)
    );
}
