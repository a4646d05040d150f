//! HostKit's reconcilers wired to the runtime: they read objects from the runtime's
//! caches, call the host engine's per-kind logic (`hostkit_reconcilers::{service,host,
//! windows}`), write status and events through the API objects, and publish metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hostkit_api::kinds::EventType;
use hostkit_api::kinds::{
    Firewall, HostSpec, Object, PolicyWindowSpec, ProjectSpec, ServiceSpec, ServiceStatus,
};
use hostkit_api::meta::ObjectRef;
use hostkit_api::{KindInfo, find_kind};
use hostkit_reconcilers::secrets::Secrets;
use hostkit_reconcilers::service::{self, Hosts, Note, Sink, Target};
use hostkit_reconcilers::ssh::{Ssh, SshOptions};
use hostkit_reconcilers::transport::Transport;
use hostkit_reconcilers::{host, windows};
use serde_json::Value;

use crate::events::Recorder;
use crate::objects::Objects;
use crate::runtime::{
    Action, Caches, Failure, Key, Reconcile, jitter, name_of, only_status_changed,
};
use crate::server::metrics::{
    ControllerMetrics, HostLabels, IntentLabels, ObjectHostLabels, ObjectLabels, WindowLabels,
};

/// A clock the tests can move.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// SSH connections and per-host apply locks, shared by all reconciles.
#[derive(Default)]
pub struct Pool {
    connections: Mutex<HashMap<String, Arc<dyn Transport>>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    secrets: Secrets,
}

#[async_trait::async_trait]
impl Hosts for Pool {
    async fn transport(
        &self,
        name: &str,
        spec: &HostSpec,
    ) -> hostkit_reconcilers::Result<Arc<dyn Transport>> {
        if let Some(t) = self.connections.lock().expect("not poisoned").get(name) {
            return Ok(t.clone());
        }
        let opts = SshOptions::from_host(name, spec, &self.secrets)?;
        let t: Arc<dyn Transport> = Arc::new(Ssh::connect(&opts).await?);
        self.connections
            .lock()
            .expect("not poisoned")
            .insert(name.to_string(), t.clone());
        Ok(t)
    }

    fn forget(&self, name: &str) {
        self.connections.lock().expect("not poisoned").remove(name);
    }

    async fn lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self
            .locks
            .lock()
            .expect("not poisoned")
            .entry(name.to_string())
            .or_default()
            .clone();
        m.lock_owned().await
    }
}

pub struct Controllers {
    pub objects: Objects,
    pub recorder: Recorder,
    pub caches: Arc<Caches>,
    pub metrics: ControllerMetrics,
    pub pool: Arc<Pool>,
    pub secrets: Secrets,
    pub settle: Duration,
    pub clock: Clock,
}

fn kind_of(plural: &str) -> &'static KindInfo {
    find_kind(plural).expect("a HostKit kind")
}

fn typed<S: hostkit_api::kinds::KindSpec>(v: &Value) -> Result<Object<S>, Failure> {
    serde_json::from_value(v.clone())
        .map_err(|e| Failure::Terminal(format!("stored object does not decode: {e}")))
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default()
}

struct StatusSink<'a> {
    c: &'a Controllers,
    kind: &'static KindInfo,
    object: Value,
}

#[async_trait::async_trait]
impl Sink for StatusSink<'_> {
    async fn publish(&self, status: &ServiceStatus, notes: &[Note]) {
        let status = serde_json::to_value(status).expect("status serialises");
        self.c.write_status(self.kind, &self.object, status).await;
        self.c.record(self.kind, &self.object, notes).await;
    }
}

impl Controllers {
    async fn write_status(&self, kind: &'static KindInfo, object: &Value, status: Value) {
        let Some(name) = name_of(object) else { return };
        // Unchanged status: no write, no watch event, no wake-up.
        let current = self
            .caches
            .get(kind.plural, name)
            .and_then(|v| v.get("status").cloned());
        if current.as_ref() == Some(&status) {
            return;
        }
        let mut body = object.clone();
        if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        body["status"] = status;
        if let Err(e) = self.objects.update_status(kind, name, body, false).await {
            tracing::warn!(kind = kind.kind, %name, error = %e, "could not write status");
        }
    }

    async fn record(&self, kind: &'static KindInfo, object: &Value, notes: &[Note]) {
        let Some(name) = name_of(object) else { return };
        let involved = ObjectRef {
            kind: kind.kind.to_string(),
            name: name.to_string(),
            uid: None,
        };
        for n in notes {
            let t = if n.warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            if let Err(e) = self
                .recorder
                .record(&involved, t, n.reason, &n.message)
                .await
            {
                tracing::warn!(error = %e, "could not record event");
            }
        }
    }

    fn targets(&self, spec: &ServiceSpec) -> Vec<Target> {
        self.caches
            .list("hosts")
            .into_iter()
            .filter(|h| {
                h.pointer("/metadata/deletionTimestamp")
                    .is_none_or(Value::is_null)
            })
            .filter_map(|h| {
                let name = name_of(&h)?.to_string();
                let l = labels(&h);
                let selected = spec.hosts.contains(&name)
                    || spec.host_selector.as_ref().is_some_and(|s| s.matches(&l));
                if !selected {
                    return None;
                }
                let host: Object<HostSpec> = serde_json::from_value(h).ok()?;
                Some(Target {
                    name,
                    spec: host.spec,
                    labels: l,
                })
            })
            .collect()
    }

    fn windows(&self) -> Vec<(String, PolicyWindowSpec)> {
        self.caches
            .list("policywindows")
            .into_iter()
            .filter_map(|w| {
                let o: Object<PolicyWindowSpec> = serde_json::from_value(w).ok()?;
                Some((o.metadata.name.clone(), o.spec))
            })
            .collect()
    }

    fn project(&self, spec: &ServiceSpec) -> Result<Option<ProjectSpec>, Failure> {
        match &spec.project {
            None => Ok(None),
            Some(p) => match self.caches.get("projects", p) {
                Some(v) => Ok(Some(typed::<ProjectSpec>(&v)?.spec)),
                None => Err(Failure::Transient(format!(
                    "Project/{p} does not exist (yet)"
                ))),
            },
        }
    }

    fn service_input<'a>(
        &'a self,
        o: &'a Object<ServiceSpec>,
        labels: &'a BTreeMap<String, String>,
        project: Option<&'a ProjectSpec>,
        windows: &'a [(String, PolicyWindowSpec)],
    ) -> service::Input<'a> {
        service::Input {
            name: &o.metadata.name,
            labels,
            spec: &o.spec,
            generation: o.metadata.generation.unwrap_or(1),
            project,
            targets: self.targets(&o.spec),
            status: o.status.clone().unwrap_or_default(),
            windows,
            now: (self.clock)(),
            secrets: &self.secrets,
            settle: self.settle,
        }
    }

    async fn reconcile_service(&self, v: Value) -> Result<Action, Failure> {
        let kind = kind_of("services");
        let o = typed::<ServiceSpec>(&v)?;
        let l = labels(&v);
        let project = self.project(&o.spec)?;
        let windows = self.windows();
        let input = self.service_input(&o, &l, project.as_ref(), &windows);
        let now = input.now;
        let sink = StatusSink {
            c: self,
            kind,
            object: v.clone(),
        };
        let report = service::reconcile(input, self.pool.as_ref(), &sink).await;
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

    async fn reconcile_host(&self, v: Value) -> Result<Action, Failure> {
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
        };
        let outcome = host::reconcile(input, self.pool.as_ref()).await;
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

    async fn reconcile_window(&self, v: Value) -> Result<Action, Failure> {
        let kind = kind_of("policywindows");
        let o = typed::<PolicyWindowSpec>(&v)?;
        let now = (self.clock)();
        let st = windows::state(&o.metadata.name, &o.spec, now)
            .map_err(|e| Failure::Terminal(e.to_string()))?;
        self.metrics
            .window_open
            .get_or_create(&WindowLabels {
                window: o.metadata.name.clone(),
            })
            .set(st.open as i64);
        let mut status = o.status.clone().unwrap_or_default();
        if status.open != Some(st.open) || status.next_transition != st.next_transition {
            status.open = Some(st.open);
            status.next_transition = st.next_transition;
            self.write_status(
                kind,
                &v,
                serde_json::to_value(&status).expect("status serialises"),
            )
            .await;
        }
        Ok(match st.next_transition {
            Some(t) => {
                Action::Requeue((t - now).to_std().unwrap_or_default() + Duration::from_millis(50))
            }
            None => Action::AwaitChange,
        })
    }
}

#[async_trait::async_trait]
impl Reconcile for Controllers {
    async fn reconcile(&self, kind: &'static KindInfo, object: Value) -> Result<Action, Failure> {
        match kind.plural {
            "services" => self.reconcile_service(object).await,
            "hosts" => self.reconcile_host(object).await,
            "policywindows" => self.reconcile_window(object).await,
            _ => Ok(Action::AwaitChange),
        }
    }

    async fn cleanup(&self, kind: &'static KindInfo, object: Value) -> Result<(), Failure> {
        let name = name_of(&object).unwrap_or_default().to_string();
        match kind.plural {
            "services" => {
                let hosts = status_hosts(&object);
                self.cleanup_service(object).await?;
                self.metrics.forget_object("Service", &name, &hosts);
            }
            "hosts" => self.metrics.forget_host(&name),
            "policywindows" => self.metrics.forget_window(&name),
            _ => {}
        }
        Ok(())
    }

    fn related(
        &self,
        kind: &'static KindInfo,
        before: Option<&Value>,
        after: Option<&Value>,
        caches: &Caches,
    ) -> Vec<Key> {
        dependents(kind, before, after, caches)
    }
}

/// The hosts a Service's status reports on.
fn status_hosts(service: &Value) -> Vec<String> {
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
    async fn cleanup_service(&self, object: Value) -> Result<(), Failure> {
        let o = typed::<ServiceSpec>(&object)?;
        if o.status
            .as_ref()
            .is_none_or(|s| s.hosts.iter().all(|h| h.last_applied_revision.is_none()))
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

/// What a change of an object of `kind` must wake besides itself.
fn dependents(
    kind: &'static KindInfo,
    before: Option<&Value>,
    after: Option<&Value>,
    caches: &Caches,
) -> Vec<Key> {
    let name = after.or(before).and_then(name_of).unwrap_or_default();
    let services = caches.list("services");
    let service_keys = |pick: &dyn Fn(&Value) -> bool| -> Vec<Key> {
        services
            .iter()
            .filter(|s| pick(s))
            .filter_map(|s| name_of(s).map(|n| ("services", n.to_string())))
            .collect()
    };
    match kind.plural {
        "hosts" => {
            // A host's own status writes (facts, lastSeen) concern its services only
            // when reachability flips: that is when backed-off services retry.
            if let (Some(b), Some(a)) = (before, after)
                && only_status_changed(b, a)
                && reachable(b) == reachable(a)
            {
                return Vec::new();
            }
            let hosts: Vec<&Value> = before.into_iter().chain(after).collect();
            service_keys(&|s| {
                hosts.iter().any(|h| selects_host(s, h))
                    || s.pointer("/status/hosts")
                        .and_then(Value::as_array)
                        .is_some_and(|hs| hs.iter().any(|h| h["host"] == name))
            })
        }
        "projects" => {
            let in_project =
                |s: &Value| s.pointer("/spec/project").and_then(Value::as_str) == Some(name);
            let mut keys = service_keys(&in_project);
            // Project firewalls are applied by the Host reconciler.
            for s in services.iter().filter(|s| in_project(s)) {
                keys.extend(hosts_of(s, caches));
            }
            keys
        }
        "policywindows" => {
            let mut keys = service_keys(&|_| true);
            keys.extend(
                caches
                    .list("hosts")
                    .iter()
                    .filter_map(|h| name_of(h).map(|n| ("hosts", n.to_string()))),
            );
            keys
        }
        "services" => {
            // Moving a service between projects or hosts changes the hosts' firewalls.
            let placement = |v: &Value| {
                (
                    v.pointer("/spec/project").cloned(),
                    v.pointer("/spec/hosts").cloned(),
                    v.pointer("/spec/hostSelector").cloned(),
                )
            };
            if before.map(placement) == after.map(placement) {
                return Vec::new();
            }
            let mut keys: Vec<Key> = before
                .into_iter()
                .chain(after)
                .flat_map(|s| hosts_of(s, caches))
                .collect();
            keys.sort();
            keys.dedup();
            keys
        }
        _ => Vec::new(),
    }
}

/// The Reachable condition's status, if any.
fn reachable(host: &Value) -> Option<String> {
    host.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Reachable")
        .and_then(|c| c["status"].as_str().map(String::from))
}

/// Whether a Service object selects a Host object (by name or labels).
fn selects_host(service: &Value, host: &Value) -> bool {
    let Some(name) = name_of(host) else {
        return false;
    };
    let by_name = service
        .pointer("/spec/hosts")
        .and_then(Value::as_array)
        .is_some_and(|hs| hs.iter().any(|h| h == name));
    by_name
        || service
            .pointer("/spec/hostSelector")
            .and_then(|s| {
                serde_json::from_value::<hostkit_api::meta::LabelSelector>(s.clone()).ok()
            })
            .is_some_and(|sel| sel.matches(&labels(host)))
}

/// The Host objects a Service object selects now.
fn hosts_of(service: &Value, caches: &Caches) -> Vec<Key> {
    caches
        .list("hosts")
        .iter()
        .filter(|h| selects_host(service, h))
        .filter_map(|h| name_of(h).map(|n| ("hosts", n.to_string())))
        .collect()
}

impl Controllers {
    pub fn new(
        objects: Objects,
        caches: Arc<Caches>,
        metrics: ControllerMetrics,
        settle: Duration,
        clock: Clock,
    ) -> Controllers {
        Controllers {
            recorder: Recorder::new(objects.clone(), "hostkit-controller"),
            objects,
            caches,
            metrics,
            pool: Arc::new(Pool::default()),
            secrets: Secrets::default(),
            settle,
            clock,
        }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn host(name: &str, env: &str, reachable: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"env": env}},
               "status": {"conditions": [{"type": "Reachable", "status": reachable}]}})
    }

    fn caches() -> Caches {
        let c = Caches::default();
        c.put("hosts", host("a", "prod", "True"));
        c.put("hosts", host("b", "test", "True"));
        c.put(
            "services",
            json!({"metadata": {"name": "on-a"}, "spec": {"hosts": ["a"], "project": "p"}}),
        );
        c.put("services", json!({"metadata": {"name": "prod"}, "spec": {"hostSelector": {"matchLabels": {"env": "prod"}}}}));
        c.put(
            "services",
            json!({"metadata": {"name": "on-b"}, "spec": {"hosts": ["b"]}}),
        );
        c
    }

    fn names(keys: Vec<Key>) -> Vec<String> {
        let mut v: Vec<String> = keys.into_iter().map(|(k, n)| format!("{k}/{n}")).collect();
        v.sort();
        v
    }

    #[test]
    fn a_host_wakes_only_its_services_and_only_when_reachability_flips() {
        let c = caches();
        let hosts = kind_of("hosts");
        let a = host("a", "prod", "True");
        let mut seen = a.clone();
        seen["status"]["lastSeen"] = json!("2026-11-22T10:00:00Z");
        assert!(
            dependents(hosts, Some(&a), Some(&seen), &c).is_empty(),
            "lastSeen alone"
        );
        let down = host("a", "prod", "False");
        assert_eq!(
            names(dependents(hosts, Some(&a), Some(&down), &c)),
            ["services/on-a", "services/prod"]
        );
        // Relabelled out of the selector: the service that selected it still hears of it.
        let relabelled = host("a", "test", "True");
        assert_eq!(
            names(dependents(hosts, Some(&a), Some(&relabelled), &c)),
            ["services/on-a", "services/prod"]
        );
        assert_eq!(
            names(dependents(hosts, Some(&a), None, &c)),
            ["services/on-a", "services/prod"]
        );
    }

    #[test]
    fn a_project_wakes_its_services_and_their_hosts() {
        let c = caches();
        let p = json!({"metadata": {"name": "p"}, "spec": {}});
        assert_eq!(
            names(dependents(kind_of("projects"), None, Some(&p), &c)),
            ["hosts/a", "services/on-a"]
        );
    }

    #[test]
    fn a_service_wakes_hosts_only_when_it_moves() {
        let c = caches();
        let svc = kind_of("services");
        let before = json!({"metadata": {"name": "x"}, "spec": {"hosts": ["a"], "files": []}});
        let mut edited = before.clone();
        edited["spec"]["files"] = json!([{"path": "/x"}]);
        assert!(dependents(svc, Some(&before), Some(&edited), &c).is_empty());
        let mut moved = before.clone();
        moved["spec"]["hosts"] = json!(["b"]);
        assert_eq!(
            names(dependents(svc, Some(&before), Some(&moved), &c)),
            ["hosts/a", "hosts/b"]
        );
    }
}
