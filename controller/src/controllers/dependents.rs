//! Which objects a change wakes besides itself.

use serde_json::Value;

use super::labels;
use crate::runtime::{Caches, Key, name_of, only_status_changed};
use hostkit_api::KindInfo;

/// What a change of an object of `kind` must wake besides itself.
pub(super) fn dependents(
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::controllers::kind_of;

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
