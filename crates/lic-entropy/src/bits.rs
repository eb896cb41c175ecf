//! The conditional model of the rnn bits: every bit's probability comes from a table indexed
//! by what the decoder already has — the iteration, the channel, the same bit one iteration
//! earlier, the left and upper neighbours in the same channel, and the same position in the
//! previous channel (format-spec §6.6). The table is learned by counting bits of the trained
//! encoder on training images, stored as 16-bit fixed-point probabilities, and looked up with
//! integer arithmetic only, so encoder and decoder agree everywhere. No network runs per bit.
//!
//! Within an iteration the order is channel by channel, each in raster order, so all four
//! context bits are decoded before they are needed.
//!
//! Weights may add a **logistic bit model** (format-spec §6.6b): each bit's probability from a
//! weighted sum, per iteration and channel, of [`MIX_FEATURES`] features of what the decoder
//! has — neighbours in the same channel, every earlier channel at and around the position, the
//! previous iteration, and the table's own opinion — in integers, then one lookup. It codes
//! the same bits in ~5 % fewer bytes than the table alone (most in the first iterations).

use constriction::stream::stack::DefaultAnsCoder;
use constriction::stream::{Decode, Encode};

use crate::coder::{stream_bytes, stream_coder, symbol_info, InfoBudget};
use crate::tables::{categorical, Categorical, PRECISION};
use crate::EntropyError;
use lic_format::arch::rnn::{BITS, MAX_ITERS};

/// States of one context bit: 0 absent (outside the grid or the first iteration/channel),
/// 1 a coded 0, 2 a coded 1.
const STATES: usize = 3;
/// Contexts per (iteration, channel): previous iteration × left × up × previous channel.
const LOCAL: usize = STATES * STATES * STATES * STATES;
/// Number of contexts: `MAX_ITERS · BITS · 81`.
pub const BIT_CONTEXTS: usize = MAX_ITERS * BITS * LOCAL;

/// Features of the logistic bit model (spec §6.6b).
pub const MIX_FEATURES: usize = 204;
/// Weights of the logistic bit model: one row of [`MIX_FEATURES`] per iteration and channel.
pub const MIX_WEIGHTS: usize = MAX_ITERS * BITS * MIX_FEATURES;
/// Largest magnitude of a logistic weight (keeps every sum far inside 64 bits).
pub const MIX_MAX_WEIGHT: i32 = 1 << 20;
/// The logit (in units of 2^-8) is clamped to ±`MIX_RANGE` before its lookup.
const MIX_RANGE: i64 = 2048;
/// Probability models of the logistic bit model, one per clamped logit.
const MIX_MODELS: usize = 2 * MIX_RANGE as usize + 1;

/// The context index of bit (channel `c`, row `i`, column `j`) of iteration `t`, given the
/// bits of this iteration decoded so far (`cur`, `BITS·h·w`, channel-major) and those of the
/// previous iteration (`prev`).
pub fn context(
    t: usize,
    c: usize,
    i: usize,
    j: usize,
    h: usize,
    w: usize,
    cur: &[u8],
    prev: Option<&[u8]>,
) -> usize {
    let n = h * w;
    let at = |bits: &[u8], c: usize, i: usize, j: usize| 1 + bits[c * n + i * w + j] as usize;
    let p = prev.map_or(0, |b| at(b, c, i, j));
    let l = if j > 0 { at(cur, c, i, j - 1) } else { 0 };
    let u = if i > 0 { at(cur, c, i - 1, j) } else { 0 };
    let k = if c > 0 { at(cur, c - 1, i, j) } else { 0 };
    ((t * BITS + c) * LOCAL) + ((p * STATES + l) * STATES + u) * STATES + k
}

/// The table's opinion as a logistic-model feature: `round(16 · ln(p / (65536 − p)))` clamped
/// to ±127, for P(1) = p/65536 (spec §6.6b; `libm`, so every platform agrees).
pub fn stretch(p: u16) -> i8 {
    let p = p as f64;
    libm::round(16.0 * libm::log(p / (65536.0 - p))).clamp(-127.0, 127.0) as i8
}

/// P(1)·2^16 for a logit of `z`·2^-8 (|z| ≤ 2048): `round(65536 / (1 + e^(−z/256)))` clamped
/// to [16, 65520] (spec §6.6b).
fn mix_probability(z: i64) -> u16 {
    let p = 65536.0 / (1.0 + libm::exp(-(z as f64) / 256.0));
    libm::round(p).clamp(16.0, 65520.0) as u16
}

/// The [`MIX_FEATURES`] features of bit (channel `c`, row `i`, column `j`) of an iteration
/// (spec §6.6b; the iteration picks the weight row, not the features), each −1 (a coded 0),
/// +1 (a coded 1) or 0 (outside the grid, not decoded yet, or no previous iteration), except
/// the last, `stretch`:
///
/// - 0: the constant 1;
/// - 1–6: this iteration, channel c, at (i, j−1), (i−1, j), (i−1, j−1), (i−1, j+1), (i, j−2),
///   (i−2, j);
/// - 7 + c′ (c′ < 32): this iteration, channel c′ < c, at (i, j);
/// - 39 + c′: the previous iteration, channel c′, at (i, j);
/// - 71–74: the previous iteration, channel c, at (i+1, j), (i, j+1), (i−1, j), (i, j−1);
/// - 75 + 4c′ + d: this iteration, channel c′ < c, at (i+1, j), (i, j+1), (i−1, j), (i, j−1);
/// - 203: [`stretch`] of the table probability of the bit's context (§6.6).
#[allow(clippy::too_many_arguments)]
pub fn mix_features(
    c: usize,
    (i, j): (usize, usize),
    (h, w): (usize, usize),
    cur: &[u8],
    prev: Option<&[u8]>,
    stretch: i8,
    f: &mut [i8; MIX_FEATURES],
) {
    let n = h * w;
    let at = |b: &[u8], c: usize, di: isize, dj: isize| -> i8 {
        let (y, x) = (i as isize + di, j as isize + dj);
        if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
            0
        } else {
            2 * b[c * n + y as usize * w + x as usize] as i8 - 1
        }
    };
    f.fill(0);
    f[0] = 1;
    for (k, (di, dj)) in [(0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0)]
        .into_iter()
        .enumerate()
    {
        f[1 + k] = at(cur, c, di, dj);
    }
    const AROUND: [(isize, isize); 4] = [(1, 0), (0, 1), (-1, 0), (0, -1)];
    for cc in 0..c {
        f[7 + cc] = at(cur, cc, 0, 0);
        for (d, (di, dj)) in AROUND.into_iter().enumerate() {
            f[75 + 4 * cc + d] = at(cur, cc, di, dj);
        }
    }
    if let Some(p) = prev {
        for cc in 0..BITS {
            f[39 + cc] = at(p, cc, 0, 0);
        }
        for (d, (di, dj)) in AROUND.into_iter().enumerate() {
            f[71 + d] = at(p, c, di, dj);
        }
    }
    f[MIX_FEATURES - 1] = stretch;
}

/// Probability tables of the bits: P(bit = 1) for every context, in units of 2^-16, and the
/// optional logistic model over them.
pub struct BitModel {
    /// P(1)·2^16 per context, in [1, 2^16 − 1].
    pub p_one: Vec<u16>,
    /// The logistic model's weights (logit units 2^-8), [`MIX_WEIGHTS`] of them, row
    /// `t·BITS + c` for channel c of iteration t; `None`: the table alone codes the bits.
    pub mix: Option<Vec<i32>>,
    /// [`stretch`] of every context's table probability.
    stretched: Vec<i8>,
    /// The table models, then (with `mix`) one model per clamped logit.
    models: Vec<Categorical>,
    /// P(1)·2^16 of each of `models`.
    p_of_model: Vec<u16>,
}

impl BitModel {
    /// Builds the table model from its stored probabilities (checked: one per context, none 0).
    pub fn new(p_one: Vec<u16>) -> Result<Self, &'static str> {
        Self::with_mix(p_one, None)
    }

    /// Builds the model with the logistic weights `mix` (checked: [`MIX_WEIGHTS`] of them,
    /// each within ±[`MIX_MAX_WEIGHT`]) or without.
    pub fn with_mix(p_one: Vec<u16>, mix: Option<Vec<i32>>) -> Result<Self, &'static str> {
        if p_one.len() != BIT_CONTEXTS {
            return Err("the bit table has the wrong number of entries");
        }
        if p_one.contains(&0) {
            return Err("the bit table has a zero probability");
        }
        let mut p_of_model = Vec::with_capacity(BIT_CONTEXTS + MIX_MODELS);
        p_of_model.extend_from_slice(&p_one);
        if let Some(m) = &mix {
            if m.len() != MIX_WEIGHTS {
                return Err("the logistic bit model has the wrong number of weights");
            }
            if m.iter().any(|w| w.unsigned_abs() > MIX_MAX_WEIGHT as u32) {
                return Err("a logistic bit weight is out of range");
            }
            p_of_model.extend((-MIX_RANGE..=MIX_RANGE).map(mix_probability));
        }
        let models = p_of_model
            .iter()
            .map(|&p| categorical(&[(1u32 << PRECISION) - p as u32, p as u32]))
            .collect();
        let stretched = p_one.iter().map(|&p| stretch(p)).collect();
        Ok(Self {
            p_one,
            mix,
            stretched,
            models,
            p_of_model,
        })
    }

    /// Probabilities from counts of (zeros, ones) per context, with add-½ smoothing, clamped
    /// to [2^-12, 1 − 2^-12] so that no bit costs more than 12 bits.
    pub fn from_counts(counts: &[[u64; 2]]) -> Vec<u16> {
        counts
            .iter()
            .map(|&[z, o]| {
                let p = (o as f64 + 0.5) / (z as f64 + o as f64 + 1.0);
                (p * 65536.0).round().clamp(16.0, 65520.0) as u16
            })
            .collect()
    }

    /// Adds the bits of iteration `t` (`BITS·h·w`, channel-major, values 0/1) to `counts`.
    pub fn count(
        counts: &mut [[u64; 2]],
        t: usize,
        bits: &[u8],
        prev: Option<&[u8]>,
        h: usize,
        w: usize,
    ) {
        let t = t.min(MAX_ITERS - 1);
        for (c, i, j) in stream_order(h, w) {
            let ctx = context(t, c, i, j, h, w, bits, prev);
            counts[ctx][bits[c * h * w + i * w + j] as usize] += 1;
        }
    }

    /// The table's [`stretch`] of the context of bit (c, i, j) of iteration `t`: the last
    /// logistic feature.
    pub fn stretched(&self, ctx: usize) -> i8 {
        self.stretched[ctx]
    }

    /// The model (index into `models`) of bit (c, i, j) of iteration `t` (< MAX_ITERS), from
    /// the bits of this iteration decoded so far and the previous iteration's.
    #[allow(clippy::too_many_arguments)]
    fn model_of(
        &self,
        t: usize,
        c: usize,
        i: usize,
        j: usize,
        h: usize,
        w: usize,
        cur: &[u8],
        prev: Option<&[u8]>,
        f: &mut [i8; MIX_FEATURES],
    ) -> usize {
        let ctx = context(t, c, i, j, h, w, cur, prev);
        let Some(mix) = &self.mix else {
            return ctx;
        };
        mix_features(c, (i, j), (h, w), cur, prev, self.stretched[ctx], f);
        let row = &mix[(t * BITS + c) * MIX_FEATURES..][..MIX_FEATURES];
        let z: i64 = row
            .iter()
            .zip(f.iter())
            .map(|(&wt, &x)| wt as i64 * x as i64)
            .sum();
        BIT_CONTEXTS + (z.clamp(-MIX_RANGE, MIX_RANGE) + MIX_RANGE) as usize
    }

    /// (model, bit) of every bit of iteration `t`, in stream order (channel by channel, each
    /// in raster order); every bit a model reads precedes the bit it serves, so the decoder
    /// can follow.
    fn coded(
        &self,
        t: usize,
        bits: &[u8],
        prev: Option<&[u8]>,
        h: usize,
        w: usize,
    ) -> Vec<(usize, u8)> {
        let t = t.min(MAX_ITERS - 1);
        let mut f = [0i8; MIX_FEATURES];
        let mut out = Vec::with_capacity(BITS * h * w);
        for (c, i, j) in stream_order(h, w) {
            let m = self.model_of(t, c, i, j, h, w, bits, prev, &mut f);
            out.push((m, bits[c * h * w + i * w + j]));
        }
        out
    }

    /// The model's cost of iteration `t`'s bits, in bits (Σ −log2 p).
    pub fn cost(&self, t: usize, bits: &[u8], prev: Option<&[u8]>, h: usize, w: usize) -> f64 {
        self.cost_of(&self.coded(t, bits, prev, h, w))
    }

    /// Σ −log2 p over (model, bit) pairs.
    fn cost_of(&self, order: &[(usize, u8)]) -> f64 {
        order
            .iter()
            .map(|&(m, b)| {
                let p1 = self.p_of_model[m] as f64 / 65536.0;
                -if b == 1 { p1 } else { 1.0 - p1 }.log2()
            })
            .sum()
    }

    /// Codes iteration `t`'s bits as one rANS stream (little-endian u32 words); also gives
    /// the model's cost of them in bits ([`BitModel::cost`]), from the same pass.
    pub fn encode(
        &self,
        t: usize,
        bits: &[u8],
        prev: Option<&[u8]>,
        h: usize,
        w: usize,
    ) -> Result<(Vec<u8>, f64), EntropyError> {
        let order = self.coded(t, bits, prev, h, w);
        // rANS is last in, first out.
        let mut coder = DefaultAnsCoder::new();
        let mut info = 0u64;
        for &(m, b) in order.iter().rev() {
            info = info.saturating_add(symbol_info(&self.models[m], b as usize));
            coder
                .encode_symbol(b as usize, &self.models[m])
                .map_err(|_| EntropyError::Unencodable)?;
        }
        let bytes = stream_bytes(coder)?;
        // Refuse, as a decoder would, a stream whose last bits coded for free (§6.5).
        InfoBudget::for_stream(bytes.len())
            .spend(info)
            .map_err(|_| EntropyError::OverBudget)?;
        Ok((bytes, self.cost_of(&order)))
    }

    /// Decodes iteration `t`'s bits from its stream; the stream must end exactly.
    pub fn decode(
        &self,
        t: usize,
        stream: &[u8],
        prev: Option<&[u8]>,
        h: usize,
        w: usize,
    ) -> Result<Vec<u8>, EntropyError> {
        let mut coder = stream_coder(stream)?;
        let mut budget = InfoBudget::for_stream(stream.len());
        let t = t.min(MAX_ITERS - 1);
        let mut bits = vec![0u8; BITS * h * w];
        let mut f = [0i8; MIX_FEATURES];
        for (c, i, j) in stream_order(h, w) {
            let m = self.model_of(t, c, i, j, h, w, &bits, prev, &mut f);
            let b = coder
                .decode_symbol(&self.models[m])
                .map_err(|_| EntropyError::Corrupt("rANS decoding failed"))?;
            budget.spend(symbol_info(&self.models[m], b))?;
            bits[c * h * w + i * w + j] = b as u8;
        }
        if !coder.is_empty() {
            return Err(EntropyError::Corrupt("data left after the last bit"));
        }
        Ok(bits)
    }
}

/// The bits of an iteration in stream order (§6.6): channel by channel, each in raster
/// order, as (channel, row, column).
fn stream_order(h: usize, w: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    (0..BITS).flat_map(move |c| (0..h).flat_map(move |i| (0..w).map(move |j| (c, i, j))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random sequence (64-bit LCG, high bits).
    fn lcg(seed: u64) -> impl FnMut() -> u32 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u32
        }
    }

    fn table() -> Vec<u16> {
        (0..BIT_CONTEXTS)
            .map(|i| 4096 + (i * 7919 % 57000) as u16)
            .collect()
    }

    #[test]
    fn logistic_lookups_are_pinned() {
        assert_eq!(mix_probability(0), 32768);
        assert_eq!(mix_probability(2048), 65514);
        assert_eq!(mix_probability(-2048), 22);
        assert_eq!(mix_probability(256), 47911);
        assert_eq!(stretch(32768), 0);
        assert_eq!(stretch(49152), 18);
        assert_eq!(stretch(16), -127);
        assert_eq!(stretch(65520), 127);
    }

    #[test]
    fn logistic_model_round_trips_and_costs_what_it_codes() {
        let mut r = lcg(7);
        // Weights large enough that probabilities reach the clamps, with every feature used.
        let mix: Vec<i32> = (0..MIX_WEIGHTS).map(|_| (r() % 801) as i32 - 400).collect();
        let model = BitModel::with_mix(table(), Some(mix)).unwrap();
        let (h, w) = (5, 7);
        // Bits with structure (runs along rows), so the model's probabilities vary.
        let layer = |r: &mut dyn FnMut() -> u32| -> Vec<u8> {
            let mut b = vec![0u8; BITS * h * w];
            for k in 0..b.len() {
                b[k] = if k % w > 0 && r() % 4 != 0 {
                    b[k - 1]
                } else {
                    (r() % 2) as u8
                };
            }
            b
        };
        let first = layer(&mut r);
        let second = layer(&mut r);
        for (t, bits, prev) in [
            (0, &first, None),
            (1, &second, Some(first.as_slice())),
            (13, &second, Some(first.as_slice())),
        ] {
            let (stream, coded_cost) = model.encode(t, bits, prev, h, w).unwrap();
            assert_eq!(&model.decode(t, &stream, prev, h, w).unwrap(), bits);
            let cost = model.cost(t, bits, prev, h, w);
            assert_eq!(cost, coded_cost);
            let got = 8.0 * stream.len() as f64;
            assert!(
                got >= cost - 1.0 && got <= cost + 64.0,
                "{got} bits for {cost}"
            );
            // The logistic model codes differently from the table alone.
            let plain = BitModel::new(table()).unwrap();
            assert_ne!(plain.encode(t, bits, prev, h, w).unwrap().0, stream);
        }
    }

    #[test]
    fn bad_logistic_weights_are_refused() {
        assert!(BitModel::with_mix(table(), Some(vec![0; MIX_WEIGHTS - 1])).is_err());
        let mut m = vec![0; MIX_WEIGHTS];
        m[5] = MIX_MAX_WEIGHT + 1;
        assert!(BitModel::with_mix(table(), Some(m.clone())).is_err());
        m[5] = -MIX_MAX_WEIGHT;
        assert!(BitModel::with_mix(table(), Some(m)).is_ok());
    }
}
