//! End to end: the day-2 verbs of hkctl (`label`, `annotate`, `patch`, `suspend`/`resume`,
//! `create`, `replace`, `api-resources`, output formats) against the real `hostkit serve`.
//! The example manifests name outside machines, so these servers run no controllers: the
//! verbs are about what the API stores and prints, and nothing may connect out.

use hostkit_e2e::server::{Hostkit, stderr, stdout};
use serde_json::Value;

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
    let s = Hostkit::with_examples();
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
    let s = Hostkit::with_examples();
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
    let s = Hostkit::with_examples();
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
    let s = Hostkit::with_examples();
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

#[test]
fn output_as_jsonpath_and_custom_columns_sorted_without_headers_and_with_labels() {
    let s = Hostkit::with_examples();
    let o = s.hkctl_ok(&[
        "get",
        "svc",
        "-o",
        "jsonpath={.items[*].metadata.name}",
        "--sort-by",
        ".metadata.name",
    ]);
    assert_eq!(stdout(&o), "api exograph hex-mirror");
    let o = s.hkctl_ok(&[
        "get",
        "svc",
        "exograph",
        "-o",
        r#"jsonpath={.metadata.name}{"\t"}{.spec.hosts[0]}{"\n"}"#,
    ]);
    assert_eq!(
        stdout(&o),
        "exograph\telixir-toys\n",
        "one named object, not a List"
    );
    let o = s.hkctl_ok(&[
        "get",
        "svc",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}={.spec.project}{"\n"}{end}"#,
        "--sort-by={.metadata.name}",
    ]);
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines.contains(&"exograph=toys"), "{lines:?}");

    let o = s.hkctl_ok(&[
        "get",
        "svc",
        "-o",
        "custom-columns=NAME:.metadata.name,PROJECT:.spec.project,NOPE:.spec.nothing",
        "--sort-by",
        ".metadata.name",
    ]);
    let text = stdout(&o);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "PROJECT", "NOPE"], "{text}");
    assert_eq!(rows[2][0], "exograph", "sorted: {text}");
    assert_eq!(rows[2][2], "<none>", "{text}");
    let o = s.hkctl_ok(&[
        "get",
        "svc",
        "--no-headers",
        "-o",
        "custom-columns=NAME:.metadata.name",
        "--sort-by",
        ".metadata.name",
    ]);
    assert_eq!(stdout(&o), "api\nexograph\nhex-mirror\n");
    let o = s.hkctl_ok(&["get", "svc", "--no-headers"]);
    assert!(!stdout(&o).contains("NAME"), "{}", stdout(&o));

    s.hkctl_ok(&["label", "project/toys", "team=search"]);
    let o = s.hkctl_ok(&["get", "projects", "--show-labels"]);
    let text = stdout(&o);
    assert!(text.lines().next().unwrap().ends_with("LABELS"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("toys ") && l.ends_with("team=search")),
        "{text}"
    );

    for bad in ["jsonpath={.items[", "custom-columns=NAME", "yml"] {
        let o = s.hkctl(&["get", "svc", "-o", bad]);
        assert_eq!(
            o.status.code(),
            Some(2),
            "clap refuses -o {bad}: {}",
            stderr(&o)
        );
        assert!(
            stderr(&o).contains("-o") || stderr(&o).contains("--output"),
            "{}",
            stderr(&o)
        );
    }
    fails_with(&s, &["get", "svc", "--sort-by", ".a["], "JSONPath");
}

#[test]
fn several_kinds_and_all_are_listed_kind_by_kind() {
    let s = Hostkit::with_examples();
    let o = s.hkctl_ok(&["get", "svc,hosts"]);
    let text = stdout(&o);
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "{text}");
    assert!(
        blocks[0].lines().skip(1).all(|l| l.starts_with("service/")),
        "{text}"
    );
    assert!(
        blocks[1].lines().skip(1).all(|l| l.starts_with("host/")),
        "{text}"
    );
    assert!(
        blocks[1].lines().next().unwrap().contains("ADDRESS"),
        "{text}"
    );

    let o = s.hkctl_ok(&["get", "all", "-o", "name"]);
    let names = stdout(&o);
    for wanted in [
        "service/exograph",
        "host/elixir-toys",
        "project/toys",
        "policywindow/weeknights",
        "gitsource/infra",
        "instance/demo-vm",
        "rollback/exograph-undo",
    ] {
        assert!(names.lines().any(|l| l == wanted), "{wanted} in {names}");
    }
    assert!(
        !names.contains("event/") && !names.contains("revision/"),
        "{names}"
    );
    let o = s.hkctl_ok(&["get", "svc,projects", "-o", "json"]);
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let kinds: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"Service") && kinds.contains(&"Project"),
        "{kinds:?}"
    );
    fails_with(&s, &["get", "svc,hosts", "exograph"], "several kinds");
    fails_with(&s, &["get", "svc,nope"], "unknown kind");
}

/// A watched table lines up (the header comes with the first row and again when a wider
/// name widens the column), and a write that changes nothing it shows prints nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_table_lines_up_and_prints_a_row_only_when_a_column_changes() {
    use std::io::{BufRead, BufReader};
    use std::time::Duration;
    let s = Hostkit::embedded();
    let mut watcher = hostkit_e2e::KillOnDrop(
        s.hkctl_command(&["get", "projects", "-w"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = watcher.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(10)).expect("a line");
    let project = |name: &str, data: &str| {
        format!(
            "apiVersion: hostkit.dev/v1alpha1\nkind: Project\nmetadata: {{name: {name}}}\nspec: {{roots: {{data: {data}}}}}\n"
        )
    };
    // Give hkctl time to list (an empty list prints nothing).
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.apply_yaml(&project("a", "/srv/a"));
    let header = next();
    let row = next();
    assert!(header.starts_with("NAME"), "{header}");
    assert!(row.starts_with("a "), "{row}");
    let column = |line: &str, cell: &str| line.find(cell).expect("cell");
    assert_eq!(
        column(&header, "DATA"),
        column(&row, "/srv/a"),
        "\n{header}\n{row}"
    );

    s.apply_yaml(&project("a-much-longer-project-name", "/srv/b"));
    let header2 = next();
    let row2 = next();
    assert!(
        header2.starts_with("NAME"),
        "a wider name prints the header again: {header2}"
    );
    assert_eq!(
        column(&header2, "DATA"),
        column(&row2, "/srv/b"),
        "\n{header2}\n{row2}"
    );

    // A status-only write changes no column: nothing is printed for it.
    let url = format!("{}/apis/hostkit.dev/v1alpha1/projects/a/status", s.url);
    let r = reqwest::Client::new()
        .put(&url)
        .bearer_auth(&s.token)
        .json(&serde_json::json!({"apiVersion": "hostkit.dev/v1alpha1", "kind": "Project", "metadata": {"name": "a"}, "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Checked", "message": "", "lastTransitionTime": "2026-12-01T00:00:00Z"}]}}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    // A change to a shown column is printed.
    s.apply_yaml(&project("a", "/srv/c"));
    let row3 = next();
    assert!(
        row3.starts_with("a ") && row3.contains("/srv/c"),
        "the status write printed nothing, the DATA change a row: {row3}"
    );
    assert_eq!(
        column(&header2, "DATA"),
        column(&row3, "/srv/c"),
        "\n{header2}\n{row3}"
    );
}

/// `hostkit serve --controllers none` (what these servers run) stores and serves the
/// example manifests and reconciles none of them: no status, no events, no finalizers, so
/// nothing reached for the outside machines they name.
#[test]
fn a_server_without_controllers_reconciles_nothing() {
    let s = Hostkit::with_examples();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let o = s.hkctl_ok(&["get", "all", "-o", "json"]);
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let items = list["items"].as_array().unwrap();
    assert!(items.len() >= 9, "{list}");
    for i in items {
        assert!(i.get("status").is_none(), "{i}");
        assert!(i.pointer("/metadata/finalizers").is_none(), "{i}");
    }
    let o = s.hkctl_ok(&["get", "events", "-o", "name"]);
    assert_eq!(stdout(&o), "", "no events");
}

/// `hkctl edit` with a scripted `$EDITOR`: the edit is written back; a refused one opens
/// again with the server's reason on top and the edit kept; an emptied file changes nothing.
#[test]
fn edit_writes_back_reopens_on_a_refusal_and_cancels_on_an_empty_file() {
    use std::os::unix::fs::PermissionsExt;
    let s = Hostkit::embedded();
    s.apply_yaml(
        "apiVersion: hostkit.dev/v1alpha1\nkind: Project\nmetadata: {name: scratch}\nspec: {}\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\nset -e\n{body}")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    };
    let edit = |editor: &str| {
        // Under `timeout`: an edit that loops must fail the test, not hang it.
        let o = std::process::Command::new("timeout")
            .arg("60")
            .arg(hostkit_e2e::server::bin("hkctl"))
            .args(["edit", "project/scratch"])
            .env("HKCTL_CONFIG", s.config_path())
            .env("EDITOR", editor)
            .env_remove("VISUAL")
            .output()
            .unwrap();
        (o.status.code(), stdout(&o), stderr(&o))
    };
    let label = script(
        "label.sh",
        "sed -i 's/^  name: scratch$/  name: scratch\\n  labels: {edited: \"yes\"}/' \"$1\"\n",
    );
    let (code, out, err) = edit(&label);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "project/scratch edited\n"),
        "{err}"
    );
    let p = s.get("project", "scratch").unwrap();
    assert_eq!(at(&p, "/metadata/labels/edited"), "yes", "{p}");

    // First save refused (a field Projects do not have), the second fixes it.
    let seen = dir.path().join("seen.txt");
    let twice = script(
        "twice.sh",
        &format!(
            "if grep -q '^# error:' \"$1\"; then cp \"$1\" {seen}; sed -i '/bogus/d; s/edited: .*/edited: twice/' \"$1\"; else sed -i 's/^spec:.*/spec:\\n  bogus: 1/' \"$1\"; fi\n",
            seen = seen.display()
        ),
    );
    let (code, out, err) = edit(&twice);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("opens again"), "{err}");
    let reopened = std::fs::read_to_string(&seen).unwrap();
    assert!(
        reopened.contains("# error:") && reopened.contains("bogus"),
        "{reopened}"
    );
    assert!(
        reopened.contains("bogus: 1"),
        "the refused edit is kept for fixing:\n{reopened}"
    );
    let p = s.get("project", "scratch").unwrap();
    assert_eq!(at(&p, "/metadata/labels/edited"), "twice", "{p}");
    assert!(p.pointer("/spec/bogus").is_none());

    let before = s.get("project", "scratch").unwrap();
    let empty = script("empty.sh", ": > \"$1\"\n");
    let (code, out, _) = edit(&empty);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "Edit cancelled, no changes made.\n")
    );
    let unchanged = script("same.sh", "true\n");
    let (_, out, _) = edit(&unchanged);
    assert_eq!(out, "Edit cancelled, no changes made.\n");
    assert_eq!(s.get("project", "scratch").unwrap(), before);
    // Saving the refused text again ends the edit instead of reopening it for ever.
    let stubborn = script(
        "stubborn.sh",
        "grep -q '^# error:' \"$1\" || sed -i 's/^spec:.*/spec:\\n  bogus: 1/' \"$1\"\n",
    );
    let (code, _, err) = edit(&stubborn);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("saved unchanged after the error"), "{err}");
    assert_eq!(s.get("project", "scratch").unwrap(), before);
    let failing = script("fail.sh", "exit 3\n");
    let (code, _, err) = edit(&failing);
    assert_eq!(code, Some(1));
    assert!(err.contains("nothing was changed"), "{err}");
}
