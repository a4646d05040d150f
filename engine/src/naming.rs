//! Naming conventions in one place: where a service's storage lives, what its account and
//! units are called, and what `${roots.X}`, `${storage.X}`, `${service.user}`,
//! `${service.unit}`, `${service.name}`, `${listen.X}` and `${source.current}` expand to.
//!
//! HostKit's rules (reference §2, items 5–12): a service's identity is its name with `_`
//! turned into `-`; storage `data` lives at `<data root>/<identity>` (`/var/lib/<identity>`
//! without a project root); the env file `runtime` at `<config root>/<identity>/runtime.env`;
//! the account is `<user prefix><identity>`; units are `<unit prefix><identity>.service`.

use std::collections::BTreeMap;

use hostkit_api::kinds::{ProjectSpec, Roots, ServiceSpec};
use hostkit_api::validate::find_references;

use crate::Error;

/// Where units, Caddy sites, stamps and backups go on a host.
pub const UNIT_DIR: &str = "/etc/systemd/system";
pub const CADDY_SITES_DIR: &str = "/etc/caddy/sites";
pub const STATE_DIR: &str = "/var/lib/hostkit";
pub const DEFAULT_FIREWALL_PATH: &str = "/etc/nftables.d/hostkit.nft";

/// Where the backups of one apply (a run) live on the host: a rollback restores from there.
///
/// Inside it, each part has its own folder, so that no managed path can collide with
/// another part: `files/<path>` (a file's previous bytes), `salts/<path>` (the salt of its
/// recorded sha256), `firewall/<table>.nft`, `undone/<step>` (a command's down ran) and
/// `journal` (what the apply began and finished).
pub fn backup_root(run: &str) -> String {
    format!("{STATE_DIR}/backups/{run}")
}

/// A new run id, `<prefix>-<UTC time>-<6 hex>` (`web-g3-20261201T101500-3fa2c1`). The
/// time orders runs for people; the suffix keeps two applies in the same second apart, as
/// their backups and journals must never share a folder.
pub fn run_id(prefix: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    use sha2::Digest;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!("{prefix}|{clock}|{}|{seq}", std::process::id());
    let suffix = hex::encode(&sha2::Sha256::digest(seed.as_bytes())[..3]);
    format!("{prefix}-{}-{suffix}", now.format("%Y%m%dT%H%M%S"))
}

/// Where the previous bytes of `path` go, inside a run's `root` ([`backup_root`]).
pub fn file_backup(root: &str, path: &str) -> String {
    format!("{root}/files{path}")
}

/// The salt of a file backup made by [`file_backup`]: the same path under `salts/`.
pub fn salt_of(backup: &str) -> String {
    match backup.split_once("/files/") {
        Some((root, path)) => format!("{root}/salts/{path}"),
        None => format!("{backup}.salt"),
    }
}

/// Where the loaded ruleset of `table` goes before a new one replaces it.
pub fn firewall_backup(root: &str, table: &str) -> String {
    format!("{root}/firewall/{table}.nft")
}

/// The write-ahead journal of a run (see `crate::journal`).
pub fn journal_path(run: &str) -> String {
    format!("{}/journal", backup_root(run))
}

/// The marker that a down step of a run has completed (a command's `down:` runs once).
pub fn undone_marker(run: &str, step: &str) -> String {
    format!("{}/undone/{}", backup_root(run), hex::encode(step))
}

/// Where each root lives when the project does not say.
fn default_root(name: &str) -> &'static str {
    match name {
        "source" => "/opt",
        "data" | "state" => "/var/lib",
        "config" => "/etc",
        "cache" => "/var/cache",
        "logs" => "/var/log",
        "run" => "/run",
        "bin" => "/usr/local/bin",
        _ => "/var/lib",
    }
}

/// A project's roots and prefixes, with HostKit's defaults filled in.
#[derive(Clone, Debug, Default)]
pub struct Conventions {
    roots: BTreeMap<&'static str, String>,
    user_prefix: String,
    unit_prefix: String,
    /// True for roots the project set: a service's folder then goes below them.
    explicit: BTreeMap<&'static str, bool>,
}

impl Conventions {
    pub fn new(project: Option<&ProjectSpec>) -> Conventions {
        let empty = Roots::default();
        let roots_spec = project.map(|p| &p.roots).unwrap_or(&empty);
        let mut roots = BTreeMap::new();
        let mut explicit = BTreeMap::new();
        for (name, value) in roots_spec.entries() {
            roots.insert(
                name,
                value
                    .unwrap_or(default_root(name))
                    .trim_end_matches('/')
                    .to_string(),
            );
            explicit.insert(name, value.is_some());
        }
        Conventions {
            roots,
            user_prefix: project
                .and_then(|p| p.prefixes.user.clone())
                .unwrap_or_default(),
            unit_prefix: project
                .and_then(|p| p.prefixes.unit.clone())
                .unwrap_or_default(),
            explicit,
        }
    }

    /// `${roots.X}`: the root itself.
    pub fn root(&self, name: &str) -> Option<&str> {
        self.roots.get(name).map(String::as_str)
    }

    /// The service's identity: its name with `_` as `-`.
    pub fn identity(service: &str) -> String {
        service.replace('_', "-")
    }

    /// The account the service runs as: `account.name`, else the user prefix plus identity.
    pub fn user(&self, service: &str, spec: &ServiceSpec) -> String {
        spec.account
            .as_ref()
            .and_then(|a| a.name.clone())
            .unwrap_or_else(|| format!("{}{}", self.user_prefix, Self::identity(service)))
    }

    /// A unit name: an explicit name keeps its suffix (or gets `suffix`), otherwise the unit
    /// prefix plus identity (plus `-part` for jobs) plus `suffix`.
    pub fn unit(
        &self,
        service: &str,
        explicit: Option<&str>,
        part: Option<&str>,
        suffix: &str,
    ) -> String {
        if let Some(name) = explicit {
            return if name.ends_with(".service") || name.ends_with(".timer") {
                name.to_string()
            } else {
                format!("{name}{suffix}")
            };
        }
        let base = format!("{}{}", self.unit_prefix, Self::identity(service));
        match part {
            Some(p) => format!("{base}-{p}{suffix}"),
            None => format!("{base}{suffix}"),
        }
    }

    /// The daemon's unit: `daemon.name`, else `<unit prefix><identity>.service`.
    pub fn daemon_unit(&self, service: &str, spec: &ServiceSpec) -> String {
        self.unit(
            service,
            spec.daemon.as_ref().and_then(|d| d.name.as_deref()),
            None,
            ".service",
        )
    }

    /// Where a storage folder lives: its `path`, else `<root>/<identity>`.
    pub fn storage_path(&self, service: &str, spec: &ServiceSpec, storage: &str) -> Option<String> {
        let s = spec.storage.iter().find(|s| s.name == storage)?;
        if let Some(p) = &s.path {
            return Some(p.clone());
        }
        Some(format!(
            "{}/{}",
            self.root(&s.name)?,
            Self::identity(service)
        ))
    }

    /// Where an env file lives: its `path`, else `<config root>/<identity>/<name>.env`.
    pub fn env_file_path(&self, service: &str, spec: &ServiceSpec, name: &str) -> Option<String> {
        let env = spec.env.get(name)?;
        Some(match &env.path {
            Some(p) => p.clone(),
            None => format!(
                "{}/{}/{name}.env",
                self.root("config").unwrap_or("/etc"),
                Self::identity(service)
            ),
        })
    }

    /// The account's home: `account.home`, else the state root's service folder.
    pub fn home(&self, service: &str, spec: &ServiceSpec) -> String {
        spec.account
            .as_ref()
            .and_then(|a| a.home.clone())
            .unwrap_or_else(|| {
                format!(
                    "{}/{}",
                    self.root("state").unwrap_or("/var/lib"),
                    Self::identity(service)
                )
            })
    }

    /// Where a Service's releases and `current` link live: `<source root>/<identity>`.
    pub fn source_dir(&self, service: &str) -> String {
        format!(
            "{}/{}",
            self.root("source").unwrap_or("/opt"),
            Self::identity(service)
        )
    }

    /// True when the project set this root explicitly.
    pub fn is_explicit(&self, root: &str) -> bool {
        self.explicit.get(root).copied().unwrap_or(false)
    }

    /// Expands every `${…}` reference in `text` for one service.
    pub fn expand(&self, service: &str, spec: &ServiceSpec, text: &str) -> Result<String, Error> {
        let mut out = text.to_string();
        for reference in find_references(text) {
            let value = match reference.split_once('.') {
                Some(("roots", r)) => self.root(r).map(String::from),
                Some(("storage", s)) => self.storage_path(service, spec, s),
                Some(("service", "user")) => Some(self.user(service, spec)),
                Some(("service", "unit")) => Some(self.daemon_unit(service, spec)),
                Some(("service", "name")) => Some(Self::identity(service)),
                Some(("source", "current")) => spec
                    .source
                    .as_ref()
                    .map(|s| crate::release::current_path(&self.source_dir(service), s.subdir())),
                Some(("listen", l)) => spec
                    .daemon
                    .as_ref()
                    .and_then(|d| d.listen.iter().find(|x| x.name == l))
                    .map(|x| {
                        let host = match x.on.as_deref() {
                            None | Some("loopback") => "127.0.0.1",
                            Some("any") => "0.0.0.0",
                            Some(addr) => addr,
                        };
                        if host.contains(':') {
                            format!("[{host}]:{}", x.port)
                        } else {
                            format!("{host}:{}", x.port)
                        }
                    }),
                _ => None,
            };
            let value = value.ok_or_else(|| Error::UnknownReference {
                service: service.to_string(),
                reference: reference.to_string(),
            })?;
            out = out.replace(&format!("${{{reference}}}"), &value);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostkit_api::manifest::parse_documents;
    use hostkit_api::{AnyObject, kinds};

    fn toys() -> (ProjectSpec, ServiceSpec) {
        let text = include_str!("../../manifests/examples/toys.yaml");
        let mut project = None;
        let mut service = None;
        for doc in parse_documents("toys.yaml", text) {
            match doc.unwrap().object {
                AnyObject::Project(p) => project = Some(p.spec),
                AnyObject::Service(s) => service = Some(s.spec),
                _ => {}
            }
        }
        (project.unwrap(), service.unwrap())
    }

    #[test]
    fn the_toys_example_follows_the_project_conventions() {
        let (project, service) = toys();
        let c = Conventions::new(Some(&project));
        assert_eq!(c.user("exograph", &service), "toys-exograph");
        assert_eq!(c.daemon_unit("exograph", &service), "toys-exograph.service");
        assert_eq!(
            c.storage_path("exograph", &service, "data").unwrap(),
            "/srv/toys/exograph"
        );
        assert_eq!(
            c.storage_path("exograph", &service, "state").unwrap(),
            "/var/lib/toys/exograph"
        );
        assert_eq!(c.home("exograph", &service), "/var/lib/toys/exograph");
        assert_eq!(
            c.expand("exograph", &service, "${roots.source}").unwrap(),
            "/opt/toys/src"
        );
        assert!(c.is_explicit("data") && !c.is_explicit("cache"));
    }

    #[test]
    fn without_a_project_hostkit_defaults_apply() {
        let (_, mut service) = toys();
        service.project = None;
        let c = Conventions::new(None);
        assert_eq!(c.user("hex_mirror", &service), "hex-mirror");
        assert_eq!(
            c.storage_path("hex_mirror", &service, "data").unwrap(),
            "/var/lib/hex-mirror"
        );
        assert_eq!(
            c.unit("hex-mirror", None, Some("sync"), ".timer"),
            "hex-mirror-sync.timer"
        );
        assert_eq!(
            c.unit("x", Some("api.service"), None, ".service"),
            "api.service"
        );
        assert_eq!(c.unit("x", Some("api"), None, ".service"), "api.service");
    }

    #[test]
    fn references_expand_and_unknown_ones_are_errors() {
        let (project, mut service) = toys();
        service
            .env
            .insert("runtime".into(), kinds::EnvFile::default());
        let daemon = service.daemon.as_mut().unwrap();
        daemon.listen.push(kinds::Listener {
            name: "http".into(),
            port: 4200,
            on: None,
            protocol: None,
        });
        let c = Conventions::new(Some(&project));
        let text = "${storage.data}/index --user ${service.user} --unit ${service.unit} --at ${listen.http}";
        assert_eq!(
            c.expand("exograph", &service, text).unwrap(),
            "/srv/toys/exograph/index --user toys-exograph --unit toys-exograph.service --at 127.0.0.1:4200"
        );
        assert_eq!(
            c.env_file_path("exograph", &service, "runtime").unwrap(),
            "/etc/toys/exograph/runtime.env"
        );
        let err = c
            .expand("exograph", &service, "${storage.nope}")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Service/exograph: unknown reference ${storage.nope}"
        );
    }
}
