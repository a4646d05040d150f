//! Phase 1 for one host: connect, hold its apply lock, settle what a crash left there,
//! recall what it last converged to, and plan it.

use super::*;

impl Rollout<'_> {
    pub(super) async fn plan_host(
        &self,
        target: Target,
        resources: &[Resource],
        hosts: &dyn Hosts,
    ) -> HostWork {
        let input = self.input;
        let mut w = HostWork {
            notes: Vec::new(),
            revision: None,
            answered: false,
            target,
            transport: None,
            prepared: None,
            _guard: None,
            drift: false,
            error: None,
            timings: Default::default(),
        };
        let started = std::time::Instant::now();
        let connected = hosts.transport(&w.target.name, &w.target.spec).await;
        w.timings.add("connect", started.elapsed());
        let t = match connected {
            Ok(t) => t,
            Err(e) => {
                w.error = Some(("HostNotRead", e.to_string()));
                return w;
            }
        };
        let guard = hosts.lock(&w.target.name).await;
        let previous = match self.settle_and_recall(&mut w, t.as_ref()).await {
            Ok(previous) => previous,
            Err(e) => {
                hosts.forget(&w.target.name);
                w.error = Some(("HostNotRead", e));
                return w;
            }
        };
        match plan::prepare_locked(
            t.as_ref(),
            resources,
            &previous,
            &w.target.lock,
            &self.probes,
            input.secrets,
        )
        .await
        {
            Ok(mut p) => {
                w.timings.extend(&p.plan.timings);
                p.plan.changes.retain(|c| !input.held.contains(&c.id));
                let digest = &self.report.digest;
                let applied_here = self
                    .status
                    .hosts
                    .iter()
                    .find(|h| h.host == w.target.name)
                    .is_some_and(|h| applied_here(h, input.generation, digest));
                w.drift = applied_here && !p.plan.is_empty();
                w.prepared = Some(p);
                w.transport = Some(t);
                w._guard = Some(guard);
            }
            Err(e) => {
                use hostkit_engine::Error;
                let reason = match &e {
                    Error::Transport { .. } | Error::Read { .. } => {
                        hosts.forget(&w.target.name);
                        "HostNotRead"
                    }
                    Error::Secret { .. } => "SecretMissing",
                    _ => "PlanFailed",
                };
                w.error = Some((reason, e.to_string()));
            }
        }
        w
    }

    /// Before planning a host (its lock held): settles what a crash left pending there,
    /// and recalls what the host was last converged to, whose resources that the spec no
    /// longer declares are deleted (`[]` when the host already runs this spec, or history
    /// cannot say).
    async fn settle_and_recall(
        &self,
        w: &mut HostWork,
        t: &dyn Transport,
    ) -> std::result::Result<Vec<Resource>, String> {
        let host = w.target.name.clone();
        w.notes = history::settle_on(self.history, &host, t)
            .await
            .map_err(|e| format!("settling an interrupted apply: {e}"))?;
        let converged_to = self
            .status
            .hosts
            .iter()
            .find(|h| h.host == host)
            .and_then(|h| h.applied_digest.clone())
            .filter(|d| *d != self.report.digest);
        if converged_to.is_none() {
            return Ok(Vec::new());
        }
        let previous = self
            .history
            .applied(&host, converged_to.as_deref())
            .await
            .map_err(|e| format!("reading what was applied before: {e}"))?;
        Ok(previous.unwrap_or_default())
    }
}
