//! Recording Events about objects, the one way reconcilers report what they saw and did.
//!
//! Repeats of the same event (same object, reason and message) update one Event's
//! `count` and `lastTimestamp` instead of creating new ones, as Kubernetes does, so a
//! flapping host produces one line in `hkctl describe`, not hundreds.

use hostkit_api::find_kind;
use hostkit_api::kinds::EventType;
use hostkit_api::meta::ObjectRef;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::objects::Objects;

/// Records events as one component (`service-controller`, `hkctl`, …).
#[derive(Clone)]
pub struct Recorder {
    objects: Objects,
    component: String,
}

impl Recorder {
    pub fn new(objects: Objects, component: impl Into<String>) -> Recorder {
        Recorder {
            objects,
            component: component.into(),
        }
    }

    /// Records (or counts again) an event about `involved`.
    pub async fn record(
        &self,
        involved: &ObjectRef,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<()> {
        let kind = find_kind("events").expect("Event is a kind");
        let mut hash = Sha256::new();
        // The uid keeps a re-created object's events apart from its predecessor's.
        for part in [
            involved.kind.as_str(),
            involved.name.as_str(),
            involved.uid.as_deref().unwrap_or_default(),
            reason,
            message,
            &self.component,
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let digest: String = hash
            .finalize()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        let name = format!("{}.{}", involved.name, digest);
        let now = serde_json::to_value(chrono::Utc::now()).expect("time serialises");
        for _ in 0..4 {
            match self.objects.get(kind, &name).await {
                Ok(mut existing) => {
                    let count = existing
                        .pointer("/spec/count")
                        .and_then(Value::as_u64)
                        .unwrap_or(1);
                    existing["spec"]["count"] = json!(count + 1);
                    existing["spec"]["lastTimestamp"] = now.clone();
                    match self.objects.update(kind, &name, existing, false).await {
                        Err(Error::Conflict { .. }) | Err(Error::NotFound { .. }) => continue,
                        other => return other.map(|_| ()),
                    }
                }
                Err(Error::NotFound { .. }) => {
                    let body = json!({
                        "apiVersion": hostkit_api::API_VERSION,
                        "kind": "Event",
                        "metadata": {"name": name},
                        "spec": {
                            "involvedObject": involved,
                            "type": type_,
                            "reason": reason,
                            "message": message,
                            "source": self.component,
                            "count": 1,
                            "firstTimestamp": now,
                            "lastTimestamp": now,
                        }
                    });
                    match self.objects.create(kind, body, false).await {
                        Err(Error::AlreadyExists { .. }) => continue,
                        other => return other.map(|_| ()),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::objects::{FieldSelector, Selectors};
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};

    #[tokio::test]
    async fn repeated_events_are_counted_not_duplicated() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("s.redb"), EmbeddedOptions::default()).unwrap();
        let objects = Objects::new(Arc::new(store), Duration::from_secs(60));
        let rec = Recorder::new(objects.clone(), "service-controller");
        let svc = ObjectRef {
            kind: "Service".into(),
            name: "exograph".into(),
            uid: None,
        };
        rec.record(
            &svc,
            EventType::Warning,
            "DriftDetected",
            "file:/etc/x changed",
        )
        .await
        .unwrap();
        rec.record(
            &svc,
            EventType::Warning,
            "DriftDetected",
            "file:/etc/x changed",
        )
        .await
        .unwrap();
        rec.record(
            &svc,
            EventType::Normal,
            "DriftRepaired",
            "file:/etc/x restored",
        )
        .await
        .unwrap();
        let other = ObjectRef {
            kind: "Service".into(),
            name: "api".into(),
            uid: None,
        };
        rec.record(&other, EventType::Normal, "Applied", "ok")
            .await
            .unwrap();
        let selectors = Selectors {
            labels: None,
            fields: Some(
                FieldSelector::parse(
                    "spec.involvedObject.kind=Service,spec.involvedObject.name=exograph",
                )
                .unwrap(),
            ),
        };
        let (events, _) = objects
            .list(find_kind("events").unwrap(), &selectors)
            .await
            .unwrap();
        assert_eq!(events.len(), 2);
        let drift = events
            .iter()
            .find(|e| e["spec"]["reason"] == "DriftDetected")
            .unwrap();
        assert_eq!(drift["spec"]["count"], 2);
        assert_eq!(drift["spec"]["type"], "Warning");
        assert_eq!(drift["spec"]["source"], "service-controller");
    }
}
