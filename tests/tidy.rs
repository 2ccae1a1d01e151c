//! House rules that hold for every source file: each starts with a `//!`
//! doc saying what it is for, and no test is ignored or expected to panic.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() && name != "target" && !name.starts_with('.') && name != "fixtures" {
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn workspace_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    files
}

#[test]
fn every_source_file_starts_with_a_doc_comment() {
    let missing: Vec<_> = workspace_files()
        .into_iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            !text.lines().find(|l| !l.trim().is_empty()).is_some_and(|l| l.starts_with("//!"))
        })
        .collect();
    assert!(missing.is_empty(), "files without a `//!` doc: {missing:#?}");
}

#[test]
fn no_test_is_ignored_or_expected_to_panic() {
    let ignore = concat!("#[", "ignore");
    let should_panic = concat!("#[", "should_panic");
    let offenders: Vec<_> = workspace_files()
        .into_iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.contains(ignore) || text.contains(should_panic)
        })
        .collect();
    assert!(offenders.is_empty(), "{offenders:#?}");
}
