//! File modes as people write them: octal strings, names for what a path is for, or
//! permissions by who. All become the same `u32`; the octal string is what is stored.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Named modes, as the original HostKit's DSL had them: what a path is for, not its digits.
pub const MODE_ALIASES: &[(&str, u32)] = &[
    ("private_file", 0o600),
    ("private_dir", 0o700),
    ("private_executable", 0o700),
    ("secret_file", 0o600),
    ("secret_group_file", 0o640),
    ("group_file", 0o640),
    ("group_dir", 0o750),
    ("group_executable", 0o750),
    ("shared_group_dir", 0o2770),
    ("public_file", 0o644),
    ("public_dir", 0o755),
    ("executable", 0o755),
    ("sticky_dir", 0o1777),
];

/// `{owner: rw, group: r, other: "", special: setgid}` (or the same as a list of one-key
/// mappings, `[owner: rw, group: r]`): permissions by who, each any of `r`, `w`, `x`
/// (`""` or `-` for none); `special` is `setuid`, `setgid`, `sticky`, or a list of them.
fn from_parts<'a>(parts: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) -> Result<u32, String> {
    let mut mode = 0;
    let mut seen = Vec::new();
    for (who, values) in parts {
        if seen.contains(&who) {
            return Err(format!("mode: {who} is given twice"));
        }
        seen.push(who);
        let shift = match who {
            "owner" => 6,
            "group" => 3,
            "other" => 0,
            "special" => {
                for v in values {
                    mode |= match v {
                        "setuid" => 0o4000,
                        "setgid" => 0o2000,
                        "sticky" => 0o1000,
                        _ => {
                            return Err(format!(
                                "mode: special {v:?} is not setuid, setgid or sticky"
                            ));
                        }
                    };
                }
                continue;
            }
            _ => {
                return Err(format!(
                    "mode: {who:?} is not owner, group, other or special"
                ));
            }
        };
        let [text] = values.as_slice() else {
            return Err(format!("mode: {who} takes one string of r, w, x (e.g. rw)"));
        };
        let mut bits = 0;
        for c in text.chars().filter(|c| *c != '-') {
            let bit = match c {
                'r' => 4,
                'w' => 2,
                'x' => 1,
                _ => return Err(format!("mode: {who} {text:?} is not made of r, w and x")),
            };
            if bits & bit != 0 {
                return Err(format!("mode: {who} {text:?} repeats {c}"));
            }
            bits |= bit;
        }
        mode |= bits << shift;
    }
    if seen.is_empty() {
        return Err("mode: name at least one of owner, group, other".into());
    }
    Ok(mode)
}

/// A Unix permission mode: a quoted octal string (`"0750"`, `"1777"`), a name
/// (`private_dir`, `secret_group_file`, see [`MODE_ALIASES`]), or permissions by who
/// (`{owner: rw, group: r}`, also written `[owner: rw, group: r]`). Always stored and shown
/// as the octal string.
///
/// Integers are refused on purpose: YAML 1.1 reads `0750` as octal and YAML 1.2 as
/// decimal 750, and a wrong guess changes who can read a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl FileMode {
    pub fn parse(text: &str) -> Result<FileMode, String> {
        let t = text.trim();
        if let Some((_, mode)) = MODE_ALIASES.iter().find(|(name, _)| *name == t) {
            return Ok(FileMode(*mode));
        }
        let digits = t.strip_prefix("0o").unwrap_or(t);
        if !(3..=4).contains(&digits.len()) || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
            return Err(format!(
                "invalid mode {text:?}: expected 3 or 4 octal digits as a quoted string (e.g. \"0750\"), a name ({}), or {{owner: rw, group: r}}",
                MODE_ALIASES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        u32::from_str_radix(digits, 8)
            .map(FileMode)
            .map_err(|e| format!("invalid mode {text:?}: {e}"))
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'v> Visitor<'v> for V {
            type Value = FileMode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a quoted octal mode such as \"0750\", a mode name, or {owner: rw, group: r}",
                )
            }
            fn visit_map<A: de::MapAccess<'v>>(self, mut map: A) -> Result<FileMode, A::Error> {
                let mut parts: Vec<(String, Vec<String>)> = Vec::new();
                while let Some((who, value)) = map.next_entry::<String, serde_json::Value>()? {
                    parts.push((who, words(value).map_err(de::Error::custom)?));
                }
                parts_mode(&parts).map_err(de::Error::custom)
            }
            fn visit_seq<A: de::SeqAccess<'v>>(self, mut seq: A) -> Result<FileMode, A::Error> {
                let mut parts: Vec<(String, Vec<String>)> = Vec::new();
                while let Some(entry) =
                    seq.next_element::<serde_json::Map<String, serde_json::Value>>()?
                {
                    if entry.len() != 1 {
                        return Err(de::Error::custom(
                            "mode: each list entry is one `who: permissions`, e.g. [owner: rw, group: r]",
                        ));
                    }
                    for (who, value) in entry {
                        parts.push((who, words(value).map_err(de::Error::custom)?));
                    }
                }
                parts_mode(&parts).map_err(de::Error::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileMode, E> {
                FileMode::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileMode, E> {
                Err(E::custom(format!(
                    "invalid mode {v}: write modes as quoted octal strings, e.g. \"0750\" \
                     (an unquoted number is ambiguous in YAML)"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileMode, E> {
                self.visit_u64(v.unsigned_abs())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<FileMode, E> {
                self.visit_u64(v as u64)
            }
        }
        d.deserialize_any(V)
    }
}

/// `#[serde(with = "mode_text")]` for a `u32` mode in records people read (down plans in
/// `hkctl get rev -o yaml`): written as `"0640"`, not `416`. Reads either form, so records
/// written before stay readable.
pub mod mode_text {
    use super::*;

    pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        FileMode(*mode).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = u32;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an octal mode such as \"0640\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
                FileMode::parse(v).map(|m| m.0).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
                u32::try_from(v)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| E::custom(format!("mode {v} is out of range")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("mode {v} is out of range")))
                    .and_then(|v| self.visit_u64(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for FileMode {
    fn schema_name() -> Cow<'static, str> {
        "FileMode".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = MODE_ALIASES.iter().map(|(n, _)| *n).collect();
        let who = json_schema!({"type": ["string", "array", "null"]});
        let parts = json_schema!({
            "type": "object",
            "properties": {"owner": who, "group": who, "other": who, "special": who},
            "additionalProperties": false
        });
        json_schema!({
            "description": "A permission mode: a quoted octal string (\"0750\"), a name, or permissions by who ({owner: rw, group: r}).",
            "anyOf": [
                {"type": "string", "pattern": "^(0o)?[0-7]{3,4}$"},
                {"type": "string", "enum": names},
                parts,
                {"type": "array", "items": parts}
            ]
        })
    }
}

/// A permissions value as words: `rw` → [rw], `[setgid, sticky]` → both, empty → [""].
fn words(value: serde_json::Value) -> Result<Vec<String>, String> {
    match value {
        serde_json::Value::Null => Ok(vec![String::new()]),
        serde_json::Value::String(s) => Ok(vec![s]),
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                serde_json::Value::String(s) => Ok(s),
                other => Err(format!("mode: {other} is not a word")),
            })
            .collect(),
        other => Err(format!(
            "mode: {other} is not r, w, x letters or a list of words"
        )),
    }
}

fn parts_mode(parts: &[(String, Vec<String>)]) -> Result<FileMode, String> {
    from_parts(
        parts
            .iter()
            .map(|(who, v)| (who.as_str(), v.iter().map(String::as_str).collect())),
    )
    .map(FileMode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(yaml: &str) -> Result<String, String> {
        serde_saphyr::from_str::<FileMode>(yaml)
            .map(|m| m.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn names_and_permissions_by_who_are_the_same_octal_modes() {
        assert_eq!(mode("private_dir").unwrap(), "0700");
        assert_eq!(mode("secret_group_file").unwrap(), "0640");
        assert_eq!(mode("shared_group_dir").unwrap(), "2770");
        assert_eq!(mode("'0750'").unwrap(), "0750");
        assert_eq!(mode("{owner: rw, group: r}").unwrap(), "0640");
        assert_eq!(mode("[owner: rw, group: r]").unwrap(), "0640");
        assert_eq!(
            mode("{owner: rwx, group: rx, other: '', special: setgid}").unwrap(),
            "2750"
        );
        assert_eq!(
            mode("{owner: rwx, group: rwx, other: rwx, special: [sticky]}").unwrap(),
            "1777"
        );
        assert_eq!(
            mode("{owner: rw-, group: r--, other: ---}").unwrap(),
            "0640"
        );
        // Stored and shown as the digits.
        let m: FileMode = serde_saphyr::from_str("[owner: rw, group: r]").unwrap();
        assert_eq!(serde_json::to_value(m).unwrap(), serde_json::json!("0640"));
    }

    #[test]
    fn anything_else_is_refused_saying_what_would_be_valid() {
        let e = mode("private").unwrap_err();
        assert!(e.contains("a name (private_file, private_dir"), "{e}");
        assert!(
            mode("{owner: rwz}")
                .unwrap_err()
                .contains("is not made of r, w and x")
        );
        assert!(mode("{owner: rr}").unwrap_err().contains("repeats r"));
        assert!(
            mode("{world: r}")
                .unwrap_err()
                .contains("is not owner, group, other or special")
        );
        assert!(
            mode("{special: setsid}")
                .unwrap_err()
                .contains("is not setuid, setgid or sticky")
        );
        assert!(
            mode("[{owner: rw, group: r}]")
                .unwrap_err()
                .contains("each list entry is one")
        );
        assert!(
            mode("[owner: rw, owner: r]")
                .unwrap_err()
                .contains("owner is given twice")
        );
        assert!(mode("{}").unwrap_err().contains("name at least one of"));
        assert!(mode("0750").unwrap_err().contains("ambiguous in YAML"));
    }
}
