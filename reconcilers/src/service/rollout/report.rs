//! What a pass reports: the conditions after planning, each host's revision, and the
//! conditions it ends with. Nothing here talks to a host.

use super::*;
use hostkit_api::meta::ConditionStatus;

impl Rollout<'_> {
    /// The conditions after planning, before anything is applied.
    pub(super) fn report_plans(&mut self, work: &[HostWork]) {
        let pending: u32 = work
            .iter()
            .filter_map(HostWork::plan)
            .map(pending_total)
            .sum();
        self.drifted = work
            .iter()
            .filter(|w| w.drift)
            .map(|w| w.target.name.clone())
            .collect();
        // Hosts that were not read (or whose plan could not be made): what they hold is
        // not known, and the conditions about it say Unknown rather than a guess. Each one
        // is an event too, so `describe` says what failed and how often.
        let failed: Vec<(&'static str, String)> = work
            .iter()
            .filter(|w| w.prepared.is_none())
            .map(|w| {
                let (reason, error) = w
                    .error
                    .clone()
                    .unwrap_or(("HostNotRead", "not read".into()));
                (reason, format!("{}: {error}", w.target.name))
            })
            .collect();
        for (reason, message) in &failed {
            self.notes.push(Note::warning(reason, message.clone()));
        }
        let reason = failed.first().map(|(r, _)| *r).unwrap_or("HostNotRead");
        let not_read = format!(
            "{} of {} host(s) not planned: {}",
            failed.len(),
            work.len(),
            failed
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        let unread = &failed;
        self.unread = (!unread.is_empty()).then(|| (reason, not_read.clone()));
        if unread.is_empty() {
            self.set(
                "Planned",
                true,
                "PlanReady",
                format!("{pending} change(s) pending on {} host(s)", work.len()),
            );
        } else {
            self.set("Planned", false, reason, not_read.clone());
        }
        if self.drifted.is_empty() && !unread.is_empty() {
            self.unknown("Drifted", reason, not_read.clone());
        } else {
            let (drifted, reason, message) = drift_condition(&self.drifted, false);
            self.set("Drifted", drifted, reason, message);
        }
        let work_to_do = pending > 0;
        if !work_to_do && !unread.is_empty() {
            self.unknown("Reconciling", reason, not_read);
        } else {
            self.set(
                "Reconciling",
                work_to_do,
                if work_to_do {
                    "ChangesPending"
                } else {
                    "UpToDate"
                },
                format!("{pending} change(s) pending"),
            );
        }
        if work_to_do {
            // Not Ready while changes are pending: a reader that sees this generation
            // observed must not also see the previous generation's Ready=True.
            self.set(
                "Ready",
                false,
                "ChangesPending",
                format!("{pending} change(s) pending"),
            );
        }
        self.report.hosts = work
            .iter()
            .map(|w| HostReport {
                host: w.target.name.clone(),
                reachable: w.transport.is_some(),
                drifted: w.drift,
                pending: w.plan().map(pending_total).unwrap_or(0),
                applied: None,
                run: None,
                auto_rollback: None,
                gate_rollback: None,
                monitor_durations: w
                    .prepared
                    .iter()
                    .flat_map(|p| p.monitors.iter().map(|m| (m.name.clone(), m.duration)))
                    .collect(),
                unlocked: w
                    .prepared
                    .as_ref()
                    .is_some_and(|p| unlocked(p, &p.installed, &w.target.lock)),
                timings: w.timings.clone(),
            })
            .collect();
    }

    /// Each host's revision: the newest whose desired state it matches.
    pub(super) fn name_revisions(&mut self) {
        let known: Vec<&(u64, String)> =
            self.input.revisions.iter().chain(&self.recorded).collect();
        if let Some(newest) = known.iter().map(|(n, _)| *n).max() {
            self.status.current_revision = Some(newest);
        }
        for h in &mut self.status.hosts {
            if let Some(d) = &h.applied_digest
                && let Some(n) = known
                    .iter()
                    .filter(|(_, digest)| digest == d)
                    .map(|(n, _)| *n)
                    .max()
            {
                h.revision = Some(n);
            }
        }
    }

    /// Phase 3: the conditions that say how the reconcile ended.
    pub(super) fn conclude(&mut self) {
        let outcome = Outcome {
            generation: self.generation(),
            hosts: self.report.hosts.len(),
            remaining_drift: self
                .report
                .hosts
                .iter()
                .filter(|h| h.drifted)
                .map(|h| h.host.clone())
                .collect(),
            drifted_before: !self.drifted.is_empty(),
            converged: self
                .report
                .hosts
                .iter()
                .all(|h| h.reachable && h.pending == 0),
            stopped: self.stopped.clone(),
            blocked: self.blocked.clone(),
            paused: self.paused.clone(),
            applied_ok: self.applied_ok,
            auto_rolled_back: self.report.auto_rolled_back,
            gated: self.gated.clone(),
            rolled_back: self.rolled_back.clone(),
        };
        for (type_, ok, reason, message) in outcome.conditions() {
            self.set(type_, ok, reason, message);
        }
        if let Some((reason, why)) = self.unread.clone() {
            // Not read is not "in sync", "up to date" or "waiting": it is not known.
            if outcome.remaining_drift.is_empty() {
                self.unknown("Drifted", reason, why.clone());
            }
            if self.stopped.is_none() || self.stopped_unread {
                self.unknown("Reconciling", reason, why.clone());
                self.unknown("Applied", reason, why.clone());
                self.unknown("Ready", reason, why);
            }
        }
        self.conclude_health();
        if outcome.converged {
            // The plan's count was before the apply; what is pending now is nothing.
            let hosts = self.report.hosts.len();
            self.set(
                "Planned",
                true,
                "PlanReady",
                format!("0 change(s) pending on {hosts} host(s)"),
            );
        }
        if let Some(msg) = &self.stopped {
            self.report.failure = Some(Failure {
                terminal: self.report.auto_rolled_back,
                message: msg.clone(),
            });
        }
        if let Some(msg) = &self.rolled_back {
            self.report.failure = Some(Failure {
                terminal: true,
                message: msg.clone(),
            });
        }
    }
}

impl Rollout<'_> {
    /// `Healthy` from the hosts' monitors, and `Ready` only when healthy too. Monitors run
    /// again at their shortest `every`, sooner than the resync when that is longer.
    fn conclude_health(&mut self) {
        let (ok, reason, message) = health::healthy(&self.status.hosts);
        match ok {
            Some(ok) => self.set("Healthy", ok, reason, message.clone()),
            None => self.unknown("Healthy", reason, message.clone()),
        }
        let ready = self
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True);
        match ok {
            Some(false) if ready => self.set("Ready", false, reason, message),
            None if ready => self.unknown("Ready", reason, message),
            _ => {}
        }
        if let Some(every) = self.probes.iter().map(|p| p.every).min() {
            let next = self.input.now
                + chrono::Duration::from_std(every).unwrap_or(chrono::Duration::seconds(10));
            self.report.wake_at = Some(self.report.wake_at.map_or(next, |t| t.min(next)));
        }
    }
}

pub(super) fn summarize(h: &mut HostPlanStatus, plan: &Plan, drift: bool) {
    h.pending = PendingChanges {
        create: plan.count(Action::Create) as u32,
        update: plan.count(Action::Update) as u32,
        delete: plan.count(Action::Delete) as u32,
        read_errors: plan.count(Action::ReadError) as u32,
    };
    h.plan_digest = Some(plan.fingerprint.clone());
    let changed: Vec<&plan::Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Noop)
        .collect();
    h.first_changes = changed
        .iter()
        .take(5)
        .map(|c| format!("{} {} ({})", c.action.symbol(), c.id, c.reason))
        .collect();
    h.drifted = if drift {
        changed.iter().map(|c| c.id.clone()).collect()
    } else {
        Vec::new()
    };
}

pub(super) fn pending_total(plan: &Plan) -> u32 {
    plan.changes
        .iter()
        .filter(|c| c.action != Action::Noop)
        .count() as u32
}

/// Whether `installed` holds a package of the plan's resources that `lock` does not.
pub(super) fn unlocked(
    p: &hostkit_engine::plan::Prepared,
    installed: &hostkit_engine::plan::PackageLock,
    lock: &hostkit_engine::plan::PackageLock,
) -> bool {
    let manager = p
        .facts
        .get("packageManager")
        .map(String::as_str)
        .unwrap_or("");
    hostkit_engine::packages::lock::wanted(p.resources.values(), manager)
        .keys()
        .any(|n| installed.contains_key(n) && !lock.contains_key(n))
}
