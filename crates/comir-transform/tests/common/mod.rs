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
