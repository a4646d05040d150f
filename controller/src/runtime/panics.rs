//! A reconcile that panics stays with its object: the object becomes `Stalled=True` with the
//! panic's message, a warning event says so, `hostkit_reconcile_panics` counts it, and the
//! worker goes on with the next object. A cleanup that panics releases the finalizer (with a
//! warning), so that deleting an object is never blocked by the object itself.

use chrono::Utc;
use hostkit_api::KindInfo;
use hostkit_api::kinds::EventType;
use hostkit_api::meta::{Condition, ObjectRef, set_condition};
use hostkit_reconcilers::{Action, ObjectKey};
use serde_json::Value;

use super::{Runtime, finalizer};
use crate::error::Error;
use crate::events::Recorder;

/// The text of a panic's payload.
pub fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Records a panicked reconcile (or cleanup) of `key`; the result the runtime goes on with.
pub async fn stall(
    rt: &Runtime,
    kind: &'static KindInfo,
    key: &ObjectKey,
    message: &str,
    cleaning: bool,
) -> Result<Action, Error> {
    rt.metrics
        .reconcile_panics
        .get_or_create(&super::metrics::ControllerLabels {
            controller: kind.singular.to_string(),
        })
        .inc();
    tracing::error!(kind = kind.kind, name = %key.name, panic = %message, "reconcile panicked; the object is stalled");
    let what = if cleaning { "cleanup" } else { "reconcile" };
    let text = format!("the {what} panicked: {message}");
    let uid = set_stalled(rt, kind, &key.name, &text).await;
    let recorder = Recorder::new(rt.objects.clone(), "hostkit-controller");
    let involved = ObjectRef {
        kind: kind.kind.to_string(),
        name: key.name.clone(),
        uid,
    };
    let (reason, note) = if cleaning {
        (
            "CleanupPanicked",
            format!("{text}; the finalizer is removed so the delete goes ahead: check its hosts"),
        )
    } else {
        ("ReconcilePanicked", text.clone())
    };
    if let Err(e) = recorder
        .record(&involved, EventType::Warning, reason, &note)
        .await
    {
        tracing::warn!(error = %e, "could not record event");
    }
    if cleaning {
        return finalizer::set(&rt.objects, kind, &key.name, false, None)
            .await
            .map(|()| Action::AwaitChange);
    }
    Err(Error::Reconcile {
        object: key.to_string(),
        source: hostkit_reconcilers::Error::Stalled(text),
    })
}

/// Sets `Stalled=True` on the object's status conditions (kinds without conditions keep
/// their status as it is; the event and the log still say it). Returns the uid of the
/// object it found, so that the event belongs to that object and not to one re-created
/// under its name.
async fn set_stalled(
    rt: &Runtime,
    kind: &'static KindInfo,
    name: &str,
    message: &str,
) -> Option<String> {
    let Ok(mut v) = rt.objects.get(kind, name).await else {
        return None;
    };
    let uid = v
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(String::from);
    let generation = v.pointer("/metadata/generation").and_then(Value::as_i64);
    let mut conditions: Vec<Condition> = v
        .pointer("/status/conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let stalled = Condition::observed(
        "Stalled",
        true,
        "ReconcilePanicked",
        message,
        Utc::now(),
        generation,
    );
    set_condition(&mut conditions, stalled);
    let Some(obj) = v.as_object_mut() else {
        return uid;
    };
    let status = obj
        .entry("status")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(s) = status.as_object_mut() {
        s.insert(
            "conditions".into(),
            serde_json::to_value(&conditions).expect("conditions serialise"),
        );
    }
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    if let Err(e) = rt.objects.update_status(kind, name, v, false).await {
        tracing::debug!(kind = kind.kind, %name, error = %e, "no Stalled condition for this kind");
    }
    uid
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use hostkit_api::KindSpec;
    use hostkit_api::kinds::{Object, ServiceSpec};
    use hostkit_reconcilers::Reconciler;
    use serde_json::json;

    use super::*;
    use crate::objects::{DeleteOptions, Objects, Selectors};
    use crate::runtime::metrics::RuntimeMetrics;
    use crate::runtime::{Options, Runtime};
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};

    /// Panics on `boom` (in reconcile and in cleanup); counts the others.
    #[derive(Default)]
    struct Boom {
        reconciled: Mutex<Vec<String>>,
        cleanups: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Reconciler<ServiceSpec> for Boom {
        async fn reconcile(
            &self,
            o: Arc<Object<ServiceSpec>>,
        ) -> hostkit_reconcilers::Result<Action> {
            if o.name() == "boom" {
                let empty: Vec<u32> = o.spec.hosts.iter().map(|_| 0).filter(|x| *x > 0).collect();
                let _ = empty.first().expect("a bug in a reconciler");
            }
            self.reconciled.lock().unwrap().push(o.name().to_string());
            Ok(Action::AwaitChange)
        }

        async fn cleanup(&self, o: Arc<Object<ServiceSpec>>) -> hostkit_reconcilers::Result<()> {
            self.cleanups.fetch_add(1, Ordering::SeqCst);
            if o.name() == "boom" {
                panic!("a bug in a cleanup");
            }
            Ok(())
        }
    }

    fn service(name: &str) -> Value {
        json!({"apiVersion": "hostkit.dev/v1alpha1", "kind": "Service",
               "metadata": {"name": name}, "spec": {"hosts": ["h1"]}})
    }

    async fn wait_for(what: &str, mut ok: impl AsyncFnMut() -> bool) {
        for _ in 0..200 {
            if ok().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn a_panicking_reconcile_stalls_its_object_and_the_worker_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("s.redb"), EmbeddedOptions::default()).unwrap();
        let objects = Objects::new(Arc::new(store), Duration::from_secs(60));
        let rt = Runtime::new(objects.clone(), RuntimeMetrics::default());
        let boom = Arc::new(Boom::default());
        rt.control::<ServiceSpec>(boom.clone());
        let (_lead_tx, lead_rx) = tokio::sync::watch::channel(true);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let running = tokio::spawn(rt.clone().run(Options { concurrency: 1 }, lead_rx, stop_rx));
        let kind = ServiceSpec::INFO;
        objects.create(kind, service("boom"), false).await.unwrap();
        objects.create(kind, service("fine"), false).await.unwrap();

        // The one worker survived the panic and reconciled the other object.
        wait_for("the other object", async || {
            boom.reconciled
                .lock()
                .unwrap()
                .contains(&"fine".to_string())
        })
        .await;
        wait_for("Stalled=True", async || {
            let v = objects.get(kind, "boom").await.unwrap();
            v.pointer("/status/conditions/0/type") == Some(&json!("Stalled"))
        })
        .await;
        let v = objects.get(kind, "boom").await.unwrap();
        let message = v["status"]["conditions"][0]["message"].as_str().unwrap();
        assert!(message.contains("a bug in a reconciler"), "{message}");
        let (events, _) = objects
            .list(
                hostkit_api::find_kind("events").unwrap(),
                &Selectors::default(),
            )
            .await
            .unwrap();
        let uid = v["metadata"]["uid"].as_str().unwrap();
        assert!(
            events
                .iter()
                .any(|e| e["spec"]["reason"] == "ReconcilePanicked"
                    && e["spec"]["involvedObject"]["uid"] == uid),
            "the event belongs to this object (its uid): {events:?}"
        );
        assert_eq!(rt.health.check(), Ok(()));
        let labels = super::super::metrics::ControllerLabels {
            controller: "service".into(),
        };
        assert!(rt.metrics.reconcile_panics.get_or_create(&labels).get() >= 1);

        // A cleanup that panics does not block the delete.
        objects
            .delete(kind, "boom", DeleteOptions::default())
            .await
            .unwrap();
        wait_for("the delete to go through", async || {
            objects.get(kind, "boom").await.is_err()
        })
        .await;
        assert!(boom.cleanups.load(Ordering::SeqCst) >= 1);
        let _ = stop_tx.send(true);
        running.await.unwrap();
    }
}
