//! A Service's resources, in the order a reader of its spec meets them: account, storage,
//! directories, files, symlinks, config and env files, the daemon and jobs (their units in
//! `units.rs`), commands, Caddy sites, packages.

use super::*;

/// Each env file's path and resource id, by its name in `spec.env`.
pub(super) type EnvPaths = BTreeMap<String, (String, String)>;

pub(super) struct Expander<'a> {
    pub(super) name: &'a str,
    pub(super) object: String,
    pub(super) spec: &'a ServiceSpec,
    pub(super) c: Conventions,
    pub(super) out: Vec<Resource>,
    /// What `spec.source`'s ref resolved to (the controller asks the repository).
    pub(super) resolved: Option<&'a crate::release::resolve::Resolved>,
}

fn mode_of(m: Option<hostkit_api::values::FileMode>, default: u32) -> u32 {
    m.map(|m| m.0).unwrap_or(default)
}

impl<'a> Expander<'a> {
    pub(super) fn new(name: &'a str, spec: &'a ServiceSpec, project: Option<&ProjectSpec>) -> Self {
        Expander {
            name,
            object: format!("Service/{name}"),
            spec,
            c: Conventions::new(project),
            out: Vec::new(),
            resolved: None,
        }
    }

    pub(super) fn x(&self, text: &str) -> Result<String> {
        self.c.expand(self.name, self.spec, text)
    }

    pub(super) fn xs(&self, items: &[String]) -> Result<Vec<String>> {
        items.iter().map(|s| self.x(s)).collect()
    }

    pub(super) fn push(&mut self, r: Resource) -> Result<()> {
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

    /// A spec that cannot be rendered as written, naming the field.
    pub(super) fn invalid(&self, field: impl Into<String>, message: String) -> Error {
        Error::Invalid {
            object: self.object.clone(),
            field: field.into(),
            message,
        }
    }

    pub(super) fn user(&self) -> Option<String> {
        self.spec
            .account
            .as_ref()
            .map(|_| self.c.user(self.name, self.spec))
    }

    pub(super) fn file(
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
    pub(super) fn run(mut self) -> Result<Vec<Resource>> {
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
        self.backups(&user, &default_group, &env_paths)?;
        self.source(self.resolved)?;
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
            let id = self.file(path, content, o, g, mode_of(f.mode, 0o644), FileRole::Plain)?;
            if f.rollback == Some(RollbackPolicy::Keep)
                && let Some(r) = self.out.iter_mut().find(|r| r.id == id)
            {
                r.keep_on_rollback = true;
            }
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
            let content = files::dotenv(&set, &env.secrets)
                .map_err(|m| self.invalid(format!("spec.env.{name}"), m))?;
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
            let text = caddy::site(site, upstream.as_deref())
                .map_err(|m| self.invalid(format!("spec.caddySites[{}]", site.name), m))?;
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
        for r in super::packages(&owner, &spec.packages) {
            self.push(r)?;
        }
        Ok(())
    }
}
