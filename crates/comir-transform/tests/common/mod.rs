//! What the SimpleITK agreement tests share.

use std::process::Command;

/// Whether `python3` can import SimpleITK; the tests skip with a message when it cannot.
pub fn simpleitk_available() -> bool {
    Command::new("python3")
        .args(["-c", "import SimpleITK"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs `python3 -c script args…`, asserts that it succeeded and returns its standard output.
pub fn run_python(script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
