//! `hkctl describe`: an object's spec, conditions and events, as one page.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use hostkit_api::kinds::KindInfo;
use serde_json::Value;

use super::*;

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
        let mut rest: serde_json::Map<String, Value> = status
            .iter()
            .filter(|(k, _)| *k != "conditions")
            .map(|(k, x)| (k.clone(), x.clone()))
            .collect();
        // Monitors get their own table below.
        if let Some(hosts) = rest.get_mut("hosts").and_then(Value::as_array_mut) {
            for h in hosts.iter_mut().filter_map(Value::as_object_mut) {
                h.remove("monitors");
            }
        }
        if !rest.is_empty() {
            let _ = writeln!(out, "Status:");
            for line in to_yaml(&Value::Object(rest)).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    monitors(&mut out, v, now);
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

/// A Service's monitors, a row per host and monitor: OK is what the thresholds decided
/// (`?` while not known), the message what the last run saw.
fn monitors(out: &mut String, v: &Value, now: DateTime<Utc>) {
    let rows: Vec<Vec<String>> = v
        .pointer("/status/hosts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|h| {
            let host = s(h, "/host").to_string();
            h.get("monitors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(move |m| {
                    let ok = match m.get("ok").and_then(Value::as_bool) {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "?",
                    };
                    let since = match s(m, "/since") {
                        "" => "-".to_string(),
                        t => age(t, now),
                    };
                    vec![
                        host.clone(),
                        s(m, "/name").to_string(),
                        s(m, "/kind").to_string(),
                        s(m, "/severity").to_string(),
                        ok.to_string(),
                        since,
                        s(m, "/message").to_string(),
                    ]
                })
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let headers: Vec<String> = [
        "HOST", "MONITOR", "KIND", "SEVERITY", "OK", "SINCE", "MESSAGE",
    ]
    .map(String::from)
    .to_vec();
    let _ = writeln!(out, "Monitors:");
    for line in render_table(Some(&headers), &rows, &mut Vec::new()).lines() {
        let _ = writeln!(out, "  {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostkit_api::find_kind;
    use serde_json::json;

    use crate::output::tests::now;

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
    fn describe_shows_each_hosts_monitors_once_in_a_table() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-11-21T11:00:00Z"},
            "spec": {"hosts": ["a"]},
            "status": {"hosts": [{"host": "a", "monitors": [
                {"name": "http", "kind": "http", "severity": "critical", "ok": false, "since": "2026-11-21T11:59:00Z", "message": "GET http://127.0.0.1:8080/: 500, want 200", "streak": 3, "lastOk": false},
                {"name": "flag", "kind": "file", "severity": "warning", "message": "not run yet", "streak": 0, "lastOk": false}
            ]}]}
        });
        let text = describe(find_kind("svc").unwrap(), &svc, &[], now());
        assert!(
            text.contains("Monitors:\n  HOST   MONITOR   KIND   SEVERITY   OK   SINCE   MESSAGE\n  a      http      http   critical   no   60s     GET http://127.0.0.1:8080/: 500, want 200\n  a      flag      file   warning    ?    -       not run yet\n"),
            "{text}"
        );
        assert_eq!(text.matches("want 200").count(), 1, "said once: {text}");
    }
}
