//! The Service reconciler: plan, apply, report, and undo on deletion.

use super::*;

impl Controllers {
    pub(super) async fn reconcile_service(&self, v: Value) -> Result<Action, Failure> {
        let kind = kind_of("services");
        let o = typed::<ServiceSpec>(&v)?;
        let l = labels(&v);
        let project = self.project(&o.spec)?;
        let windows = self.windows();
        let recheck = || self.current_hold("services", &o.metadata.name);
        let mut input = self.service_input(&o, &l, project.as_ref(), &windows);
        input.recheck_hold = Some(&recheck);
        let now = input.now;
        let sink = StatusSink {
            c: self,
            kind,
            object: v.clone(),
        };
        let report = service::reconcile(input, self.pool.as_ref(), &sink).await;
        for h in &report.hosts {
            if let Some(undone) = h.auto_rollback.as_ref().filter(|u| u.ok) {
                let why = report
                    .failure
                    .as_ref()
                    .map(|f| f.message.clone())
                    .unwrap_or_default();
                self.record_auto_rollback(&o, &h.host, &why, &undone.coverage)
                    .await;
            }
        }
        if report.hosts.iter().any(|h| h.run.is_some()) {
            self.prune_revisions(
                "Service",
                &o.metadata.name,
                o.spec.revision_history_limit.unwrap_or(10),
            )
            .await;
        }
        let left: Vec<String> = status_hosts(&v)
            .into_iter()
            .filter(|h| !report.hosts.iter().any(|r| &r.host == h))
            .collect();
        self.metrics
            .forget_object_on("Service", &o.metadata.name, &left);
        for h in &report.hosts {
            let labels = ObjectHostLabels {
                kind: "Service".into(),
                name: o.metadata.name.clone(),
                host: h.host.clone(),
            };
            self.metrics
                .drift
                .get_or_create(&labels)
                .set(h.drifted as i64);
            self.metrics
                .pending
                .get_or_create(&labels)
                .set(h.pending as i64);
            if let Some((intent, n)) = h.applied {
                self.metrics
                    .applied
                    .get_or_create(&IntentLabels {
                        host: h.host.clone(),
                        intent: intent.as_str().into(),
                    })
                    .inc_by(n as u64);
            }
        }
        let ready = report.failure.is_none()
            && !report.hosts.is_empty()
            && report.hosts.iter().all(|h| h.reachable && h.pending == 0);
        let interval = o
            .spec
            .interval
            .as_ref()
            .map(|d| d.as_std())
            .unwrap_or(Duration::from_secs(60));
        self.metrics
            .resync_interval
            .get_or_create(&ObjectLabels {
                kind: "Service".into(),
                name: o.metadata.name.clone(),
            })
            .set(interval.as_secs_f64());
        if ready {
            self.metrics
                .last_apply_success
                .get_or_create(&ObjectLabels {
                    kind: "Service".into(),
                    name: o.metadata.name.clone(),
                })
                .set(now.timestamp() as f64);
        }
        match report.failure {
            Some(f) if f.terminal => Err(Failure::Terminal(f.message)),
            Some(f) => Err(Failure::Transient(f.message)),
            None => {
                let interval = o
                    .spec
                    .interval
                    .as_ref()
                    .map(|d| d.as_std())
                    .unwrap_or(Duration::from_secs(60));
                let mut next = jitter(interval);
                if let Some(at) = report.wake_at {
                    let until = (at - now).to_std().unwrap_or_default() + Duration::from_millis(50);
                    next = next.min(until);
                }
                Ok(Action::Requeue(next))
            }
        }
    }
}

/// The hosts a Service's status reports on.
pub(super) fn status_hosts(service: &Value) -> Vec<String> {
    service
        .pointer("/status/hosts")
        .and_then(Value::as_array)
        .map(|hs| {
            hs.iter()
                .filter_map(|h| h["host"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

impl Controllers {
    /// Undoes a deleted Service on its hosts.
    pub(super) async fn cleanup_service(&self, object: Value) -> Result<(), Failure> {
        let o = typed::<ServiceSpec>(&object)?;
        if o.status
            .as_ref()
            .is_none_or(|s| s.hosts.iter().all(|h| h.last_applied_generation.is_none()))
        {
            return Ok(()); // never applied anywhere: nothing to undo
        }
        let l = labels(&object);
        let project = self.project(&o.spec).ok().flatten();
        let windows = self.windows();
        let input = self.service_input(&o, &l, project.as_ref(), &windows);
        let known: Vec<String> = self
            .caches
            .list("hosts")
            .iter()
            .filter_map(|h| name_of(h).map(String::from))
            .collect();
        let sink = StatusSink {
            c: self,
            kind: kind_of("services"),
            object: object.clone(),
        };
        service::cleanup(input, &known, self.pool.as_ref(), &sink)
            .await
            .map_err(|f| Failure::Transient(f.message))
    }
}

/// Computes the live plan of a Service now (for `hkctl plan`): reads each selected host
/// (or just `only_host`) over a fresh SSH connection and plans; nothing is applied.
pub async fn live_plan(
    objects: &Objects,
    name: &str,
    only_host: Option<&str>,
) -> Result<Vec<hostkit_reconcilers::plan::Plan>, crate::error::Error> {
    use crate::error::Error;
    use crate::objects::Selectors;
    let svc: Object<ServiceSpec> =
        serde_json::from_value(objects.get(kind_of("services"), name).await?)
            .map_err(|e| Error::BadRequest(format!("Service/{name} does not decode: {e}")))?;
    let project = match &svc.spec.project {
        Some(p) => Some(
            serde_json::from_value::<Object<ProjectSpec>>(
                objects.get(kind_of("projects"), p).await?,
            )
            .map_err(|e| Error::BadRequest(e.to_string()))?
            .spec,
        ),
        None => None,
    };
    let resources = hostkit_reconcilers::expand::service(name, &svc.spec, project.as_ref())
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    let (hosts, _) = objects
        .list(kind_of("hosts"), &Selectors::default())
        .await?;
    let secrets = Secrets::default();
    let mut plans = Vec::new();
    for h in hosts {
        let Some(hname) = name_of(&h).map(String::from) else {
            continue;
        };
        let l = labels(&h);
        let selected = svc.spec.hosts.contains(&hname)
            || svc
                .spec
                .host_selector
                .as_ref()
                .is_some_and(|s| s.matches(&l));
        if !selected || only_host.is_some_and(|o| o != hname) {
            continue;
        }
        let host: Object<HostSpec> =
            serde_json::from_value(h).map_err(|e| Error::BadRequest(e.to_string()))?;
        let opts = SshOptions::from_host(&hname, &host.spec, &secrets)
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        let ssh = Ssh::connect(&opts)
            .await
            .map_err(|e| Error::Store(crate::store::StoreError::Unavailable(e.to_string())))?;
        let prepared = hostkit_reconcilers::plan::prepare(&ssh, &resources, &[], &secrets)
            .await
            .map_err(|e| Error::Store(crate::store::StoreError::Unavailable(e.to_string())))?;
        plans.push(prepared.plan);
    }
    if let Some(h) = only_host
        && plans.is_empty()
    {
        return Err(Error::BadRequest(format!(
            "Service/{name} does not run on host {h}"
        )));
    }
    Ok(plans)
}
