//! Bearer-token authentication with two roles: `admin` (read and write) and `read-only`.
//!
//! The tokens file is a CSV of `token,user,role` lines (`#` comments allowed), the same
//! shape as kube-apiserver's static token file so operators know it already.

use std::fmt;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    ReadOnly,
}

#[derive(Clone)]
pub struct TokenEntry {
    /// SHA-256 of the token: tokens are compared as digests of one length, so neither a
    /// token's length nor its prefix shows in how long a comparison takes.
    digest: [u8; 32],
    pub user: String,
    pub role: Role,
}

impl fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token itself.
        f.debug_struct("TokenEntry")
            .field("user", &self.user)
            .field("role", &self.role)
            .finish()
    }
}

/// The accepted tokens.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

/// Who made a request, for handlers and audit fields.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: String,
    pub role: Role,
}

impl Tokens {
    /// One admin token (the `admin.token` written on first start).
    pub fn single_admin(token: &str) -> Tokens {
        Tokens {
            entries: vec![TokenEntry {
                digest: digest(token),
                user: "admin".into(),
                role: Role::Admin,
            }],
        }
    }

    /// Both sets of tokens; a token in both is refused (which role it has would be a guess).
    pub fn merge(mut self, other: Tokens) -> Result<Tokens> {
        for e in &other.entries {
            if self.entries.iter().any(|mine| mine.digest == e.digest) {
                return Err(Error::Config(format!(
                    "the token of user {:?} is also the admin token; give every token once",
                    e.user
                )));
            }
        }
        self.entries.extend(other.entries);
        Ok(self)
    }

    /// Parses `token,user,role` lines; `source` names the file in errors.
    pub fn parse(source: &str, text: &str) -> Result<Tokens> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parts: Vec<&str> = line.split(',').map(str::trim).collect();
            let bad = |what: &str| {
                Error::Config(format!(
                    "{source}:{}: {what}; expected token,user,role with role admin or read-only",
                    i + 1
                ))
            };
            let [token, user, role] = parts.as_slice() else {
                return Err(bad("wrong number of fields"));
            };
            if token.len() < 16 {
                return Err(bad("token is shorter than 16 characters"));
            }
            let role = match *role {
                "admin" => Role::Admin,
                "read-only" | "readonly" => Role::ReadOnly,
                other => return Err(bad(&format!("unknown role {other:?}"))),
            };
            let digest = digest(token);
            if let Some(first) = entries
                .iter()
                .position(|e: &(usize, TokenEntry)| e.1.digest == digest)
            {
                return Err(bad(&format!(
                    "this token is already on line {}; give every token once (a second role for it would be a guess)",
                    entries[first].0
                )));
            }
            entries.push((
                i + 1,
                TokenEntry {
                    digest,
                    user: user.to_string(),
                    role,
                },
            ));
        }
        if entries.is_empty() {
            return Err(Error::Config(format!("{source} has no tokens")));
        }
        Ok(Tokens {
            entries: entries.into_iter().map(|(_, e)| e).collect(),
        })
    }

    /// The caller a presented token belongs to, compared in constant time.
    pub fn authenticate(&self, presented: &str) -> Option<Caller> {
        let presented = digest(presented);
        let mut found = None;
        for e in &self.entries {
            if constant_time_eq(&e.digest, &presented) {
                found = Some(Caller {
                    user: e.user.clone(),
                    role: e.role,
                });
            }
        }
        found
    }
}

pub(super) fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Every byte is compared whatever the first difference.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_file_roles_and_errors() {
        let t = Tokens::parse(
            "tokens.csv",
            "# who may do what\n0123456789abcdef0123,alice,admin\nfedcba9876543210fedc,bob,read-only\n",
        )
        .unwrap();
        assert_eq!(
            t.authenticate("0123456789abcdef0123").unwrap().role,
            Role::Admin
        );
        assert_eq!(t.authenticate("fedcba9876543210fedc").unwrap().user, "bob");
        assert!(t.authenticate("0123456789abcdef012").is_none());
        let err = Tokens::parse("tokens.csv", "short,alice,admin\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("tokens.csv:1: token is shorter"), "{err}");
        let err = Tokens::parse("tokens.csv", "0123456789abcdef0123,alice,root\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown role \"root\""), "{err}");
        assert!(
            !format!("{t:?}").contains("0123456789abcdef"),
            "tokens never reach debug output"
        );
    }

    #[test]
    fn a_token_listed_twice_refuses_to_start() {
        let err = Tokens::parse(
            "tokens.csv",
            "0123456789abcdef0123,alice,read-only\n0123456789abcdef0123,mallory,admin\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("tokens.csv:2:"), "{err}");
        assert!(err.contains("already on line 1"), "{err}");
        let file = Tokens::parse("tokens.csv", "0123456789abcdef0123,alice,read-only\n").unwrap();
        let err = Tokens::single_admin("0123456789abcdef0123")
            .merge(file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("also the admin token"), "{err}");
    }
}
