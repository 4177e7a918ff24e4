//! House rules the compiler does not check: every source file starts with a `//!` line saying
//! what it owns, and every crate root forbids unsafe code.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

fn workspace_crates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("crates dir").to_owned()
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&workspace_crates(), &mut files);
    assert!(files.len() > 20, "found the sources");
    let missing: Vec<_> =
        files.iter().filter(|path| !std::fs::read_to_string(path).expect("read").starts_with("//!")).collect();
    assert!(missing.is_empty(), "files without a leading //! doc: {missing:?}");
}

#[test]
fn every_crate_root_forbids_unsafe_code() {
    for entry in std::fs::read_dir(workspace_crates()).expect("crates") {
        let src = entry.expect("entry").path().join("src");
        for root in ["lib.rs", "main.rs"] {
            let path = src.join(root);
            if path.exists() {
                let text = std::fs::read_to_string(&path).expect("read");
                assert!(text.contains("#![forbid(unsafe_code)]"), "{} lacks #![forbid(unsafe_code)]", path.display());
            }
        }
    }
}
