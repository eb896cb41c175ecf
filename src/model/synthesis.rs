//! The cw synthesis as the decoder runs it: a row pipeline over plain f32 buffers.
//!
//! [`CwModel::synthesis`](super::cw::CwModel::synthesis) (candle) serves training; decoding
//! uses this instead, because a whole-image tensor per stage and the copies between candle
//! ops made the decoder's time half page faults and memcpy and its memory grow with the
//! picture. Here each stage keeps only the input rows its 3×3 convolution still needs and
//! hands its output rows on as soon as they are complete, so the working set is a few rows
//! per stage whatever the picture's height, and the process allocates little.
//!
//! A stage computes a band of its input rows at a time, in chunks of whole row pairs by a
//! fixed number of columns (a narrow input puts several row pairs in a chunk). Each chunk is a 3×3 convolution by Winograd's minimal filtering
//! F(2×2, 3×3): the input in overlapping 4×4 tiles, transformed, becomes 16 matrix products
//! (the `gemm` crate) with the weights transformed once at load, and each product's tile
//! transformed back gives 2×2 outputs. That is 16 multiplies where the direct convolution
//! takes 36, for a sum that differs from it only in float rounding. Bias, inverse GDN (or
//! ReLU) and depth-to-space follow. Chunks run in parallel on the current rayon pool; their
//! sizes do not depend on the number of threads, and each output value is computed by exactly
//! one chunk, so the pixels are the same for any thread count.

use super::postfilter::PostFilter;
use lic_format::arch::cw::SYNTHESIS;
use lic_kernels::{matmul, matmul_add};
use rayon::prelude::*;
use std::collections::VecDeque;

/// Bytes of transformed input (16 matrices of `cin × tiles`) one chunk may build: keeps a
/// chunk's working set near the size of a core's L2 + L3 share, and its matrix products wide
/// enough to run at full speed.
const CHUNK_BYTES: usize = 1 << 20;

/// Chunks per band: enough for the cores of a desktop to share a band.
const BAND_CHUNKS: usize = 8;

/// Winograd F(2, 3) filter transform G (4×3).
const G: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// A worker's temporaries, kept between chunks so that the decoder allocates little once
/// running: the input rows of a chunk, its transformed input and products, and the inverse
/// GDN's squares and norms.
#[derive(Default)]
struct Scratch {
    lines: Vec<f32>,
    rowt: Vec<f32>,
    v: Vec<f32>,
    ys: Vec<f32>,
    products: Vec<f32>,
    sq: Vec<f32>,
    norm: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// What follows a stage's convolution and depth-to-space.
#[derive(Clone, Debug)]
enum Activation {
    /// GDN, `y = x / sqrt(β + Γ x²)` (the analysis), or inverse GDN, `y = x · sqrt(β + Γ x²)`
    /// (the synthesis), with `beta` = β (stored squared, plus 1e-6) and `gamma` = Γ
    /// `(cout, cout)` (stored squared).
    Norm {
        beta: Vec<f32>,
        gamma: Vec<f32>,
        inverse: bool,
    },
    /// max(x, 0) (the first shipped weights).
    Relu,
    /// None (the analysis's last stage).
    Linear,
    /// The last stage: `x·½ + ½` in [0, 1] becomes 8-bit RGB.
    Pixels,
}

impl Activation {
    /// (Inverse) GDN of `cout` channels from the stored (unsquared) β `(cout)` and Γ
    /// `(cout, cout)`, squared as the training graph computes them (`layers::Gdn`), in f32.
    fn norm(beta: &[f32], gamma: &[f32], cout: usize, inverse: bool) -> Result<Self, String> {
        if beta.len() != cout || gamma.len() != cout * cout {
            let kind = if inverse { "inverse GDN" } else { "GDN" };
            return Err(format!("{kind} of {cout} channels: wrong shapes"));
        }
        Ok(Activation::Norm {
            beta: beta.iter().map(|b| b * b + 1e-6).collect(),
            gamma: gamma.iter().map(|g| g * g).collect(),
            inverse,
        })
    }
}

/// One synthesis stage: a 3×3 'same' convolution from `cin` to `4·cout` channels, bias, the
/// depth-to-space ×2 (output channel `co·4 + 2·ry + rx` goes to channel `co` of the output
/// pixel `(2y + ry, 2x + rx)`), then the activation.
#[derive(Clone, Debug)]
pub struct Stage {
    pub(super) cin: usize,
    pub(super) cout: usize,
    /// Convolution outputs per output channel: 4 where a depth-to-space follows (synthesis),
    /// 1 in the analysis.
    depth: usize,
    /// The filters in the Winograd domain: 16 matrices `(4·cout, cin)`, matrix `4i + j`
    /// holding entry (i, j) of `G·g·Gᵀ` for every filter g.
    u: Vec<f32>,
    bias: Vec<f32>,
    act: Activation,
}

/// The filters `(m, cin, 3, 3)` (flattened) in the Winograd domain: 16 matrices `(m, cin)`,
/// matrix `4i + j` holding entry (i, j) of `G·g·Gᵀ` for every filter g.
fn winograd_filters(weight: &[f32], cin: usize, m: usize) -> Vec<f32> {
    let mut u = vec![0f32; 16 * m * cin];
    for (o, filters) in weight.chunks_exact(9 * cin).enumerate() {
        for (c, g) in filters.chunks_exact(9).enumerate() {
            // G·g (4×3), then (G·g)·Gᵀ (4×4); g[3·dy + dx].
            let mut gg = [[0f32; 3]; 4];
            for (row, gi) in gg.iter_mut().zip(&G) {
                for (b, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|a| gi[a] * g[3 * a + b]).sum();
                }
            }
            for (i, row) in gg.iter().enumerate() {
                for (j, gj) in G.iter().enumerate() {
                    u[((4 * i + j) * m + o) * cin + c] = (0..3).map(|b| row[b] * gj[b]).sum();
                }
            }
        }
    }
    u
}

/// Where a stage's chunks fall on a `w`-wide input.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geometry {
    /// Input rows per band (even; the picture's last band may be shorter).
    pub(super) band_rows: usize,
    /// Input rows per chunk (even; the band's last chunk may have fewer).
    pub(super) chunk_rows: usize,
    /// Columns per chunk (even; the last chunk of a row may be narrower).
    pub(super) seg: usize,
    /// Chunks across the width.
    pub(super) segs: usize,
}

impl Geometry {
    pub(super) fn new(cin: usize, w: usize) -> Self {
        let w = w.max(1);
        // 2×2 tiles per chunk, in as many row pairs as a narrow picture needs to fill it.
        let tiles = (CHUNK_BYTES / (16 * cin * 4)).max(8);
        let segs = w.div_ceil(2 * tiles);
        let seg = w.div_ceil(segs).div_ceil(2) * 2;
        let segs = w.div_ceil(seg);
        let chunk_rows = 2 * (tiles / (seg / 2)).max(1);
        Self {
            band_rows: chunk_rows * (BAND_CHUNKS / segs).max(1),
            chunk_rows,
            seg,
            segs,
        }
    }

    /// Chunks in a band of `rows` input rows.
    pub(super) fn chunks(&self, rows: usize) -> usize {
        rows.div_ceil(self.chunk_rows) * self.segs
    }

    /// Chunk `k` of the band starting at input row `r0` and ending before `r1`, on a `w`-wide
    /// input: (first row, rows, first column, end column).
    pub(super) fn rect(
        &self,
        k: usize,
        r0: usize,
        r1: usize,
        w: usize,
    ) -> (usize, usize, usize, usize) {
        let ya = r0 + self.chunk_rows * (k / self.segs);
        let xa = (k % self.segs) * self.seg;
        (ya, self.chunk_rows.min(r1 - ya), xa, w.min(xa + self.seg))
    }
}

impl Stage {
    /// A stage from the convolution's weight `(4·cout, cin, 3, 3)` flattened and its bias
    /// `(4·cout)`, followed by inverse GDN with the stored (unsquared) `beta` `(cout)` and
    /// `gamma` `(cout, cout)`, by ReLU (`None`, `false`), or producing pixels (`None`, `true`).
    pub fn new(
        cin: usize,
        cout: usize,
        weight: Vec<f32>,
        bias: Vec<f32>,
        gdn: Option<(Vec<f32>, Vec<f32>)>,
        last: bool,
    ) -> Result<Self, String> {
        if weight.len() != 4 * cout * 9 * cin || bias.len() != 4 * cout {
            return Err(format!(
                "synthesis stage {cin}→{cout}: weight {} and bias {} values",
                weight.len(),
                bias.len()
            ));
        }
        let act = match (gdn, last) {
            (_, true) => Activation::Pixels,
            (Some((beta, gamma)), false) => Activation::norm(&beta, &gamma, cout, true)?,
            (None, false) => Activation::Relu,
        };
        let u = winograd_filters(&weight, cin, 4 * cout);
        Ok(Self {
            cin,
            cout,
            depth: 4,
            u,
            bias,
            act,
        })
    }

    /// An analysis stage: a 3×3 'same' convolution from `cin` to `cout` channels (weight
    /// `(cout, cin, 3, 3)` flattened, bias `(cout)`), then GDN with the stored (unsquared)
    /// `beta` and `gamma`, or nothing (`None`).
    pub fn analysis(
        cin: usize,
        cout: usize,
        weight: Vec<f32>,
        bias: Vec<f32>,
        gdn: Option<(Vec<f32>, Vec<f32>)>,
    ) -> Result<Self, String> {
        if weight.len() != cout * 9 * cin || bias.len() != cout {
            return Err(format!(
                "analysis stage {cin}→{cout}: weight {} and bias {} values",
                weight.len(),
                bias.len()
            ));
        }
        let act = match gdn {
            Some((beta, gamma)) => Activation::norm(&beta, &gamma, cout, false)?,
            None => Activation::Linear,
        };
        Ok(Self {
            cin,
            cout,
            depth: 1,
            u: winograd_filters(&weight, cin, cout),
            bias,
            act,
        })
    }

    /// Multiply-accumulates per input position of the network (the direct convolution and
    /// the normalization), the unit decoders are compared in; the Winograd convolution here
    /// performs 4/9 of the convolution's.
    fn macs(&self) -> usize {
        let norm = match self.act {
            Activation::Norm { .. } => self.depth * self.cout * self.cout,
            _ => 0,
        };
        self.depth * self.cout * 9 * self.cin + norm
    }

    /// Every chunk of the band of input rows `r0..r1` of `feed` laid out by `g`, computed in
    /// parallel, in chunk order ([`Geometry::rect`]).
    fn band(&self, feed: &Feed, g: &Geometry, r0: usize, r1: usize) -> Vec<Vec<f32>> {
        (0..g.chunks(r1 - r0))
            .into_par_iter()
            .map(|k| {
                let (ya, rows, xa, xb) = g.rect(k, r0, r1, feed.w);
                self.chunk_here(feed, ya, rows, xa, xb)
            })
            .collect()
    }

    /// [`Self::chunk`] with the calling thread's temporaries.
    pub(super) fn chunk_here(
        &self,
        feed: &Feed,
        ya: usize,
        rows: usize,
        xa: usize,
        xb: usize,
    ) -> Vec<f32> {
        SCRATCH.with_borrow_mut(|scratch| self.chunk(scratch, feed, ya, rows, xa, xb))
    }

    /// The convolution, bias and activation of input rows `ya..ya + rows`, columns `xa..xb`,
    /// as `(depth·cout, rows, xb − xa)` row-major (channels in the convolution's order).
    fn chunk(
        &self,
        scratch: &mut Scratch,
        feed: &Feed,
        ya: usize,
        rows: usize,
        xa: usize,
        xb: usize,
    ) -> Vec<f32> {
        let (cin, w, m) = (self.cin, feed.w, self.depth * self.cout);
        let ws = xb - xa;
        // Tiles per row pair and in all; tile (q, t) reads input rows ya + 2q − 1 ..
        // ya + 2q + 3 and columns xa + 2t − 1 .. xa + 2t + 3.
        let (across, pairs) = (ws.div_ceil(2), rows.div_ceil(2));
        let tiles = across * pairs;
        // `lines` holds, for each of the four input rows a tile row reads, the channel's
        // even and odd columns from xa − 1 on (zero outside the picture): input columns
        // xa − 1 + 2k and xa + 2k at k of each half, so that every transform below runs on
        // contiguous slices.
        let half = across + 1;
        let lines = &mut scratch.lines;
        lines.resize(10 * half, 0.0);
        let rowt = &mut scratch.rowt;
        rowt.resize(16 * across, 0.0);
        // Every value of `v` and `products` is written below: no need to zero them.
        let v = &mut scratch.v;
        v.resize(16 * cin * tiles, 0.0);
        // Input columns xa − 1 + k exist for k in lo..hi.
        let (lo, hi) = (1 - xa.min(1), (2 * half).min(w + 1 - xa));
        for q in 0..pairs {
            let src: [Option<&[f32]>; 4] =
                std::array::from_fn(|r| (ya + 2 * q + r).checked_sub(1).and_then(|y| feed.row(y)));
            for c in 0..cin {
                // For each of the four input rows a tile row reads, the channel's columns
                // from xa − 1 on split into even and odd ones (zero outside the picture), so
                // that every transform below runs on contiguous slices.
                let (eo, pad) = lines.split_at_mut(8 * half);
                for (r, row) in src.iter().enumerate() {
                    pad.fill(0.0);
                    if let Some(row) = row {
                        let at = c * w + xa;
                        pad[lo..hi].copy_from_slice(&row[at + lo - 1..at + hi - 1]);
                    }
                    let (even, odd) = eo[2 * r * half..2 * (r + 1) * half].split_at_mut(half);
                    for ((e, o), pair) in even.iter_mut().zip(odd).zip(pad.chunks_exact(2)) {
                        (*e, *o) = (pair[0], pair[1]);
                    }
                }
                // d·B along each row: tile t reads e[t], o[t], e[t + 1], o[t + 1].
                for (r, out) in rowt.chunks_exact_mut(4 * across).enumerate() {
                    let (e, o) = eo[2 * r * half..2 * (r + 1) * half].split_at(half);
                    let (e0, e1, o0, o1) = (&e[..across], &e[1..], &o[..across], &o[1..]);
                    let (x0, rest) = out.split_at_mut(across);
                    let (x1, rest) = rest.split_at_mut(across);
                    let (x2, x3) = rest.split_at_mut(across);
                    for t in 0..across {
                        x0[t] = e0[t] - e1[t];
                        x1[t] = o0[t] + e1[t];
                        x2[t] = e1[t] - o0[t];
                        x3[t] = o0[t] - o1[t];
                    }
                }
                // Bᵀ·(d·B) down the columns, into the 16 planes.
                let x = |r: usize, j: usize| &rowt[(4 * r + j) * across..][..across];
                for j in 0..4 {
                    let (r0, r1, r2, r3) = (x(0, j), x(1, j), x(2, j), x(3, j));
                    let plane = |i: usize| {
                        let at = ((4 * i + j) * cin + c) * tiles + q * across;
                        at..at + across
                    };
                    let [d0, d1, d2, d3] = v
                        .get_disjoint_mut([0, 1, 2, 3].map(plane))
                        .expect("the planes are disjoint");
                    for t in 0..across {
                        d0[t] = r0[t] - r2[t];
                        d1[t] = r1[t] + r2[t];
                        d2[t] = r2[t] - r1[t];
                        d3[t] = r1[t] - r3[t];
                    }
                }
            }
        }
        let products = &mut scratch.products;
        products.resize(16 * m * tiles, 0.0);
        for (xi, (p, vx)) in products
            .chunks_exact_mut(m * tiles)
            .zip(v.chunks_exact(cin * tiles))
            .enumerate()
        {
            matmul(p, &self.u[xi * m * cin..][..m * cin], vx, m, cin, tiles);
        }
        // Aᵀ·P·A per tile: 2×2 outputs, plus the bias.
        let n = rows * ws;
        let mut out = vec![0f32; m * n];
        let ys = &mut scratch.ys;
        ys.resize(12 * tiles, 0.0);
        for (o, (dst, &bias)) in out.chunks_exact_mut(n).zip(&self.bias).enumerate() {
            let p = |xi: usize| &products[(xi * m + o) * tiles..][..tiles];
            // P·A across: s[i][dx] (rows i of the tile, output columns dx) ...
            let (sums, y) = ys.split_at_mut(8 * tiles);
            for (i, s) in sums.chunks_exact_mut(2 * tiles).enumerate() {
                let (s0, s1) = s.split_at_mut(tiles);
                let (a, b, c, d) = (p(4 * i), p(4 * i + 1), p(4 * i + 2), p(4 * i + 3));
                for t in 0..tiles {
                    s0[t] = a[t] + b[t] + c[t];
                    s1[t] = b[t] - c[t] - d[t];
                }
            }
            // ... then Aᵀ·(P·A) down, row by row of outputs, interleaving the two columns.
            let s = |i: usize, dx: usize| &sums[(2 * i + dx) * tiles..][..tiles];
            for dy in 0..2 {
                let (y0, y1) = y.split_at_mut(tiles);
                for (dx, yd) in [y0, &mut y1[..tiles]].into_iter().enumerate() {
                    let (a, b, c) = if dy == 0 {
                        (s(0, dx), s(1, dx), s(2, dx))
                    } else {
                        (s(1, dx), s(2, dx), s(3, dx))
                    };
                    let sign = if dy == 0 { 1.0 } else { -1.0 };
                    for t in 0..tiles {
                        yd[t] = bias + a[t] + sign * (b[t] + c[t]);
                    }
                }
                let (y0, y1) = y.split_at(tiles);
                for q in (0..pairs).filter(|q| 2 * q + dy < rows) {
                    let line = &mut dst[(2 * q + dy) * ws..][..ws];
                    let (y0, y1) = (&y0[q * across..][..across], &y1[q * across..][..across]);
                    for ((pair, &a), &b) in line.chunks_exact_mut(2).zip(y0).zip(y1) {
                        (pair[0], pair[1]) = (a, b);
                    }
                    if ws % 2 == 1 {
                        line[ws - 1] = y0[across - 1];
                    }
                }
            }
        }
        match &self.act {
            Activation::Norm {
                beta,
                gamma,
                inverse,
            } => {
                // Rows co·depth + s: as a (cout, depth·n) matrix, channel co's values at all
                // its sub-positions form one row, so one product gives every Γx².
                let k = self.depth * n;
                let (sq, norm) = (&mut scratch.sq, &mut scratch.norm);
                sq.clear();
                sq.extend(out.iter().map(|v| v * v));
                norm.clear();
                for &b in beta {
                    norm.extend(std::iter::repeat_n(b, k));
                }
                matmul_add(norm, gamma, sq, self.cout, self.cout, k);
                if *inverse {
                    for (v, s) in out.iter_mut().zip(norm.iter()) {
                        *v *= s.sqrt();
                    }
                } else {
                    for (v, s) in out.iter_mut().zip(norm.iter()) {
                        *v /= s.sqrt();
                    }
                }
            }
            Activation::Relu => out.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Pixels | Activation::Linear => {}
        }
        out
    }
}

/// Bytes the synthesis of the shipped architecture ([`SYNTHESIS`]) holds at most while it
/// runs on an `h × w` latent grid, besides its input latents and output pixels: the rows
/// each stage keeps and each stage's band of chunk outputs (all four can be alive at once, as
/// a band's rows are handed on before the band is done), and the temporaries of `threads`
/// workers, which each keep theirs at the size of the largest stage's.
pub fn working_bytes(h: usize, w: usize, threads: usize) -> u64 {
    let (mut rows_and_bands, mut temps) = (0u64, 0u64);
    let (mut height, mut width) = (h, w);
    for &(cin, cout) in SYNTHESIS.iter() {
        let (held, worker) = stage_floats(cin, 4 * cout, height, width);
        // And the output row being filled.
        rows_and_bands += held + (2 * cout * width) as u64;
        temps = temps.max(worker);
        (height, width) = (2 * height, 2 * width);
    }
    4 * (rows_and_bands + threads.max(1) as u64 * temps)
}

/// Floats one stage with `cin` inputs and `m` convolution outputs holds on a `width`-wide
/// input of `height` rows: the rows its feed keeps with its band of chunk outputs, and one
/// worker's temporaries.
pub(super) fn stage_floats(cin: usize, m: usize, height: usize, width: usize) -> (u64, u64) {
    let g = Geometry::new(cin, width);
    // A band never holds more rows than the picture has.
    let rows = g.band_rows.min(height.max(1));
    // The rows a feed holds: the band, its halo, and rows received before the band ran.
    let feed = (rows + 3) as u64 * (cin * width) as u64;
    let outputs = (m * rows * g.segs * g.seg) as u64;
    // A worker's input lines, transformed input, products, squares and norms.
    let tiles = (g.chunk_rows.min(rows).div_ceil(2) * g.seg / 2) as u64;
    let worker = 4 * (g.seg as u64 + 2) + 16 * (cin + m) as u64 * tiles + 2 * m as u64 * 4 * tiles;
    (feed + outputs, worker)
}

/// The input rows of one stage that it still needs: rows `first..first + rows.len()` of an
/// `h`-row picture, each `(c, w)` row-major.
pub(super) struct Feed {
    pub(super) w: usize,
    pub(super) h: usize,
    pub(super) rows: VecDeque<Vec<f32>>,
    pub(super) first: usize,
    /// First input row whose output has not been produced.
    pub(super) next: usize,
}

impl Feed {
    fn row(&self, y: usize) -> Option<&[f32]> {
        if y >= self.h {
            return None;
        }
        self.rows.get(y.checked_sub(self.first)?).map(Vec::as_slice)
    }

    /// The next band of at most `rows` input rows whose output can be computed from the rows
    /// received (its rows and the one below it).
    fn ready(&self, rows: usize) -> Option<(usize, usize)> {
        let r0 = self.next;
        let r1 = self.h.min(r0 + rows);
        (r0 < r1 && self.first + self.rows.len() >= self.h.min(r1 + 1)).then_some((r0, r1))
    }

    /// Takes the next input row of `stage` (laid out by `g`) and computes every band that
    /// becomes ready: its first and end rows and its chunks' outputs.
    pub(super) fn take(
        &mut self,
        stage: &Stage,
        g: &Geometry,
        row: Vec<f32>,
    ) -> Vec<(usize, usize, Vec<Vec<f32>>)> {
        self.rows.push_back(row);
        let mut bands = Vec::new();
        while let Some((r0, r1)) = self.ready(g.band_rows) {
            bands.push((r0, r1, stage.band(self, g, r0, r1)));
            self.advance(r1);
        }
        bands
    }

    /// Marks rows before `r1` done and forgets those no later band reads.
    fn advance(&mut self, r1: usize) {
        self.next = r1;
        while self.first + 1 < r1 && !self.rows.is_empty() {
            self.rows.pop_front();
            self.first += 1;
        }
    }
}

/// The decoder's synthesis: de-gained latents `(M, h, w)` → RGB8 of the `16h × 16w` grid,
/// row by row.
#[derive(Clone, Debug)]
pub struct Synthesizer {
    stages: Vec<Stage>,
    post: Option<PostFilter>,
}

impl Synthesizer {
    /// The synthesis of these stages, in order; the last one makes the pixels.
    pub fn new(stages: Vec<Stage>) -> Self {
        Self { stages, post: None }
    }

    /// The same synthesis followed by a post-filter.
    pub fn with_post_filter(mut self, post: PostFilter) -> Self {
        self.post = Some(post);
        self
    }

    /// The post-filter the synthesized pixels go through, if the weights have one.
    pub fn post_filter(&self) -> Option<&PostFilter> {
        self.post.as_ref()
    }

    /// Multiply-accumulates per output pixel (convolutions and normalizations, the
    /// post-filter's included): the decoder's cost in the unit learned codecs are compared
    /// in.
    pub fn macs_per_pixel(&self) -> f64 {
        let n = self.stages.len() as i32;
        // Stage i runs at 1/2^(n − i) of the output resolution in each direction.
        self.stages
            .iter()
            .enumerate()
            .map(|(i, s)| s.macs() as f64 / 4f64.powi(n - i as i32))
            .sum::<f64>()
            + self.post.as_ref().map_or(0.0, PostFilter::macs_per_pixel)
    }

    /// Runs the synthesis on an `h × w` latent grid whose rows `latent_row(i, row)` writes
    /// (`(M, w)` row-major, de-gained; `row` comes zeroed) and hands each output row (RGB8,
    /// `16w` pixels) to `sink` in order, with its index. Rows are asked for one at a time,
    /// so the caller need not hold the grid as floats.
    pub fn run(
        &self,
        h: usize,
        w: usize,
        mut latent_row: impl FnMut(usize, &mut [f32]),
        mut sink: impl FnMut(usize, &[u8]),
    ) {
        let m = self.stages[0].cin;
        let mut feeds: Vec<Feed> = (0..self.stages.len())
            .map(|i| Feed {
                w: w << i,
                h: h << i,
                rows: VecDeque::new(),
                first: 0,
                next: 0,
            })
            .collect();
        let mut emitted = 0;
        let mut sink = |row: &[u8]| {
            sink(emitted, row);
            emitted += 1;
        };
        for i in 0..h {
            let mut row = vec![0f32; m * w];
            latent_row(i, &mut row);
            self.push(&mut feeds, 0, row, &mut sink);
        }
    }

    /// Gives stage `s` its next input row and runs every band that becomes ready, passing
    /// the output rows on.
    fn push(&self, feeds: &mut [Feed], s: usize, row: Vec<f32>, sink: &mut impl FnMut(&[u8])) {
        let stage = &self.stages[s];
        let (g, w) = (Geometry::new(stage.cin, feeds[s].w), feeds[s].w);
        for (r0, r1, outs) in feeds[s].take(stage, &g, row) {
            let rect = |k: usize| g.rect(k, r0, r1, w);
            // Depth-to-space: input (y, x), channel co·4 + 2·ry + rx → output row 2y + ry,
            // channel co, column 2x + rx.
            let (cout, w2) = (stage.cout, 2 * w);
            let last = matches!(stage.act, Activation::Pixels);
            for yy in 0..2 * (r1 - r0) {
                let (y, ry) = (r0 + yy / 2, yy % 2);
                let mut out = vec![0f32; cout * w2];
                let row_of_chunks = (y - r0) / g.chunk_rows;
                let first = row_of_chunks * g.segs;
                for (k, buf) in outs.iter().enumerate().skip(first).take(g.segs) {
                    let (ya, rows, xa, xb) = rect(k);
                    let ws = xb - xa;
                    for co in 0..cout {
                        let dst = &mut out[co * w2..][..w2];
                        for rx in 0..2 {
                            let at = ((co * 4 + ry * 2 + rx) * rows + y - ya) * ws;
                            for (i, &v) in buf[at..at + ws].iter().enumerate() {
                                dst[2 * (xa + i) + rx] = v;
                            }
                        }
                    }
                }
                if last {
                    let mut rgb = vec![0u8; w2 * cout];
                    for x in 0..w2 {
                        for c in 0..cout {
                            let v = out[c * w2 + x] * 0.5 + 0.5;
                            rgb[x * cout + c] = (v * 255.0).round().clamp(0.0, 255.0) as u8;
                        }
                    }
                    sink(&rgb);
                } else {
                    self.push(feeds, s + 1, out, sink);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cw::M;
    use crate::CwWeights;
    use candle_core::{Device, Tensor};

    /// A deterministic `(M, h, w)` grid of de-gained latents, spread like decoded ones.
    fn latents(h: usize, w: usize) -> Vec<f32> {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        (0..M * h * w)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 6.0
            })
            .collect()
    }

    fn run(syn: &Synthesizer, lat: &[f32], h: usize, w: usize) -> Vec<u8> {
        let mut rgb = Vec::new();
        let mut next = 0;
        syn.run(
            h,
            w,
            |i, row| {
                for c in 0..M {
                    row[c * w..][..w].copy_from_slice(&lat[(c * h + i) * w..][..w]);
                }
            },
            |i, row| {
                assert_eq!(i, next, "rows out of order");
                next += 1;
                assert_eq!(row.len(), 16 * w * 3);
                rgb.extend_from_slice(row);
            },
        );
        assert_eq!(next, 16 * h);
        rgb
    }

    #[test]
    fn matches_the_model_synthesis() {
        let weights = CwWeights::embedded().unwrap();
        let model = weights.model().unwrap();
        // An odd height and a narrow grid: chunks of several row pairs, one of them with a
        // lone row; a wider grid: the first stage's rows in two chunks of unequal width.
        assert!(Geometry::new(M, 37).chunk_rows > 2 && Geometry::new(M, 111).segs == 2);
        for (h, w) in [(3, 37), (2, 111)] {
            let lat = latents(h, w);
            let ours = run(weights.synthesizer().unwrap(), &lat, h, w);
            // The same weights taken from the loaded model give the same pixels.
            assert_eq!(ours, run(&model.synthesizer().unwrap(), &lat, h, w));
            let y = Tensor::from_vec(lat, (1, M, h, w), &Device::Cpu).unwrap();
            let x = model.synthesis(&y).unwrap().permute((0, 2, 3, 1)).unwrap();
            let x: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(x.len(), ours.len());
            // Float summation order differs, so a sample may round the other way.
            let mut off = 0;
            for (&a, &b) in ours.iter().zip(&x) {
                let b = (b * 255.0).round().clamp(0.0, 255.0);
                assert!((a as f32 - b).abs() <= 1.0, "{a} vs {b}");
                off += (a as f32 != b) as usize;
            }
            assert!(
                off * 1000 < ours.len(),
                "{off} of {} samples differ",
                ours.len()
            );
        }
    }

    #[test]
    fn pixels_do_not_depend_on_the_thread_count() {
        let weights = CwWeights::embedded().unwrap();
        let (h, w) = (2, 70);
        let lat = latents(h, w);
        let with = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| run(weights.synthesizer().unwrap(), &lat, h, w))
        };
        assert_eq!(with(1), with(3));
    }

    #[test]
    fn counts_its_work() {
        let weights = CwWeights::embedded().unwrap();
        let macs = weights.synthesizer().unwrap().macs_per_pixel();
        assert!((20e3..40e3).contains(&macs), "{macs} MAC/px");
        assert!(working_bytes(48, 1000, 2) > working_bytes(48, 100, 2));
        assert!(working_bytes(2, 100, 2) < working_bytes(48, 100, 2));
        assert!(
            working_bytes(48, 1000, 2) < 96 << 20,
            "{}",
            working_bytes(48, 1000, 2)
        );
    }
}
