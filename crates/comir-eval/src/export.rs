//! Evaluation cases written for other tools, so that they can be run on exactly the cases comir
//! evaluates.

use std::path::{Path, PathBuf};

use crate::runner::RunError;
use crate::Case;

/// Header of `cases.csv`: one case per row, with the true fixed-to-moving transform.
const CASES_HEADER: &str = "case,pair,level,width,height,fixed,moving,truth_angle_rad,truth_tx,truth_ty,truth_cx,truth_cy,initial_error_px";

/// Writes evaluation cases for external tools: `<stem>_L<level>_{fixed,moving}.tif` (float
/// TIFF) and `cases.csv` with the true fixed-to-moving transform of each.
#[derive(Debug)]
pub struct CaseExporter {
    dir: PathBuf,
    lines: Vec<String>,
}

impl CaseExporter {
    /// An exporter into `dir` (created if missing).
    ///
    /// # Errors
    /// [`RunError::CreateFolder`] when the folder cannot be made.
    pub fn create(dir: &Path) -> Result<CaseExporter, RunError> {
        std::fs::create_dir_all(dir).map_err(|source| RunError::CreateFolder {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(CaseExporter {
            dir: dir.to_path_buf(),
            lines: vec![CASES_HEADER.into()],
        })
    }

    /// Writes the two images of `case` and rewrites `cases.csv` (atomically) with it added.
    ///
    /// # Errors
    /// [`RunError::Image`] when a file cannot be written.
    pub fn add(&mut self, pair: &str, level: u32, case: &Case) -> Result<(), RunError> {
        let stem = Path::new(pair)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(pair)
            .replace([',', ' '], "_");
        let id = format!("{stem}_L{level}");
        let (f, m) = (format!("{id}_fixed.tif"), format!("{id}_moving.tif"));
        comir_image::save_tiff_f32(self.dir.join(&f), &case.fixed)?;
        comir_image::save_tiff_f32(self.dir.join(&m), &case.moving)?;
        // The cases file holds rigid parameters, the format the elastix comparison reads.
        let rigid = case
            .truth
            .linear
            .as_rigid()
            .filter(|_| case.truth.deformation.is_none());
        let Some(&t) = rigid else {
            return Err(RunError::Eval(crate::Error::InvalidConfig(
                "--export-cases writes rigid cases only (use --displacement rigid)".into(),
            )));
        };
        self.lines.push(format!(
            "{id},{},{level},{},{},{f},{m},{:.17e},{:.17e},{:.17e},{:.17e},{:.17e},{:.17e}",
            pair.replace(',', "_"),
            case.fixed.width(),
            case.fixed.height(),
            t.angle_rad,
            t.translation[0],
            t.translation[1],
            t.center[0],
            t.center[1],
            case.initial_error_px
        ));
        let text = self.lines.join("\n") + "\n";
        let path = self.dir.join("cases.csv");
        comir_fs::write_atomically(&path, text.as_bytes())
            .map_err(|error| crate::Error::Io { path, error })?;
        Ok(())
    }
}
