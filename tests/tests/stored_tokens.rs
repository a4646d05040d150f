//! Tokens in the store: minted with `hostkit token create`, honoured by every replica on
//! one etcd (each replica's admin.token too), listed without their texts, and revoked
//! everywhere at once. Real `hostkit serve` ×2 on a real etcd.

use std::process::Command;

use hostkit_e2e::etcd::EtcdServer;
use hostkit_e2e::server::{Hostkit, bin, stderr, stdout};

/// `hostkit token …` against `s` with `token`.
fn token_cmd(s: &Hostkit, token: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(bin("hostkit"))
        .arg("token")
        .args(args)
        .args(["--server", &s.url, "--token", token])
        .env("HKCTL_CONFIG", s.config_path())
        .output()
        .unwrap();
    (o.status.code(), stdout(&o), stderr(&o))
}

/// `hkctl …` against `s` with `token`.
fn hkctl_as(s: &Hostkit, token: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let o = s
        .hkctl_command(args)
        .args(["--server", &s.url, "--token", token])
        .output()
        .unwrap();
    (o.status.code(), stdout(&o), stderr(&o))
}

const PROJECT: &str =
    "apiVersion: hostkit.dev/v1alpha1\nkind: Project\nmetadata: {name: p}\nspec: {}\n";

#[test]
fn a_stored_token_works_on_every_replica_until_revoked_on_any() {
    let etcd = EtcdServer::start();
    let a = Hostkit::with_etcd(&etcd.url);
    let b = Hostkit::with_etcd(&etcd.url);
    let manifest = a.dir().join("p.yaml");
    std::fs::write(&manifest, PROJECT).unwrap();
    let manifest = manifest.to_str().unwrap();

    // One replica's admin.token works on the other.
    let (code, out, err) = hkctl_as(&b, &a.token, &["apply", "-f", manifest]);
    assert_eq!(code, Some(0), "{out}{err}");

    let (code, minted, err) = token_cmd(
        &a,
        &a.token,
        &["create", "--role", "read-only", "--name", "grafana"],
    );
    assert_eq!(code, Some(0), "{err}");
    let reader = minted.trim().to_string();
    assert_eq!(reader.len(), 64, "{minted}");
    assert!(err.contains("shown this once"), "{err}");

    let (code, out, err) = hkctl_as(&b, &reader, &["get", "projects", "-o", "name"]);
    assert_eq!((code, out.as_str()), (Some(0), "project/p\n"), "{err}");
    let (code, _, err) = hkctl_as(&b, &reader, &["label", "project/p", "x=y"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("may only read"), "{err}");
    let (code, _, err) = token_cmd(&b, &reader, &["create", "--role", "admin"]);
    assert_eq!(code, Some(1), "a reader cannot mint tokens");
    assert!(err.contains("may only read"), "{err}");
    let (code, _, err) = token_cmd(&b, &reader, &["list"]);
    assert_eq!(code, Some(1), "nor list them: {err}");

    let (code, list, err) = token_cmd(&b, &b.token, &["list"]);
    assert_eq!(code, Some(0), "{err}");
    let header = list.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("ID") && header.contains("ROLE"),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.contains("grafana") && l.contains("read-only")),
        "{list}"
    );
    assert_eq!(
        list.lines()
            .filter(|l| l.contains("bootstrap-admin"))
            .count(),
        2,
        "each replica registered its admin.token: {list}"
    );
    for secret in [&reader, &a.token, &b.token] {
        assert!(!list.contains(secret.as_str()), "{list}");
    }

    // The store has digests, not tokens.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let raw = rt.block_on(async {
        let store =
            hostkit_controller::store::etcd::EtcdStore::connect(std::slice::from_ref(&etcd.url))
                .await
                .unwrap();
        let list = hostkit_controller::store::Store::list(&store, "/hostkit-auth/")
            .await
            .unwrap();
        list.items
            .iter()
            .map(|kv| format!("{} {}", kv.key, String::from_utf8_lossy(&kv.value)))
            .collect::<Vec<_>>()
            .join("\n")
    });
    assert_eq!(raw.lines().count(), 3, "{raw}");
    for secret in [&reader, &a.token, &b.token] {
        assert!(
            !raw.contains(secret.as_str()),
            "a token in the store:\n{raw}"
        );
    }

    let (code, out, err) = token_cmd(&b, &b.token, &["revoke", "grafana"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("revoked"), "{out}");
    let (code, _, err) = hkctl_as(&a, &reader, &["get", "projects"]);
    assert_eq!(code, Some(1), "revoked on b, refused by a at once");
    assert!(err.contains("no valid bearer token"), "{err}");

    let (code, _, err) = token_cmd(&a, &a.token, &["revoke", "bootstrap-admin"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("revoke one by id"),
        "two share that name: {err}"
    );
    let (code, _, err) = token_cmd(&a, &a.token, &["create", "--role", "root"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("admin or read-only"), "{err}");
    let (code, _, err) = token_cmd(
        &a,
        &a.token,
        &["create", "--role", "admin", "--name", "a b"],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("token name"), "{err}");
}

#[test]
fn an_admin_token_minted_on_the_embedded_store_writes() {
    let s = Hostkit::embedded();
    let (code, minted, err) =
        token_cmd(&s, &s.token, &["create", "--role", "admin", "--name", "ci"]);
    assert_eq!(code, Some(0), "{err}");
    let ci = minted.trim().to_string();
    let manifest = s.dir().join("p.yaml");
    std::fs::write(&manifest, PROJECT).unwrap();
    let (code, out, err) = hkctl_as(&s, &ci, &["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "project/p created\n"),
        "{err}"
    );
    // Who changed it is the token's name.
    let p = s.get("project", "p").unwrap();
    assert_eq!(
        p.pointer("/metadata/annotations/hostkit.dev~1changed-by")
            .and_then(serde_json::Value::as_str),
        Some("user/ci"),
        "{p}"
    );
    let (_, list, _) = token_cmd(&s, &s.token, &["list"]);
    let id = list
        .lines()
        .find(|l| l.contains(" ci "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{list}"))
        .to_string();
    let (code, _, err) = token_cmd(&s, &s.token, &["revoke", &id]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, _) = hkctl_as(&s, &ci, &["get", "projects"]);
    assert_eq!(code, Some(1));
}
