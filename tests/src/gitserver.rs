//! A real `git daemon` serving a folder of bare repositories to the test hosts, bound to
//! one address (a test host's gateway: the host side of its veth) on a free port, stopped
//! when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct GitDaemon {
    child: Option<Child>,
    pub address: String,
    pub port: u16,
    base: PathBuf,
    log: PathBuf,
}

/// git-daemon itself: beside the `git` on PATH, else Debian's.
fn daemon_binary() -> PathBuf {
    let exec_path = Command::new("git")
        .arg("--exec-path")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let beside = Path::new(&exec_path).join("git-daemon");
    if beside.exists() {
        beside
    } else {
        PathBuf::from("/usr/lib/git-core/git-daemon")
    }
}

impl GitDaemon {
    /// Serves every repository below `base` on `address`; waits until it accepts.
    pub fn serve(base: &Path, address: &str) -> GitDaemon {
        let port = std::net::TcpListener::bind((address, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port on the address");
        let mut d = GitDaemon {
            child: None,
            address: address.to_string(),
            port,
            base: base.to_path_buf(),
            log: base.join(format!("git-daemon-{port}.log")),
        };
        d.start();
        d
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the daemon's log");
        let child = Command::new(daemon_binary())
            .args([
                "--reuseaddr",
                "--export-all",
                "--verbose",
                "--log-destination=stderr",
                &format!("--base-path={}", self.base.display()),
                &format!("--listen={}", self.address),
                &format!("--port={}", self.port),
            ])
            .arg(&self.base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("git daemon starts");
        self.child = Some(child);
        let up = crate::wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect((self.address.as_str(), self.port)).is_ok()
        });
        assert!(up, "git daemon is not listening: {}", self.log());
    }

    /// `git://ADDRESS:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("git://{}:{}/{name}", self.address, self.port)
    }

    /// What it logged (connections and requests).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::stop_child(&mut c, true);
        }
    }

    pub fn start_again(&mut self) {
        if self.child.is_none() {
            self.start();
        }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}
