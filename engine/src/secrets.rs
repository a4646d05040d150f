//! Secret values: read from the caller's environment or files, at plan time, in memory.
//! They are written to the host inside file contents and never to a plan, a log or a
//! result file.

use std::collections::BTreeMap;

use base64::Engine;
use hostkit_api::values::SecretRef;
use sha2::Digest;

use crate::resource::{Content, Escape};
use crate::{Error, Result};

/// Where secret values come from. The default reads the process environment and files.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Values given directly (tests, or a controller that fetched them); consulted first.
    overrides: BTreeMap<SecretRef, String>,
    /// Mixed into every digest of secret-bearing content that a plan or status shows, so a
    /// reader of the plan cannot confirm a guessed secret by hashing it (`None`: the
    /// offline commands, whose plan files stay on the operator's machine).
    digest_key: Option<[u8; 32]>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Secrets({} overrides, values hidden, digests {})",
            self.overrides.len(),
            if self.digest_key.is_some() {
                "keyed"
            } else {
                "plain"
            }
        )
    }
}

impl Secrets {
    /// Secrets whose plan digests are keyed with a random key of this process.
    pub fn keyed() -> Secrets {
        use std::io::Read;
        let mut key = [0u8; 32];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key));
        if read.is_err() {
            // No /dev/urandom: the time and pid are a weak key, but still not a reader's.
            let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
            key = sha2::Sha256::digest(seed.as_bytes()).into();
        }
        Secrets {
            digest_key: Some(key),
            ..Default::default()
        }
    }

    /// A digest of `parts` for a plan: keyed when the content holds secrets and there is a
    /// key, plain otherwise.
    pub fn plan_digest(&self, secret_bearing: bool, parts: &[&[u8]]) -> String {
        let mut h = sha2::Sha256::new();
        if secret_bearing && let Some(k) = &self.digest_key {
            h.update(k);
        }
        for p in parts {
            h.update(p);
        }
        hex::encode(h.finalize())[..16].to_string()
    }

    pub fn with(mut self, reference: SecretRef, value: impl Into<String>) -> Secrets {
        self.overrides.insert(reference, value.into());
        self
    }

    pub fn resolve(&self, reference: &SecretRef) -> Result<String> {
        if let Some(v) = self.overrides.get(reference) {
            return Ok(v.clone());
        }
        match reference {
            SecretRef::Env(name) => std::env::var(name).map_err(|_| Error::Secret {
                reference: format!("env:{name}"),
                message: format!("environment variable {name} is not set on this machine"),
            }),
            SecretRef::File(path) => {
                let expanded = match path.strip_prefix("~/") {
                    Some(rest) => format!("{}/{rest}", std::env::var("HOME").unwrap_or_default()),
                    None => path.clone(),
                };
                std::fs::read_to_string(&expanded)
                    .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|e| Error::Secret {
                        reference: format!("file:{path}"),
                        message: e.to_string(),
                    })
            }
        }
    }

    /// The bytes a content becomes on the host.
    pub fn materialize(&self, content: &Content) -> Result<Vec<u8>> {
        if content.base64 {
            return base64::engine::general_purpose::STANDARD
                .decode(content.text.trim())
                .map_err(|e| Error::Invalid {
                    object: "file".into(),
                    field: "contentBase64".into(),
                    message: format!("not valid base64: {e}"),
                });
        }
        let mut text = content.text.clone();
        for (key, slot) in &content.secrets {
            let value = self.resolve(&slot.reference)?;
            let escaped = match slot.escape {
                Escape::Dotenv => crate::render::files::dotenv_quote(&value),
                Escape::Json => serde_json::to_string(&value)?,
                Escape::Raw => value,
            };
            text = text.replace(&Content::placeholder(key), &escaped);
        }
        Ok(text.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::files::dotenv;

    #[test]
    fn secrets_fill_placeholders_and_missing_ones_name_the_reference() {
        let mut secrets = BTreeMap::new();
        secrets.insert("DB".to_string(), SecretRef::Env("HK_TEST_UNSET_DB".into()));
        let content = dotenv(&BTreeMap::new(), &secrets).unwrap();
        let err = Secrets::default()
            .materialize(&content)
            .unwrap_err()
            .to_string();
        assert!(err.contains("env:HK_TEST_UNSET_DB"), "{err}");
        let s = Secrets::default().with(SecretRef::Env("HK_TEST_UNSET_DB".into()), "p\"w$");
        let bytes = String::from_utf8(s.materialize(&content).unwrap()).unwrap();
        assert!(bytes.contains("DB=\"p\\\"w\\$\""), "{bytes}");
        assert!(!format!("{s:?}").contains("p\"w"));
    }
}
