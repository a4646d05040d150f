//! SSH transport on russh: one connection per host, reused for the state read and every
//! apply step; host keys checked (known_hosts, a pinned key, or explicit `acceptNew`),
//! never accepted blindly; retries only while setting the connection up.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, client};

use crate::transport::{MAX_OUTPUT, Output, Transport};
use crate::{Error, Result};

/// How the server's host key is checked.
#[derive(Clone, Debug)]
pub enum HostKeyCheck {
    /// The key must be in this known_hosts file.
    KnownHosts(PathBuf),
    /// The key must be this one (`ssh-ed25519 AAAA…`, as in a `.pub` file).
    Pinned(String),
    /// Known keys must match; an unknown host's key is recorded in the file on first use.
    AcceptNew(PathBuf),
}

#[derive(Clone, Debug)]
pub enum Auth {
    /// An OpenSSH private key file (ed25519, rsa, ecdsa).
    KeyFile(PathBuf),
    /// A password, already resolved from its secret reference.
    Password(String),
}

/// Retry of connection set-up: `attempts` tries, waiting `base_delay·2ⁿ` capped at
/// `max_delay` between them. A command is never re-sent.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SshOptions {
    /// The host's name (the Host object), for messages.
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub auth: Auth,
    pub host_key: HostKeyCheck,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    pub keepalive: Duration,
    /// Run scripts through `sudo -n` (for a non-root user).
    pub sudo: bool,
}

struct Client {
    address: String,
    port: u16,
    check: HostKeyCheck,
    /// Why the key was refused, for the error message.
    refusal: Arc<Mutex<Option<String>>>,
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(Default::default()).to_string()
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_key else {
            *self.refusal.lock().expect("not poisoned") =
                Some("the server offered a certificate; HostKit checks plain host keys".into());
            return Ok(false);
        };
        let verdict: std::result::Result<(), String> = match &self.check {
            HostKeyCheck::Pinned(expected) => {
                let b64 = expected.split_whitespace().nth(1).unwrap_or(expected);
                match russh::keys::parse_public_key_base64(b64) {
                    Ok(pinned) if &pinned == key => Ok(()),
                    Ok(pinned) => Err(format!(
                        "the server's key {} is not the pinned key {}",
                        fingerprint(key),
                        fingerprint(&pinned)
                    )),
                    Err(e) => Err(format!(
                        "the pinned key in the Host spec is not a public key: {e}"
                    )),
                }
            }
            HostKeyCheck::KnownHosts(path) | HostKeyCheck::AcceptNew(path) => {
                match russh::keys::check_known_hosts_path(&self.address, self.port, key, path) {
                    Ok(true) => Ok(()),
                    Ok(false) => {
                        if let HostKeyCheck::AcceptNew(path) = &self.check {
                            if let Some(dir) = path.parent() {
                                let _ = std::fs::create_dir_all(dir);
                            }
                            russh::keys::known_hosts::learn_known_hosts_path(
                                &self.address,
                                self.port,
                                key,
                                path,
                            )
                            .map(|_| {
                                tracing::info!(host = %self.address, key = %fingerprint(key), "recorded new host key (acceptNew)");
                            })
                            .map_err(|e| format!("cannot record the new host key: {e}"))
                        } else {
                            Err(format!(
                                "{} is not in {} (key {}); add it with ssh-keyscan, pin it in the Host spec, or set hostKey.policy: acceptNew",
                                self.address,
                                path.display(),
                                fingerprint(key)
                            ))
                        }
                    }
                    Err(russh::keys::Error::KeyChanged { line }) => Err(format!(
                        "the server's key {} is not the key {} on line {line} of {}: the host's key changed (possible man-in-the-middle); nothing is sent to it",
                        fingerprint(key),
                        known_fingerprint(path, line).unwrap_or_else(|| "recorded".into()),
                        path.display()
                    )),
                    Err(e) => Err(format!("cannot read {}: {e}", path.display())),
                }
            }
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(why) => {
                *self.refusal.lock().expect("not poisoned") = Some(why);
                Ok(false)
            }
        }
    }
}

/// The fingerprint of the key on `line` (1-based) of a known_hosts file.
fn known_fingerprint(path: &std::path::Path, line: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let entry = text.lines().nth(line.checked_sub(1)?)?;
    let b64 = entry.split_whitespace().nth(2)?;
    russh::keys::parse_public_key_base64(b64)
        .ok()
        .map(|k| fingerprint(&k))
}

/// A connected host.
pub struct Ssh {
    name: String,
    handle: client::Handle<Client>,
    sudo: bool,
}

enum Attempt {
    Retry(String),
    Fatal(Error),
}

impl Ssh {
    /// Connects and authenticates, retrying connection set-up per `opts.retry`.
    pub async fn connect(opts: &SshOptions) -> Result<Ssh> {
        let attempts = opts.retry.attempts.max(1);
        let mut last = String::new();
        for n in 0..attempts {
            if n > 0 {
                let delay = opts
                    .retry
                    .base_delay
                    .saturating_mul(1 << (n - 1).min(16))
                    .min(opts.retry.max_delay);
                tracing::debug!(host = %opts.name, attempt = n + 1, ?delay, "retrying connection");
                tokio::time::sleep(delay).await;
            }
            match Self::attempt(opts).await {
                Ok(ssh) => return Ok(ssh),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(why)) => last = why,
            }
        }
        Err(Error::Unreachable {
            host: format!("{} ({}:{})", opts.name, opts.address, opts.port),
            attempts,
            message: last,
        })
    }

    async fn attempt(opts: &SshOptions) -> std::result::Result<Ssh, Attempt> {
        let config = Arc::new(client::Config {
            keepalive_interval: Some(opts.keepalive),
            keepalive_max: 3,
            inactivity_timeout: None,
            // Scripts are small writes answered by the host: no Nagle delay.
            nodelay: true,
            // One script at a time per channel: a short message queue is plenty.
            channel_buffer_size: 16,
            ..Default::default()
        });
        let refusal = Arc::new(Mutex::new(None));
        let handler = Client {
            address: opts.address.clone(),
            port: opts.port,
            check: opts.host_key.clone(),
            refusal: refusal.clone(),
        };
        let host = format!("{} ({}:{})", opts.name, opts.address, opts.port);
        let connect = client::connect(config, (opts.address.as_str(), opts.port), handler);
        let mut handle = match tokio::time::timeout(opts.connect_timeout, connect).await {
            Err(_) => {
                return Err(Attempt::Retry(format!(
                    "no answer within {:?}",
                    opts.connect_timeout
                )));
            }
            Ok(Err(e)) => {
                if let Some(why) = refusal.lock().expect("not poisoned").take() {
                    return Err(Attempt::Fatal(Error::HostKey { host, message: why }));
                }
                return Err(Attempt::Retry(e.to_string()));
            }
            Ok(Ok(h)) => h,
        };
        let auth_error = |message: String| {
            Attempt::Fatal(Error::Auth {
                host: host.clone(),
                user: opts.user.clone(),
                message,
            })
        };
        // A host that finished the key exchange can still sit on the login (sshd waiting on
        // a booting system's user database): bounded like the connect, and retried.
        let authenticate = async {
            match &opts.auth {
                Auth::KeyFile(path) => {
                    let key = russh::keys::load_secret_key(path, None).map_err(|e| {
                        auth_error(format!("cannot load key {}: {e}", path.display()))
                    })?;
                    let hash = handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(|e| Attempt::Retry(e.to_string()))?
                        .flatten();
                    handle
                        .authenticate_publickey(
                            &opts.user,
                            PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                        )
                        .await
                        .map_err(|e| Attempt::Retry(e.to_string()))
                }
                Auth::Password(pw) => handle
                    .authenticate_password(&opts.user, pw)
                    .await
                    .map_err(|e| Attempt::Retry(e.to_string())),
            }
        };
        let result = match tokio::time::timeout(opts.connect_timeout, authenticate).await {
            Err(_) => {
                return Err(Attempt::Retry(format!(
                    "no answer to the login within {:?}",
                    opts.connect_timeout
                )));
            }
            Ok(r) => r?,
        };
        if !result.success() {
            return Err(auth_error(match &opts.auth {
                Auth::KeyFile(p) => format!("the server refused key {}", p.display()),
                Auth::Password(_) => "the server refused the password".to_string(),
            }));
        }
        Ok(Ssh {
            name: opts.name.clone(),
            handle,
            sudo: opts.sudo,
        })
    }
}

#[async_trait::async_trait]
impl Transport for Ssh {
    fn host(&self) -> &str {
        &self.name
    }

    async fn run(&self, script: &str) -> Result<Output> {
        let mut channel = self.start(script).await?;
        let mut out = Output::default();
        let mut status = None;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if out.stdout.len() + data.len() > MAX_OUTPUT {
                        out.truncated = true;
                    } else {
                        out.stdout.extend_from_slice(&data);
                    }
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    if out.stderr.len() + data.len() > MAX_OUTPUT {
                        out.truncated = true;
                    } else {
                        out.stderr.extend_from_slice(&data);
                    }
                }
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status as i32),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    out.stderr
                        .extend_from_slice(format!("killed by signal {signal_name:?}").as_bytes());
                    status = Some(128);
                }
                _ => {}
            }
        }
        out.status = status.ok_or_else(|| Error::Transport {
            host: self.name.clone(),
            message: "the connection closed before the script finished".into(),
        })?;
        Ok(out)
    }
}

impl Ssh {
    /// A session channel running `script` under `sh` (through `sudo` for a non-root user),
    /// its input sent whole and closed.
    async fn start(&self, script: &str) -> Result<russh::Channel<client::Msg>> {
        let err = |e: russh::Error| Error::Transport {
            host: self.name.clone(),
            message: e.to_string(),
        };
        let channel = self.handle.channel_open_session().await.map_err(err)?;
        let command = if self.sudo { "sudo -n sh -s" } else { "sh -s" };
        channel.exec(true, command).await.map_err(err)?;
        channel
            .data(super::whole(script).as_bytes())
            .await
            .map_err(err)?;
        channel.eof().await.map_err(err)?;
        Ok(channel)
    }

    /// Runs `script` and hands its standard output on line by line as it comes (a
    /// `journalctl -f` never ends): until the script exits, or `lines` is closed, which
    /// closes the channel. Returns the exit status, or `None` when the reader went away.
    pub async fn stream_lines(
        &self,
        script: &str,
        lines: tokio::sync::mpsc::Sender<String>,
    ) -> Result<Option<i32>> {
        let mut channel = self.start(script).await?;
        let mut partial: Vec<u8> = Vec::new();
        let mut status = None;
        loop {
            let msg = tokio::select! {
                m = channel.wait() => m,
                _ = lines.closed() => {
                    let _ = channel.close().await;
                    return Ok(None);
                }
            };
            let Some(msg) = msg else { break };
            match msg {
                ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, ext: 1 } => {
                    partial.extend_from_slice(&data);
                    while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = partial.drain(..=end).collect();
                        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                        if lines.send(text).await.is_err() {
                            let _ = channel.close().await;
                            return Ok(None);
                        }
                    }
                    // A line longer than the output limit is cut, never buffered whole.
                    if partial.len() > MAX_OUTPUT {
                        let text = String::from_utf8_lossy(&partial).into_owned();
                        partial.clear();
                        let _ = lines.send(text).await;
                    }
                }
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status as i32),
                _ => {}
            }
        }
        if !partial.is_empty() {
            let _ = lines
                .send(String::from_utf8_lossy(&partial).into_owned())
                .await;
        }
        Ok(status)
    }
}

/// The key a Host without `spec.ssh.identityFile` logs in with: `$HOSTKIT_SSH_KEY` (the
/// systemd unit points it at the key it passes as a credential, the chart at its Secret),
/// else the user's `~/.ssh/id_ed25519`.
pub const SSH_KEY_ENV: &str = "HOSTKIT_SSH_KEY";
/// The known_hosts file of a Host that names none: `$HOSTKIT_KNOWN_HOSTS`, else
/// `~/.ssh/known_hosts` (a service has no home of its own).
pub const KNOWN_HOSTS_ENV: &str = "HOSTKIT_KNOWN_HOSTS";

fn default_path(env: &str, fallback: &str) -> PathBuf {
    chosen_path(std::env::var_os(env), fallback)
}

/// A set, non-empty variable wins; an empty one counts as unset (as systemd's
/// `Environment=NAME=` clears a setting).
fn chosen_path(set: Option<std::ffi::OsString>, fallback: &str) -> PathBuf {
    match set {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => home_path(fallback),
    }
}

fn home_path(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(rest),
        None => PathBuf::from(p),
    }
}

impl SshOptions {
    /// Everything that says which machine, as whom, trusted how: two option sets with the
    /// same identity reach the same host the same way, so a connection made for one may
    /// serve the other. Key files and passwords count by a digest of their content, so a
    /// rotated key or password also makes a new connection.
    pub fn identity(&self) -> String {
        use sha2::Digest;
        let auth = match &self.auth {
            Auth::KeyFile(p) => {
                let content = std::fs::read(p).unwrap_or_default();
                format!(
                    "key {} {}",
                    p.display(),
                    hex::encode(sha2::Sha256::digest(&content))
                )
            }
            Auth::Password(pw) => format!(
                "password {}",
                hex::encode(sha2::Sha256::digest(pw.as_bytes()))
            ),
        };
        let trust = match &self.host_key {
            HostKeyCheck::KnownHosts(p) => format!("known-hosts {}", p.display()),
            HostKeyCheck::AcceptNew(p) => format!("accept-new {}", p.display()),
            HostKeyCheck::Pinned(k) => format!("pinned {k}"),
        };
        format!(
            "{}@{}:{} sudo={} {auth} {trust}",
            self.user, self.address, self.port, self.sudo
        )
    }

    /// Connection settings from a Host spec; a password reference is resolved here.
    pub fn from_host(
        name: &str,
        spec: &hostkit_api::kinds::HostSpec,
        secrets: &crate::secrets::Secrets,
    ) -> Result<SshOptions> {
        use hostkit_api::kinds::HostKeyPolicy;
        let ssh = &spec.ssh;
        let user = ssh.user.clone().unwrap_or_else(|| "root".into());
        let auth = match (&ssh.password, &ssh.identity_file) {
            (Some(r), None) => Auth::Password(secrets.resolve(r)?),
            (_, Some(f)) => Auth::KeyFile(home_path(f)),
            (None, None) => Auth::KeyFile(default_path(SSH_KEY_ENV, "~/.ssh/id_ed25519")),
        };
        let known_hosts = |hk: Option<&hostkit_api::kinds::HostKey>| match hk
            .and_then(|k| k.known_hosts.as_deref())
        {
            Some(file) => home_path(file),
            None => default_path(KNOWN_HOSTS_ENV, "~/.ssh/known_hosts"),
        };
        let host_key = match &ssh.host_key {
            None => HostKeyCheck::KnownHosts(known_hosts(None)),
            Some(hk) => match hk.policy {
                HostKeyPolicy::Strict => HostKeyCheck::KnownHosts(known_hosts(Some(hk))),
                HostKeyPolicy::AcceptNew => HostKeyCheck::AcceptNew(known_hosts(Some(hk))),
                HostKeyPolicy::Pinned => {
                    HostKeyCheck::Pinned(hk.key.clone().ok_or_else(|| Error::Invalid {
                        object: format!("Host/{name}"),
                        field: "spec.ssh.hostKey.key".into(),
                        message: "policy pinned needs key: (e.g. \"ssh-ed25519 AAAA…\")".into(),
                    })?)
                }
            },
        };
        let retry = ssh.retry.as_ref();
        let defaults = RetryPolicy::default();
        Ok(SshOptions {
            name: name.to_string(),
            address: spec.address.clone(),
            port: ssh.port.unwrap_or(22),
            sudo: spec.sudo.unwrap_or(user != "root") && user != "root",
            user,
            auth,
            host_key,
            connect_timeout: ssh
                .connect_timeout
                .as_ref()
                .map(|d| d.as_std())
                .unwrap_or(Duration::from_secs(10)),
            retry: RetryPolicy {
                attempts: retry.and_then(|r| r.attempts).unwrap_or(defaults.attempts),
                base_delay: retry
                    .and_then(|r| r.base_delay.as_ref())
                    .map(|d| d.as_std())
                    .unwrap_or(defaults.base_delay),
                max_delay: retry
                    .and_then(|r| r.max_delay.as_ref())
                    .map(|d| d.as_std())
                    .unwrap_or(defaults.max_delay),
            },
            keepalive: Duration::from_secs(15),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SSH server that finishes the key exchange and then never answers the login.
    struct SilentLogin;

    impl russh::server::Handler for SilentLogin {
        type Error = russh::Error;

        async fn auth_publickey(
            &mut self,
            _: &str,
            _: russh::server::VerifiedPublicKey<'_>,
        ) -> std::result::Result<russh::server::Auth, Self::Error> {
            std::future::pending().await
        }
    }

    fn keygen(dir: &std::path::Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&path)
            .output()
            .expect("ssh-keygen");
        assert!(out.status.success());
        path
    }

    #[test]
    fn a_service_s_key_and_known_hosts_come_from_its_environment_before_home() {
        let set = Some(std::ffi::OsString::from(
            "/run/credentials/hostkit.service/ssh-key",
        ));
        assert_eq!(
            chosen_path(set, "~/.ssh/id_ed25519"),
            PathBuf::from("/run/credentials/hostkit.service/ssh-key")
        );
        let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
        assert_eq!(
            chosen_path(Some("".into()), "~/.ssh/known_hosts"),
            home.join(".ssh/known_hosts")
        );
        assert_eq!(
            chosen_path(None, "~/.ssh/id_ed25519"),
            home.join(".ssh/id_ed25519")
        );
    }

    #[tokio::test]
    async fn a_server_that_sits_on_the_login_is_an_unreachable_host_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let host_key = russh::keys::load_secret_key(keygen(dir.path(), "host"), None).unwrap();
        let client_key = keygen(dir.path(), "client");
        let config = Arc::new(russh::server::Config {
            keys: vec![host_key],
            ..Default::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let config = config.clone();
                tokio::spawn(async move {
                    if let Ok(session) =
                        russh::server::run_stream(config, stream, SilentLogin).await
                    {
                        let _ = session.await;
                    }
                });
            }
        });
        let opts = SshOptions {
            name: "silent".into(),
            address: "127.0.0.1".into(),
            port,
            user: "root".into(),
            auth: Auth::KeyFile(client_key),
            host_key: HostKeyCheck::AcceptNew(dir.path().join("known_hosts")),
            connect_timeout: Duration::from_millis(500),
            retry: RetryPolicy {
                attempts: 2,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(10),
            },
            keepalive: Duration::from_secs(1),
            sudo: false,
        };
        let result = tokio::time::timeout(Duration::from_secs(20), Ssh::connect(&opts))
            .await
            .expect("the login is bounded by the connect timeout");
        match result {
            Err(Error::Unreachable {
                attempts, message, ..
            }) => {
                assert_eq!(attempts, 2);
                assert!(message.contains("no answer to the login"), "{message}");
            }
            Err(other) => panic!("expected Unreachable, got {other}"),
            Ok(_) => panic!("a login that never ended was taken as a session"),
        }
    }
}
