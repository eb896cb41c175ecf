//! The cw analysis as the encoder runs it: the synthesis's row pipeline
//! ([`synthesis`](super::synthesis)) run the other way.
//!
//! Each stage takes its input as space-to-depth rows (two rows of the stage before, or of
//! the picture, folded into one row of four times the channels at half the width), runs its
//! 3×3 convolution by Winograd's F(2×2, 3×3) in chunks of fixed size, then GDN (or nothing,
//! in the last stage), and hands its output rows on. A stage holds only the input rows its
//! convolution still reads, so an analysis window costs a few rows per stage instead of the
//! whole-window tensors of [`CwModel::analysis`](super::cw::CwModel::analysis), which
//! training uses. The values equal that function's up to float rounding.

use super::synthesis::{stage_floats, Feed, Geometry, Stage};
use crate::arch::cw::M;
use std::collections::VecDeque;

/// Input channels of each analysis stage after space-to-depth, and its output channels.
pub const ANALYSIS: [(usize, usize); 4] =
    [(3 * 4, 64), (64 * 4, 96), (96 * 4, 128), (128 * 4, M + 1)];

/// The encoder's analysis: RGB → latents `(M, h/16, w/16)` and importance logits.
#[derive(Clone, Debug)]
pub struct Analyzer {
    stages: Vec<Stage>,
}

/// What [`Analyzer::run`] returns for an `h × w` window.
pub struct AnalysisGrid {
    /// Latents before the gain, `(M, h/16, w/16)` row-major.
    pub y: Vec<f32>,
    /// Importance-map logits, `(h/16, w/16)`.
    pub logits: Vec<f32>,
}

/// Folds two rows `(c, w)` (the upper `a`, the lower `b`) into one space-to-depth row
/// `(4c, w/2)`: channel `4·ci + 2·dy + dx` at column x holds channel ci of row dy at 2x + dx
/// (the order of [`space_to_depth`](super::layers::space_to_depth)).
pub(super) fn fold(a: &[f32], b: &[f32], c: usize, w: usize) -> Vec<f32> {
    let half = w / 2;
    let mut out = vec![0f32; 4 * c * half];
    for ci in 0..c {
        for (dy, src) in [a, b].into_iter().enumerate() {
            let src = &src[ci * w..(ci + 1) * w];
            for dx in 0..2 {
                let dst = &mut out[(4 * ci + 2 * dy + dx) * half..][..half];
                for (x, d) in dst.iter_mut().enumerate() {
                    *d = src[2 * x + dx];
                }
            }
        }
    }
    out
}

impl Analyzer {
    /// The analysis of these four stages ([`ANALYSIS`] shapes), in order.
    pub fn new(stages: Vec<Stage>) -> Self {
        Self { stages }
    }

    /// Runs the analysis on an `h × w` window (multiples of 16) whose pixel rows
    /// `pixel_row(y, row)` writes as planar RGB `(3, w)` in [0, 1].
    pub fn run(
        &self,
        h: usize,
        w: usize,
        mut pixel_row: impl FnMut(usize, &mut [f32]),
    ) -> AnalysisGrid {
        let (lh, lw) = (h / 16, w / 16);
        let mut feeds: Vec<Feed> = (0..self.stages.len())
            .map(|i| Feed {
                w: w >> (i + 1),
                h: h >> (i + 1),
                rows: VecDeque::new(),
                first: 0,
                next: 0,
            })
            .collect();
        let mut pending: Vec<Option<Vec<f32>>> = vec![None; self.stages.len()];
        let mut grid = AnalysisGrid {
            y: vec![0f32; M * lh * lw],
            logits: vec![0f32; lh * lw],
        };
        let mut upper: Option<Vec<f32>> = None;
        for y in 0..h {
            let mut row = vec![0f32; 3 * w];
            pixel_row(y, &mut row);
            // As the training graph: (x − ½)·2.
            row.iter_mut().for_each(|v| *v = (*v - 0.5) * 2.0);
            match upper.take() {
                None => upper = Some(row),
                Some(a) => {
                    let folded = fold(&a, &row, 3, w);
                    self.push(&mut feeds, &mut pending, 0, folded, &mut grid);
                }
            }
        }
        grid
    }

    /// Gives stage `s` its next input row and runs every band that becomes ready, passing
    /// the output rows on (folded in pairs) or, from the last stage, into `grid`.
    fn push(
        &self,
        feeds: &mut [Feed],
        pending: &mut [Option<Vec<f32>>],
        s: usize,
        row: Vec<f32>,
        grid: &mut AnalysisGrid,
    ) {
        let stage = &self.stages[s];
        let (g, w) = (Geometry::new(stage.cin, feeds[s].w), feeds[s].w);
        for (r0, r1, outs) in feeds[s].take(stage, &g, row) {
            let rect = |k: usize| g.rect(k, r0, r1, w);
            let cout = stage.cout;
            for y in r0..r1 {
                let mut out = vec![0f32; cout * w];
                let first = (y - r0) / g.chunk_rows * g.segs;
                for (k, buf) in outs.iter().enumerate().skip(first).take(g.segs) {
                    let (ya, rows, xa, xb) = rect(k);
                    let ws = xb - xa;
                    for co in 0..cout {
                        let src = &buf[(co * rows + y - ya) * ws..][..ws];
                        out[co * w + xa..co * w + xb].copy_from_slice(src);
                    }
                }
                if s + 1 == self.stages.len() {
                    let n = feeds[s].h * w;
                    for c in 0..M {
                        grid.y[c * n + y * w..][..w].copy_from_slice(&out[c * w..][..w]);
                    }
                    grid.logits[y * w..][..w].copy_from_slice(&out[M * w..][..w]);
                } else {
                    match pending[s + 1].take() {
                        None => pending[s + 1] = Some(out),
                        Some(a) => {
                            let folded = fold(&a, &out, cout, w);
                            self.push(feeds, pending, s + 1, folded, grid);
                        }
                    }
                }
            }
        }
    }
}

/// Bytes the analysis holds at most while it runs on a `w`-pixel-wide window, besides its
/// input pixels and output grid: the rows each stage keeps, each stage's band of chunk
/// outputs and the row waiting for its pair, and the temporaries of `threads` workers, each
/// at the size of the largest stage's.
pub fn working_bytes(w: usize, threads: usize) -> u64 {
    let (mut rows_and_bands, mut temps) = (0u64, 0u64);
    for (i, &(cin, cout)) in ANALYSIS.iter().enumerate() {
        let width = (w >> (i + 1)).max(1);
        let (held, worker) = stage_floats(cin, cout, usize::MAX, width);
        // And the output row being filled and the one waiting for its pair.
        rows_and_bands += held + (2 * cout * width) as u64;
        temps = temps.max(worker);
    }
    4 * (rows_and_bands + threads.max(1) as u64 * temps)
}

#[cfg(test)]
mod tests {
    use crate::CwWeights;
    use candle_core::{Device, Tensor};

    #[test]
    fn matches_the_model_analysis() {
        let weights = CwWeights::embedded().unwrap();
        let model = weights.model().unwrap();
        // A window wide enough for two chunks across the first stages, and an odd number of
        // latent rows.
        let (h, w) = (48, 560);
        let pixel = |c: usize, y: usize, x: usize| {
            let v = ((x * 7 + y * 13 + c * 29) % 97) as f32 / 96.0;
            0.5 * v + 0.5 * ((x / 9 + y / 5) % 2) as f32
        };
        let grid = weights.analyzer().unwrap().run(h, w, |y, row| {
            for c in 0..3 {
                for x in 0..w {
                    row[c * w + x] = pixel(c, y, x);
                }
            }
        });
        let data: Vec<f32> = (0..3 * h * w)
            .map(|i| pixel(i / (h * w), i / w % h, i % w))
            .collect();
        let x = Tensor::from_vec(data, (1, 3, h, w), &Device::Cpu).unwrap();
        let (y, logits) = model.analysis(&x).unwrap();
        let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let logits: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        let scale = y.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in grid.y.iter().zip(&y).enumerate() {
            assert!((a - b).abs() <= 1e-4 * scale, "y[{i}]: {a} vs {b}");
        }
        for (a, b) in grid.logits.iter().zip(&logits) {
            assert!((a - b).abs() <= 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
