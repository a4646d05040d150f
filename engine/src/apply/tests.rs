use super::*;
use crate::offline::manifests::Desired;
use crate::plan;
use crate::secrets::Secrets;
use crate::state::{HostState, PathState};
use crate::transport::{Output, Recording};

fn demo() -> Vec<Resource> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("d.yaml");
    std::fs::write(
        &f,
        r#"
apiVersion: hostkit.dev/v1alpha1
kind: Host
metadata: {name: h}
spec: {address: 127.0.0.1}
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {name: app}
spec:
  hosts: [h]
  account: {system: true}
  storage: [{name: data}]
  env:
    runtime:
      set: {A: "1"}
  daemon: {exec: [/bin/sleep, infinity], env: [runtime]}
  commands:
    - name: migrate
      exec: [/bin/true]
      phase: beforeStart
      down: noop
"#,
    )
    .unwrap();
    Desired::load(&[f]).unwrap().resources_for("h").unwrap()
}

fn empty_host(resources: &[Resource]) -> HostState {
    let mut st = HostState::default();
    for r in resources {
        match &r.spec {
            Spec::File { .. } | Spec::Directory { .. } => {
                st.paths.insert(r.id.clone(), PathState::Absent);
            }
            Spec::Account { .. } => {
                st.accounts.insert(r.id.clone(), None);
            }
            _ => {}
        }
    }
    st
}

#[tokio::test]
async fn apply_sends_changes_in_graph_order_with_one_reload_before_units() {
    let resources = demo();
    let prepared = plan::compute(
        "h",
        &resources,
        &[],
        &empty_host(&resources),
        &Secrets::default(),
    )
    .unwrap();
    let t = Recording::default();
    let applied = apply(&t, &prepared, &ApplyOptions::new("r1"))
        .await
        .unwrap();
    assert!(applied.ok, "{:?}", applied.error);
    let scripts = t.recorded();
    assert_eq!(scripts.len(), 1, "one batch");
    let s = &scripts[0];
    let at = |needle: &str| {
        s.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing in:\n{s}"))
    };
    // account → storage → env file and unit file → command → reload → start.
    assert!(at("useradd --system") < at("mkdir -p /var/lib/app"));
    assert!(at("mkdir -p /var/lib/app") < at("/n/runtime.env"));
    assert!(at("/n/app.service") < at("exec /bin/true"));
    assert!(at("exec /bin/true") < at("systemctl daemon-reload"));
    assert!(at("systemctl daemon-reload") < at("systemctl restart app.service"));
    assert_eq!(s.matches("systemctl daemon-reload").count(), 1);
    assert!(s.contains("ln -sfn /etc/systemd/system/app.service /etc/systemd/system/multi-user.target.wants/app.service"));
    // The down plan undoes it in reverse: stop the unit, remove the files; the account
    // and the created storage folder are kept with warnings.
    let down: Vec<String> = applied.down.steps.iter().map(|s| s.id.clone()).collect();
    assert_eq!(down.first().map(String::as_str), Some("unit:app.service"));
    assert!(
        applied
            .down
            .coverage
            .skipped
            .iter()
            .any(|(id, _)| id == "account:app")
    );
    assert_eq!(applied.down.coverage.noop, 1);
}

#[tokio::test]
async fn a_failed_change_ends_the_batch_and_later_ones_are_not_run() {
    let resources = demo();
    let prepared = plan::compute(
        "h",
        &resources,
        &[],
        &empty_host(&resources),
        &Secrets::default(),
    )
    .unwrap();
    let t = Recording::default();
    t.reply(
        "useradd",
        Output {
            status: 0,
            stdout: b"HK_BEGIN 0\nuseradd: permission denied\nHK_END 0 1\n".to_vec(),
            ..Default::default()
        },
    );
    let applied = apply(&t, &prepared, &ApplyOptions::new("r1"))
        .await
        .unwrap();
    assert!(!applied.ok);
    assert!(
        applied
            .error
            .as_deref()
            .unwrap()
            .starts_with("account:app: exit status 1")
    );
    assert!(
        applied
            .error
            .as_deref()
            .unwrap()
            .contains("permission denied")
    );
    assert!(
        applied.results[1..]
            .iter()
            .all(|r| r.status == Status::NotRun)
    );
    assert!(
        applied.down.steps.is_empty(),
        "nothing ran, nothing to undo"
    );
}

/// Files written in one step still get one result each, with their own backup, and the
/// down plan restores each from its own.
#[tokio::test]
async fn files_written_together_keep_their_own_backups_in_the_down_plan() {
    let resources = demo();
    let mut host = empty_host(&resources);
    let files = ["/etc/app/runtime.env", "/etc/systemd/system/app.service"];
    for f in files {
        host.paths.insert(
            Resource::file_id(f),
            PathState::File {
                owner: "root".into(),
                group: "root".into(),
                mode: 0o644,
                sha256: "00".repeat(32),
                size: 1,
                content: None,
            },
        );
    }
    let prepared = plan::compute("h", &resources, &[], &host, &Secrets::default()).unwrap();
    let opts = ApplyOptions::new("r1");
    // First learn the step layout, then answer every step, the files step with a backup
    // line per file.
    let probe = Recording::default();
    apply(&probe, &prepared, &opts).await.unwrap();
    let script = probe.recorded().remove(0);
    // Each step starts with its marker at the start of a line.
    let steps: Vec<&str> = script.split("\nprintf 'HK_BEGIN ").skip(1).collect();
    let at = steps
        .iter()
        .position(|s| s.contains("/n/runtime.env"))
        .expect("a files step");
    assert!(
        steps[at].contains("/n/app.service"),
        "both files are written by one step"
    );
    let root = crate::naming::backup_root("r1");
    let mut out = String::new();
    for i in 0..steps.len() {
        out.push_str(&format!("HK_BEGIN {i}\n"));
        if i == at {
            for (n, f) in files.iter().enumerate() {
                out.push_str(&format!(
                    "BACKUP\t{}\t{}\tsalted\n",
                    crate::naming::file_backup(&root, f),
                    format!("{n}{n}").repeat(32)
                ));
            }
        }
        out.push_str(&format!("HK_END {i} 0\n"));
    }
    let t = Recording::default();
    t.reply(
        "HK_BEGIN",
        Output {
            status: 0,
            stdout: out.into_bytes(),
            ..Default::default()
        },
    );
    let applied = apply(&t, &prepared, &opts).await.unwrap();
    assert!(applied.ok, "{:?}", applied.error);
    for (n, f) in files.iter().enumerate() {
        let id = Resource::file_id(f);
        let r = applied.results.iter().find(|r| r.id == id).unwrap();
        assert_eq!(r.status, Status::Applied);
        let b = r.backup.as_ref().expect("its own backup");
        assert_eq!(b.path, crate::naming::file_backup(&root, f));
        assert_eq!(b.sha256, format!("{n}{n}").repeat(32));
        let step = applied.down.steps.iter().find(|s| s.id == id).unwrap();
        assert!(
            matches!(&step.action, crate::down::DownAction::RestoreFile { backup, sha256, .. }
                if *backup == b.path && *sha256 == b.sha256),
            "{:?}",
            step.action
        );
    }
}
