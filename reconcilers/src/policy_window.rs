//! Policy windows with Argo CD sync-window semantics: a window opens at each cron
//! occurrence (in its time zone) for `duration`. Among the windows that select an object:
//! an open deny blocks; otherwise, if there are allow windows, one must be open; with no
//! matching window, apply is allowed. Plans and drift are computed regardless: only apply
//! waits, until the returned `until` time.
//!
//! Every function takes `now`, so tests drive time without sleeping. The PolicyWindow
//! reconciler publishes whether a window is open and requeues at its next transition.

use std::collections::BTreeMap;
use std::str::FromStr;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hostkit_api::kinds::{NamedSelector, Object, PolicyWindowSpec, WindowKind};

use crate::metrics::WindowLabels;
use crate::{Action, ObjectKey, Reconciler, Reconcilers, dependents, until};
use crate::{Error, Result};

/// Whether a window is open at `now`, and when that changes.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowState {
    pub open: bool,
    /// When the window closes (if open) or next opens (if closed).
    pub next_transition: Option<DateTime<Utc>>,
}

fn parse(name: &str, spec: &PolicyWindowSpec) -> Result<(croner::Cron, chrono_tz::Tz)> {
    let invalid = |field: &str, message: String| Error::Invalid {
        object: format!("PolicyWindow/{name}"),
        field: field.into(),
        message,
    };
    let cron = croner::Cron::from_str(&spec.schedule)
        .map_err(|e| invalid("spec.schedule", format!("{e}")))?;
    let tz = spec.time_zone.as_deref().unwrap_or("UTC");
    let tz = chrono_tz::Tz::from_str(tz)
        .map_err(|_| invalid("spec.timeZone", format!("{tz:?} is not an IANA time zone")))?;
    Ok((cron, tz))
}

/// The state of one window at `now`.
pub fn state(name: &str, spec: &PolicyWindowSpec, now: DateTime<Utc>) -> Result<WindowState> {
    let (cron, tz) = parse(name, spec)?;
    let too_long = || Error::Invalid {
        object: format!("PolicyWindow/{name}"),
        field: "spec.duration".into(),
        message: format!("{} is too long for a window", spec.duration),
    };
    let duration = chrono::Duration::from_std(spec.duration.as_std()).map_err(|_| too_long())?;
    let local = now.with_timezone(&tz);
    // The latest opening at or before now: if it is still running, the window is open.
    if let Ok(prev) = cron.find_previous_occurrence(&local, true) {
        let mut end = prev
            .with_timezone(&Utc)
            .checked_add_signed(duration)
            .ok_or_else(too_long)?;
        if now < end {
            // Back-to-back openings extend the window.
            let mut guard = 0;
            while let Ok(next) = cron.find_next_occurrence(&end.with_timezone(&tz), true) {
                let next = next.with_timezone(&Utc);
                if next > end || guard > 1000 {
                    break;
                }
                end = next.checked_add_signed(duration).ok_or_else(too_long)?;
                guard += 1;
            }
            return Ok(WindowState {
                open: true,
                next_transition: Some(end),
            });
        }
    }
    let next = cron
        .find_next_occurrence(&local, false)
        .ok()
        .map(|t| t.with_timezone(&Utc));
    Ok(WindowState {
        open: false,
        next_transition: next,
    })
}

fn selects(sel: &Option<NamedSelector>, name: &str, labels: &BTreeMap<String, String>) -> bool {
    match sel {
        None => true,
        Some(s) => {
            let by_name = s.names.iter().any(|n| n == name);
            let has_labels = !s.match_labels.is_empty() || !s.match_expressions.is_empty();
            by_name
                || (has_labels && s.labels().matches(labels))
                || (s.names.is_empty() && !has_labels)
        }
    }
}

/// Whether apply is allowed now for one service on one host.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// `NoWindow`, `AllowWindowOpen`, `DenyWindowOpen`, `NoAllowWindowOpen`.
    pub reason: &'static str,
    pub message: String,
    /// When to look again (the earliest moment the decision can change).
    pub until: Option<DateTime<Utc>>,
    /// Whether a matching window allows an explicit override (`manualOverride`).
    pub manual_override: bool,
}

/// Decides for `service` (with its labels) on `host` (with its labels).
pub fn decide(
    windows: &[(String, PolicyWindowSpec)],
    service: (&str, &BTreeMap<String, String>),
    host: (&str, &BTreeMap<String, String>),
    now: DateTime<Utc>,
) -> Result<Decision> {
    let mut denies = Vec::new();
    let mut allows = Vec::new();
    for (name, spec) in windows {
        if !selects(&spec.selector.services, service.0, service.1)
            || !selects(&spec.selector.hosts, host.0, host.1)
        {
            continue;
        }
        let st = state(name, spec, now)?;
        match spec.kind {
            WindowKind::Deny => denies.push((name, spec, st)),
            WindowKind::Allow => allows.push((name, spec, st)),
        }
    }
    let open_denies: Vec<_> = denies.iter().filter(|(_, _, s)| s.open).collect();
    if !open_denies.is_empty() {
        let until = open_denies
            .iter()
            .filter_map(|(_, _, s)| s.next_transition)
            .max();
        let names: Vec<&str> = open_denies.iter().map(|(n, _, _)| n.as_str()).collect();
        return Ok(Decision {
            allowed: false,
            reason: "DenyWindowOpen",
            message: format!("deny window {} is open", names.join(", ")),
            until,
            manual_override: open_denies.iter().all(|(_, s, _)| s.manual_override),
        });
    }
    if allows.is_empty() {
        let until = denies
            .iter()
            .filter_map(|(_, _, s)| s.next_transition)
            .min();
        return Ok(Decision {
            allowed: true,
            reason: "NoWindow",
            message: "no allow window restricts this service; no deny window is open".into(),
            until,
            manual_override: true,
        });
    }
    if let Some((name, _, st)) = allows.iter().find(|(_, _, s)| s.open) {
        let next_deny = denies
            .iter()
            .filter_map(|(_, _, s)| s.next_transition)
            .min();
        let until = match (st.next_transition, next_deny) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        return Ok(Decision {
            allowed: true,
            reason: "AllowWindowOpen",
            message: format!("allow window {name} is open"),
            until,
            manual_override: true,
        });
    }
    let until = allows
        .iter()
        .filter_map(|(_, _, s)| s.next_transition)
        .min();
    Ok(Decision {
        allowed: false,
        reason: "NoAllowWindowOpen",
        message: format!(
            "no allow window is open (next opens {})",
            until
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "never".into())
        ),
        until,
        manual_override: allows.iter().all(|(_, s, _)| s.manual_override),
    })
}

#[async_trait::async_trait]
impl Reconciler<PolicyWindowSpec> for Reconcilers {
    async fn reconcile(&self, o: Arc<Object<PolicyWindowSpec>>) -> Result<Action> {
        let now = self.ctx.now();
        let st = state(o.name(), &o.spec, now).map_err(|e| Error::Stalled(e.to_string()))?;
        self.metrics
            .window_open
            .get_or_create(&WindowLabels {
                window: o.name().to_string(),
            })
            .set(st.open as i64);
        let mut status = o.status.clone().unwrap_or_default();
        if status.open != Some(st.open) || status.next_transition != st.next_transition {
            status.open = Some(st.open);
            status.next_transition = st.next_transition;
            self.ctx.write_status(&o, &status).await;
        }
        Ok(match st.next_transition {
            Some(t) => Action::Requeue(until(t, now)),
            None => Action::AwaitChange,
        })
    }

    fn forget(&self, o: &Object<PolicyWindowSpec>) {
        self.metrics.forget_window(o.name());
    }

    fn dependents(
        &self,
        _before: Option<&Object<PolicyWindowSpec>>,
        _after: Option<&Object<PolicyWindowSpec>>,
    ) -> Vec<ObjectKey> {
        dependents::of_window(self.ctx.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use hostkit_api::kinds::WindowSelector;
    use hostkit_api::values::Duration;

    fn window(kind: WindowKind, schedule: &str, duration: &str, tz: &str) -> PolicyWindowSpec {
        PolicyWindowSpec {
            kind,
            schedule: schedule.into(),
            duration: Duration::parse(duration).unwrap(),
            time_zone: Some(tz.into()),
            selector: WindowSelector::default(),
            manual_override: false,
        }
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn the_longest_window_computes_without_overflow() {
        let w = window(WindowKind::Deny, "0 0 * * *", "3650d", "UTC");
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let st = state("w", &w, now).unwrap();
        assert!(
            st.open,
            "a ten-year window opened at midnight is open at noon"
        );
        assert!(st.next_transition.unwrap() > now);
    }

    #[test]
    fn a_window_is_open_for_its_duration_in_its_time_zone() {
        // Weeknights 22:00 Berlin for 6h; 2026-11-23 is a Monday (UTC+1 in winter).
        let w = window(WindowKind::Allow, "0 22 * * 1-5", "6h", "Europe/Berlin");
        let s = state("w", &w, at(2026, 11, 23, 20, 59)).unwrap();
        assert!(!s.open);
        assert_eq!(s.next_transition, Some(at(2026, 11, 23, 21, 0)));
        let s = state("w", &w, at(2026, 11, 23, 21, 0)).unwrap();
        assert!(s.open);
        assert_eq!(s.next_transition, Some(at(2026, 11, 24, 3, 0)));
        let s = state("w", &w, at(2026, 11, 24, 3, 0)).unwrap();
        assert!(!s.open);
    }

    #[test]
    fn deny_wins_allow_restricts_and_no_window_allows() {
        let labels = BTreeMap::new();
        let svc = ("exograph", &labels);
        let host = ("edge", &labels);
        let now = at(2026, 11, 23, 12, 0);
        let none = decide(&[], svc, host, now).unwrap();
        assert!(none.allowed && none.reason == "NoWindow");
        let allow_closed = vec![(
            "nights".to_string(),
            window(WindowKind::Allow, "0 22 * * *", "2h", "UTC"),
        )];
        let d = decide(&allow_closed, svc, host, now).unwrap();
        assert!(!d.allowed && d.reason == "NoAllowWindowOpen");
        assert_eq!(
            d.until,
            Some(at(2026, 11, 23, 22, 0)),
            "requeue at the next opening"
        );
        let mut both = vec![(
            "day".to_string(),
            window(WindowKind::Allow, "0 8 * * *", "10h", "UTC"),
        )];
        assert!(decide(&both, svc, host, now).unwrap().allowed);
        both.push((
            "freeze".to_string(),
            window(WindowKind::Deny, "0 11 * * *", "2h", "UTC"),
        ));
        let d = decide(&both, svc, host, now).unwrap();
        assert!(!d.allowed && d.reason == "DenyWindowOpen");
        assert_eq!(d.until, Some(at(2026, 11, 23, 13, 0)));
        assert!(
            decide(&both, svc, host, at(2026, 11, 23, 13, 0))
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn selectors_pick_services_and_hosts_by_name_and_labels() {
        let mut search = BTreeMap::new();
        search.insert("tier".to_string(), "search".to_string());
        let other = BTreeMap::new();
        let mut w = window(WindowKind::Deny, "0 0 * * *", "24h", "UTC");
        w.selector.services = Some(NamedSelector {
            match_labels: search.clone(),
            ..Default::default()
        });
        let ws = vec![("freeze".to_string(), w)];
        let now = at(2026, 11, 23, 12, 0);
        assert!(
            !decide(&ws, ("a", &search), ("h", &other), now)
                .unwrap()
                .allowed
        );
        assert!(
            decide(&ws, ("b", &other), ("h", &other), now)
                .unwrap()
                .allowed
        );
        let mut w = ws[0].1.clone();
        w.selector.services = Some(NamedSelector {
            names: vec!["b".into()],
            ..Default::default()
        });
        let ws = vec![("freeze".to_string(), w)];
        assert!(
            !decide(&ws, ("b", &other), ("h", &other), now)
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn bad_schedules_and_zones_name_the_window_and_field() {
        let w = window(WindowKind::Allow, "0 22 * * *", "1h", "Mars/Olympus");
        let e = state("w", &w, Utc::now()).unwrap_err().to_string();
        assert!(e.contains("PolicyWindow/w spec.timeZone"), "{e}");
    }
}
