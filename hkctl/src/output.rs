//! Printing objects: kubectl-style tables (UPPERCASE headers, NAME first, AGE last),
//! YAML, JSON, `kind/name`, `describe` pages and unified diffs.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use hostkit_api::kinds::KindInfo;
use serde_json::Value;

/// `-o` formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn or_dash(text: impl Into<String>) -> String {
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

fn condition<'a>(v: &'a Value, type_: &str) -> Option<&'a Value> {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        })
}

/// The READY column: the Ready condition's status, `Unknown` before any controller wrote one.
fn ready(v: &Value) -> String {
    condition(v, "Ready")
        .and_then(|c| c.get("status").and_then(Value::as_str))
        .unwrap_or("Unknown")
        .to_string()
}

/// The STATUS column: what a person wants to know first.
fn status(v: &Value) -> String {
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
    condition(v, "Ready")
        .and_then(|c| c.get("reason").and_then(Value::as_str))
        .unwrap_or("Pending")
        .to_string()
}

fn join(v: &Value, pointer: &str) -> String {
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

fn labels(v: &Value) -> String {
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

/// Headers and one row per object for a kind; `wide` adds the `-o wide` columns.
pub fn table(
    kind: &KindInfo,
    objects: &[Value],
    wide: bool,
    now: DateTime<Utc>,
) -> (Vec<String>, Vec<Vec<String>>) {
    let mut headers: Vec<&str> = vec!["NAME"];
    let (cols, wide_cols): (&[&str], &[&str]) = match kind.kind {
        "Service" => (
            &["READY", "STATUS", "HOSTS"],
            &["PROJECT", "GENERATION", "OBSERVED", "REVISION", "LABELS"],
        ),
        "Host" => (
            &["ADDRESS", "READY", "REACHABLE"],
            &["USER", "PORT", "OS", "LABELS"],
        ),
        "Project" => (
            &["DATA", "STATE", "UNIT-PREFIX"],
            &["SOURCE", "CONFIG", "USER-PREFIX"],
        ),
        "PolicyWindow" => (
            &["KIND", "SCHEDULE", "DURATION", "TIMEZONE"],
            &["OPEN", "MANUAL-OVERRIDE"],
        ),
        "Rollback" => (&["TARGET", "TO-REVISION", "STATUS"], &["FORCE", "REASON"]),
        "Revision" => (&["TARGET", "REVISION", "SOURCE"], &["HOSTS"]),
        "GitSource" => (
            &["READY", "REVISION", "OBJECTS"],
            &["URL", "PATH", "SUSPENDED"],
        ),
        "Instance" => (
            &["BACKEND", "IMAGE", "LIFECYCLE", "READY"],
            &["PHASE", "ADDRESS"],
        ),
        "Event" => (
            &["TYPE", "REASON", "OBJECT", "COUNT"],
            &["SOURCE", "MESSAGE"],
        ),
        _ => (&[], &[]),
    };
    headers.extend(cols);
    if wide {
        headers.extend(wide_cols);
    }
    headers.push("AGE");
    let rows = objects
        .iter()
        .map(|v| {
            let mut row = vec![s(v, "/metadata/name").to_string()];
            let cell = |c: &str| -> String {
                match (kind.kind, c) {
                    ("Service", "READY")
                    | ("Host", "READY")
                    | ("GitSource", "READY")
                    | ("Instance", "READY") => ready(v),
                    ("Service", "STATUS") | ("Rollback", "STATUS") => status(v),
                    ("Service", "HOSTS") => {
                        let hosts = join(v, "/spec/hosts");
                        if hosts.is_empty() {
                            v.pointer("/spec/hostSelector/matchLabels")
                                .and_then(Value::as_object)
                                .map(|m| {
                                    let sel: Vec<String> = m
                                        .iter()
                                        .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
                                        .collect();
                                    format!("selector:{}", sel.join(","))
                                })
                                .unwrap_or_else(|| "<none>".into())
                        } else {
                            hosts
                        }
                    }
                    ("Service", "PROJECT") => or_dash(s(v, "/spec/project")),
                    ("Service", "GENERATION") => v
                        .pointer("/metadata/generation")
                        .map(|g| g.to_string())
                        .unwrap_or_default(),
                    ("Service", "OBSERVED") => v
                        .pointer("/status/observedGeneration")
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "<none>".into()),
                    ("Service", "REVISION") => v
                        .pointer("/status/currentRevision")
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "<none>".into()),
                    (_, "LABELS") => or_dash(labels(v)),
                    ("Host", "ADDRESS") => s(v, "/spec/address").to_string(),
                    ("Host", "REACHABLE") => condition(v, "Reachable")
                        .and_then(|c| c.get("status").and_then(Value::as_str))
                        .unwrap_or("Unknown")
                        .to_string(),
                    ("Host", "USER") => or_dash(s(v, "/spec/ssh/user")),
                    ("Host", "PORT") => v
                        .pointer("/spec/ssh/port")
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    ("Host", "OS") => or_dash(
                        format!(
                            "{} {}",
                            s(v, "/status/facts/osId"),
                            s(v, "/status/facts/osVersion")
                        )
                        .trim()
                        .to_string(),
                    ),
                    ("Project", "DATA") => or_dash(s(v, "/spec/roots/data")),
                    ("Project", "STATE") => or_dash(s(v, "/spec/roots/state")),
                    ("Project", "SOURCE") => or_dash(s(v, "/spec/roots/source")),
                    ("Project", "CONFIG") => or_dash(s(v, "/spec/roots/config")),
                    ("Project", "UNIT-PREFIX") => or_dash(s(v, "/spec/prefixes/unit")),
                    ("Project", "USER-PREFIX") => or_dash(s(v, "/spec/prefixes/user")),
                    ("PolicyWindow", "KIND") => s(v, "/spec/kind").to_string(),
                    ("PolicyWindow", "SCHEDULE") => s(v, "/spec/schedule").to_string(),
                    ("PolicyWindow", "DURATION") => s(v, "/spec/duration").to_string(),
                    ("PolicyWindow", "TIMEZONE") => or_dash(s(v, "/spec/timeZone")),
                    ("PolicyWindow", "OPEN") => v
                        .pointer("/status/open")
                        .map(|o| o.to_string())
                        .unwrap_or_else(|| "<unknown>".into()),
                    ("PolicyWindow", "MANUAL-OVERRIDE") => v
                        .pointer("/spec/manualOverride")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string(),
                    ("Rollback", "TARGET") | ("Revision", "TARGET") => {
                        format!(
                            "{}/{}",
                            s(v, "/spec/targetRef/kind").to_lowercase(),
                            s(v, "/spec/targetRef/name")
                        )
                    }
                    ("Rollback", "TO-REVISION") => match v.pointer("/spec/toRevision") {
                        Some(Value::String(t)) => t.clone(),
                        Some(n) => n.to_string(),
                        None => "previous".into(),
                    },
                    ("Rollback", "FORCE") => v
                        .pointer("/spec/force")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string(),
                    ("Rollback", "REASON") => or_dash(s(v, "/spec/reason")),
                    ("Revision", "REVISION") => v
                        .pointer("/spec/revision")
                        .map(|r| r.to_string())
                        .unwrap_or_default(),
                    ("Revision", "SOURCE") => or_dash(s(v, "/spec/source")),
                    ("Revision", "HOSTS") => v
                        .pointer("/spec/hosts")
                        .and_then(Value::as_array)
                        .map(|a| a.len())
                        .unwrap_or(0)
                        .to_string(),
                    ("GitSource", "REVISION") => {
                        // `main@sha1:<40 hex>` → `main@sha1:abcdef1`.
                        let revision = s(v, "/status/lastAppliedCommit");
                        match revision.rsplit_once(':') {
                            _ if revision.is_empty() => "<none>".into(),
                            Some((head, id)) if id.len() > 7 => format!("{head}:{}", &id[..7]),
                            _ => revision.to_string(),
                        }
                    }
                    ("GitSource", "OBJECTS") => v
                        .pointer("/status/inventory")
                        .and_then(Value::as_array)
                        .map(|a| a.len())
                        .unwrap_or(0)
                        .to_string(),
                    ("GitSource", "URL") => {
                        let u = s(v, "/spec/url");
                        or_dash(if u.is_empty() {
                            s(v, "/spec/directory")
                        } else {
                            u
                        })
                    }
                    ("GitSource", "PATH") => or_dash(s(v, "/spec/path")),
                    ("GitSource", "SUSPENDED") => v
                        .pointer("/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string(),
                    ("Instance", "BACKEND") => s(v, "/spec/backend/name").to_string(),
                    ("Instance", "IMAGE") => s(v, "/spec/image").to_string(),
                    ("Instance", "LIFECYCLE") => or_dash(s(v, "/spec/lifecycle")),
                    ("Instance", "PHASE") => or_dash(s(v, "/status/phase")),
                    ("Instance", "ADDRESS") => or_dash(s(v, "/status/address")),
                    ("Event", "TYPE") => s(v, "/spec/type").to_string(),
                    ("Event", "REASON") => s(v, "/spec/reason").to_string(),
                    ("Event", "OBJECT") => format!(
                        "{}/{}",
                        s(v, "/spec/involvedObject/kind").to_lowercase(),
                        s(v, "/spec/involvedObject/name")
                    ),
                    ("Event", "COUNT") => v
                        .pointer("/spec/count")
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "1".into()),
                    ("Event", "SOURCE") => s(v, "/spec/source").to_string(),
                    ("Event", "MESSAGE") => s(v, "/spec/message").to_string(),
                    _ => String::new(),
                }
            };
            for c in &headers[1..headers.len() - 1] {
                row.push(cell(c));
            }
            row.push(age(s(v, "/metadata/creationTimestamp"), now));
            row
        })
        .collect();
    (headers.into_iter().map(String::from).collect(), rows)
}

/// Lays out rows in columns separated by three spaces, like kubectl.
pub fn render_table(
    headers: Option<&[String]>,
    rows: &[Vec<String>],
    widths: &mut Vec<usize>,
) -> String {
    let all: Vec<&Vec<String>> = rows.iter().collect();
    let header_row: Option<Vec<String>> = headers.map(|h| h.to_vec());
    for row in header_row.iter().chain(all.iter().copied()) {
        for (i, cell) in row.iter().enumerate() {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in header_row.iter().chain(all.iter().copied()) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}   ", width = widths[i]);
            }
        }
        out.push('\n');
    }
    out
}

/// An object as YAML (hkctl's `-o yaml`).
pub fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(v)
        .unwrap_or_else(|_| serde_json::to_string_pretty(v).unwrap_or_default())
}

/// `kind/name` as kubectl prints it (`service/exograph`).
pub fn kind_name(kind: &KindInfo, name: &str) -> String {
    format!("{}/{}", kind.singular, name)
}

/// The describe page: metadata, a spec summary, conditions and events.
pub fn describe(kind: &KindInfo, v: &Value, events: &[Value], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Name:         {}", s(v, "/metadata/name"));
    let _ = writeln!(out, "Kind:         {}", kind.kind);
    let _ = writeln!(
        out,
        "Labels:       {}",
        or_dash(labels(v).replace(',', "\n              "))
    );
    let annotations = v
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, x)| format!("{k}: {}", x.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("\n              ")
        })
        .unwrap_or_default();
    let _ = writeln!(out, "Annotations:  {}", or_dash(annotations));
    let _ = writeln!(
        out,
        "Created:      {} ({} ago)",
        s(v, "/metadata/creationTimestamp"),
        age(s(v, "/metadata/creationTimestamp"), now)
    );
    if let Some(g) = v.pointer("/metadata/generation") {
        let observed = v
            .pointer("/status/observedGeneration")
            .map(|o| o.to_string())
            .unwrap_or_else(|| "<none>".into());
        let _ = writeln!(out, "Generation:   {g} (observed: {observed})");
    }
    if let Some(d) = v
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
    {
        let _ = writeln!(
            out,
            "Deleting:     since {d}; finalizers: {}",
            join(v, "/metadata/finalizers")
        );
    }
    if let Some(spec) = v.get("spec") {
        let _ = writeln!(out, "Spec:");
        for line in to_yaml(spec).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    if let Some(status) = v.get("status").and_then(Value::as_object) {
        let rest: serde_json::Map<String, Value> = status
            .iter()
            .filter(|(k, _)| *k != "conditions")
            .map(|(k, x)| (k.clone(), x.clone()))
            .collect();
        if !rest.is_empty() {
            let _ = writeln!(out, "Status:");
            for line in to_yaml(&Value::Object(rest)).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    let _ = writeln!(out, "Conditions:");
    match v.pointer("/status/conditions").and_then(Value::as_array) {
        Some(conds) if !conds.is_empty() => {
            let headers: Vec<String> = ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]
                .map(String::from)
                .to_vec();
            let rows: Vec<Vec<String>> = conds
                .iter()
                .map(|c| {
                    vec![
                        s(c, "/type").to_string(),
                        s(c, "/status").to_string(),
                        s(c, "/reason").to_string(),
                        age(s(c, "/lastTransitionTime"), now),
                        s(c, "/message").to_string(),
                    ]
                })
                .collect();
            for line in render_table(Some(&headers), &rows, &mut Vec::new()).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        _ => {
            let _ = writeln!(out, "  <none>");
        }
    }
    let _ = writeln!(out, "Events:");
    if events.is_empty() {
        let _ = writeln!(out, "  <none>");
    } else {
        let headers: Vec<String> = ["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]
            .map(String::from)
            .to_vec();
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                let count = e
                    .pointer("/spec/count")
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
                let last = s(e, "/spec/lastTimestamp");
                let when = if count > 1 {
                    format!("{} (x{count})", age(last, now))
                } else {
                    age(
                        if last.is_empty() {
                            s(e, "/metadata/creationTimestamp")
                        } else {
                            last
                        },
                        now,
                    )
                };
                vec![
                    s(e, "/spec/type").to_string(),
                    s(e, "/spec/reason").to_string(),
                    when,
                    s(e, "/spec/source").to_string(),
                    s(e, "/spec/message").to_string(),
                ]
            })
            .collect();
        for line in render_table(Some(&headers), &rows, &mut Vec::new()).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
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
mod tests {
    use super::*;
    use hostkit_api::find_kind;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
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
    fn service_table_has_name_first_and_age_last() {
        let svc = json!({
            "metadata": {"name": "exograph", "creationTimestamp": "2026-11-21T11:59:00Z", "labels": {"tier": "search"}, "generation": 2},
            "spec": {"hosts": ["elixir-toys"], "project": "toys"},
            "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True", "reason": "Applied", "lastTransitionTime": "2026-11-21T11:59:30Z"}]}
        });
        let kind = find_kind("svc").unwrap();
        let (headers, rows) = table(kind, std::slice::from_ref(&svc), false, now());
        assert_eq!(headers, ["NAME", "READY", "STATUS", "HOSTS", "AGE"]);
        assert_eq!(
            rows[0],
            ["exograph", "True", "Applied", "elixir-toys", "60s"]
        );
        let text = render_table(Some(&headers), &rows, &mut Vec::new());
        assert_eq!(
            text,
            "NAME       READY   STATUS    HOSTS         AGE\nexograph   True    Applied   elixir-toys   60s\n"
        );
        let (headers, rows) = table(kind, &[svc], true, now());
        assert_eq!(
            headers,
            [
                "NAME",
                "READY",
                "STATUS",
                "HOSTS",
                "PROJECT",
                "GENERATION",
                "OBSERVED",
                "REVISION",
                "LABELS",
                "AGE"
            ]
        );
        assert_eq!(rows[0][4..9], ["toys", "2", "2", "<none>", "tier=search"]);
    }

    #[test]
    fn describe_shows_conditions_and_events() {
        let svc = json!({
            "metadata": {"name": "exograph", "creationTimestamp": "2026-11-21T11:00:00Z", "generation": 1},
            "spec": {"hosts": ["a"]},
            "status": {"conditions": [{"type": "Drifted", "status": "True", "reason": "FileChanged", "message": "file:/etc/x", "lastTransitionTime": "2026-11-21T11:58:00Z"}]}
        });
        let events = vec![
            json!({"metadata": {"creationTimestamp": "2026-11-21T11:58:00Z"},
            "spec": {"type": "Warning", "reason": "DriftDetected", "source": "service-controller", "message": "file:/etc/x changed", "count": 3, "lastTimestamp": "2026-11-21T11:59:00Z"}}),
        ];
        let text = describe(find_kind("svc").unwrap(), &svc, &events, now());
        assert!(text.contains("  TYPE      STATUS   REASON        AGE    MESSAGE\n  Drifted   True     FileChanged   2m0s   file:/etc/x"), "{text}");
        assert!(
            text.contains(
                "  Warning   DriftDetected   60s (x3)   service-controller   file:/etc/x changed"
            ),
            "{text}"
        );
        assert!(text.contains("Spec:\n  hosts:\n"), "{text}");
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
