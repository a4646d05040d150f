//! Typed decoding of JSON with errors in the project's style: the field path, what was
//! given and what is valid (`spec.daemon.restart: "sometimes" is not one of …`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::FieldError;

/// Decodes JSON into a typed object; the error names the failing field's path.
pub fn decode_typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = friendly_serde_message(&e.into_inner().to_string());
        FieldError::new(if path == "." { String::new() } else { path }, message)
    })
}

/// Rewrites serde's messages into the project's style: what was given, what is valid.
fn friendly_serde_message(msg: &str) -> String {
    let strip = |s: &str| s.replace('`', "");
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        if let Some((given, expected)) = rest.split_once(", expected one of ") {
            return format!("{:?} is not one of {}", strip(given), strip(expected));
        }
        if let Some((given, expected)) = rest.split_once(", expected ") {
            return format!(
                "{:?} is not valid; expected {}",
                strip(given),
                strip(expected)
            );
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        if let Some((given, expected)) = rest.split_once(", expected one of ") {
            return format!(
                "unknown field {:?}; valid fields: {}",
                strip(given),
                strip(expected)
            );
        }
        if let Some((given, expected)) = rest.split_once(", expected ") {
            return format!(
                "unknown field {:?}; valid fields: {}",
                strip(given),
                strip(expected)
            );
        }
        if let Some((given, _)) = rest.split_once(", there are no fields") {
            return format!(
                "unknown field {:?}; this object takes no fields",
                strip(given)
            );
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        return format!("required field {} is missing", strip(rest));
    }
    if msg.starts_with("data did not match any variant of untagged enum") {
        let name = msg.rsplit(' ').next().unwrap_or("value");
        return format!("does not have the shape of a {name} (see `hkctl explain`)");
    }
    msg.to_string()
}

/// Checks that `value` has the shape of `T` where serde would be lenient: a mapping where
/// the type is a mapping (serde also builds a struct from a list, so `ssh: []` would become
/// the default SSH settings) and a list where it is a list. The error names the field.
pub fn check_shape<T: JsonSchema>(value: &Value, at: &str) -> Result<(), FieldError> {
    let schema = schema_of::<T>();
    let defs = schema.get("$defs").and_then(Value::as_object);
    let mut path = at.to_string();
    walk(value, &schema, defs, &mut path)
}

/// The JSON Schema of `T`, generated once per type.
fn schema_of<T: JsonSchema>() -> Arc<Value> {
    static SCHEMAS: OnceLock<Mutex<HashMap<&'static str, Arc<Value>>>> = OnceLock::new();
    let cache = SCHEMAS.get_or_init(Default::default);
    let name = std::any::type_name::<T>();
    if let Some(s) = cache.lock().expect("not poisoned").get(name) {
        return s.clone();
    }
    let schema = Arc::new(schemars::schema_for!(T).to_value());
    cache
        .lock()
        .expect("not poisoned")
        .insert(name, schema.clone());
    schema
}

/// The JSON types a schema node admits (`None`: any, or not said at this node).
fn types(schema: &Value) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

/// Follows `$ref` into `$defs`.
fn resolve<'a>(schema: &'a Value, defs: Option<&'a serde_json::Map<String, Value>>) -> &'a Value {
    let mut s = schema;
    for _ in 0..16 {
        match s
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
            .and_then(|name| defs?.get(name))
        {
            Some(target) => s = target,
            None => break,
        }
    }
    s
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether a schema node (or one of its `anyOf`/`oneOf` branches) admits the value's type.
fn admits<'a>(
    schema: &'a Value,
    defs: Option<&'a serde_json::Map<String, Value>>,
    value: &Value,
) -> Option<&'a Value> {
    let schema = resolve(schema, defs);
    let branches = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array);
    if let Some(branches) = branches {
        return branches.iter().find_map(|b| admits(b, defs, value));
    }
    match types(schema) {
        None => Some(schema),
        Some(ts) => {
            let k = kind_of(value);
            ts.iter()
                .any(|t| *t == k || (*t == "number" && k == "integer"))
                .then_some(schema)
        }
    }
}

fn walk(
    value: &Value,
    schema: &Value,
    defs: Option<&serde_json::Map<String, Value>>,
    path: &mut String,
) -> Result<(), FieldError> {
    let Some(schema) = admits(schema, defs, value) else {
        let wanted = match value {
            Value::Array(_) => "is a list where a mapping (or a single value) is expected",
            Value::Object(_) => "is a mapping where a list (or a single value) is expected",
            _ => return Ok(()), // serde says what is wrong with scalars
        };
        return Err(FieldError::new(path.clone(), wanted));
    };
    let len = path.len();
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, v) in map {
                let Some(sub) = props.and_then(|p| p.get(k)).or(extra) else {
                    continue;
                };
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk(v, sub, defs, path)?;
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    path.push_str(&format!("[{i}]"));
                    walk(v, sub, defs, path)?;
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Parses a JSON request body, refusing what serde_json would silently accept: a key given
/// twice in one mapping (the last would win: `{"name":"a","name":"evil"}` names `evil`).
pub fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = <Strict as serde::Deserialize>::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v.0)
}

/// A JSON value whose mappings have no duplicate keys.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        <Strict as serde::Deserialize>::deserialize(d).map(|s| s.0)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.insert(k.clone(), v).is_some() {
                return Err(serde::de::Error::custom(format!(
                    "the key {k:?} is given twice in one mapping; give each key once"
                )));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::ServiceSpec;
    use serde_json::json;

    #[test]
    fn a_key_given_twice_is_refused() {
        let err = parse_json(br#"{"metadata": {"name": "a", "name": "evil"}}"#).unwrap_err();
        assert!(err.contains("\"name\" is given twice"), "{err}");
        assert_eq!(
            parse_json(br#"{"a": [1, {"b": null}], "c": "d"}"#).unwrap(),
            json!({"a": [1, {"b": null}], "c": "d"})
        );
        assert!(parse_json(b"{} {}").is_err(), "trailing data");
    }

    #[test]
    fn a_list_where_a_mapping_belongs_is_refused_with_its_field() {
        for field in ["account", "rollout"] {
            let spec = json!({"hosts": ["h"], field: []});
            let err = check_shape::<ServiceSpec>(&spec, "spec").unwrap_err();
            assert_eq!(err.field, format!("spec.{field}"));
            assert!(err.message.contains("is a list where a mapping"), "{err}");
        }
        let nested = json!({"hosts": ["h"], "daemon": {"exec": ["/bin/x"], "isolate": []}});
        let err = check_shape::<ServiceSpec>(&nested, "spec").unwrap_err();
        assert_eq!(err.field, "spec.daemon.isolate");
        let list_as_map = json!({"hosts": {"a": 1}});
        assert_eq!(
            check_shape::<ServiceSpec>(&list_as_map, "spec")
                .unwrap_err()
                .field,
            "spec.hosts"
        );
        let fine = json!({"hosts": ["h"], "packages": ["git", {"name": "curl"}],
            "commands": [{"name": "m", "exec": ["/bin/true"], "down": "noop"}]});
        assert_eq!(check_shape::<ServiceSpec>(&fine, "spec"), Ok(()));
    }
}
