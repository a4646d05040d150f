//! HostKit's reconcilers wired to the runtime: they read objects from the runtime's
//! caches, call the host engine's per-kind logic (`hostkit_reconcilers::{service,host,
//! windows}`), write status and events through the API objects, and publish metrics.
//! One file per reconciled kind; `dependents.rs` says which changes wake which objects.

mod dependents;
mod gitsources;
mod history;
mod hosts;
mod instances;
mod policy_windows;
mod rollbacks;
mod services;

pub use instances::Machines;
pub use services::live_plan;
use services::status_hosts;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hostkit_api::kinds::EventType;
use hostkit_api::kinds::{
    Firewall, HostSpec, Object, PolicyWindowSpec, ProjectSpec, ServiceSpec, ServiceStatus,
};
use hostkit_api::meta::ObjectRef;
use hostkit_api::{KindInfo, find_kind, wellknown};
use hostkit_reconcilers::secrets::Secrets;
use hostkit_reconcilers::service::{self, Hosts, Note, Sink, Target};
use hostkit_reconcilers::ssh::{Ssh, SshOptions};
use hostkit_reconcilers::transport::Transport;
use hostkit_reconcilers::{host, windows};
use serde_json::Value;

use crate::events::Recorder;
use crate::objects::Objects;
use crate::runtime::{Action, Caches, Failure, Key, Reconcile, jitter, name_of};
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
    /// Backends of Instances, and their port forwards.
    pub machines: Arc<Machines>,
    /// The data folder (git caches live under `gitsources/`).
    pub data_dir: std::path::PathBuf,
    /// Folder sources being watched.
    folders: gitsources::FolderWatches,
    /// Enqueues an object after a delay (file notifications).
    pub wake: Wake,
}

/// Enqueues `key` to be reconciled after the delay.
pub type Wake = Arc<dyn Fn(Key, Duration) + Send + Sync>;

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

    async fn record_run(
        &self,
        host: &str,
        run: &hostkit_reconcilers::history::Run,
        digest: &str,
    ) -> Option<u64> {
        let o = &self.object;
        let name = name_of(o)?;
        let target = history::Target {
            kind: self.kind.kind,
            name,
            uid: o.pointer("/metadata/uid").and_then(Value::as_str),
            generation: o
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1),
            spec: o.get("spec").cloned().unwrap_or_default(),
            digest,
            source: history::changed_by(o),
            rolled_back_to: None,
        };
        let highest = o.pointer("/status/currentRevision").and_then(Value::as_u64);
        match self
            .c
            .record_runs(&target, &[(host.to_string(), run.clone())], highest)
            .await
        {
            Ok(n) => Some(n),
            Err(e) => {
                // The apply happened; a retry cannot bring its run back. Say so loudly.
                let message = format!("{host}: the apply was not recorded in the history: {e:?}");
                tracing::warn!(service = name, "{message}");
                let note = Note {
                    warning: true,
                    reason: "HistoryNotRecorded",
                    message,
                };
                self.c.record(self.kind, o, &[note]).await;
                None
            }
        }
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
            hold: hold_of(&o.metadata.annotations, |rb| self.rollback_running(rb)),
            recheck_hold: None,
            revisions: self
                .revisions_of("Service", &o.metadata.name)
                .iter()
                .filter_map(|r| Some((r.spec.revision, r.spec.desired_digest.clone()?)))
                .collect(),
            held: held_ids(&o.metadata),
        }
    }

    /// The hold on a Service or Host as the cache sees it now.
    fn current_hold(&self, plural: &str, name: &str) -> Option<String> {
        let v = self.caches.get(plural, name)?;
        let annotations: BTreeMap<String, String> = v
            .pointer("/metadata/annotations")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default();
        hold_of(&annotations, |rb| self.rollback_running(rb))
    }

    /// Whether the named Rollback exists and has not finished.
    fn rollback_running(&self, name: &str) -> bool {
        self.caches.get("rollbacks", name).is_some_and(|rb| {
            !rb.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True"
                    })
                })
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
            "rollbacks" => self.reconcile_rollback(object).await,
            "instances" => self.reconcile_instance(object).await,
            "gitsources" => self.reconcile_gitsource(object).await,
            _ => Ok(Action::AwaitChange),
        }
    }

    async fn cleanup(&self, kind: &'static KindInfo, object: Value) -> Result<(), Failure> {
        let name = name_of(&object).unwrap_or_default().to_string();
        match kind.plural {
            "services" => {
                self.cleanup_service(object).await?;
                // Its history goes with it (each Revision's finalizer removes its backups).
                self.prune_revisions("Service", &name, 0).await;
                if let Some(newest) = self.revisions_of("Service", &name).last() {
                    self.delete_revision(&newest.metadata.name).await;
                }
            }
            "revisions" => self.cleanup_revision(object).await?,
            "instances" => self.cleanup_instance(object).await?,
            "gitsources" => self.cleanup_gitsource(object).await?,
            "hosts" => {
                self.prune_revisions("Host", &name, 0).await;
                if let Some(newest) = self.revisions_of("Host", &name).last() {
                    self.delete_revision(&newest.metadata.name).await;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn forget(&self, kind: &'static KindInfo, object: &Value) {
        let name = name_of(object).unwrap_or_default().to_string();
        match kind.plural {
            "services" => self
                .metrics
                .forget_object("Service", &name, &status_hosts(object)),
            "gitsources" => self.forget_gitsource(&name),
            "hosts" => self.metrics.forget_host(&name),
            "policywindows" => self.metrics.forget_window(&name),
            _ => {}
        }
    }

    fn related(
        &self,
        kind: &'static KindInfo,
        before: Option<&Value>,
        after: Option<&Value>,
        caches: &Caches,
    ) -> Vec<Key> {
        dependents::dependents(kind, before, after, caches)
    }
}

/// What the reconcilers are given besides the objects: the settings of `hostkit serve`
/// and the handles they share with the runtime.
pub struct Setup {
    pub settle: Duration,
    pub clock: Clock,
    pub machines: Arc<Machines>,
    pub data_dir: std::path::PathBuf,
    pub wake: Wake,
}

impl Controllers {
    pub fn new(
        objects: Objects,
        caches: Arc<Caches>,
        metrics: ControllerMetrics,
        setup: Setup,
    ) -> Controllers {
        caches.slim("revisions", history::slim_revision);
        Controllers {
            machines: setup.machines,
            data_dir: setup.data_dir,
            folders: Default::default(),
            wake: setup.wake,
            recorder: Recorder::new(objects.clone(), "hostkit-controller"),
            objects,
            caches,
            metrics,
            pool: Arc::new(Pool::default()),
            secrets: Secrets::default(),
            settle: setup.settle,
            clock: setup.clock,
        }
    }
}

/// `Rollback/x is running` when a Service's annotations name a running Rollback.
fn hold_of(
    annotations: &BTreeMap<String, String>,
    running: impl Fn(&str) -> bool,
) -> Option<String> {
    annotations
        .get(wellknown::ROLLBACK_IN_PROGRESS)
        .filter(|rb| running(rb))
        .map(|rb| format!("Rollback/{rb} is running"))
}

/// The ids a Rollback with `only` holds back, while the spec is the one it held them at.
pub(super) fn held_ids(meta: &hostkit_api::ObjectMeta) -> Vec<String> {
    meta.annotations
        .get(wellknown::HELD)
        .and_then(|v| wellknown::parse_held(v))
        .filter(|(g, _)| Some(*g) == meta.generation)
        .map(|(_, ids)| ids)
        .unwrap_or_default()
}

/// Sets a True/False condition observed now at `generation`.
pub(super) fn cond(
    conditions: &mut Vec<hostkit_api::meta::Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: i64,
    now: chrono::DateTime<chrono::Utc>,
) {
    let c =
        hostkit_api::meta::Condition::observed(type_, ok, reason, message, now, Some(generation));
    hostkit_api::meta::set_condition(conditions, c);
}
