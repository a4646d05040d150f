//! `hostkit serve` as the system service `hostkit install --systemd` makes of it, on a
//! booted test host: `systemctl start` returns once the server is ready (Type=notify),
//! the server runs as a dynamic user inside its sandbox, reaches a host over SSH with the
//! key it got as a credential, and `hkctl` drives it from outside the host.

use std::time::Duration;

use hostkit_e2e::server::bin;
use hostkit_e2e::testhost::TestHost;
use hostkit_e2e::wait_until;

const BIN: &str = "/usr/local/bin/hostkit";

#[test]
fn the_installed_service_starts_ready_sandboxed_and_manages_a_host() {
    let host = TestHost::boot();
    host.copy_in(&bin("hostkit"), BIN, 0o755);
    let installed = host.sh(&format!("{BIN} install --systemd --bin {BIN}"));
    assert!(installed.contains("ssh-ed25519 "), "{installed}");
    assert_eq!(
        host.sh("stat -c '%a %U' /etc/hostkit/ssh/id_ed25519 /etc/hostkit/hostkit.env"),
        "600 root\n600 root\n"
    );
    // The unit passes systemd's own checks.
    let (ok, verify) =
        host.try_sh("systemd-analyze verify /etc/systemd/system/hostkit.service 2>&1");
    assert_eq!(ok, 0, "{verify}");

    // Served on every interface, so that hkctl reaches it from outside; the controller's
    // key may log in to this very host (its second authorized_keys file).
    host.sh("echo HOSTKIT_LISTEN=0.0.0.0:7443 >> /etc/hostkit/hostkit.env");
    host.sh("cat /etc/hostkit/ssh/id_ed25519.pub >> /root/.ssh/authorized_keys2");
    // Type=notify: start returns only once READY=1 was sent, so the API answers at once.
    host.sh("systemctl enable --now hostkit.service");
    assert_eq!(
        host.sh("curl -fsS http://127.0.0.1:7443/readyz >/dev/null && echo ready || echo not"),
        "ready\n"
    );
    let show = host.sh("systemctl show -p Type -p ActiveState -p MainPID hostkit.service");
    assert!(
        show.contains("Type=notify") && show.contains("ActiveState=active"),
        "{show}"
    );
    let pid: String = show
        .lines()
        .find_map(|l| l.strip_prefix("MainPID="))
        .unwrap()
        .to_string();
    let user = host.sh(&format!("stat -c %U /proc/{pid}"));
    assert_ne!(user.trim(), "root", "a dynamic user, not root");
    let exposure = host.sh("systemd-analyze security hostkit.service --no-pager | tail -n 1");
    println!("{}", exposure.trim());

    // hkctl from this machine, with the admin token the service made in its state folder.
    let token = host.sh("cat /var/lib/hostkit/admin.token");
    let server = format!("http://{}:7443", host.address);
    let hkctl = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut child = std::process::Command::new(bin("hkctl"))
            .args(["--server", &server, "--token", token.trim()])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "hkctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let manifests = format!(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {{name: self}}\nspec:\n  address: 127.0.0.1\n  ssh: {{user: root, hostKey: {{policy: pinned, key: \"{}\"}}}}\n---\napiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {{name: hello}}\nspec:\n  hosts: [self]\n  files:\n    - {{path: /srv/hello/greeting.txt, content: \"hello from the service\\n\"}}\n",
        host.host_key()
    );
    hkctl(&["apply", "-f", "-"], Some(&manifests));
    let landed = wait_until(Duration::from_secs(60), || {
        host.try_sh("cat /srv/hello/greeting.txt").1 == "hello from the service\n"
    });
    assert!(
        landed,
        "the service never reached the host: {}\n{}",
        hkctl(&["get", "services", "-o", "yaml"], None),
        host.sh("journalctl -u hostkit -n 40 --no-pager")
    );
    // A stop is clean: STOPPING=1, in-flight work done, inactive (not failed).
    host.sh("systemctl stop hostkit.service");
    assert_eq!(
        host.sh("systemctl show --value -p ActiveState hostkit.service; systemctl show --value -p Result hostkit.service"),
        "inactive\nsuccess\n"
    );
    let journal = host.sh("journalctl -u hostkit -o cat --no-pager");
    assert!(journal.contains("shutting down"), "{journal}");
}
