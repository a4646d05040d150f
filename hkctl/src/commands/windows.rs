//! `hkctl windows`: the policy windows (open now, next transition) and whether each
//! Service may apply now.

use hostkit_api::kinds::find_kind;
use serde_json::Value;

use super::{client, out};
use crate::Result;
use crate::client::ListOptions;
use crate::config::Overrides;
use crate::output;

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

pub async fn run(overrides: &Overrides) -> Result<u8> {
    let c = client(overrides)?;
    let now = chrono::Utc::now();
    let (windows, _) = c
        .list(
            find_kind("policywindows").expect("a kind"),
            &ListOptions::default(),
        )
        .await?;
    let mut rows = vec![
        [
            "WINDOW",
            "KIND",
            "SCHEDULE",
            "DURATION",
            "OPEN",
            "NEXT TRANSITION",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for w in &windows {
        let next = w.pointer("/status/nextTransition").and_then(Value::as_str);
        rows.push(vec![
            text(w, "/metadata/name"),
            text(w, "/spec/kind"),
            text(w, "/spec/schedule"),
            text(w, "/spec/duration"),
            match w.pointer("/status/open").and_then(Value::as_bool) {
                Some(true) => "yes".into(),
                Some(false) => "no".into(),
                None => "<unknown>".into(),
            },
            next.map(|t| format!("{t} (in {})", output::age_until(t, now)))
                .unwrap_or_else(|| "<none>".into()),
        ]);
    }
    out(&output::render_table(
        Some(&rows[0]),
        &rows[1..],
        &mut Vec::new(),
    ));
    let (services, _) = c
        .list(
            find_kind("services").expect("a kind"),
            &ListOptions::default(),
        )
        .await?;
    let mut rows = vec![
        ["SERVICE", "APPLY NOW", "REASON"]
            .map(String::from)
            .to_vec(),
    ];
    for s in &services {
        let blocked = s
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "WindowBlocked"))
            .cloned();
        let (allowed, reason) = match blocked {
            Some(c) if c["status"] == "True" => (
                "no".to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            ),
            Some(_) => ("yes".into(), "no window blocks it".into()),
            None => ("<unknown>".into(), "not reconciled yet".into()),
        };
        let paused = s.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
        rows.push(vec![
            text(s, "/metadata/name"),
            if paused { "no".into() } else { allowed },
            if paused { "spec.paused".into() } else { reason },
        ]);
    }
    out("\n");
    out(&output::render_table(
        Some(&rows[0]),
        &rows[1..],
        &mut Vec::new(),
    ));
    Ok(0)
}
