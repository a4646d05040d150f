//! Label and field selectors (`hkctl get -l tier=search --field-selector spec.project=toys`).

use super::*;

/// Equality on `metadata.<field>=value` or `spec.involvedObject.name=x`: dotted JSON paths.
#[derive(Clone, Debug, Default)]
pub struct FieldSelector {
    terms: Vec<(Vec<String>, String)>,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<FieldSelector> {
        let mut terms = Vec::new();
        for clause in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let (path, value) = clause.split_once('=').ok_or_else(|| {
                Error::BadRequest(format!(
                    "field selector {clause:?} is not path=value, e.g. metadata.name=exograph"
                ))
            })?;
            let value = value.strip_prefix('=').unwrap_or(value);
            terms.push((
                path.trim().split('.').map(String::from).collect(),
                value.trim().to_string(),
            ));
        }
        Ok(FieldSelector { terms })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(path, expected)| {
            let mut v = object;
            for seg in path {
                match v.get(seg) {
                    Some(next) => v = next,
                    None => return false,
                }
            }
            match v {
                Value::String(s) => s == expected,
                other => serde_json::from_str::<Value>(expected).ok().as_ref() == Some(other),
            }
        })
    }
}

/// Filters for list and watch.
#[derive(Clone, Debug, Default)]
pub struct Selectors {
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
}

impl Selectors {
    pub fn matches(&self, object: &Value) -> bool {
        let labels_ok = self.labels.as_ref().is_none_or(|sel| {
            let labels = object
                .pointer("/metadata/labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            sel.matches(&labels)
        });
        labels_ok && self.fields.as_ref().is_none_or(|f| f.matches(object))
    }
}
