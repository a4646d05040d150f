//! Property test of the HTTP handlers: whatever the body, the server answers with a
//! status below 500 and a JSON Status explaining the problem, and never panics.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use hostkit_controller::objects::Objects;
use hostkit_controller::server::{Tokens, router};
use hostkit_controller::store::embedded::{EmbeddedOptions, EmbeddedStore};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tower::ServiceExt;

const TOKEN: &str = "property-test-token-0123456789";

fn app() -> (axum::Router, tempfile::TempDir, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(async {
        EmbeddedStore::open(&dir.path().join("s.redb"), EmbeddedOptions::default()).unwrap()
    });
    let objects = Objects::new(Arc::new(store), Duration::from_secs(60));
    (
        router(objects, Tokens::single_admin(TOKEN), Duration::from_secs(5)),
        dir,
        rt,
    )
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        "\\PC{0,300}".prop_map(String::into_bytes),
        (
            prop_oneof![Just("Service"), Just("Host"), Just("Project"), Just("Event"), Just("Nope")],
            "[a-zA-Z0-9_.-]{0,20}",
            "\\PC{0,60}"
        )
            .prop_map(|(kind, name, junk)| format!(
                r#"{{"apiVersion":"hostkit.dev/v1alpha1","kind":"{kind}","metadata":{{"name":"{name}"}},"spec":{{"hosts":["{junk}"],"x":{junk:?}}}}}"#
            )
            .into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn any_body_gets_a_client_error_or_success(
        body in body_strategy(),
        method in prop_oneof![Just(Method::POST), Just(Method::PUT), Just(Method::PATCH)],
        plural in prop_oneof![Just("services"), Just("hosts"), Just("projects"), Just("events"), Just("bogus")],
        yaml in any::<bool>(),
        status_path in any::<bool>(),
    ) {
        let (app, _dir, rt) = app();
        let uri = match method {
            Method::POST => format!("/apis/hostkit.dev/v1alpha1/{plural}"),
            _ if status_path => format!("/apis/hostkit.dev/v1alpha1/{plural}/x/status"),
            _ => format!("/apis/hostkit.dev/v1alpha1/{plural}/x"),
        };
        let content_type = if yaml { "application/yaml" } else { "application/json" };
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        let (code, bytes) = rt.block_on(async {
            let response = app.oneshot(request).await.unwrap();
            let code = response.status().as_u16();
            (code, response.into_body().collect().await.unwrap().to_bytes())
        });
        prop_assert!(code < 500, "server error {code}: {}", String::from_utf8_lossy(&bytes));
        if code >= 400 && code != 405 {
            let status: serde_json::Value = serde_json::from_slice(&bytes).expect("errors are JSON Status objects");
            prop_assert_eq!(&status["kind"], "Status");
            prop_assert!(!status["message"].as_str().unwrap_or("").is_empty());
        }
    }

    #[test]
    fn any_query_string_is_answered_without_a_server_error(query in "[a-zA-Z=&%0-9,!()._ -]{0,60}") {
        let (app, _dir, rt) = app();
        let uri = format!("/apis/hostkit.dev/v1alpha1/services?{}", query.replace(' ', "%20"));
        let Ok(request) = Request::builder()
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
        else {
            return Ok(());
        };
        let code = rt.block_on(async {
            let response = tokio::time::timeout(Duration::from_millis(500), app.oneshot(request)).await;
            // A valid watch query streams forever; an open stream is an answer too.
            response.map(|r| r.unwrap().status().as_u16()).unwrap_or(200)
        });
        prop_assert!(code < 500, "server error {code} for {query:?}");
    }
}
