//! Reading `-f FILE|DIR|-` into validated documents, kubectl-style.
//!
//! Every document is parsed and validated on its own: a bad document is reported with its
//! file and line and skipped, the others go ahead. An object defined twice in one apply is
//! refused at every place it appears, since neither copy is clearly the one meant.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use hostkit_api::DocumentError;
use hostkit_api::manifest::{Document, parse_documents};

use crate::{Error, Result};

/// The documents of an apply, and the problems found in the others.
#[derive(Debug, Default)]
pub struct Loaded {
    pub documents: Vec<Document>,
    pub errors: Vec<DocumentError>,
}

/// The manifest files under `path`: the file itself, or a folder's `*.yaml`, `*.yml` and
/// `*.json` (below sub-folders too when `recursive`), sorted by path.
fn files(path: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                files(&entry, recursive, out)?;
            }
        } else if entry
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(entry);
        }
    }
    Ok(())
}

/// Loads every document from `paths` (`-` is standard input).
pub fn load(paths: &[String], recursive: bool) -> Result<Loaded> {
    let mut sources: Vec<(String, String)> = Vec::new();
    for p in paths {
        if p == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| Error::Io {
                    path: "<stdin>".into(),
                    source,
                })?;
            sources.push(("<stdin>".into(), text));
            continue;
        }
        let mut found = Vec::new();
        files(Path::new(p), recursive, &mut found)?;
        if found.is_empty() {
            return Err(Error::Usage(format!(
                "{p}: no manifest files (*.yaml, *.yml, *.json) found"
            )));
        }
        for f in found {
            let text = std::fs::read_to_string(&f).map_err(|source| Error::Io {
                path: f.display().to_string(),
                source,
            })?;
            sources.push((f.display().to_string(), text));
        }
    }
    let mut loaded = Loaded::default();
    for (name, text) in &sources {
        for result in parse_documents(name, text) {
            match result {
                Ok(doc) => loaded.documents.push(doc),
                Err(errs) => loaded.errors.extend(errs),
            }
        }
    }
    reject_duplicates(&mut loaded);
    Ok(loaded)
}

fn reject_duplicates(loaded: &mut Loaded) {
    let mut places: HashMap<String, Vec<String>> = HashMap::new();
    for d in &loaded.documents {
        places
            .entry(d.display_name())
            .or_default()
            .push(format!("{}:{}", d.file, d.line));
    }
    let documents = std::mem::take(&mut loaded.documents);
    for d in documents {
        let at = &places[&d.display_name()];
        if at.len() > 1 {
            loaded.errors.push(DocumentError {
                file: d.file.clone(),
                line: d.line,
                object: Some(d.display_name()),
                field: None,
                message: format!(
                    "defined more than once in this apply (at {}); define each object once",
                    at.join(", ")
                ),
            });
        } else {
            loaded.documents.push(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROJECT: &str = "apiVersion: hostkit.dev/v1alpha1\nkind: Project\nmetadata:\n  name: p\n";

    #[test]
    fn folders_recurse_only_with_r_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), PROJECT).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.yml"), PROJECT).unwrap();
        let path = dir.path().display().to_string();
        let flat = load(std::slice::from_ref(&path), false).unwrap();
        assert_eq!(flat.documents.len(), 1);
        assert!(flat.errors.is_empty());
        let deep = load(&[path], true).unwrap();
        assert!(deep.documents.is_empty());
        assert_eq!(deep.errors.len(), 2);
        assert!(
            deep.errors[0]
                .to_string()
                .contains("defined more than once"),
            "{}",
            deep.errors[0]
        );
        assert!(
            deep.errors[0].to_string().contains("b.yml:1"),
            "{}",
            deep.errors[0]
        );
    }

    #[test]
    fn a_missing_path_is_an_error() {
        let err = load(&["/nonexistent/hk.yaml".into()], false).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/hk.yaml"), "{err}");
    }
}
