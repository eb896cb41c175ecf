//! The symbol stream: importance levels and latent values written with rANS
//! (`constriction`'s `AnsCoder<u32, u64>`).
//!
//! rANS is last-in first-out, so the encoder records every symbol in decoding order and
//! writes them backwards. Values outside a table's support are sent as the escape symbol
//! followed by an Elias-gamma code of the excess (two uniform symbols) and a sign.

use constriction::stream::model::DefaultUniformModel;
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

    /// Writes the stream: little-endian 32-bit words.
    pub fn finish(
        &self,
        scales: &ScaleTables,
        side: &[Categorical],
    ) -> Result<Vec<u8>, EntropyError> {
        let mut coder = DefaultAnsCoder::new();
        let mut prims = Vec::new();
        for &op in self.ops.iter().rev() {
            prims.clear();
            Self::expand(op, scales, side, &mut prims);
            for p in prims.iter().rev() {
                match p {
                    Prim::Cat(m, s) => coder.encode_symbol(*s, *m),
                    Prim::Uniform(n, s) => coder.encode_symbol(*s, DefaultUniformModel::new(*n)),
                }
                .map_err(|_| EntropyError::Unencodable)?;
            }
        }
        stream_bytes(coder)
    }
}

/// The stream of a finished coder: its words as little-endian bytes (spec §6.5).
pub(crate) fn stream_bytes(coder: DefaultAnsCoder) -> Result<Vec<u8>, EntropyError> {
    let words = coder
        .into_compressed()
        .map_err(|_| EntropyError::Unencodable)?;
    Ok(words.iter().flat_map(|w| w.to_le_bytes()).collect())
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

/// Reads a stream written by [`SymbolWriter::finish`], symbol by symbol, in the same order.
pub struct SymbolReader<'t> {
    coder: DefaultAnsCoder,
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
            scales,
            side,
        })
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
        self.coder
            .decode_symbol(m)
            .map_err(|_| EntropyError::Corrupt("rANS decode failed"))
    }

    fn uniform(&mut self, n: usize) -> Result<usize, EntropyError> {
        self.coder
            .decode_symbol(DefaultUniformModel::new(n))
            .map_err(|_| EntropyError::Corrupt("rANS decode failed"))
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
