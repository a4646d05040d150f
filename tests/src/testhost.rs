//! Real test hosts: a debootstrapped Debian 12 booted with `systemd-nspawn -b` (systemd as
//! PID 1, journald, sshd, useradd, apt, nftables) in its own network namespace, reached
//! over a veth pair on 10.231.0.0/16. One read-only image serves every host
//! (`--volatile=overlay`: writes vanish at shutdown). Dropping a [`TestHost`] halts the
//! container and deletes its namespace, also when the test fails.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::stop_child;

/// The unpacked image root, the local apt repository and the image tarball, built once per
/// machine.
fn image() -> &'static (PathBuf, PathBuf, PathBuf) {
    static IMAGE: OnceLock<(PathBuf, PathBuf, PathBuf)> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-host-image.sh");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/test-host-image.sh");
        assert!(out.status.success(), "test-host-image.sh failed");
        let text = String::from_utf8(out.stdout).expect("utf-8 paths");
        let mut lines = text.lines();
        (
            PathBuf::from(lines.next().expect("image root")),
            PathBuf::from(lines.next().expect("debs folder")),
            PathBuf::from(lines.next().expect("image tarball")),
        )
    })
}

/// The unpacked test-host image root (for Instance tests that boot it themselves).
pub fn image_root() -> PathBuf {
    image().0.clone()
}

/// The test-host image as a `.tar.zst` (an Instance image the backend unpacks itself).
pub fn image_tarball() -> PathBuf {
    image().2.clone()
}

/// A booted test host, reachable as `root@address` with [`TestHost::key`].
pub struct TestHost {
    pub name: String,
    pub address: String,
    /// The host side of the veth pair (the address the host sees us as).
    pub gateway: String,
    pub dir: tempfile::TempDir,
    nspawn: Option<Child>,
    netns: String,
    _slot: File,
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn must(cmd: &str, args: &[&str]) {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Takes a free slot 1..=16000 with an exclusive lock, so that parallel tests and runs
/// never share a namespace or an address.
fn claim_slot() -> (u32, File) {
    let dir = Path::new("/run/hostkit-test");
    std::fs::create_dir_all(dir).expect("/run/hostkit-test");
    let start = (std::process::id() * 7919 + rand_u32()) % 16000;
    for i in 0..16000 {
        let n = (start + i) % 16000 + 1;
        let f = File::create(dir.join(format!("{n}.lock"))).expect("slot lock file");
        // SAFETY: flock on a file descriptor we own.
        let locked = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if locked && !Path::new(&format!("/run/netns/hk-{n}")).exists() {
            return (n, f);
        }
    }
    panic!("no free test-host slot");
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

impl TestHost {
    /// Boots a host and waits until sshd answers and systemd finished booting.
    pub fn boot() -> TestHost {
        let (root, debs, _) = image();
        let (n, slot) = claim_slot();
        let name = format!("hk-{n}");
        // Slot n owns 10.231.0.0/16's n-th /30: .1 on our side, .2 inside.
        let base = n * 4;
        let (a, b) = (base / 256, base % 256);
        let gateway = format!("10.231.{a}.{}", b + 1);
        let address = format!("10.231.{a}.{}", b + 2);
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("id_ed25519");
        must(
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()],
        );
        std::fs::copy(
            key.with_extension("pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();

        let _ = run("ip", &["netns", "del", &name]);
        must("ip", &["netns", "add", &name]);
        let mut host = TestHost {
            name: name.clone(),
            address: address.clone(),
            gateway: gateway.clone(),
            dir,
            nspawn: None,
            netns: name.clone(),
            _slot: slot,
        };
        let (h, c) = (format!("{name}h"), format!("{name}c"));
        must(
            "ip",
            &["link", "add", &h, "type", "veth", "peer", "name", &c],
        );
        must("ip", &["link", "set", &c, "netns", &name]);
        must("ip", &["addr", "add", &format!("{gateway}/30"), "dev", &h]);
        must("ip", &["link", "set", &h, "up"]);
        must(
            "ip",
            &[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{address}/30"),
                "dev",
                &c,
            ],
        );
        must("ip", &["-n", &name, "link", "set", &c, "up"]);
        must("ip", &["-n", &name, "link", "set", "lo", "up"]);

        let log = File::create(host.dir.path().join("console.log")).unwrap();
        let child = Command::new("systemd-nspawn")
            .args(["-b", "-q", "--register=no", "--keep-unit"])
            .arg("-D")
            .arg(root)
            .args(["-M", &name, &format!("--hostname={name}")])
            .arg(format!("--network-namespace-path=/run/netns/{name}"))
            .args([
                // systemd's IP firewalling (IPAddressAllow=/Deny=) attaches BPF
                // programs to cgroups: without these a test host would accept a
                // network policy and not enforce it.
                "--capability=CAP_NET_ADMIN,CAP_BPF",
                "--system-call-filter=bpf",
                "--volatile=overlay",
                "--console=read-only",
            ])
            .arg(format!(
                "--bind-ro={}:/root/.ssh/authorized_keys",
                host.dir.path().join("authorized_keys").display()
            ))
            .arg(format!("--bind-ro={}:/srv/debs", debs.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn");
        host.nspawn = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = host.ssh_output("systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&out.stdout);
            if state.contains("running") || state.contains("degraded") {
                break;
            }
            if Instant::now() > deadline {
                let console = std::fs::read_to_string(host.dir.path().join("console.log"))
                    .unwrap_or_default();
                panic!("{name} did not boot within 60s; console:\n{console}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        host
    }

    /// A Host manifest named `name` that reaches this host as root with its key, the host
    /// key pinned; `extra` lines (indented two spaces) go into its spec.
    pub fn manifest(&self, name: &str, extra: &str) -> String {
        format!(
            "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}}}\nspec:\n  address: {}\n  ssh: {{user: root, identityFile: {}, hostKey: {{policy: pinned, key: \"{}\"}}}}\n{extra}",
            self.address,
            self.key().display(),
            self.host_key()
        )
    }

    /// The private key that root@host accepts.
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// The host's ed25519 public key (`ssh-ed25519 AAAA…`), from the image.
    pub fn host_key(&self) -> String {
        let (root, _, _) = image();
        std::fs::read_to_string(root.join("etc/ssh/ssh_host_ed25519_key.pub"))
            .expect("host key in image")
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A known_hosts file that lists this host.
    pub fn known_hosts(&self) -> PathBuf {
        let path = self.dir.path().join("known_hosts");
        std::fs::write(&path, format!("{} {}\n", self.address, self.host_key())).unwrap();
        path
    }

    fn ssh_output(&self, command: &str) -> Output {
        Command::new("ssh")
            .args(self.ssh_args())
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("ssh")
    }

    /// Copies the local file `from` to `to` on the host at `mode` (through SSH's stdin, into
    /// a temporary name renamed into place).
    pub fn copy_in(&self, from: &Path, to: &str, mode: u32) {
        let file = File::open(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        let out = Command::new("ssh")
            .args(self.ssh_args())
            .arg(format!(
                "set -e; t='{to}.hk-copy'; cat > \"$t\"; chmod {mode:o} \"$t\"; mv -f \"$t\" '{to}'"
            ))
            .stdin(file)
            .output()
            .expect("ssh");
        assert!(
            out.status.success(),
            "copying {} to {}:{to}: {}",
            from.display(),
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// OpenSSH client arguments that log in as root with [`TestHost::key`], up to the
    /// command.
    fn ssh_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-q",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=2",
            "-i",
        ]
        .map(String::from)
        .to_vec();
        args.push(self.key().display().to_string());
        args.push(format!("root@{}", self.address));
        args
    }

    /// Runs a shell command on the host with OpenSSH's client and returns stdout; panics
    /// with stderr when it fails.
    pub fn sh(&self, command: &str) -> String {
        let out = self.ssh_output(command);
        assert!(
            out.status.success(),
            "on {}: {command}: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command and returns its exit status and combined output.
    pub fn try_sh(&self, command: &str) -> (i32, String) {
        let out = self.ssh_output(command);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// Runs a command inside the container without SSH (for when sshd is down), through
    /// the namespaces of its PID 1.
    pub fn nsenter(&self, command: &str) -> String {
        let (ok, out, err) = self.try_nsenter(command);
        assert!(ok, "nsenter {command}: {err}");
        out
    }

    /// [`TestHost::nsenter`] that returns success, stdout and stderr instead of asserting.
    pub fn try_nsenter(&self, command: &str) -> (bool, String, String) {
        let nspawn = self.nspawn.as_ref().expect("running").id();
        let children = std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children"))
            .expect("nspawn's children");
        let init = children
            .split_whitespace()
            .next()
            .expect("the container's PID 1");
        let out = Command::new("nsenter")
            .args(["-t", init, "-a", "sh", "-c", command])
            .output()
            .expect("nsenter");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `path owner:group mode sha256` for each existing path (directories without a hash),
    /// sorted: a checksum listing to compare host states byte for byte.
    pub fn listing(&self, paths: &[String]) -> String {
        let mut script = String::new();
        for p in paths {
            script.push_str(&format!(
                "if [ -d '{p}' ]; then stat -c '%n %U:%G %a dir' '{p}'; elif [ -e '{p}' ]; then printf '%s %s\\n' \"$(stat -c '%n %U:%G %a' '{p}')\" \"$(sha256sum < '{p}' | cut -c1-64)\"; else echo '{p} absent'; fi\n"
            ));
        }
        self.sh(&script)
    }
}

/// The container's init: nspawn's child in another pid namespace.
fn container_init(nspawn: u32) -> Option<u32> {
    let ours = std::fs::read_link("/proc/self/ns/pid").ok()?;
    std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children"))
        .ok()?
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find(|c| std::fs::read_link(format!("/proc/{c}/ns/pid")).is_ok_and(|ns| ns != ours))
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(mut child) = self.nspawn.take() {
            let init = container_init(child.id());
            stop_child(&mut child, false);
            // A container that did not shut down in time outlives its SIGKILLed nspawn.
            let ours = std::fs::read_link("/proc/self/ns/pid").ok();
            if let Some(pid) = init
                && std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok() != ours
                && Path::new(&format!("/proc/{pid}")).exists()
            {
                // SAFETY: kill(2) on the init of this host's own container.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
        }
        let _ = run("ip", &["netns", "del", &self.netns]);
        let _ = run("ip", &["link", "del", &format!("{}h", self.netns)]);
    }
}
