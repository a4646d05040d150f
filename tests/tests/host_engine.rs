//! The host engine against real hosts: booted systemd containers with sshd (see
//! `hostkit_e2e::testhost`), reached with the russh transport.

use std::path::PathBuf;

use hostkit_api::kinds::{Directory, Package};
use hostkit_api::values::SecretRef;
use hostkit_e2e::engine::{converge, demo, demo_secrets, options, prepare};
use hostkit_e2e::testhost::TestHost;
use hostkit_engine::apply::{self, ApplyOptions};
use hostkit_engine::offline::manifests::Desired;
use hostkit_engine::outcome::Status;
use hostkit_engine::plan::Action;
use hostkit_engine::resource::{Resource, Spec};
use hostkit_engine::secrets::Secrets;
use hostkit_engine::transport::ssh::Ssh;

/// The shared examples, with binaries replaced by small real programs and packages by
/// one from the test hosts' local repository.
fn examples() -> Desired {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
    let mut d = Desired::load(&[dir]).expect("examples load");
    for s in d.services.values_mut() {
        if let Some(daemon) = &mut s.spec.daemon {
            daemon.exec = vec!["/bin/sleep".into(), "infinity".into()];
            if let Some(wd) = &daemon.working_directory {
                s.spec.directories.push(Directory {
                    path: wd.clone(),
                    ..Default::default()
                });
            }
        }
        for j in &mut s.spec.jobs {
            j.exec = vec!["/bin/true".into()];
        }
        for c in &mut s.spec.commands {
            c.exec = vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("echo {} >> /var/tmp/commands", c.name),
            ];
            if let Some(hostkit_api::kinds::CommandDown::Exec(d)) = &mut c.down {
                d.exec = vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    format!("echo undo-{} >> /var/tmp/commands", c.name),
                ];
            }
        }
    }
    for h in d.hosts.values_mut() {
        if let Some(b) = &mut h.spec.bootstrap {
            b.packages = vec![Package::Name("tree".into())];
            b.mise = None;
        }
    }
    d
}

fn secrets() -> Secrets {
    Secrets::default().with(
        SecretRef::Env("DATABASE_URL".into()),
        "postgres://api:s3cret@db/api",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_converges_units_run_and_the_next_plan_is_empty() {
    let desired = examples();
    for host_name in desired.hosts.keys() {
        let resources = desired.resources_for(host_name).expect("expand");
        if resources.is_empty() {
            continue;
        }
        let host = TestHost::boot();
        let ssh = Ssh::connect(&options(&host)).await.expect("connect");
        let applied = converge(&ssh, &resources, &[], &secrets(), "r1").await;
        for r in &resources {
            if let Spec::Unit { name, .. } = &r.spec {
                assert_eq!(
                    host.sh(&format!("systemctl is-active {name}")).trim(),
                    "active",
                    "{host_name}: {name}"
                );
            }
        }
        let again = prepare(&ssh, &resources, &[], &secrets()).await;
        assert!(
            again.plan.is_empty(),
            "{host_name}: second plan not empty:\n{}",
            again.plan.render(true)
        );
        // The secret reached the host file and nowhere else.
        let applied_json = serde_json::to_string(&applied).unwrap();
        let plan_json = serde_json::to_string(&again.plan).unwrap();
        assert!(!applied_json.contains("s3cret") && !plan_json.contains("s3cret"));
        if host_name == "app" {
            assert!(
                host.sh("cat /etc/api/api.env")
                    .contains("DATABASE_URL=\"postgres://api:s3cret@db/api\"")
            );
            assert_eq!(
                host.sh("stat -c '%U:%G %a' /etc/api/api.env").trim(),
                "root:api 640"
            );
            assert!(host.sh("dpkg-query -W tree").starts_with("tree"));
            assert_eq!(host.sh("cat /var/tmp/commands"), "migrate\nwarm-cache\n");
        }
        if host_name == "edge" {
            let table = host.sh("nft list table inet hostkit");
            assert!(
                table.contains("tcp dport 22 accept") && table.contains("policy drop"),
                "{table}"
            );
        }
    }
}

/// A service built for the drift and rollback tests: an account, storage, a plain file,
/// an env file with a secret, a daemon, a job, a command with a down, and a package.
fn managed_paths(resources: &[Resource]) -> Vec<String> {
    let mut paths: Vec<String> = resources
        .iter()
        .filter_map(|r| r.path().map(String::from))
        .collect();
    paths.push("/srv/demo/web/seeded".into());
    paths.sort();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_edits_show_up_as_exactly_those_changes() {
    let host = TestHost::boot();
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    let (d, _) = demo("v1", 8080);
    let resources = d.resources_for("target").unwrap();
    converge(&ssh, &resources, &[], &demo_secrets("t1"), "r1").await;
    assert!(
        host.sh("curl -s http://127.0.0.1:8080/index.html")
            .contains("<h1>v1</h1>")
    );

    host.sh("echo edited >> /etc/demo/web/version.txt; chmod 0777 /srv/demo/web; systemctl stop demo-web.service; dpkg -r tree >/dev/null");
    let p = prepare(&ssh, &resources, &[], &demo_secrets("t1"))
        .await
        .plan;
    let changed: Vec<(&str, Action)> = p
        .changes
        .iter()
        .filter(|c| c.action != Action::Noop)
        .map(|c| (c.id.as_str(), c.action))
        .collect();
    assert_eq!(
        changed,
        [
            ("package:tree", Action::Create),
            ("directory:/srv/demo/web", Action::Update),
            ("file:/etc/demo/web/version.txt", Action::Update),
            ("unit:demo-web.service", Action::Update),
        ],
        "{}",
        p.render(true)
    );
    let file = p
        .changes
        .iter()
        .find(|c| c.id == "file:/etc/demo/web/version.txt")
        .unwrap();
    assert!(
        file.diff.as_deref().unwrap().contains("-edited"),
        "{:?}",
        file.diff
    );
    let dir = p
        .changes
        .iter()
        .find(|c| c.id == "directory:/srv/demo/web")
        .unwrap();
    assert!(
        dir.reason.contains("mode 0777, want 0750"),
        "{}",
        dir.reason
    );
    let unit = p
        .changes
        .iter()
        .find(|c| c.id == "unit:demo-web.service")
        .unwrap();
    assert!(
        unit.reason.contains("is inactive, want active"),
        "{}",
        unit.reason
    );

    // A changed secret shows by name only, and repairing converges again.
    let p2 = prepare(&ssh, &resources, &[], &demo_secrets("t2")).await;
    let env = p2
        .plan
        .changes
        .iter()
        .find(|c| c.id == "file:/etc/demo/web/runtime.env")
        .unwrap();
    assert_eq!(env.diff.as_deref(), Some("~ TOKEN (secret changed)\n"));
    assert!(!serde_json::to_string(&p2.plan).unwrap().contains("t2"));
    converge(&ssh, &resources, &[], &demo_secrets("t2"), "r2").await;
    assert!(
        prepare(&ssh, &resources, &[], &demo_secrets("t2"))
            .await
            .plan
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_down_plan_of_v2_restores_v1_byte_for_byte() {
    let host = TestHost::boot();
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    let (v1, _) = demo("v1", 8080);
    let (v2, _) = demo("v2", 8081);
    let r1 = v1.resources_for("target").unwrap();
    let r2 = v2.resources_for("target").unwrap();
    let paths = managed_paths(&r1);
    converge(&ssh, &r1, &[], &demo_secrets("t1"), "r1").await;
    let after_v1 = host.listing(&paths);
    let applied = converge(&ssh, &r2, &r1, &demo_secrets("t2"), "r2").await;
    assert!(
        host.sh("curl -s http://127.0.0.1:8081/index.html")
            .contains("v2")
    );
    assert_ne!(host.listing(&paths), after_v1);

    let down = &applied.down;
    assert!(down.coverage.reversible > 0);
    let result = hostkit_engine::down::run_down(&ssh, down).await.unwrap();
    assert!(result.ok, "{:?}\n{}", result.steps, down.render());
    // The command's down ran; the listing of every managed path equals v1's except the
    // file the commands append to, which records both runs.
    assert_eq!(host.sh("cat /srv/demo/web/seeded"), "v1\nv2\nundo-v2\n");
    let strip = |s: String| {
        s.lines()
            .filter(|l| !l.contains("/seeded"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(host.listing(&paths)), strip(after_v1));
    assert!(
        host.sh("curl -s http://127.0.0.1:8080/index.html")
            .contains("<h1>v1</h1>")
    );
    assert_eq!(
        host.sh("systemctl is-active demo-web.service").trim(),
        "active"
    );
    // Backups are private.
    assert_eq!(
        host.sh("stat -c %a /var/lib/hostkit/backups/r2/files/etc/demo/web/version.txt")
            .trim(),
        "600"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_plan_is_refused() {
    let host = TestHost::boot();
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    let (d, _) = demo("v1", 8080);
    let resources = d.resources_for("target").unwrap();
    let planned = prepare(&ssh, &resources, &[], &demo_secrets("t"))
        .await
        .plan;
    host.sh("mkdir -p /etc/demo/web && echo sneaky > /etc/demo/web/version.txt");
    let fresh = prepare(&ssh, &resources, &[], &demo_secrets("t"))
        .await
        .plan;
    let err = apply::check_fresh(&planned, &fresh)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("file:/etc/demo/web/version.txt") && err.contains("stale"),
        "{err}"
    );
    assert!(apply::check_fresh(&fresh, &fresh).is_ok());
}

/// `hostkit plan/apply/down` as a user runs them: manifests on disk, exit codes, plan and
/// applied files.
#[test]
fn the_hostkit_plan_apply_down_commands() {
    use hostkit_e2e::server::{bin, stderr, stdout};
    let host = TestHost::boot();
    let (_, text) = demo("v1", 8080);
    let dir = tempfile::tempdir().unwrap();
    let text = text.replace(
        "  address: 127.0.0.1\n",
        &format!(
            "  address: {}\n  ssh:\n    user: root\n    identityFile: {}\n    hostKey:\n      policy: pinned\n      key: {}\n",
            host.address,
            host.key().display(),
            host.host_key()
        ),
    );
    let manifest = dir.path().join("demo.yaml");
    std::fs::write(&manifest, text).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(bin("hostkit"))
            .args(args)
            .env("DEMO_TOKEN", "cli-secret")
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let m = manifest.to_str().unwrap();
    let out = run(&["plan", "-f", m, "--out", "plan.json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("Plan: ") && stdout(&out).contains("+ unit:demo-web.service"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("cli-secret"));

    let out = run(&["apply", "-f", m]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--confirm"));
    // A plan that cannot be made is exit 2, not "changes".
    let out = run(&["plan", "-f", "no-such-file.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = run(&[
        "apply",
        "-f",
        m,
        "--plan",
        "plan.json",
        "--confirm",
        "--out",
        "applied.json",
        "--lock",
        "hostkit.lock",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The lock pins what was installed; a host whose version differs from the lock has
    // an update planned.
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("hostkit.lock")).unwrap()).unwrap();
    let version = lock["hosts"]["target"]["tree"]
        .as_str()
        .expect("tree is locked")
        .to_string();
    assert!(version.starts_with("2."), "{version}");
    let pinned = serde_json::json!({"hosts": {"target": {"tree": "9.9-pinned"}}});
    std::fs::write(dir.path().join("pinned.lock"), pinned.to_string()).unwrap();
    let out = run(&["plan", "-f", m, "--lock", "pinned.lock"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!(
            "~ package:tree  (tree {version} installed, locked 9.9-pinned)"
        )),
        "{}",
        stdout(&out)
    );
    let out = run(&["plan", "-f", m, "--lock", "hostkit.lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let applied = std::fs::read_to_string(dir.path().join("applied.json")).unwrap();
    assert!(!applied.contains("cli-secret"));
    assert!(
        host.sh("cat /etc/demo/web/runtime.env")
            .contains("TOKEN=\"cli-secret\"")
    );

    // A plan made before a change on the host is refused.
    let out = run(&["plan", "-f", m, "--out", "plan2.json", "--show-unchanged"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("= unit:demo-web.service"),
        "{}",
        stdout(&out)
    );
    host.sh("echo drift >> /etc/demo/web/version.txt");
    let out = run(&[
        "apply",
        "-f",
        m,
        "--plan",
        "plan2.json",
        "--confirm",
        "--out",
        "applied2.json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("stale") && stderr(&out).contains("file:/etc/demo/web/version.txt"),
        "{}",
        stderr(&out)
    );

    // down --only restores one file; down of everything removes what was created.
    let out = run(&[
        "down",
        "--from",
        "applied.json",
        "--only",
        "file:/srv/demo/web/index.html",
        "--confirm",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_ne!(host.try_sh("test -e /srv/demo/web/index.html").0, 0);
    assert_eq!(host.try_sh("test -e /etc/demo/web/version.txt").0, 0);
    let out = run(&["down", "--from", "applied.json", "--confirm"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("skip: account demo-web is kept"),
        "{}",
        stdout(&out)
    );
    assert_ne!(
        host.try_sh("test -e /etc/systemd/system/demo-web.service")
            .0,
        0
    );
    assert_ne!(host.try_sh("systemctl is-active demo-web.service").0, 0);
}

/// Property: for generated resource sets (files with awkward content, modes and owners,
/// directories, symlinks), the plan right after applying them is empty.
#[test]
fn property_plan_after_apply_is_empty() {
    use hostkit_engine::expand::link_paths;
    use hostkit_engine::resource::Content;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let host = TestHost::boot();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ssh = rt.block_on(Ssh::connect(&options(&host))).expect("connect");
    let entry = (
        0u8..3,
        0usize..4,
        "[ -~\n'\"$`\\\\é]{0,120}",
        prop::sample::select(vec![0o600u32, 0o640, 0o644, 0o664, 0o700, 0o755, 0o4755]),
        prop::bool::ANY,
    );
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&prop::collection::vec(entry, 1..16), |entries| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let root = format!("/srv/prop/c{n}");
            let mut resources = vec![Resource::new(
                format!("directory:{root}"),
                "Service/prop",
                Spec::Directory {
                    path: root.clone(),
                    owner: "root".into(),
                    group: "root".into(),
                    mode: 0o755,
                    delete_if_created: false,
                },
            )];
            for (i, (kind, dir, content, mode, nobody)) in entries.iter().enumerate() {
                let d = format!("{root}/d{dir}");
                if !resources.iter().any(|r| r.path() == Some(d.as_str())) {
                    resources.push(Resource::new(
                        format!("directory:{d}"),
                        "Service/prop",
                        Spec::Directory {
                            path: d.clone(),
                            owner: "root".into(),
                            group: "root".into(),
                            mode: 0o750,
                            delete_if_created: false,
                        },
                    ));
                }
                let path = format!("{d}/e{i}");
                let (owner, group) = if *nobody {
                    ("nobody", "nogroup")
                } else {
                    ("root", "root")
                };
                let spec = match kind {
                    0 | 1 => Spec::File {
                        path: path.clone(),
                        content: Content::text(content.clone()),
                        owner: owner.into(),
                        group: group.into(),
                        mode: *mode,
                        role: hostkit_engine::resource::FileRole::Plain,
                    },
                    _ => Spec::Symlink {
                        path: path.clone(),
                        to: format!("/etc/{}", content.len()),
                    },
                };
                let id = if *kind == 2 {
                    format!("symlink:{path}")
                } else {
                    format!("file:{path}")
                };
                resources.push(Resource::new(id, "Service/prop", spec));
            }
            link_paths(&mut resources);
            let secrets = Secrets::default();
            rt.block_on(async {
                let applied = converge(&ssh, &resources, &[], &secrets, &format!("p{n}")).await;
                prop_assert!(applied.ok);
                let again = prepare(&ssh, &resources, &[], &secrets).await;
                prop_assert!(again.plan.is_empty(), "{}", again.plan.render(true));
                Ok(())
            })
        })
        .unwrap();
}

/// A run of files is written in one step: a failure in the middle (a file whose owner
/// does not exist) is named, the step's other files are reported not changed and are not
/// changed (one already there keeps its content and inode), and nothing staged is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_file_in_a_run_is_named_and_its_step_changes_nothing() {
    use hostkit_engine::resource::{Content, FileRole};
    let host = TestHost::boot();
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    host.sh("mkdir -p /srv/run && echo before > /srv/run/f0");
    let inode = host.sh("stat -c %i /srv/run/f0");
    let mut resources = Vec::new();
    for i in 0..6 {
        let owner = if i == 3 { "no-such-user" } else { "root" };
        let path = format!("/srv/run/f{i}");
        resources.push(Resource::new(
            format!("file:{path}"),
            "Service/run",
            Spec::File {
                path,
                content: Content::text(format!("file {i}\n")),
                owner: owner.into(),
                group: "root".into(),
                mode: 0o644,
                role: FileRole::Plain,
            },
        ));
    }
    let prepared = prepare(&ssh, &resources, &[], &Secrets::default()).await;
    let applied = apply::apply(&ssh, &prepared, &ApplyOptions::new("r1"))
        .await
        .unwrap();
    assert!(!applied.ok);
    let error = applied.error.unwrap();
    assert!(
        error.starts_with("file:/srv/run/f3") && error.contains("no-such-user"),
        "{error}"
    );
    assert_eq!(host.sh("ls -A /srv/run"), "f0\n");
    assert_eq!(host.sh("cat /srv/run/f0"), "before\n");
    assert_eq!(host.sh("stat -c %i /srv/run/f0"), inode);
    let status = |id: &str| {
        let r = applied.results.iter().find(|r| r.id == id).unwrap();
        (r.status, r.message.clone().unwrap_or_default())
    };
    assert_eq!(status("file:/srv/run/f3").0, Status::Failed);
    for i in [0, 1, 2, 4, 5] {
        let (st, msg) = status(&format!("file:/srv/run/f{i}"));
        assert_eq!(st, Status::NotRun, "f{i}");
        assert!(msg.contains("file:/srv/run/f3"), "f{i}: {msg}");
    }
    assert!(applied.down.steps.is_empty(), "nothing to undo");
}
