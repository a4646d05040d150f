//! The workspace keeps its shape: the crates depend on each other in one direction only
//! (`controller → reconcilers → engine → api`, `hkctl → api`; the controller reaches the
//! engine only for the offline commands), and no two files import each other in a circle
//! unless one is the `mod.rs` of the other's folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `hostkit*` crates a member's `[dependencies]` names.
fn hostkit_deps(member: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join(member).join("Cargo.toml")).unwrap();
    let mut in_deps = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps
            && let Some(name) = line.split(['.', ' ', '=']).next()
            && name.starts_with("hostkit")
        {
            out.insert(name.to_string());
        }
    }
    out
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn crates_depend_in_one_direction() {
    assert_eq!(hostkit_deps("api"), set(&[]));
    assert_eq!(hostkit_deps("engine"), set(&["hostkit-api"]));
    assert_eq!(
        hostkit_deps("reconcilers"),
        set(&["hostkit-api", "hostkit-engine"])
    );
    assert_eq!(
        hostkit_deps("controller"),
        set(&["hostkit-api", "hostkit-engine", "hostkit-reconcilers"])
    );
    assert_eq!(hostkit_deps("hkctl"), set(&["hostkit-api"]));
    // The controller uses the engine for the offline commands only.
    let users: Vec<PathBuf> = rust_files(&root().join("controller/src"))
        .into_iter()
        .filter(|f| code_of(f).contains("hostkit_engine"))
        .collect();
    assert_eq!(
        users,
        [root().join("controller/src/offline.rs")],
        "only the offline commands reach the engine from the controller"
    );
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A file's code without its test module and line comments.
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `a::b` for `src/a/b.rs` and `src/a/b/mod.rs`; empty for `lib.rs`/`main.rs`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The `a::b::c` paths that follow `prefix` in `code`.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        out.push(rest[..end].split("::").filter(|s| !s.is_empty()).collect());
    }
    out
}

/// The cycles of the graph, as lists of modules.
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    // Kosaraju-free: a module is in a cycle with `m` when each reaches the other.
    let reach = |from: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(m) = stack.pop() {
            for n in edges.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    stack.push(n.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<_, _> = edges.keys().map(|m| (m.clone(), reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in edges.keys() {
        if done.contains(m) || !reachable[m].contains(m) {
            continue;
        }
        let comp: Vec<Vec<String>> = reachable[m]
            .iter()
            .filter(|n| reachable[*n].contains(m))
            .cloned()
            .collect();
        done.extend(comp.iter().cloned());
        out.push(comp);
    }
    out
}

#[test]
fn no_file_imports_another_in_a_circle() {
    for crate_dir in ["api", "engine", "reconcilers", "controller", "hkctl"] {
        let src = root().join(crate_dir).join("src");
        let files = rust_files(&src);
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
        let resolve = |parts: &[&str]| -> Option<Vec<String>> {
            (1..=parts.len()).rev().find_map(|n| {
                let m: Vec<String> = parts[..n].iter().map(|s| s.to_string()).collect();
                modules.contains(&m).then_some(m)
            })
        };
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for f in &files {
            let m = module_of(&src, f);
            let code = code_of(f);
            let mut to = BTreeSet::new();
            for p in paths_after(&code, "crate::") {
                to.extend(resolve(&p));
            }
            let parent = &m[..m.len().saturating_sub(1)];
            for p in paths_after(&code, "super::") {
                let full: Vec<&str> = parent.iter().map(String::as_str).chain(p).collect();
                to.extend(resolve(&full));
            }
            // A folder and its own files may use each other; the crate root is the hub.
            to.retain(|t| {
                !t.is_empty()
                    && *t != m
                    && t[..t.len() - 1] != m[..]
                    && m[..m.len().saturating_sub(1)] != t[..]
            });
            edges.insert(m, to);
        }
        let found = cycles(&edges);
        assert!(
            found.is_empty(),
            "{crate_dir}: files that import each other in a circle: {found:?}"
        );
    }
}
