//! lic's entropy layer: quantized probability tables, the integer path that picks a table
//! for every symbol (format-spec §6), and the rANS symbol streams (through `constriction`).
//! Integer arithmetic only, so every platform and thread count derives the same tables. It
//! depends on the format's constants (`lic-format`) and on no network code.

pub mod bits;
pub mod coder;
pub mod params;
pub mod tables;

pub use coder::{SymbolReader, SymbolWriter};
pub use params::IntParams;
pub use tables::ScaleTables;

/// What can go wrong while entropy coding.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntropyError {
    /// The encoder was handed a symbol its model cannot code (a bug, never input).
    #[error("a symbol could not be entropy coded")]
    Unencodable,
    /// The written stream would be shorter than the information of its symbols allows
    /// (format-spec §6.5), so a decoder would refuse it: rANS codes symbols that open their
    /// table for free while its state is still zero, which only the last symbols to be
    /// decoded can be.
    #[error(
        "the stream is too short for its symbols' information (its last symbols code for free)"
    )]
    OverBudget,
    /// The stream does not decode consistently.
    #[error("corrupt entropy-coded stream: {0}")]
    Corrupt(&'static str),
}
