//! JSON Schemas of every kind, generated from the Rust types, and `hkctl explain`.
//!
//! The schemas in `manifests/schemas/` are generated from these same types, and a test
//! fails when the files are out of date, so editors and CI validators never drift from
//! what the API server accepts.

use std::fmt::Write as _;
use std::path::Path;

use schemars::generate::SchemaSettings;
use schemars::{Schema, json_schema};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::kinds::{API_VERSION, KINDS, KindInfo, KindSpec};
use crate::meta::ObjectMeta;

/// The schema of `Object<S>`: apiVersion and kind fixed, metadata, spec, status.
pub fn kind_schema<S: KindSpec>() -> Schema {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let metadata = generator.subschema_for::<ObjectMeta>();
    let spec = generator.subschema_for::<S>();
    let status = generator.subschema_for::<S::Status>();
    let defs: Map<String, Value> = generator.take_definitions(true);
    let kind = S::INFO.kind;
    let mut root = json_schema!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://hostkit.dev/schemas/v1alpha1/{}.json", S::INFO.singular),
        "title": kind,
        "type": "object",
        "required": ["apiVersion", "kind", "metadata"],
        "additionalProperties": false,
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": kind},
            "metadata": metadata,
            "spec": spec,
            "status": status,
        },
    });
    root.insert("$defs".to_string(), Value::Object(defs));
    root
}

/// The file name of a kind's schema in `manifests/schemas/`.
pub fn schema_file_name(kind: &KindInfo) -> String {
    format!("{}.json", kind.singular)
}

/// Every kind's schema as pretty JSON, keyed by file name.
pub fn all_schemas() -> Vec<(String, String)> {
    KINDS
        .iter()
        .map(|k| {
            let schema = schema_of(k).expect("every kind has a schema");
            let mut text = serde_json::to_string_pretty(&schema).expect("schemas serialise");
            text.push('\n');
            (schema_file_name(k), text)
        })
        .collect()
}

/// Writes every schema into `dir` (used by `hostkit schemas` and the freshness test).
pub fn write_schemas(dir: &Path) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    for (name, text) in all_schemas() {
        std::fs::write(dir.join(name), text).map_err(io)?;
    }
    Ok(())
}

/// A field of a kind's schema, found by its dotted path.
struct Field {
    node: Value,
    /// The path's segments that were walked.
    walked: Vec<String>,
    defs: Value,
}

/// Walks `field_path` (`spec.daemon.isolate`) through the kind's schema; the error names
/// the first segment that does not exist and the fields that do there.
fn field(kind: &KindInfo, field_path: &str) -> Result<Field, String> {
    let root = cached_schema(kind).ok_or_else(|| format!("no schema for {}", kind.kind))?;
    let defs = root.get("$defs").cloned().unwrap_or(Value::Null);
    let mut node = root.clone();
    let mut walked = Vec::new();
    for seg in field_path.split('.').filter(|s| !s.is_empty()) {
        let resolved = resolve(&node, &defs);
        let props = properties_of(&resolved, &defs);
        // A map (labels, annotations, env files by name) has any key as a field, of the
        // map's value type (`resolve` already looked through the map to its values, so
        // the map itself is the node before resolving).
        let map_value = node
            .get("additionalProperties")
            .or_else(|| resolved.get("additionalProperties"))
            .filter(|v| v.is_object())
            .cloned();
        let next = props.get(seg).cloned().or(map_value).ok_or_else(|| {
            let valid: Vec<&String> = props.keys().collect();
            format!(
                "field {:?} does not exist in {}{}; valid fields: {}",
                seg,
                kind.kind,
                if walked.is_empty() {
                    String::new()
                } else {
                    format!(".{}", walked.join("."))
                },
                valid
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        walked.push(seg.to_string());
        node = next;
    }
    Ok(Field { node, walked, defs })
}

/// Each kind's schema as JSON, generated once: field selectors are checked on every list
/// and watch that has one (`hkctl events --for` while a verb waits polls it).
fn cached_schema(kind: &KindInfo) -> Option<&'static Value> {
    static SCHEMAS: std::sync::OnceLock<Vec<(&'static str, Value)>> = std::sync::OnceLock::new();
    SCHEMAS
        .get_or_init(|| {
            crate::kinds::KINDS
                .iter()
                .filter_map(|k| Some((k.kind, schema_of(k)?.to_value())))
                .collect()
        })
        .iter()
        .find(|(name, _)| *name == kind.kind)
        .map(|(_, v)| v)
}

/// Whether `field_path` names a field of the kind (`hkctl get --field-selector`, `--sort-by`
/// refuse a path that does not, instead of silently matching nothing).
pub fn check_field(kind: &KindInfo, field_path: &str) -> Result<(), String> {
    field(kind, field_path).map(|_| ())
}

/// Explains a kind or one of its fields, kubectl-style: `explain("svc", "spec.daemon")`.
pub fn explain(kind: &KindInfo, field_path: &str) -> Result<String, String> {
    let Field { node, walked, defs } = field(kind, field_path)?;
    let resolved = resolve(&node, &defs);
    let mut out = String::new();
    let _ = writeln!(out, "KIND:     {}", kind.kind);
    let _ = writeln!(out, "VERSION:  {API_VERSION}\n");
    if !walked.is_empty() {
        let _ = writeln!(out, "FIELD: {} <{}>\n", walked.join("."), type_name(&node));
    }
    let description = node
        .get("description")
        .or_else(|| resolved.get("description"))
        .and_then(Value::as_str)
        .unwrap_or(if walked.is_empty() {
            ""
        } else {
            "(no description)"
        });
    if !description.is_empty() {
        let _ = writeln!(out, "DESCRIPTION:\n{}\n", indent(description, 2));
    }
    let enum_values = enum_values(&resolved, &defs);
    if !enum_values.is_empty() {
        let _ = writeln!(out, "VALUES:\n  {}\n", enum_values.join(", "));
    }
    let props = properties_of(&resolved, &defs);
    if !props.is_empty() {
        let required: Vec<String> = resolved
            .get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(out, "FIELDS:");
        for (name, prop) in &props {
            let req = if required.contains(name) {
                " -required-"
            } else {
                ""
            };
            let _ = writeln!(out, "  {name}\t<{}>{req}", type_name(prop));
            let d = prop
                .get("description")
                .and_then(Value::as_str)
                .map(String::from)
                .or_else(|| {
                    resolve(prop, &defs)
                        .get("description")
                        .and_then(Value::as_str)
                        .map(String::from)
                });
            if let Some(d) = d {
                let _ = writeln!(out, "{}\n", indent(&d, 4));
            } else {
                out.push('\n');
            }
        }
    }
    Ok(out.trim_end().to_string() + "\n")
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Follows `$ref`, and unwraps `anyOf [X, null]` (how schemars writes `Option<X>`), and arrays.
fn resolve(node: &Value, defs: &Value) -> Value {
    if let Some(r) = node.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        if let Some(d) = defs.get(name) {
            return resolve(d, defs);
        }
    }
    if let Some(any) = node
        .get("anyOf")
        .or_else(|| node.get("oneOf"))
        .and_then(Value::as_array)
    {
        let non_null: Vec<&Value> = any
            .iter()
            .filter(|v| v.get("type") != Some(&Value::from("null")))
            .collect();
        if non_null.len() == 1 {
            return resolve(non_null[0], defs);
        }
    }
    if node.get("type") == Some(&Value::from("array"))
        && let Some(items) = node.get("items")
    {
        return resolve(items, defs);
    }
    if let Some(add) = node.get("additionalProperties")
        && add.is_object()
        && node.get("properties").is_none()
    {
        return resolve(add, defs);
    }
    node.clone()
}

fn properties_of(node: &Value, _defs: &Value) -> Map<String, Value> {
    node.get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn enum_values(node: &Value, defs: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = node.get("enum").and_then(Value::as_array) {
        out.extend(e.iter().filter_map(|v| v.as_str().map(String::from)));
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = node.get(key).and_then(Value::as_array) {
            for alt in alts {
                let alt = resolve(alt, defs);
                if let Some(c) = alt.get("const").and_then(Value::as_str) {
                    out.push(c.to_string());
                }
                if let Some(e) = alt.get("enum").and_then(Value::as_array) {
                    out.extend(e.iter().filter_map(|v| v.as_str().map(String::from)));
                }
            }
        }
    }
    out
}

fn type_name(node: &Value) -> String {
    if let Some(r) = node.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or("object").to_string();
    }
    if let Some(any) = node.get("anyOf").and_then(Value::as_array) {
        let non_null: Vec<&Value> = any
            .iter()
            .filter(|v| v.get("type") != Some(&Value::from("null")))
            .collect();
        if non_null.len() == 1 {
            return type_name(non_null[0]);
        }
        return "value".to_string();
    }
    match node.get("type") {
        Some(Value::String(t)) if t == "array" => {
            format!("[]{}", node.get("items").map(type_name).unwrap_or_default())
        }
        Some(Value::String(t))
            if t == "object"
                && node
                    .get("additionalProperties")
                    .is_some_and(Value::is_object) =>
        {
            format!("map[string]{}", type_name(&node["additionalProperties"]))
        }
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("value")
            .to_string(),
        _ if node.get("const").is_some() => "string".to_string(),
        _ => "value".to_string(),
    }
}

/// The JSON Schema of one kind, with `apiVersion`, `kind`, `metadata`, `spec`, `status`.
pub fn schema_of(kind: &KindInfo) -> Option<schemars::Schema> {
    macro_rules! find {
        ($($variant:ident => $spec:ty,)*) => {
            $(if kind == <$spec as KindSpec>::INFO {
                return Some(kind_schema::<$spec>());
            })*
        };
    }
    crate::for_each_kind!(find);
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::find_kind;

    #[test]
    fn schemas_in_the_repository_are_up_to_date() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/schemas");
        let mut stale = Vec::new();
        for (name, text) in all_schemas() {
            match std::fs::read_to_string(dir.join(&name)) {
                Ok(on_disk) if on_disk == text => {}
                _ => stale.push(name),
            }
        }
        assert!(
            stale.is_empty(),
            "manifests/schemas is out of date for {stale:?}; regenerate with \
             `cargo run -p hostkit-controller --bin hostkit -- schemas manifests/schemas`"
        );
    }

    #[test]
    fn explain_walks_fields_and_lists_enum_values() {
        let svc = find_kind("svc").unwrap();
        let top = explain(svc, "").unwrap();
        assert!(top.contains("KIND:     Service"), "{top}");
        assert!(top.contains("spec\t<ServiceSpec>"), "{top}");
        let restart = explain(svc, "spec.daemon.restart").unwrap();
        assert!(
            restart.contains("FIELD: spec.daemon.restart <RestartPolicy>"),
            "{restart}"
        );
        assert!(restart.contains("on-failure"), "{restart}");
        let daemon = explain(svc, "spec.daemon").unwrap();
        assert!(daemon.contains("exec\t<[]string> -required-"), "{daemon}");
        let err = explain(svc, "spec.deamon").unwrap_err();
        assert!(
            err.contains("valid fields:") && err.contains("daemon"),
            "{err}"
        );
    }
}
