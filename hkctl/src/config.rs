//! Where the server is and which token to send: flags, then `HKCTL_SERVER`/`HKCTL_TOKEN`,
//! then the config file that `hostkit serve` writes (`~/.config/hostkit/config.yaml`).

use std::path::PathBuf;

use hostkit_api::config::{ClientConfig, default_config_path};

use crate::{Error, Result};

/// Values given on the command line (already merged with the environment by clap).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub server: Option<String>,
    pub token: Option<String>,
    pub certificate_authority: Option<PathBuf>,
}

/// Resolves the effective client configuration.
pub fn resolve(overrides: &Overrides) -> Result<ClientConfig> {
    let path = overrides.config.clone().or_else(default_config_path);
    let from_file = match &path {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(p).map_err(|source| Error::Io {
                path: p.display().to_string(),
                source,
            })?;
            Some(serde_saphyr::from_str::<ClientConfig>(&text).map_err(|e| {
                Error::Config(format!(
                    "{}: not a valid hkctl config ({e}); expected server:, token: and optionally certificateAuthority:",
                    p.display()
                ))
            })?)
        }
        Some(p) if overrides.config.is_some() => {
            return Err(Error::Config(format!(
                "config file {} does not exist",
                p.display()
            )));
        }
        _ => None,
    };
    let file = from_file.unwrap_or_default();
    let server = overrides
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or(file.server);
    if server.is_empty() {
        return Err(Error::Config(
            "no server configured: start `hostkit serve` (it writes ~/.config/hostkit/config.yaml), \
             or pass --server / set HKCTL_SERVER"
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
