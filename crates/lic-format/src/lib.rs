//! The `.lic` format without any network: the container (signature, chunks, HEAD), the
//! architecture constants every stream agrees on, and the quality knob with the rate
//! coordinate it selects. `format-spec/README.md` is the normative text; this crate is the
//! bottom layer of lic, below the entropy coder (`lic-entropy`) and the transforms (`lic`).

pub mod arch;
pub mod container;
pub mod rate;

pub use container::{ColorType, FormatError, Header, ModelKind};
pub use rate::{Quality, QualityError, RatePos};
