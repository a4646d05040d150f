//! End to end: the day-2 verbs of hkctl (`label`, `annotate`, `patch`, `suspend`/`resume`,
//! `create`, `replace`, `api-resources`, output formats) against the real `hostkit serve`.
//! The example manifests name outside machines, so these servers run no controllers: the
//! verbs are about what the API stores and prints, and nothing may connect out.

use hostkit_e2e::server::{Hostkit, examples_dir, stderr, stdout};
use serde_json::Value;

fn examples_server() -> Hostkit {
    let s = Hostkit::embedded();
    s.hkctl_ok(&["apply", "-f", &examples_dir().display().to_string()]);
    s
}

fn fails_with(s: &Hostkit, args: &[&str], wanted: &str) -> String {
    let o = s.hkctl(args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "hkctl {}: {}{err}",
        args.join(" "),
        stdout(&o)
    );
    assert!(err.contains(wanted), "hkctl {}: {err}", args.join(" "));
    err
}

fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&Value::Null)
}

/// A flag as stored: `false` is the default and not written out.
fn flag(v: &Value, pointer: &str) -> bool {
    v.pointer(pointer).and_then(Value::as_bool).unwrap_or(false)
}

#[test]
fn labels_and_annotations_are_set_overwritten_only_when_asked_and_removed() {
    let s = examples_server();
    let o = s.hkctl_ok(&["label", "host/elixir-toys", "tier=canary"]);
    assert_eq!(stdout(&o), "host/elixir-toys labeled\n");
    let h = s.get("host", "elixir-toys").expect("host");
    assert_eq!(at(&h, "/metadata/labels/tier"), "canary");
    let generation = at(&h, "/metadata/generation").clone();

    fails_with(
        &s,
        &["label", "host", "elixir-toys", "tier=stable"],
        "pass --overwrite",
    );
    assert_eq!(
        at(
            &s.get("host", "elixir-toys").unwrap(),
            "/metadata/labels/tier"
        ),
        "canary",
        "a refused label change stores nothing"
    );
    s.hkctl_ok(&["label", "host", "elixir-toys", "tier=stable", "--overwrite"]);
    let h = s.get("host", "elixir-toys").expect("host");
    assert_eq!(at(&h, "/metadata/labels/tier"), "stable");
    assert_eq!(
        at(&h, "/metadata/generation"),
        &generation,
        "labels are not spec: no new generation"
    );
    let o = s.hkctl_ok(&["label", "host/elixir-toys", "tier=stable"]);
    assert_eq!(stdout(&o), "host/elixir-toys not labeled\n");
    s.hkctl_ok(&["label", "host/elixir-toys", "tier-"]);
    let h = s.get("host", "elixir-toys").expect("host");
    assert!(at(&h, "/metadata/labels/tier").is_null(), "{h}");

    // The server validates the result as a whole object.
    fails_with(
        &s,
        &["label", "host/elixir-toys", "bad key=x"],
        "metadata.labels",
    );
    fails_with(&s, &["label", "host/elixir-toys", "tier"], "key=value");

    let o = s.hkctl_ok(&["annotate", "svc/exograph", "owner=team-search"]);
    assert_eq!(stdout(&o), "service/exograph annotated\n");
    let v = s.get("service", "exograph").expect("service");
    assert_eq!(at(&v, "/metadata/annotations/owner"), "team-search");
    s.hkctl_ok(&["annotate", "svc/exograph", "owner-"]);
    let v = s.get("service", "exograph").expect("service");
    assert!(at(&v, "/metadata/annotations/owner").is_null(), "{v}");
}

#[test]
fn patch_merges_or_runs_json_operations_and_stores_nothing_invalid() {
    let s = examples_server();
    let before = s.get("service", "exograph").expect("service");
    let o = s.hkctl_ok(&["patch", "svc/exograph", "-p", "spec: {paused: true}"]);
    assert_eq!(stdout(&o), "service/exograph patched\n");
    let v = s.get("service", "exograph").expect("service");
    assert!(flag(&v, "/spec/paused"));
    assert_eq!(
        at(&v, "/metadata/generation").as_i64(),
        at(&before, "/metadata/generation").as_i64().map(|g| g + 1),
        "a spec patch is a new generation"
    );
    assert_eq!(
        at(&v, "/spec/daemon"),
        at(&before, "/spec/daemon"),
        "only paused changed"
    );

    // A JSON patch whose test fails changes nothing.
    fails_with(
        &s,
        &[
            "patch",
            "svc/exograph",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/spec/paused","value":false},{"op":"replace","path":"/spec/paused","value":false}]"#,
        ],
        "JSON patch failed",
    );
    assert!(flag(&s.get("service", "exograph").unwrap(), "/spec/paused"));
    s.hkctl_ok(&[
        "patch",
        "svc",
        "exograph",
        "--type",
        "json",
        "-p",
        r#"[{"op":"test","path":"/spec/paused","value":true},{"op":"replace","path":"/spec/paused","value":false}]"#,
    ]);
    assert!(!flag(
        &s.get("service", "exograph").unwrap(),
        "/spec/paused"
    ));

    // A patch that makes the object invalid is refused with the field; nothing is stored.
    let stored = s.get("service", "exograph").expect("service");
    let err = fails_with(
        &s,
        &[
            "patch",
            "svc/exograph",
            "-p",
            r#"{"spec":{"daemon":{"user":"root\nExecStartPre=/bin/sh"}}}"#,
        ],
        "spec.daemon.user",
    );
    assert!(err.contains("exograph"), "{err}");
    assert_eq!(s.get("service", "exograph").unwrap(), stored);
    fails_with(
        &s,
        &[
            "patch",
            "svc/exograph",
            "-p",
            r#"{"metadata":{"name":"other"}}"#,
        ],
        "cannot rename",
    );
    let o = s.hkctl_ok(&[
        "patch",
        "svc/exograph",
        "-p",
        "spec: {paused: false}",
        "--dry-run",
    ]);
    assert_eq!(
        stdout(&o),
        "service/exograph patched (no change) (dry run)\n"
    );
}

#[test]
fn suspend_and_resume_pause_services_and_hosts_and_suspend_gitsources() {
    let s = examples_server();
    for (target, kind, name, field) in [
        ("service/exograph", "service", "exograph", "/spec/paused"),
        ("host/elixir-toys", "host", "elixir-toys", "/spec/paused"),
        ("gs/infra", "gitsource", "infra", "/spec/suspend"),
    ] {
        let o = s.hkctl_ok(&["suspend", target]);
        assert!(stdout(&o).contains("suspended"), "{}", stdout(&o));
        assert!(flag(&s.get(kind, name).unwrap(), field), "{target}");
        let o = s.hkctl_ok(&["suspend", target]);
        assert!(stdout(&o).contains("already suspended"), "{}", stdout(&o));
        let o = s.hkctl_ok(&["resume", target]);
        assert!(stdout(&o).ends_with("resumed\n"), "{}", stdout(&o));
        assert!(!flag(&s.get(kind, name).unwrap(), field), "{target}");
    }
    fails_with(
        &s,
        &["suspend", "policywindow/weeknights"],
        "cannot be suspended",
    );
    fails_with(&s, &["suspend", "service"], "needs an object");
}

#[test]
fn create_refuses_what_exists_and_replace_refuses_a_stale_copy() {
    let s = examples_server();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.yaml");
    std::fs::write(
        &file,
        "apiVersion: hostkit.dev/v1alpha1\nkind: Project\nmetadata: {name: scratch}\nspec: {}\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let o = s.hkctl_ok(&["create", "-f", f]);
    assert_eq!(stdout(&o), "project/scratch created\n");
    fails_with(&s, &["create", "-f", f], "already exists");

    // replace: the whole object, labels included, as the file has it.
    s.hkctl_ok(&["label", "project/scratch", "team=a"]);
    let o = s.hkctl_ok(&["replace", "-f", f]);
    assert_eq!(stdout(&o), "project/scratch replaced\n");
    let p = s.get("project", "scratch").expect("project");
    assert!(at(&p, "/metadata/labels/team").is_null(), "{p}");

    // A copy read before someone else's write is refused.
    let o = s.hkctl_ok(&["get", "project", "scratch", "-o", "yaml"]);
    std::fs::write(&file, stdout(&o)).unwrap();
    s.hkctl_ok(&["label", "project/scratch", "team=b"]);
    fails_with(&s, &["replace", "-f", f], "changed by someone else");
    let gone = dir.path().join("gone.yaml");
    std::fs::write(
        &gone,
        "apiVersion: hostkit.dev/v1alpha1\nkind: Project\nmetadata: {name: nope}\nspec: {}\n",
    )
    .unwrap();
    fails_with(&s, &["replace", "-f", gone.to_str().unwrap()], "not found");
}

#[test]
fn kinds_are_listed_and_misspelled_ones_get_a_suggestion() {
    let s = Hostkit::embedded();
    let o = s.hkctl_ok(&["api-resources"]);
    let text = stdout(&o);
    let header = text.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("SHORTNAMES") && header.ends_with("KIND"),
        "{text}"
    );
    let services = text
        .lines()
        .find(|l| l.starts_with("services "))
        .unwrap_or_else(|| panic!("{text}"));
    let cells: Vec<&str> = services.split_whitespace().collect();
    assert_eq!(
        cells,
        ["services", "svc", "hostkit.dev/v1alpha1", "Service"]
    );
    let o = s.hkctl_ok(&["api-resources", "-o", "name"]);
    assert!(
        stdout(&o).lines().any(|l| l == "gitsources"),
        "{}",
        stdout(&o)
    );

    for typo in ["servce", "Servce", "hostz", "gitsorce"] {
        let err = fails_with(&s, &["get", typo], "did you mean");
        assert!(
            err.contains(match typo {
                "hostz" => "\"host\"",
                "gitsorce" => "\"gitsource\"",
                _ => "\"service\"",
            }),
            "{typo}: {err}"
        );
    }
    let err = fails_with(&s, &["get", "zzzzzz"], "unknown kind");
    assert!(!err.contains("did you mean"), "{err}");

    // A field the kind does not have is refused, not matched against nothing.
    let err = fails_with(
        &s,
        &["get", "svc", "--field-selector", "spec.projet=toys"],
        "does not exist",
    );
    assert!(err.contains("project"), "names the valid fields: {err}");
    s.hkctl_ok(&["get", "svc", "--field-selector", "spec.project=toys"]);
}
