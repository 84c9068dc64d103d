//! CSV rows of the analyses, and writers for them (atomic: a temporary file, then a rename).
//!
//! | file | columns |
//! | --- | --- |
//! | spectrum | `layer,modality,index,singular_value` (index from 0, values descending) |
//! | summary | `layer,modality,effective_rank,below_1e-5,dims,n` |
//! | MDS points | `set,index,modality,x,y` |
//! | modality gap | `layer,corresponding,non_corresponding,ratio,n` |
//! | equivariance | `modality,angle_deg,correlation` |
//!
//! Every file starts with its header, even when there are no rows, so a reader always finds the
//! columns. Floats are written in their shortest exact form.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::spectrum::{count_below, effective_rank, COLLAPSE_REL};
use crate::Error;

/// One singular value of one layer's embedding in one modality.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpectrumRow {
    /// Which embedding, e.g. `"final"` or `"bottleneck"`.
    pub layer: String,
    /// `"A"` or `"B"` (or any label the caller uses).
    pub modality: String,
    /// Position in the descending spectrum, from 0.
    pub index: usize,
    /// The singular value.
    pub singular_value: f64,
}

impl SpectrumRow {
    /// One row per value of `spectrum`.
    pub fn from_spectrum(layer: &str, modality: &str, spectrum: &[f64]) -> Vec<SpectrumRow> {
        spectrum
            .iter()
            .enumerate()
            .map(|(index, &singular_value)| SpectrumRow {
                layer: layer.to_string(),
                modality: modality.to_string(),
                index,
                singular_value,
            })
            .collect()
    }
}

/// The summary of one spectrum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpectrumSummary {
    /// Which embedding.
    pub layer: String,
    /// Which modality.
    pub modality: String,
    /// [`effective_rank`] of the spectrum.
    pub effective_rank: f64,
    /// [`count_below`] with [`COLLAPSE_REL`] = 10⁻⁵: the collapsed dimensions.
    #[serde(rename = "below_1e-5")]
    pub below_1e_5: usize,
    /// Embedding dimension d (the spectrum's length).
    pub dims: usize,
    /// Number of embeddings the covariance was estimated from.
    pub n: usize,
}

impl SpectrumSummary {
    /// Summarises `spectrum`, computed from `n` embeddings.
    pub fn new(layer: &str, modality: &str, spectrum: &[f64], n: usize) -> SpectrumSummary {
        SpectrumSummary {
            layer: layer.to_string(),
            modality: modality.to_string(),
            effective_rank: effective_rank(spectrum),
            below_1e_5: count_below(spectrum, COLLAPSE_REL),
            dims: spectrum.len(),
            n,
        }
    }
}

/// One point of an MDS embedding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MdsPoint {
    /// Which MDS, e.g. `"final"` or `"bottleneck"`.
    pub set: String,
    /// The patch index within its modality (A and B points with the same index correspond).
    pub index: usize,
    /// `"A"` or `"B"`.
    pub modality: String,
    /// First MDS coordinate.
    pub x: f64,
    /// Second MDS coordinate.
    pub y: f64,
}

impl MdsPoint {
    /// Rows for the A points (modality `"A"`, index i) then the B points (modality `"B"`).
    pub fn from_pairs(set: &str, a: &[[f64; 2]], b: &[[f64; 2]]) -> Vec<MdsPoint> {
        let rows = |modality: &str, pts: &[[f64; 2]]| -> Vec<MdsPoint> {
            pts.iter()
                .enumerate()
                .map(|(index, p)| MdsPoint {
                    set: set.to_string(),
                    index,
                    modality: modality.to_string(),
                    x: p[0],
                    y: p[1],
                })
                .collect()
        };
        let mut out = rows("A", a);
        out.extend(rows("B", b));
        out
    }
}

/// The modality gap of one layer's embeddings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GapRow {
    /// Which embedding.
    pub layer: String,
    /// Mean distance of corresponding A/B embeddings.
    pub corresponding: f64,
    /// Mean distance of non-corresponding ones.
    pub non_corresponding: f64,
    /// `corresponding / non_corresponding`.
    pub ratio: f64,
    /// Number of pairs.
    pub n: usize,
}

/// The equivariance score of one modality at one rotation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EquivarianceRow {
    /// `"A"` or `"B"`.
    pub modality: String,
    /// The rotation, in degrees.
    pub angle_deg: f64,
    /// Pearson correlation of the rotated-and-back representation with the representation
    /// (NaN when undefined).
    pub correlation: f64,
}

/// Column names of the spectrum CSV.
pub const SPECTRUM_HEADER: [&str; 4] = ["layer", "modality", "index", "singular_value"];
/// Column names of the summary CSV.
pub const SUMMARY_HEADER: [&str; 6] = [
    "layer",
    "modality",
    "effective_rank",
    "below_1e-5",
    "dims",
    "n",
];
/// Column names of the MDS points CSV.
pub const MDS_HEADER: [&str; 5] = ["set", "index", "modality", "x", "y"];
/// Column names of the modality-gap CSV.
pub const GAP_HEADER: [&str; 5] = ["layer", "corresponding", "non_corresponding", "ratio", "n"];
/// Column names of the equivariance CSV.
pub const EQUIVARIANCE_HEADER: [&str; 3] = ["modality", "angle_deg", "correlation"];

/// Writes spectrum rows with the header [`SPECTRUM_HEADER`].
///
/// # Errors
/// [`Error::Csv`] or [`Error::Image`] (for I/O) naming the file.
pub fn write_spectrum_csv(path: impl AsRef<Path>, rows: &[SpectrumRow]) -> Result<(), Error> {
    write_rows(path.as_ref(), &SPECTRUM_HEADER, rows)
}

/// Writes spectrum summaries with the header [`SUMMARY_HEADER`].
///
/// # Errors
/// [`Error::Csv`] or [`Error::Image`] (for I/O) naming the file.
pub fn write_summary_csv(path: impl AsRef<Path>, rows: &[SpectrumSummary]) -> Result<(), Error> {
    write_rows(path.as_ref(), &SUMMARY_HEADER, rows)
}

/// Writes MDS points with the header [`MDS_HEADER`].
///
/// # Errors
/// [`Error::Csv`] or [`Error::Image`] (for I/O) naming the file.
pub fn write_mds_csv(path: impl AsRef<Path>, rows: &[MdsPoint]) -> Result<(), Error> {
    write_rows(path.as_ref(), &MDS_HEADER, rows)
}

/// Writes modality-gap rows with the header [`GAP_HEADER`].
///
/// # Errors
/// [`Error::Csv`] or [`Error::Image`] (for I/O) naming the file.
pub fn write_gap_csv(path: impl AsRef<Path>, rows: &[GapRow]) -> Result<(), Error> {
    write_rows(path.as_ref(), &GAP_HEADER, rows)
}

/// Writes equivariance rows with the header [`EQUIVARIANCE_HEADER`].
///
/// # Errors
/// [`Error::Csv`] or [`Error::Image`] (for I/O) naming the file.
pub fn write_equivariance_csv(
    path: impl AsRef<Path>,
    rows: &[EquivarianceRow],
) -> Result<(), Error> {
    write_rows(path.as_ref(), &EQUIVARIANCE_HEADER, rows)
}

fn write_rows<T: Serialize>(path: &Path, header: &[&str], rows: &[T]) -> Result<(), Error> {
    let csv_err = |e: &dyn std::fmt::Display| Error::Csv {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    // The header is written by hand: csv's automatic one appears only with the first row, and an
    // empty table should still name its columns.
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    w.write_record(header).map_err(|e| csv_err(&e))?;
    for r in rows {
        w.serialize(r).map_err(|e| csv_err(&e))?;
    }
    let bytes = w.into_inner().map_err(|e| csv_err(&e))?;
    comir_fs::write_atomically(path, &bytes).map_err(|e| csv_err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
        csv::Reader::from_path(path)
            .expect("open")
            .deserialize()
            .collect::<Result<Vec<T>, _>>()
            .expect("rows")
    }

    #[test]
    fn spectrum_rows_round_trip_with_the_documented_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("spectrum.csv");
        let rows = SpectrumRow::from_spectrum("bottleneck", "A", &[4.0, 1.0, 1.0 / 3.0, 0.0]);
        write_spectrum_csv(&p, &rows).expect("write");
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(
            text.starts_with("layer,modality,index,singular_value\n"),
            "{text}"
        );
        assert!(
            text.contains("bottleneck,A,2,0.3333333333333333\n"),
            "{text}"
        );
        assert_eq!(read::<SpectrumRow>(&p), rows);
    }

    #[test]
    fn summary_rows_carry_the_spectrum_summaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("summary.csv");
        let s = SpectrumSummary::new("final", "B", &[2.0, 2.0, 0.0], 50);
        assert!((s.effective_rank - 2.0).abs() < 1e-12);
        assert_eq!((s.below_1e_5, s.dims, s.n), (1, 3, 50));
        write_summary_csv(&p, std::slice::from_ref(&s)).expect("write");
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(
            text.starts_with("layer,modality,effective_rank,below_1e-5,dims,n\n"),
            "{text}"
        );
        assert_eq!(read::<SpectrumSummary>(&p), vec![s]);
    }

    #[test]
    fn mds_points_list_a_then_b() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("mds.csv");
        let rows = MdsPoint::from_pairs("final", &[[0.0, 1.0], [2.0, 3.0]], &[[-1.5, 0.25]]);
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[1].index, rows[1].modality.as_str()), (1, "A"));
        assert_eq!((rows[2].index, rows[2].modality.as_str()), (0, "B"));
        write_mds_csv(&p, &rows).expect("write");
        let text = std::fs::read_to_string(&p).expect("read");
        assert_eq!(
            text,
            "set,index,modality,x,y\nfinal,0,A,0.0,1.0\nfinal,1,A,2.0,3.0\nfinal,0,B,-1.5,0.25\n"
        );
        assert_eq!(read::<MdsPoint>(&p), rows);
    }

    #[test]
    fn empty_tables_still_have_their_header_and_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("empty.csv");
        write_mds_csv(&p, &[]).expect("write");
        assert_eq!(
            std::fs::read_to_string(&p).expect("read"),
            "set,index,modality,x,y\n"
        );
        let missing = dir.path().join("no_such_dir").join("x.csv");
        let msg = write_summary_csv(&missing, &[])
            .expect_err("no dir")
            .to_string();
        assert!(msg.contains("x.csv"), "{msg}");
    }
}
