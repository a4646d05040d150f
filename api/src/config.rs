//! The hkctl client configuration (`~/.config/hostkit/config.yaml`), shared by hkctl,
//! which reads it, and `hostkit serve`, which writes one on first start.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the API server is and how to authenticate, like a minimal kubeconfig.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConfig {
    /// `http://127.0.0.1:7443` or `https://…`.
    pub server: String,
    /// Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// PEM file of the CA (or self-signed certificate) that signed the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<PathBuf>,
}

/// The config file: one server at the top level (what `hostkit serve` writes), and/or named
/// contexts with the one in use, as a kubeconfig has them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFile {
    /// The server used when no context is chosen.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<PathBuf>,
    /// The context used unless `--context` names another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<Context>,
}

/// One named server and its credentials (`hkctl config set-context NAME --server …`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Context {
    pub name: String,
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<PathBuf>,
}

impl Context {
    pub fn config(&self) -> ClientConfig {
        ClientConfig {
            server: self.server.clone(),
            token: self.token.clone(),
            certificate_authority: self.certificate_authority.clone(),
        }
    }
}

impl ConfigFile {
    /// The configuration of context `name`, or of the current one (`None`), or the
    /// top-level server when no context is current.
    pub fn select(&self, name: Option<&str>) -> Result<ClientConfig, String> {
        let wanted = name.or(self.current_context.as_deref());
        match wanted {
            Some(n) => self
                .contexts
                .iter()
                .find(|c| c.name == n)
                .map(Context::config)
                .ok_or_else(|| {
                    let known: Vec<&str> = self.contexts.iter().map(|c| c.name.as_str()).collect();
                    format!(
                        "no context {n:?} in the config; known: {}",
                        if known.is_empty() {
                            "none (add one with `hkctl config set-context NAME --server URL`)"
                                .to_string()
                        } else {
                            known.join(", ")
                        }
                    )
                }),
            None => Ok(ClientConfig {
                server: self.server.clone(),
                token: self.token.clone(),
                certificate_authority: self.certificate_authority.clone(),
            }),
        }
    }
}

/// `$HKCTL_CONFIG`, else `$XDG_CONFIG_HOME/hostkit/config.yaml`, else `~/.config/hostkit/config.yaml`.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HKCTL_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("hostkit").join("config.yaml"))
}
