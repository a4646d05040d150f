//! Where the server is and which token to send: flags, then `HKCTL_SERVER`/`HKCTL_TOKEN`,
//! then the config file that `hostkit serve` writes (`~/.config/hostkit/config.yaml`): its
//! top-level server, or the context `--context` (or `currentContext`) names.

use std::path::{Path, PathBuf};

use hostkit_api::config::{ClientConfig, ConfigFile, default_config_path};

use crate::{Error, Result};

/// Values given on the command line (already merged with the environment by clap).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub context: Option<String>,
    pub server: Option<String>,
    pub token: Option<String>,
    pub certificate_authority: Option<PathBuf>,
}

/// The config file's path: `--config`, `$HKCTL_CONFIG`, or the default.
pub fn path(overrides: &Overrides) -> Result<PathBuf> {
    overrides
        .config
        .clone()
        .or_else(default_config_path)
        .ok_or_else(|| Error::Config("no config path: set HOME or HKCTL_CONFIG".into()))
}

/// Reads the config file; `None` when it does not exist.
pub fn read(path: &Path) -> Result<Option<ConfigFile>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_saphyr::from_str::<ConfigFile>(&text)
        .map(Some)
        .map_err(|e| {
            Error::Config(format!(
                "{}: not a valid hkctl config ({e}); expected server:, token:, certificateAuthority:, or contexts: and currentContext:",
                path.display()
            ))
        })
}

/// Writes the config file whole (temp file, then rename), readable by its owner only: it
/// holds tokens.
pub fn write(path: &Path, file: &ConfigFile) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let text = serde_saphyr::to_string(file).map_err(|e| Error::Config(e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Resolves the effective client configuration.
pub fn resolve(overrides: &Overrides) -> Result<ClientConfig> {
    let path = path(overrides).ok();
    let from_file = match &path {
        Some(p) => read(p)?,
        None => None,
    };
    if from_file.is_none()
        && let (Some(p), Some(_)) = (&path, &overrides.config)
    {
        return Err(Error::Config(format!(
            "config file {} does not exist",
            p.display()
        )));
    }
    let file = match (&from_file, &overrides.context) {
        (Some(f), context) => f.select(context.as_deref()).map_err(Error::Config)?,
        (None, Some(c)) => {
            return Err(Error::Config(format!(
                "--context {c:?}: there is no config file to find it in"
            )));
        }
        (None, None) => ClientConfig::default(),
    };
    let server = overrides
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or(file.server);
    if server.is_empty() {
        return Err(Error::Config(
            "no server configured: start `hostkit serve` (it writes ~/.config/hostkit/config.yaml), \
             pass --server / set HKCTL_SERVER, or add a context (`hkctl config set-context`)"
                .into(),
        ));
    }
    Ok(ClientConfig {
        server: server.trim_end_matches('/').to_string(),
        token: overrides
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .or(file.token),
        certificate_authority: overrides
            .certificate_authority
            .clone()
            .or(file.certificate_authority),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "server: http://127.0.0.1:1\ntoken: from-file\n").unwrap();
        let o = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = resolve(&o).unwrap();
        assert_eq!(
            (c.server.as_str(), c.token.as_deref()),
            ("http://127.0.0.1:1", Some("from-file"))
        );
        let o = Overrides {
            config: Some(path),
            server: Some("http://127.0.0.1:2/".into()),
            token: Some("flag".into()),
            ..Default::default()
        };
        let c = resolve(&o).unwrap();
        assert_eq!(
            (c.server.as_str(), c.token.as_deref()),
            ("http://127.0.0.1:2", Some("flag"))
        );
    }

    #[test]
    fn a_context_is_chosen_by_flag_or_current_and_an_unknown_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            "server: http://127.0.0.1:1\ncurrentContext: b\ncontexts:\n  - {name: a, server: http://127.0.0.1:2, token: ta}\n  - {name: b, server: http://127.0.0.1:3}\n",
        )
        .unwrap();
        let with = |context: Option<&str>| {
            resolve(&Overrides {
                config: Some(path.clone()),
                context: context.map(String::from),
                ..Default::default()
            })
        };
        assert_eq!(with(None).unwrap().server, "http://127.0.0.1:3");
        let a = with(Some("a")).unwrap();
        assert_eq!(
            (a.server.as_str(), a.token.as_deref()),
            ("http://127.0.0.1:2", Some("ta"))
        );
        let err = with(Some("c")).unwrap_err().to_string();
        assert!(err.contains("\"c\"") && err.contains("a, b"), "{err}");
    }

    #[test]
    fn a_broken_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "server: [\n").unwrap();
        let err = resolve(&Overrides {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("config.yaml"), "{err}");
        let missing = dir.path().join("none.yaml");
        let err = resolve(&Overrides {
            config: Some(missing),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
