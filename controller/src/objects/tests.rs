use super::*;
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
use hostkit_api::find_kind;
use serde_json::json;

fn objects() -> (Objects, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        EmbeddedStore::open(&dir.path().join("s.redb"), EmbeddedOptions::default()).unwrap();
    (
        Objects::new(Arc::new(store), Duration::from_secs(3600)),
        dir,
    )
}

fn service(name: &str, port: &str) -> Value {
    json!({
        "apiVersion": "hostkit.dev/v1alpha1", "kind": "Service",
        "metadata": {"name": name, "labels": {"tier": "search"}},
        "spec": {"hosts": ["h1"], "daemon": {"exec": ["/bin/app", "--port", port]}}
    })
}

#[tokio::test]
async fn generation_bumps_only_on_spec_changes() {
    let (o, _d) = objects();
    let svc = find_kind("svc").unwrap();
    let created = o.create(svc, service("a", "1"), false).await.unwrap();
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"]["uid"].is_string());
    assert_eq!(
        created["spec"]["rollout"]["maxParallel"], 1,
        "defaults are applied"
    );
    let mut relabel = service("a", "1");
    relabel["metadata"]["labels"]["tier"] = json!("web");
    let (v, outcome) = o.apply(svc, "a", relabel, false).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Configured);
    assert_eq!(v["metadata"]["generation"], 1);
    let (v, outcome) = o.apply(svc, "a", service("a", "2"), false).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Configured);
    assert_eq!(v["metadata"]["generation"], 2);
    let (v2, outcome) = o.apply(svc, "a", service("a", "2"), false).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Unchanged);
    assert_eq!(
        v2["metadata"]["resourceVersion"], v["metadata"]["resourceVersion"],
        "no write"
    );
}

#[tokio::test]
async fn a_write_meant_for_a_deleted_object_never_lands_on_its_successor() {
    let (o, _d) = objects();
    let svc = find_kind("svc").unwrap();
    let old = o.create(svc, service("a", "1"), false).await.unwrap();
    o.delete(svc, "a", DeleteOptions::default()).await.unwrap();
    let new = o.create(svc, service("a", "2"), false).await.unwrap();
    assert_ne!(old["metadata"]["uid"], new["metadata"]["uid"]);

    // A controller still holding the old object writes its status, without a
    // resourceVersion (as status writers do): refused, the new object keeps its own.
    let mut stale = old.clone();
    stale["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    stale["status"] = json!({"observedGeneration": 7});
    let err = o
        .update_status(svc, "a", stale.clone(), false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { detail, .. } if detail.contains("created again")),
        "{err}"
    );
    let err = o.update(svc, "a", stale, false).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    let stored = o.get(svc, "a").await.unwrap();
    assert!(stored.get("status").is_none_or(Value::is_null), "{stored}");
    assert_eq!(stored["spec"]["daemon"]["exec"][2], "2");

    // The same write with the new object's uid goes through.
    let mut fresh = new.clone();
    fresh["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    fresh["status"] = json!({"observedGeneration": 1});
    let v = o.update_status(svc, "a", fresh, false).await.unwrap();
    assert_eq!(v["status"]["observedGeneration"], 1);
}

#[tokio::test]
async fn status_and_spec_are_written_separately() {
    let (o, _d) = objects();
    let svc = find_kind("svc").unwrap();
    let created = o.create(svc, service("a", "1"), false).await.unwrap();
    let mut with_status = created.clone();
    with_status["status"] = json!({"observedGeneration": 1});
    with_status["spec"]["hosts"] = json!(["sneaky"]);
    let v = o.update_status(svc, "a", with_status, false).await.unwrap();
    assert_eq!(
        v["spec"]["hosts"],
        json!(["h1"]),
        "status writes never change spec"
    );
    assert_eq!(v["status"]["observedGeneration"], 1);
    assert_eq!(v["metadata"]["generation"], 1);
    let mut spec_update = v.clone();
    spec_update["status"] = json!({"observedGeneration": 99});
    spec_update["spec"]["hosts"] = json!(["h2"]);
    let v = o.update(svc, "a", spec_update, false).await.unwrap();
    assert_eq!(
        v["status"]["observedGeneration"], 1,
        "spec writes never change status"
    );
    assert_eq!(v["metadata"]["generation"], 2);
    let err = o.update(svc, "a", created, false).await.unwrap_err();
    assert!(
        matches!(err, Error::Conflict { .. }),
        "stale resourceVersion: {err}"
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (o, _d) = objects();
    let svc = find_kind("svc").unwrap();
    let mut body = service("a", "1");
    body["metadata"]["finalizers"] = json!(["hostkit.dev/cleanup"]);
    o.create(svc, body, false).await.unwrap();
    let (v, gone) = o.delete(svc, "a", DeleteOptions::default()).await.unwrap();
    assert!(!gone);
    assert!(v["metadata"]["deletionTimestamp"].is_string());
    let mut add = v.clone();
    add["metadata"]["finalizers"] = json!(["hostkit.dev/cleanup", "other"]);
    assert!(matches!(
        o.update(svc, "a", add, false).await,
        Err(Error::BadRequest(_))
    ));
    let mut done = v.clone();
    done["metadata"]["finalizers"] = json!([]);
    o.update(svc, "a", done, false).await.unwrap();
    assert!(matches!(o.get(svc, "a").await, Err(Error::NotFound { .. })));
}

#[tokio::test]
async fn an_orphan_delete_marks_and_annotates_in_one_write() {
    let (o, _d) = objects();
    let svc = find_kind("svc").unwrap();
    let mut body = service("a", "1");
    body["metadata"]["finalizers"] = json!(["hostkit.dev/cleanup"]);
    let created = o.create(svc, body, false).await.unwrap();
    let rv: i64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let orphan = DeleteOptions {
        orphan: true,
        ..Default::default()
    };
    let (v, gone) = o.delete(svc, "a", orphan).await.unwrap();
    assert!(!gone);
    assert!(v["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(v["metadata"]["annotations"][ORPHAN_ANNOTATION], "orphan");
    let after: i64 = v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(after, rv + 1, "one write, not two");

    // Asking for orphan on an object already being deleted still records it.
    let mut body = service("b", "1");
    body["metadata"]["finalizers"] = json!(["hostkit.dev/cleanup"]);
    o.create(svc, body, false).await.unwrap();
    o.delete(svc, "b", DeleteOptions::default()).await.unwrap();
    let (v, _) = o.delete(svc, "b", orphan).await.unwrap();
    assert_eq!(v["metadata"]["annotations"][ORPHAN_ANNOTATION], "orphan");
    assert_eq!(
        o.get(svc, "b").await.unwrap()["metadata"]["annotations"][ORPHAN_ANNOTATION],
        "orphan"
    );
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let (o, _d) = objects();
    let svc = find_kind("svc").unwrap();
    let v = o.create(svc, service("a", "1"), true).await.unwrap();
    assert_eq!(v["metadata"]["generation"], 1);
    assert!(matches!(o.get(svc, "a").await, Err(Error::NotFound { .. })));
    o.create(svc, service("a", "1"), false).await.unwrap();
    let (v, _) = o.apply(svc, "a", service("a", "9"), true).await.unwrap();
    assert_eq!(v["spec"]["daemon"]["exec"][2], "9");
    assert_eq!(
        o.get(svc, "a").await.unwrap()["spec"]["daemon"]["exec"][2],
        "1"
    );
    o.delete(
        svc,
        "a",
        DeleteOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(o.get(svc, "a").await.is_ok());
}

#[tokio::test]
async fn invalid_bodies_name_the_field() {
    let (o, _d) = objects();
    let svc = find_kind("svc").unwrap();
    let mut body = service("a", "1");
    body["spec"]["daemon"]["restart"] = json!("sometimes");
    match o.create(svc, body, false).await {
        Err(Error::Invalid { causes, .. }) => {
            assert_eq!(causes[0].field, "spec.daemon.restart");
            assert!(causes[0].message.contains("on-failure"));
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let host = find_kind("host").unwrap();
    assert!(matches!(
        o.create(host, service("a", "1"), false).await,
        Err(Error::BadRequest(_))
    ));
}

#[tokio::test]
async fn watch_reports_added_modified_deleted_with_selectors() {
    let (o, _d) = objects();
    let svc = find_kind("svc").unwrap();
    let (_, rv) = o.list(svc, &Selectors::default()).await.unwrap();
    let selectors = Selectors {
        labels: Some(LabelSelector::parse("tier=search").unwrap()),
        fields: None,
    };
    let w = o.watch(svc, rv, selectors, None).await.unwrap();
    o.create(svc, service("a", "1"), false).await.unwrap();
    let mut other = service("b", "1");
    other["metadata"]["labels"]["tier"] = json!("web");
    o.create(svc, other, false).await.unwrap();
    o.apply(svc, "a", service("a", "2"), false).await.unwrap();
    o.delete(svc, "a", DeleteOptions::default()).await.unwrap();
    let events = collect_events(w, 3, Duration::from_secs(5)).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            ObjectEvent::Added(v) => {
                assert_eq!(v["metadata"]["name"], "a");
                "ADDED"
            }
            ObjectEvent::Modified(_) => "MODIFIED",
            ObjectEvent::Deleted(_) => "DELETED",
            ObjectEvent::Bookmark(_) => "BOOKMARK",
        })
        .collect();
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn events_expire_with_their_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        EmbeddedStore::open(&dir.path().join("s.redb"), EmbeddedOptions::default()).unwrap();
    let o = Objects::new(Arc::new(store), Duration::from_millis(300));
    let ev = find_kind("events").unwrap();
    let body = json!({
        "apiVersion": "hostkit.dev/v1alpha1", "kind": "Event",
        "metadata": {"name": "a.1"},
        "spec": {"involvedObject": {"kind": "Service", "name": "a"}, "type": "Normal", "reason": "Applied", "message": "ok"}
    });
    o.create(ev, body, false).await.unwrap();
    assert!(o.get(ev, "a.1").await.is_ok());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(matches!(
        o.get(ev, "a.1").await,
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn field_selectors_follow_dotted_paths() {
    let f = FieldSelector::parse("spec.involvedObject.kind=Service,spec.involvedObject.name=a")
        .unwrap();
    assert!(f.matches(&json!({"spec": {"involvedObject": {"kind": "Service", "name": "a"}}})));
    assert!(!f.matches(&json!({"spec": {"involvedObject": {"kind": "Service", "name": "b"}}})));
    assert!(FieldSelector::parse("nonsense").is_err());
}
