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
            let path: Vec<String> = path.trim().split('.').map(String::from).collect();
            let field_name = |seg: &String| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            };
            if !path.iter().all(field_name) {
                return Err(Error::BadRequest(format!(
                    "field selector {clause:?}: the path must be field names (letters, digits, _ or -) joined by dots, e.g. metadata.name=exograph; only = and == are supported"
                )));
            }
            terms.push((path, value.trim().to_string()));
        }
        Ok(FieldSelector { terms })
    }

    /// Refuses a path that is no field of `kind`: a typo (`spec.projet=toys`) would
    /// otherwise match nothing and look like an empty list.
    pub fn check(&self, kind: &KindInfo) -> Result<()> {
        for (path, _) in &self.terms {
            let path = path.join(".");
            hostkit_api::schema::check_field(kind, &path)
                .map_err(|why| Error::BadRequest(format!("field selector {path:?}: {why}")))?;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_field_selector_matches_strings_and_other_values_by_path() {
        let object = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2}});
        let sel = FieldSelector::parse("metadata.name=web, spec.replicas==2").unwrap();
        assert!(sel.matches(&object));
        assert!(
            !FieldSelector::parse("metadata.name=db")
                .unwrap()
                .matches(&object)
        );
        assert!(
            !FieldSelector::parse("spec.nope=2")
                .unwrap()
                .matches(&object)
        );
    }

    #[test]
    fn a_field_selector_on_a_field_the_kind_does_not_have_is_refused() {
        let kind = hostkit_api::kinds::find_kind("service").expect("a kind");
        for good in [
            "spec.project=toys",
            "metadata.name=web",
            "metadata.labels.tier=web",
        ] {
            let selector = FieldSelector::parse(good).expect("parses");
            assert!(selector.check(kind).is_ok(), "{good}");
        }
        let err = FieldSelector::parse("spec.projet=toys")
            .expect("parses")
            .check(kind)
            .expect_err("no such field");
        let text = err.to_string();
        assert!(
            text.contains("\"projet\" does not exist") && text.contains("project"),
            "{text}"
        );
    }

    #[test]
    fn a_field_selector_path_of_anything_but_field_names_is_refused() {
        for bad in [
            "spec.\0=x",
            "spec..name=x",
            "=x",
            "metadata.name!=x",
            "a b=c",
            "x",
        ] {
            let err = FieldSelector::parse(bad).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains("field selector")),
                "{bad:?}: {err:?}"
            );
        }
    }
}
