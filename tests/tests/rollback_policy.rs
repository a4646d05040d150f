//! What a down plan keeps: `rollback: keep` on a file leaves a created file in place, and a
//! directory created with `rollback: deleteIfCreated` goes only while it is empty (as the
//! original HostKit did, `rmdir`, never `rm -rf` over files someone else put there). On a
//! booted test host.

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
metadata: {name: policy}
spec:
  hosts: [target]
  directories:
    - {path: /srv/policy, rollback: deleteIfCreated}
    - {path: /srv/policy/empty, rollback: deleteIfCreated}
    - {path: /srv/policy/full, rollback: deleteIfCreated}
  files:
    - {path: /srv/policy/kept.txt, content: "kept\n", rollback: keep}
    - {path: /srv/policy/gone.txt, content: "gone\n"}
    - {path: /srv/policy/full/managed.txt, content: "managed\n"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_file_stays_and_a_directory_goes_only_while_empty() {
    let host = TestHost::boot();
    let ssh = Ssh::connect(&options(&host)).await.expect("connect");
    let resources = target_resources(MANIFESTS);
    let applied = converge(&ssh, &resources, &[], &Secrets::default(), "r1").await;
    // Someone else's file in a directory HostKit created.
    host.sh("echo theirs > /srv/policy/full/theirs.txt");

    let down = &applied.down;
    let text = down.render();
    assert!(
        down.coverage
            .skipped
            .iter()
            .any(|(_, why)| why == "file /srv/policy/kept.txt is kept (rollback: keep)"),
        "{text}"
    );
    assert!(
        text.contains("remove directory /srv/policy/full if empty"),
        "{text}"
    );
    let result = hostkit_engine::down::run_down(&ssh, down).await.unwrap();
    assert!(result.ok, "{:?}\n{text}", result.steps);

    assert_eq!(host.sh("cat /srv/policy/kept.txt"), "kept\n");
    assert_eq!(
        host.try_sh("test -e /srv/policy/gone.txt").0,
        1,
        "a created file goes"
    );
    assert_eq!(
        host.try_sh("test -e /srv/policy/empty").0,
        1,
        "an empty created directory goes"
    );
    assert_eq!(
        host.sh("ls /srv/policy/full"),
        "theirs.txt\n",
        "HostKit's file went, the directory stays with theirs"
    );
    assert_eq!(host.try_sh("test -e /srv/policy/full/managed.txt").0, 1);
}
