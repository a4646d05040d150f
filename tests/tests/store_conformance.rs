//! The store conformance suite: the same cases, unchanged, against the embedded backend and
//! a real etcd started for each test. A behaviour difference between the two is a bug.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hostkit_controller::store::embedded::{EmbeddedOptions, EmbeddedStore};
use hostkit_controller::store::etcd::EtcdStore;
use hostkit_controller::store::{Store, StoreError, WatchEvent, WatchStream};
use hostkit_e2e::etcd::EtcdServer;

type Guard = Box<dyn std::any::Any + Send>;

fn embedded() -> (Arc<dyn Store>, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        EmbeddedStore::open(&dir.path().join("store.redb"), EmbeddedOptions::default()).unwrap();
    (Arc::new(store), Box::new(dir))
}

async fn etcd() -> (Arc<dyn Store>, Guard) {
    let server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap();
    let store = EtcdStore::connect(std::slice::from_ref(&server.url))
        .await
        .unwrap();
    (Arc::new(store), Box::new(server))
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = super::embedded();
                super::cases::$case(store).await;
            })*
        }
        mod etcd {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = super::etcd().await;
                super::cases::$case(store).await;
            })*
        }
    };
}

conformance!(
    create_get_and_revisions,
    update_is_compare_and_swap,
    concurrent_updates_one_wins,
    delete_with_precondition,
    list_is_one_consistent_snapshot_across_pages,
    watch_replays_from_a_revision_then_follows,
    watch_from_now_sees_only_new_changes,
    watch_sends_progress_bookmarks,
    watch_before_compaction_is_refused,
    leases_expire_and_revoke_their_keys,
    update_status_never_touches_spec,
);

async fn next_event(w: &mut WatchStream) -> WatchEvent {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("a watch event within 10s")
            .expect("the watch stream is open")
            .expect("no watch error");
        if !matches!(ev, WatchEvent::Progress { .. }) {
            return ev;
        }
    }
}

mod cases {
    use super::*;

    pub async fn create_get_and_revisions(s: Arc<dyn Store>) {
        let before = s.current_revision().await.unwrap();
        let kv = s.create("/c/a", b"one".to_vec(), None).await.unwrap();
        assert!(kv.mod_revision > before);
        assert_eq!(kv.create_revision, kv.mod_revision);
        assert_eq!(kv.version, 1);
        let got = s.get("/c/a").await.unwrap().unwrap();
        assert_eq!(got, kv);
        assert_eq!(s.current_revision().await.unwrap(), kv.mod_revision);
        let err = s.create("/c/a", b"two".to_vec(), None).await.unwrap_err();
        assert_eq!(err, StoreError::AlreadyExists { key: "/c/a".into() });
        assert_eq!(s.get("/c/a").await.unwrap().unwrap().value, b"one");
        assert!(s.get("/c/missing").await.unwrap().is_none());
    }

    pub async fn update_is_compare_and_swap(s: Arc<dyn Store>) {
        let v1 = s.create("/u/a", b"1".to_vec(), None).await.unwrap();
        let v2 = s
            .update("/u/a", b"2".to_vec(), v1.mod_revision)
            .await
            .unwrap();
        assert!(v2.mod_revision > v1.mod_revision);
        assert_eq!(v2.create_revision, v1.create_revision);
        assert_eq!(v2.version, 2);
        assert_eq!(s.get("/u/a").await.unwrap().unwrap(), v2);
        let err = s
            .update("/u/a", b"3".to_vec(), v1.mod_revision)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::Conflict {
                key: "/u/a".into(),
                expected: v1.mod_revision,
                actual: v2.mod_revision
            }
        );
        assert_eq!(s.get("/u/a").await.unwrap().unwrap().value, b"2");
        let err = s.update("/u/none", b"x".to_vec(), 5).await.unwrap_err();
        assert_eq!(
            err,
            StoreError::NotFound {
                key: "/u/none".into()
            }
        );
    }

    pub async fn concurrent_updates_one_wins(s: Arc<dyn Store>) {
        let kv = s.create("/cc/a", b"0".to_vec(), None).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.update("/cc/a", format!("writer-{i}").into_bytes(), kv.mod_revision)
                    .await
            }));
        }
        let mut ok = 0;
        let mut conflicts = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::Conflict { .. }) => conflicts += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!((ok, conflicts), (1, 7));
        assert_eq!(s.get("/cc/a").await.unwrap().unwrap().version, 2);
    }

    pub async fn delete_with_precondition(s: Arc<dyn Store>) {
        let v1 = s.create("/d/a", b"1".to_vec(), None).await.unwrap();
        let v2 = s
            .update("/d/a", b"2".to_vec(), v1.mod_revision)
            .await
            .unwrap();
        let err = s.delete("/d/a", Some(v1.mod_revision)).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { actual, .. } if actual == v2.mod_revision),
            "{err:?}"
        );
        assert!(s.get("/d/a").await.unwrap().is_some());
        let (prev, rev) = s.delete("/d/a", Some(v2.mod_revision)).await.unwrap();
        assert_eq!(prev.value, b"2");
        assert!(rev > v2.mod_revision);
        assert!(s.get("/d/a").await.unwrap().is_none());
        assert_eq!(
            s.delete("/d/a", None).await.unwrap_err(),
            StoreError::NotFound { key: "/d/a".into() }
        );
        s.create("/d/b", b"x".to_vec(), None).await.unwrap();
        s.delete("/d/b", None).await.unwrap();
    }

    pub async fn list_is_one_consistent_snapshot_across_pages(s: Arc<dyn Store>) {
        // More keys than one etcd page (500), plus neighbours that must not leak in.
        let mut writes = Vec::new();
        for i in 0..1203 {
            let s = s.clone();
            writes.push(tokio::spawn(async move {
                s.create(
                    &format!("/l/items/{i:05}"),
                    i.to_string().into_bytes(),
                    None,
                )
                .await
                .unwrap()
            }));
        }
        for w in writes {
            w.await.unwrap();
        }
        s.create("/l/items0", b"neighbour".to_vec(), None)
            .await
            .unwrap();
        s.create("/l/item", b"neighbour".to_vec(), None)
            .await
            .unwrap();
        let list = s.list("/l/items/").await.unwrap();
        assert_eq!(list.items.len(), 1203);
        assert!(
            list.items.windows(2).all(|w| w[0].key < w[1].key),
            "sorted by key"
        );
        assert_eq!(list.items[7].value, b"7");
        let max_mod = list.items.iter().map(|kv| kv.mod_revision).max().unwrap();
        assert!(list.revision >= max_mod);
        assert!(s.list("/l/none/").await.unwrap().items.is_empty());
    }

    pub async fn watch_replays_from_a_revision_then_follows(s: Arc<dyn Store>) {
        let a1 = s.create("/w/a", b"1".to_vec(), None).await.unwrap();
        s.create("/other/x", b"not watched".to_vec(), None)
            .await
            .unwrap();
        let a2 = s
            .update("/w/a", b"2".to_vec(), a1.mod_revision)
            .await
            .unwrap();
        let (_, del_rev) = s.delete("/w/a", None).await.unwrap();
        let mut w = s.watch("/w/", a1.mod_revision, None).await.unwrap();
        assert_eq!(next_event(&mut w).await, WatchEvent::Put(a1.clone()));
        assert_eq!(next_event(&mut w).await, WatchEvent::Put(a2.clone()));
        match next_event(&mut w).await {
            WatchEvent::Delete {
                key,
                revision,
                prev,
            } => {
                assert_eq!(key, "/w/a");
                assert_eq!(revision, del_rev);
                assert_eq!(prev.unwrap().value, b"2");
            }
            other => panic!("expected a delete, got {other:?}"),
        }
        let b = s.create("/w/b", b"live".to_vec(), None).await.unwrap();
        assert_eq!(next_event(&mut w).await, WatchEvent::Put(b));
    }

    pub async fn watch_from_now_sees_only_new_changes(s: Arc<dyn Store>) {
        s.create("/n/old", b"old".to_vec(), None).await.unwrap();
        let mut w = s.watch("/n/", 0, None).await.unwrap();
        let new = s.create("/n/new", b"new".to_vec(), None).await.unwrap();
        assert_eq!(next_event(&mut w).await, WatchEvent::Put(new));
    }

    pub async fn watch_sends_progress_bookmarks(s: Arc<dyn Store>) {
        let kv = s.create("/p/a", b"1".to_vec(), None).await.unwrap();
        s.create("/elsewhere/b", b"2".to_vec(), None).await.unwrap();
        let head = s.current_revision().await.unwrap();
        let mut w = s
            .watch("/p/", kv.mod_revision + 1, Some(Duration::from_millis(200)))
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ev = tokio::time::timeout_at(deadline, w.next())
                .await
                .expect("a bookmark within 10s")
                .unwrap()
                .unwrap();
            if let WatchEvent::Progress { revision } = ev {
                if revision >= head {
                    break;
                }
            } else {
                panic!("no changes under /p/ were made, got {ev:?}");
            }
        }
    }

    pub async fn watch_before_compaction_is_refused(s: Arc<dyn Store>) {
        let first = s.create("/k/a", b"1".to_vec(), None).await.unwrap();
        let mut last = first.clone();
        for i in 0..5 {
            last = s
                .update("/k/a", i.to_string().into_bytes(), last.mod_revision)
                .await
                .unwrap();
        }
        s.compact(last.mod_revision).await.unwrap();
        match s.watch("/k/", first.mod_revision, None).await {
            Err(StoreError::Compacted {
                requested,
                compact_revision,
            }) => {
                assert_eq!(requested, first.mod_revision);
                assert_eq!(compact_revision, last.mod_revision);
            }
            Err(e) => panic!("expected Compacted, got {e}"),
            Ok(_) => panic!("a watch from before the compaction must be refused"),
        }
        // Re-list and watch from the list's revision: the recovery every caller does.
        let list = s.list("/k/").await.unwrap();
        let mut w = s.watch("/k/", list.revision + 1, None).await.unwrap();
        let next = s
            .update("/k/a", b"after".to_vec(), last.mod_revision)
            .await
            .unwrap();
        assert_eq!(next_event(&mut w).await, WatchEvent::Put(next));
    }

    pub async fn leases_expire_and_revoke_their_keys(s: Arc<dyn Store>) {
        let revoked = s.lease_grant(Duration::from_secs(30)).await.unwrap();
        s.create("/lease/revoked", b"x".to_vec(), Some(revoked))
            .await
            .unwrap();
        let ttl = s.lease_keep_alive(revoked).await.unwrap();
        assert!(
            ttl >= Duration::from_secs(29) && ttl <= Duration::from_secs(30),
            "{ttl:?}"
        );
        let mut w = s.watch("/lease/", 0, None).await.unwrap();
        s.lease_revoke(revoked).await.unwrap();
        assert!(
            matches!(next_event(&mut w).await, WatchEvent::Delete { key, .. } if key == "/lease/revoked")
        );
        assert!(s.get("/lease/revoked").await.unwrap().is_none());
        let after = s.lease_keep_alive(revoked).await;
        assert!(
            matches!(after, Err(StoreError::LeaseNotFound(_))),
            "{after:?}"
        );

        let short = s.lease_grant(Duration::from_secs(2)).await.unwrap();
        s.create("/lease/short", b"x".to_vec(), Some(short))
            .await
            .unwrap();
        let created = next_event(&mut w).await;
        assert!(
            matches!(created, WatchEvent::Put(ref kv) if kv.key == "/lease/short" && kv.lease == short),
            "{created:?}"
        );
        let expired = tokio::time::timeout(Duration::from_secs(15), next_event(&mut w))
            .await
            .unwrap();
        assert!(
            matches!(expired, WatchEvent::Delete { ref key, .. } if key == "/lease/short"),
            "{expired:?}"
        );
        assert!(s.get("/lease/short").await.unwrap().is_none());

        let err = s
            .create("/lease/none", b"x".to_vec(), Some(987_654_321))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::LeaseNotFound(_)), "{err:?}");
    }

    pub async fn update_status_never_touches_spec(s: Arc<dyn Store>) {
        let body =
            serde_json::json!({"kind": "Service", "spec": {"a": 1}, "status": {"old": true}});
        let kv = s
            .create("/s/a", serde_json::to_vec(&body).unwrap(), None)
            .await
            .unwrap();
        let status = serde_json::json!({"conditions": [{"type": "Ready"}]});
        let updated = s
            .update_status("/s/a", status.clone(), Some(kv.mod_revision), None)
            .await
            .unwrap();
        let stored: serde_json::Value = serde_json::from_slice(&updated.value).unwrap();
        assert_eq!(stored["spec"], serde_json::json!({"a": 1}));
        assert_eq!(stored["status"], status);
        let err = s
            .update_status("/s/a", serde_json::json!({}), Some(kv.mod_revision), None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
        s.update_status("/s/a", serde_json::json!({"n": 2}), None, None)
            .await
            .unwrap();
        let err = s
            .update_status("/s/none", serde_json::json!({}), None, None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");

        // A status meant for another object under the key (deleted and created again).
        let body = serde_json::json!({"metadata": {"uid": "u-2"}, "spec": {}});
        s.create("/s/u", serde_json::to_vec(&body).unwrap(), None)
            .await
            .unwrap();
        let err = s
            .update_status("/s/u", serde_json::json!({"n": 1}), None, Some("u-1"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::UidMismatch { .. }), "{err:?}");
        let kv = s
            .update_status("/s/u", serde_json::json!({"n": 2}), None, Some("u-2"))
            .await
            .unwrap();
        let stored: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
        assert_eq!(stored["status"], serde_json::json!({"n": 2}));
    }
}

/// etcd only: a watch keeps going across an etcd restart, from the last revision it delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watch_resumes_after_a_restart() {
    let mut server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap();
    let store = EtcdStore::connect(std::slice::from_ref(&server.url))
        .await
        .unwrap();
    let first = store.create("/r/a", b"1".to_vec(), None).await.unwrap();
    let mut w = store.watch("/r/", first.mod_revision, None).await.unwrap();
    assert_eq!(next_event(&mut w).await, WatchEvent::Put(first.clone()));
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let mut second = None;
    for _ in 0..100 {
        match store
            .update("/r/a", b"2".to_vec(), first.mod_revision)
            .await
        {
            Ok(kv) => {
                second = Some(kv);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let second = second.expect("etcd accepts writes after the restart");
    assert_eq!(next_event(&mut w).await, WatchEvent::Put(second));
    drop(server);
}
