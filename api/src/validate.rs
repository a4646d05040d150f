//! Semantic validation: everything serde's typing cannot say.
//!
//! Every check reports the field path (`spec.daemon.isolate.writable[1]`) and what would be
//! valid, and the validator collects all problems instead of stopping at the first, so an
//! operator fixes a manifest in one round instead of one error at a time.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::net::IpAddr;
use std::str::FromStr;

use serde_json::Value;

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
    if let Err(why) = path_problem(path) {
        v.err(field, format!("{path:?} {why}"));
    }
}

/// What is wrong with a path for a host file: it must be absolute (or start with a
/// `${roots.X}` reference), normalised (no `.`, `..` or empty parts), not `/` itself, and fit
/// in a path (4096 bytes). Control characters are refused for every field elsewhere.
pub fn path_problem(path: &str) -> Result<(), String> {
    if !(path.starts_with('/') || path.starts_with("${")) {
        return Err("is not an absolute path (start with / or a ${roots.X} reference)".into());
    }
    if path.len() > 4096 {
        return Err("is longer than 4096 bytes".into());
    }
    if path == "/" {
        return Err("is the root folder; name a file or folder below it".into());
    }
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.ends_with('/') {
        return Err("ends with '/'; write the path without it".into());
    }
    for part in rest.split('/') {
        match part {
            "" => return Err("has an empty part ('//'); write each '/' once".into()),
            "." | ".." => {
                return Err(format!(
                    "has a {part:?} part; write the path without '.' and '..' parts"
                ));
            }
            _ => {}
        }
    }
    Ok(())
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

/// Limits that keep what one object costs bounded, whatever a client sends (Kubernetes has
/// the same kind of limits on labels and annotations).
pub mod limits {
    /// Items in any one list of a spec.
    pub const LIST_ITEMS: usize = 1000;
    /// Entries in any one mapping of a spec.
    pub const MAP_ENTRIES: usize = 1000;
    /// Characters in a string that is not a file's content.
    pub const TEXT: usize = 16 * 1024;
    /// Nesting of lists and mappings.
    pub const DEPTH: usize = 32;
    /// Labels on one object.
    pub const LABELS: usize = 64;
    /// Annotations on one object, keys and values together, in bytes.
    pub const ANNOTATION_BYTES: usize = 256 * 1024;
}

/// Whether a character may appear in a string that lands in a line-based format (a unit
/// file, an env file, a ruleset, a Caddyfile, a shell command): no control characters but
/// tab, and no Unicode line or paragraph separators.
pub fn is_line_safe(c: char) -> bool {
    c == '\t' || !(c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

/// Checks every string, list and mapping of `value` (a spec as JSON): no control characters
/// (a newline would end a directive in a unit file and start a new one) except in the
/// `free_text` fields, and the sizes in [`limits`]. `free_text` patterns are paths of keys
/// with `*` for any one key or index and `**` for everything below.
pub fn check_strings(value: &Value, free_text: &[&str], v: &mut Validator) {
    let mut path: Vec<String> = Vec::new();
    walk_checked(value, free_text, &mut path, v);
}

fn matches_pattern(pattern: &str, path: &[String]) -> bool {
    let parts: Vec<&str> = pattern.split('/').collect();
    fn go(parts: &[&str], path: &[String]) -> bool {
        match (parts.first(), path.first()) {
            (Some(&"**"), _) => true,
            (None, None) => true,
            (Some(p), Some(q)) if *p == "*" || *p == q => go(&parts[1..], &path[1..]),
            _ => false,
        }
    }
    go(&parts, path)
}

fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for p in path {
        if p.parse::<usize>().is_ok() {
            out.push_str(&format!("[{p}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(p);
        }
    }
    out
}

fn walk_checked(value: &Value, free: &[&str], path: &mut Vec<String>, v: &mut Validator) {
    let free_here = free.iter().any(|p| matches_pattern(p, path));
    match value {
        Value::String(text) => {
            if free_here {
                return;
            }
            if text.chars().count() > limits::TEXT {
                v.err(
                    dotted(path),
                    format!("is longer than {} characters", limits::TEXT),
                );
            } else if let Some(c) = text.chars().find(|c| !is_line_safe(*c)) {
                v.err(
                    dotted(path),
                    format!(
                        "holds the control character {c:?}; this field is one line of text (only file contents may hold line breaks)"
                    ),
                );
            }
        }
        Value::Array(items) => {
            if path.len() >= limits::DEPTH {
                v.err(
                    dotted(path),
                    format!("is nested deeper than {} levels", limits::DEPTH),
                );
                return;
            }
            if items.len() > limits::LIST_ITEMS && !free_here {
                v.err(
                    dotted(path),
                    format!(
                        "has {} items; at most {} are allowed",
                        items.len(),
                        limits::LIST_ITEMS
                    ),
                );
                return;
            }
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                walk_checked(item, free, path, v);
                path.pop();
            }
        }
        Value::Object(map) => {
            if path.len() >= limits::DEPTH {
                v.err(
                    dotted(path),
                    format!("is nested deeper than {} levels", limits::DEPTH),
                );
                return;
            }
            if map.len() > limits::MAP_ENTRIES && !free_here {
                v.err(
                    dotted(path),
                    format!(
                        "has {} entries; at most {} are allowed",
                        map.len(),
                        limits::MAP_ENTRIES
                    ),
                );
                return;
            }
            for (k, item) in map {
                if !free_here && let Some(c) = k.chars().find(|c| !is_line_safe(*c)) {
                    v.err(
                        dotted(path),
                        format!("has a key holding the control character {c:?}"),
                    );
                }
                path.push(k.clone());
                walk_checked(item, free, path, v);
                path.pop();
            }
        }
        _ => {}
    }
}

/// A name or address a host can be reached at: a DNS host name or an IP address. An
/// address an SSH client would read as an option (`-oProxyCommand=…`) or a shell would
/// expand (`$(id)`) is neither.
pub fn check_host_address(address: &str) -> Result<(), String> {
    if IpAddr::from_str(address).is_ok() {
        return Ok(());
    }
    let ok = !address.is_empty()
        && address.len() <= 253
        && address.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{address:?} is not a host name (letters, digits and '-' in dot-separated parts) or an IP address"
        ))
    }
}

/// A systemd unit name such as `network-online.target` or `postgresql@15.service`.
pub fn check_unit_name(name: &str) -> Result<(), String> {
    const SUFFIXES: &[&str] = &[
        "service",
        "socket",
        "device",
        "mount",
        "automount",
        "swap",
        "target",
        "path",
        "timer",
        "slice",
        "scope",
    ];
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-' | '@' | '\\'));
    let suffix_ok = name
        .rsplit_once('.')
        .is_some_and(|(stem, suffix)| !stem.is_empty() && SUFFIXES.contains(&suffix));
    if !name.is_empty() && name.len() <= 255 && valid_chars && suffix_ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a systemd unit name such as network-online.target or db.service (letters, digits, ':', '_', '.', '-', '@', and a unit type suffix)"
        ))
    }
}

/// A value that stays one directive in a unit file: besides control characters (refused
/// everywhere), a trailing backslash would join the next line to it.
pub(crate) fn check_directive_text(field: impl Display, text: &str, v: &mut Validator) {
    if text.ends_with('\\') {
        v.err(field, format!("{text:?} ends with a backslash, which would continue it onto the next line of the unit file"));
    }
}

/// A systemd calendar expression (`OnCalendar=`): the characters that syntax uses.
pub fn check_calendar(text: &str) -> Result<(), String> {
    let ok = !text.trim().is_empty()
        && text.len() <= 256
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, ' ' | '*' | ':' | ',' | '.' | '/' | '~' | '+' | '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a systemd calendar expression such as daily, Mon *-*-* 03:00:00 or *-*-* *:00/15"
        ))
    }
}
