//! End to end: what hkctl does on the client's side — choosing a server from the config
//! file's contexts, and completing kinds and names from the server — against real
//! `hostkit serve --controllers none` servers.

use hostkit_e2e::server::{Hostkit, stderr, stdout};

/// Two servers, one config file with a context for each: `--context` picks one for a
/// command, `use-context` switches, and the file (which holds tokens) stays private.
#[test]
fn contexts_in_the_config_file_choose_the_server() {
    use std::os::unix::fs::PermissionsExt;
    let one = Hostkit::embedded();
    let two = Hostkit::embedded();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let hk = |args: &[&str]| {
        let o = std::process::Command::new(hostkit_e2e::server::bin("hkctl"))
            .args(args)
            .env("HKCTL_CONFIG", &config)
            .env_remove("HKCTL_SERVER")
            .env_remove("HKCTL_TOKEN")
            .env_remove("HKCTL_CONTEXT")
            .output()
            .unwrap();
        (o.status.code(), stdout(&o), stderr(&o))
    };
    for (name, s) in [("one", &one), ("two", &two)] {
        let (code, out, err) = hk(&[
            "config",
            "set-context",
            name,
            "--server",
            &s.url,
            "--token",
            &s.token,
        ]);
        assert_eq!(code, Some(0), "{out}{err}");
        assert_eq!(out, format!("Context \"{name}\" created.\n"));
    }
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the config holds tokens");
    let (code, _, err) = hk(&["get", "projects"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no server configured"), "{err}");

    one.apply_yaml("apiVersion: hostkit.dev/v1alpha1\nkind: Project\nmetadata: {name: only-on-one}\nspec: {}\n");
    let (_, out, _) = hk(&["--context", "one", "get", "projects", "-o", "name"]);
    assert_eq!(out, "project/only-on-one\n");
    let (_, out, _) = hk(&["--context", "two", "get", "projects", "-o", "name"]);
    assert_eq!(out, "");

    let (code, out, _) = hk(&["config", "use-context", "two"]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "Switched to context \"two\".\n")
    );
    let (_, out, _) = hk(&["config", "get-contexts"]);
    let current: Vec<&str> = out.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(current.len(), 1, "{out}");
    assert!(
        current[0].contains("two") && current[0].contains(&two.url),
        "{out}"
    );
    let (_, out, _) = hk(&["config", "current-context"]);
    assert_eq!(out, "two\n");
    let (_, out, _) = hk(&["get", "projects", "-o", "name"]);
    assert_eq!(out, "", "the current context is two");
    let (_, out, _) = hk(&["config", "view"]);
    assert!(
        !out.contains(&one.token) && !out.contains(&two.token),
        "{out}"
    );
    assert!(out.contains("REDACTED"), "{out}");

    let (code, _, err) = hk(&["--context", "three", "get", "projects"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no context \"three\"") && err.contains("one, two"),
        "{err}"
    );
    let (code, _, err) = hk(&["config", "set-context", "three"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("needs --server"), "{err}");
    let (code, _, _) = hk(&["config", "delete-context", "two"]);
    assert_eq!(code, Some(0));
    let (code, _, err) = hk(&["config", "current-context"]);
    assert_eq!(code, Some(1), "{err}");
}

/// Completion asks the server for object names after `KIND/` (`source <(COMPLETE=bash
/// hkctl)`), completes kinds by every spelling, and gives up on a dead server at once.
#[test]
fn completion_offers_kinds_and_the_servers_object_names() {
    let s = Hostkit::with_examples();
    let complete = |config: &std::path::Path, words: &[&str]| {
        let index = (words.len() - 1).to_string();
        let started = std::time::Instant::now();
        let o = std::process::Command::new(hostkit_e2e::server::bin("hkctl"))
            .arg("--")
            .args(words)
            .env("COMPLETE", "bash")
            .env("_CLAP_COMPLETE_INDEX", index)
            .env("_CLAP_IFS", "\n")
            .env("HKCTL_CONFIG", config)
            .env_remove("HKCTL_SERVER")
            .env_remove("HKCTL_TOKEN")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let mut got: Vec<String> = stdout(&o).lines().map(String::from).collect();
        got.sort();
        (got, started.elapsed())
    };
    let (got, _) = complete(&s.config_path(), &["hkctl", "get", "svc/ex"]);
    assert_eq!(got, ["svc/exograph"]);
    let (got, _) = complete(&s.config_path(), &["hkctl", "describe", "service/"]);
    assert_eq!(
        got,
        ["service/api", "service/exograph", "service/hex-mirror"]
    );
    let (got, _) = complete(&s.config_path(), &["hkctl", "label", "host/"]);
    assert!(got.contains(&"host/elixir-toys".to_string()), "{got:?}");
    let (got, _) = complete(&s.config_path(), &["hkctl", "get", "svc", "ex"]);
    assert_eq!(got, ["exograph"], "a name after a bare kind");
    let (got, _) = complete(&s.config_path(), &["hkctl", "describe", "host", ""]);
    assert!(got.contains(&"elixir-toys".to_string()), "{got:?}");
    let (got, _) = complete(&s.config_path(), &["hkctl", "get", "gits"]);
    assert_eq!(got, ["gitsource", "gitsources"]);

    let dead = s.dir().join("dead.yaml");
    std::fs::write(
        &dead,
        format!("server: http://127.0.0.1:{}\n", hostkit_e2e::free_port()),
    )
    .unwrap();
    let (got, took) = complete(&dead, &["hkctl", "get", "svc/"]);
    assert!(got.is_empty(), "{got:?}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}
