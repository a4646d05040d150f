//! Modes as people write them reach the host as the digits they mean: a name
//! (`private_dir`, `secret_group_file`) or permissions by who (`[owner: rw, group: r]`),
//! on a booted test host.

use hostkit_e2e::engine::{converge, options, target_resources};
use hostkit_e2e::testhost::TestHost;
use hostkit_engine::secrets::Secrets;
use hostkit_engine::transport::ssh::Ssh;

const MANIFESTS: &str = r#"
apiVersion: hostkit.dev/v1alpha1
kind: Host
metadata: {name: target}
spec: {address: 127.0.0.1}
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {name: modes}
spec:
  hosts: [target]
  directories:
    - {path: /srv/modes, mode: private_dir}
    - {path: /srv/modes/shared, mode: {owner: rwx, group: rwx, special: setgid}}
  files:
    - {path: /srv/modes/secret.env, content: "A=1\n", mode: secret_group_file}
    - {path: /srv/modes/listed.txt, content: "x\n", mode: [owner: rw, group: r]}
    - {path: /srv/modes/digits.txt, content: "x\n", mode: "0604"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_names_and_permissions_by_who_reach_the_host() {
    let host = TestHost::boot();
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    let resources = target_resources(MANIFESTS);
    converge(&ssh, &resources, &[], &Secrets::default(), "r1").await;
    let modes = host.sh(
        "stat -c '%n %a' /srv/modes /srv/modes/shared /srv/modes/secret.env /srv/modes/listed.txt /srv/modes/digits.txt",
    );
    assert_eq!(
        modes,
        "/srv/modes 700\n/srv/modes/shared 2770\n/srv/modes/secret.env 640\n/srv/modes/listed.txt 640\n/srv/modes/digits.txt 604\n"
    );
    // A second plan sees the same digits: nothing to do.
    let again =
        hostkit_e2e::engine::prepare(&ssh, &resources, &resources, &Secrets::default()).await;
    assert!(again.plan.is_empty(), "{}", again.plan.render(true));
}
