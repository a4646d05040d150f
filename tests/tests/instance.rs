//! Instances end to end: the real `hostkit serve` boots an nspawn machine from the test
//! image, creates the Host that reaches it (through an `expose` port forward), converges a
//! Service on it, and on delete cleans the Service there, removes the Host and destroys the
//! machine and its network namespace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hostkit_e2e::server::{Hostkit, ServeOptions, stderr, stdout};
use hostkit_e2e::{free_port, testhost, wait_until};
use serde_json::Value;

/// Kills whatever machines a failed test left behind (on success they are gone already).
struct Leftovers(PathBuf);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let Ok(dirs) = std::fs::read_dir(&self.0) else {
            return;
        };
        for d in dirs.flatten() {
            let Ok(text) = std::fs::read_to_string(d.path().join("machine.json")) else {
                continue;
            };
            let Ok(m) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            // nspawn and the container's init: killing nspawn alone leaves the init running.
            for pid in [m["pid"].as_u64(), m["init"]["pid"].as_u64()]
                .into_iter()
                .flatten()
            {
                // SAFETY: kill(2) on the machine's own processes.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
            if let Some(ns) = m["netns"].as_str() {
                let _ = Command::new("ip")
                    .args(["link", "del", &format!("{ns}h")])
                    .output();
                let _ = Command::new("ip").args(["netns", "del", ns]).output();
            }
        }
    }
}

/// What a failed wait prints: the object's status, the machine's console and the server
/// log's end (CI shows only part of a test's output, so each is cut to its tail).
fn why(s: &Hostkit, state: &Path, kind: &str, name: &str) -> String {
    let tail = |text: &str, n: usize| {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    };
    let console = std::fs::read_to_string(state.join(name).join("console.log")).unwrap_or_default();
    format!(
        "{kind}/{name} status: {:?}\n--- console (tail) ---\n{}\n--- server log (tail) ---\n{}",
        s.get(kind, name).and_then(|v| v.get("status").cloned()),
        tail(&console, 25),
        tail(&s.log(), 40)
    )
}

fn is_true(v: &Value, type_: &str) -> bool {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == type_ && c["status"] == "True")
        })
}

fn ssh(key: &Path, port: u16, command: &str) -> (i32, String) {
    let out = Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args([
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=error",
            "-i",
        ])
        .arg(key)
        .args(["-p", &port.to_string(), "root@127.0.0.1", command])
        .output()
        .expect("ssh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn an_nspawn_instance_boots_runs_a_service_and_is_destroyed_with_its_namespace() {
    let image = testhost::image_root();
    let s = Hostkit::start(ServeOptions {
        controller: true,
        extra_args: vec!["--image".into(), format!("bookworm={}", image.display())],
        ..Default::default()
    });
    let state = s.data_dir().join("instances");
    let _leftovers = Leftovers(state.clone());
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        r#"apiVersion: hostkit.dev/v1alpha1
kind: Instance
metadata: {{name: box}}
spec:
  backend: {{name: nspawn}}
  image: bookworm
  lifecycle: ephemeral
  expose:
    - {{name: ssh, host: {port}, guest: 22}}
  host:
    labels: {{role: demo}}
    ssh: {{user: root, port: {port}}}
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata: {{name: hello}}
spec:
  hostSelector: {{matchLabels: {{role: demo}}}}
  interval: 3s
  files: [{{path: /etc/hello.txt, content: "hello from an instance\n"}}]
  daemon:
    exec: [/bin/sh, -c, "exec sleep infinity"]
"#
    );
    let f = dir.path().join("box.yaml");
    std::fs::write(&f, manifest).unwrap();
    let out = s.hkctl(&["apply", "-f", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    assert!(
        wait_until(Duration::from_secs(120), || s
            .get("instance", "box")
            .is_some_and(|v| is_true(&v, "Ready"))),
        "{}",
        why(&s, &state, "instance", "box")
    );
    let host = s.get("host", "box").expect("the Instance created Host/box");
    assert_eq!(
        host["spec"]["address"], "127.0.0.1",
        "reached through the expose forward"
    );
    assert_eq!(host["metadata"]["ownerReferences"][0]["kind"], "Instance");
    assert!(
        wait_until(Duration::from_secs(60), || s
            .get("host", "box")
            .is_some_and(|v| is_true(&v, "Ready"))),
        "{}",
        why(&s, &state, "host", "box")
    );
    assert!(
        wait_until(Duration::from_secs(60), || s
            .get("service", "hello")
            .is_some_and(|v| is_true(&v, "Ready"))),
        "{}",
        why(&s, &state, "service", "hello")
    );
    let key = state.join("box/id_ed25519");
    assert_eq!(
        ssh(&key, port, "systemctl is-active hello.service")
            .1
            .trim(),
        "active"
    );
    assert_eq!(
        ssh(&key, port, "cat /etc/hello.txt").1,
        "hello from an instance\n"
    );
    let machine: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("box/machine.json")).unwrap())
            .unwrap();
    let netns = machine["netns"].as_str().unwrap().to_string();
    let pid = machine["pid"].as_u64().unwrap();
    assert!(Path::new("/run/netns").join(&netns).exists());
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    // Delete: the Service is cleaned on it, the Host goes, then the machine and its network.
    let out = s.hkctl(&["delete", "instance", "box", "--wait", "--timeout", "90s"]);
    assert!(
        out.status.success(),
        "{}{}\n{}",
        stdout(&out),
        stderr(&out),
        s.log()
    );
    assert!(s.get("host", "box").is_none());
    assert!(
        wait_until(Duration::from_secs(20), || !Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "the machine still runs"
    );
    assert!(
        !Path::new("/run/netns").join(&netns).exists(),
        "its namespace is gone"
    );
    assert!(!state.join("box").exists());
    s.wait_events("service/hello", &["CleanedUp"]);
    assert!(wait_until(Duration::from_secs(20), || s
        .get("service", "hello")
        .is_some_and(|v| v
            .pointer("/status/hosts")
            .and_then(Value::as_array)
            .is_none_or(|h| h.is_empty()))));
}

fn machine(state: &Path, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(state.join(name).join("machine.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn machine_pid(state: &Path, name: &str) -> Option<u64> {
    machine(state, name)?["pid"].as_u64()
}

/// A persistent Instance from a `.tar.zst` image: its own root survives the machine being
/// killed (the controller notices through the process's exit and starts it again), survives
/// the object's deletion (kept, with a warning), and is adopted as it is when the Instance is
/// applied again.
#[test]
fn a_persistent_instance_from_a_tarball_restarts_after_a_crash_and_outlives_its_object() {
    let tarball = testhost::image_tarball();
    let s = Hostkit::start(ServeOptions {
        controller: true,
        extra_args: vec!["--image".into(), format!("bookworm={}", tarball.display())],
        ..Default::default()
    });
    let state = s.data_dir().join("instances");
    let _leftovers = Leftovers(state.clone());
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("keep.yaml");
    std::fs::write(
        &f,
        format!(
            "apiVersion: hostkit.dev/v1alpha1\nkind: Instance\nmetadata: {{name: keep}}\nspec:\n  backend: {{name: nspawn}}\n  image: bookworm\n  lifecycle: persistent\n  expose:\n    - {{name: ssh, host: {port}, guest: 22}}\n  host:\n    ssh: {{user: root, port: {port}}}\n"
        ),
    )
    .unwrap();
    let apply_and_wait = || {
        let out = s.hkctl(&["apply", "-f", f.to_str().unwrap()]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        assert!(
            wait_until(Duration::from_secs(180), || s
                .get("instance", "keep")
                .is_some_and(|v| is_true(&v, "Ready"))),
            "{}",
            why(&s, &state, "instance", "keep")
        );
    };
    apply_and_wait();
    let key = state.join("keep/id_ed25519");
    assert_eq!(ssh(&key, port, "echo kept > /root/marker").0, 0);
    assert!(
        state.join("keep/root/etc/os-release").exists(),
        "its own root, unpacked from the tarball"
    );

    // Killed: started again on its own root, without anyone touching the object, and not
    // beside the old container (its init outlives nspawn and must be ended first).
    let first = machine_pid(&state, "keep").unwrap();
    let old_init = machine(&state, "keep").unwrap()["init"]["pid"]
        .as_u64()
        .expect("the container's init is recorded");
    assert_ne!(old_init, first);
    // SAFETY: kill(2) on the machine's systemd-nspawn, which this test's server started.
    unsafe {
        libc::kill(first as i32, libc::SIGKILL);
    }
    assert!(
        wait_until(Duration::from_secs(60), || machine_pid(&state, "keep")
            .is_some_and(|p| p != first)
            && ssh(&key, port, "cat /root/marker").1 == "kept\n"),
        "{}",
        s.log()
    );
    let gone = |pid: u64| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |st| {
            st.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    };
    assert!(gone(old_init), "the old container's init was ended");
    // The event follows once the machine finished booting (SSH answers a little earlier).
    assert!(
        wait_until(Duration::from_secs(60), || stdout(&s.hkctl(&[
            "events",
            "--for",
            "instance/keep"
        ]))
        .contains("Restarted")),
        "{}",
        stdout(&s.hkctl(&["events", "--for", "instance/keep"]))
    );

    // Deleted: the machine and its Host stay, with a warning.
    let second = machine_pid(&state, "keep").unwrap();
    let out = s.hkctl(&["delete", "instance", "keep", "--wait", "--timeout", "60s"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    s.wait_events("instance/keep", &["Kept"]);
    assert!(Path::new(&format!("/proc/{second}")).exists());
    assert!(s.get("host", "keep").is_some());

    // Applied again: the same machine, adopted as it is.
    apply_and_wait();
    assert_eq!(machine_pid(&state, "keep"), Some(second));
    assert_eq!(ssh(&key, port, "cat /root/marker").1, "kept\n");
}
