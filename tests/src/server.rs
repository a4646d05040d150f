//! The real `hostkit serve` and `hkctl` binaries, driven as an operator would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::{free_port, stop_child, wait_until};

/// The folder holding the workspace's binaries (next to the test executable's `deps/`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("deps folder");
    if dir.ends_with("deps") {
        dir.parent().expect("target profile folder").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Path of a workspace binary, built once per test run so tests never use a stale one.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if std::env::var_os("HOSTKIT_E2E_NO_BUILD").is_some() {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = bin_dir().ends_with("release");
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "hostkit-controller",
            "-p",
            "hkctl",
            "--bins",
        ]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build for the binaries");
        assert!(status.success(), "building hostkit and hkctl failed");
    });
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing; run `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// How to start a server.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    pub etcd: Option<String>,
    pub extra_args: Vec<String>,
    /// Run the controller too (off: the API server and store alone, as the control-plane
    /// tests want, since the controller writes finalizers and status).
    pub controller: bool,
    /// Environment for the server, e.g. the variables that `{env: …}` secret references name.
    pub env: Vec<(String, String)>,
}

/// A running `hostkit serve` with its own data folder and hkctl config; killed on drop.
pub struct Hostkit {
    pub url: String,
    pub port: u16,
    pub token: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    options: ServeOptions,
}

impl Hostkit {
    /// A server on the embedded store.
    pub fn embedded() -> Hostkit {
        Hostkit::start(ServeOptions::default())
    }

    /// A server on the embedded store, without controllers, holding the shared examples
    /// (which name outside machines: nothing may reconcile them).
    pub fn with_examples() -> Hostkit {
        let s = Hostkit::embedded();
        s.hkctl_ok(&["apply", "-f", &examples_dir().display().to_string()]);
        s
    }

    /// A server on the etcd at `url`.
    pub fn with_etcd(url: &str) -> Hostkit {
        Hostkit::start(ServeOptions {
            etcd: Some(url.to_string()),
            ..Default::default()
        })
    }

    /// A server running the controller, on the embedded store.
    pub fn controller() -> Hostkit {
        Hostkit::start(ServeOptions {
            controller: true,
            ..Default::default()
        })
    }

    /// A server running the controller, on the etcd at `url`.
    pub fn controller_on_etcd(url: &str) -> Hostkit {
        Hostkit::start(ServeOptions {
            etcd: Some(url.to_string()),
            controller: true,
            ..Default::default()
        })
    }

    pub fn start(options: ServeOptions) -> Hostkit {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut server = Hostkit {
            url: format!("http://127.0.0.1:{port}"),
            port,
            token: String::new(),
            dir,
            child: None,
            options,
        };
        server.spawn();
        server.token = std::fs::read_to_string(server.data_dir().join("admin.token"))
            .expect("admin.token written on first start")
            .trim()
            .to_string();
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The hkctl config `hostkit serve` wrote for this server.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("hkctl.yaml")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let scheme_tls = self.options.extra_args.iter().any(|a| a == "--tls-cert");
        let mut cmd = Command::new(bin("hostkit"));
        cmd.arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--bookmark-interval", "1s"])
            .args(if self.options.controller {
                &[][..]
            } else {
                &["--controllers", "none"][..]
            })
            .args(&self.options.extra_args)
            .env("HKCTL_CONFIG", self.config_path())
            .env("RUST_LOG", "warn")
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            // A file, not a pipe: a chatty server must never block on a full pipe.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("server.log"))
                    .map(Stdio::from)
                    .expect("server log file"),
            );
        if let Some(etcd) = &self.options.etcd {
            cmd.args(["--etcd", etcd]);
        }
        let mut child = cmd.spawn().expect("starting hostkit serve");
        let port = self.port;
        let up = wait_until(Duration::from_secs(20), || {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if let Ok(Some(status)) = child.try_wait() {
            panic!("hostkit serve exited with {status}: {}", self.log());
        }
        assert!(up, "hostkit serve did not listen on {port}");
        if !scheme_tls {
            let ready = wait_until(Duration::from_secs(20), || http_ok(port, "/readyz"));
            assert!(ready, "hostkit serve on {port} never became ready");
        }
        self.child = Some(child);
    }

    /// What the server logged so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The server's `/metrics` text.
    pub fn metrics(&self) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        use std::io::{Read, Write};
        let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// The server's process id (for RSS measurements).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Stops the server with SIGTERM (graceful) or SIGKILL.
    pub fn stop(&mut self, kill: bool) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, kill);
        }
    }

    /// SIGTERM, then waits up to `grace` for a clean exit; `None` if it had to be killed.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        crate::stop_child_within(&mut c, false, grace)
    }

    /// Starts again after [`Hostkit::stop`] or [`Hostkit::terminate`], same folder and port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    /// Stops and starts again with the same data folder and port.
    pub fn restart(&mut self) {
        self.stop(false);
        self.spawn();
    }

    /// Runs hkctl against this server with the config `hostkit serve` wrote.
    pub fn hkctl(&self, args: &[&str]) -> Output {
        self.hkctl_command(args).output().expect("running hkctl")
    }

    /// Waits (up to 10 s) until `hkctl events --for target` shows every one of `reasons`:
    /// reconcilers record events after the change they describe, so a test that saw the
    /// change may still be ahead of its event.
    pub fn wait_events(&self, target: &str, reasons: &[&str]) -> String {
        let read = || stdout(&self.hkctl(&["events", "--for", target]));
        crate::wait_until(Duration::from_secs(10), || {
            let e = read();
            reasons.iter().all(|r| e.contains(r))
        });
        let events = read();
        assert!(
            reasons.iter().all(|r| events.contains(r)),
            "{target}: expected events {reasons:?}:\n{events}"
        );
        events
    }

    /// Runs hkctl and insists that it succeeds (the failure shows what it printed, and the
    /// server's log).
    pub fn hkctl_ok(&self, args: &[&str]) -> Output {
        let out = self.hkctl(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "hkctl {}: {}{}\n{}",
            args.join(" "),
            stdout(&out),
            stderr(&out),
            self.log()
        );
        out
    }

    /// Applies a deny PolicyWindow that is open now (for two minutes) over `selector`
    /// (`{services: {names: [web]}}`) and waits until the controller says it is open.
    pub fn open_deny_window(&self, name: &str, selector: &str) {
        self.apply_yaml(&format!(
            "apiVersion: hostkit.dev/v1alpha1\nkind: PolicyWindow\nmetadata: {{name: {name}}}\nspec:\n  kind: deny\n  schedule: \"* * * * *\"\n  duration: 2m\n  selector: {selector}\n"
        ));
        assert!(
            crate::wait_until(Duration::from_secs(20), || self
                .get("policywindow", name)
                .and_then(|v| v
                    .pointer("/status/open")
                    .and_then(serde_json::Value::as_bool))
                == Some(true)),
            "PolicyWindow/{name} never opened"
        );
    }

    /// An hkctl command ready to run (to add stdin, env or spawn it).
    pub fn hkctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("hkctl"));
        cmd.args(args)
            .env("HKCTL_CONFIG", self.config_path())
            .env_remove("HKCTL_SERVER")
            .env_remove("HKCTL_TOKEN");
        cmd
    }
}

impl Hostkit {
    /// `hkctl get KIND NAME -o json`; `None` when the object is not there.
    pub fn get(&self, kind: &str, name: &str) -> Option<serde_json::Value> {
        let out = self.hkctl(&["get", kind, name, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Waits until KIND/NAME's condition `type_` has `status`; panics with the object's
    /// status and the server's log when it does not within `timeout`.
    pub fn wait_condition(
        &self,
        kind: &str,
        name: &str,
        type_: &str,
        status: &str,
        timeout: Duration,
    ) {
        let reached = crate::wait_until(timeout, || {
            self.get(kind, name)
                .and_then(|v| condition(&v, type_))
                .is_some_and(|(st, _, _)| st == status)
        });
        assert!(
            reached,
            "{kind}/{name} {type_} is not {status} after {timeout:?}: {:?}\n{}",
            self.get(kind, name).map(|v| v["status"].clone()),
            self.log()
        );
    }

    /// `hkctl apply -f` of manifest text; panics with hkctl's output when it fails.
    pub fn apply_yaml(&self, text: &str) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let f = self.dir.path().join(format!("apply-{n}.yaml"));
        std::fs::write(&f, text).expect("writing a manifest");
        let out = self.hkctl(&["apply", "-f", f.to_str().expect("utf-8 path")]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    }
}

/// One condition of an object's status: (status, reason, message).
pub fn condition(v: &serde_json::Value, type_: &str) -> Option<(String, String, String)> {
    let c = v
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    let text = |k: &str| c[k].as_str().unwrap_or("").to_string();
    Some((text("status"), text("reason"), text("message")))
}

/// Just the status (`True`, `False`, `Unknown`) of one condition.
pub fn condition_status(v: &serde_json::Value, type_: &str) -> Option<String> {
    condition(v, type_).map(|c| c.0)
}

impl Drop for Hostkit {
    fn drop(&mut self) {
        self.stop(true);
    }
}

/// Text of an hkctl run's stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Text of an hkctl run's stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200")
}

/// The repository's `manifests/examples` folder.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples")
}
