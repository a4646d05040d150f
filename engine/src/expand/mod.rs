//! Expansion: a Service (with its Project's roots and prefixes) or a Host becomes a set of
//! [`Resource`]s, purely and deterministically: the same spec always gives the same ids,
//! contents and edges, so the plan of an unchanged host is empty.

use std::collections::{BTreeMap, BTreeSet};

use hostkit_api::kinds::{
    CommandDown, Daemon, HostSpec, Isolate, Phase, ProjectSpec, RollbackPolicy, ServiceSpec,
};
use sha2::{Digest, Sha256};

use crate::naming::{CADDY_SITES_DIR, Conventions, DEFAULT_FIREWALL_PATH, STATE_DIR, UNIT_DIR};
use crate::render::{caddy, files, nft, systemd};
use crate::resource::{CommandSpec, Content, Down, Edge, FileRole, Resource, Spec};
use crate::{Error, Result};

mod backups;
mod host;
mod monitors;
mod service;
mod source;
mod telemetry;
mod units;

pub use host::host_with_projects;
pub use monitors::{monitors, restarts_file};
use service::Expander;
pub use telemetry::telemetry;

/// Expands one Service for one host. A Service with a `source` needs its ref resolved
/// ([`service_at`]) unless the ref is a commit.
pub fn service(
    name: &str,
    spec: &ServiceSpec,
    project: Option<&ProjectSpec>,
) -> Result<Vec<Resource>> {
    service_at(name, spec, project, None)
}

/// [`service`] with `spec.source`'s ref resolved to `source` (see
/// [`crate::release::resolve`]); a commit ref needs no resolving.
pub fn service_at(
    name: &str,
    spec: &ServiceSpec,
    project: Option<&ProjectSpec>,
    source: Option<&crate::release::resolve::Resolved>,
) -> Result<Vec<Resource>> {
    let pinned = spec
        .source
        .as_ref()
        .and_then(|s| s.ref_.commit.clone())
        .filter(|c| hostkit_api::kinds::is_commit_id(c))
        .map(|commit| crate::release::resolve::Resolved {
            commit,
            fallback_ref: String::new(),
        });
    let mut expander = Expander::new(name, spec, project);
    expander.resolved = source.or(pinned.as_ref());
    let resources = expander.run()?;
    check_paths(&format!("Service/{name}"), &resources)?;
    Ok(resources)
}

/// Expands a Host's own resources: its firewall and bootstrap packages.
/// The package resources of a Service's `packages` or a Host's `bootstrap.packages`
/// (the Host reconciler also reads its Services' ones, for the host's package lock).
pub fn packages(owner: &str, packages: &[hostkit_api::kinds::Package]) -> Vec<Resource> {
    packages
        .iter()
        .map(|p| {
            let (system, version, update) = match p {
                hostkit_api::kinds::Package::Name(_) => (None, None, false),
                hostkit_api::kinds::Package::Detailed(d) => {
                    (d.as_.clone(), d.version.clone(), d.update)
                }
            };
            Resource::new(
                format!("package:{}", p.name()),
                owner,
                Spec::Package {
                    name: p.name().to_string(),
                    system,
                    version,
                    update,
                },
            )
        })
        .collect()
}

pub fn host(name: &str, spec: &HostSpec) -> Result<Vec<Resource>> {
    host_with_projects(name, spec, &[])
}

/// Every path the resources touch, after `${…}` references were filled in, is absolute,
/// normalised and one line: what validation checked on the spec's text, checked again on
/// what will reach the host (a reference could have supplied the `..`).
fn check_paths(object: &str, resources: &[Resource]) -> Result<()> {
    for r in resources {
        let Some(path) = r.path() else { continue };
        let problem = hostkit_api::validate::path_problem(path).err().or_else(|| {
            path.chars()
                .find(|c| !hostkit_api::validate::is_line_safe(*c))
                .map(|c| format!("holds the control character {c:?}"))
        });
        if let Some(why) = problem {
            return Err(Error::Invalid {
                object: object.to_string(),
                field: r.id.clone(),
                message: format!("the path {path:?} {why}"),
            });
        }
    }
    Ok(())
}

/// Adds the edges that follow from paths and owners: a path after its parent directory,
/// anything owned by an account (or a unit running as it) after the account, a unit after
/// the file it executes. Run over everything planned for a host, so the edges cross
/// Services and the Host's own resources.
pub fn link_paths(resources: &mut [Resource]) {
    let dirs: BTreeMap<String, String> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Directory { path, .. } => Some((path.clone(), r.id.clone())),
            _ => None,
        })
        .collect();
    let files: BTreeMap<String, String> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::File { path, .. } => Some((path.clone(), r.id.clone())),
            _ => None,
        })
        .collect();
    let accounts: BTreeSet<String> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Account { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    for r in resources.iter_mut() {
        if let Some(path) = r.path().map(str::to_string) {
            let mut p = std::path::Path::new(&path).parent();
            while let Some(parent) = p {
                if let Some(id) = dirs.get(parent.to_str().unwrap_or_default()) {
                    r.depends(id.clone(), Edge::ParentDirectory);
                    break;
                }
                p = parent.parent();
            }
        }
        let owners: Vec<String> = match &r.spec {
            Spec::Directory { owner, group, .. } | Spec::File { owner, group, .. } => {
                vec![owner.clone(), group.clone()]
            }
            Spec::Command(c) => c.user.iter().cloned().collect(),
            _ => vec![],
        };
        for o in owners {
            if accounts.contains(&o) {
                r.depends(format!("account:{o}"), Edge::OwnerAccount);
            }
        }
        // A unit runs as its `User=`/`Group=`: its file comes after that account, so
        // systemd never starts it before the user exists.
        if let Spec::File {
            role: FileRole::Unit,
            content,
            ..
        } = &r.spec
        {
            let runs_as: Vec<String> = content
                .text
                .lines()
                .filter_map(|l| l.strip_prefix("User=").or_else(|| l.strip_prefix("Group=")))
                .map(|u| u.trim().to_string())
                .filter(|u| accounts.contains(u))
                .collect();
            for u in runs_as {
                r.depends(format!("account:{u}"), Edge::OwnerAccount);
            }
        }
        let exec_path = match &r.spec {
            Spec::File {
                role: FileRole::Unit,
                content,
                ..
            } => content
                .text
                .lines()
                .find_map(|l| l.strip_prefix("ExecStart="))
                .and_then(|l| l.split_whitespace().next())
                .map(str::to_string),
            Spec::Command(c) => c.exec.first().cloned(),
            _ => None,
        };
        if let Some(exe) = exec_path
            && let Some(id) = files.get(&exe)
        {
            r.depends(id.clone(), Edge::ExecPath);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offline::manifests::Desired;

    fn examples() -> Desired {
        let dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
        Desired::load(&[dir]).unwrap()
    }

    #[test]
    fn the_full_host_example_expands_runtimes_packages_and_a_secret_env_file() {
        let d = examples();
        let rs = d.resources_for("app").unwrap();
        let ids: Vec<&str> = rs.iter().map(|r| r.id.as_str()).collect();
        for id in [
            "package:ca-certificates",
            "package:build-essential",
            "command:host-app/mise-erlang",
            "command:host-app/mise-elixir",
            "account:api",
            "directory:/var/lib/api",
            "file:/etc/api/api.env",
            "file:/etc/systemd/system/api.service",
            "unit:api.service",
            "command:api/migrate",
            "command:api/warm-cache",
            "file:/etc/caddy/sites/api.caddy",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        let mise = rs
            .iter()
            .find(|r| r.id == "command:host-app/mise-erlang")
            .unwrap();
        let Spec::Command(c) = &mise.spec else {
            panic!()
        };
        assert_eq!(c.exec, ["/usr/local/bin/mise", "install", "erlang@29.0.2"]);
        assert_eq!(
            c.creates.as_deref(),
            Some("/usr/local/share/mise/installs/erlang/29.0.2")
        );
        let env = rs.iter().find(|r| r.id == "file:/etc/api/api.env").unwrap();
        let Spec::File {
            content,
            owner,
            group,
            mode,
            ..
        } = &env.spec
        else {
            panic!()
        };
        assert!(
            content.text.contains("PORT=\"4000\"") && content.secrets.contains_key("DATABASE_URL")
        );
        assert_eq!(
            (owner.as_str(), group.as_str(), *mode),
            ("root", "api", 0o640)
        );
        // The unit waits for its env file, the migration, and the account.
        let unit = rs.iter().find(|r| r.id == "unit:api.service").unwrap();
        let deps: Vec<(&str, Edge)> = unit
            .depends_on
            .iter()
            .map(|d| (d.id.as_str(), d.edge))
            .collect();
        assert!(deps.contains(&("file:/etc/api/api.env", Edge::EnvFile)));
        assert!(deps.contains(&("command:api/migrate", Edge::Phase)));
        let warm = rs
            .iter()
            .find(|r| r.id == "command:api/warm-cache")
            .unwrap();
        assert!(
            warm.depends_on
                .iter()
                .any(|d| d.id == "unit:api.service" && d.edge == Edge::Phase)
        );
    }

    #[test]
    fn expansion_is_deterministic_and_names_follow_the_project() {
        let d = examples();
        let a = d.resources_for("elixir-toys").unwrap();
        let b = d.resources_for("elixir-toys").unwrap();
        assert_eq!(a, b);
        let ids: Vec<&str> = a.iter().map(|r| r.id.as_str()).collect();
        for id in [
            "account:toys-exograph",
            "directory:/srv/toys/exograph",
            "directory:/var/lib/toys/exograph",
            "file:/etc/systemd/system/toys-exograph.service",
            "unit:toys-exograph.service",
            // hex-mirror selects env=prod hosts, which includes this one.
            "file:/etc/systemd/system/hex-mirror-sync.timer",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        let unit = a
            .iter()
            .find(|r| r.id == "file:/etc/systemd/system/toys-exograph.service")
            .unwrap();
        let Spec::File { content, .. } = &unit.spec else {
            panic!()
        };
        assert!(
            content
                .text
                .contains("ReadWritePaths=/srv/toys/exograph /var/lib/toys/exograph"),
            "{}",
            content.text
        );
        assert!(content.text.contains("User=toys-exograph"));
        assert!(content.text.contains("WorkingDirectory=/opt/toys/src"));
    }

    #[test]
    fn project_firewalls_join_the_hosts_table() {
        use hostkit_api::kinds::{Firewall, FirewallRule, TrafficMatch};
        use hostkit_api::values::PortSpec;
        let mut d = examples();
        d.projects.get_mut("toys").unwrap().spec.firewall = Some(Firewall {
            rules: vec![FirewallRule {
                allow: Some(TrafficMatch {
                    tcp: vec![PortSpec::Port(4200)],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            default: None,
            path: None,
        });
        let rs = d.resources_for("elixir-toys").unwrap();
        let fw = rs
            .iter()
            .find(|r| r.id == "file:/etc/nftables.d/hostkit.nft")
            .expect("a table from the project");
        let Spec::File { content, .. } = &fw.spec else {
            panic!()
        };
        assert!(
            content.text.contains("tcp dport 4200 accept") && content.text.contains("policy drop")
        );
        assert!(rs.iter().any(|r| r.id == "firewall:inet/hostkit"));
        // A bad project rule names the project.
        d.projects
            .get_mut("toys")
            .unwrap()
            .spec
            .firewall
            .as_mut()
            .unwrap()
            .rules[0]
            .allow = Some(TrafficMatch::default());
        let e = d.resources_for("elixir-toys").unwrap_err().to_string();
        assert!(
            e.contains("Project/toys") && e.contains("matches nothing"),
            "{e}"
        );
    }

    #[test]
    fn expansion_errors_name_the_object_and_field() {
        let mut d = examples();
        d.services
            .get_mut("api")
            .unwrap()
            .spec
            .daemon
            .as_mut()
            .unwrap()
            .env = vec!["nope".into()];
        let e = d.resources_for("app").unwrap_err().to_string();
        assert!(
            e.contains("Service/api") && e.contains("spec.daemon.env") && e.contains("\"nope\""),
            "{e}"
        );
    }
}
