//! The controller holds root on its hosts, so it must follow exactly the Host it was given:
//! a host whose key changed is refused within one reconcile (no restart), a Host moved to a
//! new address is changed there and only there, and text that would add a directive to a
//! unit file never reaches a host. Real `hostkit serve`, booted test hosts over SSH.

use std::time::Duration;

use hostkit_e2e::server::{Hostkit, condition};
use hostkit_e2e::testhost::TestHost;
use hostkit_e2e::wait_until;

fn host_yaml(name: &str, host: &TestHost, key: &str) -> String {
    format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}}}\nspec:\n  address: {}\n  interval: 2s\n  ssh:\n    user: root\n    identityFile: {}\n    hostKey: {{policy: pinned, key: \"{key}\"}}\n    retry: {{attempts: 1}}\n    connectTimeout: 2s\n---\n",
        host.address,
        host.key().display(),
    )
}

fn service_yaml(version: &str) -> String {
    format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {{name: marker}}\nspec:\n  hosts: [target]\n  interval: 2s\n  files: [{{path: /etc/marker.txt, content: \"{version}\\n\"}}]\n"
    )
}

/// The marker file as the host has it (read without SSH: the host may refuse us).
fn marker(host: &TestHost) -> String {
    host.try_nsenter("cat /etc/marker.txt 2>/dev/null")
        .1
        .trim()
        .to_string()
}

fn reachable(s: &Hostkit) -> Option<(String, String, String)> {
    s.get("host", "target")
        .and_then(|v| condition(&v, "Reachable"))
}

#[test]
fn a_host_whose_key_changed_is_refused_without_a_restart() {
    let host = TestHost::boot();
    let s = Hostkit::controller();
    s.apply_yaml(&(host_yaml("target", &host, &host.host_key()) + &service_yaml("v1")));
    assert!(
        wait_until(Duration::from_secs(60), || marker(&host) == "v1"),
        "v1 never applied\n{}",
        s.log()
    );
    // Rotate the host's keys: the old connection still works, but the host is no longer the
    // one the Host pins.
    host.nsenter("rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && systemctl restart ssh");
    let new_key = host
        .nsenter("cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub")
        .trim()
        .to_string();
    assert!(
        wait_until(Duration::from_secs(20), || {
            reachable(&s).is_some_and(|(st, reason, _)| st == "False" && reason == "HostKeyChanged")
        }),
        "the changed key was not noticed: {:?}\n{}",
        reachable(&s),
        s.log()
    );
    let (_, _, message) = reachable(&s).unwrap();
    assert!(
        message.contains("is not the pinned key"),
        "the message names both keys: {message}"
    );
    assert_eq!(
        message.matches("SHA256:").count(),
        2,
        "both fingerprints: {message}"
    );
    let events = s.wait_events("host/target", &["HostKeyChanged"]);
    assert!(events.contains("HostKeyChanged"), "{events}");

    // Nothing is applied to a host that is not the one pinned.
    s.apply_yaml(&service_yaml("v2"));
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        marker(&host),
        "v1",
        "a change reached a host with a changed key"
    );

    // Pinning the new key lets it through again, still without a restart.
    s.apply_yaml(&host_yaml("target", &host, &new_key));
    assert!(
        wait_until(Duration::from_secs(60), || marker(&host) == "v2"),
        "v2 never applied after the new key was pinned\n{}",
        s.log()
    );
}

#[test]
fn a_host_moved_to_a_new_address_is_changed_there_only() {
    let old = TestHost::boot();
    let new = TestHost::boot();
    let s = Hostkit::controller();
    s.apply_yaml(&(host_yaml("target", &old, &old.host_key()) + &service_yaml("v1")));
    assert!(
        wait_until(Duration::from_secs(60), || marker(&old) == "v1"),
        "v1 never applied\n{}",
        s.log()
    );
    // Same name, new machine (the test hosts share one image, so one host key).
    s.apply_yaml(&(host_yaml("target", &new, &new.host_key()) + &service_yaml("v2")));
    assert!(
        wait_until(Duration::from_secs(60), || marker(&new) == "v2"),
        "v2 never reached the new address\n{}",
        s.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        marker(&old),
        "v1",
        "the old machine was changed after the move"
    );
}

#[test]
fn a_description_that_would_add_a_directive_never_reaches_the_host() {
    let host = TestHost::boot();
    let s = Hostkit::controller();
    s.apply_yaml(&host_yaml("target", &host, &host.host_key()));
    let evil = "apiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {name: evil}\nspec:\n  hosts: [target]\n  daemon:\n    description: \"harmless\\n[Service]\\nExecStartPre=+/bin/sh -c 'id > /root/x'\"\n    exec: [/bin/sleep, infinity]\n    isolate: {profile: strict_app}\n";
    let file = s.dir().join("evil.yaml");
    std::fs::write(&file, evil).unwrap();
    let out = s.hkctl(&["apply", "-f", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "the document was accepted");
    assert!(
        err.contains("spec.daemon.description") && err.contains("control character"),
        "{err}"
    );
    assert!(
        s.get("service", "evil").is_none(),
        "nothing is stored from a refused document"
    );
    // The Host reconciles; give a stored Service time to reach the host, then look.
    assert!(wait_until(Duration::from_secs(30), || {
        reachable(&s).is_some_and(|(st, _, _)| st == "True")
    }));
    std::thread::sleep(Duration::from_secs(3));
    let (_, listing, _) = host.try_nsenter("ls /root/x /etc/systemd/system/evil.service 2>&1");
    assert!(
        listing.contains("No such file") && !listing.contains("\n/root/x"),
        "{listing}"
    );
}
