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
