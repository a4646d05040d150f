//! Test harness: real processes on free loopback ports, cleaned up on drop.
//!
//! Every helper here starts the real thing (Debian's `etcd`, the `hostkit` binary) in a
//! temporary folder on ports nobody else uses, and kills it when the handle is dropped, so
//! a failing test never leaves a process behind and two runs never collide.

pub mod engine;
pub mod etcd;
pub mod gitserver;
pub mod server;
pub mod testhost;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// Polls `check` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// Sends SIGTERM (or SIGKILL) to a child and reaps it.
pub fn stop_child(child: &mut std::process::Child, kill: bool) {
    stop_child_within(child, kill, Duration::from_secs(10));
}

/// [`stop_child`] that waits up to `grace` before SIGKILL, and says how the child ended
/// (`None`: it had to be killed).
pub fn stop_child_within(
    child: &mut std::process::Child,
    kill: bool,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    let signal = if kill { libc::SIGKILL } else { libc::SIGTERM };
    // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A plain HTTP/1.0 GET on loopback; returns the body (for Prometheus and `/metrics`).
pub fn http_get(port: u16, path: &str) -> Option<String> {
    http_get_with(port, path, None)
}

/// [`http_get`] with a bearer token.
pub fn http_get_with(port: u16, path: &str, token: Option<&str>) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// Runs the real `git` in `dir` with a fixed identity and `main` as the default branch;
/// panics with git's stderr when it fails, returns its trimmed stdout.
pub fn git(dir: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.email=ops@example.com", "-c", "user.name=ops"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// User plus system CPU time of `pid`, in clock ticks (USER_HZ, 100 on Linux).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// A child process (an `hkctl get -w`, a `logs -f`) killed when the test ends, passed or
/// failed, so a failing test leaves nothing running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
