//! The Instance reconciler: keeps the machine running (through its backend), its `expose`
//! port forwards open, and the Host object that reaches it in step. Deleting an ephemeral
//! Instance first undoes every Service applied on its Host, then deletes the Host, then
//! destroys the machine; a persistent one keeps its machine (and Host), with a warning.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hostkit_api::kinds::{
    HostKey, HostKeyPolicy, HostSpec, InstanceSpec, InstanceStatus, Lifecycle, Object, ServiceSpec,
    ServiceStatus,
};
use hostkit_api::meta::{Observed, OwnerReference};
use hostkit_api::{KindSpec, wellknown};
use hostkit_engine::instance::{Backend, Forward, Machine, Nspawn, Request};
use serde_json::Value;

use crate::service::{cleanup, rollout};
use crate::{Action, Error, Note, Reconciler, Reconcilers, Result, jitter};

/// Machine backends and the port forwards of running instances.
pub struct Machines {
    pub nspawn: Nspawn,
    forwards: tokio::sync::Mutex<BTreeMap<String, Vec<Forward>>>,
}

impl Machines {
    pub fn new(nspawn: Nspawn) -> Machines {
        Machines {
            nspawn,
            forwards: Default::default(),
        }
    }

    fn backend(&self, inst: &Object<InstanceSpec>) -> std::result::Result<&dyn Backend, String> {
        match inst.spec.backend.name.as_str() {
            "nspawn" => Ok(&self.nspawn),
            other => Err(format!(
                "Instance/{} spec.backend.name: {other:?} has no backend in this controller; available: nspawn",
                inst.name()
            )),
        }
    }
}

fn request(inst: &Object<InstanceSpec>) -> Request {
    Request {
        name: inst.name().to_string(),
        image: inst.spec.image.clone(),
        persistent: inst.spec.lifecycle == Some(Lifecycle::Persistent),
        options: inst.spec.backend.options.clone(),
    }
}

/// The Host object an Instance owns: how the controller reaches its machine. A `port` in
/// `spec.host.ssh` that an `expose` forwards from the controller's loopback is used as is
/// (`127.0.0.1:port`); otherwise the machine's own address on port 22.
fn host_object(inst: &Object<InstanceSpec>, machine: &Machine) -> Value {
    let name = inst.name();
    let mut ssh = inst.spec.host.ssh.clone();
    let forwarded = ssh.port.is_some_and(|p| {
        inst.spec
            .expose
            .iter()
            .any(|e| e.host == p && e.guest == machine.ssh_port)
    });
    let address = if forwarded {
        "127.0.0.1".to_string()
    } else {
        ssh.port = None;
        machine.address.clone()
    };
    ssh.user.get_or_insert_with(|| "root".into());
    ssh.identity_file
        .get_or_insert_with(|| machine.identity_file.display().to_string());
    if ssh.host_key.is_none() {
        ssh.host_key = Some(match &machine.host_key {
            Some(k) => HostKey {
                policy: HostKeyPolicy::Pinned,
                key: Some(k.clone()),
                known_hosts: None,
            },
            None => HostKey {
                policy: HostKeyPolicy::AcceptNew,
                key: None,
                known_hosts: None,
            },
        });
    }
    let mut labels = inst.spec.host.labels.clone();
    labels.insert(wellknown::INSTANCE.into(), name.to_string());
    let mut meta = hostkit_api::ObjectMeta::named(name);
    meta.labels = labels;
    meta.owner_references.push(OwnerReference {
        kind: "Instance".into(),
        name: name.to_string(),
        uid: inst.metadata.uid.clone(),
        controller: true,
    });
    let spec = HostSpec {
        address,
        ssh,
        sudo: inst.spec.host.sudo,
        interval: Some(hostkit_api::values::Duration::from_secs(30)),
        ..Default::default()
    };
    serde_json::to_value(Object {
        api_version: hostkit_api::API_VERSION.into(),
        kind: "Host".into(),
        metadata: meta,
        spec,
        status: None,
    })
    .expect("hosts serialise")
}

/// Sets Ready (and, when given, Stalled) to say why the machine is not running.
fn not_ready(
    status: &mut InstanceStatus,
    at: Observed,
    reason: &str,
    message: &str,
    stalled: Option<bool>,
) {
    at.set(&mut status.conditions, "Ready", false, reason, message);
    if let Some(stalled) = stalled {
        at.set(&mut status.conditions, "Stalled", stalled, reason, message);
    }
}

#[async_trait::async_trait]
impl Reconciler<InstanceSpec> for Reconcilers {
    async fn reconcile(&self, inst: Arc<Object<InstanceSpec>>) -> Result<Action> {
        let ctx = self.ctx.as_ref();
        let name = inst.name().to_string();
        let generation = inst.metadata.generation.unwrap_or(1);
        let at = Observed::new(ctx.now(), Some(generation));
        let mut status = inst.status.clone().unwrap_or_default();
        status.observed_generation = Some(generation);
        let was = status.phase.clone();
        let backend = match self.machines.backend(&inst) {
            Ok(b) => b,
            Err(why) => {
                // Stalled first, then Ready: the order the conditions are listed in.
                at.set(
                    &mut status.conditions,
                    "Stalled",
                    true,
                    "NoBackend",
                    why.clone(),
                );
                at.set(
                    &mut status.conditions,
                    "Ready",
                    false,
                    "NoBackend",
                    why.clone(),
                );
                return Err(ctx.stop(&inst, &status, None, Error::Stalled(why)).await);
            }
        };
        if status.phase.is_none() {
            status.phase = Some("Pending".into());
            let message = format!(
                "starting {} from image {}",
                inst.spec.backend.name, inst.spec.image
            );
            at.set(&mut status.conditions, "Ready", false, "Creating", message);
            ctx.write_status(&inst, &status).await;
        }
        // A machine that ran and stopped (a crash, a reboot of this machine) is started
        // again by `ensure`; say so, since its processes and any volatile state are gone.
        let stopped = was.as_deref() == Some("Running")
            && backend
                .read(&name)
                .await
                .ok()
                .flatten()
                .is_some_and(|m| !m.running);
        let machine = match backend.ensure(&request(&inst)).await {
            Ok(m) => m,
            Err(e) => {
                let terminal = matches!(e, hostkit_engine::Error::Invalid { .. });
                let reason = if terminal {
                    "InvalidSpec"
                } else {
                    "StartFailed"
                };
                let message = e.to_string();
                not_ready(&mut status, at, reason, &message, Some(terminal));
                let error = if terminal {
                    Error::Stalled(message.clone())
                } else {
                    Error::Engine(e)
                };
                let note = Note::warning(reason, message);
                return Err(ctx.stop(&inst, &status, Some(note), error).await);
            }
        };
        if let Err(e) = self.ensure_forwards(&inst, &machine).await {
            not_ready(&mut status, at, "ExposeFailed", &e, None);
            return Err(ctx.stop(&inst, &status, None, Error::Retry(e)).await);
        }
        if let Err(e) = self.ensure_owned_host(&inst, &machine).await {
            let message = e.to_string();
            not_ready(&mut status, at, "HostConflict", &message, Some(true));
            return Err(ctx
                .stop(&inst, &status, None, Error::Stalled(message))
                .await);
        }
        status.phase = Some("Running".into());
        status.address = Some(machine.address.clone());
        status.host_name = Some(name.clone());
        at.set(
            &mut status.conditions,
            "Stalled",
            false,
            "Running",
            "the machine runs",
        );
        let message = format!(
            "{} answers over SSH; Host/{name} reaches it",
            machine.address
        );
        at.set(&mut status.conditions, "Ready", true, "Running", message);
        ctx.write_status(&inst, &status).await;
        let backend_name = &inst.spec.backend.name;
        let note = if stopped {
            Some(Note::warning(
                "Restarted",
                format!(
                    "the {backend_name} machine had stopped; started it again at {}",
                    machine.address
                ),
            ))
        } else if was.as_deref() != Some("Running") {
            Some(Note::normal(
                "Started",
                format!(
                    "{backend_name} machine running at {}; Host/{name} created",
                    machine.address
                ),
            ))
        } else {
            None
        };
        if let Some(note) = note {
            ctx.note(InstanceSpec::INFO, &name, &[note]).await;
        }
        Ok(Action::Requeue(jitter(Duration::from_secs(30))))
    }

    async fn cleanup(&self, inst: Arc<Object<InstanceSpec>>) -> Result<()> {
        let ctx = self.ctx.as_ref();
        let name = inst.name().to_string();
        if inst.spec.lifecycle == Some(Lifecycle::Persistent) {
            self.machines.forwards.lock().await.remove(&name);
            let note = Note::warning(
                "Kept",
                format!(
                    "persistent: the machine keeps running with its root and Host/{name} stays (its expose forwards close); applying Instance/{name} again adopts it"
                ),
            );
            ctx.note(InstanceSpec::INFO, &name, &[note]).await;
            return Ok(());
        }
        // 1. Undo every Service applied on its Host.
        if let Some(host) = ctx.cached::<HostSpec>(&name) {
            for s in ctx.list::<ServiceSpec>() {
                let applied_here = s.status.as_ref().is_some_and(|st| {
                    st.hosts
                        .iter()
                        .any(|h| h.host == name && h.last_applied_generation.is_some())
                });
                if applied_here {
                    self.undo_service_on(&s, &name, &host.spec).await?;
                }
            }
            // 2. Delete the Host it owns, and wait until it is gone.
            match ctx.delete(HostSpec::INFO, &name).await {
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            if ctx.get(HostSpec::INFO, &name).await.is_ok() {
                return Err(Error::Retry(format!("waiting for Host/{name} to go")));
            }
        }
        // 3. Destroy the machine.
        self.machines.forwards.lock().await.remove(&name);
        let backend = self.machines.backend(&inst).map_err(Error::Stalled)?;
        backend.destroy(&name).await?;
        let note = Note::normal("Destroyed", "the machine and its network are gone");
        ctx.note(InstanceSpec::INFO, &name, &[note]).await;
        Ok(())
    }
}

impl Reconcilers {
    /// One forward per `expose`, replaced when its target moved.
    async fn ensure_forwards(
        &self,
        inst: &Object<InstanceSpec>,
        machine: &Machine,
    ) -> std::result::Result<(), String> {
        let mut all = self.machines.forwards.lock().await;
        let current = all.entry(inst.name().to_string()).or_default();
        let want: Vec<(u16, String)> = inst
            .spec
            .expose
            .iter()
            .map(|e| (e.host, format!("{}:{}", machine.address, e.guest)))
            .collect();
        current.retain(|f| want.iter().any(|(p, t)| *p == f.listen && *t == f.target));
        for (port, target) in want {
            if current.iter().any(|f| f.listen == port) {
                continue;
            }
            let f = Forward::start(port, target)
                .await
                .map_err(|e| format!("Instance/{} spec.expose: {e}", inst.name()))?;
            current.push(f);
        }
        Ok(())
    }

    /// Creates or updates the owned Host; refuses to take over a Host someone else owns.
    async fn ensure_owned_host(
        &self,
        inst: &Object<InstanceSpec>,
        machine: &Machine,
    ) -> Result<()> {
        let name = inst.name();
        if let Ok(existing) = self.ctx.fetch::<HostSpec>(name).await {
            let owned = existing
                .metadata
                .owner_references
                .iter()
                .any(|r| r.kind == "Instance" && r.name == name);
            if !owned {
                return Err(Error::Conflict {
                    kind: "Host".into(),
                    name: name.into(),
                    detail: format!(
                        "Host/{name} exists and is not owned by Instance/{name}; rename one of them"
                    ),
                });
            }
        }
        let body = host_object(inst, machine);
        let actor = format!("instance/{name}");
        self.ctx
            .apply(HostSpec::INFO, name, body, &actor)
            .await
            .map(|_| ())
    }

    /// Runs a Service's cleanup on one host only (the rest of its hosts keep it).
    async fn undo_service_on(
        &self,
        service: &Object<ServiceSpec>,
        host: &str,
        host_spec: &HostSpec,
    ) -> Result<()> {
        let project = self.project(service.spec.project.as_deref()).ok().flatten();
        let windows = self.windows();
        let mut input = self.rollout_input(service, project.as_ref().map(|p| &p.spec), &windows);
        input.targets = vec![rollout::Target {
            name: host.to_string(),
            spec: host_spec.clone(),
            labels: BTreeMap::new(),
            lock: Default::default(),
        }];
        input.status.hosts.retain(|h| h.host == host);
        let on: Vec<cleanup::Applied> = self
            .applied_hosts(service)
            .into_iter()
            .filter(|a| a.host == host)
            .map(|mut a| {
                a.spec = Some(host_spec.clone());
                a
            })
            .collect();
        /// The Service's status and events stay as they are: it is not the one going.
        struct Quiet;
        #[async_trait::async_trait]
        impl rollout::Sink for Quiet {
            async fn publish(&self, _: &ServiceStatus, _: &[Note]) {}
        }
        let history = self.history_of(service);
        cleanup::cleanup(input, &on, self.hosts.as_ref(), &Quiet, &history).await?;
        let note = Note::normal(
            "CleanedUp",
            format!("{host}: removed (its Instance is being deleted)"),
        );
        self.ctx
            .note(ServiceSpec::INFO, service.name(), &[note])
            .await;
        Ok(())
    }
}
