//! A Service's systemd units: its daemon (the unit text, its sandbox's writable paths) and
//! its jobs (a service and a timer each).

use super::service::{EnvPaths, Expander};
use super::*;

impl Expander<'_> {
    pub(super) fn daemon(
        &mut self,
        user: &Option<String>,
        env_paths: &EnvPaths,
    ) -> Result<Option<String>> {
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

    pub(super) fn jobs(&mut self, user: &Option<String>, env_paths: &EnvPaths) -> Result<()> {
        let spec = self.spec;
        for job in &spec.jobs {
            let exec = self.xs(&job.exec)?;
            self.job_units(job, exec, user, env_paths)?;
        }
        Ok(())
    }

    /// A job's service and timer units, its `exec` already expanded (backups build their
    /// own, which must not be expanded again).
    pub(super) fn job_units(
        &mut self,
        job: &hostkit_api::kinds::Job,
        exec: Vec<String>,
        user: &Option<String>,
        env_paths: &EnvPaths,
    ) -> Result<()> {
        let owner = self.object.clone();
        {
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
                .push(("ExecStart", systemd::command_line(&exec)));
            if let Some(iso) = &job.isolate {
                let writable = self.writable(iso)?;
                svc.service.extend(systemd::isolate(iso, &writable));
            }
            let svc_id = self.file(
                format!("{UNIT_DIR}/{service_unit}"),
                Content::text(
                    svc.render()
                        .map_err(|m| self.invalid(format!("spec.jobs[{}]", job.name), m))?,
                ),
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
            let timer_id =
                self.file(
                    format!("{UNIT_DIR}/{timer_unit}"),
                    Content::text(timer.render().map_err(|m| {
                        self.invalid(format!("spec.jobs[{}].schedule", job.name), m)
                    })?),
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

    pub(super) fn writable(&self, iso: &Isolate) -> Result<Vec<String>> {
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
        if let Some(logs) = &daemon.logs {
            u.service.extend(systemd::logs(logs));
        }
        let wanted: Vec<String> = if daemon.wanted_by.is_empty() {
            vec!["multi-user.target".into()]
        } else {
            daemon.wanted_by.clone()
        };
        for w in wanted {
            u.install.push(("WantedBy", w));
        }
        u.render().map_err(|m| self.invalid("spec.daemon", m))
    }
}
