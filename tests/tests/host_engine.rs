//! The host engine against real hosts: booted systemd containers with sshd (see
//! `hostkit_e2e::testhost`), reached with the russh transport.

use std::path::PathBuf;
use std::time::Duration;

use hostkit_api::kinds::{Directory, Package};
use hostkit_api::values::SecretRef;
use hostkit_e2e::testhost::TestHost;
use hostkit_reconcilers::apply::{self, ApplyOptions, Applied};
use hostkit_reconcilers::manifests::Desired;
use hostkit_reconcilers::plan::{self, Action, Prepared};
use hostkit_reconcilers::resource::{Resource, Spec};
use hostkit_reconcilers::secrets::Secrets;
use hostkit_reconcilers::ssh::{Auth, HostKeyCheck, RetryPolicy, Ssh, SshOptions};
use hostkit_reconcilers::state;
use hostkit_reconcilers::transport::Transport;

fn options(host: &TestHost) -> SshOptions {
    SshOptions {
        name: host.name.clone(),
        address: host.address.clone(),
        port: 22,
        user: "root".into(),
        auth: Auth::KeyFile(host.key()),
        host_key: HostKeyCheck::Pinned(host.host_key()),
        connect_timeout: Duration::from_secs(5),
        retry: RetryPolicy::default(),
        keepalive: Duration::from_secs(10),
        sudo: false,
    }
}

async fn prepare(t: &dyn Transport, resources: &[Resource], previous: &[Resource], secrets: &Secrets) -> Prepared {
    let st = state::read(t, resources).await.expect("state read");
    plan::compute(t.host(), resources, previous, &st, secrets).expect("plan")
}

async fn converge(t: &dyn Transport, resources: &[Resource], previous: &[Resource], secrets: &Secrets, revision: &str) -> Applied {
    let prepared = prepare(t, resources, previous, secrets).await;
    let applied = apply::apply(t, &prepared, Some("apt-get"), &ApplyOptions::new(revision))
        .await
        .expect("apply");
    assert!(applied.ok, "apply failed: {:?}\n{}", applied.error, prepared.plan.render(true));
    applied
}

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
            c.exec = vec!["/bin/sh".into(), "-c".into(), format!("echo {} >> /var/tmp/commands", c.name)];
            if let Some(hostkit_api::kinds::CommandDown::Exec(d)) = &mut c.down {
                d.exec = vec!["/bin/sh".into(), "-c".into(), format!("echo undo-{} >> /var/tmp/commands", c.name)];
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
    Secrets::default().with(SecretRef::Env("DATABASE_URL".into()), "postgres://api:s3cret@db/api")
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
                assert_eq!(host.sh(&format!("systemctl is-active {name}")).trim(), "active", "{host_name}: {name}");
            }
        }
        let again = prepare(&ssh, &resources, &[], &secrets()).await;
        assert!(again.plan.is_empty(), "{host_name}: second plan not empty:\n{}", again.plan.render(true));
        // The secret reached the host file and nowhere else.
        let applied_json = serde_json::to_string(&applied).unwrap();
        let plan_json = serde_json::to_string(&again.plan).unwrap();
        assert!(!applied_json.contains("s3cret") && !plan_json.contains("s3cret"));
        if host_name == "app" {
            assert!(host.sh("cat /etc/api/api.env").contains("DATABASE_URL=\"postgres://api:s3cret@db/api\""));
            assert_eq!(host.sh("stat -c '%U:%G %a' /etc/api/api.env").trim(), "root:api 640");
            assert!(host.sh("dpkg-query -W tree").starts_with("tree"));
            assert_eq!(host.sh("cat /var/tmp/commands"), "migrate\nwarm-cache\n");
        }
        if host_name == "edge" {
            let table = host.sh("nft list table inet hostkit");
            assert!(table.contains("tcp dport 22 accept") && table.contains("policy drop"), "{table}");
        }
    }
}
