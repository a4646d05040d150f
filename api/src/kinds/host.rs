//! `Host`: a machine reached over SSH, its firewall and bootstrap.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::service::Package;
use super::{KindInfo, KindSpec};
use crate::meta::{Condition, Time};
use crate::validate::Validator;
use crate::validate::{
    check_host_address, check_path, check_secret, check_source, check_user_name,
};

use crate::values::{Duration, PortSpec, SecretRef};

/// A machine HostKit manages over SSH.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSpec {
    /// DNS name or IP address.
    pub address: String,
    #[serde(default)]
    pub ssh: Ssh,
    /// Use sudo for privileged steps (needed when `ssh.user` is not root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo: Option<bool>,
    /// Host-scoped nftables firewall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<Firewall>,
    /// Host-level packages and runtimes, applied before any service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Bootstrap>,
    /// Accounts several Services share (a group's owner, a daemon's `user`), declared
    /// once here rather than by one Service the others would depend on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<HostAccount>,
    /// How often facts and reachability are refreshed (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// The host's OpenTelemetry Collector: HostKit writes its config from the
    /// `observability` of the Services on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otel_collector: Option<super::OtelCollector>,
}

/// An account the host itself declares.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostAccount {
    pub name: String,
    /// A system account (no login, low uid).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
    /// Default `/var/lib/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// Default `/usr/sbin/nologin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Supplementary groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// How to reach a host over SSH.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ssh {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// An OpenSSH private key file on the controller (ed25519, rsa, ecdsa).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<String>,
    /// A password, by reference only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<HostKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HostKeyPolicy {
    /// The key must already be in known_hosts.
    Strict,
    /// Record the key on first use, then require it.
    AcceptNew,
    /// The key must equal `key`.
    Pinned,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostKey {
    pub policy: HostKeyPolicy,
    /// For `pinned`: the public key, `ssh-ed25519 AAAA…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// known_hosts file; default `~/.ssh/known_hosts` of the controller user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<String>,
}

/// Retries of connection set-up only; a command is never sent twice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_delay: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<Duration>,
}

/// An nftables input policy: rules in order, then the default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Firewall {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<FirewallRule>,
    /// What happens to traffic no rule matched (default `deny`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<FirewallAction>,
    /// Where the ruleset is written; default `/etc/nftables.d/hostkit.nft`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FirewallAction {
    Allow,
    Deny,
}

/// One rule: `allow` or `deny` some traffic `from` some sources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirewallRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<TrafficMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<TrafficMatch>,
    /// `any` (default), an address, a CIDR, or a list of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Sources>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<PortSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub udp: Vec<PortSpec>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub icmp: bool,
    /// Every protocol and port.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Sources {
    One(String),
    Many(Vec<String>),
}

impl Sources {
    pub fn list(&self) -> Vec<&str> {
        match self {
            Sources::One(s) => vec![s.as_str()],
            Sources::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bootstrap {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<Package>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mise: Option<Mise>,
}

/// The mise runtime manager and the tools it installs system-wide.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mise {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_data_dir: Option<String>,
    /// Tool name → version, e.g. `erlang: "29.0.2"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, String>,
}

/// Facts read from the host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_manager: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<HostFacts>,
    /// When the controller last reached the host; moves at most once a minute, so that
    /// heartbeats do not dominate the store's writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    /// The last `hostkit.dev/requestedAt` value a whole pass finished for (`hkctl
    /// reconcile --wait` waits for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,
    /// Digest of the host's own desired resources it last matched (drift is judged by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_digest: Option<String>,
    /// Number of the newest Revision of the host's own resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_lock: Option<PackageLockStatus>,
}

/// The version of every distribution package this host's resources install (its own and
/// its Services'): recorded when first seen installed, pinned by every plan after (a host
/// that drifted to another version is put back), moved only by `hkctl lock update`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageLockStatus {
    /// Distribution package name → version.
    #[serde(default)]
    pub packages: BTreeMap<String, String>,
    /// The `hostkit.dev/lock-update` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_for: Option<String>,
    /// When a lock update last moved the lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
    /// What the last lock update did, or why it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

pub const HOST_INFO: KindInfo = KindInfo {
    kind: "Host",
    plural: "hosts",
    singular: "host",
    short_names: &[],
};

impl KindSpec for HostSpec {
    type Status = HostStatus;
    const INFO: &'static KindInfo = &HOST_INFO;

    fn validate(&self, _name: &str, v: &mut Validator) {
        host(self, v);
    }

    fn apply_defaults(&mut self) {
        self.interval.get_or_insert_with(|| Duration::from_secs(60));
        self.ssh.port.get_or_insert(22);
        self.ssh.user.get_or_insert_with(|| "root".to_string());
        self.ssh.host_key.get_or_insert(HostKey {
            policy: HostKeyPolicy::Strict,
            key: None,
            known_hosts: None,
        });
        if self.sudo.is_none() {
            self.sudo = Some(self.ssh.user.as_deref() != Some("root"));
        }
        if let Some(fw) = &mut self.firewall {
            fw.default.get_or_insert(FirewallAction::Deny);
        }
    }
}

/// A key file on the controller's machine: absolute, or `~/…` in the controller's home.
fn check_key_path(field: &str, path: &str, v: &mut Validator) {
    match path.strip_prefix("~/") {
        Some(rest) => check_path(field, &format!("/{rest}"), v),
        None => check_path(field, path, v),
    }
}

fn host(spec: &HostSpec, v: &mut Validator) {
    v.check("address", check_host_address(&spec.address));
    if let Some(c) = &spec.otel_collector {
        super::observability::check_collector(c, v);
    }
    v.scope("ssh", |v| ssh(&spec.ssh, v));
    let mut names = std::collections::BTreeSet::new();
    for (i, a) in spec.accounts.iter().enumerate() {
        v.index("accounts", i, |v| {
            check_user_name("name", &a.name, v);
            if !names.insert(a.name.as_str()) {
                v.err("name", format!("{:?} is declared twice", a.name));
            }
            for (field, value) in [("home", &a.home), ("shell", &a.shell)] {
                if let Some(p) = value {
                    check_path(field, p, v);
                }
            }
            for (k, g) in a.groups.iter().enumerate() {
                check_user_name(format!("groups[{k}]"), g, v);
            }
        });
    }
    if let Some(fw) = &spec.firewall {
        v.scope("firewall", |v| firewall(fw, v));
    }
    if let Some(b) = &spec.bootstrap {
        v.scope("bootstrap", |v| {
            for (i, p) in b.packages.iter().enumerate() {
                v.check(format!("packages[{i}]"), p.check());
            }
            if let Some(m) = &b.mise {
                for (field, value) in [
                    ("mise.path", &m.path),
                    ("mise.systemDataDir", &m.system_data_dir),
                ] {
                    if let Some(p) = value {
                        check_path(field, p, v);
                    }
                }
                for (tool, version) in &m.tools {
                    if version.is_empty() {
                        v.err(
                            format!("mise.tools.{tool}"),
                            "needs a version, e.g. \"29.0.2\"",
                        );
                    }
                }
            }
        });
    }
}

pub(super) fn ssh(s: &Ssh, v: &mut Validator) {
    if let Some(u) = &s.user {
        check_user_name("user", u, v);
    }
    if let Some(f) = &s.identity_file {
        check_key_path("identityFile", f, v);
    }
    if let Some(k) = &s.host_key
        && let Some(f) = &k.known_hosts
    {
        check_key_path("hostKey.knownHosts", f, v);
    }
    if s.port == Some(0) {
        v.err("port", "must be 1-65535");
    }
    if let Some(p) = &s.password {
        check_secret("password", p, v);
    }
    if let Some(k) = &s.host_key {
        match (k.policy, &k.key) {
            (HostKeyPolicy::Pinned, None) => v.err(
                "hostKey.key",
                "policy pinned needs the public key, e.g. \"ssh-ed25519 AAAA…\"",
            ),
            (HostKeyPolicy::Pinned, Some(key))
                if !key.starts_with("ssh-") && !key.starts_with("ecdsa-") =>
            {
                v.err(
                    "hostKey.key",
                    "expected an OpenSSH public key such as \"ssh-ed25519 AAAA…\"",
                )
            }
            (HostKeyPolicy::Strict | HostKeyPolicy::AcceptNew, Some(_)) => {
                v.err("hostKey.key", "a key is only used with policy pinned")
            }
            _ => {}
        }
    }
    if let Some(r) = &s.retry
        && r.attempts == Some(0)
    {
        v.err("retry.attempts", "must be at least 1 (1 means no retry)");
    }
}

pub(super) fn firewall(fw: &Firewall, v: &mut Validator) {
    if let Some(p) = &fw.path {
        check_path("path", p, v);
    }
    for (i, r) in fw.rules.iter().enumerate() {
        v.index("rules", i, |v| {
            let m = match (&r.allow, &r.deny) {
                (Some(m), None) | (None, Some(m)) => m,
                _ => {
                    v.err("", "a rule has exactly one of allow or deny");
                    return;
                }
            };
            let field = if r.allow.is_some() { "allow" } else { "deny" };
            if m.tcp.is_empty() && m.udp.is_empty() && !m.icmp && !m.all {
                v.err(
                    field,
                    "match something: tcp: [ports], udp: [ports], icmp: true or all: true",
                );
            }
            for (proto, ports) in [("tcp", &m.tcp), ("udp", &m.udp)] {
                for (k, p) in ports.iter().enumerate() {
                    v.check(
                        format!("{field}.{proto}[{k}]"),
                        PortSpec::bounds(p).map(|_| ()),
                    );
                }
            }
            if let Some(from) = &r.from {
                for (k, src) in from.list().into_iter().enumerate() {
                    v.check(format!("from[{k}]"), check_source(src));
                }
            }
        });
    }
}
