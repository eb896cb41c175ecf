//! The conditional model of the rnn bits: every bit's probability comes from a table indexed
//! by what the decoder already has — the iteration, the channel, the same bit one iteration
//! earlier, the left and upper neighbours in the same channel, and the same position in the
//! previous channel (format-spec §6.6). The table is learned by counting bits of the trained
//! encoder on training images, stored as 16-bit fixed-point probabilities, and looked up with
//! integer arithmetic only, so encoder and decoder agree everywhere. No network runs per bit.
//!
//! Within an iteration the order is channel by channel, each in raster order, so all four
//! context bits are decoded before they are needed.

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

/// (context, bit) of every bit of iteration `t`, in stream order (channel by channel, each in
/// raster order); every context bit precedes the bit it serves, so the decoder can follow.
fn coded<'a>(
    t: usize,
    bits: &'a [u8],
    prev: Option<&'a [u8]>,
    h: usize,
    w: usize,
) -> impl Iterator<Item = (usize, u8)> + 'a {
    let t = t.min(MAX_ITERS - 1);
    (0..BITS).flat_map(move |c| {
        (0..h).flat_map(move |i| {
            (0..w).map(move |j| {
                (
                    context(t, c, i, j, h, w, bits, prev),
                    bits[c * h * w + i * w + j],
                )
            })
        })
    })
}

/// Probability tables of the bits: P(bit = 1) for every context, in units of 2^-16.
pub struct BitModel {
    /// P(1)·2^16 per context, in [1, 2^16 − 1].
    pub p_one: Vec<u16>,
    models: Vec<Categorical>,
}

impl BitModel {
    /// Builds the model from its stored probabilities (checked: one per context, none 0).
    pub fn new(p_one: Vec<u16>) -> Result<Self, &'static str> {
        if p_one.len() != BIT_CONTEXTS {
            return Err("the bit table has the wrong number of entries");
        }
        if p_one.contains(&0) {
            return Err("the bit table has a zero probability");
        }
        let models = p_one
            .iter()
            .map(|&p| categorical(&[(1u32 << PRECISION) - p as u32, p as u32]))
            .collect();
        Ok(Self { p_one, models })
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
        for (ctx, b) in coded(t, bits, prev, h, w) {
            counts[ctx][b as usize] += 1;
        }
    }

    /// The model's cost of iteration `t`'s bits, in bits (Σ −log2 p).
    pub fn cost(&self, t: usize, bits: &[u8], prev: Option<&[u8]>, h: usize, w: usize) -> f64 {
        coded(t, bits, prev, h, w)
            .map(|(ctx, b)| {
                let p1 = self.p_one[ctx] as f64 / 65536.0;
                -if b == 1 { p1 } else { 1.0 - p1 }.log2()
            })
            .sum()
    }

    /// Codes iteration `t`'s bits as one rANS stream (little-endian u32 words).
    pub fn encode(
        &self,
        t: usize,
        bits: &[u8],
        prev: Option<&[u8]>,
        h: usize,
        w: usize,
    ) -> Result<Vec<u8>, EntropyError> {
        let order: Vec<(usize, u8)> = coded(t, bits, prev, h, w).collect();
        // rANS is last in, first out.
        let mut coder = DefaultAnsCoder::new();
        let mut info = 0u64;
        for &(ctx, b) in order.iter().rev() {
            info = info.saturating_add(symbol_info(&self.models[ctx], b as usize));
            coder
                .encode_symbol(b as usize, &self.models[ctx])
                .map_err(|_| EntropyError::Unencodable)?;
        }
        let bytes = stream_bytes(coder)?;
        // Refuse, as a decoder would, a stream whose last bits coded for free (§6.5).
        InfoBudget::for_stream(bytes.len())
            .spend(info)
            .map_err(|_| EntropyError::OverBudget)?;
        Ok(bytes)
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
        for c in 0..BITS {
            for i in 0..h {
                for j in 0..w {
                    let ctx = context(t, c, i, j, h, w, &bits, prev);
                    let b = coder
                        .decode_symbol(&self.models[ctx])
                        .map_err(|_| EntropyError::Corrupt("rANS decoding failed"))?;
                    budget.spend(symbol_info(&self.models[ctx], b))?;
                    bits[c * h * w + i * w + j] = b as u8;
                }
            }
        }
        if !coder.is_empty() {
            return Err(EntropyError::Corrupt("data left after the last bit"));
        }
        Ok(bits)
    }
}
