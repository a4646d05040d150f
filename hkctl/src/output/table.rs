//! The `hkctl get` table: which columns each kind shows (`-o wide` adds some), what goes
//! in each cell, and laying out rows like kubectl.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use hostkit_api::kinds::KindInfo;
use serde_json::Value;

use super::{age, condition, join, labels, or_dash, ready, s, status};

/// The columns of a kind between NAME and AGE, and the `-o wide` ones.
fn columns(kind: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        "Service" => (
            &["READY", "HEALTHY", "STATUS", "HOSTS"],
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
    }
}

/// Headers and one row per object for a kind; `wide` adds the `-o wide` columns.
pub fn table(
    kind: &KindInfo,
    objects: &[Value],
    wide: bool,
    now: DateTime<Utc>,
) -> (Vec<String>, Vec<Vec<String>>) {
    let (cols, wide_cols) = columns(kind.kind);
    let mut headers: Vec<&str> = vec!["NAME"];
    headers.extend(cols);
    if wide {
        headers.extend(wide_cols);
    }
    headers.push("AGE");
    let rows = objects
        .iter()
        .map(|v| {
            let mut row = vec![s(v, "/metadata/name").to_string()];
            for c in &headers[1..headers.len() - 1] {
                row.push(cell(kind.kind, c, v));
            }
            row.push(age(s(v, "/metadata/creationTimestamp"), now));
            row
        })
        .collect();
    (headers.into_iter().map(String::from).collect(), rows)
}

/// One cell: the columns several kinds share, else the kind's own.
fn cell(kind: &str, c: &str, v: &Value) -> String {
    match (kind, c) {
        ("Service", "READY")
        | ("Host", "READY")
        | ("GitSource", "READY")
        | ("Instance", "READY") => ready(v),
        // The Healthy condition (monitors): `Unknown` until a controller read them.
        ("Service", "HEALTHY") => super::condition(v, "Healthy")
            .and_then(|c| c.get("status").and_then(Value::as_str))
            .unwrap_or("Unknown")
            .to_string(),
        ("Service", "STATUS") | ("Rollback", "STATUS") => status(v),
        (_, "LABELS") => or_dash(labels(v)),
        ("Rollback", "TARGET") | ("Revision", "TARGET") => {
            format!(
                "{}/{}",
                s(v, "/spec/targetRef/kind").to_lowercase(),
                s(v, "/spec/targetRef/name")
            )
        }
        _ => match kind {
            "Service" => service_cell(c, v),
            "Host" => host_cell(c, v),
            "Project" => project_cell(c, v),
            "PolicyWindow" => policy_window_cell(c, v),
            "Rollback" => rollback_cell(c, v),
            "Revision" => revision_cell(c, v),
            "GitSource" => git_source_cell(c, v),
            "Instance" => instance_cell(c, v),
            "Event" => event_cell(c, v),
            _ => String::new(),
        },
    }
}

fn service_cell(c: &str, v: &Value) -> String {
    match c {
        "HOSTS" => {
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
        "PROJECT" => or_dash(s(v, "/spec/project")),
        "GENERATION" => v
            .pointer("/metadata/generation")
            .map(|g| g.to_string())
            .unwrap_or_default(),
        "OBSERVED" => v
            .pointer("/status/observedGeneration")
            .map(|g| g.to_string())
            .unwrap_or_else(|| "<none>".into()),
        "REVISION" => v
            .pointer("/status/currentRevision")
            .map(|g| g.to_string())
            .unwrap_or_else(|| "<none>".into()),
        _ => String::new(),
    }
}

fn host_cell(c: &str, v: &Value) -> String {
    match c {
        "ADDRESS" => s(v, "/spec/address").to_string(),
        "REACHABLE" => condition(v, "Reachable")
            .and_then(|c| c.get("status").and_then(Value::as_str))
            .unwrap_or("Unknown")
            .to_string(),
        "USER" => or_dash(s(v, "/spec/ssh/user")),
        "PORT" => v
            .pointer("/spec/ssh/port")
            .map(|p| p.to_string())
            .unwrap_or_default(),
        "OS" => or_dash(
            format!(
                "{} {}",
                s(v, "/status/facts/osId"),
                s(v, "/status/facts/osVersion")
            )
            .trim()
            .to_string(),
        ),
        _ => String::new(),
    }
}

fn project_cell(c: &str, v: &Value) -> String {
    match c {
        "DATA" => or_dash(s(v, "/spec/roots/data")),
        "STATE" => or_dash(s(v, "/spec/roots/state")),
        "SOURCE" => or_dash(s(v, "/spec/roots/source")),
        "CONFIG" => or_dash(s(v, "/spec/roots/config")),
        "UNIT-PREFIX" => or_dash(s(v, "/spec/prefixes/unit")),
        "USER-PREFIX" => or_dash(s(v, "/spec/prefixes/user")),
        _ => String::new(),
    }
}

fn policy_window_cell(c: &str, v: &Value) -> String {
    match c {
        "KIND" => s(v, "/spec/kind").to_string(),
        "SCHEDULE" => s(v, "/spec/schedule").to_string(),
        "DURATION" => s(v, "/spec/duration").to_string(),
        "TIMEZONE" => or_dash(s(v, "/spec/timeZone")),
        "OPEN" => v
            .pointer("/status/open")
            .map(|o| o.to_string())
            .unwrap_or_else(|| "<unknown>".into()),
        "MANUAL-OVERRIDE" => v
            .pointer("/spec/manualOverride")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string(),
        _ => String::new(),
    }
}

fn rollback_cell(c: &str, v: &Value) -> String {
    match c {
        "TO-REVISION" => match v.pointer("/spec/toRevision") {
            Some(Value::String(t)) => t.clone(),
            Some(n) => n.to_string(),
            None => "previous".into(),
        },
        "FORCE" => v
            .pointer("/spec/force")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string(),
        "REASON" => or_dash(s(v, "/spec/reason")),
        _ => String::new(),
    }
}

fn revision_cell(c: &str, v: &Value) -> String {
    match c {
        "REVISION" => v
            .pointer("/spec/revision")
            .map(|r| r.to_string())
            .unwrap_or_default(),
        "SOURCE" => or_dash(s(v, "/spec/source")),
        "HOSTS" => v
            .pointer("/spec/hosts")
            .and_then(Value::as_array)
            .map(|a| a.len())
            .unwrap_or(0)
            .to_string(),
        _ => String::new(),
    }
}

fn git_source_cell(c: &str, v: &Value) -> String {
    match c {
        "REVISION" => {
            // `main@sha1:<40 hex>` → `main@sha1:abcdef1`.
            let revision = s(v, "/status/lastAppliedCommit");
            match revision.rsplit_once(':') {
                _ if revision.is_empty() => "<none>".into(),
                Some((head, id)) if id.len() > 7 => format!("{head}:{}", &id[..7]),
                _ => revision.to_string(),
            }
        }
        "OBJECTS" => v
            .pointer("/status/inventory")
            .and_then(Value::as_array)
            .map(|a| a.len())
            .unwrap_or(0)
            .to_string(),
        "URL" => {
            let u = s(v, "/spec/url");
            or_dash(if u.is_empty() {
                s(v, "/spec/directory")
            } else {
                u
            })
        }
        "PATH" => or_dash(s(v, "/spec/path")),
        "SUSPENDED" => v
            .pointer("/spec/suspend")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string(),
        _ => String::new(),
    }
}

fn instance_cell(c: &str, v: &Value) -> String {
    match c {
        "BACKEND" => s(v, "/spec/backend/name").to_string(),
        "IMAGE" => s(v, "/spec/image").to_string(),
        "LIFECYCLE" => or_dash(s(v, "/spec/lifecycle")),
        "PHASE" => or_dash(s(v, "/status/phase")),
        "ADDRESS" => or_dash(s(v, "/status/address")),
        _ => String::new(),
    }
}

fn event_cell(c: &str, v: &Value) -> String {
    match c {
        "TYPE" => s(v, "/spec/type").to_string(),
        "REASON" => s(v, "/spec/reason").to_string(),
        "OBJECT" => format!(
            "{}/{}",
            s(v, "/spec/involvedObject/kind").to_lowercase(),
            s(v, "/spec/involvedObject/name")
        ),
        "COUNT" => v
            .pointer("/spec/count")
            .map(|c| c.to_string())
            .unwrap_or_else(|| "1".into()),
        "SOURCE" => s(v, "/spec/source").to_string(),
        "MESSAGE" => s(v, "/spec/message").to_string(),
        _ => String::new(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use hostkit_api::find_kind;
    use serde_json::json;

    use crate::output::tests::now;

    #[test]
    fn service_table_has_name_first_and_age_last() {
        let svc = json!({
            "metadata": {"name": "exograph", "creationTimestamp": "2026-11-21T11:59:00Z", "labels": {"tier": "search"}, "generation": 2},
            "spec": {"hosts": ["elixir-toys"], "project": "toys"},
            "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True", "reason": "Applied", "lastTransitionTime": "2026-11-21T11:59:30Z"}, {"type": "Healthy", "status": "True", "reason": "MonitorsPassing"}]}
        });
        let kind = find_kind("svc").unwrap();
        let (headers, rows) = table(kind, std::slice::from_ref(&svc), false, now());
        assert_eq!(
            headers,
            ["NAME", "READY", "HEALTHY", "STATUS", "HOSTS", "AGE"]
        );
        assert_eq!(
            rows[0],
            ["exograph", "True", "True", "Applied", "elixir-toys", "60s"]
        );
        let text = render_table(Some(&headers), &rows, &mut Vec::new());
        assert_eq!(
            text,
            "NAME       READY   HEALTHY   STATUS    HOSTS         AGE\nexograph   True    True      Applied   elixir-toys   60s\n"
        );
        let (headers, rows) = table(kind, &[svc], true, now());
        assert_eq!(
            headers,
            [
                "NAME",
                "READY",
                "HEALTHY",
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
        assert_eq!(rows[0][5..10], ["toys", "2", "2", "<none>", "tier=search"]);
    }
}
