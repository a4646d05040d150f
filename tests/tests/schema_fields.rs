//! Every field a user can write is read by something that acts on it: this walks each
//! kind's `spec` schema (as `hostkit schemas` writes it) and looks for each field's Rust
//! name in the crates that act — engine, reconcilers, controller, hkctl — as a field access
//! or a pattern. A field that only the API parses and validates is a silent lie to the
//! user, and fails here. Fields the API itself turns into behaviour through a method are
//! listed with that method, which must be called outside the API.
//!
//! It is a net, not a proof: a field whose name other code also uses (`path`, `mode`) passes
//! on that mention. Its worth is the new field nobody wired up, which fails at once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// `(schema field, API method that reads it)`: read inside the API on behalf of the
/// crates that call the method.
const READ_THROUGH: &[(&str, &str)] = &[("hostSelector", "selects")];

fn rust_name(field: &str) -> String {
    let mut out = String::new();
    for c in field.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    match out.as_str() {
        "as" | "type" => format!("{out}_"),
        _ => out,
    }
}

fn sources(root: &Path, out: &mut String) {
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
            out.push('\n');
        }
    }
}

/// Whether `code` uses `name` as a field: `.name`, or in a pattern or initializer
/// (`name,` `name:` `name }`), as a whole word.
fn reads(code: &str, name: &str) -> bool {
    let bytes = code.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    code.match_indices(name).any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(i + name.len()).copied();
        let whole = !before.is_some_and(word) && !after.is_some_and(word);
        whole && (before == Some(b'.') || matches!(after, Some(b',' | b':' | b' ' | b'}' | b')')))
    })
}

/// Every `(path, field)` under `node`, following `$ref`s into `defs` (each definition once
/// per path, so recursive types end).
fn fields(
    node: &Value,
    defs: &Value,
    path: &str,
    seen: &mut BTreeSet<String>,
    out: &mut Vec<(String, String)>,
) {
    if let Some(r) = node.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        if name == "ObjectMeta"
            || name.ends_with("Status")
            || !seen.insert(format!("{name}@{path}"))
        {
            return;
        }
        fields(&defs[name], defs, path, seen, out);
        return;
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for n in node
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            fields(n, defs, path, seen, out);
        }
    }
    if let Some(items) = node.get("items").filter(|i| i.is_object()) {
        fields(items, defs, &format!("{path}[]"), seen, out);
    }
    if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
        fields(values, defs, &format!("{path}{{}}"), seen, out);
    }
    for (name, sub) in node
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        out.push((format!("{path}.{name}"), name.clone()));
        fields(sub, defs, &format!("{path}.{name}"), seen, out);
    }
}

#[test]
fn every_spec_field_of_every_kind_is_read_by_what_acts_on_it() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut acting = String::new();
    for krate in [
        "engine/src",
        "reconcilers/src",
        "controller/src",
        "hkctl/src",
    ] {
        sources(&root.join(krate), &mut acting);
    }
    let mut api = String::new();
    sources(&root.join("api/src"), &mut api);
    let mut unread = Vec::new();
    let mut walked = 0;
    for (file, text) in hostkit_api::schema::all_schemas() {
        // Events are records the controller writes and hkctl prints, not intent anyone
        // writes for something to act on.
        if file == "event.json" {
            continue;
        }
        let schema: Value = serde_json::from_str(&text).unwrap();
        let mut out = Vec::new();
        fields(
            &schema["properties"]["spec"],
            &schema["$defs"],
            "spec",
            &mut BTreeSet::new(),
            &mut out,
        );
        walked += out.len();
        for (path, field) in out {
            let name = rust_name(&field);
            let through = READ_THROUGH
                .iter()
                .find(|(f, _)| *f == field)
                .map(|(_, method)| *method);
            let read = reads(&acting, &name)
                || through.is_some_and(|m| {
                    api.contains(&format!("fn {m}(")) && acting.contains(&format!(".{m}("))
                });
            if !read {
                unread.push(format!("{file}: {path} ({name})"));
            }
        }
    }
    assert!(walked > 300, "the walk found only {walked} fields");
    assert!(
        unread.is_empty(),
        "fields nothing acts on:\n{}",
        unread.join("\n")
    );
}

/// The check can fail: a field nothing mentions is caught, and a mention in the API alone
/// (its definition, its validation) does not count.
#[test]
fn the_check_catches_a_field_only_the_api_knows() {
    let acting =
        "let x = spec.daemon.exec.clone(); match r { Spec::File { path, mode, .. } => {} }";
    assert!(reads(acting, "exec"));
    assert!(reads(acting, "path") && reads(acting, "mode"));
    assert!(!reads(acting, "backup"));
    assert!(!reads(acting, "exe"), "whole words only");
    assert!(!reads("pub backup_root: String,", "backup"));
}
