//! Inference through a group of convolutions that feed one another (a dense block's layers)
//! in chunks of rows, so that what one layer writes is still in the cache when the next one
//! reads it.
//!
//! Why: layer by layer, every convolution of a block reads all the block's channels from main
//! memory, whole planes of a tile far larger than the L2 cache, and inference then waits on
//! memory more than on its multiply-adds. Here each of the cores takes a part of the rows and
//! runs the group down it as a wavefront: chunk after chunk, each step computes the rows
//! whose inputs the steps before it have just finished, a few rows behind the step before.
//! The rows around the seams between parts, which need both parts, are computed last.
//!
//! Every output row is computed once, by the same kernels and in the same order of sums as
//! layer by layer, so the numbers are the same bit for bit (`tests/fused_inference.rs`; the
//! schedule itself is tested below).

use rayon::prelude::*;

use crate::conv::Window;

/// One convolution of a group.
pub(crate) struct Step<'a> {
    /// The rows and columns it computes.
    pub window: Window,
    /// Rows it reads around each output row, from the outputs of the steps before it (1 for
    /// a 3 × 3 convolution, 0 for a 1 × 1).
    pub halo: usize,
    /// The side of its Winograd tiles (1 for the direct kernel): the rows it is asked for
    /// start and end on multiples of it, except at its window's edges, so that it never
    /// computes a tile from rows not yet written.
    pub align: usize,
    /// Computes rows `y0..y1` of its window's columns, on the calling thread only.
    #[allow(clippy::type_complexity)]
    pub run: Box<dyn Fn(usize, usize) + Sync + 'a>,
}

/// Chunks of fewer rows than this refill their halos too often for the cache to pay for it.
const MIN_CHUNK: usize = 8;

/// Runs `steps` in order over all their rows: in `parts` parts of rows in parallel, each a
/// wavefront of chunks of about `chunk` rows, then the seams. Each step writes rows that no
/// other part writes or reads meanwhile, and reads only rows the steps before it have
/// finished.
///
/// Where chunks would be shorter than [`MIN_CHUNK`] rows, the rows too few for a part each,
/// or the seams (computed on one thread) more than a 32nd of the rows, the steps run one after
/// the other instead, each split in `parts` in parallel: the `histology` preset's blocks of
/// Winograd layers, each 4 rows behind the one before, left seams of up to 80 rows, or one
/// part for a whole level, and made its inference 3–6 % slower.
pub(crate) fn run_group(steps: &[Step], chunk: usize, parts: usize) {
    let Some(first) = steps.first() else { return };
    // How far each step lags behind the first: enough to read only finished rows, on its
    // tiles' multiples.
    let align = steps.iter().map(|s| s.align).max().unwrap_or(1).max(1);
    let mut lag: Vec<usize> = Vec::with_capacity(steps.len());
    for (j, step) in steps.iter().enumerate() {
        let after = if j == 0 { 0 } else { lag[j - 1] + step.halo };
        lag.push(after.next_multiple_of(step.align.max(1)));
    }
    let deepest = lag.last().copied().unwrap_or(0);
    let short = chunk < MIN_CHUNK;
    let chunk = chunk.max(1).next_multiple_of(align);
    let (y0, y1) = (first.window.y0, first.window.y1);
    // Parts of at least a few rows more than their seams take; seams on the tiles' multiples.
    let threads = parts.max(1);
    let parts = threads.min(((y1 - y0) / (2 * deepest + 4 * align)).max(1));
    let seams: Vec<usize> = (1..parts)
        .map(|p| (y0 + (y1 - y0) * p / parts) / align * align)
        .collect();
    let bounds: Vec<(Option<usize>, Option<usize>)> = (0..parts)
        .map(|p| (p.checked_sub(1).map(|q| seams[q]), seams.get(p).copied()))
        .collect();
    let rows: usize = steps.iter().map(|s| s.window.y1 - s.window.y0).sum();
    let seam_rows = seams.len() * 2 * lag.iter().sum::<usize>();
    if short || parts < threads || 32 * seam_rows > rows {
        step_by_step(steps, threads);
        return;
    }
    bounds.par_iter().for_each(|&(top, bottom)| {
        wavefront(steps, &lag, chunk, align, top, bottom);
    });
    // The rows around each seam, step by step: step j's were left to within lag[j] of it.
    for &seam in &seams {
        for (step, &l) in steps.iter().zip(&lag).skip(1) {
            let w = step.window;
            let (a, b) = (seam.saturating_sub(l).max(w.y0), (seam + l).min(w.y1));
            if a < b {
                (step.run)(a, b);
            }
        }
    }
}

/// Each step over all its rows before the next, in `parts` parallel parts of rows (on its
/// tiles' multiples).
fn step_by_step(steps: &[Step], parts: usize) {
    for step in steps {
        let Window { y0, y1, .. } = step.window;
        let align = step.align.max(1);
        let mut cuts: Vec<usize> = (1..parts)
            .map(|p| (y0 + (y1 - y0) * p / parts) / align * align)
            .filter(|&c| c > y0 && c < y1)
            .collect();
        cuts.dedup();
        let ends: Vec<usize> = std::iter::once(y0)
            .chain(cuts)
            .chain(std::iter::once(y1))
            .collect();
        ends.par_windows(2).for_each(|pair| {
            if pair[0] < pair[1] {
                (step.run)(pair[0], pair[1]);
            }
        });
    }
}

/// One part's wavefront: the rows from `top` (the window's first if `None`) to `bottom` (its
/// last), each step `lag` rows inside a seam.
fn wavefront(
    steps: &[Step],
    lag: &[usize],
    chunk: usize,
    align: usize,
    top: Option<usize>,
    bottom: Option<usize>,
) {
    let ranges: Vec<(usize, usize)> = steps
        .iter()
        .zip(lag)
        .map(|(step, &l)| {
            let w = step.window;
            let a = top.map_or(w.y0, |t| (t + l).max(w.y0));
            let b = bottom.map_or(w.y1, |b| b.saturating_sub(l).min(w.y1));
            (a, b.max(a))
        })
        .collect();
    let start = top.unwrap_or(steps[0].window.y0 / align * align);
    let mut done: Vec<usize> = ranges.iter().map(|r| r.0).collect();
    let mut edge = start;
    while done.iter().zip(&ranges).any(|(d, r)| *d < r.1) {
        edge += chunk;
        for (j, step) in steps.iter().enumerate() {
            let end = edge.saturating_sub(lag[j]).clamp(done[j], ranges[j].1);
            if end > done[j] {
                (step.run)(done[j], end);
                done[j] = end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A group of 3 × 3 "convolutions" that each read their input row and its two
    /// neighbours, on windows that shrink by a row a step as in the up path: every row must be
    /// computed once, after the rows it reads, on its tiles' multiples.
    #[test]
    fn every_row_is_computed_once_after_its_inputs() {
        // Wavefronts with seams (long enough groups), and groups run step by step (short
        // chunks, or seams too long for their rows).
        for (h, margin, chunk, parts, align) in [
            (1000usize, 0usize, 8, 2, 1usize),
            (2000, 0, 16, 2, 4),
            (3000, 30, 12, 3, 4),
            (1500, 9, 64, 4, 2),
            (61, 0, 4, 2, 1),
            (200, 9, 8, 2, 4),
            (37, 3, 16, 3, 1),
            (9, 0, 4, 2, 2),
            (488, 30, 12, 4, 4),
        ] {
            let layers: usize = 4;
            // Step l computes rows window(l); its input is step l − 1's output.
            let window = |l: usize| Window {
                y0: margin.saturating_sub(layers - l),
                y1: (h - margin + layers - l).min(h),
                x0: 0,
                x1: 5,
            };
            let written: Vec<Mutex<Vec<u32>>> =
                (0..=layers).map(|_| Mutex::new(vec![0; h])).collect();
            // The group's input is complete.
            written[0].lock().expect("lock").fill(1);
            let steps: Vec<Step> = (1..=layers)
                .map(|l| {
                    let (written, win) = (&written, window(l));
                    let align = if l % 2 == 0 { align } else { 1 };
                    Step {
                        window: win,
                        halo: 1,
                        align,
                        run: Box::new(move |y0, y1| {
                            assert!(win.y0 <= y0 && y0 < y1 && y1 <= win.y1, "outside");
                            assert!(y0 % align == 0 || y0 == win.y0, "unaligned start {y0}");
                            assert!(y1 % align == 0 || y1 == win.y1, "unaligned end {y1}");
                            let input = written[l - 1].lock().expect("lock").clone();
                            for y in y0..y1 {
                                let (a, b) = (y.saturating_sub(1), (y + 2).min(h));
                                for (r, &n) in input.iter().enumerate().take(b).skip(a) {
                                    let what = format!("h {h}: step {l} row {y} reads row {r}");
                                    assert_eq!(n, 1, "{what} unwritten");
                                }
                            }
                            let mut out = written[l].lock().expect("lock");
                            for y in y0..y1 {
                                out[y] += 1;
                            }
                        }),
                    }
                })
                .collect();
            run_group(&steps, chunk, parts);
            for (l, rows) in written.iter().enumerate().skip(1) {
                let rows = rows.lock().expect("lock");
                let win = window(l);
                for (y, &n) in rows.iter().enumerate() {
                    let want = u32::from((win.y0..win.y1).contains(&y));
                    assert_eq!(n, want, "h {h}: step {l} row {y} computed {n} times");
                }
            }
        }
    }
}
