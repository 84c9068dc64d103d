//! Reports written from known results: every picture the page names exists and decodes, the
//! tables hold the numbers of the rows, and the sample pictures show the registration.

use std::path::Path;

use comir_eval::CaseResult;
use comir_image::ops::{warp, Border};
use comir_report::{
    read_history, write_eval_report, write_study_report, EvalReport, HistoryPoint, SampleCase,
    StudyCell, StudyReport,
};
use comir_transform::Rigid2;

fn row(method: &str, level: u32, init: f64, err: f64) -> CaseResult {
    CaseResult {
        pair: format!("p{level}.png"),
        level,
        method: method.into(),
        error_px: err,
        width: 100,
        success: err <= 2.0,
        seconds: 0.5,
        initial_error_px: init,
        true_angle_deg: 0.0,
        true_tx: 0.0,
        true_ty: 0.0,
        found_angle_deg: 0.0,
        metric_value: 0.0,
        status: "ok".into(),
        confidence: None,
        flag: None,
        corner_error_px: None,
    }
}

/// The `src` of every `<img>` on the page.
fn images(page: &str) -> Vec<String> {
    page.split("<img src=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

fn all_images_decode(dir: &Path, page: &str) -> usize {
    let srcs = images(page);
    for s in &srcs {
        let img = comir_image::load(dir.join(s)).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(img.width() > 0 && img.height() > 0);
    }
    srcs.len()
}

#[test]
fn an_eval_report_shows_the_tables_plots_and_sample_pictures() {
    let dir = tempfile::tempdir().expect("tmp");
    let rows = vec![
        row("comir+aamd", 1, 5.0, 0.5),
        row("comir+aamd", 1, 6.0, 1.0),
        row("comir+aamd", 2, 12.0, 0.7),
        row("comir+aamd", 2, 13.0, 40.0),
        row("mi", 1, 5.0, 0.2),
        row("mi", 1, 6.0, 0.3),
        row("mi", 2, 12.0, 0.4),
        row("mi", 2, 13.0, f64::NAN),
    ];
    let (fixed, _) = comir_testkit::phantom_pair(96, 96, 2);
    let truth = Rigid2::new(0.12, [4.0, -3.0], fixed.center());
    let inv = truth.inverse();
    let moving = warp(&fixed, 96, 96, Border::Reflect, |p| inv.apply(p));
    let samples = vec![
        SampleCase {
            pair: "p1.png".into(),
            level: 2,
            method: "comir+aamd".into(),
            fixed: fixed.clone(),
            moving: moving.clone(),
            representations: Some((fixed.clone(), moving.clone())),
            found: Some(comir_transform::Transform2::from(truth).into()),
            error_px: 0.0,
            success: true,
        },
        SampleCase {
            pair: "p<2>.png".into(),
            level: 2,
            method: "mi".into(),
            fixed: fixed.clone(),
            moving: moving.clone(),
            representations: None,
            found: None,
            error_px: f64::NAN,
            success: false,
        },
    ];
    let history: Vec<HistoryPoint> = (1..=20)
        .map(|s| HistoryPoint {
            step: s as f64,
            loss: 3.0 / s as f64,
            val_loss: (s % 5 == 0).then_some(3.5 / s as f64),
        })
        .collect();
    let report = EvalReport {
        title: "Test report".into(),
        facts: vec![("pairs".into(), "data/x".into())],
        rows: &rows,
        methods: vec!["comir+aamd".into(), "mi".into()],
        samples,
        history: Some(history),
        success_frac: 0.02,
    };
    let page_path = write_eval_report(dir.path(), &report).expect("report");
    let page = std::fs::read_to_string(&page_path).expect("page");
    // Tables: per level and overall, from the rows.
    assert!(
        page.contains("<td>comir+aamd</td><td>2/2</td><td>1/2</td><td>3/4</td><td>75.0 %</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td>mi</td><td>2/2</td><td>1/2</td><td>3/4</td><td>75.0 %</td>"),
        "{page}"
    );
    // Escaped pair name, the failure note, the plots.
    assert!(page.contains("p&lt;2&gt;.png") && !page.contains("p<2>.png"));
    assert!(page.contains("nothing to show after"));
    for plot in [
        "success-vs-displacement.png",
        "error-scatter.png",
        "loss.png",
    ] {
        assert!(page.contains(plot), "{plot}");
    }
    // 3 plots + sample 1: 4 images, 2 checkerboards, 2 overlays; sample 2: 2 images, 2 before.
    assert_eq!(all_images_decode(dir.path(), &page), 3 + 8 + 4);
    // The pictures after registration show the moving image put back: the overlay after is
    // nearly gray (red = green) inside, the one before is not.
    let load =
        |n: &str| comir_image::load(dir.path().join(format!("sample1-p1_png-{n}.png"))).expect(n);
    let mismatch = |img: &comir_image::Image| {
        let mut s = 0.0;
        for y in 24..72 {
            for x in 24..72 {
                s += (img.get(x, y, 0) - img.get(x, y, 1)).abs() as f64;
            }
        }
        s / (48.0 * 48.0)
    };
    let (before, after) = (
        mismatch(&load("overlay-before")),
        mismatch(&load("overlay-after")),
    );
    assert!(after < 0.5 * before, "before {before}, after {after}");
}

#[test]
fn history_is_read_by_column_name_and_bad_files_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("history.csv");
    std::fs::write(
        &p,
        "step,seconds,loss,contrastive,positive_mse,val_loss\n1,0.1,3.0,3.0,0.1,\n2,0.2,2.5,2.5,0.1,2.9\n",
    )
    .expect("write");
    let h = read_history(&p).expect("history");
    assert_eq!(h.len(), 2);
    assert_eq!((h[1].step, h[1].loss, h[1].val_loss), (2.0, 2.5, Some(2.9)));
    assert_eq!(h[0].val_loss, None);
    std::fs::write(&p, "a,b\n1,2\n").expect("write");
    let e = read_history(&p).expect_err("no columns").to_string();
    assert!(e.contains("history.csv") && e.contains("step"), "{e}");
}

#[test]
fn a_study_report_holds_the_table_and_copies_each_cells_pictures() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let (img, _) = comir_testkit::phantom_pair(32, 32, 0);
    comir_image::save_png(src.join("mds-representation.png"), &img.normalized()).expect("png");
    let out = dir.path().join("report");
    let page = write_study_report(
        &out,
        &StudyReport {
            title: "Study".into(),
            facts: vec![],
            header: vec!["variant".into(), "success".into()],
            rows: vec![vec!["off".into(), "50.0 ± 10.0".into()]],
            cells: vec![StudyCell {
                label: "histology · off · mse · seed 0".into(),
                pictures: vec![("MDS".into(), src.join("mds-representation.png"))],
            }],
        },
    )
    .expect("report");
    let text = std::fs::read_to_string(page).expect("page");
    assert!(text.contains("<td>off</td><td>50.0 ± 10.0</td>"));
    assert_eq!(all_images_decode(&out, &text), 1);
}
