//! `daemon.logs`: where a daemon's output goes, as journald directives, and the checks
//! that keep each value a word or a plain path (every one lands in a unit file).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::Validator;
use crate::values::Duration;

/// A daemon's logging, as the unit's `SyslogIdentifier=`, `StandardOutput=`,
/// `StandardError=` and `LogRateLimit*=` directives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logs {
    /// The name its journal lines carry (`journalctl -t NAME`); letters, digits, `.`, `_`,
    /// `-`, at most 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// `journal` (the default), `null`, `file:/abs/path` (truncated when the unit starts)
    /// or `append:/abs/path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// As `stdout`, or `inherit` (where stdout goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// At most `burst` lines per `interval` reach the journal; the rest are dropped (and
    /// counted by journald).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<LogRateLimit>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogRateLimit {
    pub interval: Duration,
    pub burst: u32,
}

/// `daemon.logs`: every value lands in a unit directive, so each is one of a few words or a
/// plain absolute path (no `%` specifiers, no spaces, nothing a unit file would read twice).
pub(super) fn check_logs(l: &Logs, v: &mut Validator) {
    v.scope("logs", |v| {
        if let Some(id) = &l.identifier
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            v.err(
                "identifier",
                format!("{id:?}: 1 to 64 letters, digits, '.', '_' or '-'"),
            );
        }
        for (field, value, inherit) in [("stdout", &l.stdout, false), ("stderr", &l.stderr, true)] {
            let Some(value) = value else { continue };
            if let Err(why) = log_target(value, inherit) {
                v.err(field, why);
            }
        }
        if let Some(r) = &l.rate_limit {
            if r.burst == 0 {
                v.err("rateLimit.burst", "must be at least 1 line");
            }
            if r.interval.as_std().is_zero() {
                v.err("rateLimit.interval", "must be longer than 0s");
            }
        }
    });
}

/// Whether `value` is a log target `StandardOutput=`/`StandardError=` may take.
pub(crate) fn log_target(value: &str, inherit_allowed: bool) -> Result<(), String> {
    let words: &[&str] = if inherit_allowed {
        &["journal", "null", "inherit"]
    } else {
        &["journal", "null"]
    };
    if words.contains(&value) {
        return Ok(());
    }
    let path = value
        .strip_prefix("file:")
        .or_else(|| value.strip_prefix("append:"));
    match path {
        Some(p)
            if p.starts_with('/')
                && crate::validate::path_problem(p).is_ok()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-')) =>
        {
            Ok(())
        }
        Some(p) => Err(format!(
            "{p:?} is not a plain absolute path (letters, digits, '/', '.', '_', '-')"
        )),
        None => Err(format!(
            "{value:?} is not one of {}, file:/path or append:/path",
            words.join(", ")
        )),
    }
}
