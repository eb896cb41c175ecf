//! The integer path that decides every probability: the scale index of each latent symbol
//! and the context of each importance level. Only integer arithmetic happens here (i32/i64
//! with floor shifts), so encoder and decoder agree on every platform and thread count.
//! `format-spec/README.md` §6 defines the same computation.

use lic_format::arch::cw::{
    actx_inputs, slice_start, ACTX_HIDDEN, ACTX_TAPS, CTX_CLIP, CTX_HIDDEN, CTX_IN, LEVELS, M,
    RATE_POINTS, SCALE_COUNT, SLICES,
};
use lic_format::rate::rate_position;

/// Fraction bits of a scale index in fixed point.
pub const INDEX_FRAC_BITS: u32 = 8;
/// Fraction bits of the context network's hidden activations.
pub const HIDDEN_FRAC_BITS: u32 = 6;
/// Largest hidden activation (keeps every product far inside i64).
pub const HIDDEN_MAX: i64 = 1 << 24;
/// Largest reconstruction shrink: half a latent step (·2^16).
pub const RECON_SHRINK_MAX: i32 = 1 << 15;
/// Number of importance-map contexts: a level average of the causal neighbours, or "none".
pub const MAP_CONTEXTS: usize = LEVELS + 1;

/// The integer entropy parameters of a cw weights file.
#[derive(Clone, Debug, PartialEq)]
pub struct IntParams {
    /// `(LEVELS, M)` base scale index of channel c at level l, ·2^8.
    pub base: Vec<i32>,
    /// `(RATE_POINTS, M)` ln-gain in scale-index units, ·2^8.
    pub log_gain: Vec<i32>,
    /// `(CTX_HIDDEN, CTX_IN)` first context layer weights, ·2^shift1.
    pub ctx1_w: Vec<i32>,
    /// `(CTX_HIDDEN,)` first layer bias, ·2^shift1.
    pub ctx1_b: Vec<i32>,
    /// `(M, CTX_HIDDEN)` second layer weights, ·2^shift2.
    pub ctx2_w: Vec<i32>,
    /// `(M,)` second layer bias, ·2^(shift2 + HIDDEN_FRAC_BITS).
    pub ctx2_b: Vec<i32>,
    /// Fraction bits of the first layer (≥ HIDDEN_FRAC_BITS).
    pub shift1: u32,
    /// Fraction bits of the second layer (shift2 + HIDDEN_FRAC_BITS ≥ INDEX_FRAC_BITS).
    pub shift2: u32,
    /// `(MAP_CONTEXTS, LEVELS)` importance-map frequencies (each row sums to 2^16).
    pub map_freq: Vec<u32>,
    /// Anchor-context networks of slices 1..SLICES (spec §6.4b), or none: weights from
    /// before the anchor context code every anchor with offset 0.
    pub actx: Vec<IntMlp>,
    /// Fraction bits of the anchor-context networks' first and second layers (as `shift1`
    /// and `shift2`).
    pub actx_shifts: [u32; 2],
    /// Reconstruction shrink of each scale table, in 1/2^16 of a latent step (spec §5
    /// step 3), or none (every coded value reconstructs at its integer).
    pub recon_shrink: Vec<i32>,
}

/// A two-layer integer network: `out = (W2·min(max(W1·x + b1, 0) >> (s1 − 6), 2^24) + b2)
/// >> (s2 + 6 − 8)`, the form of every context network (spec §6.4).
#[derive(Clone, Debug, PartialEq)]
pub struct IntMlp {
    /// `(hidden, inputs)` first-layer weights, ·2^shift1.
    pub w1: Vec<i32>,
    /// `(hidden,)` first-layer bias, ·2^shift1.
    pub b1: Vec<i32>,
    /// `(outputs, hidden)` second-layer weights, ·2^shift2.
    pub w2: Vec<i32>,
    /// `(outputs,)` second-layer bias, ·2^(shift2 + HIDDEN_FRAC_BITS).
    pub b2: Vec<i32>,
}

/// A network ready to evaluate on sparse inputs: the first layer transposed to
/// `(inputs, hidden)`, so each non-zero input adds one contiguous weight column. Integer
/// sums do not depend on their order, so this computes exactly the network of §6.4.
struct SparseMlp<'a> {
    w1t: Vec<i32>,
    b1: &'a [i32],
    w2: &'a [i32],
    b2: &'a [i32],
    hidden: usize,
    hidden_shift: u32,
    out_shift: u32,
}

/// Where position `p` (row-major) of one checkerboard parity is stored in the arrays that
/// hold only that parity's positions ([`IntParams::context_offsets`],
/// [`IntParams::anchor_offsets`]): `p / 2`. Within a parity, p / 2 is distinct for every
/// position and runs through `0..count` in raster order, for odd and even widths alike.
pub fn half_index(p: usize) -> usize {
    p / 2
}

impl<'a> SparseMlp<'a> {
    fn new(w1: &[i32], b1: &'a [i32], w2: &'a [i32], b2: &'a [i32], shifts: [u32; 2]) -> Self {
        let hidden = b1.len();
        let inputs = w1.len() / hidden.max(1);
        let mut w1t = vec![0i32; w1.len()];
        for k in 0..hidden {
            for n in 0..inputs {
                w1t[n * hidden + k] = w1[k * inputs + n];
            }
        }
        Self {
            w1t,
            b1,
            w2,
            b2,
            hidden,
            hidden_shift: shifts[0] - HIDDEN_FRAC_BITS,
            out_shift: shifts[1] + HIDDEN_FRAC_BITS - INDEX_FRAC_BITS,
        }
    }

    /// The network at every position p = i·w + j with (i + j) % 2 == `parity`, position-major:
    /// entry `(p / 2) · outputs + o` (see [`half_index`]; the other parity's positions are
    /// not stored). Its inputs, per tap (row, column offset) in order: the clipped anchor
    /// values of channels `0..channels` of `values` (`(M, h, w)`), then their magnitudes.
    /// Values may be stored saturated to i16: the clip to ±`CTX_CLIP` makes them equal.
    /// Each position is computed on its own, one row of positions per thread task, so
    /// threads never change the result.
    fn at_positions(
        &self,
        values: &[i16],
        h: usize,
        w: usize,
        parity: usize,
        taps: &[(isize, isize)],
        channels: usize,
    ) -> Vec<i32> {
        use rayon::prelude::*;
        let n_out = self.b2.len();
        let in_row = |i: usize| (0..w).filter(move |j| (i + j) % 2 == parity);
        // Each row's positions take consecutive entries, rows in order.
        let mut out = vec![0i32; (0..h).map(|i| in_row(i).count()).sum::<usize>() * n_out];
        let mut rows = Vec::with_capacity(h);
        let mut rest = out.as_mut_slice();
        for i in 0..h {
            let (row, tail) = rest.split_at_mut(in_row(i).count() * n_out);
            rows.push((i, row));
            rest = tail;
        }
        rows.into_par_iter().for_each(|(i, row)| {
            let mut nz: Vec<(usize, i32)> = Vec::with_capacity(taps.len() * 2 * channels);
            let (mut hid, mut act) = (Vec::with_capacity(self.hidden), Vec::new());
            for (j, dst) in in_row(i).zip(row.chunks_exact_mut(n_out)) {
                nz.clear();
                for (t, &(di, dj)) in taps.iter().enumerate() {
                    for c in 0..channels {
                        let v = anchor_at(values, h, w, c, i as isize + di, j as isize + dj);
                        if v != 0 {
                            nz.push((t * 2 * channels + c, v));
                            nz.push((t * 2 * channels + channels + c, v.abs()));
                        }
                    }
                }
                self.eval(&nz, &mut hid, &mut act, dst);
            }
        });
        out
    }

    /// Evaluates on the non-zero inputs `nz` (index, value; |value| ≤ `CTX_CLIP`) into `out`
    /// (one per output). `hid` and `act` are scratch space for the hidden layer's sums and
    /// activations (at most `HIDDEN_MAX`, so i32).
    fn eval(&self, nz: &[(usize, i32)], hid: &mut Vec<i64>, act: &mut Vec<i32>, out: &mut [i32]) {
        hid.clear();
        hid.extend(self.b1.iter().map(|&b| b as i64));
        for &(n, v) in nz {
            let col = &self.w1t[n * self.hidden..(n + 1) * self.hidden];
            lic_kernels::axpy_i32(hid, col, v);
        }
        act.clear();
        act.extend(
            hid.iter()
                .map(|&a| (a.max(0) >> self.hidden_shift).min(HIDDEN_MAX) as i32),
        );
        for (o, (row, &b)) in out
            .iter_mut()
            .zip(self.w2.chunks_exact(self.hidden).zip(self.b2))
        {
            let acc = b as i64 + lic_kernels::dot_i32(row, act);
            *o = (acc >> self.out_shift).clamp(-(1 << 20), 1 << 20) as i32;
        }
    }
}

/// The clipped value of channel `c` at anchor (i, j) of an `(M, h, w)` grid; 0 outside the
/// grid and at non-anchors (which the decoder does not have yet).
fn anchor_at(values: &[i16], h: usize, w: usize, c: usize, i: isize, j: isize) -> i32 {
    if i < 0 || j < 0 || i >= h as isize || j >= w as isize || (i + j) % 2 != 0 {
        return 0;
    }
    (values[c * h * w + i as usize * w + j as usize] as i32).clamp(-CTX_CLIP, CTX_CLIP)
}

impl IntParams {
    /// Checks the sizes and ranges that decoding relies on.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.base.len() != LEVELS * M
            || self.log_gain.len() != RATE_POINTS * M
            || self.ctx1_w.len() != CTX_HIDDEN * CTX_IN
            || self.ctx1_b.len() != CTX_HIDDEN
            || self.ctx2_w.len() != M * CTX_HIDDEN
            || self.ctx2_b.len() != M
            || self.map_freq.len() != MAP_CONTEXTS * LEVELS
        {
            return Err("integer entropy tensors have the wrong size");
        }
        if self.shift1 < HIDDEN_FRAC_BITS || self.shift1 > 30 || self.shift2 > 30 {
            return Err("context-network shifts out of range");
        }
        if self.shift2 + HIDDEN_FRAC_BITS < INDEX_FRAC_BITS {
            return Err("context-network output shift is negative");
        }
        if !self.actx.is_empty() {
            if self.actx.len() != SLICES - 1 {
                return Err("anchor context needs one network per slice after the first");
            }
            for (i, net) in self.actx.iter().enumerate() {
                let k = i + 1;
                if net.w1.len() != ACTX_HIDDEN * actx_inputs(k)
                    || net.b1.len() != ACTX_HIDDEN
                    || net.w2.len() != (slice_start(k + 1) - slice_start(k)) * ACTX_HIDDEN
                    || net.b2.len() != slice_start(k + 1) - slice_start(k)
                {
                    return Err("anchor-context tensors have the wrong size");
                }
            }
            let [s1, s2] = self.actx_shifts;
            if !(HIDDEN_FRAC_BITS..=30).contains(&s1)
                || s2 > 30
                || s2 + HIDDEN_FRAC_BITS < INDEX_FRAC_BITS
            {
                return Err("anchor-context shifts out of range");
            }
        }
        if !self.recon_shrink.is_empty()
            && (self.recon_shrink.len() != SCALE_COUNT
                || self
                    .recon_shrink
                    .iter()
                    .any(|&s| !(0..=RECON_SHRINK_MAX).contains(&s)))
        {
            return Err("reconstruction shrink needs one value in 0..=32768 per scale table");
        }
        for row in self.map_freq.chunks(LEVELS) {
            if row.iter().any(|&f| f == 0) || row.iter().map(|&f| f as u64).sum::<u64>() != 1 << 16
            {
                return Err("importance-map table does not sum to 2^16");
            }
        }
        Ok(())
    }

    /// ln-gain of every channel at quality `q16` (0..=65535), in index units ·2^8:
    /// integer linear interpolation between the two surrounding rate points (extrapolation
    /// past the last one, see [`rate_position`]).
    pub fn gain_at(&self, q16: u16) -> Vec<i32> {
        let (index, frac) = rate_position(q16);
        let lo = &self.log_gain[index * M..(index + 1) * M];
        let hi = &self.log_gain[(index + 1) * M..(index + 2) * M];
        lo.iter()
            .zip(hi)
            .map(|(&a, &b)| a + ((b as i64 - a as i64) * frac as i64).div_euclid(65535) as i32)
            .collect()
    }

    /// Scale index of channel `c` at a position of importance level `level`, given the
    /// interpolated gain and the context offset (0 for anchors), all ·2^8.
    pub fn scale_index(&self, level: usize, c: usize, gain: i32, ctx: i32) -> u8 {
        let v = self.base[level * M + c] as i64 + gain as i64 + ctx as i64;
        let idx = (v + (1 << (INDEX_FRAC_BITS - 1))) >> INDEX_FRAC_BITS;
        idx.clamp(0, SCALE_COUNT as i64 - 1) as u8
    }

    /// The context offsets (·2^8) at every non-anchor position p, entry
    /// `half_index(p) · M + c` for channel c, from the decoded anchor values `anchors`
    /// (`(M, h, w)`, row-major, saturated to i16 or not; non-anchor entries are ignored).
    /// Threads never change the result: each position is computed on its own with the same
    /// integer operations.
    pub fn context_offsets(&self, anchors: &[i16], h: usize, w: usize) -> Vec<i32> {
        let net = SparseMlp::new(
            &self.ctx1_w,
            &self.ctx1_b,
            &self.ctx2_w,
            &self.ctx2_b,
            [self.shift1, self.shift2],
        );
        let taps = [(-1, 0), (1, 0), (0, -1), (0, 1)];
        net.at_positions(anchors, h, w, 1, &taps, M)
    }

    /// The anchor-context offsets (·2^8) of slice `k` (1..SLICES) at every anchor position p,
    /// entry `half_index(p) · width + c` for the slice's channel c (width =
    /// `slice_start(k + 1) − slice_start(k)`), from the channels before the slice at the
    /// anchor and its diagonal anchor neighbours in `values` (`(M, h, w)`; only those entries
    /// are read; saturated to i16 or not). `None` when the weights have no anchor context.
    pub fn anchor_offsets(&self, values: &[i16], h: usize, w: usize, k: usize) -> Option<Vec<i32>> {
        let mlp = self.actx.get(k.checked_sub(1)?)?;
        let net = SparseMlp::new(&mlp.w1, &mlp.b1, &mlp.w2, &mlp.b2, self.actx_shifts);
        Some(net.at_positions(values, h, w, 0, &ACTX_TAPS, slice_start(k)))
    }

    /// The importance-map context of position (i, j) from the levels decoded so far
    /// (raster order): the floor average of the levels above and to the left, either one if
    /// only one exists, `LEVELS` if neither.
    pub fn map_context(levels: &[u8], w: usize, i: usize, j: usize) -> u16 {
        let up = (i > 0).then(|| levels[(i - 1) * w + j] as u16);
        let left = (j > 0).then(|| levels[i * w + j - 1] as u16);
        match (up, left) {
            (Some(a), Some(b)) => (a + b) / 2,
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => LEVELS as u16,
        }
    }
}
