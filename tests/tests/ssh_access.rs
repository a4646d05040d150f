//! How the engine reaches a host: host-key checks (pinned, known_hosts, acceptNew), a wrong
//! private key, retries while sshd is down, and a non-root user through sudo. On booted
//! systemd test hosts.

use std::time::Duration;

use hostkit_e2e::engine::{converge, demo, demo_secrets, options, prepare};
use hostkit_e2e::testhost::TestHost;
use hostkit_engine::apply::{self, ApplyOptions};
use hostkit_engine::plan::Action;
use hostkit_engine::resource::{Resource, Spec};
use hostkit_engine::transport::ssh::{Auth, HostKeyCheck, RetryPolicy, Ssh};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_refuses_wrong_host_keys_and_wrong_keys_and_retries_when_down() {
    let host = TestHost::boot();
    // A different pinned key.
    let mut o = options(&host);
    o.host_key = HostKeyCheck::Pinned(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ".into(),
    );
    let err = Ssh::connect(&o).await.err().unwrap().to_string();
    assert!(
        err.contains("host key refused") && err.contains("not the pinned key"),
        "{err}"
    );
    // known_hosts: unknown host refused under strict, recorded under acceptNew, then
    // accepted under strict.
    let kh = host.dir.path().join("kh");
    o.host_key = HostKeyCheck::KnownHosts(kh.clone());
    let err = Ssh::connect(&o).await.err().unwrap().to_string();
    assert!(
        err.contains("is not in") && err.contains("acceptNew"),
        "{err}"
    );
    o.host_key = HostKeyCheck::AcceptNew(kh.clone());
    Ssh::connect(&o).await.expect("acceptNew records the key");
    o.host_key = HostKeyCheck::KnownHosts(kh.clone());
    Ssh::connect(&o).await.expect("now known");
    // A changed key for a known host is a loud refusal.
    std::fs::write(
        &kh,
        format!(
            "{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ\n",
            host.address
        ),
    )
    .unwrap();
    let err = Ssh::connect(&o).await.err().unwrap().to_string();
    assert!(
        err.contains("is not the key") && err.contains("man-in-the-middle"),
        "{err}"
    );
    // The wrong private key is an authentication error, not a retry loop.
    let mut o = options(&host);
    let other = host.dir.path().join("other_key");
    assert!(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other)
            .status()
            .unwrap()
            .success()
    );
    o.auth = Auth::KeyFile(other);
    let err = Ssh::connect(&o).await.err().unwrap().to_string();
    assert!(err.contains("authentication as root failed"), "{err}");
    // sshd stopped: retried as configured, then a clear unreachable error.
    host.sh("systemctl stop ssh.socket ssh.service 2>/dev/null; systemctl stop ssh");
    let mut o = options(&host);
    o.retry = RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(150),
    };
    let started = std::time::Instant::now();
    let err = Ssh::connect(&o).await.err().unwrap().to_string();
    assert!(err.contains("unreachable after 3 attempt(s)"), "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the retries waited between attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_root_ssh_user_applies_through_sudo() {
    let host = TestHost::boot();
    host.sh(
        "useradd -m -s /bin/sh deploy && usermod -p '*' deploy && mkdir -p /home/deploy/.ssh && cp /root/.ssh/authorized_keys /home/deploy/.ssh/ && chown -R deploy: /home/deploy/.ssh && echo 'deploy ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deploy",
    );
    let mut o = options(&host);
    o.user = "deploy".into();
    o.sudo = true;
    let ssh = Ssh::connect(&o).await.expect("connect as deploy");
    let (d, _) = demo("v1", 8080);
    let resources = d.resources_for("target").unwrap();
    converge(&ssh, &resources, &[], &demo_secrets("t"), "r1").await;
    assert_eq!(
        host.sh("stat -c %U:%G /etc/demo/web/version.txt").trim(),
        "root:root"
    );
    assert!(
        prepare(&ssh, &resources, &[], &demo_secrets("t"))
            .await
            .plan
            .is_empty()
    );
    // Without sudo the same user cannot write /etc: the apply fails and says why.
    o.sudo = false;
    let plain = Ssh::connect(&o).await.unwrap();
    // A path it cannot even look at is a read_error of that resource, not a failed plan.
    host.sh("mkdir -p /root/private && chmod 700 /root/private");
    let mut with_private = resources.clone();
    with_private.push(Resource::new(
        "file:/root/private/x",
        "Service/web",
        Spec::File {
            path: "/root/private/x".into(),
            content: hostkit_engine::resource::Content::text("x"),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o600,
            role: hostkit_engine::resource::FileRole::Plain,
        },
    ));
    let p = prepare(&plain, &with_private, &[], &demo_secrets("t"))
        .await
        .plan;
    let private = p
        .changes
        .iter()
        .find(|c| c.id == "file:/root/private/x")
        .unwrap();
    assert_eq!(private.action, Action::ReadError, "{}", p.render(false));
    assert!(
        private.reason.contains("Permission denied"),
        "{}",
        private.reason
    );
    // Everything the user can read is planned normally (the 0640 env file is not readable
    // for it either, and is reported the same way).
    for id in [
        "file:/etc/demo/web/version.txt",
        "unit:demo-web.service",
        "directory:/srv/demo/web",
    ] {
        let c = p.changes.iter().find(|c| c.id == id).unwrap();
        assert_ne!(c.action, Action::ReadError, "{id}: {}", c.reason);
    }
    let env = p
        .changes
        .iter()
        .find(|c| c.id == "file:/etc/demo/web/runtime.env")
        .unwrap();
    assert_eq!(env.action, Action::ReadError, "{}", env.reason);
    host.sh("rm /etc/demo/web/version.txt");
    let prepared = prepare(&plain, &resources, &[], &demo_secrets("t")).await;
    let applied = apply::apply(&plain, &prepared, &ApplyOptions::new("r2"))
        .await
        .unwrap();
    assert!(!applied.ok);
    let error = applied.error.unwrap();
    assert!(error.contains("Permission denied"), "{error}");
}
