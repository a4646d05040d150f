//! The offline `hostkit plan/apply/down` across several hosts at once (`--parallel`): a
//! host that cannot be reached does not stop the others, each host's output stays
//! together in host order, the written result holds the down plan of every host that was
//! changed, and the exit code says that one failed.

use hostkit_e2e::server::{bin, stderr, stdout};
use hostkit_e2e::testhost::TestHost;

fn service(host: &str) -> String {
    format!(
        "---\napiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata: {{name: note-{host}}}\nspec:\n  hosts: [{host}]\n  files:\n    - {{path: /etc/fleet-note, content: \"{host}\\n\"}}\n"
    )
}

#[test]
fn an_unreachable_host_does_not_stop_the_others_or_lose_their_down_plans() {
    let (a, c) = (TestHost::boot(), TestHost::boot());
    let closed = hostkit_e2e::free_port();
    let mut text = a.manifest("a", "");
    text.push_str(&format!(
        "---\napiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {{name: b}}\nspec:\n  address: 127.0.0.1\n  ssh: {{user: root, port: {closed}, connectTimeout: 2s, retry: {{attempts: 1}}}}\n---\n"
    ));
    text.push_str(&c.manifest("c", ""));
    for h in ["a", "b", "c"] {
        text.push_str(&service(h));
    }
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("fleet.yaml");
    std::fs::write(&m, text).unwrap();
    let m = m.to_str().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(bin("hostkit"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };

    let out = run(&["plan", "-f", m, "--parallel", "3"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let plans = stdout(&out);
    let (pa, pc) = (
        plans.find("+ file:/etc/fleet-note"),
        plans.rfind("+ file:/etc/fleet-note"),
    );
    assert!(
        pa.is_some() && pa != pc,
        "both reachable hosts are planned:\n{plans}"
    );
    assert!(
        stderr(&out).contains("host b: cannot plan:")
            && stderr(&out).contains("error: could not plan host(s) b"),
        "{}",
        stderr(&out)
    );

    let out = run(&[
        "apply",
        "-f",
        m,
        "--confirm",
        "--out",
        "applied.json",
        "--parallel",
        "3",
        "--timings",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("error: host(s) b failed"), "{err}");
    // Per host together, in host order.
    let at = |s: &str| err.find(s).unwrap_or_else(|| panic!("no {s:?} in:\n{err}"));
    assert!(
        at("host a: applied") < at("host b: failed")
            && at("host b: failed") < at("host c: applied"),
        "{err}"
    );
    let timings = err
        .lines()
        .find(|l| l.starts_with("host a: timings: "))
        .unwrap_or_else(|| panic!("no timings for host a in:\n{err}"));
    for phase in ["connect ", "read ", "plan ", "apply script "] {
        assert!(timings.contains(phase), "{timings}");
    }
    assert_eq!(a.sh("cat /etc/fleet-note"), "a\n");
    assert_eq!(c.sh("cat /etc/fleet-note"), "c\n");
    let applied: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("applied.json")).unwrap()).unwrap();
    let hosts: Vec<&str> = applied["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["a", "c"], "every changed host, with its down plan");

    // Their down plans undo both hosts.
    let out = run(&[
        "down",
        "--from",
        "applied.json",
        "--confirm",
        "--parallel",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for h in [&a, &c] {
        assert_eq!(
            h.sh("test -e /etc/fleet-note && echo left || echo gone"),
            "gone\n"
        );
    }
}
