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

/// Expands one Service for one host.
pub fn service(
    name: &str,
    spec: &ServiceSpec,
    project: Option<&ProjectSpec>,
) -> Result<Vec<Resource>> {
    Expander::new(name, spec, project).run()
}

/// Expands a Host's own resources: its firewall and bootstrap packages.
pub fn host(name: &str, spec: &HostSpec) -> Result<Vec<Resource>> {
    host_with_projects(name, spec, &[])
}

/// Like [`host`], with the firewalls of the Projects whose services run on the host. The
/// host has one table: the host's rules first, then each project's, under the host's
/// default policy (or the first project's when the host declares no firewall).
pub fn host_with_projects(
    name: &str,
    spec: &HostSpec,
    projects: &[(&str, &hostkit_api::kinds::Firewall)],
) -> Result<Vec<Resource>> {
    let owner = format!("Host/{name}");
    let mut merged = spec.firewall.clone();
    for (project, fw) in projects {
        let object = format!("Project/{project}");
        nft::ruleset(&object, fw).map_err(|message| Error::Invalid {
            object: object.clone(),
            field: "spec.firewall".into(),
            message,
        })?;
        let m = merged.get_or_insert_with(|| hostkit_api::kinds::Firewall {
            rules: Vec::new(),
            default: fw.default,
            path: None,
        });
        m.rules.extend(fw.rules.iter().cloned());
    }
    let firewall = merged;
    let mut out = Vec::new();
    if let Some(bootstrap) = &spec.bootstrap {
        for p in &bootstrap.packages {
            out.push(Resource::new(
                format!("package:{}", p.name()),
                &owner,
                Spec::Package {
                    name: p.name().to_string(),
                },
            ));
        }
    }
    if let Some(mise) = spec.bootstrap.as_ref().and_then(|b| b.mise.as_ref()) {
        // Runtimes through mise: one command per tool, skipped once its install folder
        // exists. The mise binary itself must be on the host (at `path`).
        let bin = mise
            .path
            .clone()
            .unwrap_or_else(|| "/usr/local/bin/mise".into());
        let data = mise
            .system_data_dir
            .clone()
            .unwrap_or_else(|| "/usr/local/share/mise".into());
        out.push(Resource::new(
            Resource::directory_id(&data),
            &owner,
            Spec::Directory {
                path: data.clone(),
                owner: "root".into(),
                group: "root".into(),
                mode: 0o755,
                delete_if_created: false,
            },
        ));
        for (tool, version) in &mise.tools {
            let spec_tool = format!("{tool}@{version}");
            let mut environment = BTreeMap::new();
            environment.insert("MISE_DATA_DIR".to_string(), data.clone());
            let exec = vec![bin.clone(), "install".into(), spec_tool.clone()];
            let stamp = hex::encode(Sha256::digest(serde_json::to_vec(&(&exec, &environment))?));
            let mut r = Resource::new(
                format!("command:host-{name}/mise-{tool}"),
                &owner,
                Spec::Command(CommandSpec {
                    name: format!("mise-{tool}"),
                    exec,
                    cwd: None,
                    user: None,
                    environment,
                    env_files: Vec::new(),
                    inputs: Vec::new(),
                    creates: Some(format!("{data}/installs/{tool}/{version}")),
                    unless: None,
                    stamp,
                    stamp_path: format!("{STATE_DIR}/stamps/host-{name}/mise-{tool}"),
                    success_codes: Vec::new(),
                    timeout_secs: None,
                    down: Down::Exec(vec![bin.clone(), "uninstall".into(), spec_tool]),
                }),
            );
            r.depends(Resource::directory_id(&data), Edge::ParentDirectory);
            out.push(r);
        }
    }
    if let Some(fw) = &firewall {
        let path = fw
            .path
            .clone()
            .unwrap_or_else(|| DEFAULT_FIREWALL_PATH.to_string());
        let text = nft::ruleset(&owner, fw).map_err(|message| Error::Invalid {
            object: owner.clone(),
            field: "spec.firewall".into(),
            message,
        })?;
        let file_id = Resource::file_id(&path);
        out.push(Resource::new(
            &file_id,
            &owner,
            Spec::File {
                path: path.clone(),
                content: Content::text(text),
                owner: "root".into(),
                group: "root".into(),
                mode: 0o600,
                role: FileRole::Firewall,
            },
        ));
        let mut loaded = Resource::new(
            format!("firewall:inet/{}", nft::TABLE),
            &owner,
            Spec::Firewall {
                table: nft::TABLE.into(),
                file: path,
            },
        );
        loaded.depends(file_id, Edge::UnitFile);
        out.push(loaded);
    }
    link_paths(&mut out);
    Ok(out)
}

/// Each env file's path and resource id, by its name in `spec.env`.
type EnvPaths = BTreeMap<String, (String, String)>;

struct Expander<'a> {
    name: &'a str,
    object: String,
    spec: &'a ServiceSpec,
    c: Conventions,
    out: Vec<Resource>,
}

fn mode_of(m: Option<hostkit_api::values::FileMode>, default: u32) -> u32 {
    m.map(|m| m.0).unwrap_or(default)
}

impl<'a> Expander<'a> {
    fn new(name: &'a str, spec: &'a ServiceSpec, project: Option<&ProjectSpec>) -> Self {
        Expander {
            name,
            object: format!("Service/{name}"),
            spec,
            c: Conventions::new(project),
            out: Vec::new(),
        }
    }

    fn x(&self, text: &str) -> Result<String> {
        self.c.expand(self.name, self.spec, text)
    }

    fn xs(&self, items: &[String]) -> Result<Vec<String>> {
        items.iter().map(|s| self.x(s)).collect()
    }

    fn push(&mut self, r: Resource) -> Result<()> {
        if self.out.iter().any(|o| o.id == r.id) {
            return Err(Error::Invalid {
                object: self.object.clone(),
                field: "spec".into(),
                message: format!("{} is declared twice", r.id),
            });
        }
        self.out.push(r);
        Ok(())
    }

    fn user(&self) -> Option<String> {
        self.spec
            .account
            .as_ref()
            .map(|_| self.c.user(self.name, self.spec))
    }

    fn file(
        &mut self,
        path: String,
        content: Content,
        owner: String,
        group: String,
        mode: u32,
        role: FileRole,
    ) -> Result<String> {
        let id = Resource::file_id(&path);
        self.push(Resource::new(
            &id,
            &self.object.clone(),
            Spec::File {
                path,
                content,
                owner,
                group,
                mode,
                role,
            },
        ))?;
        Ok(id)
    }

    /// The resources of the Service, in the order a reader of the spec meets them; the
    /// graph's edges (not this order) decide the apply order.
    fn run(mut self) -> Result<Vec<Resource>> {
        let user = self.user();
        let default_group = user.clone().unwrap_or_else(|| "root".into());
        self.account()?;
        self.storage(&default_group)?;
        self.directories()?;
        self.files()?;
        self.symlinks()?;
        self.config_files(&default_group)?;
        let env_paths = self.env_files(&default_group)?;
        let daemon_unit = self.daemon(&user, &env_paths)?;
        self.jobs(&user, &env_paths)?;
        let before_start = self.commands(&env_paths, daemon_unit.as_deref())?;
        self.order_phases(&before_start, daemon_unit.as_deref());
        self.caddy_sites()?;
        self.packages()?;
        link_paths(&mut self.out);
        Ok(self.out)
    }

    /// The owner and group of something the spec may give them for (`${…}` expanded);
    /// the group defaults to `group` or else to the owner.
    fn owner_group(
        &self,
        owner: &Option<String>,
        group: &Option<String>,
        default_owner: String,
        default_group: Option<String>,
    ) -> Result<(String, String)> {
        let o = match owner {
            Some(o) => self.x(o)?,
            None => default_owner,
        };
        let g = match group {
            Some(g) => self.x(g)?,
            None => default_group.unwrap_or_else(|| o.clone()),
        };
        Ok((o, g))
    }

    fn account(&mut self) -> Result<()> {
        let spec = self.spec;
        let owner = self.object.clone();
        if let Some(account) = &spec.account {
            let name = self.c.user(self.name, spec);
            let home = match &account.home {
                Some(h) => self.x(h)?,
                None => self.c.home(self.name, spec),
            };
            self.push(Resource::new(
                format!("account:{name}"),
                &owner,
                Spec::Account {
                    name,
                    system: account.system,
                    home,
                    shell: account
                        .shell
                        .clone()
                        .unwrap_or_else(|| "/usr/sbin/nologin".into()),
                    groups: account.groups.clone(),
                },
            ))?;
        }
        Ok(())
    }

    fn storage(&mut self, default_group: &str) -> Result<()> {
        let spec = self.spec;
        let owner = self.object.clone();
        for s in &spec.storage {
            let path = self
                .c
                .storage_path(self.name, spec, &s.name)
                .ok_or_else(|| Error::Invalid {
                    object: owner.clone(),
                    field: format!("spec.storage[{}].name", s.name),
                    message: "is not a root: use source, data, state, config, cache, logs, run or bin, or give path".into(),
                })?;
            let path = self.x(&path)?;
            let (o, g) = self.owner_group(&s.owner, &s.group, default_group.to_string(), None)?;
            self.push(Resource::new(
                Resource::directory_id(&path),
                &owner,
                Spec::Directory {
                    path,
                    owner: o,
                    group: g,
                    mode: mode_of(s.mode, 0o750),
                    delete_if_created: false,
                },
            ))?;
        }
        Ok(())
    }

    fn directories(&mut self) -> Result<()> {
        let spec = self.spec;
        let owner = self.object.clone();
        for d in &spec.directories {
            let path = self.x(&d.path)?;
            let (o, g) = self.owner_group(&d.owner, &d.group, "root".into(), None)?;
            self.push(Resource::new(
                Resource::directory_id(&path),
                &owner,
                Spec::Directory {
                    path,
                    owner: o,
                    group: g,
                    mode: mode_of(d.mode, 0o755),
                    delete_if_created: d.rollback == Some(RollbackPolicy::DeleteIfCreated),
                },
            ))?;
        }
        Ok(())
    }

    fn files(&mut self) -> Result<()> {
        let spec = self.spec;
        let owner = self.object.clone();
        for (i, f) in spec.files.iter().enumerate() {
            let path = self.x(&f.path)?;
            let content = match (&f.content, &f.content_base64) {
                (Some(t), None) => Content::text(t.clone()),
                (None, Some(b)) => Content {
                    text: b.clone(),
                    base64: true,
                    secrets: BTreeMap::new(),
                },
                _ => {
                    return Err(Error::Invalid {
                        object: owner.clone(),
                        field: format!("spec.files[{i}]"),
                        message: "give exactly one of content or contentBase64".into(),
                    });
                }
            };
            let (o, g) = self.owner_group(&f.owner, &f.group, "root".into(), None)?;
            self.file(path, content, o, g, mode_of(f.mode, 0o644), FileRole::Plain)?;
        }
        Ok(())
    }

    fn symlinks(&mut self) -> Result<()> {
        let spec = self.spec;
        let owner = self.object.clone();
        for l in &spec.symlinks {
            let path = self.x(&l.path)?;
            let to = self.x(&l.to)?;
            self.push(Resource::new(
                format!("symlink:{path}"),
                &owner,
                Spec::Symlink { path, to },
            ))?;
        }
        Ok(())
    }

    fn config_files(&mut self, default_group: &str) -> Result<()> {
        let spec = self.spec;
        let owner = self.object.clone();
        for (i, cf) in spec.config_files.iter().enumerate() {
            let path = self.x(&cf.path)?;
            let content = files::config(
                &owner,
                &format!("spec.configFiles[{i}]"),
                cf.format,
                &cf.content,
                &cf.secrets,
            )?;
            let (o, g) = self.owner_group(
                &cf.owner,
                &cf.group,
                "root".into(),
                Some(default_group.to_string()),
            )?;
            self.file(
                path,
                content,
                o,
                g,
                mode_of(cf.mode, 0o640),
                FileRole::Config,
            )?;
        }
        Ok(())
    }

    fn env_files(&mut self, default_group: &str) -> Result<EnvPaths> {
        let spec = self.spec;
        let mut env_paths = BTreeMap::new();
        for (name, env) in &spec.env {
            let path = self
                .c
                .env_file_path(self.name, spec, name)
                .expect("env entry exists");
            let path = self.x(&path)?;
            let mut set = BTreeMap::new();
            for (k, v) in &env.set {
                set.insert(k.clone(), self.x(v)?);
            }
            let content = files::dotenv(&set, &env.secrets);
            let (o, g) = self.owner_group(
                &env.owner,
                &env.group,
                "root".into(),
                Some(default_group.to_string()),
            )?;
            let id = self.file(
                path.clone(),
                content,
                o,
                g,
                mode_of(env.mode, 0o640),
                FileRole::Env,
            )?;
            env_paths.insert(name.clone(), (path, id));
        }

        Ok(env_paths)
    }

    fn daemon(&mut self, user: &Option<String>, env_paths: &EnvPaths) -> Result<Option<String>> {
        let spec = self.spec;
        let owner = self.object.clone();
        let Some(daemon) = &spec.daemon else {
            return Ok(None);
        };
        let unit = self.c.daemon_unit(self.name, spec);
        {
            let text = self.daemon_unit(daemon, user, env_paths)?;
            let file_id = self.file(
                format!("{UNIT_DIR}/{unit}"),
                Content::text(text),
                "root".into(),
                "root".into(),
                0o644,
                FileRole::Unit,
            )?;
            let mut state = Resource::new(
                format!("unit:{unit}"),
                &owner,
                Spec::Unit {
                    name: unit.clone(),
                    start: true,
                    wanted_by: if daemon.wanted_by.is_empty() {
                        vec!["multi-user.target".into()]
                    } else {
                        daemon.wanted_by.clone()
                    },
                },
            );
            state.depends(file_id, Edge::UnitFile);
            for e in &daemon.env {
                if let Some((_, id)) = env_paths.get(e) {
                    state.depends(id.clone(), Edge::EnvFile);
                }
            }
            self.push(state)?;
        }
        Ok(Some(unit))
    }

    fn jobs(&mut self, user: &Option<String>, env_paths: &EnvPaths) -> Result<()> {
        let spec = self.spec;
        let owner = self.object.clone();
        for job in &spec.jobs {
            let service_unit = self.c.unit(self.name, None, Some(&job.name), ".service");
            let timer_unit = self.c.unit(self.name, None, Some(&job.name), ".timer");
            let mut svc = systemd::Unit {
                unit: vec![(
                    "Description",
                    job.description
                        .clone()
                        .unwrap_or_else(|| format!("HostKit job {} of {}", job.name, self.name)),
                )],
                ..Default::default()
            };
            svc.service.push(("Type", "oneshot".into()));
            let job_user = match &job.user {
                Some(u) => Some(self.x(u)?),
                None => user.clone(),
            };
            if let Some(u) = job_user {
                svc.service.push(("User", u));
            }
            if let Some(wd) = &job.working_directory {
                svc.service.push(("WorkingDirectory", self.x(wd)?));
            }
            for e in &job.env {
                let (path, _) = env_paths.get(e).ok_or_else(|| Error::Invalid {
                    object: owner.clone(),
                    field: format!("spec.jobs[{}].env", job.name),
                    message: format!("{e:?} is not one of spec.env's names"),
                })?;
                svc.service.push(("EnvironmentFile", path.clone()));
            }
            svc.service
                .push(("ExecStart", systemd::command_line(&self.xs(&job.exec)?)));
            if let Some(iso) = &job.isolate {
                let writable = self.writable(iso)?;
                svc.service.extend(systemd::isolate(iso, &writable));
            }
            let svc_id = self.file(
                format!("{UNIT_DIR}/{service_unit}"),
                Content::text(svc.render()),
                "root".into(),
                "root".into(),
                0o644,
                FileRole::Unit,
            )?;
            let timer = systemd::Unit {
                unit: vec![("Description", format!("Timer for {service_unit}"))],
                timer: systemd::timer(&job.schedule, &service_unit),
                install: vec![("WantedBy", "timers.target".into())],
                ..Default::default()
            };
            let timer_id = self.file(
                format!("{UNIT_DIR}/{timer_unit}"),
                Content::text(timer.render()),
                "root".into(),
                "root".into(),
                0o644,
                FileRole::Unit,
            )?;
            let mut state = Resource::new(
                format!("unit:{timer_unit}"),
                &owner,
                Spec::Unit {
                    name: timer_unit,
                    start: true,
                    wanted_by: vec!["timers.target".into()],
                },
            );
            state.depends(timer_id, Edge::UnitFile);
            state.depends(svc_id, Edge::TimerService);
            self.push(state)?;
        }
        Ok(())
    }

    fn commands(&mut self, env_paths: &EnvPaths, daemon_unit: Option<&str>) -> Result<Vec<String>> {
        let spec = self.spec;
        let owner = self.object.clone();
        let mut before_start = Vec::new();
        for cmd in &spec.commands {
            if matches!(cmd.phase, Some(Phase::BeforeStop | Phase::AfterStop)) {
                continue; // rendered into the daemon unit as ExecStop/ExecStopPost
            }
            let id = format!("command:{}/{}", Conventions::identity(self.name), cmd.name);
            let exec = self.xs(&cmd.exec)?;
            let mut environment = BTreeMap::new();
            for (k, v) in &cmd.environment {
                environment.insert(k.clone(), self.x(v)?);
            }
            let mut env_files = Vec::new();
            let mut env_ids = Vec::new();
            for e in &cmd.env {
                let (path, fid) = env_paths.get(e).ok_or_else(|| Error::Invalid {
                    object: owner.clone(),
                    field: format!("spec.commands[{}].env", cmd.name),
                    message: format!("{e:?} is not one of spec.env's names"),
                })?;
                env_files.push(path.clone());
                env_ids.push(fid.clone());
            }
            let inputs = self.xs(&cmd.inputs)?;
            let mut h = Sha256::new();
            h.update(serde_json::to_vec(&(
                &exec,
                &environment,
                &env_files,
                &inputs,
                &cmd.cwd,
                &cmd.user,
            ))?);
            let stamp = hex::encode(h.finalize());
            let down = match &cmd.down {
                Some(CommandDown::Exec(d)) => Down::Exec(self.xs(&d.exec)?),
                Some(CommandDown::Noop) => Down::Noop,
                Some(CommandDown::Irreversible) | None => Down::Irreversible,
            };
            let mut r = Resource::new(
                &id,
                &owner,
                Spec::Command(CommandSpec {
                    name: cmd.name.clone(),
                    exec,
                    cwd: cmd.cwd.as_deref().map(|c| self.x(c)).transpose()?,
                    user: cmd.user.as_deref().map(|u| self.x(u)).transpose()?,
                    environment,
                    env_files,
                    inputs,
                    creates: cmd.creates.as_deref().map(|c| self.x(c)).transpose()?,
                    unless: cmd.unless.clone(),
                    stamp,
                    stamp_path: format!(
                        "{STATE_DIR}/stamps/{}/{}",
                        Conventions::identity(self.name),
                        cmd.name
                    ),
                    success_codes: cmd.success_codes.clone(),
                    timeout_secs: cmd.timeout.as_ref().map(|t| t.as_std().as_secs().max(1)),
                    down,
                }),
            );
            for e in env_ids {
                r.depends(e, Edge::EnvFile);
            }
            for d in &cmd.depends_on {
                let target = format!("command:{}/{d}", Conventions::identity(self.name));
                r.depends(target, Edge::DependsOn);
            }
            match (cmd.phase, daemon_unit) {
                (Some(Phase::AfterStart), Some(unit)) => {
                    r.depends(format!("unit:{unit}"), Edge::Phase);
                }
                _ => before_start.push(id.clone()),
            }
            self.push(r)?;
        }
        Ok(before_start)
    }

    /// Files, directories and the account come before commands; beforeStart commands
    /// come before the daemon starts.
    fn order_phases(&mut self, before_start: &[String], daemon_unit: Option<&str>) {
        // Files, directories and the account come before commands; beforeStart commands
        // come before the daemon starts.
        let setup: Vec<String> = self
            .out
            .iter()
            .filter(|r| {
                matches!(
                    r.spec,
                    Spec::Account { .. }
                        | Spec::Directory { .. }
                        | Spec::File { .. }
                        | Spec::Symlink { .. }
                )
            })
            .map(|r| r.id.clone())
            .collect();
        for r in &mut self.out {
            if before_start.contains(&r.id) {
                for s in &setup {
                    r.depends(s.clone(), Edge::Phase);
                }
            }
        }
        if let Some(unit) = daemon_unit {
            let unit_id = format!("unit:{unit}");
            if let Some(r) = self.out.iter_mut().find(|r| r.id == unit_id) {
                for c in before_start {
                    r.depends(c.clone(), Edge::Phase);
                }
            }
        }
    }

    fn caddy_sites(&mut self) -> Result<()> {
        let spec = self.spec;
        for site in &spec.caddy_sites {
            let upstream = match &site.reverse_proxy {
                Some(rp) => match (&rp.listener, &rp.to) {
                    (Some(l), _) => Some(self.x(&format!("${{listen.{l}}}"))?),
                    (None, Some(to)) => Some(self.x(to)?),
                    (None, None) => None,
                },
                None => None,
            };
            let text = caddy::site(site, upstream.as_deref());
            self.file(
                format!("{CADDY_SITES_DIR}/{}.caddy", site.name),
                Content::text(text),
                "root".into(),
                "root".into(),
                0o644,
                FileRole::Caddy,
            )?;
        }
        Ok(())
    }

    fn packages(&mut self) -> Result<()> {
        let spec = self.spec;
        let owner = self.object.clone();
        for p in &spec.packages {
            self.push(Resource::new(
                format!("package:{}", p.name()),
                &owner,
                Spec::Package {
                    name: p.name().to_string(),
                },
            ))?;
        }
        Ok(())
    }

    fn writable(&self, iso: &Isolate) -> Result<Vec<String>> {
        iso.writable
            .iter()
            .map(|w| {
                if w.starts_with('/') || w.starts_with("${") {
                    self.x(w)
                } else {
                    self.c
                        .storage_path(self.name, self.spec, w)
                        .ok_or_else(|| Error::Invalid {
                            object: self.object.clone(),
                            field: "isolate.writable".into(),
                            message: format!("{w:?} is neither a storage name of this service nor an absolute path"),
                        })
                        .and_then(|p| self.x(&p))
            }})
            .collect()
    }

    fn daemon_unit(
        &self,
        daemon: &Daemon,
        user: &Option<String>,
        env_paths: &BTreeMap<String, (String, String)>,
    ) -> Result<String> {
        let mut u = systemd::Unit::default();
        u.unit.push((
            "Description",
            daemon
                .description
                .clone()
                .unwrap_or_else(|| format!("HostKit service {}", self.name)),
        ));
        for a in &daemon.after {
            u.unit.push(("After", a.clone()));
        }
        for w in &daemon.wants {
            u.unit.push(("Wants", w.clone()));
        }
        for r in &daemon.requires {
            u.unit.push(("Requires", r.clone()));
        }
        if let Some(t) = daemon.type_ {
            u.service.push(("Type", systemd::service_type(t).into()));
        }
        let run_as = match &daemon.user {
            Some(x) => Some(self.x(x)?),
            None => user.clone(),
        };
        if let Some(x) = run_as {
            u.service.push(("User", x));
        }
        if let Some(g) = &daemon.group {
            u.service.push(("Group", self.x(g)?));
        }
        if let Some(wd) = &daemon.working_directory {
            u.service.push(("WorkingDirectory", self.x(wd)?));
        }
        for e in &daemon.env {
            let (path, _) = env_paths.get(e).ok_or_else(|| Error::Invalid {
                object: self.object.clone(),
                field: "spec.daemon.env".into(),
                message: format!("{e:?} is not one of spec.env's names"),
            })?;
            u.service.push(("EnvironmentFile", path.clone()));
        }
        for (k, v) in &daemon.environment {
            u.service
                .push(("Environment", systemd::environment(k, &self.x(v)?)));
        }
        for l in &daemon.listen {
            let addr = self.x(&format!("${{listen.{}}}", l.name))?;
            let key = format!("HOSTKIT_LISTEN_{}", l.name.to_uppercase().replace('-', "_"));
            u.service
                .push(("Environment", systemd::environment(&key, &addr)));
        }
        u.service
            .push(("ExecStart", systemd::command_line(&self.xs(&daemon.exec)?)));
        for cmd in &self.spec.commands {
            let directive = match cmd.phase {
                Some(Phase::BeforeStop) => "ExecStop",
                Some(Phase::AfterStop) => "ExecStopPost",
                _ => continue,
            };
            u.service
                .push((directive, systemd::command_line(&self.xs(&cmd.exec)?)));
        }
        if let Some(r) = daemon.restart {
            u.service.push(("Restart", systemd::restart(r).into()));
        }
        if let Some(r) = &daemon.restart_sec {
            u.service.push(("RestartSec", r.as_str().into()));
        }
        if let Some(iso) = &daemon.isolate {
            let writable = self.writable(iso)?;
            u.service.extend(systemd::isolate(iso, &writable));
        }
        let wanted: Vec<String> = if daemon.wanted_by.is_empty() {
            vec!["multi-user.target".into()]
        } else {
            daemon.wanted_by.clone()
        };
        for w in wanted {
            u.install.push(("WantedBy", w));
        }
        Ok(u.render())
    }
}

/// Adds the edges that follow from paths and owners: a path after its parent directory,
/// anything owned by an account after the account, a unit after the file it executes.
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
