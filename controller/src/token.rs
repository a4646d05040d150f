//! `hostkit token create|list|revoke`: the stored tokens every replica honours, managed
//! through the API server (`/auth/v1/tokens`) with an admin token from `--token`,
//! `HKCTL_TOKEN` or the hkctl config, so it works the same on the embedded store (which only
//! the server may open) and on etcd.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use hostkit_api::config::{ClientConfig, ConfigFile, default_config_path};
use serde_json::Value;

#[derive(clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    verb: Verb,
    /// API server URL (default: the hkctl config's).
    #[arg(long, global = true, env = "HKCTL_SERVER")]
    server: Option<String>,
    /// An admin token (default: the hkctl config's).
    #[arg(long, global = true, env = "HKCTL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) for an HTTPS server.
    #[arg(long, global = true)]
    certificate_authority: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Verb {
    /// Mint a token; it is printed once and only its digest is stored.
    Create {
        /// admin (read and write) or read-only.
        #[arg(long)]
        role: String,
        /// What it is for, e.g. ci or grafana.
        #[arg(long, default_value = "token")]
        name: String,
    },
    /// List stored tokens (id, name, role; never the tokens).
    List,
    /// Revoke a token by id or name; every replica refuses it from its next request.
    Revoke { which: String },
}

fn config(args: &TokenArgs) -> anyhow::Result<ClientConfig> {
    let file = match default_config_path().filter(|p| p.exists()) {
        Some(p) => {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let file: ConfigFile = serde_saphyr::from_str(&text)
                .with_context(|| format!("{} is not an hkctl config", p.display()))?;
            file.select(None).map_err(anyhow::Error::msg)?
        }
        None => ClientConfig::default(),
    };
    let server = args.server.clone().unwrap_or(file.server);
    if server.is_empty() {
        bail!("no server: pass --server or set up the hkctl config (`hostkit serve` writes one)");
    }
    Ok(ClientConfig {
        server: server.trim_end_matches('/').to_string(),
        token: args.token.clone().or(file.token),
        certificate_authority: args
            .certificate_authority
            .clone()
            .or(file.certificate_authority),
    })
}

pub async fn run(args: TokenArgs) -> anyhow::Result<u8> {
    let c = config(&args)?;
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = &c.certificate_authority {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let http = builder.build()?;
    let url = format!("{}/auth/v1/tokens", c.server);
    let auth = |r: reqwest::RequestBuilder| match &c.token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let answer = match &args.verb {
        Verb::Create { role, name } => {
            auth(http.post(&url))
                .json(&serde_json::json!({"name": name, "role": role}))
                .send()
                .await
        }
        Verb::List => auth(http.get(&url)).send().await,
        Verb::Revoke { which } => auth(http.delete(format!("{url}/{which}"))).send().await,
    }
    .with_context(|| format!("reaching {}", c.server))?;
    let ok = answer.status().is_success();
    let body: Value = answer.json().await.unwrap_or_default();
    if !ok {
        bail!(
            "{}",
            body.get("message")
                .and_then(Value::as_str)
                .unwrap_or("the server refused")
        );
    }
    let text = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    match &args.verb {
        Verb::Create { .. } => {
            println!("{}", text(&body, "token"));
            eprintln!(
                "token {} ({}, {}) created; it is shown this once",
                text(&body, "id"),
                text(&body, "name"),
                text(&body, "role")
            );
        }
        Verb::List => {
            let items = body
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let rows: Vec<[String; 5]> = items
                .iter()
                .map(|i| ["id", "name", "role", "created", "createdBy"].map(|f| text(i, f)))
                .collect();
            let headers = ["ID", "NAME", "ROLE", "CREATED", "CREATED-BY"].map(String::from);
            let mut widths = headers.clone().map(|h| h.len());
            for r in &rows {
                for (w, cell) in widths.iter_mut().zip(r) {
                    *w = (*w).max(cell.len());
                }
            }
            for r in std::iter::once(&headers).chain(&rows) {
                let line: Vec<String> = r
                    .iter()
                    .zip(widths)
                    .map(|(cell, w)| format!("{cell:<w$}"))
                    .collect();
                println!("{}", line.join("   ").trim_end());
            }
        }
        Verb::Revoke { .. } => {
            println!(
                "token {} ({}) revoked",
                text(&body, "id"),
                text(&body, "name")
            );
        }
    }
    Ok(0)
}
