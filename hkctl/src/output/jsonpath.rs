//! kubectl's JSONPath templates (`-o jsonpath='{.items[*].metadata.name}'`,
//! `{range .items[*]}{.metadata.name}{"\n"}{end}`), `-o custom-columns=NAME:.metadata.name`
//! and `--sort-by`. The path expressions themselves are RFC 9535 JSONPath, evaluated by
//! `serde_json_path`; this file only reads kubectl's template around them (a leading `.`
//! means "from the current object", `{range}`…`{end}` loops, `{"…"}` is literal text).

use serde_json::Value;
use serde_json_path::JsonPath;

use crate::{Error, Result};

/// One compiled path: kubectl's `.a.b[*]` form, as RFC 9535 `$.a.b[*]`.
#[derive(Clone, Debug)]
pub struct Path {
    text: String,
    query: JsonPath,
}

impl Path {
    pub fn parse(text: &str) -> Result<Path> {
        let t = text.trim();
        let t = t
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(t);
        let rfc = if let Some(rest) = t.strip_prefix('@') {
            format!("${rest}")
        } else if t.starts_with('$') {
            t.to_string()
        } else if t.starts_with('.') || t.starts_with('[') {
            format!("${t}")
        } else {
            format!("$.{t}")
        };
        let query = JsonPath::parse(&rfc).map_err(|e| {
            Error::Usage(format!(
                "{text:?} is not a JSONPath expression (as {rfc:?}: {} at {}); e.g. .metadata.name or .status.conditions[?(@.type==\"Ready\")].status",
                e.message(),
                e.position()
            ))
        })?;
        Ok(Path {
            text: text.to_string(),
            query,
        })
    }

    /// Every value the path selects in `v`, in document order.
    pub fn query<'a>(&self, v: &'a Value) -> Vec<&'a Value> {
        self.query.query(v).all()
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A value as text: strings as they are, anything else as compact JSON.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Expr(Path),
    Range(Path, Vec<Part>),
}

/// A compiled `-o jsonpath=` template.
#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template> {
        let mut stack: Vec<(Option<Path>, Vec<Part>)> = vec![(None, Vec::new())];
        let mut rest = text;
        let unclosed = || Error::Usage(format!("jsonpath template {text:?}: a {{ is not closed"));
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                stack
                    .last_mut()
                    .expect("root")
                    .1
                    .push(Part::Text(rest.to_string()));
                break;
            };
            if open > 0 {
                stack
                    .last_mut()
                    .expect("root")
                    .1
                    .push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = closing_brace(after).ok_or_else(unclosed)?;
            let inner = after[..close].trim();
            rest = &after[close + 1..];
            if let Some(literal) = quoted(inner) {
                stack.last_mut().expect("root").1.push(Part::Text(literal));
            } else if let Some(path) = inner.strip_prefix("range ") {
                stack.push((Some(Path::parse(path)?), Vec::new()));
            } else if inner == "end" {
                let (path, body) = stack.pop().expect("root");
                let path = path.ok_or_else(|| {
                    Error::Usage(format!(
                        "jsonpath template {text:?}: {{end}} without {{range}}"
                    ))
                })?;
                stack
                    .last_mut()
                    .ok_or_else(unclosed)?
                    .1
                    .push(Part::Range(path, body));
            } else {
                stack
                    .last_mut()
                    .expect("root")
                    .1
                    .push(Part::Expr(Path::parse(inner)?));
            }
        }
        if stack.len() != 1 {
            return Err(Error::Usage(format!(
                "jsonpath template {text:?}: a {{range}} has no {{end}}"
            )));
        }
        Ok(Template {
            parts: stack.pop().expect("root").1,
        })
    }

    /// The template applied to `v`; several values of one expression are joined by spaces.
    pub fn render(&self, v: &Value) -> String {
        let mut out = String::new();
        render(&self.parts, v, &mut out);
        out
    }
}

fn render(parts: &[Part], v: &Value, out: &mut String) {
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            Part::Expr(path) => {
                let shown: Vec<String> = path.query(v).into_iter().map(show).collect();
                out.push_str(&shown.join(" "));
            }
            Part::Range(path, body) => {
                for item in path.query(v) {
                    render(body, item, out);
                }
            }
        }
    }
}

/// The `}` that closes a template expression, skipping quoted strings (`{"}"}`).
fn closing_brace(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' | '(' => depth += 1,
                ']' | ')' => depth = depth.saturating_sub(1),
                '}' if depth == 0 => return Some(i),
                _ => {}
            },
        }
    }
    None
}

/// `"\n"` or `'\t'`: literal text with the usual escapes.
fn quoted(inner: &str) -> Option<String> {
    let q = inner.chars().next()?;
    if !(q == '"' || q == '\'') || inner.len() < 2 || !inner.ends_with(q) {
        return None;
    }
    let body = &inner[1..inner.len() - 1];
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Some(out)
}

/// One `-o custom-columns` column.
#[derive(Clone, Debug)]
pub struct Column {
    pub header: String,
    pub path: Path,
}

/// `NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status`.
pub fn parse_columns(text: &str) -> Result<Vec<Column>> {
    let mut columns = Vec::new();
    for spec in split_top_level(text) {
        let (header, path) = spec.split_once(':').ok_or_else(|| {
            Error::Usage(format!(
                "custom column {spec:?} is not HEADER:PATH, e.g. NAME:.metadata.name"
            ))
        })?;
        if header.is_empty() {
            return Err(Error::Usage(format!(
                "custom column {spec:?} has no header"
            )));
        }
        columns.push(Column {
            header: header.to_string(),
            path: Path::parse(path)?,
        });
    }
    if columns.is_empty() {
        return Err(Error::Usage(
            "custom-columns needs at least one HEADER:PATH".into(),
        ));
    }
    Ok(columns)
}

/// A row of custom columns: each cell is the values found, joined by commas, or `<none>`.
pub fn column_cells(columns: &[Column], v: &Value) -> Vec<String> {
    columns
        .iter()
        .map(|c| {
            let found: Vec<String> = c.path.query(v).into_iter().map(show).collect();
            if found.is_empty() {
                "<none>".to_string()
            } else {
                found.join(",")
            }
        })
        .collect()
}

/// Splits on commas outside brackets, parentheses and quotes.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0usize, None, 0);
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '(') => depth += 1,
            (None, ']' | ')') => depth = depth.saturating_sub(1),
            (None, ',') if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// Sorts objects by the first value `path` finds in each: numbers by value, anything else
/// by its text; objects where it finds nothing come first, as kubectl sorts them.
pub fn sort_by(objects: &mut [Value], path: &Path) {
    objects.sort_by(|a, b| {
        let key = |v: &Value| path.query(v).first().map(|x| (*x).clone());
        match (key(a), key(b)) {
            (Some(Value::Number(x)), Some(Value::Number(y))) => x
                .as_f64()
                .partial_cmp(&y.as_f64())
                .unwrap_or(std::cmp::Ordering::Equal),
            (Some(x), Some(y)) => show(&x).cmp(&show(&y)),
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> Value {
        json!({"kind": "List", "items": [
            {"metadata": {"name": "web", "generation": 10}, "status": {"conditions": [
                {"type": "Drifted", "status": "False"}, {"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "api", "generation": 9}, "status": {"conditions": [
                {"type": "Ready", "status": "False"}]}},
            {"metadata": {"name": "new"}},
        ]})
    }

    #[test]
    fn templates_print_values_literals_and_ranges_as_kubectl() {
        let t = Template::parse("{.items[*].metadata.name}").unwrap();
        assert_eq!(t.render(&list()), "web api new");
        let t = Template::parse(
            r#"{range .items[*]}{.metadata.name}{"\t"}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
        )
        .unwrap();
        assert_eq!(t.render(&list()), "web\tTrue\napi\tFalse\nnew\t\n");
        let t = Template::parse("name={.metadata.name} gen={.metadata.generation}").unwrap();
        assert_eq!(t.render(&list()["items"][0]), "name=web gen=10");
        let t = Template::parse("{.items[0].status}").unwrap();
        assert!(t.render(&list()).starts_with("{\"conditions\":"));
        for bad in ["{.items[", "{range .items[*]}{.x}", "{end}", "{.a..}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn custom_columns_split_outside_filters_and_say_none_when_missing() {
        let cols = parse_columns(
            r#"NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready" || @.type=="x")].status"#,
        )
        .unwrap();
        assert_eq!(cols.len(), 2);
        let items = list()["items"].as_array().unwrap().clone();
        assert_eq!(column_cells(&cols, &items[0]), ["web", "True"]);
        assert_eq!(column_cells(&cols, &items[2]), ["new", "<none>"]);
        assert!(parse_columns("NAME").is_err());
        assert!(parse_columns(":.x").is_err());
    }

    #[test]
    fn sort_by_orders_numbers_by_value_and_missing_first() {
        let mut items = list()["items"].as_array().unwrap().clone();
        sort_by(&mut items, &Path::parse(".metadata.generation").unwrap());
        let names: Vec<&str> = items
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["new", "api", "web"],
            "9 before 10: by value, not text"
        );
        sort_by(&mut items, &Path::parse("{.metadata.name}").unwrap());
        assert_eq!(items[0]["metadata"]["name"], "api");
    }
}
