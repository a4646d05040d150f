//! A real etcd (Debian's `etcd-server`) per test, in a temp folder on free ports.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, stop_child, wait_until};

/// A running etcd; stopped and its data removed on drop.
pub struct EtcdServer {
    pub url: String,
    child: Option<Child>,
    data: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl EtcdServer {
    /// Starts etcd and waits until `/health` says true.
    pub fn start() -> EtcdServer {
        let data = tempfile::tempdir().expect("temp dir for etcd");
        let mut server = EtcdServer {
            url: String::new(),
            child: None,
            data,
            client_port: free_port(),
            peer_port: free_port(),
        };
        server.url = format!("http://127.0.0.1:{}", server.client_port);
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(etcd_binary())
            .args(["--name", "t", "--data-dir"])
            .arg(self.data.path().join("data"))
            .args([
                "--listen-client-urls",
                &self.url,
                "--advertise-client-urls",
                &self.url,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &format!("t={peer}"),
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting etcd (run scripts/install-deps.sh to install etcd-server)");
        self.child = Some(child);
        let health = format!("127.0.0.1:{}", self.client_port);
        let healthy = wait_until(Duration::from_secs(20), || http_health(&health));
        assert!(healthy, "etcd on {} did not become healthy", self.url);
    }

    /// Stops etcd (its data stays), to test what clients do while it is gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, false);
        }
    }

    /// Starts etcd again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.path().to_path_buf()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn etcd_binary() -> String {
    std::env::var("HOSTKIT_ETCD").unwrap_or_else(|_| "etcd".to_string())
}

/// GET /health with a raw socket, so the harness needs no HTTP client of its own.
fn http_health(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}
