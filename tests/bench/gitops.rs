//! GitOps benchmark: prints figures, asserts nothing about speed.
//!
//! `hostkit serve` (release, embedded store) with a GitSource on a real `file://` git
//! repository:
//! - one commit adding 1,000 Service objects (100 files of 10), then `hkctl sync`: the time
//!   until every object is stored (fetch, parse and validate all, apply all);
//! - a no-change sync of that repository: time, and CPU of `hostkit serve` during it.
//!
//! Beside them, in the same run: `git clone --depth 1` of the same repository (the fetch
//! floor), and `hkctl apply -f` of the same 1,000 manifests from a folder, first and
//! unchanged (the same objects without git).
//!
//! Run: `cargo bench -p hostkit-e2e --bench gitops`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hostkit_e2e::server::{Hostkit, ServeOptions, stderr, stdout};
use hostkit_e2e::{cpu_ticks, git};

fn service(i: usize) -> String {
    format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata:\n  name: svc-{i:04}\n  labels: {{tier: bench}}\nspec:\n  hostSelector: {{matchLabels: {{env: bench-nowhere}}}}\n  interval: 1h\n  env:\n    runtime:\n      set: {{PORT: \"{port}\"}}\n  daemon:\n    exec: [/usr/local/bin/app, --port, \"{port}\"]\n    env: [runtime]\n",
        port = 4000 + i
    )
}

fn write_manifests(dir: &Path, prefix: &str) {
    for f in 0..100 {
        let text: Vec<String> = (f * 10..f * 10 + 10)
            .map(|i| service(i).replace("svc-", prefix))
            .collect();
        std::fs::write(dir.join(format!("s{f:03}.yaml")), text.join("---\n")).unwrap();
    }
}

fn timed(mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn row(figure: impl std::fmt::Display, value: impl std::fmt::Display) {
    println!("{figure:<62} {value:>14}");
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let s = Hostkit::start(ServeOptions {
        controller: true,
        ..Default::default()
    });
    let pid = s.pid().expect("pid");
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("infra");
    std::fs::create_dir_all(repo.join("prod")).unwrap();
    git(&repo, &["init", "-q"], &[]);
    std::fs::write(repo.join("prod/README.yaml"), "# nothing yet\n").unwrap();
    git(&repo, &["add", "-A"], &[]);
    git(&repo, &["commit", "-qm", "empty"], &[]);
    let gs = work.path().join("gs.yaml");
    std::fs::write(
        &gs,
        format!(
            "apiVersion: hostkit.dev/v1alpha1\nkind: GitSource\nmetadata: {{name: bench}}\nspec:\n  url: file://{}\n  ref: {{branch: main}}\n  path: prod\n  interval: 1h\n  prune: true\n",
            repo.display()
        ),
    )
    .unwrap();
    assert!(
        s.hkctl(&["apply", "-f", gs.to_str().unwrap()])
            .status
            .success()
    );
    let sync = || {
        let out = s.hkctl(&["sync", "gitsource/bench", "--timeout", "5m"]);
        assert!(
            out.status.success(),
            "{}{}\n{}",
            stdout(&out),
            stderr(&out),
            s.log()
        );
        stdout(&out)
    };
    sync();

    // One commit adding 1,000 objects.
    write_manifests(&repo.join("prod"), "svc-");
    git(&repo, &["add", "-A"], &[]);
    git(&repo, &["commit", "-qm", "1,000 services"], &[]);
    let mut said = String::new();
    let add = timed(|| said = sync());
    assert!(said.contains("applied 1000 object(s)"), "{said}");
    let out = s.hkctl(&["get", "services", "-o", "name"]);
    assert_eq!(stdout(&out).lines().count(), 1000);

    // Let the controller finish reconciling the new Services (they are not part of the
    // sync), so the no-change figures measure the sync alone.
    let idle = || {
        s.metrics()
            .lines()
            .find(|l| l.starts_with("hostkit_workqueue_depth "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            == Some(0.0)
    };
    let settled = Instant::now();
    while settled.elapsed() < Duration::from_secs(120) {
        let t0 = cpu_ticks(pid);
        std::thread::sleep(Duration::from_millis(500));
        if idle() && cpu_ticks(pid) - t0 <= 2 {
            break;
        }
    }

    // No-change syncs: median of 5, and CPU.
    let mut nochange = Vec::new();
    let c0 = cpu_ticks(pid);
    for _ in 0..5 {
        nochange.push(timed(|| {
            sync();
        }));
    }
    let cpu = (cpu_ticks(pid) - c0) as f64 / 100.0 / 5.0;
    nochange.sort();

    // Peers: git's own clone of the same commit, and the same manifests through hkctl.
    let clone_dir = work.path().join("clone");
    let clone = timed(|| {
        let out = Command::new("git")
            .args(["clone", "-q", "--depth", "1"])
            .arg(format!("file://{}", repo.display()))
            .arg(&clone_dir)
            .output()
            .unwrap();
        assert!(out.status.success());
    });
    let folder = work.path().join("folder");
    std::fs::create_dir_all(&folder).unwrap();
    write_manifests(&folder, "peer-");
    let apply = || {
        let out = s.hkctl(&["apply", "-f", folder.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let first = timed(apply);
    let unchanged = timed(apply);

    println!();
    row("figure", "value");
    row(
        "sync of one commit adding 1,000 objects (all stored)",
        ms(add),
    );
    row(
        "  = objects/s",
        format!("{:.0}", 1000.0 / add.as_secs_f64()),
    );
    row(
        "no-change sync of the 1,000-object repository, median of 5",
        ms(nochange[2]),
    );
    row(
        "  CPU of hostkit serve per no-change sync",
        format!("{:.0} ms", cpu * 1e3),
    );
    row(
        "peer: git clone --depth 1 of the same repository",
        ms(clone),
    );
    row(
        "peer: hkctl apply -f of the same 1,000 manifests (new)",
        ms(first),
    );
    row(
        "peer: hkctl apply -f of the same 1,000 manifests (unchanged)",
        ms(unchanged),
    );
}
