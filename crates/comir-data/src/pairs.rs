use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::Error;

/// One aligned pair: the same scene in modality A and modality B.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// The shared file name (without folder).
    pub name: String,
    /// The modality-A image.
    pub a: PathBuf,
    /// The modality-B image.
    pub b: PathBuf,
}

impl Pair {
    /// Loads both images with their channels and checks that their sizes match.
    ///
    /// # Errors
    /// Unreadable images (naming the file) or a size mismatch (naming the pair).
    pub fn load(&self) -> Result<(comir_image::Image, comir_image::Image), Error> {
        let a = comir_image::load(&self.a)?;
        let b = comir_image::load(&self.b)?;
        self.check_sizes(&a, &b)?;
        Ok((a, b))
    }

    fn check_sizes(&self, a: &comir_image::Image, b: &comir_image::Image) -> Result<(), Error> {
        if (a.width(), a.height()) != (b.width(), b.height()) {
            return Err(Error::SizeMismatch {
                pair: self.name.clone(),
                a_w: a.width(),
                a_h: a.height(),
                b_w: b.width(),
                b_h: b.height(),
            });
        }
        Ok(())
    }

    /// Loads both images as single-channel images and checks that their sizes match.
    ///
    /// # Errors
    /// Unreadable images (naming the file) or a size mismatch (naming the pair).
    pub fn load_gray(&self) -> Result<(comir_image::Image, comir_image::Image), Error> {
        let a = comir_image::load_gray(&self.a)?;
        let b = comir_image::load_gray(&self.b)?;
        self.check_sizes(&a, &b)?;
        Ok((a, b))
    }
}

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "tif", "tiff", "jpg", "jpeg", "nii"];

fn image_names(dir: &Path) -> Result<BTreeSet<String>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|error| Error::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|error| Error::Io {
            path: dir.to_path_buf(),
            error,
        })?;
        let path = entry.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            || path
                .to_str()
                .is_some_and(comir_image::nifti_io::is_nifti_name);
        if is_image && path.is_file() {
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                names.insert(name.to_string());
            }
        }
    }
    Ok(names)
}

/// Lists the pairs of `dir/A` and `dir/B`, matched by file name, sorted by name.
///
/// # Errors
/// [`Error::Layout`] when a folder is missing, holds no images, or names do not match (the
/// unmatched names are listed).
pub fn find_pairs(dir: impl AsRef<Path>) -> Result<Vec<Pair>, Error> {
    let dir = dir.as_ref();
    let (da, db) = (dir.join("A"), dir.join("B"));
    for d in [&da, &db] {
        if !d.is_dir() {
            return Err(Error::Layout {
                path: dir.to_path_buf(),
                reason: format!(
                    "expected sub-folders A/ and B/ holding images with matching names; {} is missing",
                    d.display()
                ),
            });
        }
    }
    find_pairs_in(&da, &db).map_err(|e| match e {
        Error::Layout { reason, .. } => Error::Layout {
            path: dir.to_path_buf(),
            reason,
        },
        other => other,
    })
}

/// Lists the pairs of two folders (modality A and modality B), matched by file name.
///
/// # Errors
/// As [`find_pairs`]; the error names `da`.
pub fn find_pairs_in(da: &Path, db: &Path) -> Result<Vec<Pair>, Error> {
    let dir = da;
    for d in [da, db] {
        if !d.is_dir() {
            return Err(Error::Layout {
                path: d.to_path_buf(),
                reason: "not a folder".into(),
            });
        }
    }
    let (na, nb) = (image_names(da)?, image_names(db)?);
    let only_a: Vec<&String> = na.difference(&nb).collect();
    let only_b: Vec<&String> = nb.difference(&na).collect();
    if !only_a.is_empty() || !only_b.is_empty() {
        let list = |v: &[&String]| {
            let shown: Vec<&str> = v.iter().take(10).map(|s| s.as_str()).collect();
            let more = if v.len() > 10 {
                format!(" and {} more", v.len() - 10)
            } else {
                String::new()
            };
            format!("[{}]{more}", shown.join(", "))
        };
        return Err(Error::Layout {
            path: dir.to_path_buf(),
            reason: format!(
                "unmatched names: only in A/ {}; only in B/ {}",
                list(&only_a),
                list(&only_b)
            ),
        });
    }
    if na.is_empty() {
        return Err(Error::Layout {
            path: dir.to_path_buf(),
            reason: "A/ and B/ hold no images (png, tif, jpg)".into(),
        });
    }
    Ok(na
        .into_iter()
        .map(|name| Pair {
            a: da.join(&name),
            b: db.join(&name),
            name,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::write(p, b"x").expect("write");
    }

    #[test]
    fn pairs_match_by_name_and_mismatches_are_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("A")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("B")).expect("mkdir");
        for n in ["b.png", "a.png"] {
            touch(&dir.path().join("A").join(n));
            touch(&dir.path().join("B").join(n));
        }
        let pairs = find_pairs(dir.path()).expect("pairs");
        assert_eq!(
            pairs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["a.png", "b.png"]
        );
        touch(&dir.path().join("A").join("lonely.png"));
        let msg = find_pairs(dir.path()).expect_err("unmatched").to_string();
        assert!(msg.contains("only in A/ [lonely.png]"), "{msg}");
    }

    #[test]
    fn missing_folder_is_explained() {
        let dir = tempfile::tempdir().expect("tempdir");
        let msg = find_pairs(dir.path()).expect_err("no A").to_string();
        assert!(msg.contains("A/ and B/"), "{msg}");
    }
}
