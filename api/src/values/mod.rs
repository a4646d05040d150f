//! Small value types that appear in many specs: durations, file modes, secret
//! references, ports and sizes.
//!
//! Each one parses the text an operator writes (`10min`, `"0750"`, `{env: TOKEN}`) and
//! rejects anything else with a message that says what would be valid, so a typo is
//! caught when the manifest is applied, not when a host is half-changed.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

mod mode;

pub use mode::{FileMode, MODE_ALIASES, mode_text};

/// A length of time written with units: `250ms`, `10s`, `10min`, `1h30m`, `2d`.
///
/// Both Go-style (`1m`) and systemd-style (`1min`) minutes are accepted, because
/// manifests mix controller settings (`interval: 1m`) and unit settings (`onBootSec: 10min`).
/// The text is kept as written so a stored object reads back exactly as applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duration {
    text: String,
    millis: u64,
}

impl Duration {
    /// [`Duration::parse`] as a `std::time::Duration`: the one parser for duration flags
    /// too (`--settle 300ms`), so flags and manifests accept the same spellings.
    pub fn parse_std(text: &str) -> Result<std::time::Duration, String> {
        Duration::parse(text).map(|d| d.as_std())
    }

    pub fn parse(text: &str) -> Result<Duration, String> {
        let millis = parse_duration_millis(text)?;
        Ok(Duration {
            text: text.trim().to_string(),
            millis,
        })
    }

    pub fn from_secs(secs: u64) -> Duration {
        Duration {
            text: format_secs(secs),
            millis: secs.saturating_mul(1000).min(MAX_DURATION_MILLIS),
        }
    }

    pub fn as_std(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn format_secs(secs: u64) -> String {
    if secs.is_multiple_of(3600) && secs > 0 {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) && secs > 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// The longest duration HostKit accepts (ten years): every interval, timeout and window fits,
/// and time arithmetic on a `now` plus it can never overflow.
pub const MAX_DURATION_MILLIS: u64 = 10 * 365 * 86_400_000;

const DURATION_HINT: &str =
    "expected a number with a unit (ms, s, m or min, h, d, w), e.g. 250ms, 10s, 10min, 1h30m";

fn parse_duration_millis(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("empty duration: {DURATION_HINT}"));
    }
    let bytes = t.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!("invalid duration {text:?}: {DURATION_HINT}"));
        }
        let n: u64 = t[start..i]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let factor: u64 = match &t[ustart..i] {
            "ms" => 1,
            "s" | "sec" | "secs" => 1_000,
            "m" | "min" | "mins" => 60_000,
            "h" | "hr" | "hour" | "hours" => 3_600_000,
            "d" | "day" | "days" => 86_400_000,
            "w" | "week" | "weeks" => 604_800_000,
            "" => {
                return Err(format!(
                    "invalid duration {text:?}: missing unit; {DURATION_HINT}"
                ));
            }
            u => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {u:?}; {DURATION_HINT}"
                ));
            }
        };
        total = n
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
    }
    if total > MAX_DURATION_MILLIS {
        return Err(format!(
            "invalid duration {text:?}: longer than ten years (3650d), the longest HostKit accepts"
        ));
    }
    Ok(total)
}

impl Default for Duration {
    fn default() -> Self {
        Duration::from_secs(0)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a duration string ({DURATION_HINT})")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a bare number has no unit; {DURATION_HINT}"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                self.visit_u64(v.unsigned_abs())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a bare number has no unit; {DURATION_HINT}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration with units: 250ms, 10s, 10min (or 10m), 1h30m, 2d.",
            "pattern": "^\\s*([0-9]+\\s*(ms|s|sec|secs|m|min|mins|h|hr|hour|hours|d|day|days|w|week|weeks)\\s*)+$"
        })
    }
}

/// Where a secret's value comes from. Only the reference is ever stored: the value is
/// read on the controller at apply time and never reaches the store, a plan or status.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum SecretRef {
    /// An environment variable of the controller process.
    Env(String),
    /// A file on the controller's machine (trailing newline trimmed).
    File(String),
}

impl SecretRef {
    pub fn check(&self) -> Result<(), String> {
        match self {
            SecretRef::Env(name) => {
                let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "{name:?} is not an environment variable name: letters, digits and '_', \
                         not starting with a digit"
                    ))
                }
            }
            SecretRef::File(path) => {
                if path.starts_with('/') || path.starts_with("~/") {
                    Ok(())
                } else {
                    Err(format!(
                        "{path:?} is not an absolute path (start with / or ~/)"
                    ))
                }
            }
        }
    }
}

/// A port or an inclusive range: `443` or `"8000-8100"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortSpec {
    Port(u16),
    Range(String),
}

impl PortSpec {
    /// The inclusive bounds, checked: `1 ≤ from ≤ to ≤ 65535`.
    pub fn bounds(&self) -> Result<(u16, u16), String> {
        let (a, b) = match self {
            PortSpec::Port(p) => (*p, *p),
            PortSpec::Range(r) => {
                let (a, b) = r.split_once('-').ok_or_else(|| {
                    format!("invalid port range {r:?}: expected FROM-TO, e.g. \"8000-8100\"")
                })?;
                let parse = |s: &str| {
                    s.trim().parse::<u16>().map_err(|_| {
                        format!("invalid port range {r:?}: {s:?} is not a port 1-65535")
                    })
                };
                (parse(a)?, parse(b)?)
            }
        };
        if a == 0 || a > b {
            return Err(format!(
                "invalid port {}: ports are 1-65535 and a range must not run backwards",
                self.display()
            ));
        }
        Ok((a, b))
    }

    pub fn display(&self) -> String {
        match self {
            PortSpec::Port(p) => p.to_string(),
            PortSpec::Range(r) => r.clone(),
        }
    }
}

/// A byte size as systemd understands it: `512M`, `1G`, `64K`, `1073741824`, `infinity`.
pub fn check_byte_size(text: &str) -> Result<(), String> {
    let t = text.trim();
    if t == "infinity" {
        return Ok(());
    }
    let digits = t.trim_end_matches(['K', 'M', 'G', 'T', 'P', 'E']);
    let suffix_len = t.len() - digits.len();
    if !digits.is_empty() && suffix_len <= 1 && digits.chars().all(|c| c.is_ascii_digit()) {
        return Ok(());
    }
    Err(format!(
        "invalid size {text:?}: expected bytes with an optional K, M, G or T suffix (e.g. 512M), or infinity"
    ))
}

/// A CPU quota as systemd understands it: `50%`, `150%`.
pub fn check_percent(text: &str) -> Result<(), String> {
    match text.trim().strip_suffix('%').map(str::parse::<u32>) {
        Some(Ok(n)) if n > 0 => Ok(()),
        _ => Err(format!(
            "invalid percentage {text:?}: expected e.g. 50% or 150%"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_go_and_systemd_units() {
        for (text, ms) in [
            ("250ms", 250),
            ("10s", 10_000),
            ("10min", 600_000),
            ("1m", 60_000),
            ("1h30m", 5_400_000),
            ("2d", 172_800_000),
            ("1h 30min", 5_400_000),
        ] {
            assert_eq!(
                Duration::parse(text).unwrap().as_std().as_millis(),
                ms,
                "{text}"
            );
        }
    }

    #[test]
    fn durations_longer_than_ten_years_are_refused_not_wrapped() {
        assert!(Duration::parse("3650d").is_ok());
        for huge in [
            "3651d",
            "100000000d",
            "18446744073709551615ms",
            "99999999999999999999s",
        ] {
            let err = Duration::parse(huge).unwrap_err();
            assert!(
                err.contains("ten years") || err.contains("too large"),
                "{huge}: {err}"
            );
        }
    }

    #[test]
    fn durations_reject_bad_text_with_a_hint() {
        for bad in ["", "10", "10x", "m", "1.5h", "-1s"] {
            let err = Duration::parse(bad).unwrap_err();
            assert!(err.contains("e.g. 250ms"), "{bad}: {err}");
        }
    }

    #[test]
    fn duration_keeps_the_written_text() {
        let d: Duration = serde_json::from_str("\"10min\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"10min\"");
        let err = serde_json::from_str::<Duration>("60")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no unit"), "{err}");
    }

    #[test]
    fn modes_in_records_are_written_as_octal_text_and_read_in_either_form() {
        #[derive(Serialize, Deserialize)]
        struct Step {
            #[serde(with = "mode_text")]
            mode: u32,
        }
        let text = serde_json::to_string(&Step { mode: 0o640 }).unwrap();
        assert_eq!(text, r#"{"mode":"0640"}"#);
        let back: Step = serde_json::from_str(&text).unwrap();
        assert_eq!(back.mode, 0o640);
        let old: Step = serde_json::from_str(r#"{"mode":416}"#).unwrap();
        assert_eq!(old.mode, 0o640, "records written as numbers stay readable");
        assert!(serde_json::from_str::<Step>(r#"{"mode":-1}"#).is_err());
        assert!(serde_json::from_str::<Step>(r#"{"mode":99999}"#).is_err());
    }

    #[test]
    fn modes_are_quoted_octal() {
        assert_eq!(FileMode::parse("0750").unwrap().0, 0o750);
        assert_eq!(FileMode::parse("640").unwrap().to_string(), "0640");
        assert_eq!(FileMode::parse("1777").unwrap().0, 0o1777);
        for bad in ["0800", "75", "07500", "rwx", ""] {
            assert!(FileMode::parse(bad).is_err(), "{bad}");
        }
        let err = serde_json::from_str::<FileMode>("750")
            .unwrap_err()
            .to_string();
        assert!(err.contains("quoted octal"), "{err}");
    }

    #[test]
    fn secret_refs_are_checked() {
        assert!(SecretRef::Env("DATABASE_URL".into()).check().is_ok());
        assert!(SecretRef::Env("1BAD".into()).check().is_err());
        assert!(SecretRef::File("/etc/hostkit/key".into()).check().is_ok());
        assert!(SecretRef::File("relative".into()).check().is_err());
        let r: SecretRef = serde_json::from_str(r#"{"env":"TOKEN"}"#).unwrap();
        assert_eq!(r, SecretRef::Env("TOKEN".into()));
        assert!(serde_json::from_str::<SecretRef>(r#"{"vault":"x"}"#).is_err());
    }

    #[test]
    fn ports_and_ranges() {
        assert_eq!(PortSpec::Port(22).bounds().unwrap(), (22, 22));
        assert_eq!(
            PortSpec::Range("8000-8100".into()).bounds().unwrap(),
            (8000, 8100)
        );
        assert!(PortSpec::Range("9-8".into()).bounds().is_err());
        assert!(PortSpec::Port(0).bounds().is_err());
        assert!(PortSpec::Range("http".into()).bounds().is_err());
    }

    #[test]
    fn sizes_and_percentages() {
        assert!(check_byte_size("512M").is_ok());
        assert!(check_byte_size("infinity").is_ok());
        assert!(check_byte_size("1024").is_ok());
        assert!(check_byte_size("lots").is_err());
        assert!(check_byte_size("1GB").is_err());
        assert!(check_percent("150%").is_ok());
        assert!(check_percent("150").is_err());
    }
}
