//! Deleting undoes what was applied, from what the Revisions recorded: `hkctl delete -f` of
//! a file that holds a Project and its Service (whose paths and unit names come from the
//! Project), or a Host and its Service, leaves nothing of the Service on the host. Real
//! `hostkit serve`, a booted test host over SSH.

use std::time::Duration;

use hostkit_e2e::server::{Hostkit, condition};
use hostkit_e2e::testhost::TestHost;
use hostkit_e2e::wait_until;

fn host_yaml(host: &TestHost) -> String {
    format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {{name: target}}\nspec:\n  address: {}\n  interval: 2s\n  ssh:\n    user: root\n    identityFile: {}\n    hostKey: {{policy: pinned, key: \"{}\"}}\n    connectTimeout: 2s\n---\n",
        host.address,
        host.key().display(),
        host.host_key()
    )
}

/// A Project whose roots and prefixes decide every path and name of its Service.
const SHOP: &str = r#"apiVersion: hostkit.dev/v1alpha1
kind: Project
metadata: {name: shop}
spec:
  roots: {config: /etc/shop, state: /var/lib/shop}
  prefixes: {unit: shop-, user: shop-}
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {name: cart}
spec:
  project: shop
  hosts: [target]
  interval: 2s
  account: {system: true}
  env:
    runtime:
      set: {PORT: "8080"}
  files:
    - {path: "${roots.config}/cart/cart.toml", content: "port = 8080\n"}
  jobs:
    - name: sweep
      exec: [/bin/true]
      schedule: {onCalendar: [hourly]}
  daemon:
    exec: [/bin/sleep, infinity]
    env: [runtime]
"#;

/// What of the Service is on the host: its unit files and config files, and whether its
/// daemon runs.
fn leftovers(host: &TestHost) -> String {
    host.nsenter(
        "ls /etc/systemd/system | grep '^shop-cart' ; find /etc/shop -type f 2>/dev/null; systemctl is-active shop-cart.service 2>/dev/null | grep -x active; true",
    )
}

fn ready(s: &Hostkit) -> bool {
    s.get("service", "cart")
        .and_then(|v| condition(&v, "Ready"))
        .is_some_and(|(st, _, _)| st == "True")
}

fn delete_file(s: &Hostkit, text: &str) -> String {
    let file = s.dir().join("delete.yaml");
    std::fs::write(&file, text).unwrap();
    let out = s.hkctl_ok(&[
        "delete",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "--timeout",
        "120s",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn deleting_a_file_of_objects_leaves_nothing_of_its_service_on_the_host() {
    let host = TestHost::boot();
    let s = Hostkit::controller();
    s.apply_yaml(&(host_yaml(&host) + SHOP));
    assert!(
        wait_until(Duration::from_secs(90), || ready(&s)),
        "never Ready\n{}",
        s.log()
    );
    let before = leftovers(&host);
    for expected in [
        "shop-cart.service",
        "shop-cart-sweep.service",
        "shop-cart-sweep.timer",
        "/etc/shop/cart/cart.toml",
        "/etc/shop/cart/runtime.env",
        "active",
    ] {
        assert!(before.contains(expected), "{expected} missing:\n{before}");
    }

    // The Project goes in the same breath: the paths cannot come from it any more.
    let said = delete_file(&s, SHOP);
    assert!(
        said.contains("project/shop") && said.contains("service/cart"),
        "{said}"
    );
    // `--wait` printed the cleanup's steps on each host as it went.
    assert!(
        said.lines()
            .any(|l| l.starts_with("service/cart: CleanedUp: ")),
        "{said}"
    );
    assert_eq!(leftovers(&host), "", "left on the host");
    let events = s.hkctl(&["events", "--for", "service/cart"]);
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(events.contains("CleanedUp"), "{events}");

    // Again, with the Host in the same file: the Host waits until its Service is off it.
    let both = host_yaml(&host) + SHOP;
    s.apply_yaml(&both);
    assert!(
        wait_until(Duration::from_secs(90), || ready(&s)),
        "never Ready again\n{}",
        s.log()
    );
    // The new Service's description shows its own events, not the deleted one's cleanup.
    let described =
        String::from_utf8_lossy(&s.hkctl(&["describe", "service", "cart"]).stdout).into_owned();
    assert!(
        described.contains("Applied") && !described.contains("CleanedUp"),
        "{described}"
    );
    let again = leftovers(&host);
    assert!(
        again.contains("shop-cart.service"),
        "Ready, but the host has only:\n{again}\nService: {:#?}\nevents: {}\n{}",
        s.get("service", "cart").map(|v| v["status"].clone()),
        String::from_utf8_lossy(&s.hkctl(&["events"]).stdout),
        s.log()
    );
    delete_file(&s, &both);
    assert_eq!(leftovers(&host), "", "left on the host");
    assert!(s.get("host", "target").is_none());
}
