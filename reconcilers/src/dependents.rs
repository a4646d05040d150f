//! Who wakes whom: the objects a change must reconcile besides itself. Each kind's
//! [`crate::Reconciler::dependents`] answers from here, so the whole graph reads in one
//! file: a Host wakes the Services on it (only when reachability flips, for status-only
//! writes); a Project wakes its Services and their Hosts (project firewalls live on
//! hosts); a PolicyWindow wakes every Service and Host; a Service wakes Hosts only when it
//! moves between them.

use std::collections::BTreeMap;

use hostkit_api::KindSpec;
use hostkit_api::kinds::{HostSpec, Object, ProjectSpec, RevisionSpec, ServiceSpec};
use hostkit_api::meta::{ConditionStatus, find_condition};

use crate::{Context, ObjectKey};

/// The Reachable condition's status, if any.
fn reachable(host: &Object<HostSpec>) -> Option<ConditionStatus> {
    let status = host.status.as_ref()?;
    find_condition(&status.conditions, "Reachable").map(|c| c.status)
}

fn key_of<K: KindSpec>(o: &Object<K>) -> ObjectKey {
    ObjectKey::of::<K>(o.name())
}

/// The Hosts a Service selects now.
fn hosts_of(ctx: &dyn Context, service: &Object<ServiceSpec>) -> Vec<ObjectKey> {
    ctx.list::<HostSpec>()
        .iter()
        .filter(|h| service.spec.selects(h.name(), &h.metadata.labels))
        .map(|h| key_of(h.as_ref()))
        .collect()
}

/// A Host changed: the Services that select it (before or after) or report on it.
/// The Host's package lock: its Services' plans pin it, so a change concerns them.
fn locked(h: &Object<HostSpec>) -> Option<&BTreeMap<String, String>> {
    h.status
        .as_ref()
        .and_then(|s| s.package_lock.as_ref())
        .map(|l| &l.packages)
}

pub fn of_host(
    ctx: &dyn Context,
    before: Option<&Object<HostSpec>>,
    after: Option<&Object<HostSpec>>,
) -> Vec<ObjectKey> {
    // A host's own status writes (facts, lastSeen) concern its services only when
    // reachability flips: that is when backed-off services retry.
    if let (Some(b), Some(a)) = (before, after)
        && b.differs_only_in_status(a)
        && reachable(b) == reachable(a)
        && locked(b) == locked(a)
    {
        return Vec::new();
    }
    let Some(name) = after.or(before).map(|h| h.name().to_string()) else {
        return Vec::new();
    };
    let hosts: Vec<&Object<HostSpec>> = before.into_iter().chain(after).collect();
    ctx.list::<ServiceSpec>()
        .iter()
        .filter(|s| {
            hosts
                .iter()
                .any(|h| s.spec.selects(h.name(), &h.metadata.labels))
                || s.status
                    .as_ref()
                    .is_some_and(|st| st.hosts.iter().any(|h| h.host == name))
        })
        .map(|s| key_of(s.as_ref()))
        .collect()
}

/// A Project changed: its Services, and their Hosts (the Host reconciler applies project
/// firewalls).
pub fn of_project(
    ctx: &dyn Context,
    before: Option<&Object<ProjectSpec>>,
    after: Option<&Object<ProjectSpec>>,
) -> Vec<ObjectKey> {
    let Some(name) = after.or(before).map(|p| p.name().to_string()) else {
        return Vec::new();
    };
    let services: Vec<_> = ctx
        .list::<ServiceSpec>()
        .into_iter()
        .filter(|s| s.spec.project.as_deref() == Some(name.as_str()))
        .collect();
    let mut keys: Vec<ObjectKey> = services.iter().map(|s| key_of(s.as_ref())).collect();
    for s in &services {
        keys.extend(hosts_of(ctx, s));
    }
    keys
}

/// A PolicyWindow changed: every Service and every Host may be allowed or held now.
pub fn of_window(ctx: &dyn Context) -> Vec<ObjectKey> {
    let mut keys: Vec<ObjectKey> = ctx
        .list::<ServiceSpec>()
        .iter()
        .map(|s| key_of(s.as_ref()))
        .collect();
    keys.extend(ctx.list::<HostSpec>().iter().map(|h| key_of(h.as_ref())));
    keys
}

/// What of a Service its Hosts' collector configs are made from: its telemetry intent and
/// the units and listeners it names.
fn telemetry_inputs(s: &Object<ServiceSpec>) -> serde_json::Value {
    let daemon = s.spec.daemon.as_ref();
    serde_json::json!({
        "observability": s.spec.observability,
        "daemon": daemon.map(|d| (&d.name, &d.listen)),
        "jobs": s.spec.jobs.iter().map(|j| &j.name).collect::<Vec<_>>(),
    })
}

/// A Service changed: the Hosts it left and joined, when it moved (their firewalls change),
/// or all its Hosts when what their collector configs say of it changed.
pub fn of_service(
    ctx: &dyn Context,
    before: Option<&Object<ServiceSpec>>,
    after: Option<&Object<ServiceSpec>>,
) -> Vec<ObjectKey> {
    if before.map(|s| s.spec.placement()) == after.map(|s| s.spec.placement())
        && before.map(telemetry_inputs) == after.map(telemetry_inputs)
    {
        return Vec::new();
    }
    let mut keys: Vec<ObjectKey> = before
        .into_iter()
        .chain(after)
        .flat_map(|s| hosts_of(ctx, s))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// A Revision was created: its target, whose `status.currentRevision` and `hkctl history`'s
/// "current" must name it (a Rollback writes one after the Service's own reconcile ran).
/// Later writes to a Revision (runs added) wake nobody: their writer is the target itself.
pub fn of_revision(
    before: Option<&Object<RevisionSpec>>,
    after: Option<&Object<RevisionSpec>>,
) -> Vec<ObjectKey> {
    match (before, after) {
        (None, Some(rev)) => hostkit_api::kinds::kind_by_name(&rev.spec.target_ref.kind)
            .map(|kind| ObjectKey::new(kind, rev.spec.target_ref.name.clone()))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::context::testing::CacheOnly;

    fn host(name: &str, env: &str, reachable: &str) -> Object<HostSpec> {
        serde_json::from_value(json!({
            "apiVersion": "hostkit.dev/v1alpha1", "kind": "Host",
            "metadata": {"name": name, "labels": {"env": env}},
            "spec": {"address": "10.0.0.1"},
            "status": {"conditions": [{"type": "Reachable", "status": reachable,
                "lastTransitionTime": "2026-11-22T10:00:00Z"}]}}))
        .unwrap()
    }

    fn service(name: &str, spec: serde_json::Value) -> Object<ServiceSpec> {
        serde_json::from_value(json!({
            "apiVersion": "hostkit.dev/v1alpha1", "kind": "Service",
            "metadata": {"name": name}, "spec": spec}))
        .unwrap()
    }

    fn cache() -> CacheOnly {
        let c = CacheOnly::default();
        c.put(host("a", "prod", "True"));
        c.put(host("b", "test", "True"));
        c.put(service("on-a", json!({"hosts": ["a"], "project": "p"})));
        c.put(service(
            "prod",
            json!({"hostSelector": {"matchLabels": {"env": "prod"}}}),
        ));
        c.put(service("on-b", json!({"hosts": ["b"]})));
        c
    }

    fn names(keys: Vec<ObjectKey>) -> Vec<String> {
        let mut v: Vec<String> = keys
            .into_iter()
            .map(|k| format!("{}/{}", k.kind().plural, k.name))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_new_revision_wakes_its_target_and_later_writes_to_it_wake_nobody() {
        let rev: Object<RevisionSpec> = serde_json::from_value(json!({
            "apiVersion": "hostkit.dev/v1alpha1", "kind": "Revision",
            "metadata": {"name": "web-3"},
            "spec": {"targetRef": {"kind": "Service", "name": "web"}, "revision": 3}}))
        .unwrap();
        assert_eq!(names(of_revision(None, Some(&rev))), ["services/web"]);
        assert!(of_revision(Some(&rev), Some(&rev)).is_empty());
        assert!(of_revision(Some(&rev), None).is_empty());
    }

    #[test]
    fn a_host_wakes_only_its_services_and_only_when_reachability_flips() {
        let c = cache();
        let ctx: &dyn Context = &c;
        let a = host("a", "prod", "True");
        let mut seen = a.clone();
        seen.status_mut().last_seen = Some("2026-11-22T10:00:00Z".parse().unwrap());
        assert!(
            of_host(ctx, Some(&a), Some(&seen)).is_empty(),
            "lastSeen alone"
        );
        let down = host("a", "prod", "False");
        assert_eq!(
            names(of_host(ctx, Some(&a), Some(&down))),
            ["services/on-a", "services/prod"]
        );
        // Relabelled out of the selector: the service that selected it still hears of it.
        let relabelled = host("a", "test", "True");
        assert_eq!(
            names(of_host(ctx, Some(&a), Some(&relabelled))),
            ["services/on-a", "services/prod"]
        );
        assert_eq!(
            names(of_host(ctx, Some(&a), None)),
            ["services/on-a", "services/prod"]
        );
    }

    #[test]
    fn a_project_wakes_its_services_and_their_hosts() {
        let c = cache();
        let p: Object<ProjectSpec> = serde_json::from_value(json!({
            "apiVersion": "hostkit.dev/v1alpha1", "kind": "Project",
            "metadata": {"name": "p"}, "spec": {}}))
        .unwrap();
        assert_eq!(
            names(of_project(&c, None, Some(&p))),
            ["hosts/a", "services/on-a"]
        );
    }

    #[test]
    fn a_service_wakes_hosts_only_when_it_moves() {
        let c = cache();
        let before = service("x", json!({"hosts": ["a"], "files": []}));
        let edited = service(
            "x",
            json!({"hosts": ["a"], "files": [{"path": "/x", "content": ""}]}),
        );
        assert!(of_service(&c, Some(&before), Some(&edited)).is_empty());
        let moved = service("x", json!({"hosts": ["b"]}));
        assert_eq!(
            names(of_service(&c, Some(&before), Some(&moved))),
            ["hosts/a", "hosts/b"]
        );
    }

    #[test]
    fn a_service_wakes_its_hosts_when_what_their_collector_config_says_of_it_changes() {
        let c = cache();
        let ctx: &dyn Context = &c;
        let plain = service("on-a", json!({"hosts": ["a"]}));
        let interval = service("on-a", json!({"hosts": ["a"], "interval": "5m"}));
        assert!(of_service(ctx, Some(&plain), Some(&interval)).is_empty());
        let logged = service(
            "on-a",
            json!({"hosts": ["a"], "observability": {"logs": true}}),
        );
        assert_eq!(
            names(of_service(ctx, Some(&plain), Some(&logged))),
            ["hosts/a"]
        );
        let job = service(
            "on-a",
            json!({"hosts": ["a"], "observability": {"logs": true},
            "jobs": [{"name": "tick", "exec": ["/bin/true"], "schedule": {"onCalendar": ["daily"]}}]}),
        );
        assert_eq!(
            names(of_service(ctx, Some(&logged), Some(&job))),
            ["hosts/a"],
            "a new unit to read"
        );
    }
}
