//! Storage backups on a booted test host: the Service's backup job (a timer in its
//! sandbox) writes compressed, checksummed snapshots and keeps exactly `keep`; a restore
//! brings a snapshot back byte for byte, restarts the daemon, and is itself undone by the
//! snapshot it takes first; a snapshot that does not check out replaces nothing.

use hostkit_e2e::engine::{converge, demo, demo_secrets, options};
use hostkit_e2e::testhost::TestHost;
use hostkit_engine::backup::{self, Restore};
use hostkit_engine::transport::ssh::Ssh;

const DATA: &str = "/srv/demo/web";
const JOB: &str = "demo-web-backup-data.service";

/// Owner, mode and checksum of everything under the storage: byte-for-byte identity.
fn contents(host: &TestHost) -> String {
    host.sh(&format!(
        "cd {DATA} && find . -printf '%p %u:%g %m %s\\n' | sort && find . -type f -exec sha256sum {{}} + | sort -k2"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_keep_exactly_keep_and_a_restore_is_byte_exact_and_reversible() {
    let host = TestHost::boot();
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    let (mut d, _) = demo("v1", 8080);
    let spec = &mut d.services.get_mut("web").unwrap().spec;
    spec.storage[0].backup =
        Some(serde_json::from_value(serde_json::json!({"schedule": "hourly", "keep": 2})).unwrap());
    let resources = d.resources_for("target").unwrap();
    converge(&ssh, &resources, &[], &demo_secrets("t"), "r1").await;
    assert_eq!(
        host.sh("systemctl is-enabled demo-web-backup-data.timer"),
        "enabled\n"
    );
    let unit = host.sh(&format!("cat /etc/systemd/system/{JOB}"));
    assert!(unit.contains("User=demo-web"), "{unit}");
    assert!(
        unit.contains("ReadWritePaths=/var/backups/hostkit/web/data"),
        "{unit}"
    );
    assert!(
        unit.contains("ProtectSystem=strict"),
        "in the daemon's sandbox:\n{unit}"
    );

    let root = backup::root("web", "data");
    let mut states = Vec::new();
    for n in 1..=3 {
        host.sh(&format!(
            "mkdir -p {DATA}/uploads && printf 'upload {n}\\n' > {DATA}/uploads/u.txt && head -c 2000 /dev/urandom > {DATA}/blob && chown -R demo-web:demo-web {DATA}/uploads {DATA}/blob && chmod 0640 {DATA}/blob"
        ));
        states.push(contents(&host));
        backup::run_now(&ssh, JOB)
            .await
            .expect("the backup job runs");
    }
    let snaps = backup::list(&ssh, &root).await.unwrap();
    assert_eq!(snaps.len(), 2, "keep: 2 → exactly two: {snaps:?}");
    assert!(snaps[0].id > snaps[1].id, "newest first");
    assert!(snaps.iter().all(|s| s.bytes > 0 && s.sha256.len() == 64));
    host.sh(&format!("cd {root} && sha256sum -c --quiet *.sha256"));
    assert_eq!(
        host.sh(&format!("stat -c '%U %a' {root}")),
        "demo-web 700\n",
        "snapshots are the service's alone"
    );

    // Restore the older of the two (the second state) over a broken storage.
    host.sh(&format!(
        "rm -rf {DATA}/uploads && echo broken > {DATA}/blob && touch {DATA}/stray"
    ));
    let broken = contents(&host);
    let r = Restore {
        source: DATA.into(),
        root: root.clone(),
        id: snaps[1].id.clone(),
        entries: Vec::new(),
        units: vec!["demo-web.service".into()],
    };
    let steps = r.describe();
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("snapshot what is there now")),
        "{steps:?}"
    );
    let undo = backup::restore(&ssh, &r).await.expect("restore");
    assert_eq!(contents(&host), states[1], "byte for byte");
    assert_eq!(host.sh("systemctl is-active demo-web.service"), "active\n");

    // The restore's own snapshot undoes it.
    let back = Restore {
        id: undo,
        ..r.clone()
    };
    backup::restore(&ssh, &back).await.expect("undo");
    assert_eq!(contents(&host), broken);

    // A snapshot that does not check out replaces nothing.
    host.sh(&format!(
        "printf 'x' | dd of={root}/{id}.tar.gz bs=1 seek=100 conv=notrunc 2>/dev/null",
        id = snaps[0].id
    ));
    let bad = Restore {
        id: snaps[0].id.clone(),
        ..r
    };
    let e = backup::restore(&ssh, &bad).await.unwrap_err().to_string();
    assert!(e.contains("FAILED") || e.contains("checksum"), "{e}");
    assert_eq!(contents(&host), broken);
}

/// Through the controller and `hkctl`: `backup run` takes snapshots on the host, `list`
/// shows them, `restore` shows its steps, refuses without a yes when no one can answer,
/// restores with `--yes`, and prints the command that undoes it, which does.
#[test]
fn hkctl_backup_lists_runs_and_restores_through_the_controller() {
    use hostkit_e2e::server::{Hostkit, stderr, stdout};
    use std::time::Duration;

    let s = Hostkit::controller();
    let host = TestHost::boot();
    s.apply_yaml(&format!(
        r#"{host}---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {{name: shop}}
spec:
  hosts: [target]
  interval: 1h
  account: {{system: true}}
  storage:
    - {{name: data, path: /srv/shop, backup: {{keep: 3}}}}
"#,
        host = host.manifest("target", "")
    ));
    s.wait_condition("service", "shop", "Ready", "True", Duration::from_secs(90));
    let list = || stdout(&s.hkctl_ok(&["backup", "list", "service/shop", "--storage", "data"]));
    assert_eq!(
        list(),
        "HOST     STORAGE   SNAPSHOT     BYTES   SHA256\ntarget   data      (none yet)\n"
    );
    host.sh("echo one > /srv/shop/a.txt && chown shop:shop /srv/shop/a.txt");
    s.hkctl_ok(&["backup", "run", "service/shop", "--storage", "data"]);
    host.sh("echo two > /srv/shop/a.txt");
    let shown = stdout(&s.hkctl_ok(&["backup", "run", "service/shop", "--storage", "data"]));
    let ids: Vec<String> = shown
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{shown}");
    assert_eq!(list(), shown);
    let first = &ids[1];

    host.sh("echo broken > /srv/shop/a.txt");
    let restore = [
        "backup",
        "restore",
        "service/shop",
        "--storage",
        "data",
        "--id",
        first.as_str(),
    ];
    let o = s.hkctl(&restore);
    assert!(!o.status.success());
    assert!(stdout(&o).starts_with("Restore of service/shop storage data on host target:\n  1. verify the checksum of /var/backups/hostkit/shop/data/"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("not restoring: confirm on a terminal, or pass --yes"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        host.sh("cat /srv/shop/a.txt"),
        "broken\n",
        "nothing changed"
    );

    let mut yes = restore.to_vec();
    yes.push("--yes");
    let done = stdout(&s.hkctl_ok(&yes));
    assert_eq!(host.sh("cat /srv/shop/a.txt"), "one\n");
    let undo = done
        .lines()
        .last()
        .and_then(|l| l.split("to undo: hkctl ").nth(1))
        .unwrap_or_else(|| panic!("no undo command in {done}"));
    let mut args: Vec<&str> = undo.split(' ').collect();
    args.push("--yes");
    s.hkctl_ok(&args);
    assert_eq!(
        host.sh("cat /srv/shop/a.txt"),
        "broken\n",
        "the undo put back what the restore replaced"
    );

    // What a client sends is checked: a storage without a backup, a malformed id.
    let o = s.hkctl(&["backup", "list", "service/shop", "--storage", "nope"]);
    assert!(
        stderr(&o)
            .contains("\"nope\" is not a storage with a backup; its storage with backups: data"),
        "{}",
        stderr(&o)
    );
    let o = s.hkctl(&[
        "backup",
        "restore",
        "service/shop",
        "--storage",
        "data",
        "--id",
        "../../etc",
        "--yes",
    ]);
    assert!(
        stderr(&o).contains("is not a snapshot id"),
        "{}",
        stderr(&o)
    );
}
