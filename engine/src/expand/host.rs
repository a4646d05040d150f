//! A Host's own resources: its shared accounts, its firewall (with the Projects' rules of
//! the Services on it), bootstrap packages and language runtimes.

use super::*;

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
    for a in &spec.accounts {
        out.push(Resource::new(
            format!("account:{}", a.name),
            &owner,
            Spec::Account {
                name: a.name.clone(),
                system: a.system,
                home: a
                    .home
                    .clone()
                    .unwrap_or_else(|| format!("/var/lib/{}", a.name)),
                shell: a
                    .shell
                    .clone()
                    .unwrap_or_else(|| "/usr/sbin/nologin".into()),
                groups: a.groups.clone(),
            },
        ));
    }
    if let Some(bootstrap) = &spec.bootstrap {
        out.extend(super::packages(&owner, &bootstrap.packages));
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
    check_paths(&owner, &out)?;
    Ok(out)
}
