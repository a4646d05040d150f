//! A Service's storage backups: the folder its snapshots go to, and per storage a backup
//! job (a oneshot service and its timer) that runs the snapshot script in the daemon's
//! sandbox, as the Service's user, able to write only that folder.

use hostkit_api::kinds::{Job, Schedule};

use super::service::{EnvPaths, Expander};
use super::*;

impl Expander<'_> {
    pub(super) fn backups(
        &mut self,
        user: &Option<String>,
        default_group: &str,
        env_paths: &EnvPaths,
    ) -> Result<()> {
        let spec = self.spec;
        let owner = self.object.clone();
        for s in &spec.storage {
            let Some(plan) = s.backup.as_ref().and_then(|b| b.plan()) else {
                continue;
            };
            let Some(source) = self.c.storage_path(self.name, spec, &s.name) else {
                // storage() refused it already, naming the field.
                continue;
            };
            let source = self.x(&source)?;
            let root = crate::backup::root(self.name, &s.name);
            self.push(Resource::new(
                Resource::directory_id(&root),
                &owner,
                Spec::Directory {
                    path: root.clone(),
                    owner: user.clone().unwrap_or_else(|| "root".into()),
                    group: default_group.to_string(),
                    mode: 0o700,
                    delete_if_created: false,
                },
            ))?;
            let mut isolate = spec
                .daemon
                .as_ref()
                .and_then(|d| d.isolate.clone())
                .unwrap_or_default();
            isolate.writable = vec![root.clone()];
            let mut exec: Vec<String> = vec![
                "/bin/sh".into(),
                "-c".into(),
                crate::backup::SCRIPT.into(),
                "hk-backup".into(),
                source,
                root,
                plan.keep.to_string(),
            ];
            exec.extend(plan.paths.iter().cloned());
            let job = Job {
                name: crate::backup::job_name(&s.name),
                description: Some(format!(
                    "HostKit backup of storage {} of {}",
                    s.name, self.name
                )),
                exec: Vec::new(),
                user: None,
                env: Vec::new(),
                working_directory: None,
                isolate: Some(isolate),
                schedule: Schedule {
                    on_calendar: vec![plan.schedule],
                    persistent: true,
                    ..Default::default()
                },
            };
            self.job_units(&job, exec, user, env_paths)?;
        }
        Ok(())
    }
}
