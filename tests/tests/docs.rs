//! The docs cannot drift from the binaries: every ```console block of README.md and
//! docs/*.md is run, command by command, against a real `hostkit serve --controllers none`
//! (a fresh one per file; the blocks of one file share it, in order), in a folder where
//! `manifests/` is the repository's, with `hostkit` and `hkctl` on PATH and `SERVER` and
//! `TOKEN` naming the server and its admin token (for `curl`), and what each
//! command prints (stdout and stderr, as a terminal shows them) must be what the block
//! shows. Ages and timestamps may differ; a line `…` stands for any lines.

use std::path::{Path, PathBuf};
use std::process::Command;

use hostkit_e2e::server::{Hostkit, bin};

struct Step {
    command: String,
    expected: Vec<String>,
    line: usize,
}

/// The commands of every ```console block in `text`, with the output shown after each.
fn steps(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut inside = false;
    for (n, line) in text.lines().enumerate() {
        if !inside {
            inside = line.trim_end() == "```console";
            continue;
        }
        if line.starts_with("```") {
            inside = false;
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_string(),
                expected: Vec::new(),
                line: n + 1,
            });
        } else if let Some(step) = steps.last_mut() {
            step.expected.push(line.to_string());
        }
    }
    steps
}

/// A line as compared: words separated by single spaces, ages (`5s`, `3m`) and
/// timestamps replaced by placeholders.
fn normal(line: &str) -> String {
    line.split_whitespace()
        .map(|w| {
            let bare = w.trim_matches(|c| c == '(' || c == ')');
            let age = bare
                .strip_suffix(['s', 'm', 'h', 'd'])
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if age {
                w.replace(bare, "AGE")
            } else if chrono::DateTime::parse_from_rfc3339(bare).is_ok() {
                w.replace(bare, "TIME")
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `actual` is what `expected` shows (a `…` line matches any lines).
fn matches(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e.trim() == "…" => {
            (0..=actual.len()).any(|k| matches(rest, &actual[k..]))
        }
        Some((e, rest)) => actual
            .split_first()
            .is_some_and(|(a, more)| same_line(e, a) && matches(rest, more)),
    }
}

/// A shown line and a printed one; a shown line that ends in `…` only says how the printed
/// one begins.
fn same_line(shown: &str, printed: &str) -> bool {
    let (shown, printed) = (normal(shown), normal(printed));
    match shown.strip_suffix('…') {
        Some(start) => printed.starts_with(start.trim_end()),
        None => shown == printed,
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check(file: &str) -> usize {
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let steps = steps(&text);
    let s = Hostkit::embedded();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("manifests"), dir.path().join("manifests")).unwrap();
    let bin_dir = bin("hkctl").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut failures = Vec::new();
    for step in &steps {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{} 2>&1", step.command))
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("HKCTL_CONFIG", s.config_path())
            .env("SERVER", &s.url)
            .env("TOKEN", &s.token)
            .env_remove("HKCTL_SERVER")
            .env_remove("HKCTL_TOKEN")
            .env_remove("HKCTL_CONTEXT")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let trim = |lines: Vec<String>| {
            let mut l = lines;
            while l.last().is_some_and(|x| x.trim().is_empty()) {
                l.pop();
            }
            l
        };
        let actual = trim(text.lines().map(String::from).collect());
        let expected = trim(step.expected.clone());
        if !matches(&expected, &actual) {
            failures.push(format!(
                "{file}:{}: $ {}\n--- shown\n{}\n--- printed\n{}",
                step.line,
                step.command,
                expected.join("\n"),
                actual.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    steps.len()
}

#[test]
fn the_readme_shows_what_the_binaries_print() {
    assert!(check("README.md") >= 10, "the tour has its commands");
}

#[test]
fn getting_started_shows_what_the_binaries_print() {
    assert!(check("docs/getting-started.md") >= 4);
}

#[test]
fn every_doc_shows_what_the_binaries_print() {
    let mut steps = 0;
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".md") && name != "getting-started.md" {
            steps += check(&format!("docs/{name}"));
        }
    }
    assert!(steps >= 2, "docs/api.md's error body is among them");
}

#[test]
fn blocks_are_read_and_compared_as_documented() {
    let text = "x\n```console\n$ echo a\na\n$ true\n```\n```sh\n$ not run\n```\n";
    let s = steps(text);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].expected, ["a"]);
    let shown = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(matches(
        &shown(&["NAME   AGE", "web    5s"]),
        &shown(&["NAME AGE", "web 2m"])
    ));
    assert!(!matches(&shown(&["web 5s"]), &shown(&["api 5s"])));
    assert!(matches(
        &shown(&["a", "…", "z"]),
        &shown(&["a", "b", "c", "z"])
    ));
    assert!(matches(&shown(&["a", "…"]), &shown(&["a"])));
    assert!(!matches(&shown(&["a", "…", "z"]), &shown(&["a", "b"])));
    assert!(matches(&shown(&["error: x…"]), &shown(&["error: x y z"])));
    assert!(!matches(&shown(&["error: x…"]), &shown(&["error: y"])));
}
