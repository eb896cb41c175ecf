//! The cw post-filter (format-spec §5 step 4): a small residual network at full resolution
//! that the synthesized pixels pass through when the weights carry one (`post.*`).
//!
//! The synthesis ends at half resolution (its last convolution makes 2×2 pixels per
//! position), so nothing in it sees neighbouring output pixels together; three small layers
//! there recover part of what rounding the latents lost. They read the synthesized RGB8 grid
//! and the file's quality:
//!
//! ```text
//!  x = rgb / 255,  u = [x − ½, q]             (4 channels; q = q16 / 65535 everywhere)
//!  h₁ = relu(W₀ ∗₃ₓ₃ u + b₀)                  (width channels)
//!  h₂ = relu(W₁ · h₁ + b₁)                    (1×1)
//!  out = round(255 · clamp(x + W₂ ∗₃ₓ₃ h₂ + b₂, 0, 1))
//! ```
//!
//! with zero padding at the grid's edges. An output pixel reads the input pixels within 2 of
//! it, which the tile halo covers exactly (a tile's grown synthesis is exact up to 2 pixels
//! beyond the tile). The rows stream through [`PostRows`], which holds a band of input rows
//! and of hidden rows (as the last convolution's 27 products per pixel) and computes each
//! band's rows in parallel.

use lic_kernels::matmul_add;
use rayon::prelude::*;
use std::collections::VecDeque;

/// Input channels: RGB and the quality plane.
const IN: usize = 4;

/// Rows per band computed in parallel.
const BAND: usize = 16;

/// Most hidden channels a post-filter may have (format-spec §5 step 4): bounds the memory
/// a decoder plans for ([`working_bytes`]).
pub const MAX_WIDTH: usize = 32;

/// Bytes a [`PostRows`] stream over a `w`-pixel-wide grid holds at most, with a filter of
/// [`MAX_WIDTH`] channels and `threads` workers: the input rows and hidden rows' tap products
/// it keeps, each worker's im2col columns and hidden rows, and a band of output rows.
pub fn working_bytes(w: usize, threads: usize) -> u64 {
    let (w, n, rows) = (w as u64, MAX_WIDTH as u64, (BAND + 3) as u64);
    let held = rows * (IN as u64 + 27);
    let worker = 9 * IN as u64 + 2 * n + 1;
    4 * w * (held + threads.max(1) as u64 * worker) + rows * 3 * w
}

/// The post-filter's weights, as loaded.
#[derive(Clone, Debug)]
pub struct PostFilter {
    width: usize,
    /// `(width, IN·9)`, bias `(width)`.
    w0: Vec<f32>,
    b0: Vec<f32>,
    /// `(width, width)`, bias `(width)`.
    w1: Vec<f32>,
    b1: Vec<f32>,
    /// The last convolution by tap: `(3·9, width)`, row `co·9 + 3·dy + dx`.
    w2: Vec<f32>,
    b2: Vec<f32>,
}

impl PostFilter {
    /// The filter from its tensors (weights `(cout, cin, k, k)` flattened, biases), checked
    /// against `width` hidden channels.
    pub fn new(
        width: usize,
        (w0, b0): (Vec<f32>, Vec<f32>),
        (w1, b1): (Vec<f32>, Vec<f32>),
        (w2, b2): (Vec<f32>, Vec<f32>),
    ) -> Result<Self, String> {
        let ok = (1..=MAX_WIDTH).contains(&width)
            && w0.len() == width * IN * 9
            && b0.len() == width
            && w1.len() == width * width
            && b1.len() == width
            && w2.len() == 3 * width * 9
            && b2.len() == 3;
        if !ok {
            return Err(format!(
                "post-filter of width {width}: wrong tensor shapes or more than {MAX_WIDTH} channels"
            ));
        }
        // (3, width, 3, 3) → (3, 3·3, width): each hidden row is multiplied by every tap once
        // (`tap_products`), and an output row sums shifted rows of three such products.
        let mut by_tap = vec![0f32; w2.len()];
        for co in 0..3 {
            for ci in 0..width {
                for t in 0..9 {
                    by_tap[(co * 9 + t) * width + ci] = w2[(co * width + ci) * 9 + t];
                }
            }
        }
        Ok(Self {
            width,
            w0,
            b0,
            w1,
            b1,
            w2: by_tap,
            b2,
        })
    }

    /// Multiply-accumulates per pixel.
    pub fn macs_per_pixel(&self) -> f64 {
        (self.width * (IN * 9 + self.width + 3 * 9)) as f64
    }

    /// `(K·9, w)` im2col columns of 3×3 windows over three rows of `k` channels each
    /// (`None`: a zero row outside the grid).
    fn columns(rows: [Option<&[f32]>; 3], k: usize, w: usize, out: &mut Vec<f32>) {
        out.clear();
        out.resize(k * 9 * w, 0.0);
        for c in 0..k {
            for (dy, row) in rows.iter().enumerate() {
                let Some(row) = row else { continue };
                let src = &row[c * w..(c + 1) * w];
                for dx in 0..3 {
                    let dst = &mut out[((c * 3 + dy) * 3 + dx) * w..][..w];
                    // dst[x] = src[x + dx − 1]
                    match dx {
                        0 => dst[1..].copy_from_slice(&src[..w - 1]),
                        1 => dst.copy_from_slice(src),
                        _ => dst[..w - 1].copy_from_slice(&src[1..]),
                    }
                }
            }
        }
    }

    /// The last convolution's 27 tap products `(3·9, w)` of one hidden row h₂, made from
    /// input rows (above, this, below).
    fn tap_products(&self, rows: [Option<&[f32]>; 3], w: usize) -> Vec<f32> {
        let n = self.width;
        let mut cols = Vec::new();
        Self::columns(rows, IN, w, &mut cols);
        let mut h1: Vec<f32> = rows_of(&self.b0, w);
        matmul_add(&mut h1, &self.w0, &cols, n, IN * 9, w);
        h1.iter_mut().for_each(|v| *v = v.max(0.0));
        let mut h2: Vec<f32> = rows_of(&self.b1, w);
        matmul_add(&mut h2, &self.w1, &h1, n, n, w);
        h2.iter_mut().for_each(|v| *v = v.max(0.0));
        let mut taps = vec![0f32; 27 * w];
        matmul_add(&mut taps, &self.w2, &h2, 27, n, w);
        taps
    }

    /// The filtered RGB8 row from its input row and the tap products of the hidden rows
    /// (above, this, below).
    fn output(&self, input: &[f32], taps: [Option<&[f32]>; 3], w: usize) -> Vec<u8> {
        let mut rgb = vec![0u8; 3 * w];
        let mut d = vec![0f32; w];
        for co in 0..3 {
            d.fill(self.b2[co]);
            for (dy, p) in taps.iter().enumerate() {
                let Some(p) = p else { continue };
                for dx in 0..3 {
                    let src = &p[(co * 9 + 3 * dy + dx) * w..][..w];
                    // d[x] += src[x + dx − 1]
                    match dx {
                        0 => d[1..].iter_mut().zip(src).for_each(|(a, b)| *a += b),
                        1 => d.iter_mut().zip(src).for_each(|(a, b)| *a += b),
                        _ => d.iter_mut().zip(&src[1..]).for_each(|(a, b)| *a += b),
                    }
                }
            }
            let x0 = &input[co * w..(co + 1) * w];
            for (x, (&v, &dv)) in x0.iter().zip(&d).enumerate() {
                rgb[3 * x + co] = ((v + 0.5 + dv).clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
        rgb
    }
}

/// `(bias.len(), w)`: each row filled with its bias.
fn rows_of(bias: &[f32], w: usize) -> Vec<f32> {
    let mut v = vec![0f32; bias.len() * w];
    for (row, &b) in v.chunks_exact_mut(w).zip(bias) {
        row.fill(b);
    }
    v
}

/// Row `y` of an `h`-row grid from the rows `first..` held in `rows`; `None` outside the grid
/// (the zero padding).
fn row_at(rows: &VecDeque<Vec<f32>>, first: usize, y: isize, h: usize) -> Option<&[f32]> {
    if y < 0 || y as usize >= h {
        return None;
    }
    rows.get(y as usize - first).map(Vec::as_slice)
}

/// Streams the RGB8 rows of an `h`-row, `w`-wide grid through a [`PostFilter`]: rows go in
/// with [`push`](Self::push) in order, filtered rows come out in order (two rows behind,
/// the rest at [`finish`](Self::finish)).
pub struct PostRows<'a> {
    filter: &'a PostFilter,
    w: usize,
    h: usize,
    q: f32,
    /// Input rows `in_first..`, as `(IN, w)` floats.
    input: VecDeque<Vec<f32>>,
    in_first: usize,
    /// The tap products of hidden rows `hid_first..`, as `(27, w)`.
    hidden: VecDeque<Vec<f32>>,
    hid_first: usize,
    /// Next output row.
    next: usize,
}

impl<'a> PostRows<'a> {
    /// A stream for an `h`×`w` grid at quality `q16`.
    pub fn new(filter: &'a PostFilter, h: usize, w: usize, q16: u16) -> Self {
        Self {
            filter,
            w,
            h,
            q: q16 as f32 / 65535.0,
            input: VecDeque::new(),
            in_first: 0,
            hidden: VecDeque::new(),
            hid_first: 0,
            next: 0,
        }
    }

    /// Takes the next RGB8 row; hands every row that becomes ready to `sink` with its index.
    pub fn push(&mut self, rgb: &[u8], sink: &mut impl FnMut(usize, &[u8])) {
        let w = self.w;
        let mut row = vec![0f32; IN * w];
        for x in 0..w {
            for c in 0..3 {
                row[c * w + x] = rgb[3 * x + c] as f32 / 255.0 - 0.5;
            }
        }
        row[3 * w..].fill(self.q);
        self.input.push_back(row);
        let received = self.in_first + self.input.len();
        if received == self.h || received > self.hid_first + self.hidden.len() + BAND {
            self.run(sink);
        }
    }

    /// Hands the remaining rows to `sink` (all input rows must have been pushed).
    pub fn finish(&mut self, sink: &mut impl FnMut(usize, &[u8])) {
        self.run(sink);
    }

    fn run(&mut self, sink: &mut impl FnMut(usize, &[u8])) {
        let (w, h) = (self.w, self.h);
        let received = self.in_first + self.input.len();
        let all = received == h;
        // Hidden row j reads input rows j − 1 ..= j + 1.
        let hid_end = if all { h } else { received.saturating_sub(1) };
        let hid_start = self.hid_first + self.hidden.len();
        let input = |y: isize| row_at(&self.input, self.in_first, y, h);
        let new: Vec<Vec<f32>> = (hid_start..hid_end)
            .into_par_iter()
            .map(|j| {
                let j = j as isize;
                self.filter
                    .tap_products([input(j - 1), input(j), input(j + 1)], w)
            })
            .collect();
        self.hidden.extend(new);
        // Output row y reads hidden rows y − 1 ..= y + 1 and input row y.
        let out_end = if all { h } else { hid_end.saturating_sub(1) }.max(self.next);
        let hidden = |y: isize| row_at(&self.hidden, self.hid_first, y, h);
        let rows: Vec<Vec<u8>> = (self.next..out_end)
            .into_par_iter()
            .map(|y| {
                let yi = y as isize;
                let inp = &self.input[y - self.in_first];
                self.filter
                    .output(inp, [hidden(yi - 1), hidden(yi), hidden(yi + 1)], w)
            })
            .collect();
        for (i, row) in rows.iter().enumerate() {
            sink(self.next + i, row);
        }
        self.next = out_end;
        // Later hidden rows need input rows from hid_end − 1 on; later outputs need input
        // rows from `next` and hidden rows from `next − 1`.
        let keep_in = hid_end.saturating_sub(1).min(self.next);
        while self.in_first < keep_in && !self.input.is_empty() {
            self.input.pop_front();
            self.in_first += 1;
        }
        let keep_hid = self.next.saturating_sub(1);
        while self.hid_first < keep_hid && !self.hidden.is_empty() {
            self.hidden.pop_front();
            self.hid_first += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::Conv;
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};

    /// The filter by candle's ops (the training graph) on an `h`×`w` RGB8 grid.
    fn reference(convs: &[Conv], rgb: &[u8], h: usize, w: usize, q: f32) -> Vec<u8> {
        let dev = Device::Cpu;
        let mut planes = vec![0f32; 4 * h * w];
        for p in 0..h * w {
            for c in 0..3 {
                planes[c * h * w + p] = rgb[3 * p + c] as f32 / 255.0;
            }
            planes[3 * h * w + p] = q;
        }
        let t = Tensor::from_vec(planes, (1, 4, h, w), &dev).unwrap();
        let x = t.narrow(1, 0, 3).unwrap();
        let u = Tensor::cat(&[&(&x - 0.5).unwrap(), &t.narrow(1, 3, 1).unwrap()], 1).unwrap();
        let h1 = convs[0].forward(&u).unwrap().relu().unwrap();
        let h2 = convs[1].forward(&h1).unwrap().relu().unwrap();
        let y = (x + convs[2].forward(&h2).unwrap()).unwrap();
        let y = (y.clamp(0f32, 1f32).unwrap() * 255.0)
            .unwrap()
            .round()
            .unwrap();
        let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let mut out = vec![0u8; 3 * h * w];
        for p in 0..h * w {
            for c in 0..3 {
                out[3 * p + c] = v[c * h * w + p] as u8;
            }
        }
        out
    }

    #[test]
    fn streamed_rows_equal_the_training_graph() {
        let width = 8;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let convs = vec![
            Conv::new(vb.pp("post.0"), 4, width, 3).unwrap(),
            Conv::new(vb.pp("post.1"), width, width, 1).unwrap(),
            Conv::new(vb.pp("post.2"), width, 3, 3).unwrap(),
        ];
        let layer = |c: &Conv| {
            let (w, b) = c.to_vecs().unwrap();
            // Scaled up so that the filter moves most pixels.
            (w.iter().map(|v| v * 2.0).collect(), b)
        };
        let scaled: Vec<(Vec<f32>, Vec<f32>)> = convs.iter().map(layer).collect();
        let filter = PostFilter::new(
            width,
            scaled[0].clone(),
            scaled[1].clone(),
            scaled[2].clone(),
        )
        .unwrap();
        // The same scaled weights into the candle layers.
        for (name, var) in vm.data().lock().unwrap().iter() {
            if name.ends_with("weight") {
                var.set(&(var.as_tensor() * 2.0).unwrap()).unwrap();
            }
        }
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for (h, w, q16) in [
            (37, 23, 20000u16),
            (1, 5, 0),
            (2, 1, 65535),
            (40, 64, 40000),
        ] {
            let rgb: Vec<u8> = (0..3 * h * w)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 56) as u8
                })
                .collect();
            let want = reference(&convs, &rgb, h, w, q16 as f32 / 65535.0);
            let mut got = vec![0u8; 3 * h * w];
            let mut next = 0;
            let mut rows = PostRows::new(&filter, h, w, q16);
            let mut sink = |y: usize, row: &[u8]| {
                assert_eq!(y, next, "rows out of order");
                next += 1;
                got[3 * y * w..3 * (y + 1) * w].copy_from_slice(row);
            };
            for y in 0..h {
                rows.push(&rgb[3 * y * w..3 * (y + 1) * w], &mut sink);
            }
            rows.finish(&mut sink);
            assert_eq!(next, h);
            let off = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            let worst = got
                .iter()
                .zip(&want)
                .map(|(&a, &b)| (a as i32 - b as i32).abs())
                .max()
                .unwrap();
            let moved = got.iter().zip(&rgb).filter(|(a, b)| a != b).count();
            assert!(
                worst <= 1 && off * 100 <= got.len(),
                "{h}x{w}: {off} differ, worst {worst}"
            );
            assert!(
                moved * 2 > got.len(),
                "{h}x{w}: the filter barely moved the pixels"
            );
        }
    }
}
