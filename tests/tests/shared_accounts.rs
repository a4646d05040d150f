//! Accounts across Services on one host: everything planned for a host is one graph, so a
//! folder owned by another Service's account (whichever name sorts first) and a daemon
//! running as an account the Host declares converge in one apply.

use hostkit_e2e::engine::{converge, options};
use hostkit_e2e::testhost::TestHost;
use hostkit_engine::offline::manifests::Desired;
use hostkit_engine::secrets::Secrets;
use hostkit_engine::transport::ssh::Ssh;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_and_daemons_of_other_services_accounts_converge_in_either_name_order() {
    let host = TestHost::boot();
    let mut text = host.manifest("target", "  accounts: [{name: shared, system: true}]\n");
    text.push_str(
        r#"---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {name: alpha}
spec:
  hosts: [target]
  directories: [{path: /srv/alpha, owner: zeta, mode: "0750"}]
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {name: zeta}
spec:
  hosts: [target]
  account: {system: true}
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {name: beta}
spec:
  hosts: [target]
  account: {system: true}
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {name: yotta}
spec:
  hosts: [target]
  directories: [{path: /srv/yotta, owner: beta}]
  daemon:
    exec: [/bin/sleep, infinity]
    user: shared
"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, text).unwrap();
    let d = Desired::load(&[path]).expect("manifests");
    let resources = d.resources_for("target").unwrap();
    let edge = |id: &str, to: &str| {
        resources
            .iter()
            .find(|r| r.id == id)
            .is_some_and(|r| r.depends_on.iter().any(|e| e.id == to))
    };
    assert!(edge("directory:/srv/alpha", "account:zeta"));
    assert!(edge("directory:/srv/yotta", "account:beta"));
    assert!(edge(
        "file:/etc/systemd/system/yotta.service",
        "account:shared"
    ));
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    converge(&ssh, &resources, &[], &Secrets::default(), "r1").await;
    assert_eq!(host.sh("stat -c %U /srv/alpha /srv/yotta"), "zeta\nbeta\n");
    assert_eq!(
        host.sh("systemctl is-active yotta.service; ps -o user= -C sleep"),
        "active\nshared\n"
    );
}
