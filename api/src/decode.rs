//! Typed decoding of JSON with errors in the project's style: the field path, what was
//! given and what is valid (`spec.daemon.restart: "sometimes" is not one of …`).

use serde::de::DeserializeOwned;

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
