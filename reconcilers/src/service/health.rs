//! A Service's health: each host's monitor results folded into `status.hosts[].monitors`
//! with the Kubernetes probe thresholds, and the `Healthy` condition they add up to. Pure
//! functions of the previous status and this pass's results.

use chrono::{DateTime, Utc};
use hostkit_api::kinds::{HostPlanStatus, MonitorStatus, Severity};
use hostkit_engine::monitor::{Probe, ProbeResult};

use crate::Note;

/// Folds one host's results (matched to monitors by name) into their status; notes a
/// monitor that starts failing (past its threshold) or recovers. A monitor without a
/// result did not run: unknown, with the reason `unknown` gives (a Prometheus that did not
/// answer), its history kept.
pub(super) fn observe(
    host: &str,
    before: &[MonitorStatus],
    probes: &[Probe],
    results: &[ProbeResult],
    unknown: &[(String, String)],
    now: DateTime<Utc>,
) -> (Vec<MonitorStatus>, Vec<Note>) {
    let mut notes = Vec::new();
    let out = probes
        .iter()
        .map(|p| {
            let Some(r) = results.iter().find(|r| r.name == p.name) else {
                let why = unknown
                    .iter()
                    .find(|(n, _)| *n == p.name)
                    .map_or("not run", |(_, why)| why.as_str());
                return not_run(before, std::slice::from_ref(p), &format!("not run: {why}"))
                    .remove(0);
            };
            let mut m = previous(before, p);
            m.streak = if m.last_run.is_some() && m.last_ok == r.ok {
                m.streak.saturating_add(1)
            } else {
                1
            };
            m.last_ok = r.ok;
            m.last_run = Some(now);
            m.message = r.message.clone();
            let decided = if r.ok {
                (m.streak >= p.success_threshold).then_some(true)
            } else {
                (m.streak >= p.failure_threshold).then_some(false)
            };
            if let Some(ok) = decided
                && m.ok != Some(ok)
            {
                let was = m.ok;
                m.ok = Some(ok);
                m.since = Some(now);
                let text = format!("{host}: {}: {}", p.name, r.message);
                if !ok {
                    notes.push(Note::warning("MonitorFailing", text));
                } else if was == Some(false) {
                    notes.push(Note::normal("MonitorRecovered", text));
                }
            }
            if decided.is_none() && !r.ok {
                m.message = format!(
                    "{} ({} of {} failures)",
                    r.message, m.streak, p.failure_threshold
                );
            }
            m
        })
        .collect();
    (out, notes)
}

/// A host whose monitors did not run this pass (not read, or changed by this pass's
/// apply, which their results predate): each is unknown, saying why, keeping its history.
pub(super) fn not_run(before: &[MonitorStatus], probes: &[Probe], why: &str) -> Vec<MonitorStatus> {
    probes
        .iter()
        .map(|p| {
            let mut m = previous(before, p);
            if m.ok.is_some() {
                m.since = None;
            }
            m.ok = None;
            m.streak = 0;
            m.message = why.to_string();
            m
        })
        .collect()
}

fn previous(before: &[MonitorStatus], p: &Probe) -> MonitorStatus {
    before
        .iter()
        .find(|m| m.name == p.name && m.kind == p.kind)
        .cloned()
        .map(|mut m| {
            m.severity = p.severity;
            m
        })
        .unwrap_or_else(|| MonitorStatus {
            name: p.name.clone(),
            kind: p.kind.to_string(),
            severity: p.severity,
            message: "not run yet".into(),
            ..Default::default()
        })
}

/// `Healthy`: (Some(true|false) or None for Unknown, reason, message). Only critical
/// monitors decide; a failing warning one is named in the message.
pub(super) fn healthy(hosts: &[HostPlanStatus]) -> (Option<bool>, &'static str, String) {
    let all: Vec<(&str, &MonitorStatus)> = hosts
        .iter()
        .flat_map(|h| h.monitors.iter().map(move |m| (h.host.as_str(), m)))
        .collect();
    if all.is_empty() {
        return (
            Some(true),
            "NoMonitors",
            "the service declares no monitors".into(),
        );
    }
    let named = |ms: &[&(&str, &MonitorStatus)]| {
        ms.iter()
            .take(3)
            .map(|(h, m)| format!("{h}: {}: {}", m.name, m.message))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let critical = |m: &MonitorStatus| m.severity == Severity::Critical;
    let failing: Vec<_> = all
        .iter()
        .filter(|(_, m)| critical(m) && m.ok == Some(false))
        .collect();
    if !failing.is_empty() {
        return (Some(false), "MonitorFailing", named(&failing));
    }
    let pending: Vec<_> = all
        .iter()
        .filter(|(_, m)| critical(m) && m.ok.is_none())
        .collect();
    if !pending.is_empty() {
        return (None, "MonitorsPending", named(&pending));
    }
    let warnings: Vec<_> = all
        .iter()
        .filter(|(_, m)| !critical(m) && m.ok == Some(false))
        .collect();
    let passing = all.iter().filter(|(_, m)| m.ok == Some(true)).count();
    let mut message = format!(
        "{passing} of {} monitor result(s) pass on {} host(s)",
        all.len(),
        hosts.len()
    );
    if !warnings.is_empty() {
        message.push_str(&format!("; warning: {}", named(&warnings)));
    }
    (Some(true), "MonitorsPassing", message)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn probe(name: &str, failure: u32, success: u32) -> Probe {
        Probe {
            name: name.into(),
            kind: "http",
            severity: Severity::Critical,
            timeout: Duration::from_secs(1),
            every: Duration::from_secs(1),
            failure_threshold: failure,
            success_threshold: success,
            args: vec![],
        }
    }

    fn result(ok: bool) -> ProbeResult {
        ProbeResult {
            name: "web".into(),
            ok,
            message: if ok {
                "GET /: 200"
            } else {
                "GET /: 500, want 200"
            }
            .into(),
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn thresholds_decide_like_kubernetes_probes_and_transitions_are_noted() {
        let p = [probe("web", 3, 2)];
        let now = Utc::now();
        let mut status = Vec::new();
        let mut seen = Vec::new();
        for ok in [false, false, false, true, true, false] {
            let (s, notes) = observe("h1", &status, &p, &[result(ok)], &[], now);
            status = s;
            seen.push((
                status[0].ok,
                notes.iter().map(|n| n.reason).collect::<Vec<_>>(),
            ));
        }
        assert_eq!(
            seen,
            [
                (None, vec![]),
                (None, vec![]),
                (Some(false), vec!["MonitorFailing"]),
                (Some(false), vec![]),
                (Some(true), vec!["MonitorRecovered"]),
                (Some(true), vec![]),
            ]
        );
        assert_eq!(status[0].message, "GET /: 500, want 200 (1 of 3 failures)");
    }

    #[test]
    fn healthy_is_decided_by_critical_monitors_and_unknown_until_they_ran() {
        let host = |monitors: Vec<MonitorStatus>| HostPlanStatus {
            host: "h1".into(),
            monitors,
            ..Default::default()
        };
        let m = |ok: Option<bool>, severity: Severity| MonitorStatus {
            name: "web".into(),
            kind: "http".into(),
            severity,
            ok,
            message: "seen".into(),
            ..Default::default()
        };
        assert_eq!(healthy(&[host(vec![])]).1, "NoMonitors");
        assert_eq!(
            healthy(&[host(vec![m(Some(false), Severity::Critical)])]),
            (Some(false), "MonitorFailing", "h1: web: seen".into())
        );
        assert_eq!(healthy(&[host(vec![m(None, Severity::Critical)])]).0, None);
        let (ok, reason, message) = healthy(&[host(vec![
            m(Some(true), Severity::Critical),
            m(Some(false), Severity::Warning),
        ])]);
        assert_eq!((ok, reason), (Some(true), "MonitorsPassing"));
        assert!(message.contains("warning: h1: web: seen"), "{message}");
    }

    #[test]
    fn a_host_not_read_makes_its_monitors_unknown_saying_why() {
        let p = [probe("web", 1, 1)];
        let (s, _) = observe("h1", &[], &p, &[result(true)], &[], Utc::now());
        let s = not_run(&s, &p, "host not read: connection refused");
        assert_eq!(s[0].ok, None);
        assert_eq!(s[0].message, "host not read: connection refused");
    }
}
