//! Tokens kept in the store, so that every replica on one etcd honours every token: minted
//! with `hostkit token create`, listed and revoked through `/auth/v1/tokens` (admin only).
//! Only a token's SHA-256 is stored, as the last part of its key, so looking a presented
//! token up is one read of one key, a revocation counts on every replica at the next
//! request, and nobody who reads the store (or a backup of it) learns a token.

use std::sync::Arc;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::auth::{Caller, Role, digest};
use crate::error::{Error, Result};
use crate::store::{Store, StoreError};

/// Outside `/hostkit/`, so no kind's list or watch ever sees a token record.
const PREFIX: &str = "/hostkit-auth/tokens/";

/// What the store keeps of a token (never the token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    /// The first 12 hex digits of the token's digest: what `revoke` and lists name it by.
    pub id: String,
    pub name: String,
    /// `admin` or `read-only`.
    pub role: String,
    pub created: String,
    /// Who minted it (`user/admin`, or `hostkit serve` for a replica's bootstrap token).
    pub created_by: String,
}

/// A token just minted: the only time its text exists outside the caller.
#[derive(Debug, Serialize)]
pub struct Minted {
    pub token: String,
    #[serde(flatten)]
    pub record: TokenRecord,
}

#[derive(Clone)]
pub struct StoredTokens {
    store: Arc<dyn Store>,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::ReadOnly => "read-only",
    }
}

pub fn parse_role(text: &str) -> Result<Role> {
    match text {
        "admin" => Ok(Role::Admin),
        "read-only" | "readonly" => Ok(Role::ReadOnly),
        other => Err(Error::BadRequest(format!(
            "role {other:?} is not admin or read-only"
        ))),
    }
}

fn key_of(digest: &[u8; 32]) -> String {
    format!("{PREFIX}{}", hex::encode(digest))
}

impl StoredTokens {
    pub fn new(store: Arc<dyn Store>) -> StoredTokens {
        StoredTokens { store }
    }

    /// The caller a presented token belongs to, if the store has it.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Caller>> {
        let Some(kv) = self.store.get(&key_of(&digest(presented))).await? else {
            return Ok(None);
        };
        let record: TokenRecord = serde_json::from_slice(&kv.value)
            .map_err(|e| Error::Config(format!("a stored token record is not readable: {e}")))?;
        Ok(Some(Caller {
            user: record.name,
            role: parse_role(&record.role)?,
        }))
    }

    /// Mints a random token of `role` named `name`.
    pub async fn create(&self, name: &str, role: Role, by: &str) -> Result<Minted> {
        if name.is_empty()
            || name.len() > 63
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        {
            return Err(Error::BadRequest(format!(
                "token name {name:?}: 1 to 63 letters, digits, '-', '_', '.' or '@'"
            )));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        let record = self.put(&token, name, role, by).await?;
        Ok(Minted { token, record })
    }

    /// Stores `token` unless it is stored already (a replica's bootstrap admin token, on
    /// every start).
    pub async fn register(&self, token: &str, name: &str, role: Role, by: &str) -> Result<()> {
        match self.put(token, name, role, by).await {
            Ok(_) | Err(Error::Store(StoreError::AlreadyExists { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn put(&self, token: &str, name: &str, role: Role, by: &str) -> Result<TokenRecord> {
        let d = digest(token);
        let record = TokenRecord {
            id: hex::encode(&d[..6]),
            name: name.to_string(),
            role: role_name(role).to_string(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            created_by: by.to_string(),
        };
        let bytes = serde_json::to_vec(&record).expect("a record serialises");
        self.store.create(&key_of(&d), bytes, None).await?;
        Ok(record)
    }

    pub async fn list(&self) -> Result<Vec<TokenRecord>> {
        let list = self.store.list(PREFIX).await?;
        let mut records: Vec<TokenRecord> = list
            .items
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect();
        records.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
        Ok(records)
    }

    /// Revokes the token whose id or name is `which`; a name that several tokens share
    /// must be given by id.
    pub async fn revoke(&self, which: &str) -> Result<TokenRecord> {
        let list = self.store.list(PREFIX).await?;
        let matching: Vec<(String, TokenRecord)> = list
            .items
            .iter()
            .filter_map(|kv| {
                let r: TokenRecord = serde_json::from_slice(&kv.value).ok()?;
                (r.id == which || r.name == which).then(|| (kv.key.clone(), r))
            })
            .collect();
        match matching.as_slice() {
            [] => Err(Error::NotFound {
                kind: "token".into(),
                name: which.into(),
            }),
            [(key, record)] => {
                self.store.delete(key, None).await?;
                Ok(record.clone())
            }
            several => Err(Error::BadRequest(format!(
                "{} tokens are named {which:?}; revoke one by id: {}",
                several.len(),
                several
                    .iter()
                    .map(|(_, r)| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}
