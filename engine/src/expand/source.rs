//! `spec.source` as resources: the deploy key files (ssh:// sources), the release of the
//! resolved commit, and the `current` link to it that the daemon's unit restarts on. See
//! [`crate::release`] for why these three and what each one's down step is.

use super::service::Expander;
use super::*;
use crate::release::{self, ReleaseSpec, SshFiles, resolve::Resolved};
use crate::resource::{Escape, SecretSlot};

impl Expander<'_> {
    pub(super) fn source(&mut self, resolved: Option<&Resolved>) -> Result<()> {
        let spec = self.spec;
        let Some(src) = &spec.source else {
            return Ok(());
        };
        let owner = self.object.clone();
        let resolved = resolved.ok_or_else(|| {
            self.invalid(
                "spec.source.ref",
                format!(
                    "{} must be resolved to a commit before the Service can be planned",
                    src.ref_label()
                ),
            )
        })?;
        let dir = self.c.source_dir(self.name);
        if !release::is_plain_path(&dir) {
            return Err(self.invalid(
                "spec.source",
                format!("the source folder {dir:?} (the project's source root and the service's name) may hold only letters, digits and / . _ - + @: it is handed to systemd-run"),
            ));
        }
        let daemon = spec.daemon.as_ref();
        let user = match daemon.and_then(|d| d.user.as_deref()) {
            Some(u) => self.x(u)?,
            None => self.user().ok_or_else(|| {
                self.invalid(
                    "spec.source",
                    "releases are fetched and built as the Service's user: declare spec.account"
                        .into(),
                )
            })?,
        };
        let group = match daemon.and_then(|d| d.group.as_deref()) {
            Some(g) => self.x(g)?,
            None => user.clone(),
        };
        let sandbox = daemon
            .and_then(|d| d.isolate.as_ref())
            .map(|iso| {
                systemd::isolate(iso, &[])
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect()
            })
            .unwrap_or_default();
        let mut build = Vec::new();
        for step in &src.build {
            build.push(self.xs(step)?);
        }
        let mut deps = Vec::new();
        let ssh = match &src.auth {
            Some(auth) => {
                let files = SshFiles {
                    key: format!("{dir}/.deploy/key"),
                    known_hosts: format!("{dir}/.deploy/known_hosts"),
                };
                for (path, secret, mode) in [
                    (&files.key, &auth.ssh_key, 0o600),
                    (&files.known_hosts, &auth.known_hosts, 0o644),
                ] {
                    let key = if mode == 0o600 {
                        "sshKey"
                    } else {
                        "knownHosts"
                    };
                    let content = Content {
                        text: format!("{}\n", Content::placeholder(key)),
                        base64: false,
                        secrets: [(
                            key.to_string(),
                            SecretSlot {
                                reference: secret.clone(),
                                escape: Escape::Raw,
                            },
                        )]
                        .into(),
                    };
                    let id = self.file(
                        path.clone(),
                        content,
                        user.clone(),
                        group.clone(),
                        mode,
                        FileRole::Plain,
                    )?;
                    deps.push(id);
                }
                Some(files)
            }
            None => None,
        };
        let rel = ReleaseSpec {
            dir: dir.clone(),
            git: src.git.clone(),
            commit: resolved.commit.clone(),
            fallback_ref: resolved.fallback_ref.clone(),
            subdir: src.subdir().map(String::from),
            build,
            user: user.clone(),
            group,
            sandbox,
            keep: src.keep(),
            ssh,
            protect: Vec::new(),
        };
        let link_to = rel.path();
        let release_id = release::id(&dir);
        let mut r = Resource::new(&release_id, &owner, Spec::Release(rel));
        for d in deps {
            r.depends(d, Edge::DependsOn);
        }
        if spec.account.is_some() {
            r.depends(format!("account:{user}"), Edge::OwnerAccount);
        }
        // Declared later in the expansion; git itself may be one of them.
        for p in &spec.packages {
            r.depends(format!("package:{}", p.name()), Edge::Package);
        }
        self.push(r)?;
        let link = release::current_link(&dir);
        let link_id = format!("symlink:{link}");
        let mut l = Resource::new(
            &link_id,
            &owner,
            Spec::Symlink {
                path: link,
                to: link_to,
            },
        );
        l.depends(release_id, Edge::Source);
        self.push(l)?;
        let unit_id = format!("unit:{}", self.c.daemon_unit(self.name, spec));
        if let Some(unit) = self.out.iter_mut().find(|r| r.id == unit_id) {
            unit.depends(link_id, Edge::Source);
        }
        Ok(())
    }
}
