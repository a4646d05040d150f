//! The Host reconciler: reachability, facts, and the host's own resources.

use super::*;

impl Controllers {
    pub(super) async fn reconcile_host(&self, v: Value) -> Result<Action, Failure> {
        let kind = kind_of("hosts");
        let o = typed::<HostSpec>(&v)?;
        let name = o.metadata.name.clone();
        // Firewalls of the projects whose services run here.
        let mut project_firewalls: Vec<(String, Firewall)> = Vec::new();
        for s in self.caches.list("services") {
            let Ok(svc) = typed::<ServiceSpec>(&s) else {
                continue;
            };
            if !self.targets(&svc.spec).iter().any(|t| t.name == name) {
                continue;
            }
            if let Some(p) = &svc.spec.project
                && let Some(pv) = self.caches.get("projects", p)
                && let Ok(po) = typed::<ProjectSpec>(&pv)
                && let Some(fw) = po.spec.firewall
                && !project_firewalls.iter().any(|(n, _)| n == p)
            {
                project_firewalls.push((p.clone(), fw));
            }
        }
        let windows = self.windows();
        let host_labels = labels(&v);
        let now = (self.clock)();
        let input = host::Input {
            name: &name,
            spec: &o.spec,
            generation: o.metadata.generation.unwrap_or(1),
            status: o.status.clone().unwrap_or_default(),
            project_firewalls,
            windows: &windows,
            labels: &host_labels,
            now,
            secrets: &self.secrets,
            settle: self.settle,
            hold: hold_of(&o.metadata.annotations, |rb| self.rollback_running(rb)),
            held: super::held_ids(&o.metadata),
        };
        let mut outcome = host::reconcile(input, self.pool.as_ref()).await;
        // History first, then the status that says what the host runs.
        if let Some(run) = &outcome.run {
            let target = history::Target {
                kind: "Host",
                name: &name,
                uid: o.metadata.uid.as_deref(),
                generation: o.metadata.generation.unwrap_or(1),
                spec: v.get("spec").cloned().unwrap_or_default(),
                digest: &outcome.digest,
                source: history::changed_by(&v),
                rolled_back_to: None,
            };
            let highest = outcome.status.current_revision;
            match self
                .record_runs(&target, &[(name.clone(), run.clone())], highest)
                .await
            {
                Ok(_) => self.prune_revisions("Host", &name, 10).await,
                Err(e) => outcome.notes.push(Note {
                    warning: true,
                    reason: "HistoryNotRecorded",
                    message: format!("the apply was not recorded in the history: {e:?}"),
                }),
            }
        }
        if let Some(newest) = self.revisions_of("Host", &name).last() {
            outcome.status.current_revision = Some(newest.spec.revision);
        }
        self.metrics
            .host_up
            .get_or_create(&HostLabels { host: name.clone() })
            .set(outcome.reachable as i64);
        self.write_status(
            kind,
            &v,
            serde_json::to_value(&outcome.status).expect("status serialises"),
        )
        .await;
        self.record(kind, &v, &outcome.notes).await;
        match outcome.failure {
            Some(f) if f.terminal => Err(Failure::Terminal(f.message)),
            Some(f) => Err(Failure::Transient(f.message)),
            None => {
                let mut next = jitter(
                    o.spec
                        .interval
                        .as_ref()
                        .map(|d| d.as_std())
                        .unwrap_or(Duration::from_secs(60)),
                );
                if let Some(at) = outcome.wake_at {
                    next = next
                        .min((at - now).to_std().unwrap_or_default() + Duration::from_millis(50));
                }
                Ok(Action::Requeue(next))
            }
        }
    }
}
