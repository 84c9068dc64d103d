//! Models that ship inside comir, usable by name wherever a model folder is asked for
//! (`--model mni152-t1t2`, `comir.Model.load("mni152-t1t2")`).
//!
//! Their files are compiled into the program, so an installed `comir` needs no data folder. A
//! bundled model is written once into a cache folder (`$XDG_CACHE_HOME/comir/models`, else
//! `~/.cache/comir/models`, else the temporary folder) under a name that carries a hash of its
//! files, and loaded from there like any other model folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A model compiled into comir.
#[derive(Clone, Copy, Debug)]
pub struct BundledModel {
    /// The name that selects it.
    pub name: &'static str,
    /// What it is for, in one line.
    pub purpose: &'static str,
    /// Its files: name and contents.
    pub files: &'static [(&'static str, &'static [u8])],
}

/// Every bundled model.
pub const BUNDLED: &[BundledModel] = &[BundledModel {
    name: "mni152-t1t2",
    purpose: "T1- and T2-weighted brain MR (modality a = T1, b = T2); the fast preset trained \
              on axial, coronal and sagittal MNI152 slices",
    files: &[
        (
            "model.json",
            include_bytes!("../../../models/mni152-t1t2/model.json"),
        ),
        (
            "weights.bpk",
            include_bytes!("../../../models/mni152-t1t2/weights.bpk"),
        ),
        (
            "README.md",
            include_bytes!("../../../models/mni152-t1t2/README.md"),
        ),
        (
            "NOTICE",
            include_bytes!("../../../models/mni152-t1t2/NOTICE"),
        ),
    ],
}];

/// The bundled model called `name`.
pub fn find(name: &str) -> Option<&'static BundledModel> {
    BUNDLED.iter().find(|m| m.name == name)
}

/// A model given by a path that does not exist and is not a bundled name either.
#[derive(Debug)]
pub struct UnknownModel(pub PathBuf);

impl std::fmt::Display for UnknownModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = BUNDLED.iter().map(|m| m.name).collect();
        write!(
            f,
            "{}: no such model folder, and not the name of a bundled model ({})",
            self.0.display(),
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownModel {}

/// The folder to load for `spec`: `spec` itself when it exists (a model folder), else the
/// bundled model of that name, written to the cache folder if it is not there yet.
///
/// # Errors
/// A `spec` that is neither an existing path nor a bundled name (the message lists the
/// bundled names), or a cache folder that cannot be written.
pub fn resolve(spec: &Path) -> Result<PathBuf> {
    if spec.exists() {
        return Ok(spec.to_path_buf());
    }
    let Some(model) = spec.to_str().and_then(find) else {
        return Err(UnknownModel(spec.to_path_buf()).into());
    };
    let dir = cache_root().join(format!("{}-{:016x}", model.name, fingerprint(model)));
    for (file, bytes) in model.files {
        let path = dir.join(file);
        // Written atomically, so a folder another process is filling is never half-read.
        if std::fs::read(&path).ok().as_deref() != Some(*bytes) {
            std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
            comir_fs::write_atomically(&path, bytes)
                .with_context(|| format!("{}", path.display()))?;
        }
    }
    Ok(dir)
}

fn cache_root() -> PathBuf {
    let from_env = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from_env("XDG_CACHE_HOME")
        .or_else(|| from_env("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("comir")
        .join("models")
}

/// FNV-1a over the model's file names and contents: another build's files get another folder.
fn fingerprint(model: &BundledModel) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, bytes) in model.files {
        for &b in name.as_bytes().iter().chain(bytes.iter()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundled_name_resolves_to_a_folder_holding_its_files() {
        let cache = tempfile::tempdir().expect("temporary folder");
        // Only this test reads XDG_CACHE_HOME in this process.
        std::env::set_var("XDG_CACHE_HOME", cache.path());
        let dir = resolve(Path::new("mni152-t1t2")).expect("bundled model");
        assert!(dir.starts_with(cache.path()));
        let model = find("mni152-t1t2").expect("listed");
        for (file, bytes) in model.files {
            assert_eq!(std::fs::read(dir.join(file)).expect("written"), *bytes);
        }
        // A second resolution finds the same folder.
        assert_eq!(resolve(Path::new("mni152-t1t2")).expect("again"), dir);
        let err = resolve(Path::new("no-such-model")).expect_err("unknown");
        assert!(err.to_string().contains("mni152-t1t2"), "{err}");
    }
}
