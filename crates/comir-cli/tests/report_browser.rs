//! The report page opened in headless Chromium (Debian package `chromium`): it renders, with
//! its pictures, to a screenshot. Skipped, with a message, where no Chromium is installed.

mod common;

use common::{comir, ok, s};
use std::process::Command;

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|b| b.to_string())
}

#[test]
fn the_eval_report_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: no chromium on PATH (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    comir_testkit::write_phantom_pairs(&d.join("pairs"), 0..2, 64);
    let report = d.join("report");
    ok(&comir(&[
        "eval",
        "--pairs",
        s(&d.join("pairs")),
        "--method",
        "mi",
        "--levels",
        "1,2",
        "--out",
        s(&d.join("r.csv")),
        "--report",
        s(&report),
    ]));
    assert_renders(&browser, d, &report.join("index.html"));
}

#[test]
fn the_align_report_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: no chromium on PATH (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    comir_testkit::write_phantom_pairs(&d.join("pairs"), 0..3, 64);
    let out = d.join("aligned");
    ok(&comir(&[
        "align",
        "--pairs",
        s(&d.join("pairs")),
        "--out",
        s(&out),
        "--rounds",
        "0",
        "--report",
    ]));
    let page = out.join("report").join("index.html");
    let text = std::fs::read_to_string(&page).expect("the page");
    assert!(
        text.contains("Round 0") && text.contains("doubtful first"),
        "{text}"
    );
    assert_renders(&browser, d, &page);
}

/// Screenshots `page` and checks that it shows text and pictures.
fn assert_renders(browser: &str, d: &std::path::Path, page: &std::path::Path) {
    let shot = d.join("shot.png");
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,1600",
            &format!("--screenshot={}", s(&shot)),
            &format!("file://{}", s(page)),
        ])
        .output()
        .expect("chromium runs");
    assert!(
        o.status.success() && shot.is_file(),
        "chromium failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let img = comir_image::load(&shot).expect("a PNG screenshot");
    assert_eq!((img.width(), img.height()), (1200, 1600));
    // The page is drawn: dark text on white near the top, and the pictures add colour (the
    // plots' blue series, the overlays' magenta and green), which text alone would not.
    let px = |x: usize, y: usize| [0, 1, 2].map(|c| img.get(x, y, c));
    let dark = (0..80)
        .flat_map(|y| (0..600).map(move |x| (x, y)))
        .filter(|&(x, y)| px(x, y).iter().all(|&v| v < 0.3))
        .count();
    assert!(dark > 200, "no title text: {dark} dark pixels");
    let colourful = (0..img.height())
        .step_by(2)
        .flat_map(|y| (0..img.width()).step_by(2).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let [r, g, b] = px(x, y);
            r.max(g).max(b) - r.min(g).min(b) > 0.3
        })
        .count();
    assert!(
        colourful > 500,
        "no pictures rendered: {colourful} coloured pixels"
    );
}
