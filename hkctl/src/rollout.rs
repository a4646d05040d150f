//! `hkctl history` and `hkctl rollback`: the Revisions of a Service or Host, and creating a Rollback
//! and following it to the end, as `kubectl rollout history` / `undo` do.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hostkit_api::kinds::find_kind;
use hostkit_api::wellknown;
use serde_json::{Value, json};

use crate::client::{Client, ListOptions};
use crate::output;
use crate::{Error, Result};

/// `service/NAME` (`svc/NAME`, or a bare `NAME`) or `host/NAME` → the kind and name.
pub fn target_of(target: &str) -> Result<(&'static str, &str)> {
    let (kind, name) = match target.split_once('/') {
        Some(("service" | "services" | "svc", name)) => ("Service", name),
        Some(("host" | "hosts", name)) => ("Host", name),
        Some((kind, _)) => {
            return Err(Error::Usage(format!(
                "{kind:?}: only Services and Hosts have a history (service/NAME, host/NAME)"
            )));
        }
        None => ("Service", target),
    };
    if name.is_empty() {
        return Err(Error::Usage("expected service/NAME or host/NAME".into()));
    }
    Ok((kind, name))
}

/// The Revisions of a Service or Host, oldest first.
pub async fn revisions(c: &Client, kind: &str, name: &str) -> Result<Vec<Value>> {
    let options = ListOptions {
        label_selector: Some(format!(
            "{}={kind},{}={name}",
            wellknown::TARGET_KIND,
            wellknown::TARGET_NAME
        )),
        field_selector: None,
    };
    let (mut revs, _) = c
        .list(find_kind("revisions").expect("a kind"), &options)
        .await?;
    revs.sort_by_key(|r| r.pointer("/spec/revision").and_then(Value::as_u64));
    Ok(revs)
}

/// The history table: one row per revision.
pub fn history_table(service: &Value, revs: &[Value], now: DateTime<Utc>) -> String {
    let current = service
        .pointer("/status/currentRevision")
        .and_then(Value::as_u64);
    let mut rows = Vec::new();
    for r in revs {
        let n = r
            .pointer("/spec/revision")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let hosts = r
            .pointer("/spec/hosts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let changes: usize = hosts
            .iter()
            .flat_map(|h| h["runs"].as_array().cloned().unwrap_or_default())
            .map(|run| {
                run["changes"]
                    .as_array()
                    .map(|cs| cs.iter().filter(|c| c["status"] == "applied").count())
                    .unwrap_or(0)
            })
            .sum();
        let created = r
            .pointer("/spec/createdAt")
            .and_then(Value::as_str)
            .map(|t| output::age(t, now))
            .unwrap_or_else(|| "-".into());
        let mut note = String::new();
        if let Some(to) = r.pointer("/spec/rolledBackTo").and_then(Value::as_u64) {
            note = format!("rollback to {to}");
        }
        if Some(n) == current {
            if !note.is_empty() {
                note.push_str(", ");
            }
            note.push_str("current");
        }
        let pending = hosts
            .iter()
            .flat_map(|h| h["runs"].as_array().cloned().unwrap_or_default())
            .filter(|run| run["pending"] == Value::Bool(true))
            .count();
        if pending > 0 {
            if !note.is_empty() {
                note.push_str(", ");
            }
            // Recorded ahead of the apply: running now, or cut off by a crash and not
            // settled yet.
            note.push_str(&format!("{pending} apply(s) in progress"));
        }
        rows.push(vec![
            n.to_string(),
            created,
            hosts.len().to_string(),
            changes.to_string(),
            r.pointer("/spec/source")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string(),
            note,
        ]);
    }
    let headers: Vec<String> = ["REVISION", "AGE", "HOSTS", "CHANGES", "SOURCE", "NOTE"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    output::render_table(Some(&headers), &rows, &mut Vec::new())
}

/// What `hkctl rollback` asks for.
pub struct Request<'a> {
    /// `Service` or `Host`.
    pub kind: &'a str,
    pub name: &'a str,
    pub to_revision: Option<u64>,
    pub only: &'a [String],
    pub force: bool,
    pub reason: Option<&'a str>,
}

/// Creates the Rollback object; returns its name.
pub async fn create(c: &Client, r: &Request<'_>, now: DateTime<Utc>) -> Result<String> {
    let name = format!("{}-rollback-{}", r.name, now.format("%Y%m%d-%H%M%S"));
    let mut spec = json!({
        "targetRef": {"kind": r.kind, "name": r.name},
        "toRevision": r.to_revision.map(Value::from).unwrap_or_else(|| "previous".into()),
    });
    if !r.only.is_empty() {
        spec["only"] = json!(r.only);
    }
    if r.force {
        spec["force"] = json!(true);
    }
    if let Some(reason) = r.reason {
        spec["reason"] = json!(reason);
    }
    let body = json!({
        "apiVersion": hostkit_api::API_VERSION,
        "kind": "Rollback",
        "metadata": {"name": name},
        "spec": spec,
    });
    c.create(find_kind("rollbacks").expect("a kind"), &body)
        .await?;
    Ok(name)
}

fn condition<'a>(v: &'a Value, type_: &str) -> Option<&'a Value> {
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn is_true(v: &Value, type_: &str) -> bool {
    condition(v, type_).is_some_and(|c| c["status"] == "True")
}

/// One line per host whose phase changed since `seen`.
fn progress(v: &Value, seen: &mut Vec<(String, String)>) -> String {
    let mut out = String::new();
    for h in v
        .pointer("/status/hosts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let host = h["host"].as_str().unwrap_or("").to_string();
        let phase = h["phase"].as_str().unwrap_or("").to_string();
        let key = (host.clone(), phase.clone());
        if phase == "Pending" || seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let cov = &h["coverage"];
        let skipped = cov["skipped"].as_array().cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "  {host}: {} — {} ({} reversed, {} noop, {} skipped)",
            phase,
            h["message"].as_str().unwrap_or(""),
            cov["reversible"].as_u64().unwrap_or(0),
            cov["noop"].as_u64().unwrap_or(0),
            skipped.len()
        );
        for s in skipped {
            let _ = writeln!(
                out,
                "    skipped {}: {}",
                s["id"].as_str().unwrap_or(""),
                s["reason"].as_str().unwrap_or("")
            );
        }
    }
    out
}

/// Follows the Rollback until it completes or fails, printing each host as it finishes.
/// True when it completed.
pub async fn follow(
    c: &Client,
    name: &str,
    timeout: Duration,
    mut print: impl FnMut(&str),
) -> Result<bool> {
    let kind = find_kind("rollbacks").expect("a kind");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut announced = false;
    let mut blocked_said = String::new();
    loop {
        let v = c.get(kind, name).await?;
        if !announced
            && let (Some(from), Some(to)) = (
                v.pointer("/status/fromRevision").and_then(Value::as_u64),
                v.pointer("/status/toRevision").and_then(Value::as_u64),
            )
        {
            print(&format!("rolling back from revision {from} to {to}\n"));
            announced = true;
        }
        if let Some(b) = condition(&v, "WindowBlocked").filter(|b| b["status"] == "True") {
            let msg = b["message"].as_str().unwrap_or("").to_string();
            if msg != blocked_said {
                print(&format!("  waiting: {msg} (--force runs it anyway)\n"));
                blocked_said = msg;
            }
        }
        print(&progress(&v, &mut seen));
        if is_true(&v, "Complete") {
            let msg = condition(&v, "Complete")
                .and_then(|c| c["message"].as_str())
                .unwrap_or("");
            print(&format!("rollback/{name} complete: {msg}\n"));
            return Ok(true);
        }
        if is_true(&v, "Failed") {
            let msg = condition(&v, "Failed")
                .and_then(|c| c["message"].as_str())
                .unwrap_or("");
            print(&format!("rollback/{name} failed: {msg}\n"));
            return Ok(false);
        }
        if tokio::time::Instant::now() >= deadline {
            print(&format!(
                "rollback/{name} is still running after {}s; follow it with `hkctl describe rollback {name}`\n",
                timeout.as_secs()
            ));
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_from_any_spelling_and_other_kinds_are_refused() {
        assert_eq!(target_of("service/web").unwrap(), ("Service", "web"));
        assert_eq!(target_of("svc/web").unwrap(), ("Service", "web"));
        assert_eq!(target_of("web").unwrap(), ("Service", "web"));
        assert_eq!(target_of("host/edge").unwrap(), ("Host", "edge"));
        let e = target_of("project/toys").unwrap_err().to_string();
        assert!(e.contains("only Services and Hosts have a history"), "{e}");
        assert!(target_of("service/").is_err());
    }

    #[test]
    fn history_counts_applied_changes_and_marks_the_current_and_rollback_revisions() {
        let now = Utc::now();
        let t = now.to_rfc3339();
        let revs = vec![
            json!({"spec": {"revision": 1, "createdAt": t, "source": "user/admin", "hosts": [
                {"host": "a", "runs": [{"changes": [{"status": "applied"}, {"status": "applied"}, {"status": "failed"}]}]},
                {"host": "b", "runs": [{"changes": [{"status": "applied"}]}]}]}}),
            json!({"spec": {"revision": 2, "createdAt": t, "source": "rollback/web-undo", "rolledBackTo": 1}}),
            json!({"spec": {"revision": 3, "createdAt": t, "source": "user/admin", "hosts": [
                {"host": "a", "runs": [{"pending": true, "changes": [{"status": "not_run"}]}]}]}}),
        ];
        let svc = json!({"status": {"currentRevision": 2}});
        let table = history_table(&svc, &revs, now);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("REVISION"), "{table}");
        let one: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(one[0], "1");
        assert_eq!(&one[2..5], ["2", "3", "user/admin"], "{table}");
        assert!(lines[2].ends_with("rollback to 1, current"), "{table}");
        assert!(lines[3].ends_with("1 apply(s) in progress"), "{table}");
    }

    #[test]
    fn progress_prints_each_host_once_with_its_skips() {
        let v = json!({"status": {"hosts": [
            {"host": "a", "phase": "RolledBack", "message": "revision(s) 2 undone",
             "coverage": {"reversible": 3, "noop": 1, "skipped": [{"id": "command:migrate", "reason": "irreversible"}]}},
            {"host": "b", "phase": "Pending"}]}});
        let mut seen = Vec::new();
        let first = progress(&v, &mut seen);
        assert!(
            first.contains("a: RolledBack — revision(s) 2 undone (3 reversed, 1 noop, 1 skipped)"),
            "{first}"
        );
        assert!(
            first.contains("skipped command:migrate: irreversible"),
            "{first}"
        );
        assert!(!first.contains("b:"));
        assert_eq!(progress(&v, &mut seen), "", "nothing new");
    }
}
