//! Every example manifest parses and validates, so the examples never drift from the API.

use std::path::Path;

use hostkit_api::manifest::parse_documents;

#[test]
fn every_example_manifest_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("manifests/examples exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "expected the four shared examples, found {files:?}"
    );
    let mut objects = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for result in parse_documents(&file.display().to_string(), &text) {
            match result {
                Ok(doc) => objects.push(doc.display_name()),
                Err(errs) => panic!(
                    "{}",
                    errs.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }
    for expected in [
        "Project/toys",
        "Host/elixir-toys",
        "Service/exograph",
        "Host/edge",
        "Service/hex-mirror",
        "Host/app",
        "Service/api",
        "PolicyWindow/weeknights",
        "Rollback/exograph-undo",
        "GitSource/infra",
        "Instance/demo-vm",
    ] {
        assert!(
            objects.iter().any(|o| o == expected),
            "{expected} missing from {objects:?}"
        );
    }
}

#[test]
fn the_shared_examples_are_copied_unchanged() {
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/examples");
    let Ok(entries) = std::fs::read_dir(&shared) else {
        // A checkout without the shared folder beside it has nothing to compare against.
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        let a = std::fs::read_to_string(&path).unwrap();
        let b = std::fs::read_to_string(ours.join(name)).unwrap_or_default();
        assert_eq!(
            a,
            b,
            "manifests/examples/{} differs from shared/examples",
            name.to_string_lossy()
        );
    }
}
