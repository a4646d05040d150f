//! The health gate between waves: which hosts a pass may change for a new generation,
//! from where the rollout stands (hosts done, their monitors, how long they have passed)
//! and what the operator asked (`hkctl rollout resume|abort`). A pure function: the
//! pass carries out its verdict.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use hostkit_api::kinds::{
    AnalysisStatus, HostPlanStatus, MonitorStatus, OnUnhealthy, Rollout, RolloutStatus, Severity,
};

/// What the gate decides for this pass.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Verdict {
    /// Change these hosts now (the next wave).
    Proceed(Vec<String>),
    /// Change nothing new yet; why, and when to look again (if sooner than the monitors).
    Wait(String, Option<DateTime<Utc>>),
    /// Held until `hkctl rollout resume`.
    Paused(String),
    /// Take back every host this rollout changed, then stop.
    Rollback(String),
    /// Every wave ran and stayed healthy.
    Complete,
}

pub(super) struct Gate<'a> {
    pub(super) spec: &'a Rollout,
    /// The Service's hosts, in rollout order.
    pub(super) hosts: &'a [String],
    /// Those that run this generation already.
    pub(super) done: &'a BTreeSet<String>,
    pub(super) statuses: &'a [HostPlanStatus],
    pub(super) previous: Option<&'a RolloutStatus>,
    pub(super) generation: i64,
    pub(super) now: DateTime<Utc>,
    pub(super) resume: Option<&'a str>,
    pub(super) abort: Option<&'a str>,
    /// What `rollout.analysis` found this pass, with how long each must hold.
    pub(super) analysis: &'a [(AnalysisStatus, chrono::Duration)],
}

impl Gate<'_> {
    /// Whether this Service's rollouts are gated at all: with no canary, no `healthyFor`,
    /// no analysis and no monitors, every wave goes in one pass as before.
    pub(super) fn applies(spec: &Rollout, has_monitors: bool) -> bool {
        spec.canary.is_some()
            || spec.healthy_for.is_some()
            || !spec.analysis.is_empty()
            || has_monitors
    }

    /// The waves, in order: the canary alone, then `maxParallel` at a time.
    pub(super) fn waves(&self) -> Vec<Vec<String>> {
        let n = self.hosts.len();
        let mut rest: &[String] = self.hosts;
        let mut out = Vec::new();
        if let Some(c) = &self.spec.canary {
            let k = c.of(n).min(rest.len());
            out.push(rest[..k].to_vec());
            rest = &rest[k..];
        }
        let size = self.spec.max_parallel.as_ref().map_or(1, |m| m.of(n));
        out.extend(rest.chunks(size).map(<[String]>::to_vec));
        out
    }

    /// The verdict and the rollout status this pass reports.
    pub(super) fn decide(&self) -> (Verdict, RolloutStatus) {
        let waves = self.waves();
        let same = self.previous.filter(|p| p.generation == self.generation);
        let mut status = RolloutStatus {
            generation: self.generation,
            waves: waves.len() as u32,
            hosts_done: self
                .hosts
                .iter()
                .filter(|h| self.done.contains(*h))
                .cloned()
                .collect(),
            resumed: self.previous.and_then(|p| p.resumed.clone()),
            aborted: self.previous.and_then(|p| p.aborted.clone()),
            analysis: self.analysis.iter().map(|(a, _)| a.clone()).collect(),
            ..Default::default()
        };
        let current = waves
            .iter()
            .position(|w| w.iter().any(|h| !self.done.contains(h)))
            .unwrap_or(waves.len());
        // The wave watched: the last one changed (waves[current - 1]); a pass that starts
        // the next one says so below.
        status.wave = current.clamp(1, waves.len().max(1)) as u32;
        let mut verdict = |phase: &str, message: String, v: Verdict| {
            status.phase = phase.into();
            status.message = message;
            v
        };
        if same.is_some_and(|p| p.phase == "RolledBack") {
            let message = same.map(|p| p.message.clone()).unwrap_or_default();
            let v = verdict("RolledBack", message, Verdict::Paused(String::new()));
            return (v, status);
        }
        // A rollout that completed stays complete: a monitor failing later is Healthy=False
        // and an alert, not a reason to take back a release every host already runs. Only
        // a host that joined since (a wave not done) is gated again.
        if same.is_some_and(|p| p.phase == "Complete") && current >= waves.len() {
            let message = same.map(|p| p.message.clone()).unwrap_or_default();
            return (verdict("Complete", message, Verdict::Complete), status);
        }
        if let Some(a) = self.abort
            && status.aborted.as_deref() != Some(a)
        {
            status.aborted = Some(a.to_string());
            let m = "aborted by hkctl rollout abort".to_string();
            let v = verdict("RolledBack", m.clone(), Verdict::Rollback(m));
            return (v, status);
        }
        let resumed_now = self
            .resume
            .is_some_and(|r| status.resumed.as_deref() != Some(r));
        if resumed_now {
            status.resumed = self.resume.map(String::from);
        }
        if let Some(p) = same.filter(|p| p.phase == "Paused")
            && !resumed_now
        {
            let v = verdict(
                "Paused",
                p.message.clone(),
                Verdict::Paused(p.message.clone()),
            );
            return (v, status);
        }
        // Monitors of the hosts changed so far: the failing ones decide at once.
        let watched: Vec<(String, &MonitorStatus)> = self
            .statuses
            .iter()
            .filter(|h| self.done.contains(&h.host))
            .flat_map(|h| {
                h.monitors
                    .iter()
                    .filter(|m| m.severity == Severity::Critical)
                    .map(|m| (h.host.clone(), m))
            })
            .collect();
        let failing = watched
            .iter()
            .find(|(_, m)| m.ok == Some(false))
            .map(|(host, m)| format!("{host}: {}: {}", m.name, m.message))
            .or_else(|| {
                self.analysis
                    .iter()
                    .find(|(a, _)| a.ok == Some(false))
                    .map(|(a, _)| format!("analysis {:?} does not hold", a.query))
            });
        if let Some(why) = failing {
            return match self.spec.on_unhealthy.unwrap_or_default() {
                OnUnhealthy::Pause => {
                    let message = format!(
                        "unhealthy in wave {}: {why}; hkctl rollout resume once it is fixed",
                        status.wave
                    );
                    let v = verdict("Paused", message.clone(), Verdict::Paused(message));
                    (v, status)
                }
                OnUnhealthy::Rollback => {
                    let message = format!("unhealthy, rolled back: {why}");
                    let v = verdict("RolledBack", message.clone(), Verdict::Rollback(message));
                    (v, status)
                }
            };
        }
        if current == 0 && !status.hosts_done.iter().any(|h| waves[0].contains(h)) {
            let m = format!("wave 1 of {}: {}", waves.len(), waves[0].join(", "));
            let v = verdict("Progressing", m, Verdict::Proceed(waves[0].clone()));
            status.wave = 1;
            return (v, status);
        }
        // The hosts changed so far must pass (all of them, once each) for `healthyFor`.
        let passing = watched.iter().all(|(_, m)| m.ok == Some(true))
            && self.analysis.iter().all(|(a, _)| a.ok == Some(true));
        let unknown: Vec<String> = watched
            .iter()
            .filter(|(_, m)| m.ok.is_none())
            .map(|(h, m)| format!("{h}: {}", m.name))
            .chain(
                self.analysis
                    .iter()
                    .filter(|(a, _)| a.ok.is_none())
                    .map(|(a, _)| format!("analysis {:?}: {}", a.query, a.message)),
            )
            .collect();
        status.healthy_since = if passing {
            same.and_then(|p| p.healthy_since)
                .filter(|_| same.is_some_and(|p| p.wave == status.wave))
                .or(Some(self.now))
        } else {
            None
        };
        let healthy_for = self
            .spec
            .healthy_for
            .as_ref()
            .map(|d| chrono::Duration::from_std(d.as_std()).unwrap_or_default())
            .unwrap_or_default();
        let watched_wave = status.wave;
        if !passing {
            let m = format!(
                "waiting for wave {watched_wave}'s monitors: {}",
                unknown.join(", ")
            );
            let v = verdict("Progressing", m.clone(), Verdict::Wait(m, None));
            return (v, status);
        }
        let since = status.healthy_since.unwrap_or(self.now);
        // Monitors for `healthyFor`, each analysis for its own `for`.
        let until = self
            .analysis
            .iter()
            .map(|(a, hold)| a.since.unwrap_or(self.now) + *hold)
            .fold(since + healthy_for, |a, b| a.max(b));
        if self.now < until {
            let m = format!(
                "wave {watched_wave} healthy since {}; next wave at {}",
                since.format("%H:%M:%S"),
                until.format("%H:%M:%S")
            );
            let v = verdict("Progressing", m.clone(), Verdict::Wait(m, Some(until)));
            return (v, status);
        }
        if current >= waves.len() {
            let m = format!(
                "every wave ran and stayed healthy ({} host(s))",
                self.hosts.len()
            );
            return (verdict("Complete", m, Verdict::Complete), status);
        }
        let m = format!(
            "wave {} of {}: {}",
            current + 1,
            waves.len(),
            waves[current].join(", ")
        );
        let v = verdict("Progressing", m, Verdict::Proceed(waves[current].clone()));
        status.wave = current as u32 + 1;
        (v, status)
    }
}
