//! The integer path that decides every probability: the scale index of each latent symbol
//! and the context of each importance level. Only integer arithmetic happens here (i32/i64
//! with floor shifts), so encoder and decoder agree on every platform and thread count.
//! `format-spec/README.md` §6 defines the same computation.

use crate::model::cw::{CTX_CLIP, CTX_HIDDEN, CTX_IN, LEVELS, M, RATE_POINTS, SCALE_COUNT};

/// Fraction bits of a scale index in fixed point.
pub const INDEX_FRAC_BITS: u32 = 8;
/// Fraction bits of the context network's hidden activations.
pub const HIDDEN_FRAC_BITS: u32 = 6;
/// Largest hidden activation (keeps every product far inside i64).
pub const HIDDEN_MAX: i64 = 1 << 24;
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

    /// The context offsets (·2^8) of channel c at every position, from the decoded anchor
    /// values `anchors` (`(M, h, w)`, row-major; non-anchor entries are ignored). Entries at
    /// anchor positions are 0. Threads never change the result: each position is computed
    /// on its own with the same integer operations.
    pub fn context_offsets(&self, anchors: &[i32], h: usize, w: usize) -> Vec<i32> {
        use rayon::prelude::*;
        // The first layer, transposed to (CTX_IN, CTX_HIDDEN): each position's inputs are
        // mostly zero (clipped anchor values), so the hidden sums run over the non-zero inputs
        // only, reading one contiguous weight column per input. Integer sums do not depend on
        // their order, so this is exactly the layer of §6.4.
        let mut w1t = vec![0i32; CTX_IN * CTX_HIDDEN];
        for k in 0..CTX_HIDDEN {
            for n in 0..CTX_IN {
                w1t[n * CTX_HIDDEN + k] = self.ctx1_w[k * CTX_IN + n];
            }
        }
        let at = |c: usize, i: isize, j: isize| -> i64 {
            if i < 0 || j < 0 || i >= h as isize || j >= w as isize {
                0
            } else {
                let (i, j) = (i as usize, j as usize);
                if (i + j) % 2 != 0 {
                    0
                } else {
                    anchors[c * h * w + i * w + j].clamp(-CTX_CLIP, CTX_CLIP) as i64
                }
            }
        };
        let out_shift = self.shift2 + HIDDEN_FRAC_BITS - INDEX_FRAC_BITS;
        // One row of positions per task: `(M, w)` offsets of row i.
        let rows: Vec<Vec<i32>> = (0..h)
            .into_par_iter()
            .map(|i| {
                let mut row_out = vec![0i32; M * w];
                let mut nz: Vec<(usize, i64)> = Vec::with_capacity(CTX_IN);
                let mut acc = vec![0i64; CTX_HIDDEN];
                let mut hid = vec![0i64; CTX_HIDDEN];
                for j in 0..w {
                    if (i + j) % 2 == 0 {
                        continue;
                    }
                    let (ii, jj) = (i as isize, j as isize);
                    // Feature order: for (up, down, left, right): M values, then M magnitudes.
                    nz.clear();
                    for (n, (di, dj)) in [(-1isize, 0isize), (1, 0), (0, -1), (0, 1)]
                        .into_iter()
                        .enumerate()
                    {
                        for c in 0..M {
                            let v = at(c, ii + di, jj + dj);
                            if v != 0 {
                                nz.push((n * 2 * M + c, v));
                                nz.push((n * 2 * M + M + c, v.abs()));
                            }
                        }
                    }
                    for (a, &b) in acc.iter_mut().zip(&self.ctx1_b) {
                        *a = b as i64;
                    }
                    for &(n, v) in &nz {
                        let col = &w1t[n * CTX_HIDDEN..(n + 1) * CTX_HIDDEN];
                        for (a, &wv) in acc.iter_mut().zip(col) {
                            *a += wv as i64 * v;
                        }
                    }
                    for (hk, &a) in hid.iter_mut().zip(&acc) {
                        *hk = (a.max(0) >> (self.shift1 - HIDDEN_FRAC_BITS)).min(HIDDEN_MAX);
                    }
                    for c in 0..M {
                        let row = &self.ctx2_w[c * CTX_HIDDEN..(c + 1) * CTX_HIDDEN];
                        let mut acc = self.ctx2_b[c] as i64;
                        for (wv, hv) in row.iter().zip(&hid) {
                            acc += *wv as i64 * hv;
                        }
                        let v = acc >> out_shift;
                        row_out[c * w + j] = v.clamp(-(1 << 20), 1 << 20) as i32;
                    }
                }
                row_out
            })
            .collect();
        let mut out = vec![0i32; M * h * w];
        for (i, row) in rows.iter().enumerate() {
            for c in 0..M {
                out[c * h * w + i * w..c * h * w + (i + 1) * w]
                    .copy_from_slice(&row[c * w..(c + 1) * w]);
            }
        }
        out
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

/// Rate coordinate of the best quality, in halves of a rate-point step: `-q 1` sits half a
/// step beyond the last trained rate point. The gains and the importance bias extrapolate
/// linearly there; without it the top of the range fell to 1.31 bpp on Kodak, short of the
/// 1.5 bpp that `-q` must reach (measured 1.76 bpp at 4.5, 2.20 bpp at 5.0 with diminishing
/// PSNR, so half a step is where it stops).
pub const TOP_HALF_STEPS: u32 = 2 * (RATE_POINTS as u32 - 1) + 1;

/// The rate point below `q16` and the weight (0..=98302, above 65535 past the last rate
/// point) of the one above: t = floor(q16·TOP_HALF_STEPS / 2),
/// index = min(t / 65535, RATE_POINTS − 2), frac = t − index·65535.
pub fn rate_position(q16: u16) -> (usize, u32) {
    let t = q16 as u32 * TOP_HALF_STEPS / 2;
    let index = (t / 65535).min(RATE_POINTS as u32 - 2);
    (index as usize, t - index * 65535)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_position_spans_half_a_step_past_the_last_rate_point() {
        assert_eq!(rate_position(0), (0, 0));
        // q16 = 14564: t = 65538, just past the first rate point.
        assert_eq!(rate_position(14564), (1, 3));
        // The top: t = floor(65535·4.5) = 294907, frac = 1.5·65535 rounded down.
        assert_eq!(rate_position(65535), (RATE_POINTS - 2, 98302));
        // Monotone in q16.
        let t = |q: u16| {
            let (i, f) = rate_position(q);
            i as u64 * 65535 + f as u64
        };
        assert!((1..=65535u16).all(|q| t(q) >= t(q - 1)));
    }
}
