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
    token: String,
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
                token: token.to_string(),
                user: "admin".into(),
                role: Role::Admin,
            }],
        }
    }

    /// Both sets of tokens.
    pub fn merge(mut self, other: Tokens) -> Tokens {
        self.entries.extend(other.entries);
        self
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
            entries.push(TokenEntry {
                token: token.to_string(),
                user: user.to_string(),
                role,
            });
        }
        if entries.is_empty() {
            return Err(Error::Config(format!("{source} has no tokens")));
        }
        Ok(Tokens { entries })
    }

    /// The caller a presented token belongs to, compared in constant time.
    pub fn authenticate(&self, presented: &str) -> Option<Caller> {
        let mut found = None;
        for e in &self.entries {
            if constant_time_eq(e.token.as_bytes(), presented.as_bytes()) {
                found = Some(Caller {
                    user: e.user.clone(),
                    role: e.role,
                });
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
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
}
