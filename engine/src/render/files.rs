//! Env files (dotenv) and structured config files (ini, toml, yaml, json).
//!
//! Secrets never appear in the rendered text: their place holds
//! [`Content::placeholder`], which [`crate::secrets`] fills in memory, escaped for the
//! format, right before the bytes are compared or written.

use std::collections::BTreeMap;

use hostkit_api::kinds::ConfigFormat;
use hostkit_api::values::SecretRef;
use serde_json::Value;

use crate::resource::{Content, Escape, SecretSlot};

/// Escapes a value for a double-quoted dotenv line, readable by both systemd's
/// `EnvironmentFile=` and a POSIX shell's `.`: `\`, `"`, `$` and `` ` `` are escaped.
pub fn dotenv_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A dotenv file: plain values, then secrets, each group sorted by key. A key or plain value
/// with a control character is refused (a line break would add a variable): defence in depth
/// behind validation.
pub fn dotenv(
    set: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, SecretRef>,
) -> Result<Content, String> {
    for (k, v) in set {
        if let Some(c) = k
            .chars()
            .chain(v.chars())
            .find(|c| *c != '\t' && c.is_control())
        {
            return Err(format!(
                "{k} holds the control character {c:?}; env values are one line"
            ));
        }
    }
    for k in secrets.keys() {
        if k.chars().any(|c| c.is_control() || c == '=') {
            return Err(format!("{k:?} is not an env variable name"));
        }
    }
    let mut text =
        String::from("# Managed by HostKit. Secret values are filled in at apply time.\n");
    for (k, v) in set {
        text.push_str(&format!("{k}={}\n", dotenv_quote(v)));
    }
    let mut slots = BTreeMap::new();
    for (k, r) in secrets {
        text.push_str(&format!("{k}={}\n", Content::placeholder(k)));
        slots.insert(
            k.clone(),
            SecretSlot {
                reference: r.clone(),
                escape: Escape::Dotenv,
            },
        );
    }
    Ok(Content {
        text,
        base64: false,
        secrets: slots,
    })
}

/// Parses dotenv text back into `key → value` (for keyed diffs). Unknown lines are skipped.
pub fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let value = if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        } else if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            inner.to_string()
        } else {
            v.trim().to_string()
        };
        out.insert(k.trim().to_string(), value);
    }
    out
}

/// Renders a structured config file. `secrets` are dotted key paths placed into the
/// content (for ini: `section.key` or a top-level `key`).
pub fn config(
    object: &str,
    field: &str,
    format: ConfigFormat,
    content: &Value,
    secrets: &BTreeMap<String, SecretRef>,
) -> Result<Content, crate::Error> {
    let invalid = |message: String| crate::Error::Invalid {
        object: object.to_string(),
        field: field.to_string(),
        message,
    };
    let mut value = content.clone();
    if !value.is_object() {
        return Err(invalid(
            "content must be a mapping of keys to values".to_string(),
        ));
    }
    for key in secrets.keys() {
        let mut cursor = &mut value;
        let parts: Vec<&str> = key.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let map = cursor.as_object_mut().ok_or_else(|| {
                invalid(format!(
                    "secrets.{key}: {part:?} is inside a value that is not a mapping"
                ))
            })?;
            if i + 1 == parts.len() {
                map.insert(part.to_string(), Value::String(Content::placeholder(key)));
                break;
            }
            cursor = map
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
        }
    }
    let mut text = match format {
        ConfigFormat::Json => {
            serde_json::to_string_pretty(&value).map_err(|e| invalid(e.to_string()))? + "\n"
        }
        ConfigFormat::Toml => toml::to_string(&value).map_err(|e| {
            invalid(format!(
                "cannot be written as TOML ({e}); TOML has no null values"
            ))
        })?,
        ConfigFormat::Yaml => {
            serde_saphyr::to_string(&value).map_err(|e| invalid(e.to_string()))?
        }
        ConfigFormat::Ini => ini(&value).map_err(invalid)?,
    };
    let escape = match format {
        ConfigFormat::Ini => Escape::Raw,
        _ => Escape::Json,
    };
    let mut slots = BTreeMap::new();
    for (key, reference) in secrets {
        let p = Content::placeholder(key);
        for quoted in [format!("\"{p}\""), format!("'{p}'")] {
            text = text.replace(&quoted, &p);
        }
        slots.insert(
            key.clone(),
            SecretSlot {
                reference: reference.clone(),
                escape,
            },
        );
    }
    Ok(Content {
        text,
        base64: false,
        secrets: slots,
    })
}

fn ini_scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// An ini key, section name or value must stay on its line (a line break would add keys).
fn ini_line(what: &str, text: &str) -> Result<(), String> {
    match text.chars().find(|c| *c != '\t' && c.is_control()) {
        Some(c) => Err(format!(
            "ini: {what} holds the control character {c:?}; ini values are one line"
        )),
        None if what.ends_with("name") && text.contains(['[', ']', '=']) => {
            Err(format!("ini: {what} {text:?} holds '[', ']' or '='"))
        }
        None => Ok(()),
    }
}

fn ini(value: &Value) -> Result<String, String> {
    let Some(map) = value.as_object() else {
        return Err("ini: content must be a mapping".into());
    };
    for (k, v) in map {
        ini_line("key name", k)?;
        match v {
            Value::Object(inner) => {
                for (k2, v2) in inner {
                    ini_line("key name", k2)?;
                    if let Some(s) = ini_scalar(v2) {
                        ini_line(&format!("{k}.{k2}"), &s)?;
                    }
                }
            }
            other => {
                if let Some(s) = ini_scalar(other) {
                    ini_line(k, &s)?;
                }
            }
        }
    }
    let mut out = String::new();
    for (k, v) in map {
        if !v.is_object() {
            let s = ini_scalar(v)
                .ok_or_else(|| format!("ini: {k} is a list; ini values are scalars"))?;
            out.push_str(&format!("{k} = {s}\n"));
        }
    }
    for (section, v) in map {
        if let Some(inner) = v.as_object() {
            out.push_str(&format!("\n[{section}]\n"));
            for (k, v) in inner {
                let s = ini_scalar(v).ok_or_else(|| {
                    format!("ini: {section}.{k} is nested too deep; ini has one level of sections")
                })?;
                out.push_str(&format!("{k} = {s}\n"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotenv_round_trips_awkward_values() {
        let mut set = BTreeMap::new();
        set.insert("PORT".to_string(), "4000".to_string());
        set.insert(
            "MOTD".to_string(),
            "say \"hi\" to $USER `now` \\o/".to_string(),
        );
        let mut secrets = BTreeMap::new();
        secrets.insert(
            "DATABASE_URL".to_string(),
            SecretRef::Env("DATABASE_URL".into()),
        );
        let c = dotenv(&set, &secrets).unwrap();
        assert!(
            c.text
                .contains("DATABASE_URL=@@hostkit-secret:DATABASE_URL@@")
        );
        assert!(!c.text.contains("postgres"));
        let parsed = parse_dotenv(&c.text);
        assert_eq!(parsed["MOTD"], set["MOTD"]);
        assert_eq!(parsed["PORT"], "4000");
    }

    #[test]
    fn config_formats_render_with_secret_slots() {
        let content = json!({"server": {"port": 4000, "host": "127.0.0.1"}, "debug": false});
        let mut secrets = BTreeMap::new();
        secrets.insert("server.token".to_string(), SecretRef::Env("TOKEN".into()));
        let toml = config(
            "Service/a",
            "configFiles[0]",
            ConfigFormat::Toml,
            &content,
            &secrets,
        )
        .unwrap();
        assert!(
            toml.text
                .contains("token = @@hostkit-secret:server.token@@"),
            "{}",
            toml.text
        );
        assert_eq!(toml.secrets["server.token"].escape, Escape::Json);
        let ini = config(
            "Service/a",
            "configFiles[0]",
            ConfigFormat::Ini,
            &content,
            &secrets,
        )
        .unwrap();
        assert_eq!(
            ini.text,
            "debug = false\n\n[server]\nport = 4000\nhost = 127.0.0.1\ntoken = @@hostkit-secret:server.token@@\n"
        );
        let yaml = config(
            "Service/a",
            "configFiles[0]",
            ConfigFormat::Yaml,
            &content,
            &secrets,
        )
        .unwrap();
        assert!(
            yaml.text.contains("token: @@hostkit-secret:server.token@@"),
            "{}",
            yaml.text
        );
        let json = config(
            "Service/a",
            "configFiles[0]",
            ConfigFormat::Json,
            &content,
            &BTreeMap::new(),
        )
        .unwrap();
        assert!(json.text.starts_with("{\n  \"server\""));
        let err = config(
            "Service/a",
            "configFiles[0]",
            ConfigFormat::Ini,
            &json!({"a": {"b": {"c": 1}}}),
            &BTreeMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("Service/a configFiles[0]") && err.contains("one level"),
            "{err}"
        );
    }

    #[test]
    fn env_and_ini_values_stay_on_their_line() {
        let mut set = BTreeMap::new();
        set.insert("A".to_string(), "1\nB=2".to_string());
        assert!(dotenv(&set, &BTreeMap::new()).is_err());
        let ini_bad = serde_json::json!({"main": {"key": "v\n[evil]\nx = 1"}});
        assert!(ini(&ini_bad).unwrap_err().contains("control character"));
        let name_bad = serde_json::json!({"k]": "v"});
        assert!(ini(&name_bad).is_err());
        assert!(ini(&serde_json::json!({"main": {"key": "v"}})).is_ok());
    }
}
