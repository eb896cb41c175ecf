//! The cw pipeline: pixels → latents → symbols → rANS stream, and back.
//!
//! Symbol order in the CWLT stream (format-spec/README.md §6; [`in_stream_order`] walks it for
//! both directions):
//! 1. the importance level of every latent position, raster order, with the causal
//!    context of [`IntParams::map_context`];
//! 2. anchors ((i + j) even): for each channel c, each anchor position in raster order whose
//!    level keeps c, with the scale index from the base table, the gain and (when the
//!    weights have one) the anchor context of c's slice, computed from the slices before;
//! 3. non-anchors: likewise, the scale index adding the integer context network's offset
//!    computed from all decoded anchors.

use candle_core::{Device, Tensor};

use crate::entropy::params::{half_index, IntParams};
use crate::entropy::{SymbolReader, SymbolWriter};
use crate::model::cw::{slice_start, RatePos, CH_PER_LEVEL, LEVELS, M, SLICES, STRIDE, T_TOP};
use crate::model::postfilter::PostRows;
use crate::model::weights::{CwWeights, WeightsError};
use crate::Error;

/// Latent symbols of one image.
#[derive(Clone)]
pub struct Latents {
    /// Latent height and width.
    pub h: usize,
    /// See `h`.
    pub w: usize,
    /// Importance level per position, raster order.
    pub levels: Vec<u8>,
    /// Quantized values `(M, h, w)`; entries a level drops are 0.
    pub values: Values,
    /// The scale table each value was decoded with `(M, h, w)`, [`NO_TABLE`] where none is
    /// known (not coded); empty where the reconstruction needs no table (the weights have
    /// no shrink, spec §5 step 3) or none was decoded (the encoder's latents). A byte per
    /// value is a fifth of the latents' memory, so it is kept only when it is read.
    pub tables: Vec<u8>,
    /// The encoder's unrounded values (latent · gain) `(M, h, w)`, from which
    /// [`write_symbols`] picks each symbol's rounding; empty for decoded latents.
    pub scaled: Vec<f32>,
}

/// [`Latents::tables`] entry of a value that was not decoded with a table.
pub const NO_TABLE: u8 = u8::MAX;

impl Latents {
    /// An all-zero grid (level 0 everywhere).
    pub fn zeros(h: usize, w: usize) -> Self {
        Self {
            h,
            w,
            levels: vec![0; h * w],
            values: Values::zeros(M * h * w),
            tables: Vec::new(),
            scaled: Vec::new(),
        }
    }

    /// The latents inside `r`.
    pub fn crop(&self, r: &Rect) -> Latents {
        let mut out = Latents::zeros(r.h(), r.w());
        let (o, s) = (Rect::grid(r.h(), r.w()), (self.w, r));
        copy_planes(&self.levels, s, &mut out.levels, (r.w(), &o), 1);
        copy_values(&self.values, s, &mut out.values, (r.w(), &o));
        if !self.tables.is_empty() {
            out.tables = vec![NO_TABLE; M * r.h() * r.w()];
            copy_planes(&self.tables, s, &mut out.tables, (r.w(), &o), M);
        }
        if !self.scaled.is_empty() {
            out.scaled = vec![0.0; M * r.h() * r.w()];
            copy_planes(&self.scaled, s, &mut out.scaled, (r.w(), &o), M);
        }
        out
    }

    /// Writes `src` into this grid with its top-left corner at row `i0`, column `j0`.
    pub fn paste(&mut self, i0: usize, j0: usize, src: &Latents) {
        let (s, d) = (Rect::grid(src.h, src.w), self.w);
        let r = Rect::at(i0, j0, src.h, src.w);
        copy_planes(&src.levels, (src.w, &s), &mut self.levels, (d, &r), 1);
        copy_values(&src.values, (src.w, &s), &mut self.values, (d, &r));
        if !src.tables.is_empty() {
            if self.tables.is_empty() {
                self.tables = vec![NO_TABLE; M * self.h * self.w];
            }
            copy_planes(&src.tables, (src.w, &s), &mut self.tables, (d, &r), M);
        }
        if !src.scaled.is_empty() {
            if self.scaled.is_empty() {
                self.scaled = vec![0.0; M * self.h * self.w];
            }
            copy_planes(&src.scaled, (src.w, &s), &mut self.scaled, (d, &r), M);
        }
    }
}

/// Copies rectangle `from.1` of the `planes` planes of `src` (rows `from.0` wide) onto the
/// equally sized rectangle `to.1` of `dst` (rows `to.0` wide).
fn copy_planes<T: Copy>(
    src: &[T],
    from: (usize, &Rect),
    dst: &mut [T],
    to: (usize, &Rect),
    planes: usize,
) {
    let (sn, dn) = (src.len() / planes, dst.len() / planes);
    let (fw, f) = from;
    let (tw, t) = to;
    for c in 0..planes {
        for i in 0..f.h() {
            let s = c * sn + (f.i0 + i) * fw + f.j0;
            let d = c * dn + (t.i0 + i) * tw + t.j0;
            dst[d..d + f.w()].copy_from_slice(&src[s..s + f.w()]);
        }
    }
}

/// [`copy_planes`] of the `M` planes of latent values, the values stored wide included.
fn copy_values(src: &Values, from: (usize, &Rect), dst: &mut Values, to: (usize, &Rect)) {
    copy_planes(&src.narrow, from, &mut dst.narrow, to, M);
    let (sn, dn) = (src.len() / M, dst.len() / M);
    let ((fw, f), (tw, t)) = (from, to);
    for (&k, &v) in &src.wide {
        let (c, i, j) = (k / sn, k % sn / fw, k % sn % fw);
        if (f.i0..f.i1).contains(&i) && (f.j0..f.j1).contains(&j) {
            dst.set(c * dn + (t.i0 + i - f.i0) * tw + t.j0 + j - f.j0, v);
        }
    }
}

/// Largest magnitude [`Values`] stores in two bytes alone.
const NARROW_MAX: i32 = i16::MAX as i32;

/// Quantized latent values, two bytes each. The format allows values up to ±2^20 (spec
/// §6.5), but photographs stay within a few hundred, and a large tile's values are most of
/// the decoder's memory: each value is stored saturated to ±[`NARROW_MAX`], and one that
/// reaches that bound is kept exactly beside. The saturated values are what the context
/// networks read (they clip their inputs far inside i16).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Values {
    narrow: Vec<i16>,
    wide: std::collections::BTreeMap<usize, i32>,
}

impl Values {
    /// `len` zeros.
    pub fn zeros(len: usize) -> Self {
        Self {
            narrow: vec![0; len],
            wide: Default::default(),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.narrow.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.narrow.is_empty()
    }

    /// Value `k`.
    #[inline]
    pub fn get(&self, k: usize) -> i32 {
        let v = self.narrow[k] as i32;
        if v.abs() == NARROW_MAX {
            self.wide.get(&k).copied().unwrap_or(v)
        } else {
            v
        }
    }

    /// Sets value `k` to `v`.
    #[inline]
    pub fn set(&mut self, k: usize, v: i32) {
        let s = v.clamp(-NARROW_MAX, NARROW_MAX);
        self.narrow[k] = s as i16;
        if s.abs() == NARROW_MAX {
            self.wide.insert(k, v);
        }
    }

    /// The values saturated to i16, as the context networks read them.
    pub fn saturated(&self) -> &[i16] {
        &self.narrow
    }
}

/// Rate coordinate of a quality (see [`RatePos::from_q16`]).
pub fn rate_pos(q16: u16) -> RatePos {
    RatePos::from_q16(q16)
}

/// Latent rows and columns of context on each side of a tile that the analysis and the
/// synthesis see. It covers both receptive fields (analysis: 30 pixels beyond a latent's own
/// 16; synthesis: 1.875 latents), so tiled latents and pixels equal untiled ones up to float
/// rounding: tiles leave no seams.
pub const HALO: usize = 2;

/// A rectangle of the latent grid: rows `i0..i1`, columns `j0..j1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// First row.
    pub i0: usize,
    /// One past the last row.
    pub i1: usize,
    /// First column.
    pub j0: usize,
    /// One past the last column.
    pub j1: usize,
}

impl Rect {
    /// The `h`×`w` rectangle whose top-left corner is row `i0`, column `j0`.
    pub fn at(i0: usize, j0: usize, h: usize, w: usize) -> Rect {
        Rect {
            i0,
            i1: i0 + h,
            j0,
            j1: j0 + w,
        }
    }

    /// The whole `h`×`w` grid.
    pub fn grid(h: usize, w: usize) -> Rect {
        Rect {
            i0: 0,
            i1: h,
            j0: 0,
            j1: w,
        }
    }
    /// The smallest rectangle holding both.
    pub fn union(&self, other: &Rect) -> Rect {
        Rect {
            i0: self.i0.min(other.i0),
            i1: self.i1.max(other.i1),
            j0: self.j0.min(other.j0),
            j1: self.j1.max(other.j1),
        }
    }
    /// Rows.
    pub fn h(&self) -> usize {
        self.i1 - self.i0
    }
    /// Columns.
    pub fn w(&self) -> usize {
        self.j1 - self.j0
    }
    /// Grown by `by` on every side, clipped to an `h`×`w` grid.
    pub fn grow(&self, by: usize, h: usize, w: usize) -> Rect {
        Rect {
            i0: self.i0.saturating_sub(by),
            i1: (self.i1 + by).min(h),
            j0: self.j0.saturating_sub(by),
            j1: (self.j1 + by).min(w),
        }
    }
    /// Whether the two rectangles share a position.
    pub fn meets(&self, other: &Rect) -> bool {
        self.i0 < other.i1 && other.i0 < self.i1 && self.j0 < other.j1 && other.j0 < self.j1
    }
    /// This rectangle in the coordinates of `outer` (which contains it).
    pub fn within(&self, outer: &Rect) -> Rect {
        Rect {
            i0: self.i0 - outer.i0,
            i1: self.i1 - outer.i0,
            j0: self.j0 - outer.j0,
            j1: self.j1 - outer.j0,
        }
    }
}

/// The tiles of an `h`×`w` latent grid, `side` latents square (0: one tile), in raster order
/// (spec §5).
pub fn tiles(h: usize, w: usize, side: usize) -> Vec<Rect> {
    let (th, tw) = if side == 0 { (h, w) } else { (side, side) };
    let mut out = Vec::new();
    for i0 in (0..h).step_by(th.max(1)) {
        for j0 in (0..w).step_by(tw.max(1)) {
            out.push(Rect {
                i0,
                i1: (i0 + th).min(h),
                j0,
                j1: (j0 + tw).min(w),
            });
        }
    }
    out
}

/// Planar RGB in [0, 1] of the pixels under latent rectangle `r`: `(1, 3, 16·r.h, 16·r.w)`.
/// The image is extended to whole latents by edge replication.
pub fn to_tensor(
    rgb: &[u8],
    width: usize,
    height: usize,
    r: &Rect,
    dev: &Device,
) -> Result<Tensor, Error> {
    let (hp, wp) = (r.h() * STRIDE, r.w() * STRIDE);
    let (y0, x0) = (r.i0 * STRIDE, r.j0 * STRIDE);
    let mut v = vec![0f32; 3 * hp * wp];
    for c in 0..3 {
        for y in 0..hp {
            let sy = (y0 + y).min(height - 1);
            for x in 0..wp {
                let sx = (x0 + x).min(width - 1);
                v[c * hp * wp + y * wp + x] = rgb[(sy * width + sx) * 3 + c] as f32 / 255.0;
            }
        }
    }
    Ok(Tensor::from_vec(v, (1, 3, hp, wp), dev)?)
}

/// The analysis transform's output for an image, before any rate is chosen: the latents
/// and the importance logits. Every rate's symbols follow from it ([`Analysis::quantize`]),
/// so an encoder that searches for a rate runs the transform once.
pub struct Analysis {
    /// Latent height and width.
    pub h: usize,
    /// See `h`.
    pub w: usize,
    /// Latents before the gain `(M, h, w)`.
    pub y: Vec<f32>,
    /// Importance logit per position, raster order.
    pub logits: Vec<f32>,
}

impl Analysis {
    /// An all-zero grid.
    pub fn zeros(h: usize, w: usize) -> Self {
        Self {
            h,
            w,
            y: vec![0.0; M * h * w],
            logits: vec![0.0; h * w],
        }
    }

    /// The part inside `r`.
    pub fn crop(&self, r: &Rect) -> Analysis {
        let mut out = Analysis::zeros(r.h(), r.w());
        let (o, s) = (Rect::grid(r.h(), r.w()), (self.w, r));
        copy_planes(&self.logits, s, &mut out.logits, (r.w(), &o), 1);
        copy_planes(&self.y, s, &mut out.y, (r.w(), &o), M);
        out
    }

    /// Writes `src` into this grid with its top-left corner at row `i0`, column `j0`.
    pub fn paste(&mut self, i0: usize, j0: usize, src: &Analysis) {
        let (s, d) = (Rect::grid(src.h, src.w), self.w);
        let r = Rect::at(i0, j0, src.h, src.w);
        copy_planes(&src.logits, (src.w, &s), &mut self.logits, (d, &r), 1);
        copy_planes(&src.y, (src.w, &s), &mut self.y, (d, &r), M);
    }

    /// The latents at rate code `q16`: gains, importance levels and the encoder's rounding
    /// start point.
    pub fn quantize(&self, weights: &CwWeights, q16: u16) -> Result<Latents, Error> {
        let (gains, mb) = (weights.gains(q16), weights.map_bias(q16));
        let levels = levels_from_logits(&self.logits, mb);
        let n = self.h * self.w;
        let mut values = Values::zeros(M * n);
        let mut scaled = vec![0f32; M * n];
        for c in 0..M {
            for p in 0..n {
                if c < kept(levels[p]) {
                    let v = self.y[c * n + p] * gains[c];
                    scaled[c * n + p] = v;
                    values.set(c * n + p, v.round().clamp(-1e6, 1e6) as i32);
                }
            }
        }
        Ok(Latents {
            h: self.h,
            w: self.w,
            levels,
            values,
            tables: Vec::new(),
            scaled,
        })
    }
}

/// Runs the analysis transform on the window `r` (in latents) of an RGB8 image, the
/// picture's last row and column repeated past its edges: the encoder-only half,
/// independent of the rate.
pub fn analyze(
    weights: &CwWeights,
    rgb: &[u8],
    width: usize,
    height: usize,
    r: &Rect,
) -> Result<Analysis, Error> {
    let (hp, wp) = (r.h() * STRIDE, r.w() * STRIDE);
    let (y0, x0) = (r.i0 * STRIDE, r.j0 * STRIDE);
    let grid = weights.analyzer()?.run(hp, wp, |y, row| {
        let sy = (y0 + y).min(height - 1);
        let src = &rgb[sy * width * 3..(sy + 1) * width * 3];
        for x in 0..wp {
            let sx = (x0 + x).min(width - 1);
            for c in 0..3 {
                row[c * wp + x] = src[sx * 3 + c] as f32 / 255.0;
            }
        }
    });
    Ok(Analysis {
        h: r.h(),
        w: r.w(),
        y: grid.y,
        logits: grid.logits,
    })
}

/// Importance levels from the map logits and the rate's bias:
/// `min(floor(sigmoid(z + bias) · LEVELS), LEVELS − 1)`. Encoder-side only.
pub fn levels_from_logits(logits: &[f32], bias: f32) -> Vec<u8> {
    logits
        .iter()
        .map(|&z| {
            let p = 1.0 / (1.0 + (-(z + bias)).exp());
            ((p * LEVELS as f32).floor() as i64).clamp(0, LEVELS as i64 - 1) as u8
        })
        .collect()
}

/// Channels kept at an importance level.
pub fn kept(level: u8) -> usize {
    (level as usize + 1) * CH_PER_LEVEL
}

/// Writes the symbols of `lat` in stream order. Returns the writer (for the rate estimate).
pub fn write_symbols(weights: &CwWeights, lat: &Latents, q16: u16) -> SymbolWriter {
    let (h, w) = (lat.h, lat.w);
    let mut wr = SymbolWriter::new();
    for i in 0..h {
        for j in 0..w {
            wr.side(
                IntParams::map_context(&lat.levels, w, i, j),
                lat.levels[i * w + j] as u16,
            );
        }
    }
    let mut values = lat.values.clone();
    // Each symbol's rounding is decided just before it is written, once its table is known;
    // later contexts then see the decided value, as the decoder will.
    let rd = RdRounding::new(weights, &lat.scaled, q16);
    let Ok(()) = in_stream_order(
        weights,
        &lat.levels,
        (h, w),
        q16,
        &mut values,
        |k, idx, values| -> Result<i32, std::convert::Infallible> {
            let v = rd.round(idx, values, k);
            wr.latent(idx, v);
            Ok(v)
        },
    );
    wr
}

/// Walks the latent symbols of an `h`×`w` grid in stream order (spec §6.5), for the encoder
/// and the decoder alike: for each anchor slice, the anchor-context offsets from the values so
/// far, then each channel of the slice, each anchor ((i + j) even) in raster order whose level
/// keeps the channel; then the context offsets from all anchors, and each channel's
/// non-anchors likewise. `code(k, table, values)` codes the value at flat index
/// `k = c·h·w + p` with scale table `table` (the encoder writes it, the decoder reads it) and
/// returns it; it is stored in `values` before any later context reads it.
fn in_stream_order<E>(
    weights: &CwWeights,
    levels: &[u8],
    (h, w): (usize, usize),
    q16: u16,
    values: &mut Values,
    mut code: impl FnMut(usize, u8, &Values) -> Result<i32, E>,
) -> Result<(), E> {
    let int = &weights.int;
    let n = h * w;
    let gain = int.gain_at(q16);
    for k in 0..SLICES {
        let off = int.anchor_offsets(values.saturated(), h, w, k);
        let width = slice_start(k + 1) - slice_start(k);
        for c in slice_start(k)..slice_start(k + 1) {
            for p in (0..n).filter(|p| (p / w + p % w) % 2 == 0) {
                if c < kept(levels[p]) {
                    let o = off
                        .as_ref()
                        .map_or(0, |o| o[half_index(p) * width + c - slice_start(k)]);
                    let idx = int.scale_index(levels[p] as usize, c, gain[c], o);
                    let v = code(c * n + p, idx, values)?;
                    values.set(c * n + p, v);
                }
            }
        }
    }
    let ctx = int.context_offsets(values.saturated(), h, w);
    for c in 0..M {
        for p in (0..n).filter(|p| (p / w + p % w) % 2 == 1) {
            if c < kept(levels[p]) {
                let idx =
                    int.scale_index(levels[p] as usize, c, gain[c], ctx[half_index(p) * M + c]);
                let v = code(c * n + p, idx, values)?;
                values.set(c * n + p, v);
            }
        }
    }
    Ok(())
}

/// Rate-distortion rounding, encoder side: a value whose nearest integer is not 0 is coded
/// one step toward zero instead when that lowers `(x − x̂)² + µ·bits`, with x the unrounded
/// value, x̂ the decoder's reconstruction of the candidate (shrink included) and bits its
/// cost under the symbol's table. The stream format is untouched; a decoder cannot tell.
struct RdRounding<'a> {
    scaled: &'a [f32],
    tables: &'a crate::entropy::tables::ScaleTables,
    shrink: &'a [i32],
    mu: f64,
}

/// µ of [`RdRounding`] at rate coordinates 0, 2 and [`T_TOP`], linear in between. Tuned on
/// the ten held-out training images (`Dataset`'s validation split copied to a folder, then
/// `kodak-bench FOLDER --no-webp --lic-points 9`; the runs are in CHANGELOG.md, 2026-11-29): a constant
/// 0.05 / 0.1 / 0.15 / 0.2 moved the BD-rate against JPEG from −27.3 % to −28.6 / −29.1 /
/// −28.1 / −26.4 %, gaining below ~1 bpp and losing above; these knots measured −29.3 %
/// (−30.0 % once the weights dropped the shrink, where 0.8× and 1.3× of them measured −30.0
/// and −29.8 %). Theory (µ = 3/(λ·S), S a channel's pixel error per step) says ~0.1–0.2 at
/// every rate, but moving many values toward zero errs coherently; a per-channel µ from
/// measured S gained nothing in PSNR over these knots (−28.8…−29.4 %).
const RD_MU: [f64; 3] = [0.1, 0.12, 0.02];

impl<'a> RdRounding<'a> {
    fn new(weights: &'a CwWeights, scaled: &'a [f32], q16: u16) -> Self {
        let t = rate_pos(q16).t();
        let mu = if t <= 2.0 {
            RD_MU[0] + (RD_MU[1] - RD_MU[0]) * t / 2.0
        } else {
            RD_MU[1] + (RD_MU[2] - RD_MU[1]) * (t - 2.0) / (T_TOP - 2.0)
        };
        Self {
            scaled,
            tables: &weights.scales,
            shrink: &weights.int.recon_shrink,
            mu,
        }
    }

    /// The value to code for `values[k]` (nearest-integer rounding, coded with table `idx`).
    fn round(&self, idx: u8, values: &Values, k: usize) -> i32 {
        let v = values.get(k);
        if v == 0 || self.scaled.is_empty() {
            return v;
        }
        let x = self.scaled[k] as f64;
        let toward = v - v.signum();
        if self.cost(idx, x, toward) < self.cost(idx, x, v) {
            toward
        } else {
            v
        }
    }

    /// `(x − x̂)² + µ·bits` of coding `x` as `q` with table `idx`.
    fn cost(&self, idx: u8, x: f64, q: i32) -> f64 {
        let rec = reconstruction(self.shrink, idx, q);
        (x - rec).powi(2) + self.mu * self.tables.table_bits(idx as usize, q)
    }
}

/// What the decoder makes of `v`, decoded with table `table` (spec §5 step 3): a non-zero
/// value moves toward zero by the table's shrink when the weights have one. Exact in f64
/// (|v| ≤ 2^20, the shrink in 1/2^16), so one rounding to f32 gives the f32 difference.
fn reconstruction(shrink: &[i32], table: u8, v: i32) -> f64 {
    match shrink.get(table as usize) {
        Some(&s) if v != 0 => v as f64 - v.signum() as f64 * s as f64 / 65536.0,
        _ => v as f64,
    }
}

/// Reads the symbols of an `h`×`w` latent grid from a CWLT stream; the latents keep their
/// tables when the weights' reconstruction reads them.
pub fn read_symbols(
    weights: &CwWeights,
    stream: &[u8],
    h: usize,
    w: usize,
    q16: u16,
) -> Result<Latents, Error> {
    let keep = !weights.int.recon_shrink.is_empty();
    read_symbols_keeping(weights, stream, (h, w), q16, keep)
}

/// [`read_symbols`], the latents keeping every value's table when `with_tables` (for
/// measurements of the coded bits) or only when the weights' reconstruction reads them.
pub fn read_symbols_keeping(
    weights: &CwWeights,
    stream: &[u8],
    (h, w): (usize, usize),
    q16: u16,
    with_tables: bool,
) -> Result<Latents, Error> {
    let n = h * w;
    let mut rd = SymbolReader::new(stream, &weights.scales, &weights.map_models)?;
    // Every position codes at least the channels of level 0.
    rd.expect_latents(n * CH_PER_LEVEL)?;
    let mut levels = vec![0u8; n];
    for i in 0..h {
        for j in 0..w {
            levels[i * w + j] = rd.side(IntParams::map_context(&levels, w, i, j))? as u8;
        }
    }
    let mut values = Values::zeros(M * n);
    let mut tables = if with_tables {
        vec![NO_TABLE; M * n]
    } else {
        Vec::new()
    };
    in_stream_order(
        weights,
        &levels,
        (h, w),
        q16,
        &mut values,
        |k, idx, _| -> Result<i32, Error> {
            if with_tables {
                tables[k] = idx;
            }
            Ok(rd.latent(idx)?)
        },
    )?;
    rd.finish()?;
    Ok(Latents {
        h,
        w,
        levels,
        values,
        tables,
        scaled: Vec::new(),
    })
}

/// Synthesis: latents → interleaved RGB8 of the whole `16·h`×`16·w` grid (spec §5 steps 3–4,
/// before cropping), handed to `sink` row by row with the row's index.
pub fn synthesize(
    weights: &CwWeights,
    lat: &Latents,
    q16: u16,
    mut sink: impl FnMut(usize, &[u8]),
) -> Result<(), WeightsError> {
    let synthesizer = weights.synthesizer()?;
    let gains = weights.gains(q16);
    let (n, w) = (lat.h * lat.w, lat.w);
    let shrink = &weights.int.recon_shrink;
    let latent_row = |i: usize, row: &mut [f32]| {
        for (c, (dst, gain)) in row.chunks_exact_mut(w).zip(&gains).enumerate() {
            let at = c * n + i * w;
            if lat.tables.is_empty() {
                for (x, d) in dst.iter_mut().enumerate() {
                    *d = lat.values.get(at + x) as f32 / gain;
                }
            } else {
                let tables = &lat.tables[at..at + w];
                for ((x, d), &t) in dst.iter_mut().enumerate().zip(tables) {
                    *d = reconstruction(shrink, t, lat.values.get(at + x)) as f32 / gain;
                }
            }
        }
    };
    match synthesizer.post_filter() {
        None => synthesizer.run(lat.h, lat.w, latent_row, sink),
        Some(post) => {
            let mut rows = PostRows::new(post, lat.h * STRIDE, lat.w * STRIDE, q16);
            synthesizer.run(lat.h, lat.w, latent_row, |_, rgb| rows.push(rgb, &mut sink));
            rows.finish(&mut sink);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rounding(weights: &CwWeights, scaled: &[f32], q: f32) -> Vec<(u8, f32, i32)> {
        let q16 = (q * 65535.0).round() as u16;
        let rd = RdRounding::new(weights, scaled, q16);
        let mut out = Vec::new();
        for idx in [0u8, 20, 40, 63] {
            let mut values = Values::zeros(scaled.len());
            for (k, x) in scaled.iter().enumerate() {
                values.set(k, x.round() as i32);
            }
            let chosen = (0..values.len()).map(|k| rd.round(idx, &values, k));
            out.extend(scaled.iter().zip(chosen).map(|(&x, v)| (idx, x, v)));
        }
        out
    }

    #[test]
    fn rd_rounding_moves_one_step_toward_zero_only_when_it_pays() {
        let weights = CwWeights::embedded().unwrap();
        let scaled: Vec<f32> = (-60..=60).map(|k| k as f32 * 0.07).collect();
        for q in [0.0, 0.4, 1.0] {
            let rd = RdRounding::new(&weights, &scaled, (q * 65535.0) as u16);
            for (idx, x, v) in rounding(&weights, &scaled, q) {
                let r = x.round() as i32;
                assert!(v == r || v == r - r.signum(), "{x} → {v} (table {idx})");
                // Never past zero, and only when the cost falls.
                assert!(v.signum() * r.signum() >= 0);
                let (cv, cr) = (rd.cost(idx, x as f64, v), rd.cost(idx, x as f64, r));
                if v != r {
                    assert!(cv < cr, "{x}: {v} costs more than {r}");
                } else if r != 0 {
                    assert!(
                        cr <= rd.cost(idx, x as f64, r - r.signum()),
                        "{x}: kept {r}"
                    );
                }
            }
        }
        // A narrow table (index 0) makes a ±1 expensive: 0.6 goes to 0 there; a wide one
        // (index 63) codes 1 almost as cheaply as 0, so 0.6 stays 1.
        let at = |idx: u8, x: f32| {
            rounding(&weights, &[x], 0.5)
                .into_iter()
                .find(|e| e.0 == idx)
                .unwrap()
                .2
        };
        assert_eq!((at(0, 0.6), at(0, -0.6)), (0, 0));
        assert_eq!((at(63, 0.6), at(63, -0.6)), (1, -1));
        assert_eq!(at(63, 0.97), 1);
    }

    #[test]
    fn values_beyond_i16_survive_set_crop_and_paste() {
        let (h, w) = (3, 5);
        let mut lat = Latents::zeros(h, w);
        let n = h * w;
        let wide = [
            (1, 1, 1, 1 << 20),
            (M - 1, 2, 4, -(1 << 20)),
            (7, 0, 0, 32767),
            (9, 1, 3, -32767),
        ];
        for &(c, i, j, v) in &wide {
            lat.values.set(c * n + i * w + j, v);
        }
        lat.values.set(5 * n + 2, -300);
        // Saturated for the contexts, exact for the synthesis.
        assert_eq!(lat.values.saturated()[n + w + 1], i16::MAX);
        assert_eq!(lat.values.get(n + w + 1), 1 << 20);
        // Overwriting a wide value with a narrow one.
        lat.values.set((M - 1) * n + 2 * w + 4, 12);
        assert_eq!(lat.values.get((M - 1) * n + 2 * w + 4), 12);
        lat.values.set((M - 1) * n + 2 * w + 4, -(1 << 20));
        let r = Rect::at(1, 1, 2, 4);
        let part = lat.crop(&r);
        for c in 0..M {
            for i in 0..2 {
                for j in 0..4 {
                    assert_eq!(
                        part.values.get(c * 8 + i * 4 + j),
                        lat.values.get(c * n + (i + 1) * w + j + 1)
                    );
                }
            }
        }
        let mut back = Latents::zeros(h, w);
        back.paste(1, 1, &part);
        assert_eq!(back.values.get(n + w + 1), 1 << 20);
        assert_eq!(back.values.get((M - 1) * n + 2 * w + 4), -(1 << 20));
        assert_eq!(back.values.get(9 * n + w + 3), -32767);
        // Outside the crop.
        assert_eq!(back.values.get(7 * n), 0);
    }
}
