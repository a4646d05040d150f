//! The engine's input when it runs without a server (`hostkit plan -f`): Projects, Hosts
//! and Services read from manifest files, defaulted, and grouped per host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hostkit_api::AnyObject;
use hostkit_api::kinds::{HostSpec, Object, ProjectSpec, ServiceSpec};
use hostkit_api::manifest::parse_documents;

use crate::resource::Resource;
use crate::{Error, Result, expand};

/// Everything the manifests declare that the engine uses.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub projects: BTreeMap<String, Object<ProjectSpec>>,
    pub hosts: BTreeMap<String, Object<HostSpec>>,
    pub services: BTreeMap<String, Object<ServiceSpec>>,
    /// Per Service with a `source`: the commit its ref names ([`Desired::resolve_sources`]).
    pub resolved: BTreeMap<String, crate::release::resolve::Resolved>,
}

fn files_in(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                files_in(&e, out)?;
            } else if matches!(e.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
                out.push(e);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

impl Desired {
    /// Reads manifest files and folders. Every invalid document is reported (file, line,
    /// object, field); nothing is returned unless all are valid, because a plan from a
    /// partial input would delete what the missing documents declare.
    pub fn load(paths: &[PathBuf]) -> std::result::Result<Desired, Vec<String>> {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for p in paths {
            if let Err(e) = files_in(p, &mut files) {
                errors.push(format!("{}: {e}", p.display()));
            }
        }
        let mut d = Desired::default();
        for f in files {
            let text = match std::fs::read_to_string(&f) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(format!("{}: {e}", f.display()));
                    continue;
                }
            };
            for doc in parse_documents(&f.display().to_string(), &text) {
                match doc {
                    Err(errs) => errors.extend(errs.iter().map(|e| e.to_string())),
                    Ok(doc) => {
                        let mut object = doc.object;
                        object.apply_defaults();
                        match object {
                            AnyObject::Project(o) => {
                                d.projects.insert(o.name().to_string(), *o);
                            }
                            AnyObject::Host(o) => {
                                d.hosts.insert(o.name().to_string(), *o);
                            }
                            AnyObject::Service(o) => {
                                d.services.insert(o.name().to_string(), *o);
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(d)
        } else {
            Err(errors)
        }
    }

    /// Asks each Service's repository which commit its `source.ref` names now. Blocking.
    pub fn resolve_sources(&mut self, secrets: &crate::secrets::Secrets) -> Result<()> {
        for (name, s) in &self.services {
            let Some(source) = &s.spec.source else {
                continue;
            };
            let resolved = crate::release::resolve::resolve_once(source, secrets).map_err(|e| {
                Error::Invalid {
                    object: format!("Service/{name}"),
                    field: "spec.source".into(),
                    message: format!(
                        "cannot resolve {} of {}: {e}",
                        source.ref_label(),
                        source.git
                    ),
                }
            })?;
            self.resolved.insert(name.clone(), resolved);
        }
        Ok(())
    }

    /// The services that run on `host`: named in `hosts:` or matched by `hostSelector`.
    pub fn services_on(&self, host: &str) -> Vec<&Object<ServiceSpec>> {
        let labels = self
            .hosts
            .get(host)
            .map(|h| h.metadata.labels.clone())
            .unwrap_or_default();
        self.services
            .values()
            .filter(|s| s.spec.selects(host, &labels))
            .collect()
    }

    /// Every resource for `host`: its own (firewall, bootstrap) and its services'.
    pub fn resources_for(&self, host: &str) -> Result<Vec<Resource>> {
        let h = self.hosts.get(host).ok_or_else(|| Error::Invalid {
            object: format!("Host/{host}"),
            field: "metadata.name".into(),
            message: format!(
                "no such Host in the manifests (have: {})",
                self.hosts.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })?;
        let services = self.services_on(host);
        let mut project_names: Vec<&str> = services
            .iter()
            .filter_map(|s| s.spec.project.as_deref())
            .collect();
        project_names.sort();
        project_names.dedup();
        let project_firewalls: Vec<(&str, &hostkit_api::kinds::Firewall)> = project_names
            .iter()
            .filter_map(|p| {
                let fw = self.projects.get(*p)?.spec.firewall.as_ref()?;
                Some((*p, fw))
            })
            .collect();
        let mut out = expand::host_with_projects(host, &h.spec, &project_firewalls)?;
        let mut telemetry = Vec::new();
        for s in services {
            let project = match &s.spec.project {
                Some(p) => Some(
                    &self
                        .projects
                        .get(p)
                        .ok_or_else(|| Error::Invalid {
                            object: format!("Service/{}", s.name()),
                            field: "spec.project".into(),
                            message: format!("Project/{p} is not in the manifests"),
                        })?
                        .spec,
                ),
                None => None,
            };
            out.extend(expand::service_at(
                s.name(),
                &s.spec,
                project,
                self.resolved.get(s.name()),
            )?);
            telemetry.push((s.name(), &s.spec, project));
        }
        out.extend(expand::telemetry(host, &h.spec, &telemetry)?);
        // One plan for the whole host: a Service's folder owned by another's (or the
        // Host's) account comes after that account, whichever sorts first.
        expand::link_paths(&mut out);
        Ok(out)
    }
}
