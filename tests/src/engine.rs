//! Helpers for the engine's tests against real hosts: SSH options for a booted test host,
//! plan-then-apply, and the demo Project/Host/Service in a given version.

use std::time::Duration;

use hostkit_api::values::SecretRef;
use hostkit_engine::apply::{self, Applied, ApplyOptions};
use hostkit_engine::offline::manifests::Desired;
use hostkit_engine::plan::{self, Prepared};
use hostkit_engine::resource::Resource;
use hostkit_engine::secrets::Secrets;
use hostkit_engine::transport::Transport;
use hostkit_engine::transport::ssh::{Auth, HostKeyCheck, RetryPolicy, SshOptions};

use crate::testhost::TestHost;

pub fn options(host: &TestHost) -> SshOptions {
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

/// The resources manifests `text` give Host `target` (loaded as `hostkit plan -f` would).
pub fn target_resources(text: &str) -> Vec<Resource> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifests.yaml");
    std::fs::write(&path, text).unwrap();
    let d = Desired::load(&[path]).expect("the manifests load");
    d.resources_for("target").expect("resources for target")
}

pub async fn prepare(
    t: &dyn Transport,
    resources: &[Resource],
    previous: &[Resource],
    secrets: &Secrets,
) -> Prepared {
    plan::prepare(t, resources, previous, secrets)
        .await
        .expect("plan")
}

pub async fn converge(
    t: &dyn Transport,
    resources: &[Resource],
    previous: &[Resource],
    secrets: &Secrets,
    revision: &str,
) -> Applied {
    let prepared = prepare(t, resources, previous, secrets).await;
    let applied = apply::apply(t, &prepared, &ApplyOptions::new(revision))
        .await
        .expect("apply");
    assert!(
        applied.ok,
        "apply failed: {:?}\n{}",
        applied.error,
        prepared.plan.render(true)
    );
    applied
}

pub fn demo(version: &str, port: u16) -> (Desired, String) {
    let text = format!(
        r#"
apiVersion: hostkit.dev/v1alpha1
kind: Project
metadata: {{name: demo}}
spec:
  roots: {{data: /srv/demo, config: /etc/demo}}
  prefixes: {{user: demo-, unit: demo-}}
---
apiVersion: hostkit.dev/v1alpha1
kind: Host
metadata: {{name: target}}
spec:
  address: 127.0.0.1
  bootstrap:
    packages: [tree]
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {{name: web}}
spec:
  project: demo
  hosts: [target]
  account: {{system: true}}
  storage:
    - name: data
      mode: "0750"
  files:
    - path: /etc/demo/web/version.txt
      content: "{version}\n"
      mode: "0644"
    - path: /srv/demo/web/index.html
      content: "<h1>{version}</h1>\n"
      owner: ${{service.user}}
  env:
    runtime:
      set: {{PORT: "{port}", VERSION: "{version}"}}
      secrets: {{TOKEN: {{env: DEMO_TOKEN}}}}
  daemon:
    exec: [/usr/bin/python3, -m, http.server, --bind, 127.0.0.1, "{port}", --directory, "${{storage.data}}"]
    env: [runtime]
    isolate:
      profile: strict_web
      writable: [data]
      network: loopback
  jobs:
    - name: tick
      exec: [/bin/true]
      schedule: {{onCalendar: ["*-*-* *:00:00"]}}
  commands:
    - name: seed
      exec: [/bin/sh, -c, "echo {version} >> /srv/demo/web/seeded"]
      down: {{exec: [/bin/sh, -c, "echo undo-{version} >> /srv/demo/web/seeded"]}}
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.yaml");
    std::fs::write(&path, &text).unwrap();
    (Desired::load(&[path]).expect("demo manifests"), text)
}

/// The demo Service's daemon, to change it before converging.
pub fn web_daemon(d: &mut Desired) -> &mut hostkit_api::kinds::Daemon {
    d.services
        .get_mut("web")
        .and_then(|s| s.spec.daemon.as_mut())
        .expect("the demo Service has a daemon")
}

pub fn demo_secrets(token: &str) -> Secrets {
    Secrets::default().with(SecretRef::Env("DEMO_TOKEN".into()), token)
}
