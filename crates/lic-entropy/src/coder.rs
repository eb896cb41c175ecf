//! The symbol stream: importance levels and latent values written with rANS
//! (`constriction`'s `AnsCoder<u32, u64>`).
//!
//! rANS is last-in first-out, so the encoder records every symbol in decoding order and
//! writes them backwards. Values outside a table's support are sent as the escape symbol
//! followed by an Elias-gamma code of the excess (two uniform symbols) and a sign.

use constriction::stream::model::{DefaultUniformModel, EncoderModel};
use constriction::stream::stack::DefaultAnsCoder;
use constriction::stream::{Decode, Encode};

use crate::tables::{Categorical, ScaleTables, PRECISION};
use crate::EntropyError;

/// Largest magnitude a latent value may have (the escape code covers up to this).
pub const MAX_VALUE: i32 = 1 << 20;
/// Escape payload: at most this many low bits after the length prefix.
const MAX_ESCAPE_BITS: usize = 20;

#[derive(Clone, Copy, Debug)]
enum Op {
    /// A latent value with scale table `table`.
    Latent { table: u8, value: i32 },
    /// A symbol of one of the categorical `side` models (importance map).
    Side { model: u16, symbol: u16 },
}

/// Collects symbols in decoding order, then writes them.
#[derive(Default)]
pub struct SymbolWriter {
    ops: Vec<Op>,
}

/// One primitive rANS symbol (the escape expands to several).
enum Prim<'a> {
    Cat(&'a Categorical, usize),
    Uniform(usize, usize),
}

impl SymbolWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a latent value coded with scale table `table` (`value` is clamped to
    /// ±[`MAX_VALUE`]).
    pub fn latent(&mut self, table: u8, value: i32) {
        self.ops.push(Op::Latent {
            table,
            value: value.clamp(-MAX_VALUE, MAX_VALUE),
        });
    }

    /// Appends `symbol` coded with side model `model`.
    pub fn side(&mut self, model: u16, symbol: u16) {
        self.ops.push(Op::Side { model, symbol });
    }

    /// Number of symbols recorded.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn expand<'a>(
        op: Op,
        scales: &'a ScaleTables,
        side: &'a [Categorical],
        out: &mut Vec<Prim<'a>>,
    ) {
        match op {
            Op::Side { model, symbol } => {
                out.push(Prim::Cat(&side[model as usize], symbol as usize))
            }
            Op::Latent { table, value } => {
                let t = table as usize;
                let r = scales.support[t];
                let model = &scales.models[t];
                if value.abs() <= r {
                    out.push(Prim::Cat(model, (value + r) as usize));
                } else {
                    out.push(Prim::Cat(model, (2 * r + 1) as usize));
                    let u = (value.unsigned_abs() - r as u32) as usize; // ≥ 1
                    let nbits = usize::BITS as usize - u.leading_zeros() as usize; // 1..=21
                    out.push(Prim::Uniform(MAX_ESCAPE_BITS + 1, nbits - 1));
                    if nbits > 1 {
                        out.push(Prim::Uniform(
                            1 << (nbits - 1),
                            u & ((1 << (nbits - 1)) - 1),
                        ));
                    }
                    out.push(Prim::Uniform(2, (value < 0) as usize));
                }
            }
        }
    }

    /// The model's own estimate of the stream length in bits: Σ −log2 p over every
    /// primitive symbol, with the quantized tables actually used.
    pub fn estimated_bits(
        &self,
        scales: &ScaleTables,
        side: &[Categorical],
        side_freqs: &[Vec<u32>],
    ) -> f64 {
        let total = (1u64 << PRECISION) as f64;
        let mut bits = 0.0;
        let mut prims = Vec::new();
        for &op in &self.ops {
            prims.clear();
            Self::expand(op, scales, side, &mut prims);
            for (k, p) in prims.iter().enumerate() {
                bits += match (p, op) {
                    (Prim::Cat(_, s), Op::Latent { table, .. }) if k == 0 => {
                        -(scales.freqs[table as usize][*s] as f64 / total).log2()
                    }
                    (Prim::Cat(_, s), Op::Side { model, .. }) => {
                        -(side_freqs[model as usize][*s] as f64 / total).log2()
                    }
                    (Prim::Uniform(n, _), _) => (*n as f64).log2(),
                    _ => 0.0,
                };
            }
        }
        bits
    }

    /// Writes the stream: little-endian 32-bit words. Fails with [`EntropyError::OverBudget`]
    /// rather than write a stream that a decoder must refuse (§6.5).
    pub fn finish(
        &self,
        scales: &ScaleTables,
        side: &[Categorical],
    ) -> Result<Vec<u8>, EntropyError> {
        let mut coder = DefaultAnsCoder::new();
        let mut prims = Vec::new();
        // The information a decoder counts against the stream's length, as it counts it.
        let mut info = 0u64;
        for &op in self.ops.iter().rev() {
            prims.clear();
            Self::expand(op, scales, side, &mut prims);
            for p in prims.iter().rev() {
                match p {
                    Prim::Cat(m, s) => {
                        info = info.saturating_add(symbol_info(m, *s));
                        coder.encode_symbol(*s, *m)
                    }
                    Prim::Uniform(n, s) => {
                        info = info.saturating_add(uniform_info(*n));
                        coder.encode_symbol(*s, DefaultUniformModel::new(*n))
                    }
                }
                .map_err(|_| EntropyError::Unencodable)?;
            }
        }
        let bytes = stream_bytes(coder)?;
        InfoBudget::for_stream(bytes.len())
            .spend(info)
            .map_err(|_| EntropyError::OverBudget)?;
        Ok(bytes)
    }
}

/// The stream of a finished coder: its words as little-endian bytes (spec §6.5).
pub(crate) fn stream_bytes(coder: DefaultAnsCoder) -> Result<Vec<u8>, EntropyError> {
    let words = coder
        .into_compressed()
        .map_err(|_| EntropyError::Unencodable)?;
    Ok(words.iter().flat_map(|w| w.to_le_bytes()).collect())
}

/// Information, in bits, that a stream's symbols may carry beyond the stream's own length
/// before a decoder refuses it (spec §6.5). rANS spends at least the information of what it
/// codes, except for symbols that open a table (cumulative frequency 0) pushed while the
/// encoder's state is still zero: an encoder's stream gets a few bits free at most, a crafted
/// one could get unboundedly many symbols from a handful of words.
pub const INFO_SLACK_BITS: u64 = 256;

/// Fixed-point unit of the information counts: 2^-16 bit.
const INFO_ONE_BIT: u64 = 1 << 16;

/// A lower bound of −log2(freq / 2^16), the information of a symbol of a 16-bit table, in
/// 2^-16 bit: the larger of x/ln 2 with x = 1 − freq/2^16 (tight for likely symbols;
/// 94548/2^16 is just under 1/ln 2) and 16 − ceil(log2 freq) (for unlikely ones). Integer
/// arithmetic, so every platform refuses the same streams.
pub fn categorical_info(freq: u32) -> u64 {
    let freq = freq.clamp(1, 1 << PRECISION) as u64;
    let linear = ((1u64 << PRECISION) - freq) * 94548 >> 16;
    let ceil_log2 = 64 - (freq - 1).leading_zeros() as u64;
    linear.max((PRECISION as u64 - ceil_log2) * INFO_ONE_BIT)
}

/// A lower bound of the information of a symbol of a uniform model over `n` values (each has
/// probability at most ceil(2^24 / n) / 2^24): floor(log2 n) bits.
pub fn uniform_info(n: usize) -> u64 {
    (usize::BITS - 1 - n.max(1).leading_zeros()) as u64 * INFO_ONE_BIT
}

/// Counts the information of the symbols popped from a stream against what its words can
/// hold, so that a short stream cannot decode into a large grid (spec §6.5).
#[derive(Clone, Copy, Debug)]
pub(crate) struct InfoBudget {
    left: u64,
}

impl InfoBudget {
    /// The budget of a stream of `bytes` bytes.
    pub(crate) fn for_stream(bytes: usize) -> Self {
        Self {
            left: (bytes as u64 * 8 + INFO_SLACK_BITS) * INFO_ONE_BIT,
        }
    }

    /// Spends `units` (2^-16 bit); fails once the stream could not have held that much.
    pub(crate) fn spend(&mut self, units: u64) -> Result<(), EntropyError> {
        self.left = self.left.checked_sub(units).ok_or(EntropyError::Corrupt(
            "stream is too short for the symbols it must hold",
        ))?;
        Ok(())
    }
}

/// A coder to decode `bytes`: fails if they are not a whole number of words or the last word
/// is zero (which no encoder writes).
pub(crate) fn stream_coder(bytes: &[u8]) -> Result<DefaultAnsCoder, EntropyError> {
    if bytes.len() % 4 != 0 {
        return Err(EntropyError::Corrupt(
            "stream length is not a multiple of 4 bytes",
        ));
    }
    let words: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    DefaultAnsCoder::from_compressed(words)
        .map_err(|_| EntropyError::Corrupt("stream ends with a zero word"))
}

/// The information lower bound of symbol `s` of `m` ([`categorical_info`]).
pub(crate) fn symbol_info(m: &Categorical, s: usize) -> u64 {
    let freq = m
        .left_cumulative_and_probability(s)
        .map_or(1, |(_, p)| p.get());
    categorical_info(freq)
}

/// Reads a stream written by [`SymbolWriter::finish`], symbol by symbol, in the same order.
pub struct SymbolReader<'t> {
    coder: DefaultAnsCoder,
    budget: InfoBudget,
    scales: &'t ScaleTables,
    side: &'t [Categorical],
}

impl<'t> SymbolReader<'t> {
    /// Opens a stream. Fails if its length is not a whole number of words or its last word is
    /// zero (which no encoder writes).
    pub fn new(
        bytes: &[u8],
        scales: &'t ScaleTables,
        side: &'t [Categorical],
    ) -> Result<Self, EntropyError> {
        Ok(Self {
            coder: stream_coder(bytes)?,
            budget: InfoBudget::for_stream(bytes.len()),
            scales,
            side,
        })
    }

    /// Fails at once if `latents` more latent values (at the cheapest table's most likely
    /// symbol each) are more information than the rest of the stream can hold: a tile whose
    /// stream is far too short is refused before anything is decoded or allocated for it.
    pub fn expect_latents(&self, latents: usize) -> Result<(), EntropyError> {
        let mut budget = self.budget;
        budget.spend((latents as u64).saturating_mul(self.scales.cheapest_latent_info()))
    }

    /// Reads a latent value coded with scale table `table`.
    pub fn latent(&mut self, table: u8) -> Result<i32, EntropyError> {
        let t = table as usize;
        let r = self.scales.support[t];
        let s = self.cat(&self.scales.models[t])? as i32;
        if s <= 2 * r {
            return Ok(s - r);
        }
        let nbits = self.uniform(MAX_ESCAPE_BITS + 1)? + 1;
        let low = if nbits > 1 {
            self.uniform(1 << (nbits - 1))?
        } else {
            0
        };
        let u = ((1usize << (nbits - 1)) | low) as i64;
        let negative = self.uniform(2)? == 1;
        let magnitude = u + r as i64;
        if magnitude > MAX_VALUE as i64 {
            return Err(EntropyError::Corrupt("escaped value out of range"));
        }
        Ok(if negative {
            -(magnitude as i32)
        } else {
            magnitude as i32
        })
    }

    /// Reads a symbol of side model `model`.
    pub fn side(&mut self, model: u16) -> Result<u16, EntropyError> {
        let m = self
            .side
            .get(model as usize)
            .ok_or(EntropyError::Corrupt("no such side model"))?;
        Ok(self.cat(m)? as u16)
    }

    fn cat(&mut self, m: &Categorical) -> Result<usize, EntropyError> {
        let s = self
            .coder
            .decode_symbol(m)
            .map_err(|_| EntropyError::Corrupt("rANS decode failed"))?;
        self.budget.spend(symbol_info(m, s))?;
        Ok(s)
    }

    fn uniform(&mut self, n: usize) -> Result<usize, EntropyError> {
        let s = self
            .coder
            .decode_symbol(DefaultUniformModel::new(n))
            .map_err(|_| EntropyError::Corrupt("rANS decode failed"))?;
        self.budget.spend(uniform_info(n))?;
        Ok(s)
    }

    /// Checks that the stream was consumed exactly: rANS never fails on garbage, so this
    /// (with the chunk CRC) is what catches a corrupt stream.
    pub fn finish(self) -> Result<(), EntropyError> {
        if self.coder.is_empty() {
            Ok(())
        } else {
            Err(EntropyError::Corrupt(
                "stream has data left after the last symbol",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::categorical;

    #[test]
    fn information_bounds_are_lower_bounds() {
        for f in 1..=(1u32 << PRECISION) {
            let exact = -((f as f64) / 65536.0).log2() * 65536.0;
            let bound = categorical_info(f) as f64;
            assert!(bound <= exact + 1e-6, "freq {f}: {bound} > {exact}");
        }
        // Pinned values (spec §6.5): table 0's centre, the rarest symbol, certainty.
        assert_eq!(categorical_info(64837), 1008);
        assert_eq!(categorical_info(1), 16 << 16);
        assert_eq!(categorical_info(1 << 16), 0);
        assert_eq!(uniform_info(21), 4 << 16);
        assert_eq!(uniform_info(2), 1 << 16);
        assert_eq!(ScaleTables::new().cheapest_latent_info(), 1008);
    }

    #[test]
    fn a_word_cannot_decode_a_tile() {
        let scales = ScaleTables::new();
        // `01 00 00 00` pops table 0's first symbols for free, forever.
        let mut rd = SymbolReader::new(&[1, 0, 0, 0], &scales, &[]).unwrap();
        let popped = (0..100_000).map(|_| rd.latent(0)).position(|r| r.is_err());
        let n = popped.expect("the stream must run out of information");
        // 32 + 256 bits of budget; the first symbols are worth 16 bits each.
        assert!(n <= 20, "{n} symbols decoded");
        assert!(SymbolReader::new(&[1, 0, 0, 0], &scales, &[])
            .unwrap()
            .expect_latents(100_000)
            .is_err());
    }

    #[test]
    fn the_writer_refuses_a_stream_whose_last_symbols_code_for_free() {
        // Symbol 0 opens its table: pushed first, while the coder's state is zero, it costs
        // nothing, so a long run of it at the end of the decoding order outgrows the slack.
        let side = [categorical(&[1 << 10, (1 << 16) - (1 << 10)])];
        let scales = ScaleTables::new();
        let mut w = SymbolWriter::new();
        w.side(0, 1);
        for _ in 0..60 {
            w.side(0, 0);
        }
        assert!(matches!(
            w.finish(&scales, &side),
            Err(EntropyError::OverBudget)
        ));
        // Followed by one symbol that does cost, the run is paid for and the stream decodes.
        w.side(0, 1);
        let bytes = w.finish(&scales, &side).unwrap();
        let mut rd = SymbolReader::new(&bytes, &scales, &side).unwrap();
        assert_eq!(rd.side(0).unwrap(), 1);
        for _ in 0..60 {
            assert_eq!(rd.side(0).unwrap(), 0);
        }
        assert_eq!(rd.side(0).unwrap(), 1);
        rd.finish().unwrap();
    }

    #[test]
    fn cheap_real_streams_stay_within_the_bound() {
        // 200,000 zeros at the most peaked table: 0.0155 bits each, ~390 bytes.
        let scales = ScaleTables::new();
        let mut w = SymbolWriter::new();
        for k in 0..200_000 {
            w.latent(0, if k % 5000 == 0 { -2 } else { 0 });
        }
        let bytes = w.finish(&scales, &[]).unwrap();
        let mut rd = SymbolReader::new(&bytes, &scales, &[]).unwrap();
        rd.expect_latents(200_000).unwrap();
        for k in 0..200_000 {
            assert_eq!(rd.latent(0).unwrap(), if k % 5000 == 0 { -2 } else { 0 });
        }
        rd.finish().unwrap();
    }
}
