//! The cw synthesis as the decoder runs it: a row pipeline over plain f32 buffers.
//!
//! [`CwModel::synthesis`](super::cw::CwModel::synthesis) (candle) serves training; decoding
//! uses this instead, because a whole-image tensor per stage and the copies between candle
//! ops made the decoder's time half page faults and memcpy and its memory grow with the
//! picture. Here each stage keeps only the input rows its 3×3 convolution still needs and
//! hands its output rows on as soon as they are complete, so the working set is a few rows
//! per stage whatever the picture's height, and the process allocates little.
//!
//! A stage computes a band of its input rows at a time, in column chunks of a fixed size,
//! each chunk an im2col copy and one matrix product (the `gemm` crate), with bias, inverse
//! GDN (or ReLU) and depth-to-space after. Chunks run in parallel on the current rayon
//! pool; their sizes do not depend on the number of threads, and each output value is
//! computed by exactly one chunk, so the pixels are the same for any thread count.

use lic_format::arch::cw::SYNTHESIS;
use lic_kernels::matmul_add;
use rayon::prelude::*;
use std::collections::VecDeque;

/// Bytes of im2col columns one chunk may build: keeps a chunk's working set near the size
/// of a core's L2 + L3 share, and its matrix product wide enough to run at full speed.
const CHUNK_BYTES: usize = 2 << 20;

/// Column chunks per band: enough for the cores of a desktop to share a band.
const BAND_CHUNKS: usize = 8;

/// A worker's temporaries, kept between chunks so that the decoder allocates little once
/// running: the im2col columns and the inverse GDN's squares and norms.
#[derive(Default)]
struct Scratch {
    cols: Vec<f32>,
    sq: Vec<f32>,
    norm: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// What follows a stage's convolution and depth-to-space.
#[derive(Clone, Debug)]
enum Activation {
    /// Inverse GDN: `y = x · sqrt(β + Γ x²)`, with `beta` = β (stored squared, plus 1e-6)
    /// and `gamma` = Γ `(cout, cout)` (stored squared).
    Igdn { beta: Vec<f32>, gamma: Vec<f32> },
    /// max(x, 0) (the first shipped weights).
    Relu,
    /// The last stage: `x·½ + ½` in [0, 1] becomes 8-bit RGB.
    Pixels,
}

/// One synthesis stage: a 3×3 'same' convolution from `cin` to `4·cout` channels, bias, the
/// depth-to-space ×2 (output channel `co·4 + 2·ry + rx` goes to channel `co` of the output
/// pixel `(2y + ry, 2x + rx)`), then the activation.
#[derive(Clone, Debug)]
pub struct Stage {
    cin: usize,
    cout: usize,
    /// `(4·cout, 9·cin)` row-major; column `c·9 + 3·dy + dx`.
    weight: Vec<f32>,
    bias: Vec<f32>,
    act: Activation,
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
            (Some((beta, gamma)), false) => {
                if beta.len() != cout || gamma.len() != cout * cout {
                    return Err(format!("inverse GDN of {cout} channels: wrong shapes"));
                }
                Activation::Igdn {
                    // As the training graph computes them (`layers::Gdn`), in f32.
                    beta: beta.iter().map(|b| b * b + 1e-6).collect(),
                    gamma: gamma.iter().map(|g| g * g).collect(),
                }
            }
            (None, false) => Activation::Relu,
        };
        Ok(Self {
            cin,
            cout,
            weight,
            bias,
            act,
        })
    }

    /// Multiply-accumulates per input position (convolution and normalization).
    fn macs(&self) -> usize {
        let norm = match self.act {
            Activation::Igdn { .. } => 4 * self.cout * self.cout,
            _ => 0,
        };
        4 * self.cout * 9 * self.cin + norm
    }

    /// The convolution, bias and activation of input positions `p0..p1` of the band whose
    /// first row is `feed.rows[r0 - feed.first]`, as `(4·cout, p1 − p0)` row-major (rows in
    /// the convolution's channel order).
    fn chunk(&self, feed: &Feed, r0: usize, p0: usize, p1: usize) -> Vec<f32> {
        SCRATCH.with_borrow_mut(|scratch| self.chunk_in(scratch, feed, r0, p0, p1))
    }

    fn chunk_in(
        &self,
        scratch: &mut Scratch,
        feed: &Feed,
        r0: usize,
        p0: usize,
        p1: usize,
    ) -> Vec<f32> {
        let (cin, w, n) = (self.cin, feed.w, p1 - p0);
        // im2col: row c·9 + 3·dy + dx holds input (c, y + dy − 1, x + dx − 1), zero outside.
        let cols = &mut scratch.cols;
        cols.clear();
        cols.resize(9 * cin * n, 0.0);
        let mut p = p0;
        while p < p1 {
            let (y, x0) = (r0 + p / w, p % w);
            let x1 = w.min(x0 + p1 - p);
            let at = p - p0;
            for dy in 0..3 {
                let Some(src) = (y + dy).checked_sub(1).and_then(|sy| feed.row(sy)) else {
                    continue;
                };
                for dx in 0..3 {
                    // Output x reads input x + dx − 1: the run x0..x1 clipped to the picture.
                    let lo = x0.max(1 - dx.min(1));
                    let hi = x1.min(w + 1 - dx);
                    if lo >= hi {
                        continue;
                    }
                    for c in 0..cin {
                        let dst = &mut cols[(c * 9 + dy * 3 + dx) * n + at..];
                        let s = &src[c * w + lo + dx - 1..c * w + hi + dx - 1];
                        dst[lo - x0..hi - x0].copy_from_slice(s);
                    }
                }
            }
            p += x1 - x0;
        }
        let m = 4 * self.cout;
        let mut out = Vec::with_capacity(m * n);
        for &b in &self.bias {
            out.extend(std::iter::repeat_n(b, n));
        }
        matmul_add(&mut out, &self.weight, cols, m, 9 * cin, n);
        match &self.act {
            Activation::Igdn { beta, gamma } => {
                // Rows co·4 + s: as a (cout, 4n) matrix, channel co's values at all four
                // sub-positions form one row, so one product gives every Γx².
                let (sq, norm) = (&mut scratch.sq, &mut scratch.norm);
                sq.clear();
                sq.extend(out.iter().map(|v| v * v));
                norm.clear();
                for &b in beta {
                    norm.extend(std::iter::repeat_n(b, 4 * n));
                }
                matmul_add(norm, gamma, sq, self.cout, self.cout, 4 * n);
                for (v, s) in out.iter_mut().zip(norm.iter()) {
                    *v *= s.sqrt();
                }
            }
            Activation::Relu => out.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Pixels => {}
        }
        out
    }
}

/// Rows per band and columns (input positions) per chunk of a stage with `cin` input
/// channels on a `w`-wide input.
fn band(cin: usize, w: usize) -> (usize, usize) {
    let chunk = (CHUNK_BYTES / (9 * cin * 4)).max(16) / 16 * 16;
    ((BAND_CHUNKS * chunk).div_ceil(w.max(1)).max(1), chunk)
}

/// Bytes the synthesis of the shipped architecture ([`SYNTHESIS`]) holds at most while it
/// runs on a `w`-latent-wide grid, besides its input latents and output pixels: the rows
/// each stage keeps and each stage's band of chunk outputs (all four can be alive at once, as
/// a band's rows are handed on before the band is done), and the temporaries of `threads`
/// workers, which each keep theirs at the size of the largest stage's.
pub fn working_bytes(w: usize, threads: usize) -> u64 {
    let (mut rows_and_bands, mut temps) = (0u64, 0u64);
    let mut width = w;
    for &(cin, cout) in SYNTHESIS.iter() {
        let (rows, chunk) = band(cin, width);
        let n = (rows * width) as u64;
        // The rows a feed holds: the band, its halo, and rows received before the band ran.
        let feed = (rows + 3) as u64 * (cin * width) as u64;
        // The band's chunk outputs and the output row being filled.
        let outputs = 4 * cout as u64 * n + (2 * cout * width) as u64;
        rows_and_bands += feed + outputs;
        // A worker's im2col columns, squares and norms.
        temps = temps.max((9 * cin + 8 * cout) as u64 * chunk as u64);
        width *= 2;
    }
    4 * (rows_and_bands + threads.max(1) as u64 * temps)
}

/// The input rows of one stage that it still needs: rows `first..first + rows.len()` of an
/// `h`-row picture, each `(c, w)` row-major.
struct Feed {
    w: usize,
    h: usize,
    rows: VecDeque<Vec<f32>>,
    first: usize,
    /// First input row whose output has not been produced.
    next: usize,
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
}

impl Synthesizer {
    /// The synthesis of these stages, in order; the last one makes the pixels.
    pub fn new(stages: Vec<Stage>) -> Self {
        Self { stages }
    }

    /// Multiply-accumulates per output pixel (convolutions and normalizations): the decoder's
    /// cost in the unit learned codecs are compared in.
    pub fn macs_per_pixel(&self) -> f64 {
        let n = self.stages.len() as i32;
        // Stage i runs at 1/2^(n − i) of the output resolution in each direction.
        self.stages
            .iter()
            .enumerate()
            .map(|(i, s)| s.macs() as f64 / 4f64.powi(n - i as i32))
            .sum()
    }

    /// Rows per band and columns per chunk of stage `s` on a `w`-wide input.
    fn band(&self, s: &Stage, w: usize) -> (usize, usize) {
        band(s.cin, w)
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
        feeds[s].rows.push_back(row);
        let stage = &self.stages[s];
        let (band_rows, chunk) = self.band(stage, feeds[s].w);
        while let Some((r0, r1)) = feeds[s].ready(band_rows) {
            let feed = &feeds[s];
            let w = feed.w;
            let n = (r1 - r0) * w;
            let bounds: Vec<(usize, usize)> = (0..n.div_ceil(chunk))
                .map(|k| (k * chunk, n.min((k + 1) * chunk)))
                .collect();
            let outs: Vec<Vec<f32>> = bounds
                .par_iter()
                .map(|&(p0, p1)| stage.chunk(feed, r0, p0, p1))
                .collect();
            feeds[s].advance(r1);
            // Depth-to-space: position p = (y − r0)·w + x, channel co·4 + 2·ry + rx → output
            // row 2y + ry, channel co, column 2x + rx.
            let (cout, w2) = (stage.cout, 2 * w);
            let last = matches!(stage.act, Activation::Pixels);
            for yy in 0..2 * (r1 - r0) {
                let ry = yy % 2;
                let mut out = vec![0f32; cout * w2];
                for (&(p0, p1), buf) in bounds.iter().zip(&outs) {
                    let n = p1 - p0;
                    let (a, b) = ((yy / 2) * w, (yy / 2 + 1) * w);
                    let (lo, hi) = (a.max(p0), b.min(p1));
                    for co in 0..cout {
                        for rx in 0..2 {
                            let src = &buf[(co * 4 + ry * 2 + rx) * n..][..n];
                            let dst = &mut out[co * w2..][..w2];
                            for p in lo..hi {
                                dst[2 * (p - a) + rx] = src[p - p0];
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
        // Wide enough for several chunks per band in the first stages.
        let (h, w) = (3, 37);
        let lat = latents(h, w);
        let ours = run(&weights.synthesizer, &lat, h, w);
        // The same weights taken from the loaded model give the same pixels.
        assert_eq!(ours, run(&model.synthesizer().unwrap(), &lat, h, w));
        let y = Tensor::from_vec(lat, (1, M, h, w), &Device::Cpu).unwrap();
        let x = model.synthesis(&y).unwrap();
        let x: Vec<f32> = x
            .permute((0, 2, 3, 1))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
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
            pool.install(|| run(&weights.synthesizer, &lat, h, w))
        };
        assert_eq!(with(1), with(3));
    }

    #[test]
    fn counts_its_work() {
        let weights = CwWeights::embedded().unwrap();
        let macs = weights.synthesizer.macs_per_pixel();
        assert!((20e3..40e3).contains(&macs), "{macs} MAC/px");
        assert!(working_bytes(1000, 2) > working_bytes(100, 2));
        assert!(working_bytes(1000, 2) < 64 << 20);
    }
}
