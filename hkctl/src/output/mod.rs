//! Printing objects: kubectl-style tables (UPPERCASE headers, NAME first, AGE last),
//! YAML, JSON, `kind/name`, `describe` pages and unified diffs.

mod describe;
pub mod jsonpath;
mod table;

pub use describe::describe;
pub use table::{render_table, table};

use chrono::{DateTime, Utc};
use hostkit_api::kinds::KindInfo;
use serde_json::Value;

/// `-o` formats.
#[derive(Clone, Debug)]
pub enum Format {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
    /// `jsonpath=TEMPLATE`, applied to the object (one named) or the List.
    JsonPath(jsonpath::Template),
    /// `custom-columns=HEADER:PATH,…`: a table of your own columns.
    CustomColumns(Vec<jsonpath::Column>),
}

impl Format {
    /// Reads an `-o` value (clap's value parser, hence the `String` error).
    pub fn parse(text: &str) -> Result<Format, String> {
        let fixed = match text {
            "table" => Some(Format::Table),
            "wide" => Some(Format::Wide),
            "yaml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            "name" => Some(Format::Name),
            _ => None,
        };
        if let Some(f) = fixed {
            return Ok(f);
        }
        let err = |e: crate::Error| e.to_string();
        if let Some(t) = text.strip_prefix("jsonpath=") {
            return jsonpath::Template::parse(t)
                .map(Format::JsonPath)
                .map_err(err);
        }
        if let Some(c) = text.strip_prefix("custom-columns=") {
            return jsonpath::parse_columns(c)
                .map(Format::CustomColumns)
                .map_err(err);
        }
        Err(format!(
            "{text:?} is not an output format: table, wide, name, json, yaml, \
             jsonpath=TEMPLATE or custom-columns=HEADER:PATH,…"
        ))
    }
}

pub(crate) fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn or_dash(text: impl Into<String>) -> String {
    let t = text.into();
    if t.is_empty() {
        "<none>".to_string()
    } else {
        t
    }
}

/// How long until `at`, in the same short form as [`age`].
pub fn age_until(at: &str, now: DateTime<Utc>) -> String {
    match at.parse::<DateTime<Utc>>() {
        Ok(t) => age(&(now - (t - now)).to_rfc3339(), now),
        Err(_) => "<unknown>".into(),
    }
}

/// kubectl's short ages: `42s`, `3m12s`, `47m`, `5h3m`, `20h`, `3d4h`, `12d`.
pub fn age(since: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = since.parse::<DateTime<Utc>>() else {
        return "<unknown>".into();
    };
    let secs = (now - t).num_seconds().max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", m, s % 60),
        s if s < 3 * 3600 => format!("{m}m"),
        s if s < 8 * 3600 => format!("{}h{}m", h, m % 60),
        s if s < 48 * 3600 => format!("{h}h"),
        s if s < 8 * 86400 => format!("{}d{}h", d, h % 24),
        _ => format!("{d}d"),
    }
}

pub(crate) fn condition<'a>(v: &'a Value, type_: &str) -> Option<&'a Value> {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        })
}

/// The READY column: the Ready condition's status, `Unknown` before any controller wrote one.
pub(crate) fn ready(v: &Value) -> String {
    condition(v, "Ready")
        .and_then(|c| c.get("status").and_then(Value::as_str))
        .unwrap_or("Unknown")
        .to_string()
}

/// The STATUS column: what a person wants to know first.
pub(crate) fn status(v: &Value) -> String {
    if v.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    for t in ["Stalled", "Reconciling", "WindowBlocked"] {
        if let Some(c) = condition(v, t)
            && c.get("status").and_then(Value::as_str) == Some("True")
        {
            return c
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or(t)
                .to_string();
        }
    }
    // Kinds that run to an end (a Rollback) say Failed or Complete instead of Ready.
    let is_true = |c: &&Value| c.get("status").and_then(Value::as_str) == Some("True");
    condition(v, "Ready")
        .or_else(|| condition(v, "Failed").filter(is_true))
        .or_else(|| condition(v, "Complete"))
        .and_then(|c| c.get("reason").and_then(Value::as_str))
        .unwrap_or("Pending")
        .to_string()
}

pub(crate) fn join(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

pub(crate) fn labels(v: &Value) -> String {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// An object as YAML (hkctl's `-o yaml`).
pub fn to_yaml(v: &Value) -> String {
    let mut text = serde_saphyr::to_string(v)
        .unwrap_or_else(|_| serde_json::to_string_pretty(v).unwrap_or_default());
    // The serializer leaves the newline off after some documents; a shell prompt or the
    // next `---` must start on a line of its own.
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// `kind/name` as kubectl prints it (`service/exograph`).
pub fn kind_name(kind: &KindInfo, name: &str) -> String {
    format!("{}/{}", kind.singular, name)
}

/// Removes fields the server owns, so a diff shows only what the user changes.
pub fn strip_server_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in ["resourceVersion", "uid", "creationTimestamp"] {
                m.remove(f);
            }
        }
    }
    v
}

/// A unified diff of two objects as YAML; empty when they are equal.
pub fn unified_diff(label: &str, live: Option<&Value>, merged: &Value) -> String {
    let old = live
        .map(|l| to_yaml(&strip_server_fields(l)))
        .unwrap_or_default();
    let new = to_yaml(&strip_server_fields(merged));
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("live/{label}"), &format!("merged/{label}"))
        .to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn now() -> DateTime<Utc> {
        "2026-11-21T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn ages_read_like_kubectl() {
        for (t, expected) in [
            ("2026-11-21T11:59:18Z", "42s"),
            ("2026-11-21T11:56:48Z", "3m12s"),
            ("2026-11-21T11:13:00Z", "47m"),
            ("2026-11-21T06:57:00Z", "5h3m"),
            ("2026-11-20T16:00:00Z", "20h"),
            ("2026-11-18T08:00:00Z", "3d4h"),
            ("2026-11-01T12:00:00Z", "20d"),
        ] {
            assert_eq!(age(t, now()), expected, "{t}");
        }
    }

    #[test]
    fn the_status_column_follows_the_conditions_each_kind_has() {
        let with = |conditions: Value| json!({"status": {"conditions": conditions}});
        assert_eq!(status(&json!({})), "Pending", "nothing observed yet");
        let svc = with(json!([{"type": "Ready", "status": "True", "reason": "Converged"}]));
        assert_eq!(status(&svc), "Converged");
        let done = with(json!([
            {"type": "Complete", "status": "True", "reason": "RolledBack"},
            {"type": "Failed", "status": "False", "reason": "RolledBack"}]));
        assert_eq!(status(&done), "RolledBack");
        let failed = with(json!([
            {"type": "Complete", "status": "False", "reason": "RollbackFailed"},
            {"type": "Failed", "status": "True", "reason": "RollbackFailed"}]));
        assert_eq!(status(&failed), "RollbackFailed");
        let running =
            with(json!([{"type": "Complete", "status": "False", "reason": "Progressing"}]));
        assert_eq!(status(&running), "Progressing");
        let blocked = with(json!([
            {"type": "Complete", "status": "False", "reason": "Progressing"},
            {"type": "WindowBlocked", "status": "True", "reason": "WindowClosed"}]));
        assert_eq!(status(&blocked), "WindowClosed");
    }

    #[test]
    fn diffs_ignore_server_fields() {
        let live = json!({"metadata": {"name": "a", "resourceVersion": "5", "uid": "u"}, "spec": {"x": 1}, "status": {"s": 1}});
        let same = json!({"metadata": {"name": "a", "resourceVersion": "6", "uid": "u"}, "spec": {"x": 1}});
        assert_eq!(unified_diff("service/a", Some(&live), &same), "");
        let changed = json!({"metadata": {"name": "a"}, "spec": {"x": 2}});
        let d = unified_diff("service/a", Some(&live), &changed);
        assert!(
            d.contains("--- live/service/a\n+++ merged/service/a\n"),
            "{d}"
        );
        assert!(d.contains("-  x: 1\n+  x: 2\n"), "{d}");
    }
}
