//! Manifests in, typed objects out: YAML multi-document parsing with line-numbered errors.
//!
//! YAML lives only at this edge. Each document is parsed on its own (so one broken
//! document does not hide the others, as with kubectl), turned into JSON with serde-saphyr,
//! decoded into its typed kind with the failing field's path, and validated. Errors are
//! located by mapping the field path back to the line where that key was written.

use std::collections::HashMap;

use granit_parser::{Event, Parser};
use serde_saphyr::granit_parser;

use crate::error::DocumentError;
use crate::kinds::AnyObject;

/// One successfully parsed and validated document.
#[derive(Clone, Debug)]
pub struct Document {
    pub file: String,
    /// 1-based line where the document starts.
    pub line: usize,
    pub object: AnyObject,
}

impl Document {
    /// `Kind/name`, as hkctl prints it.
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.object.info().kind, self.object.meta().name)
    }
}

/// Parses every document of a manifest file. Each document yields an object or its errors.
pub fn parse_documents(file: &str, text: &str) -> Vec<Result<Document, Vec<DocumentError>>> {
    split_documents(text)
        .into_iter()
        .map(|(offset, chunk)| parse_one(file, offset, chunk))
        .collect()
}

/// Splits a YAML stream at `---` lines; returns (line offset, text) of non-empty documents.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 0;
    let mut pos = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        let is_marker = trimmed == "---" || trimmed.starts_with("--- ") || trimmed == "...";
        if is_marker && pos > start_byte {
            docs.push((start_line, &text[start_byte..pos]));
            start_byte = pos;
            start_line = i;
        }
        pos += line.len();
    }
    docs.push((start_line, &text[start_byte..]));
    docs.into_iter()
        .filter(|(_, d)| {
            d.lines().any(|l| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#') && t != "---" && t != "..."
            })
        })
        .collect()
}

fn parse_one(file: &str, offset: usize, chunk: &str) -> Result<Document, Vec<DocumentError>> {
    let doc_line = first_content_line(chunk) + offset;
    let err = |line: usize, object: Option<String>, field: Option<String>, message: String| {
        DocumentError {
            file: file.to_string(),
            line,
            object,
            field,
            message,
        }
    };
    if chunk.len() > crate::MAX_OBJECT_BYTES {
        return Err(vec![err(
            doc_line,
            None,
            None,
            format!(
                "document is {} bytes; objects may be at most {} bytes (1 MiB)",
                chunk.len(),
                crate::MAX_OBJECT_BYTES
            ),
        )]);
    }
    let value: serde_json::Value = match serde_saphyr::from_str(chunk) {
        Ok(v) => v,
        Err(e) => {
            let line = e.location().map(|l| l.line() as usize).unwrap_or(1) + offset;
            return Err(vec![err(line, None, None, yaml_message(&e))]);
        }
    };
    let index = LineIndex::build(chunk);
    let line_of = |field: &str| index.line_of(field).map(|l| l + offset).unwrap_or(doc_line);
    let object_name = describe(&value);
    let size = serde_json::to_vec(&value).map(|v| v.len()).unwrap_or(0);
    if size > crate::MAX_OBJECT_BYTES {
        return Err(vec![err(
            doc_line,
            object_name,
            None,
            format!("object is {size} bytes as JSON; objects may be at most 1 MiB"),
        )]);
    }
    let object = AnyObject::from_value(value).map_err(|e| {
        vec![err(
            line_of(&e.field),
            object_name.clone(),
            field_opt(&e.field),
            e.message,
        )]
    })?;
    let errors = object.validate();
    if !errors.is_empty() {
        return Err(errors
            .into_iter()
            .map(|e| {
                err(
                    line_of(&e.field),
                    object_name.clone(),
                    field_opt(&e.field),
                    e.message,
                )
            })
            .collect());
    }
    Ok(Document {
        file: file.to_string(),
        line: doc_line,
        object,
    })
}

fn field_opt(field: &str) -> Option<String> {
    (!field.is_empty() && field != ".").then(|| field.to_string())
}

fn first_content_line(chunk: &str) -> usize {
    chunk
        .lines()
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && t != "---"
        })
        .map(|i| i + 1)
        .unwrap_or(1)
}

/// The YAML error's message without the source snippet (we print our own location).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("invalid YAML").trim();
    let first = first
        .rsplit_once(" at line ")
        .map(|(m, _)| m)
        .unwrap_or(first);
    format!("invalid YAML: {first}")
}

/// `Kind/name` from a raw document, when both are there.
fn describe(value: &serde_json::Value) -> Option<String> {
    let kind = value.get("kind")?.as_str()?;
    let name = value.pointer("/metadata/name")?.as_str()?;
    Some(format!("{kind}/{name}"))
}

/// Maps field paths (`spec.storage[1].mode`) to the 1-based line where they are written.
#[derive(Debug, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

struct Frame {
    is_map: bool,
    parent_len: usize,
    expecting_key: bool,
    index: usize,
}

impl LineIndex {
    /// Builds the index from one YAML document; on a syntax error, what was read so far.
    pub fn build(text: &str) -> LineIndex {
        let mut index = LineIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut path = String::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let line = span.start.line();
            match event {
                Event::MappingStart(..) => {
                    index.begin_value(&mut stack, &mut path, line);
                    stack.push(Frame {
                        is_map: true,
                        parent_len: path.len(),
                        expecting_key: true,
                        index: 0,
                    });
                }
                Event::SequenceStart(..) => {
                    index.begin_value(&mut stack, &mut path, line);
                    stack.push(Frame {
                        is_map: false,
                        parent_len: path.len(),
                        expecting_key: false,
                        index: 0,
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    if let Some(f) = stack.pop() {
                        path.truncate(f.parent_len);
                    }
                    Self::end_value(&mut stack, &mut path);
                }
                Event::Scalar(value, ..) => match stack.last_mut() {
                    Some(top) if top.is_map && top.expecting_key => {
                        path.truncate(top.parent_len);
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(&value);
                        top.expecting_key = false;
                        index.lines.entry(path.clone()).or_insert(line);
                    }
                    _ => {
                        index.begin_value(&mut stack, &mut path, line);
                        Self::end_value(&mut stack, &mut path);
                    }
                },
                Event::Alias(_) => {
                    index.begin_value(&mut stack, &mut path, line);
                    Self::end_value(&mut stack, &mut path);
                }
                _ => {}
            }
        }
        index
    }

    fn begin_value(&mut self, stack: &mut [Frame], path: &mut String, line: usize) {
        if let Some(top) = stack.last()
            && !top.is_map
        {
            path.truncate(top.parent_len);
            path.push_str(&format!("[{}]", top.index));
            self.lines.entry(path.clone()).or_insert(line);
        }
    }

    fn end_value(stack: &mut [Frame], path: &mut String) {
        if let Some(top) = stack.last_mut() {
            if top.is_map {
                top.expecting_key = true;
            } else {
                top.index += 1;
            }
            path.truncate(top.parent_len);
        }
    }

    /// The line of `field`, or of its nearest written parent.
    pub fn line_of(&self, field: &str) -> Option<usize> {
        let mut f = field;
        loop {
            if let Some(l) = self.lines.get(f) {
                return Some(*l);
            }
            let cut = f.rfind(['.', '['])?;
            f = &f[..cut];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "\
# leading comment
apiVersion: hostkit.dev/v1alpha1
kind: Project
metadata:
  name: toys
spec:
  roots:
    data: /srv/toys
---
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata:
  name: exograph
spec:
  hosts: [a]
  storage:
    - name: data
      mode: \"0755\"
  daemon:
    exec: [/bin/true]
    restart: sometimes
";

    fn errors(text: &str) -> Vec<String> {
        parse_documents("t.yaml", text)
            .into_iter()
            .filter_map(|r| r.err())
            .flatten()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn line_index_maps_nested_paths() {
        let idx = LineIndex::build(TWO.split("---").nth(1).unwrap());
        assert_eq!(idx.line_of("spec.storage[0].mode"), Some(10));
        assert_eq!(idx.line_of("spec.daemon.restart"), Some(13));
        assert_eq!(idx.line_of("spec.daemon.nothing"), Some(11));
    }

    #[test]
    fn bad_enum_names_file_line_object_field_and_valid_values() {
        let errs = errors(TWO);
        assert_eq!(
            errs,
            vec![
                "t.yaml:21: Service/exograph spec.daemon.restart: \"sometimes\" is not one of no, \
                 on-success, on-failure, on-abnormal, on-watchdog, on-abort, always"
                    .to_string()
            ]
        );
        let ok = parse_documents("t.yaml", TWO);
        assert!(ok[0].as_ref().is_ok(), "the good document still parses");
        assert_eq!(ok[0].as_ref().unwrap().line, 2);
    }

    #[test]
    fn unknown_field_and_wrong_type() {
        let text = "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata:\n  name: h\nspec:\n  address: x\n  ssh:\n    port: lots\n";
        let errs = errors(text);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("t.yaml:8: Host/h spec.ssh.port: invalid type"),
            "{}",
            errs[0]
        );
        let text = "apiVersion: hostkit.dev/v1alpha1\nkind: Host\nmetadata:\n  name: h\nspec:\n  address: x\n  adress: y\n";
        let errs = errors(text);
        assert!(
            errs[0].contains("unknown field \"adress\"; valid fields: address"),
            "{}",
            errs[0]
        );
        assert!(errs[0].starts_with("t.yaml:7: Host/h spec"), "{}", errs[0]);
    }

    #[test]
    fn unknown_kind_and_api_version() {
        let errs = errors("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n");
        assert!(
            errs[0].contains("apiVersion: \"v1\" is not served here"),
            "{}",
            errs[0]
        );
        let errs = errors("apiVersion: hostkit.dev/v1alpha1\nkind: Pod\nmetadata:\n  name: p\n");
        assert!(
            errs[0].starts_with("t.yaml:2: Pod/p kind: unknown kind \"Pod\"; valid kinds: Project"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn malformed_yaml_is_located_and_isolated() {
        let text = "apiVersion: hostkit.dev/v1alpha1\nkind: Project\nmetadata:\n  name: a\n---\nkind: [unclosed\n---\napiVersion: hostkit.dev/v1alpha1\nkind: Project\nmetadata:\n  name: b\n";
        let results = parse_documents("t.yaml", text);
        assert_eq!(results.len(), 3);
        assert!(results[0].is_ok());
        let e = &results[1].as_ref().unwrap_err()[0];
        assert!(e.message.starts_with("invalid YAML"), "{e}");
        assert!((6..=7).contains(&e.line), "{e}");
        assert!(results[2].is_ok());
    }

    #[test]
    fn bad_name_mode_duration_cron_and_reference() {
        let text = "\
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata:
  name: Bad_Name
spec:
  hosts: [a]
  interval: soon
";
        let errs = errors(text);
        assert!(
            errs[0]
                .starts_with("t.yaml:7: Service/Bad_Name spec.interval: invalid duration \"soon\""),
            "{errs:?}"
        );
        let text = "\
apiVersion: hostkit.dev/v1alpha1
kind: Service
metadata:
  name: Bad_Name
spec:
  hosts: [a]
  storage:
    - name: data
  files:
    - path: ${storage.dta}/x
      content: hi
";
        let errs = errors(text);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "t.yaml:4: Service/Bad_Name metadata.name: \"Bad_Name\" is not a valid name"
            ),
            "{errs:?}"
        );
        assert!(errs[1].starts_with("t.yaml:10: Service/Bad_Name spec.files[0].path: unknown reference ${storage.dta}; valid references:"), "{errs:?}");
        assert!(errs[1].contains("${storage.<data>}"), "{errs:?}");
        let text = "\
apiVersion: hostkit.dev/v1alpha1
kind: PolicyWindow
metadata:
  name: w
spec:
  kind: allow
  schedule: \"0 25 * * *\"
  duration: 1h
  timeZone: Mars/Olympus
";
        let errs = errors(text);
        assert!(
            errs[0].starts_with("t.yaml:7: PolicyWindow/w spec.schedule"),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with(
                "t.yaml:9: PolicyWindow/w spec.timeZone: \"Mars/Olympus\" is not an IANA"
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn mode_must_be_quoted() {
        let text = "apiVersion: hostkit.dev/v1alpha1\nkind: Service\nmetadata:\n  name: s\nspec:\n  hosts: [a]\n  storage:\n    - name: data\n      mode: 0750\n";
        let errs = errors(text);
        assert!(
            errs[0].starts_with("t.yaml:9: Service/s spec.storage[0].mode: invalid mode"),
            "{errs:?}"
        );
        assert!(errs[0].contains("\"0750\""), "{errs:?}");
    }

    #[test]
    fn oversized_object_is_refused() {
        let big = "x".repeat(crate::MAX_OBJECT_BYTES + 10);
        let text = format!(
            "apiVersion: hostkit.dev/v1alpha1\nkind: Project\nmetadata:\n  name: p\n  annotations:\n    a: \"{big}\"\n"
        );
        let errs = errors(&text);
        assert!(errs[0].contains("at most"), "{errs:?}");
    }
}
