//! Carrying out the health gate's verdict in a pass: what it is told (hosts done, the
//! analysis answers), recording `status.rollout`, holding hosts back, and taking the changed
//! hosts back when it says so. The decision itself is `gate.rs`.

use std::collections::BTreeSet;

use super::gate::{Gate, Verdict};
use super::*;

impl Rollout<'_> {
    /// The health gate of a rollout with a canary, `healthyFor` or monitors: decides which
    /// hosts this pass may change for the new generation, records `status.rollout`, and
    /// takes the changed hosts back when it says so.
    pub(super) async fn open_gate(&mut self, work: &[HostWork], hosts: &dyn Hosts) {
        let spec = self.input.spec.rollout.clone().unwrap_or_default();
        if !Gate::applies(&spec, !self.probes.is_empty()) {
            self.status.rollout = None;
            return;
        }
        let (generation, digest) = (self.generation() as u64, self.report.digest.clone());
        let names: Vec<String> = work.iter().map(|w| w.target.name.clone()).collect();
        let done: BTreeSet<String> = work
            .iter()
            .filter(|w| {
                w.plan().is_some_and(Plan::is_empty)
                    || self.status.hosts.iter().any(|h| {
                        h.host == w.target.name
                            && super::applied_here(h, generation as i64, &digest)
                    })
            })
            .map(|w| w.target.name.clone())
            .collect();
        // Nothing to watch yet, or a rollout of this generation that ended: Prometheus is
        // not asked.
        let ended = self.input.status.rollout.as_ref().is_some_and(|r| {
            r.generation == self.generation()
                && matches!(r.phase.as_str(), "Complete" | "RolledBack")
        });
        let analysis = if done.is_empty() || (ended && done.len() == names.len()) {
            Vec::new()
        } else {
            self.analyse(&spec).await
        };
        let (verdict, status) = Gate {
            spec: &spec,
            hosts: &names,
            done: &done,
            statuses: &self.status.hosts,
            previous: self.input.status.rollout.as_ref(),
            generation: self.generation(),
            now: self.input.now,
            resume: self.input.resume.as_deref(),
            abort: self.input.abort.as_deref(),
            analysis: &analysis,
        }
        .decide();
        let message = status.message.clone();
        self.status.rollout = Some(status);
        let none = BTreeSet::new();
        match verdict {
            Verdict::Proceed(next) => self.gate = Some((next.into_iter().collect(), message)),
            Verdict::Complete => self.gate = None,
            Verdict::Wait(why, until) => {
                if let Some(until) = until {
                    self.report.wake_at = Some(self.report.wake_at.map_or(until, |t| t.min(until)));
                }
                self.gate = Some((none, why));
            }
            Verdict::Paused(why) => {
                if !why.is_empty() {
                    self.paused.get_or_insert(why.clone());
                }
                self.gate = Some((none, why));
            }
            Verdict::Rollback(why) => {
                self.gate = Some((none, why.clone()));
                self.take_back(work, &done, hosts, &why).await;
                self.rolled_back = Some(why);
            }
        }
    }

    /// Asks each `rollout.analysis` query; one that holds keeps the time it began to hold
    /// (from the last pass, for the same generation and query).
    async fn analyse(
        &self,
        spec: &hostkit_api::kinds::Rollout,
    ) -> Vec<(hostkit_api::kinds::AnalysisStatus, chrono::Duration)> {
        let now = self.input.now;
        let before = self
            .input
            .status
            .rollout
            .as_ref()
            .filter(|r| r.generation == self.generation());
        let mut out = Vec::new();
        for (i, a) in spec.analysis.iter().enumerate() {
            let p = &a.prometheus;
            let (ok, message) = match self.input.analyst.holds(p.url.as_deref(), &p.query).await {
                Ok(true) => (Some(true), "holds".to_string()),
                Ok(false) => (Some(false), "does not hold".to_string()),
                Err(why) => (None, why),
            };
            let held_since = before
                .and_then(|r| r.analysis.get(i))
                .filter(|s| s.query == p.query && s.ok == Some(true))
                .and_then(|s| s.since);
            let hold = p
                .for_
                .as_ref()
                .and_then(|d| chrono::Duration::from_std(d.as_std()).ok())
                .unwrap_or_default();
            out.push((
                hostkit_api::kinds::AnalysisStatus {
                    query: p.query.clone(),
                    ok,
                    since: (ok == Some(true)).then(|| held_since.unwrap_or(now)),
                    message,
                },
                hold,
            ));
        }
        out
    }

    /// Runs the down plans of this generation on every host it changed, newest run first.
    async fn take_back(
        &mut self,
        work: &[HostWork],
        done: &BTreeSet<String>,
        hosts: &dyn Hosts,
        why: &str,
    ) {
        let digest = self.report.digest.clone();
        for (k, w) in work.iter().enumerate() {
            let name = &w.target.name;
            if !done.contains(name) {
                continue;
            }
            let runs = match self.history.runs_of(name, &digest).await {
                Ok(runs) if runs.is_empty() => continue,
                Ok(runs) => runs,
                Err(e) => {
                    self.notes.push(Note::warning(
                        "RollbackFailed",
                        format!("{name}: its runs could not be read: {e}"),
                    ));
                    continue;
                }
            };
            let Some(t) = &w.transport else {
                self.notes.push(Note::warning(
                    "RollbackFailed",
                    format!(
                        "{name}: not reachable; it keeps generation {}",
                        self.generation()
                    ),
                ));
                continue;
            };
            let newest_first: Vec<&Run> = runs.iter().rev().collect();
            match run::undo(t.as_ref(), &newest_first, &[]).await {
                Ok(undone) => {
                    let message = if undone.ok {
                        format!(
                            "{name}: generation {} taken back ({} step(s) undone): {why}",
                            self.generation(),
                            undone.coverage.reversible
                        )
                    } else {
                        format!(
                            "{name}: taking generation {} back failed: {}",
                            self.generation(),
                            undone.error.clone().unwrap_or_default()
                        )
                    };
                    self.notes.push(Note {
                        warning: true,
                        reason: if undone.ok {
                            "RolledBack"
                        } else {
                            "RollbackFailed"
                        },
                        message,
                    });
                    if undone.ok {
                        let h = host_status(&mut self.status, name);
                        h.last_applied_generation = None;
                        h.applied_digest = None;
                        // What the monitors saw stays (Healthy=False names it), marked as
                        // seen on the version now taken back.
                        for m in h.monitors.iter_mut().filter(|m| m.ok == Some(false)) {
                            m.message.push_str(
                                " (seen before the rollback; runs again at the next pass)",
                            );
                        }
                    }
                    self.report.hosts[k].gate_rollback = Some((undone, why.to_string()));
                }
                Err(e) => {
                    hosts.forget(name);
                    self.notes.push(Note::warning(
                        "RollbackFailed",
                        format!("{name}: could not roll back: {e}"),
                    ));
                }
            }
        }
    }
}
