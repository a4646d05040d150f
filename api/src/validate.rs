//! Semantic validation: everything serde's typing cannot say.
//!
//! Every check reports the field path (`spec.daemon.isolate.writable[1]`) and what would be
//! valid, and the validator collects all problems instead of stopping at the first, so an
//! operator fixes a manifest in one round instead of one error at a time.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::FieldError;
use crate::meta::{LabelSelector, check_label_key};
pub use crate::meta::{check_dns_label, check_dns_subdomain};
use crate::values::SecretRef;

/// Collects field errors under a moving path prefix.
#[derive(Debug, Default)]
pub struct Validator {
    path: String,
    errors: Vec<FieldError>,
}

impl Validator {
    /// Runs `f` with `segment` appended to the path (`spec` → `spec.daemon`).
    pub fn scope(&mut self, segment: impl Display, f: impl FnOnce(&mut Validator)) {
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(&segment.to_string());
        f(self);
        self.path.truncate(len);
    }

    /// Runs `f` for one list element (`storage` → `storage[2]`).
    pub fn index(&mut self, segment: &str, i: usize, f: impl FnOnce(&mut Validator)) {
        self.scope(format!("{segment}[{i}]"), f);
    }

    /// Records a problem with `field` under the current path (`""` for the path itself).
    pub fn err(&mut self, field: impl Display, message: impl Into<String>) {
        let field = field.to_string();
        let full = match (self.path.is_empty(), field.is_empty()) {
            (true, _) => field,
            (false, true) => self.path.clone(),
            (false, false) if field.starts_with('[') => format!("{}{field}", self.path),
            (false, false) => format!("{}.{field}", self.path),
        };
        self.errors.push(FieldError::new(full, message));
    }

    /// Records `Err` results of a check.
    pub fn check(&mut self, field: impl Display, result: Result<(), String>) {
        if let Err(message) = result {
            self.err(field, message);
        }
    }

    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }
}

pub(crate) fn camel_case(field: &str, value: &str, v: &mut Validator) {
    let ok = value.starts_with(|c: char| c.is_ascii_uppercase())
        && value.chars().all(|c| c.is_ascii_alphanumeric());
    if !ok {
        v.err(
            field,
            format!("{value:?} is not a CamelCase word, e.g. DriftDetected"),
        );
    }
}

/// Absolute paths, or paths starting with a `${…}` reference that expands to one.
pub(crate) fn check_path(field: impl Display, path: &str, v: &mut Validator) {
    if !(path.starts_with('/') || path.starts_with("${")) {
        v.err(
            field,
            format!("{path:?} is not an absolute path (start with / or a ${{roots.X}} reference)"),
        );
    }
}

pub(crate) fn check_user_name(field: impl Display, name: &str, v: &mut Validator) {
    if name.starts_with("${") {
        return;
    }
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if !ok {
        v.err(field, format!(
            "{name:?} is not a valid user or group name: lowercase letters, digits, '_' and '-', \
             starting with a letter or '_', at most 32 characters"
        ));
    }
}

pub(crate) fn check_owner(owner: &Option<String>, group: &Option<String>, v: &mut Validator) {
    if let Some(o) = owner {
        check_user_name("owner", o, v);
    }
    if let Some(g) = group {
        check_user_name("group", g, v);
    }
}

pub(crate) fn check_argv(field: &str, argv: &[String], v: &mut Validator) {
    match argv.first() {
        None => v.err(
            field,
            "must name a command: a list like [/usr/bin/program, --flag]",
        ),
        Some(cmd) if cmd.is_empty() => v.err(format!("{field}[0]"), "the command is empty"),
        Some(_) => {}
    }
}

pub(crate) fn check_env_name(field: impl Display, name: &str, v: &mut Validator) {
    let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        v.err(field, format!(
            "{name:?} is not an environment variable name: letters, digits and '_', not starting with a digit"
        ));
    }
}

pub(crate) fn check_secret(field: impl Display, s: &SecretRef, v: &mut Validator) {
    v.check(field, s.check());
}

pub(crate) fn unique<'a>(field: &str, names: impl Iterator<Item = &'a str>, v: &mut Validator) {
    let mut seen = BTreeSet::new();
    for (i, n) in names.enumerate() {
        if !seen.insert(n) {
            v.err(
                format!("{field}[{i}].name"),
                format!("{n:?} is declared twice"),
            );
        }
    }
}

pub(crate) fn check_selector(field: &str, s: &LabelSelector, v: &mut Validator) {
    v.scope(field, |v| {
        for key in s.match_labels.keys() {
            v.check(format!("matchLabels.{key}"), check_label_key(key));
        }
        for (i, e) in s.match_expressions.iter().enumerate() {
            v.index("matchExpressions", i, |v| {
                v.check("key", check_label_key(&e.key));
                use crate::meta::LabelOperator::*;
                match e.operator {
                    In | NotIn if e.values.is_empty() => {
                        v.err("values", "In and NotIn need at least one value")
                    }
                    Exists | DoesNotExist if !e.values.is_empty() => {
                        v.err("values", "Exists and DoesNotExist take no values")
                    }
                    _ => {}
                }
            });
        }
    });
}

/// Resource ids are `kind:name`, e.g. `file:/etc/toys/exograph/runtime.env`.
pub fn check_resource_id(id: &str) -> Result<(), String> {
    match id.split_once(':') {
        Some((kind, name))
            if !kind.is_empty()
                && !name.is_empty()
                && kind
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '-') =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{id:?} is not a resource id: write kind:name, e.g. file:/etc/app/app.toml or command:migrate"
        )),
    }
}

/// The names inside `${…}` in `s`; an unclosed `${` is returned whole so it is reported.
pub fn find_references(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            None => {
                out.push(after);
                break;
            }
        }
    }
    out
}

pub(crate) fn walk_strings(
    value: &serde_json::Value,
    path: &mut String,
    f: &mut impl FnMut(&str, &str),
) {
    match value {
        serde_json::Value::String(s) => f(path, s),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk_strings(item, path, f);
                path.truncate(len);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk_strings(item, path, f);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

pub(crate) fn list<T: Display>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.map(|i| i.to_string()).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// `any`, an IPv4/IPv6 address, or a CIDR.
pub fn check_source(src: &str) -> Result<(), String> {
    if src == "any" {
        return Ok(());
    }
    let (addr, prefix) = match src.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (src, None),
    };
    let ip = IpAddr::from_str(addr).map_err(|_| {
        format!("{src:?} is not any, an IP address, or a CIDR such as 10.44.0.0/24")
    })?;
    if let Some(p) = prefix {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match p.parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => return Err(format!("{src:?}: prefix length must be 0-{max}")),
        }
    }
    Ok(())
}

pub(crate) mod base64_check {
    /// Standard-alphabet base64 with padding; whitespace between lines allowed.
    pub fn is_base64(s: &str) -> bool {
        let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !clean.len().is_multiple_of(4) {
            return false;
        }
        let pad = clean.iter().rev().take_while(|b| **b == b'=').count();
        pad <= 2
            && clean[..clean.len() - pad]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_dns_label("exograph").is_ok());
        assert!(check_dns_label("elixir-toys").is_ok());
        for bad in ["Exograph", "-a", "a-", "a_b", "a.b", ""] {
            assert!(check_dns_label(bad).is_err(), "{bad}");
        }
        assert!(check_dns_subdomain("exograph.17a").is_ok());
        assert!(check_dns_subdomain("a..b").is_err());
    }

    #[test]
    fn references_are_found() {
        assert_eq!(
            find_references("${roots.source}/x/${storage.data}"),
            vec!["roots.source", "storage.data"]
        );
        assert_eq!(find_references("plain"), Vec::<&str>::new());
        assert_eq!(find_references("${unclosed"), vec!["unclosed"]);
    }

    #[test]
    fn sources() {
        for ok in ["any", "10.44.0.0/24", "192.0.2.1", "2001:db8::/32", "::1"] {
            assert!(check_source(ok).is_ok(), "{ok}");
        }
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/x", ""] {
            assert!(check_source(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resource_ids() {
        assert!(check_resource_id("file:/etc/toys/exograph/runtime.env").is_ok());
        assert!(check_resource_id("command:migrate").is_ok());
        assert!(check_resource_id("/etc/x").is_err());
        assert!(check_resource_id("File:/x").is_err());
    }

    #[test]
    fn base64() {
        assert!(base64_check::is_base64("aGVsbG8="));
        assert!(!base64_check::is_base64("aGVsbG8"));
        assert!(!base64_check::is_base64("a*=="));
    }
}
