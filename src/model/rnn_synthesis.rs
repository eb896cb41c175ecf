//! The rnn decoder as the codec runs it: [`RnnModel::decode_step`] on plain f32 rows.
//!
//! [`RnnModel::decode_step`](super::rnn::RnnModel::decode_step) (candle) serves training.
//! Decoding a layer there is a dozen whole-picture tensors, each one a copy (im2col columns,
//! bias adds, gate slices, depth-to-space permutes): copying and zeroing them took a fifth of
//! the decoder's time, its direct 3×3 products more than twice the multiplies needed. Here the state is kept as rows, each GRU's 3×3 input convolution runs by
//! Winograd's F(2×2, 3×3) in the chunks of the cw synthesis
//! ([`Stage`](super::synthesis::Stage), 4/9 of the direct convolution's multiplies), and
//! within a chunk the 1×1 state product and the gate update follow while its values are in
//! cache. Chunks run in parallel on the current rayon pool; their sizes do not depend on the
//! number of threads and each state value is written by exactly one chunk, so the pictures
//! are the same for any thread count. The values equal the candle path's up to float
//! rounding.

use super::rnn::{BITS, STRIDE};
use super::synthesis::{Feed, Geometry, Stage};
use lic_kernels::{gru_update, matmul};
use rayon::prelude::*;
use std::collections::VecDeque;

/// A 'same' convolution with a bias run in chunks: 3×3 by Winograd, or 1×1 as one product.
#[derive(Clone, Debug)]
pub(super) enum ChunkConv {
    Winograd(Stage),
    Pointwise {
        /// `(cout, cin)`.
        w: Vec<f32>,
        b: Vec<f32>,
        cin: usize,
    },
}

impl ChunkConv {
    /// From a weight `(cout, cin, k, k)` flattened and its bias, for k = 3 or 1.
    pub(super) fn new(
        cin: usize,
        cout: usize,
        k: usize,
        w: Vec<f32>,
        b: Vec<f32>,
    ) -> Result<Self, String> {
        match k {
            3 => Ok(Self::Winograd(Stage::analysis(cin, cout, w, b, None)?)),
            1 if w.len() == cout * cin && b.len() == cout => Ok(Self::Pointwise { w, b, cin }),
            _ => Err(format!(
                "rnn convolution {cin}→{cout} {k}×{k}: wrong shapes"
            )),
        }
    }

    fn cin(&self) -> usize {
        match self {
            Self::Winograd(s) => s.cin,
            Self::Pointwise { cin, .. } => *cin,
        }
    }

    /// The convolution of rows `ya..ya + rows`, columns `xa..xb` of `feed` (every row
    /// present), as `(cout, rows, xb − xa)` row-major.
    fn chunk(&self, feed: &Feed, ya: usize, rows: usize, xa: usize, xb: usize) -> Vec<f32> {
        match self {
            Self::Winograd(s) => s.chunk_here(feed, ya, rows, xa, xb),
            Self::Pointwise { w, b, cin } => {
                let (ws, fw) = (xb - xa, feed.w);
                let p = rows * ws;
                let mut x = Vec::with_capacity(cin * p);
                for c in 0..*cin {
                    for row in feed.rows.range(ya..ya + rows) {
                        x.extend_from_slice(&row[c * fw + xa..][..ws]);
                    }
                }
                let mut out = vec![0f32; b.len() * p];
                matmul(&mut out, w, &x, b.len(), *cin, p);
                for (o, &bias) in out.chunks_exact_mut(p).zip(b) {
                    o.iter_mut().for_each(|v| *v += bias);
                }
                out
            }
        }
    }
}

/// One convolutional GRU ([`ConvGru`](super::rnn::ConvGru)).
#[derive(Clone, Debug)]
pub(super) struct Cell {
    /// The input convolution, `cin → 3n` (z, r, candidate thirds).
    wx: ChunkConv,
    /// The 1×1 state convolution `(3n, n)` and its bias.
    wh: Vec<f32>,
    bh: Vec<f32>,
    n: usize,
}

/// The decoder's transforms as plain f32 kernels, made once from the loaded model.
#[derive(Clone, Debug)]
pub struct RnnSynthesizer {
    cells: Vec<Cell>,
    /// The last 3×3 convolution at 1/2 resolution, to the 4·3 channels that depth-to-space
    /// makes the RGB update.
    out: ChunkConv,
}

/// The decoder's recurrent state between layers and its picture so far.
#[derive(Clone, Debug)]
pub struct RnnState {
    /// Per GRU (1/16, 1/8, 1/4 resolution): its state as rows `(n, w)`.
    h: Vec<Vec<Vec<f32>>>,
    /// `x̂`, planar `(3, height, width)`, scaled to [−1, 1] (0 is mid grey).
    pub x_hat: Vec<f32>,
    /// Picture size (multiples of [`STRIDE`]).
    pub height: usize,
    /// Picture width.
    pub width: usize,
    /// Layers decoded so far.
    pub iterations: usize,
}

/// Rows `(c·4, w)` → rows `(c, 2w)`, twice as many: channel `co·4 + 2·ry + rx` at column x
/// goes to channel co of row `2y + ry`, column `2x + rx` (the order of
/// [`depth_to_space`](super::layers::depth_to_space)).
fn depth_to_space_rows(rows: &[Vec<f32>], c4: usize, w: usize) -> Vec<Vec<f32>> {
    let co = c4 / 4;
    (0..2 * rows.len())
        .into_par_iter()
        .map(|yy| {
            let (row, ry) = (&rows[yy / 2], yy % 2);
            let mut o = Vec::with_capacity(co * 2 * w);
            for c in 0..co {
                let even = &row[(c * 4 + 2 * ry) * w..][..w];
                let odd = &row[(c * 4 + 2 * ry + 1) * w..][..w];
                o.extend(even.iter().zip(odd).flat_map(|(&a, &b)| [a, b]));
            }
            o
        })
        .collect()
}

/// Where the chunks of a 3×3 convolution with `cin` inputs fall on a `rows × w` level: the cw
/// synthesis's layout, with rows split finer where it would leave fewer than
/// [`MIN_CHUNKS`] chunks (the coarse levels are small enough to fit one), so that every core
/// has work. Depends only on the sizes.
fn geometry(cin: usize, w: usize, rows: usize) -> Geometry {
    let mut g = Geometry::new(cin, w);
    if g.chunks(rows) < MIN_CHUNKS {
        let per = rows.div_ceil(MIN_CHUNKS.div_ceil(g.segs));
        g.chunk_rows = g.chunk_rows.min(per.div_ceil(2).max(1) * 2);
    }
    g
}

/// Chunks a level is split into at least (when it has the rows).
const MIN_CHUNKS: usize = 8;

/// A thread's temporaries for the state path, kept between chunks.
#[derive(Default)]
struct Scratch {
    gh: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

impl RnnSynthesizer {
    /// The decoder from its three GRUs, each `(cin, n, wx weight (3n, cin, 3, 3), wx bias,
    /// wh weight (3n, n), wh bias)` flattened, and the last convolution `(cin, weight
    /// (12, cin, 3, 3), bias)`.
    #[allow(clippy::type_complexity)]
    pub fn new(
        cells: Vec<(usize, usize, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)>,
        out: (usize, Vec<f32>, Vec<f32>),
    ) -> Result<Self, String> {
        Ok(Self {
            cells: cells
                .into_iter()
                .map(|(cin, n, wx, bx, wh, bh)| Cell::new(cin, n, 3, wx, bx, wh, bh))
                .collect::<Result<_, _>>()?,
            out: ChunkConv::new(out.0, 12, 3, out.1, out.2)?,
        })
    }

    /// A fresh state (x̂ = 0, mid grey) for a `height × width` picture (multiples of
    /// [`STRIDE`]).
    pub fn state(&self, height: usize, width: usize) -> RnnState {
        let h = self
            .cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let s = STRIDE >> i;
                vec![vec![0f32; cell.n * (width / s)]; height / s]
            })
            .collect();
        RnnState {
            h,
            x_hat: vec![0f32; 3 * height * width],
            height,
            width,
            iterations: 0,
        }
    }

    /// One decoder iteration: the layer's bits `(BITS, h/16, w/16)` (1 for +1, 0 for −1)
    /// update the state and its picture.
    pub fn step(&self, bits: &[u8], st: &mut RnnState) {
        let (lh, lw) = (st.height / STRIDE, st.width / STRIDE);
        assert_eq!(bits.len(), BITS * lh * lw, "bits of the wrong size");
        let mut x: Vec<Vec<f32>> = (0..lh)
            .map(|y| {
                let mut row = vec![0f32; BITS * lw];
                for c in 0..BITS {
                    for (xx, v) in row[c * lw..][..lw].iter_mut().enumerate() {
                        *v = if bits[(c * lh + y) * lw + xx] == 1 {
                            1.0
                        } else {
                            -1.0
                        };
                    }
                }
                row
            })
            .collect();
        let mut w = lw;
        for (cell, h) in self.cells.iter().zip(st.h.iter_mut()) {
            cell.step(x, h, w);
            x = depth_to_space_rows(h, cell.n, w);
            w *= 2;
        }
        // The RGB update: the last convolution at 1/2 resolution, depth-to-space, added;
        // each row of x̂ from the chunks that cover its half-resolution row.
        let (outs, g, rows) = run_chunks(&self.out, x, w, |_, _, _, gx| gx);
        let (hp, wp) = (st.height, st.width);
        st.x_hat
            .par_chunks_mut(wp)
            .enumerate()
            .for_each(|(i, line)| {
                let (c, yy) = (i / hp, i % hp);
                let (y, ry) = (yy / 2, yy % 2);
                let first = y / g.chunk_rows * g.segs;
                for (k, buf) in outs.iter().enumerate().skip(first).take(g.segs) {
                    let (ya, n, xa, xb) = g.rect(k, 0, rows, w);
                    let ws = xb - xa;
                    for rx in 0..2 {
                        let src = &buf[((c * 4 + 2 * ry + rx) * n + y - ya) * ws..][..ws];
                        let dst = &mut line[2 * xa + rx..][..2 * ws - 1];
                        for (d, &v) in dst.iter_mut().step_by(2).zip(src) {
                            *d += v;
                        }
                    }
                }
            });
        st.iterations += 1;
    }
}

/// Runs `stage` over every chunk of the input rows `x` (each `(cin, w)`) in parallel, and
/// `then(ya, rows, xa..xb, conv)` on each chunk's convolution `(cout, rows, xb − xa)`.
/// Returns what `then` made, in chunk order, with the geometry and the row count.
pub(super) fn run_chunks(
    stage: &ChunkConv,
    x: Vec<Vec<f32>>,
    w: usize,
    then: impl Fn(usize, usize, (usize, usize), Vec<f32>) -> Vec<f32> + Sync,
) -> (Vec<Vec<f32>>, Geometry, usize) {
    let rows = x.len();
    let g = geometry(stage.cin(), w, rows);
    let feed = Feed {
        w,
        h: rows,
        rows: VecDeque::from(x),
        first: 0,
        next: 0,
    };
    let outs = (0..g.chunks(rows))
        .into_par_iter()
        .map(|k| {
            let (ya, n, xa, xb) = g.rect(k, 0, rows, w);
            then(ya, n, (xa, xb), stage.chunk(&feed, ya, n, xa, xb))
        })
        .collect();
    (outs, g, rows)
}

/// The rows `(cout, w)` of a level from its chunks' outputs `(cout, rows, ws)` (laid out by
/// `g` on `rows` rows).
pub(super) fn rows_of(
    outs: &[Vec<f32>],
    g: &Geometry,
    rows: usize,
    w: usize,
    cout: usize,
) -> Vec<Vec<f32>> {
    (0..rows)
        .into_par_iter()
        .map(|y| {
            let mut row = vec![0f32; cout * w];
            let first = y / g.chunk_rows * g.segs;
            for (k, buf) in outs.iter().enumerate().skip(first).take(g.segs) {
                let (ya, r, xa, xb) = g.rect(k, 0, rows, w);
                let (ws, p) = (xb - xa, r * (xb - xa));
                for c in 0..cout {
                    row[c * w + xa..][..ws].copy_from_slice(&buf[c * p + (y - ya) * ws..][..ws]);
                }
            }
            row
        })
        .collect()
}

impl Cell {
    /// A GRU from its input convolution (`k`×`k`, `cin → 3n`) and its state convolution
    /// `(3n, n)`, each weight flattened, with their biases.
    pub(super) fn new(
        cin: usize,
        n: usize,
        k: usize,
        wx: Vec<f32>,
        bx: Vec<f32>,
        wh: Vec<f32>,
        bh: Vec<f32>,
    ) -> Result<Self, String> {
        if wh.len() != 3 * n * n || bh.len() != 3 * n {
            return Err(format!("rnn GRU of {n}: state weights of the wrong shape"));
        }
        Ok(Cell {
            wx: ChunkConv::new(cin, 3 * n, k, wx, bx)?,
            wh,
            bh,
            n,
        })
    }

    /// Width of the state.
    pub(super) fn n(&self) -> usize {
        self.n
    }

    /// `h' = GRU(x, h)` on a `w`-wide level: `x` rows `(cin, w)`, `h` rows `(n, w)`.
    pub(super) fn step(&self, x: Vec<Vec<f32>>, h: &mut [Vec<f32>], w: usize) {
        let n = self.n;
        let state: &[Vec<f32>] = h;
        let (outs, g, rows) = run_chunks(&self.wx, x, w, |ya, r, (xa, xb), gx| {
            let ws = xb - xa;
            let p = r * ws;
            // The chunk's state `(n, p)`, then its 1×1 product `(3n, p)` (the bias is added
            // in the gates).
            let mut hc = Vec::with_capacity(n * p);
            for c in 0..n {
                for row in &state[ya..ya + r] {
                    hc.extend_from_slice(&row[c * w + xa..][..ws]);
                }
            }
            SCRATCH.with_borrow_mut(|scratch| {
                let gh = &mut scratch.gh;
                gh.resize(3 * n * p, 0.0);
                matmul(gh, &self.wh, &hc, 3 * n, n, p);
                for (c, hrow) in hc.chunks_exact_mut(p).enumerate() {
                    let at = |gate: usize| (gate * n + c) * p;
                    gru_update(
                        [&gx[at(0)..], &gx[at(1)..], &gx[at(2)..]],
                        [&gh[at(0)..], &gh[at(1)..], &gh[at(2)..]],
                        [self.bh[c], self.bh[n + c], self.bh[2 * n + c]],
                        hrow,
                    );
                }
            });
            hc
        });
        // Each state row from the chunks that cover it.
        h.par_iter_mut().enumerate().for_each(|(y, row)| {
            let first = y / g.chunk_rows * g.segs;
            for (k, hc) in outs.iter().enumerate().skip(first).take(g.segs) {
                let (ya, r, xa, xb) = g.rect(k, 0, rows, w);
                let (ws, p) = (xb - xa, r * (xb - xa));
                for c in 0..n {
                    row[c * w + xa..][..ws].copy_from_slice(&hc[c * p + (y - ya) * ws..][..ws]);
                }
            }
        });
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::rnn::{bits_tensor, RnnModel};
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};

    /// Deterministic pseudo-random bits.
    fn bits(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 33) as u8 & 1
            })
            .collect()
    }

    /// A model with random weights, the biases too (a fresh one starts them at zero).
    pub(in crate::model) fn model() -> RnnModel {
        let vm = VarMap::new();
        RnnModel::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        for (name, var) in vm.data().lock().unwrap().iter() {
            if name.ends_with("bias") {
                let b = candle_core::Tensor::randn(0f32, 0.3, var.shape(), &Device::Cpu).unwrap();
                var.set(&b).unwrap();
            }
        }
        let detached = VarBuilder::from_tensors(
            vm.data()
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
                .collect(),
            DType::F32,
            &Device::Cpu,
        );
        RnnModel::new(detached).unwrap()
    }

    #[test]
    fn matches_the_model_decoder_over_iterations() {
        let model = model();
        let syn = model.synthesizer().unwrap();
        // 3×5 blocks: an odd number of rows and columns at every level.
        let (lh, lw) = (3, 5);
        let (h, w) = (lh * STRIDE, lw * STRIDE);
        let mut ours = syn.state(h, w);
        let mut theirs = model.decoder_state(1, h, w).unwrap();
        for t in 0..4 {
            let b = bits(BITS * lh * lw, t + 1);
            syn.step(&b, &mut ours);
            let bt = bits_tensor(&b, lh, lw, &Device::Cpu).unwrap();
            model.decode_step(&bt, &mut theirs).unwrap();
            let want: Vec<f32> = theirs.x_hat.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(ours.x_hat.len(), want.len());
            let spread = want.iter().map(|v| v.abs()).fold(0f32, f32::max);
            assert!(spread > 0.05, "iteration {t}: a flat picture ({spread})");
            let worst = ours
                .x_hat
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "iteration {t}: differs by {worst}");
        }
        assert_eq!(ours.iterations, 4);
    }

    #[test]
    fn pictures_do_not_depend_on_the_thread_count() {
        let model = model();
        let syn = model.synthesizer().unwrap();
        // Several chunks at the 1/4 and 1/2 resolution levels.
        let (lh, lw) = (16, 9);
        assert!(geometry(32, 4 * lw, 4 * lh).chunks(4 * lh) > 1);
        assert!(geometry(16, 8 * lw, 8 * lh).chunks(8 * lh) > 2);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut st = syn.state(lh * STRIDE, lw * STRIDE);
                for t in 0..3 {
                    syn.step(&bits(BITS * lh * lw, 7 + t), &mut st);
                }
                st.x_hat
            })
        };
        let one = run(1);
        assert!(one == run(3), "1 and 3 threads decode different pictures");
    }
}
