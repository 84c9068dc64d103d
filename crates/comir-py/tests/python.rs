//! Runs the Python package's pytest suite (`tests/test_*.py`) against the extension this build
//! made, so that `cargo test --workspace` tests the Python API too.
//!
//! The package is assembled in a temporary folder: `python/comir/*.py` plus the built shared
//! library as `comir/_comir.abi3.so`, which is what `pip install` puts in place. The Python is
//! `$COMIR_PYTHON`, else `.venv/bin/python` at the repository root, else `python3`; it needs
//! numpy and pytest. Without them the suite is skipped with a message, unless
//! `COMIR_REQUIRE_PYTHON=1` (CI sets it), where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python that runs the suite, if one with numpy and pytest is there.
fn python() -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match std::env::var_os("COMIR_PYTHON") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![
            repo_root().join(".venv/bin/python"),
            PathBuf::from("python3"),
        ],
    };
    for py in &candidates {
        let ok = Command::new(py)
            .args(["-c", "import numpy, pytest"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(py.clone());
        }
    }
    Err(format!(
        "no Python with numpy and pytest (tried {}); `python3 -m venv .venv && .venv/bin/pip \
         install numpy pytest` at the repository root enables these tests",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The shared library cargo built for this test run (next to this test's executable).
fn extension() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps folder");
    let name = format!(
        "{}_comir{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    for dir in [deps, deps.parent().unwrap_or(deps)] {
        let p = dir.join(&name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "the extension {name} was not built next to {}",
        exe.display()
    );
}

/// The `comir` executable of the same build, for the tests that compare with the command line.
fn cli() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("comir");
    p.is_file().then_some(p)
}

#[test]
fn pytest_suite() {
    let py = match python() {
        Ok(p) => p,
        Err(why) => {
            if std::env::var("COMIR_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
                panic!("COMIR_REQUIRE_PYTHON=1 but {why}");
            }
            eprintln!("skipping the Python tests: {why}");
            return;
        }
    };
    let site = tempfile::tempdir().expect("temporary folder");
    let package = site.path().join("comir");
    std::fs::create_dir(&package).expect("package folder");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/comir");
    for entry in std::fs::read_dir(&source).expect("python/comir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let name = path.file_name().expect("file name");
            std::fs::copy(&path, package.join(name)).expect("copy");
        }
    }
    std::fs::copy(extension(), package.join("_comir.abi3.so")).expect("copy the extension");
    let mut cmd = Command::new(&py);
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"))
        .env("PYTHONPATH", site.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("COMIR_REPO", repo_root())
        .current_dir(site.path());
    match cli() {
        Some(bin) => cmd.env("COMIR_BIN", bin),
        None => cmd.env_remove("COMIR_BIN"),
    };
    let status = cmd.status().expect("run pytest");
    assert!(status.success(), "pytest failed ({status})");
}
