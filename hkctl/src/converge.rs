//! `hkctl apply --wait`: after the write, follow each Service and Host until its new
//! generation is Ready, or fails, printing one line per host step as the status shows it
//! (changes planned, generation applied) — what `kubectl rollout status` does for a
//! Deployment.

use std::collections::BTreeSet;
use std::time::Duration;

use hostkit_api::kinds::KindInfo;
use serde_json::Value;

use crate::Result;
use crate::client::Client;
use crate::commands::out;
use crate::output::kind_name;

/// Ready reasons after which waiting longer changes nothing until the spec does.
const TERMINAL: &[&str] = &["ApplyFailed", "InvalidSpec", "Paused", "NoTargetHosts"];

fn condition<'a>(v: &'a Value, type_: &str) -> Option<&'a Value> {
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// The lines the status has for each host that were not printed yet.
fn host_steps(v: &Value, generation: i64, printed: &mut BTreeSet<String>) -> Vec<String> {
    let mut lines = Vec::new();
    for h in v
        .pointer("/status/hosts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let host = h["host"].as_str().unwrap_or("");
        let pending: u64 = ["create", "update", "delete"]
            .iter()
            .filter_map(|k| h["pending"][k].as_u64())
            .sum();
        if pending > 0 {
            lines.push(format!("{host}: {pending} change(s) to apply"));
        }
        if h["lastAppliedGeneration"].as_i64() == Some(generation) {
            match h["revision"].as_u64() {
                Some(r) => lines.push(format!(
                    "{host}: generation {generation} applied (revision {r})"
                )),
                None => lines.push(format!("{host}: generation {generation} applied")),
            }
        }
    }
    lines.retain(|l| printed.insert(l.clone()));
    lines
}

/// Follows `kind`/`name` until generation `generation` is Ready (true) or cannot become
/// so, or `timeout` passes (false); prints its steps.
pub async fn follow(
    c: &Client,
    kind: &'static KindInfo,
    name: &str,
    generation: i64,
    timeout: Duration,
) -> Result<bool> {
    let shown = kind_name(kind, name);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut printed = BTreeSet::new();
    let mut waiting_said = String::new();
    loop {
        let v = c.get(kind, name).await?;
        for line in host_steps(&v, generation, &mut printed) {
            out(&format!("{shown}: {line}\n"));
        }
        if let Some(ready) = condition(&v, "Ready")
            && ready["observedGeneration"].as_i64().unwrap_or(0) >= generation
        {
            let (status, reason) = (
                ready["status"].as_str().unwrap_or(""),
                ready["reason"].as_str().unwrap_or(""),
            );
            let message = ready["message"].as_str().unwrap_or("");
            if status == "True" {
                out(&format!("{shown}: Ready: {message}\n"));
                return Ok(true);
            }
            if status == "False" && TERMINAL.contains(&reason) {
                eprintln!("error: {shown}: not Ready: {reason}: {message}");
                return Ok(false);
            }
            let now = format!("{status} {reason}: {message}");
            if now != waiting_said {
                out(&format!("{shown}: waiting: Ready={now}\n"));
                waiting_said = now;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!(
                "error: {shown}: generation {generation} not Ready within {}s",
                timeout.as_secs()
            );
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_host_step_is_printed_once() {
        let v = |applied: i64| {
            json!({"status": {"hosts": [
                {"host": "h1", "pending": {"update": 2}},
                {"host": "h2", "lastAppliedGeneration": applied, "revision": 4},
            ]}})
        };
        let mut printed = BTreeSet::new();
        assert_eq!(
            host_steps(&v(3), 3, &mut printed),
            [
                "h1: 2 change(s) to apply",
                "h2: generation 3 applied (revision 4)"
            ]
        );
        assert!(host_steps(&v(3), 3, &mut printed).is_empty(), "said once");
        assert!(
            host_steps(&v(2), 3, &mut BTreeSet::new()).len() == 1,
            "an older generation is not this one"
        );
    }
}
