//! Phase 2 of a pass: applying in waves. Which hosts join a wave, each host's apply and
//! its outcome in the status and history, and with `rollout.autoRollback` the undoing of a
//! host whose apply failed. Planning is in `mod.rs`, the conditions a pass ends with in
//! `report.rs`.

use super::*;

/// A failure as conditions say it: the unit's journal tail is left to the ApplyFailed
/// event (said once there, not again in every condition).
fn without_journal(host: &str, message: &str) -> String {
    match hostkit_engine::scripts::split_journal(message) {
        (head, Some(_)) => format!("{host}: {head} (its journal is in the ApplyFailed event)"),
        (head, None) => format!("{host}: {head}"),
    }
}

impl Rollout<'_> {
    /// Phase 2: apply in waves of `rollout.maxParallel` hosts, in order; a failure ends the
    /// rollout after its wave, and the hosts after it stay untouched.
    pub(super) async fn apply_waves(&mut self, work: &mut [HostWork], hosts: &dyn Hosts) {
        self.open_gate(work, hosts).await;
        let max_parallel = self
            .input
            .spec
            .rollout
            .as_ref()
            .and_then(|r| r.max_parallel.as_ref())
            .map_or(1, |m| m.of(work.len()));
        let mut wave: Vec<usize> = Vec::new();
        for i in 0..=work.len() {
            // Run the wave when it is full, when a failure is next in line, or at the end.
            let failing_next = work.get(i).is_some_and(|w| w.error.is_some());
            if !wave.is_empty() && (wave.len() == max_parallel || failing_next || i == work.len()) {
                self.apply_wave(work, &wave, hosts).await;
                wave.clear();
            }
            let Some(w) = work.get(i) else { break };
            if self.admit(i, w) {
                wave.push(i);
            }
        }
    }

    /// Whether host `i` joins the next wave: it planned, has changes, nothing failed
    /// before it, nothing holds it, and the windows allow it now.
    fn admit(&mut self, i: usize, w: &HostWork) -> bool {
        let input = self.input;
        let name = &w.target.name;
        if let Some((_, e)) = &w.error {
            self.applied_ok = false;
            if self.stopped.is_none() {
                self.stopped = Some(format!("{name}: {e}"));
                self.stopped_unread = true;
            }
            return false;
        }
        let Some(plan) = w.plan() else {
            return false;
        };
        if plan.is_empty() {
            // Converged with nothing to apply: this generation is what the host runs.
            let (generation, digest) = (self.generation(), self.report.digest.clone());
            let commit = super::release_commit(&self.resources);
            let h = host_status(&mut self.status, name);
            h.last_applied_generation = Some(generation as u64);
            h.applied_digest = Some(digest);
            h.source_commit = commit;
            return false;
        }
        if self.stopped.is_some() {
            return false;
        }
        // The health gate holds back a new generation, never the repair of drift.
        if let Some((allowed, why)) = &self.gate
            && !w.drift
            && !allowed.contains(name)
        {
            self.gated.push(format!("{name}: {why}"));
            return false;
        }
        if let Some(why) = self
            .paused
            .clone()
            .or_else(|| input.recheck_hold.and_then(|check| check()))
        {
            self.blocked.push(format!("{name}: {why}"));
            return false;
        }
        let decision = match policy_window::decide(
            input.windows,
            (input.name, input.labels),
            (name, &w.target.labels),
            input.now,
        ) {
            Ok(d) => d,
            Err(e) => {
                self.stopped = Some(e.to_string());
                return false;
            }
        };
        if let Some(until) = decision.until {
            self.report.wake_at = Some(self.report.wake_at.map_or(until, |t| t.min(until)));
        }
        if !decision.allowed {
            self.blocked.push(format!("{name}: {}", decision.message));
            let message = format!(
                "{name}: {} change(s) wait: {}",
                self.report.hosts[i].pending, decision.message
            );
            self.notes.push(Note::normal("WindowBlocked", message));
            return false;
        }
        true
    }

    /// Applies one wave's hosts at once. An apply of a new generation is in history before
    /// its first change is sent (a pending run) and completed before any status says
    /// Ready: whoever sees Ready finds the revision, and a crash in between leaves a run
    /// the next pass settles. A repair of drift is not history: it takes no backups.
    async fn apply_wave(&mut self, work: &mut [HostWork], wave: &[usize], hosts: &dyn Hosts) {
        let input = self.input;
        let run_id = hostkit_engine::naming::run_id(
            &format!("{}-g{}", input.name, input.generation),
            input.now,
        );
        let digest = self.report.digest.clone();
        let mut go = Vec::new();
        for &k in wave {
            let w = &mut work[k];
            if let (false, Some(p)) = (w.drift, &w.prepared) {
                let run = Run::provisional(&run_id, p, input.now);
                let begun = self
                    .history
                    .begin(&w.target.name, &run, &digest, &self.resources)
                    .await;
                match begun {
                    Ok(n) => w.revision = Some(n),
                    Err(e) => {
                        let message = format!(
                            "{}: not applied: its history could not be written first: {e}",
                            w.target.name
                        );
                        self.applied_ok = false;
                        self.notes
                            .push(Note::warning("HistoryNotRecorded", message.clone()));
                        self.stopped.get_or_insert(message);
                        continue;
                    }
                }
            }
            go.push(k);
        }
        let outcomes = futures::future::join_all(go.iter().map(|&k| {
            let w = &work[k];
            let mut opts = ApplyOptions::new(run_id.clone());
            opts.settle = input.settle;
            opts.backups = !w.drift;
            async move {
                match (&w.transport, &w.prepared) {
                    (Some(t), Some(p)) => apply::apply(t.as_ref(), p, &opts).await,
                    _ => Err(hostkit_engine::Error::Transport {
                        host: w.target.name.clone(),
                        message: "not connected".into(),
                    }),
                }
            }
        }))
        .await;
        for (&k, outcome) in go.iter().zip(outcomes) {
            self.host_applied(k, &mut work[k], outcome, hosts).await;
        }
        for &k in &go {
            let Some(n) = work[k].revision else { continue };
            let host = self.report.hosts[k].host.clone();
            let Some(run) = self.report.hosts[k].run.clone() else {
                if work[k].answered {
                    // Nothing of it stays on the host (nothing ran, or autoRollback undid
                    // it): history says nothing of it, and its folder goes.
                    if let Err(e) = self.history.forget(&host, &run_id, n).await {
                        tracing::warn!(host = %host, error = %e, "could not forget a run that left nothing");
                    }
                    if let Some(t) = &work[k].transport {
                        run::discard_backups(t.as_ref(), &run_id).await;
                    }
                }
                continue;
            };
            match self.history.complete(&host, &run, n).await {
                Ok(()) => {
                    self.recorded.push((n, digest.clone()));
                    if run.ok {
                        host_status(&mut self.status, &host).revision = Some(n);
                    }
                }
                Err(e) => {
                    // The pending run stays; the next pass settles it from the journal.
                    let message = format!(
                        "{host}: the outcome of the apply was not recorded ({e}); the next reconcile settles it from the host's journal"
                    );
                    tracing::warn!(service = input.name, "{message}");
                    self.notes
                        .push(Note::warning("HistoryNotRecorded", message));
                }
            }
        }
    }

    /// Takes in one host's apply outcome.
    async fn host_applied(
        &mut self,
        k: usize,
        w: &mut HostWork,
        outcome: hostkit_engine::Result<Applied>,
        hosts: &dyn Hosts,
    ) {
        let intent = if w.drift {
            Intent::Corrective
        } else {
            Intent::Intentional
        };
        let name = w.target.name.clone();
        // An apply whose answer was cut off is as unknown as one that never answered: its
        // pending run stays, for the next pass to settle from the host's journal.
        let outcome = match outcome {
            Ok(a) if a.lost => Err(hostkit_engine::Error::Transport {
                host: name.clone(),
                message: a
                    .error
                    .unwrap_or_else(|| "the host stopped answering".into()),
            }),
            other => other,
        };
        w.answered = outcome.is_ok();
        if let Ok(a) = &outcome {
            self.report.hosts[k].timings.extend(&a.timings);
        }
        match outcome {
            Ok(applied) if applied.ok => {
                let (generation, now) = (self.generation(), self.input.now);
                let n = applied.count(Status::Applied);
                let r = &mut self.report.hosts[k];
                r.applied = Some((intent, n));
                if intent == Intent::Intentional {
                    r.run = Some(Run::from_applied(&applied, now));
                }
                r.drifted = false;
                r.pending = 0;
                if let Some(p) = &w.prepared {
                    r.unlocked |= super::report::unlocked(p, &applied.package_lock, &w.target.lock);
                }
                self.report.applied_any = true;
                let digest = self.report.digest.clone();
                let commit = super::release_commit(&self.resources);
                let h = host_status(&mut self.status, &name);
                h.last_applied_generation = Some(generation as u64);
                h.applied_digest = Some(digest);
                h.last_applied_time = Some(now);
                h.source_commit = commit;
                h.pending = PendingChanges::default();
                h.drifted.clear();
                h.first_changes.clear();

                let reason = if w.drift { "DriftRepaired" } else { "Applied" };
                let message = format!("{name}: applied {n} change(s) of generation {generation}");
                self.notes.push(Note::normal(reason, message));
                w.drift = false;
            }
            Ok(applied) => self.host_failed(k, w, intent, applied, hosts).await,
            Err(e) => {
                hosts.forget(&name);
                self.applied_ok = false;
                self.notes
                    .push(Note::warning("ApplyFailed", format!("{name}: {e}")));
                self.stopped
                    .get_or_insert_with(|| without_journal(&name, &e.to_string()));
            }
        }
    }

    /// A host whose apply failed part way: the rollout stops, and with
    /// `rollout.autoRollback` what did apply there is undone at once.
    async fn host_failed(
        &mut self,
        k: usize,
        w: &HostWork,
        intent: Intent,
        applied: Applied,
        hosts: &dyn Hosts,
    ) {
        let name = &w.target.name;
        let now = self.input.now;
        let msg = applied.error.clone().unwrap_or_default();
        let n = applied.count(Status::Applied);
        if n > 0 {
            self.report.hosts[k].applied = Some((intent, n));
        }
        self.applied_ok = false;
        self.notes
            .push(Note::warning("ApplyFailed", format!("{name}: {msg}")));
        let mut stop = without_journal(name, &msg);
        let auto_rollback = self
            .input
            .spec
            .rollout
            .as_ref()
            .is_some_and(|r| r.auto_rollback);
        match (&w.transport, auto_rollback && intent == Intent::Intentional) {
            (Some(t), true) => {
                let run = Run::from_applied(&applied, now);
                if self.auto_rollback(k, name, t.as_ref(), &run, hosts).await {
                    stop.push_str("; rolled back automatically; fix the spec");
                    self.report.auto_rolled_back = true;
                } else {
                    self.report.hosts[k].run = Some(run);
                }
            }
            _ if intent == Intent::Intentional && n > 0 => {
                // A partial apply is history too: its changes stay on the host.
                self.report.hosts[k].run = Some(Run::from_applied(&applied, now));
            }
            _ => {}
        }
        self.stopped.get_or_insert(stop);
    }

    /// Undoes a failed apply's run on its host; true when it was undone.
    async fn auto_rollback(
        &mut self,
        k: usize,
        name: &str,
        t: &dyn Transport,
        run: &Run,
        hosts: &dyn Hosts,
    ) -> bool {
        let generation = self.generation();
        match run::undo(t, &[run], &[]).await {
            Ok(undone) => {
                let message = if undone.ok {
                    format!(
                        "{name}: the failed apply of generation {generation} was rolled back ({} step(s) undone, {} skipped)",
                        undone.coverage.reversible,
                        undone.coverage.skipped.len()
                    )
                } else {
                    format!(
                        "{name}: rolling back the failed apply failed: {}",
                        undone.error.clone().unwrap_or_default()
                    )
                };
                self.notes.push(Note {
                    warning: !undone.ok,
                    reason: "AutoRollback",
                    message,
                });
                let ok = undone.ok;
                self.report.hosts[k].auto_rollback = Some(undone);
                ok
            }
            Err(e) => {
                hosts.forget(name);
                self.notes.push(Note::warning(
                    "AutoRollback",
                    format!("{name}: could not roll back: {e}"),
                ));
                false
            }
        }
    }
}
