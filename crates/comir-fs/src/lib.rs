//! Safe file output for comir: every file comir writes goes first to a temporary file in the
//! destination folder, is flushed to disk, and is then renamed over its name, so that a crash at
//! any moment leaves the old file or the new one, never a torn one.
//!
//! * [`write_atomically`] writes bytes held in memory; [`write_atomically_with`] lets a writer
//!   fill the file (for outputs too large to build in memory first).
//! * The temporary files are named `.comir-HOST-PID-XXXXXX.tmp` ([`is_temporary_name`]): the
//!   writer's machine (8 hex digits of a hash of its host name) and process id, then six
//!   random letters or digits. A process killed between creating one and renaming it leaves
//!   it behind; the first write of a process into a folder removes such leftovers there
//!   ([`remove_stale_temporaries`]): those of a process of this machine that has ended, and
//!   any older than [`STALE_AGE`] (written on another machine sharing the folder, or by an
//!   older comir, whose names carry no process). Nothing else is ever touched.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The start of the name of every temporary file comir writes through (hidden on Unix).
pub const TEMP_PREFIX: &str = ".comir-";

/// The end of the name of every temporary file comir writes through.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Random letters and digits before [`TEMP_SUFFIX`].
const TEMP_RANDOM_LEN: usize = 6;

/// Age after which a leftover whose writer cannot be checked (another machine's, or one named
/// without its process) counts as stale: no comir write takes an hour.
pub const STALE_AGE: Duration = Duration::from_secs(3600);

/// 8 hex digits of a hash (FNV-1a) of this machine's host name, or of `"localhost"` when it
/// cannot be read.
fn host_tag() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    let hash = name.trim().bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{hash:08x}")
}

/// The start of this process's temporary names: `.comir-HOST-PID-`.
fn own_prefix() -> String {
    format!("{TEMP_PREFIX}{}-{}-", host_tag(), std::process::id())
}

/// Removes stale leftovers from `dir` the first time this process writes there; a failure to
/// clean never fails the write.
fn clean_once(dir: &Path) {
    static CLEANED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let Ok(mut cleaned) = CLEANED.lock() else {
        return;
    };
    let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    if cleaned.contains(&key) {
        return;
    }
    cleaned.push(key);
    let _ = remove_stale_temporaries(dir, STALE_AGE);
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed to disk,
/// then renamed over `path`, so that a crash at any moment leaves the old file or the new one,
/// never a torn one. The file gets the usual `rw-r--r--` permissions (a bare temporary file
/// would be private to its owner).
///
/// # Errors
/// What the operating system says; when the temporary file cannot be created, the message names
/// the folder.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |f| f.write_all(bytes))
}

/// Writes `path` atomically from a writer: `fill` writes into a temporary file in the same
/// folder (buffered, seekable), which is then synced and renamed over `path`, as
/// [`write_atomically`] does. For outputs too large to build in memory first (a 10,000² float
/// TIFF is 400 MB).
///
/// # Errors
/// As [`write_atomically`], or what `fill` returns (the temporary file is then removed).
pub fn write_atomically_with(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    clean_once(dir);
    let prefix = own_prefix();
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(TEMP_SUFFIX)
        .rand_bytes(TEMP_RANDOM_LEN)
        .tempfile_in(dir)
        .map_err(|e| {
            // tempfile's message ends in its random file's name; say which folder instead.
            let text = e.to_string();
            let cause = text.split(" at path ").next().unwrap_or(&text);
            std::io::Error::new(
                e.kind(),
                format!("cannot create a file in {}: {cause}", dir.display()),
            )
        })?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        fill(&mut w)?;
        w.flush()?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The writer of a temporary file, as its name records it.
#[derive(Debug, PartialEq, Eq)]
struct Writer<'a> {
    host: &'a str,
    pid: u32,
}

/// Parses a temporary file's name: `Some(Some(writer))` for `.comir-HOST-PID-XXXXXX.tmp`,
/// `Some(None)` for the older `.comir-XXXXXX.tmp`, `None` for any other name.
fn parse_temporary_name(name: &str) -> Option<Option<Writer<'_>>> {
    let rest = name.strip_prefix(TEMP_PREFIX)?.strip_suffix(TEMP_SUFFIX)?;
    let random_ok =
        |r: &str| r.len() == TEMP_RANDOM_LEN && r.bytes().all(|b| b.is_ascii_alphanumeric());
    let parts: Vec<&str> = rest.split('-').collect();
    match parts.as_slice() {
        [random] if random_ok(random) => Some(None),
        [host, pid, random]
            if random_ok(random)
                && host.len() == 8
                && host.bytes().all(|b| b.is_ascii_hexdigit())
                && !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(Some(Writer {
                host,
                pid: pid.parse().ok()?,
            }))
        }
        _ => None,
    }
}

/// Whether `name` (a bare file name) is that of one of comir's temporary files:
/// `.comir-HOST-PID-XXXXXX.tmp` (HOST 8 hex digits, PID decimal, six ASCII letters or digits),
/// or `.comir-XXXXXX.tmp` as older versions named them.
pub fn is_temporary_name(name: &str) -> bool {
    parse_temporary_name(name).is_some()
}

/// Whether a process of this machine with id `pid` is running (`None` where that cannot be
/// known).
fn process_alive(pid: u32) -> Option<bool> {
    if cfg!(target_os = "linux") {
        Some(Path::new("/proc").join(pid.to_string()).exists())
    } else {
        None
    }
}

/// Removes the temporary files that comir's atomic writes left in `dir` (those of a process
/// killed between writing and renaming) and returns their paths, sorted.
///
/// Only regular files directly in `dir` whose name passes [`is_temporary_name`] are considered,
/// never a file of another name, a folder, a link, or anything in a subfolder. Of those, a file
/// of a process of this machine is removed exactly when that process is no longer running
/// (on Linux, where that can be checked), whatever its age; a file of another machine sharing
/// the folder, one whose name records no process, or any on other systems is removed when it was
/// last modified at least `older_than` ago (a running writer keeps its file younger than a
/// sensible `older_than`, such as [`STALE_AGE`]). This process's own files are never removed. A file that disappears meanwhile (renamed by
/// its writer) is skipped.
///
/// # Errors
/// `dir` cannot be listed, or a leftover cannot be removed.
pub fn remove_stale_temporaries(dir: &Path, older_than: Duration) -> std::io::Result<Vec<PathBuf>> {
    let now = SystemTime::now();
    let host = host_tag();
    let me = std::process::id();
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(writer) = name.to_str().and_then(parse_temporary_name) else {
            continue;
        };
        // A writer of this machine is asked directly; only others' files go by age.
        let known = match &writer {
            Some(w) if w.host == host && w.pid == me => Some(false),
            Some(w) if w.host == host => process_alive(w.pid).map(|alive| !alive),
            _ => None,
        };
        if known == Some(false) {
            continue;
        }
        // The entry itself, not what a link points to.
        let meta = match std::fs::symlink_metadata(entry.path()) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if !meta.file_type().is_file() {
            continue;
        }
        // A modification time in the future (clock changes) counts as new.
        let age = meta
            .modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or(Duration::ZERO);
        if known.is_none() && age < older_than {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed.push(entry.path()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn atomic_writes_replace_the_file_and_are_readable_by_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("out.csv");
        write_atomically(&p, b"old").expect("write");
        write_atomically(&p, b"new").expect("rewrite");
        assert_eq!(std::fs::read(&p).expect("read"), b"new");
        // Only the target is left: no temporary files behind.
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o644);
        }
    }

    #[test]
    fn a_failing_writer_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("table.csv");
        write_atomically(&p, b"old").expect("write");
        let e = write_atomically_with(&p, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("encoder failed"))
        })
        .expect_err("fill fails");
        assert_eq!(e.to_string(), "encoder failed");
        assert_eq!(std::fs::read(&p).expect("read"), b"old");
        assert_eq!(names(dir.path()), ["table.csv"]);
    }

    #[test]
    fn a_missing_folder_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-such-folder");
        let e = write_atomically(&missing.join("x.json"), b"{}").expect_err("no folder");
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains("no-such-folder"), "{e}");
        assert!(!e.to_string().contains(TEMP_PREFIX), "{e}");
    }

    #[test]
    fn temporaries_are_named_with_the_prefix_and_recognised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("big.tif");
        write_atomically_with(&p, |_| {
            // While the file is being written, the folder holds exactly one temporary.
            let seen = names(dir.path());
            assert_eq!(seen.len(), 1, "{seen:?}");
            assert!(is_temporary_name(&seen[0]), "{seen:?}");
            assert!(seen[0].starts_with(&own_prefix()), "{seen:?}");
            Ok(())
        })
        .expect("write");
        assert!(is_temporary_name(".comir-a1B2c3.tmp"));
        assert!(is_temporary_name(".comir-0badf00d-4242-a1B2c3.tmp"));
        for other in [
            ".comir-a1B2c3.tmp.bak",
            ".comir-a1B2c.tmp",
            ".comir-a1B2c34.tmp",
            ".comir-a1-2c3.tmp",
            ".comir-0badf00d-42x-a1B2c3.tmp",
            ".comir-0badf00-42-a1B2c3.tmp",
            ".comir-0badf00d--a1B2c3.tmp",
            ".comir-0badf00d-42-a1B2c3-x.tmp",
            "comir-a1B2c3.tmp",
            ".tmpa1B2c3",
            "results.csv",
            "",
        ] {
            assert!(!is_temporary_name(other), "{other}");
        }
    }

    #[test]
    fn stale_temporaries_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for name in [
            ".comir-AbC123.tmp", // leftovers of killed writes
            ".comir-zzzzzz.tmp",
            "results.csv", // everything else stays
            ".comir-AbC123.tmp.keep",
            ".tmpAbC123", // another program's temporary
            "notes.tmp",
        ] {
            std::fs::write(d.join(name), b"x").expect("write");
        }
        // A folder and a file in a subfolder with a temporary's name stay too.
        std::fs::create_dir(d.join(".comir-folder.tmp")).expect("mkdir");
        std::fs::create_dir(d.join("sub")).expect("mkdir");
        std::fs::write(d.join("sub/.comir-SubDir.tmp"), b"x").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(d.join("results.csv"), d.join(".comir-link00.tmp"))
            .expect("symlink");

        // Younger than the age asked for: kept.
        let kept = remove_stale_temporaries(d, Duration::from_secs(3600)).expect("clean");
        assert!(kept.is_empty(), "{kept:?}");

        let removed = remove_stale_temporaries(d, Duration::ZERO).expect("clean");
        assert_eq!(
            removed,
            [d.join(".comir-AbC123.tmp"), d.join(".comir-zzzzzz.tmp")]
        );
        let mut left = vec![
            ".comir-AbC123.tmp.keep",
            ".comir-folder.tmp",
            ".tmpAbC123",
            "notes.tmp",
            "results.csv",
            "sub",
        ];
        #[cfg(unix)]
        left.push(".comir-link00.tmp");
        left.sort_unstable();
        assert_eq!(names(d), left);
        assert!(d.join("sub/.comir-SubDir.tmp").exists());
        // The link was not followed either.
        assert_eq!(std::fs::read(d.join("results.csv")).expect("read"), b"x");
        assert!(remove_stale_temporaries(&d.join("missing"), Duration::ZERO).is_err());
    }

    /// The id of a process that has ended.
    #[cfg(target_os = "linux")]
    fn ended_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        pid
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn leftovers_of_ended_processes_go_at_the_first_write_into_their_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let host = host_tag();
        let mut running = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn");
        let dead = format!(".comir-{host}-{}-AbC123.tmp", ended_pid());
        let alive = format!(".comir-{host}-{}-AbC123.tmp", running.id());
        let own = format!(".comir-{host}-{}-AbC123.tmp", std::process::id());
        // Another machine's process may be running: kept while young.
        let elsewhere = format!(".comir-{}-{}-AbC123.tmp", "0badf00d", ended_pid());
        for name in [&dead, &alive, &own, &elsewhere, &".tmpAbC123".to_string()] {
            std::fs::write(d.join(name), b"x").expect("write");
        }
        write_atomically(&d.join("t.json"), b"{}").expect("write");
        let mut left = vec![
            alive.clone(),
            own.clone(),
            elsewhere.clone(),
            ".tmpAbC123".to_string(),
            "t.json".to_string(),
        ];
        left.sort();
        assert_eq!(names(d), left);
        // Once they are old, a leftover of another machine goes too; a running process's and
        // this process's files stay whatever their age.
        let removed = remove_stale_temporaries(d, Duration::ZERO).expect("clean");
        assert_eq!(removed, [d.join(&elsewhere)]);
        running.kill().expect("kill");
        running.wait().expect("wait");
        let removed = remove_stale_temporaries(d, STALE_AGE).expect("clean");
        assert_eq!(removed, [d.join(&alive)]);
        assert!(d.join(&own).exists());
    }
}
