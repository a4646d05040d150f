//! `Service`: what runs on a host and everything it needs there.
//!
//! The vocabulary is the original HostKit's: storage named by root, an account derived
//! from the project's user prefix, a daemon with `isolate`, named listeners, env files with
//! secret references, commands with `down:`. Paths and names may use `${roots.X}`,
//! `${storage.X}`, `${service.user}`, `${service.unit}`, `${service.name}` and `${listen.X}`;
//! an unknown reference is a validation error.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod backup;
mod checks;
mod logs;
mod monitors;
mod network;
mod packages;
mod rollout;
mod source;
mod status;

pub use backup::{BACKUP_JOB_PREFIX, BackupPlan, BackupSettings, StorageBackup};
pub use logs::{LogRateLimit, Logs};
pub use monitors::{
    CommandMonitor, FileMonitor, HttpMonitor, JournalMonitor, Monitor, MonitorStatus,
    PrometheusMonitor, Severity, SystemdMonitor, TcpMonitor, monitor_names,
};
pub use network::{AddressList, Network, NetworkAccess, NetworkPolicy, address_entry};
pub use packages::{Package, PackageDetails};
pub use rollout::{
    Analysis, AnalysisStatus, HostCount, OnUnhealthy, PrometheusAnalysis, Rollout, RolloutStatus,
};
pub use source::{DEFAULT_KEEP, Source, SourceAuth, is_commit_id};
pub use status::{HostPlanStatus, PendingChanges, ServiceStatus, SourceStatus};

use super::{KindInfo, KindSpec};
use crate::meta::LabelSelector;
use crate::validate::Validator;
use crate::values::{Duration, FileMode, SecretRef};

/// Desired state of a service on its hosts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// The Project whose roots and prefixes name this service's paths, user and units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Host objects to run on, by name. Use this or `hostSelector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Host objects to run on, by label. Use this or `hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<LabelSelector>,
    /// Plan and report only; never apply while true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// How often the controller re-reads the hosts to detect drift (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How changes roll out across hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// How many Revisions to keep (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<u32>,
    /// The system account the service runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
    /// Application code from git, deployed as releases under `<source root>/<service>`
    /// with a `current` link (`${source.current}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Directories named by root: `data` → `<data root>/<service>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage: Vec<Storage>,
    /// Extra directories by path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<Directory>,
    /// Files with inline content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    /// Symbolic links.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symlinks: Vec<Symlink>,
    /// Structured config files rendered as ini, toml, yaml or json.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_files: Vec<ConfigFile>,
    /// Env files by name; a daemon or job attaches them with `env: [name]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvFile>,
    /// The long-running process, rendered as a systemd service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<Daemon>,
    /// Scheduled one-shot work: a service and a timer each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<Job>,
    /// Commands run around the daemon's lifecycle, each with a way back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Command>,
    /// Caddy sites in front of the daemon's listeners.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caddy_sites: Vec<CaddySite>,
    /// Health checks reported as conditions and metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitors: Vec<Monitor>,
    /// System packages the service needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<Package>,
    /// Telemetry sent to the hosts' collectors (over the Project's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<super::Observability>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Account {
    /// User name; default: the project's user prefix plus the service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A system account (no login, low uid).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
    /// Home directory; default: under the state root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Supplementary groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// What happens to a created resource when its change is rolled back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RollbackPolicy {
    /// Keep it (the default for directories and accounts).
    #[default]
    Keep,
    /// Delete it if this apply created it.
    DeleteIfCreated,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Storage {
    /// A root name (`data`, `state`, `cache`, …) or any name with an explicit `path`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Overrides the derived path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Snapshots of this storage on the host: `true` (daily, 7 kept) or
    /// `{schedule, keep, paths}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<StorageBackup>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Directory {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackPolicy>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct File {
    pub path: String,
    /// Text content. Use this or `contentBase64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Binary content, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackPolicy>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Symlink {
    pub path: String,
    /// Where the link points.
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConfigFormat {
    Ini,
    Toml,
    Yaml,
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFile {
    pub path: String,
    pub format: ConfigFormat,
    /// The structured content; rendered deterministically in the chosen format.
    pub content: serde_json::Value,
    /// Keys (dotted paths) whose values are secrets, resolved at apply time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
}

/// A dotenv file: public values in `set`, secrets as references in `secrets`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvFile {
    /// Default: `<config root>/<service>/<name>.env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Default `0640`: env files usually hold secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRef>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    OnSuccess,
    OnFailure,
    OnAbnormal,
    OnWatchdog,
    OnAbort,
    Always,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceType {
    Simple,
    Exec,
    Forking,
    Oneshot,
    Notify,
    Idle,
}

/// The long-running process of a service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Daemon {
    /// Unit name; default: the project's unit prefix plus the service name, `.service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wants: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// The command and its arguments, quoted for systemd when rendered.
    pub exec: Vec<String>,
    /// Default: the service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Names of env files (keys of `spec.env`), attached as `EnvironmentFile=`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Literal environment variables (`Environment=`); not for secrets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_sec: Option<Duration>,
    /// systemd sandboxing and resource limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolate: Option<Isolate>,
    /// Named listeners; `reverseProxy.listener` and `${listen.X}` refer to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<Listener>,
    /// Install target; default `multi-user.target`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wanted_by: Vec<String>,
    /// Where the daemon's output goes and under which name: journald directives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Logs>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxProfile {
    WebService,
    StrictWeb,
    StrictApp,
    Untrusted,
    VibeDev,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceProfile {
    Small,
    Medium,
    Large,
}

/// Sandboxing of a daemon or job; `profile` defaults to `strict_app`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Isolate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<SandboxProfile>,
    /// Storage names or absolute paths the process may write (`ReadWritePaths=`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writable: Vec<String>,
    /// `loopback`, `any`, or `{allow: [...], deny: any | [...]}` of addresses and CIDRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Give the process its own empty network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_network: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_high: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_max: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    pub port: u16,
    /// `loopback` (default), `any`, or an IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Job {
    /// `<unit prefix><service>-<name>.service` and `.timer`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub exec: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolate: Option<Isolate>,
    pub schedule: Schedule,
}

/// When a job runs; at least one trigger is required.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// systemd calendar expressions, e.g. `daily` or `Mon *-*-* 03:00:00`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_calendar: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_boot_sec: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unit_active_sec: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_active_sec: Option<Duration>,
    /// Catch up on runs missed while the host was off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub persistent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub randomized_delay_sec: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    BeforeStart,
    AfterStart,
    BeforeStop,
    AfterStop,
}

/// How a command is undone by a down plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CommandDown {
    /// Nothing to undo.
    Noop,
    /// Cannot be undone; reported as skipped in the rollback coverage.
    Irreversible,
    /// Run this command to undo.
    #[serde(untagged)]
    Exec(DownExec),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DownExec {
    pub exec: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Command {
    pub name: String,
    pub exec: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Skip when this path exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creates: Option<String>,
    /// Skip when this shell test succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<String>,
    /// Paths whose content, when changed, makes the command run again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success_codes: Vec<i32>,
    /// Ids of resources that must be applied first, e.g. `file:/etc/app.toml`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// `noop`, `irreversible`, or `{exec: [...]}`. Required: every command says how it is undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<CommandDown>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaddySite {
    pub name: String,
    /// The site address, e.g. `api.example.com`.
    pub host: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encode: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_proxy: Option<ReverseProxy>,
    /// Document root for `fileServer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub file_server: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitors: Vec<Monitor>,
}

/// Upstream of a reverse proxy: a named listener of this service, or an address.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReverseProxy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

pub const SERVICE_INFO: KindInfo = KindInfo {
    kind: "Service",
    plural: "services",
    singular: "service",
    short_names: &["svc"],
};

impl ServiceSpec {
    /// Whether this Service runs on the Host `host` with `labels`: named in `hosts`, or
    /// matched by `hostSelector`. The one answer to "does this Service select that Host".
    pub fn selects(&self, host: &str, labels: &BTreeMap<String, String>) -> bool {
        self.hosts.iter().any(|h| h == host)
            || self
                .host_selector
                .as_ref()
                .is_some_and(|s| s.matches(labels))
    }

    /// Where the Service's hosts come from: a move between projects or hosts changes the
    /// hosts' own resources (their firewalls).
    pub fn placement(&self) -> (Option<&str>, &[String], Option<&LabelSelector>) {
        (
            self.project.as_deref(),
            &self.hosts,
            self.host_selector.as_ref(),
        )
    }
}

impl KindSpec for ServiceSpec {
    const FREE_TEXT: &'static [&'static str] = &["files/*/content", "configFiles/*/content/**"];

    type Status = ServiceStatus;
    const INFO: &'static KindInfo = &SERVICE_INFO;

    fn validate(&self, name: &str, v: &mut Validator) {
        checks::service(self, name, v);
    }

    fn apply_defaults(&mut self) {
        self.interval.get_or_insert_with(|| Duration::from_secs(60));
        self.revision_history_limit.get_or_insert(10);
        let rollout = self.rollout.get_or_insert_with(Default::default);
        rollout.max_parallel.get_or_insert(HostCount::Count(1));
        let isolates = self
            .daemon
            .iter_mut()
            .filter_map(|d| d.isolate.as_mut())
            .chain(self.jobs.iter_mut().filter_map(|j| j.isolate.as_mut()));
        for isolate in isolates {
            isolate.profile.get_or_insert(SandboxProfile::StrictApp);
        }
        if let Some(daemon) = &mut self.daemon {
            daemon.restart.get_or_insert(RestartPolicy::OnFailure);
            for l in &mut daemon.listen {
                l.on.get_or_insert_with(|| "loopback".to_string());
                l.protocol.get_or_insert(Protocol::Tcp);
            }
        }
    }
}
