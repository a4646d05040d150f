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
}
