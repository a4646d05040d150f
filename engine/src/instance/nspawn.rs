//! The nspawn backend: a booted `systemd-nspawn` container in its own network namespace,
//! found again after a controller restart from `<state>/<name>/machine.json`.

use super::process::Proc;
use super::*;

/// What `<state>/<name>/machine.json` records.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    pid: u32,
    slot: u32,
    netns: String,
    address: String,
    persistent: bool,
    /// The root folder it boots from (the image, or its own copy).
    root: PathBuf,
    /// The machine's init as this machine sees it. Killing systemd-nspawn does not end the
    /// container: its init is re-parented and runs on, on the same root, so a restart
    /// would boot a second one beside it. Killing the init of a pid namespace ends all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    init: Option<Proc>,
    /// It answered over SSH once (a machine that never did is waited for again).
    #[serde(default)]
    booted: bool,
}

/// `systemd-nspawn` machines on this machine.
pub struct Nspawn {
    /// Registered images: a root folder, or a `.tar`/`.tar.zst` unpacked once.
    images: BTreeMap<String, PathBuf>,
    state: PathBuf,
    /// How long a machine may take to boot and answer over SSH.
    pub boot_timeout: Duration,
    /// Told a machine's name when its process ends, so that a crashed machine is started
    /// again within a second instead of at the next resync.
    on_exit: Option<ExitHook>,
    /// The pids whose exit is watched already (one watcher per machine process).
    watched: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<u32>>>,
}

/// What [`Nspawn::on_exit`] calls with the machine's name.
pub type ExitHook = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

async fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| io(cmd, e))?;
    if !out.status.success() {
        return Err(io(
            &format!("{cmd} {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The /30 of `slot` in 10.232.0.0/16: (our side, the machine's side).
fn addresses(slot: u32) -> (String, String) {
    let base = slot * 4;
    let (a, b) = (base / 256, base % 256);
    (
        format!("10.232.{a}.{}", b + 1),
        format!("10.232.{a}.{}", b + 2),
    )
}

/// Whether `pid` is a live systemd-nspawn.
fn alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("systemd-nspawn"))
        .unwrap_or(false)
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

impl Nspawn {
    pub fn new(images: BTreeMap<String, PathBuf>, state: PathBuf) -> Nspawn {
        Nspawn {
            images,
            state,
            boot_timeout: Duration::from_secs(90),
            on_exit: None,
            watched: Default::default(),
        }
    }

    /// Calls `hook` when a machine's process ends, whether this controller started it or
    /// found it running after a restart (a pidfd works for any process). Machines whose exit
    /// cannot be watched are still noticed at the next resync.
    pub fn on_exit(mut self, hook: ExitHook) -> Nspawn {
        self.on_exit = Some(hook);
        self
    }

    fn watch_exit(&self, name: &str, pid: u32) {
        use std::os::fd::{FromRawFd, OwnedFd};
        let Some(hook) = self.on_exit.clone() else {
            return;
        };
        if !self.watched.lock().expect("not poisoned").insert(pid) {
            return;
        }
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let watched = self.watched.clone();
        if fd < 0 {
            watched.lock().expect("not poisoned").remove(&pid);
            tracing::debug!(instance = name, pid, "no pidfd; the resync notices an exit");
            return;
        }
        // SAFETY: the descriptor was just opened and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let name = name.to_string();
        tokio::spawn(async move {
            // A pidfd turns readable when the process ends.
            // SAFETY: the AsyncFd owns the OwnedFd, which stays open and the same until
            // the AsyncFd is dropped.
            let registered = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            };
            if let Ok(fd) = registered {
                let _ = fd.readable().await;
            }
            watched.lock().expect("not poisoned").remove(&pid);
            tracing::info!(instance = %name, pid, "machine process ended");
            hook(&name);
        });
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.state.join(name)
    }

    fn record(&self, name: &str) -> Option<Record> {
        let text = std::fs::read_to_string(self.dir(name).join("machine.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The root folder of an image, unpacking a tarball the first time.
    async fn image_root(&self, instance: &str, image: &str) -> Result<PathBuf> {
        let object = format!("Instance/{instance}");
        let Some(path) = self.images.get(image) else {
            let known: Vec<&str> = self.images.keys().map(String::as_str).collect();
            return Err(invalid(
                &object,
                "spec.image",
                format!(
                    "{image:?} is not a registered image; registered: {} (hostkit serve --image NAME=PATH)",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        if path.is_dir() {
            return Ok(path.clone());
        }
        let unpacked = self.state.join(".images").join(image);
        if unpacked.join(".complete").exists() {
            return Ok(unpacked);
        }
        let tmp = self.state.join(".images").join(format!(".{image}.tmp"));
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| io("image folder", e))?;
        let mut args = vec!["-C".to_string(), tmp.display().to_string()];
        if path.extension().is_some_and(|e| e == "zst") {
            args.push("--zstd".into());
        }
        args.push("-xf".into());
        args.push(path.display().to_string());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run("tar", &a).await?;
        tokio::fs::write(tmp.join(".complete"), b"")
            .await
            .map_err(|e| io("image", e))?;
        let _ = tokio::fs::remove_dir_all(&unpacked).await;
        tokio::fs::rename(&tmp, &unpacked)
            .await
            .map_err(|e| io("image", e))?;
        Ok(unpacked)
    }

    /// A free slot: its namespace is created here, which is what claims it.
    async fn claim_slot(&self, name: &str) -> Result<(u32, String)> {
        let start = name
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
            % 16000;
        for i in 0..16000 {
            let slot = (start + i) % 16000 + 1;
            let ns = format!("hki-{slot}");
            if netns_exists(&ns) {
                continue;
            }
            if run("ip", &["netns", "add", &ns]).await.is_ok() {
                return Ok((slot, ns));
            }
        }
        Err(io("network", "no free 10.232.0.0/16 slot"))
    }

    async fn network(&self, slot: u32, ns: &str) -> Result<String> {
        let (ours, theirs) = addresses(slot);
        let (h, c) = (format!("{ns}h"), format!("{ns}c"));
        let _ = run("ip", &["link", "del", &h]).await;
        run(
            "ip",
            &["link", "add", &h, "type", "veth", "peer", "name", &c],
        )
        .await?;
        run("ip", &["link", "set", &c, "netns", ns]).await?;
        run("ip", &["addr", "add", &format!("{ours}/30"), "dev", &h]).await?;
        run("ip", &["link", "set", &h, "up"]).await?;
        run(
            "ip",
            &["-n", ns, "addr", "add", &format!("{theirs}/30"), "dev", &c],
        )
        .await?;
        run("ip", &["-n", ns, "link", "set", &c, "up"]).await?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"]).await?;
        Ok(theirs)
    }

    async fn key(&self, name: &str) -> Result<PathBuf> {
        let dir = self.dir(name);
        let key = dir.join("id_ed25519");
        if !key.exists() {
            let k = key.display().to_string();
            run(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    &format!("hostkit-instance-{name}"),
                    "-f",
                    &k,
                ],
            )
            .await?;
        }
        let public = tokio::fs::read(key.with_extension("pub"))
            .await
            .map_err(|e| io("key", e))?;
        tokio::fs::write(dir.join("authorized_keys"), public)
            .await
            .map_err(|e| io("authorized_keys", e))?;
        Ok(key)
    }

    async fn boot(&self, request: &Request, root: &Path, record: &Record) -> Result<u32> {
        let dir = self.dir(&request.name);
        let log =
            std::fs::File::create(dir.join("console.log")).map_err(|e| io("console log", e))?;
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args(["-b", "-q", "--register=no", "--keep-unit"])
            .arg("-D")
            .arg(root)
            .args(["-M", &record.netns, &format!("--hostname={}", request.name)])
            .arg(format!(
                "--network-namespace-path=/run/netns/{}",
                record.netns
            ))
            // The machine's systemd enforces IPAddressAllow=/Deny= with cgroup BPF
            // programs: a Service's network policy must hold inside an Instance too.
            .arg("--capability=CAP_NET_ADMIN,CAP_BPF")
            .arg("--system-call-filter=bpf")
            .arg("--console=read-only")
            .arg(format!(
                "--bind-ro={}:/root/.ssh/authorized_keys",
                dir.join("authorized_keys").display()
            ));
        if !request.persistent {
            cmd.arg("--volatile=overlay");
        }
        if let Some(binds) = request
            .options
            .get("bindReadOnly")
            .and_then(|b| b.as_array())
        {
            for b in binds.iter().filter_map(|b| b.as_str()) {
                cmd.arg(format!("--bind-ro={b}"));
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| io("console log", e))?)
            .stderr(log)
            // Its own process group: the machine outlives a controller restart.
            .process_group(0)
            .kill_on_drop(false);
        let child = cmd.spawn().map_err(|e| io("systemd-nspawn", e))?;
        child
            .id()
            .ok_or_else(|| io("systemd-nspawn", "exited at once"))
    }

    /// Waits until root logs in with the key and systemd finished booting.
    async fn wait_ready(&self, name: &str, machine: &Machine) -> Result<()> {
        let opts = crate::transport::ssh::SshOptions {
            name: name.to_string(),
            address: machine.address.clone(),
            port: machine.ssh_port,
            user: "root".into(),
            auth: crate::transport::ssh::Auth::KeyFile(machine.identity_file.clone()),
            host_key: match &machine.host_key {
                Some(k) => crate::transport::ssh::HostKeyCheck::Pinned(k.clone()),
                None => crate::transport::ssh::HostKeyCheck::AcceptNew(
                    self.dir(name).join("known_hosts"),
                ),
            },
            // A booting machine on a loaded host can take seconds for the handshake alone;
            // a short timeout would turn every attempt into "no answer".
            connect_timeout: Duration::from_secs(10),
            retry: crate::transport::ssh::RetryPolicy {
                attempts: 1,
                ..Default::default()
            },
            keepalive: Duration::from_secs(10),
            sudo: false,
        };
        let deadline = tokio::time::Instant::now() + self.boot_timeout;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let connected = tokio::time::timeout(left, crate::transport::ssh::Ssh::connect(&opts))
                .await
                .unwrap_or_else(|_| Err(io("ssh", "no answer before the boot deadline")));
            if let Err(e) = &connected {
                last = e.to_string();
            }
            if let Ok(ssh) = connected {
                use crate::transport::Transport;
                // `--wait` blocks until boot ends, which a stuck unit may never let happen.
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let state =
                    tokio::time::timeout(left, ssh.run("systemctl is-system-running --wait")).await;
                let Ok(state) = state else {
                    last = format!(
                        "still booting: {}",
                        tokio::time::timeout(
                            Duration::from_secs(5),
                            ssh.run("systemctl list-jobs --no-legend | head -3")
                        )
                        .await
                        .ok()
                        .and_then(|o| o.ok())
                        .map(|o| o.stdout_text().trim().replace('\n', "; "))
                        .unwrap_or_default()
                    );
                    break;
                };
                match state {
                    Ok(out) if matches!(out.stdout_text().trim(), "running" | "degraded") => {
                        return Ok(());
                    }
                    Ok(out) => last = out.stdout_text().trim().to_string(),
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(Error::Unreachable {
            host: format!("Instance/{name} ({})", machine.address),
            attempts: 0,
            message: format!(
                "did not boot within {}s ({last}); see {}",
                self.boot_timeout.as_secs(),
                self.dir(name).join("console.log").display()
            ),
        })
    }

    fn machine(&self, name: &str, record: &Record, host_key: Option<String>) -> Machine {
        Machine {
            address: record.address.clone(),
            ssh_port: 22,
            identity_file: self.dir(name).join("id_ed25519"),
            host_key,
            running: alive(record.pid) && netns_exists(&record.netns),
        }
    }

    fn host_key_of(root: &Path) -> Option<String> {
        let text = std::fs::read_to_string(root.join("etc/ssh/ssh_host_ed25519_key.pub")).ok()?;
        Some(
            text.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}

#[async_trait::async_trait]
impl Backend for Nspawn {
    async fn read(&self, name: &str) -> Result<Option<Machine>> {
        let Some(record) = self.record(name) else {
            return Ok(None);
        };
        let key = Self::host_key_of(&record.root);
        Ok(Some(self.machine(name, &record, key)))
    }

    async fn ensure(&self, request: &Request) -> Result<Machine> {
        let name = &request.name;
        let started = std::time::Instant::now();
        let image = self.image_root(name, &request.image).await?;
        tracing::debug!(instance = %name, elapsed = ?started.elapsed(), "image ready");
        let dir = self.dir(name);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io("instance folder", e))?;
        let root = if request.persistent {
            let root = dir.join("root");
            if !root.join(".complete").exists() {
                let tmp = dir.join(".root.tmp");
                let _ = tokio::fs::remove_dir_all(&tmp).await;
                run(
                    "cp",
                    &[
                        "-a",
                        "--reflink=auto",
                        &image.display().to_string(),
                        &tmp.display().to_string(),
                    ],
                )
                .await?;
                // A root filesystem's `/` must be traversable by its unprivileged daemons
                // (dbus as messagebus): a folder made by mktemp, tarred as `.`, is 0700, and
                // the machine would hang half-booted. The overlay of an ephemeral machine
                // hides this; its own copy does not.
                tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
                    .await
                    .map_err(|e| io("root", e))?;
                tokio::fs::write(tmp.join(".complete"), b"")
                    .await
                    .map_err(|e| io("root", e))?;
                tokio::fs::rename(&tmp, &root)
                    .await
                    .map_err(|e| io("root", e))?;
                tracing::info!(instance = %name, elapsed = ?started.elapsed(), "own root copied from the image");
            }
            root
        } else {
            image.clone()
        };
        let host_key = Self::host_key_of(&root);
        if let Some(mut record) = self.record(name) {
            let machine = self.machine(name, &record, host_key.clone());
            if machine.running {
                self.watch_exit(name, record.pid);
                if !record.booted {
                    // Started earlier but never answered: still booting, or stuck.
                    self.wait_ready(name, &machine).await?;
                    record.booted = true;
                    record.init = record.init.or_else(|| Proc::init_of(record.pid));
                    self.save(name, &record).await?;
                }
                return Ok(machine);
            }
            // It stopped (a host reboot, a crash): end what is left of it (its init may
            // have outlived nspawn), then start it again on the same network.
            let _ = self.destroy_process(&record).await;
        }
        let key = self.key(name).await?;
        let (slot, netns) = match self.record(name) {
            Some(r) if netns_exists(&r.netns) => (r.slot, r.netns),
            _ => self.claim_slot(name).await?,
        };
        let address = match self.network(slot, &netns).await {
            Ok(a) => a,
            Err(e) => {
                let _ = run("ip", &["netns", "del", &netns]).await;
                return Err(e);
            }
        };
        let mut record = Record {
            pid: 0,
            slot,
            netns,
            address,
            persistent: request.persistent,
            root: root.clone(),
            init: None,
            booted: false,
        };
        record.pid = self.boot(request, &root, &record).await?;
        self.watch_exit(name, record.pid);
        self.save(name, &record).await?;
        tracing::info!(instance = %name, pid = record.pid, address = %record.address, elapsed = ?started.elapsed(), "machine started; waiting for it to boot");
        let machine = Machine {
            identity_file: key,
            ..self.machine(name, &record, host_key)
        };
        self.wait_ready(name, &machine).await?;
        tracing::info!(instance = %name, elapsed = ?started.elapsed(), "machine booted");
        record.booted = true;
        record.init = Proc::init_of(record.pid);
        self.save(name, &record).await?;
        Ok(Machine {
            running: true,
            ..machine
        })
    }

    async fn destroy(&self, name: &str) -> Result<()> {
        if let Some(record) = self.record(name) {
            self.destroy_process(&record).await?;
        }
        let dir = self.dir(name);
        if dir.exists() {
            tokio::fs::remove_dir_all(&dir)
                .await
                .map_err(|e| io("removing the instance folder", e))?;
        }
        Ok(())
    }
}

impl Nspawn {
    /// Writes `machine.json` (temp + rename: a crash never leaves half a record).
    async fn save(&self, name: &str, record: &Record) -> Result<()> {
        let dir = self.dir(name);
        let json = serde_json::to_vec_pretty(record).expect("record serialises");
        let tmp = dir.join(".machine.json.tmp");
        tokio::fs::write(&tmp, json)
            .await
            .map_err(|e| io("machine.json", e))?;
        tokio::fs::rename(&tmp, dir.join("machine.json"))
            .await
            .map_err(|e| io("machine.json", e))
    }

    /// Halts the container (SIGTERM: a clean shutdown; SIGKILL after 15 s) and removes
    /// its network.
    async fn destroy_process(&self, record: &Record) -> Result<()> {
        if alive(record.pid) {
            // SAFETY: kill(2) on a pid we started and just checked is systemd-nspawn.
            unsafe {
                libc::kill(record.pid as i32, libc::SIGTERM);
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            while alive(record.pid) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if alive(record.pid) {
                // SAFETY: as above.
                unsafe {
                    libc::kill(record.pid as i32, libc::SIGKILL);
                }
            }
        }
        if let Some(init) = record.init {
            // After a clean shutdown it is gone; after nspawn was killed it is not.
            init.kill().await;
        }
        let _ = run("ip", &["link", "del", &format!("{}h", record.netns)]).await;
        if netns_exists(&record.netns) {
            run("ip", &["netns", "del", &record.netns]).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_map_to_disjoint_30s_in_10_232() {
        assert_eq!(addresses(1), ("10.232.0.5".into(), "10.232.0.6".into()));
        assert_eq!(addresses(64), ("10.232.1.1".into(), "10.232.1.2".into()));
        assert_eq!(
            addresses(16000),
            ("10.232.250.1".into(), "10.232.250.2".into())
        );
    }

    #[tokio::test]
    async fn the_exit_hook_hears_of_a_process_that_ends_once() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let n = Nspawn::new(BTreeMap::new(), dir.path().to_path_buf()).on_exit(
            std::sync::Arc::new(move |name: &str| {
                let _ = tx.send(name.to_string());
            }),
        );
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id().unwrap();
        n.watch_exit("box", pid);
        n.watch_exit("box", pid); // a second ensure of a running machine adds no watcher
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err(), "still running");
        child.kill().await.unwrap();
        let heard = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(heard.unwrap().as_deref(), Some("box"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(rx.try_recv().is_err(), "one watcher per pid");
        assert!(n.watched.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_unknown_image_names_the_field_and_the_registered_ones() {
        let dir = tempfile::tempdir().unwrap();
        let n = Nspawn::new(
            BTreeMap::from([("bookworm".to_string(), dir.path().to_path_buf())]),
            dir.path().join("state"),
        );
        let e = n
            .image_root("demo", "trixie")
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "Instance/demo spec.image: \"trixie\" is not a registered image; registered: bookworm (hostkit serve --image NAME=PATH)"
        );
    }
}
