//! The Instance reconciler: keeps the machine running (through its backend), its `expose`
//! port forwards open, and the Host object that reaches it in step. Deleting an ephemeral
//! Instance first undoes every Service applied on its Host, then deletes the Host, then
//! destroys the machine; a persistent one keeps its machine (and Host), with a warning.

use std::collections::BTreeMap;

use hostkit_api::kinds::{HostKey, HostKeyPolicy, InstanceSpec, Lifecycle};
use hostkit_api::meta::OwnerReference;
use hostkit_reconcilers::instance::{Backend, Forward, Machine, Request};

use super::*;
use crate::error::Error;

/// Machine backends and the port forwards of running instances.
pub struct Machines {
    pub nspawn: hostkit_reconcilers::instance::Nspawn,
    forwards: tokio::sync::Mutex<BTreeMap<String, Vec<Forward>>>,
}

impl Machines {
    pub fn new(nspawn: hostkit_reconcilers::instance::Nspawn) -> Machines {
        Machines {
            nspawn,
            forwards: Default::default(),
        }
    }

    fn backend(&self, inst: &Object<InstanceSpec>) -> Result<&dyn Backend, String> {
        match inst.spec.backend.name.as_str() {
            "nspawn" => Ok(&self.nspawn),
            other => Err(format!(
                "Instance/{} spec.backend.name: {other:?} has no backend in this controller; available: nspawn",
                inst.metadata.name
            )),
        }
    }
}

fn request(inst: &Object<InstanceSpec>) -> Request {
    Request {
        name: inst.metadata.name.clone(),
        image: inst.spec.image.clone(),
        persistent: inst.spec.lifecycle == Some(Lifecycle::Persistent),
        options: inst.spec.backend.options.clone(),
    }
}

/// The Host object an Instance owns: how the controller reaches its machine. A `port` in
/// `spec.host.ssh` that an `expose` forwards from the controller's loopback is used as is
/// (`127.0.0.1:port`); otherwise the machine's own address on port 22.
fn host_object(inst: &Object<InstanceSpec>, machine: &Machine) -> Value {
    let name = &inst.metadata.name;
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
    labels.insert(wellknown::INSTANCE.into(), name.clone());
    let mut meta = hostkit_api::ObjectMeta::named(name.clone());
    meta.labels = labels;
    meta.owner_references.push(OwnerReference {
        kind: "Instance".into(),
        name: name.clone(),
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

impl Controllers {
    pub(super) async fn reconcile_instance(&self, v: Value) -> Result<Action, Failure> {
        let kind = kind_of("instances");
        let inst: Object<InstanceSpec> = typed(&v)?;
        let name = inst.metadata.name.clone();
        let generation = inst.metadata.generation.unwrap_or(1);
        let now = (self.clock)();
        let mut status = inst.status.clone().unwrap_or_default();
        status.observed_generation = Some(generation);
        let was = status.phase.clone();
        let backend = match self.machines.backend(&inst) {
            Ok(b) => b,
            Err(why) => {
                cond(
                    &mut status.conditions,
                    "Stalled",
                    true,
                    "NoBackend",
                    why.clone(),
                    generation,
                    now,
                );
                cond(
                    &mut status.conditions,
                    "Ready",
                    false,
                    "NoBackend",
                    why.clone(),
                    generation,
                    now,
                );
                self.write_status(kind, &v, serde_json::to_value(&status).expect("status"))
                    .await;
                return Err(Failure::Terminal(why));
            }
        };
        if status.phase.is_none() {
            status.phase = Some("Pending".into());
            cond(
                &mut status.conditions,
                "Ready",
                false,
                "Creating",
                format!(
                    "starting {} from image {}",
                    inst.spec.backend.name, inst.spec.image
                ),
                generation,
                now,
            );
            self.write_status(kind, &v, serde_json::to_value(&status).expect("status"))
                .await;
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
                let terminal = matches!(e, hostkit_reconcilers::Error::Invalid { .. });
                let reason = if terminal {
                    "InvalidSpec"
                } else {
                    "StartFailed"
                };
                cond(
                    &mut status.conditions,
                    "Ready",
                    false,
                    reason,
                    e.to_string(),
                    generation,
                    now,
                );
                cond(
                    &mut status.conditions,
                    "Stalled",
                    terminal,
                    reason,
                    e.to_string(),
                    generation,
                    now,
                );
                self.write_status(kind, &v, serde_json::to_value(&status).expect("status"))
                    .await;
                self.record(
                    kind,
                    &v,
                    &[Note {
                        warning: true,
                        reason,
                        message: e.to_string(),
                    }],
                )
                .await;
                return Err(if terminal {
                    Failure::Terminal(e.to_string())
                } else {
                    Failure::Transient(e.to_string())
                });
            }
        };
        if let Err(e) = self.ensure_forwards(&inst, &machine).await {
            cond(
                &mut status.conditions,
                "Ready",
                false,
                "ExposeFailed",
                e.clone(),
                generation,
                now,
            );
            self.write_status(kind, &v, serde_json::to_value(&status).expect("status"))
                .await;
            return Err(Failure::Transient(e));
        }
        if let Err(e) = self.ensure_owned_host(&inst, &machine).await {
            cond(
                &mut status.conditions,
                "Ready",
                false,
                "HostConflict",
                e.to_string(),
                generation,
                now,
            );
            cond(
                &mut status.conditions,
                "Stalled",
                true,
                "HostConflict",
                e.to_string(),
                generation,
                now,
            );
            self.write_status(kind, &v, serde_json::to_value(&status).expect("status"))
                .await;
            return Err(Failure::Terminal(e.to_string()));
        }
        status.phase = Some("Running".into());
        status.address = Some(machine.address.clone());
        status.host_name = Some(name.clone());
        cond(
            &mut status.conditions,
            "Stalled",
            false,
            "Running",
            "the machine runs".into(),
            generation,
            now,
        );
        cond(
            &mut status.conditions,
            "Ready",
            true,
            "Running",
            format!(
                "{} answers over SSH; Host/{name} reaches it",
                machine.address
            ),
            generation,
            now,
        );
        self.write_status(kind, &v, serde_json::to_value(&status).expect("status"))
            .await;
        let backend_name = &inst.spec.backend.name;
        let note = if stopped {
            Some(Note {
                warning: true,
                reason: "Restarted",
                message: format!(
                    "the {backend_name} machine had stopped; started it again at {}",
                    machine.address
                ),
            })
        } else if was.as_deref() != Some("Running") {
            Some(Note {
                warning: false,
                reason: "Started",
                message: format!(
                    "{backend_name} machine running at {}; Host/{name} created",
                    machine.address
                ),
            })
        } else {
            None
        };
        if let Some(note) = note {
            self.record(kind, &v, &[note]).await;
        }
        Ok(Action::Requeue(jitter(Duration::from_secs(30))))
    }

    /// One forward per `expose`, replaced when its target moved.
    async fn ensure_forwards(
        &self,
        inst: &Object<InstanceSpec>,
        machine: &Machine,
    ) -> Result<(), String> {
        let mut all = self.machines.forwards.lock().await;
        let current = all.entry(inst.metadata.name.clone()).or_default();
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
                .map_err(|e| format!("Instance/{} spec.expose: {e}", inst.metadata.name))?;
            current.push(f);
        }
        Ok(())
    }

    /// Creates or updates the owned Host; refuses to take over a Host someone else owns.
    async fn ensure_owned_host(
        &self,
        inst: &Object<InstanceSpec>,
        machine: &Machine,
    ) -> Result<(), Error> {
        let name = &inst.metadata.name;
        let hosts = kind_of("hosts");
        if let Ok(existing) = self.objects.get(hosts, name).await {
            let owned = existing
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|o| {
                    o.iter()
                        .any(|r| r["kind"] == "Instance" && r["name"] == name.as_str())
                });
            if !owned {
                return Err(Error::Conflict {
                    kind: "Host".into(),
                    name: name.clone(),
                    detail: format!(
                        "Host/{name} exists and is not owned by Instance/{name}; rename one of them"
                    ),
                });
            }
        }
        let body = host_object(inst, machine);
        crate::objects::as_actor(
            format!("instance/{name}"),
            self.objects.apply(hosts, name, body, false),
        )
        .await
        .map(|_| ())
    }

    pub(super) async fn cleanup_instance(&self, v: Value) -> Result<(), Failure> {
        let kind = kind_of("instances");
        let inst: Object<InstanceSpec> = typed(&v)?;
        let name = inst.metadata.name.clone();
        if inst.spec.lifecycle == Some(Lifecycle::Persistent) {
            self.machines.forwards.lock().await.remove(&name);
            self.record(kind, &v, &[Note {
                warning: true,
                reason: "Kept",
                message: format!(
                    "persistent: the machine keeps running with its root and Host/{name} stays (its expose forwards close); applying Instance/{name} again adopts it"
                ),
            }]).await;
            return Ok(());
        }
        // 1. Undo every Service applied on its Host.
        if let Some(host_v) = self.caches.get("hosts", &name) {
            let host: Object<HostSpec> = typed(&host_v)?;
            for s in self.caches.list("services") {
                let applied_here = s
                    .pointer("/status/hosts")
                    .and_then(Value::as_array)
                    .is_some_and(|hs| {
                        hs.iter().any(|h| {
                            h["host"] == name.as_str()
                                && h.get("lastAppliedGeneration").is_some_and(|g| !g.is_null())
                        })
                    });
                if applied_here {
                    self.undo_service_on(&s, &name, &host.spec).await?;
                }
            }
            // 2. Delete the Host it owns, and wait until it is gone.
            let hosts = kind_of("hosts");
            match self
                .objects
                .delete(hosts, &name, crate::objects::DeleteOptions::default())
                .await
            {
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(Failure::Transient(e.to_string())),
            }
            if self.objects.get(hosts, &name).await.is_ok() {
                return Err(Failure::Transient(format!("waiting for Host/{name} to go")));
            }
        }
        // 3. Destroy the machine.
        self.machines.forwards.lock().await.remove(&name);
        let backend = self.machines.backend(&inst).map_err(Failure::Terminal)?;
        backend
            .destroy(&name)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        self.record(
            kind,
            &v,
            &[Note {
                warning: false,
                reason: "Destroyed",
                message: "the machine and its network are gone".to_string(),
            }],
        )
        .await;
        Ok(())
    }

    /// Runs a Service's cleanup on one host only (the rest of its hosts keep it).
    async fn undo_service_on(
        &self,
        service: &Value,
        host: &str,
        host_spec: &HostSpec,
    ) -> Result<(), Failure> {
        let o = typed::<ServiceSpec>(service)?;
        let l = labels(service);
        let project = self.project(&o.spec).ok().flatten();
        let windows = self.windows();
        let mut input = self.service_input(&o, &l, project.as_ref(), &windows);
        input.targets = vec![service::Target {
            name: host.to_string(),
            spec: host_spec.clone(),
            labels: BTreeMap::new(),
        }];
        input.status.hosts.retain(|h| h.host == host);
        let known = vec![host.to_string()];
        struct Quiet;
        #[async_trait::async_trait]
        impl Sink for Quiet {
            async fn publish(&self, _: &ServiceStatus, _: &[Note]) {}
            async fn record_run(
                &self,
                _: &str,
                _: &hostkit_reconcilers::history::Run,
                _: &str,
            ) -> Option<u64> {
                None
            }
        }
        service::cleanup(input, &known, self.pool.as_ref(), &Quiet)
            .await
            .map_err(|f| Failure::Transient(f.message))?;
        self.record(
            kind_of("services"),
            service,
            &[Note {
                warning: false,
                reason: "CleanedUp",
                message: format!("{host}: removed (its Instance is being deleted)"),
            }],
        )
        .await;
        Ok(())
    }
}
