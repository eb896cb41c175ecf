//! Net surgery: loads a cw checkpoint with fewer latent channels (e.g. M = 160) into a model
//! with [`M`] channels while keeping the function it computes.
//!
//! Old channel `c` of importance level `l = c / C_old` moves to `l·C + c mod C_old`, so each
//! level still switches on its old channels first, followed by `C − C_old` new ones. The new
//! channels' synthesis columns and context-network weights are zero, so the reconstruction
//! and the old channels' scales are unchanged; their analysis rows are small random
//! projections (zero rows would never receive a gradient through the zero synthesis
//! columns), and their gains and base scales are copied from the old channel in the same
//! slot of the level. Train with noisy latents (no `--ste`) first: a rounded new channel is 0
//! and passes no gradient to its synthesis column.

use candle_core::{Device, Result, Tensor};

use crate::model::cw::{CH_PER_LEVEL, LEVELS, M};

/// How the tensors of an `m_old`-channel model map into the `M`-channel one.
pub struct Widening {
    m_old: usize,
}

impl Widening {
    /// A widening from `m_old` channels (a multiple of `LEVELS`, at most `M`).
    pub fn new(m_old: usize) -> Option<Self> {
        (m_old % LEVELS == 0 && m_old > 0 && m_old <= M).then_some(Self { m_old })
    }

    /// Where old channel `c` goes.
    fn target(&self, c: usize) -> usize {
        let per = self.m_old / LEVELS;
        (c / per) * CH_PER_LEVEL + c % per
    }

    /// For each new channel: the old channel it came from or is paired with (same level, same
    /// slot modulo the old channels per level), and whether it is new.
    fn source(&self, n: usize) -> (usize, bool) {
        let per = self.m_old / LEVELS;
        let (l, k) = (n / CH_PER_LEVEL, n % CH_PER_LEVEL);
        (l * per + k % per, k >= per)
    }

    /// The widened version of tensor `name` (shapes with the old M), or the tensor itself
    /// when it does not depend on M.
    pub fn apply(&self, name: &str, t: &Tensor, dev: &Device) -> Result<Tensor> {
        let t = t.to_device(dev)?.to_dtype(candle_core::DType::F32)?;
        match name {
            // Analysis output: M latent rows, then the importance logit row.
            "enc.3.weight" | "enc.3.bias" => {
                let rows = t.dim(0)?;
                let old = t.narrow(0, 0, self.m_old)?;
                let logit = t.narrow(0, self.m_old, rows - self.m_old)?;
                let scale = if name.ends_with("weight") {
                    // A quarter of the old rows' spread: the new latents start small.
                    let v = old.flatten_all()?.sqr()?.mean_all()?.to_scalar::<f32>()?;
                    0.25 * v.sqrt() as f64
                } else {
                    0.0
                };
                let widened = self.gather(&old, 0, Fill::Random(scale))?;
                Tensor::cat(&[&widened, &logit], 0)
            }
            "dec.0.weight" => self.gather(&t, 1, Fill::Zero),
            "log_gain" | "base" => self.gather(&t, 1, Fill::Pair),
            "ctx2.weight" | "ctx2.bias" => self.gather(&t, 0, Fill::Zero),
            // Inputs: 4 neighbours × (values, magnitudes), each a block of M channels.
            "ctx1.weight" => {
                let blocks = (0..8)
                    .map(|g| self.gather(&t.narrow(1, g * self.m_old, self.m_old)?, 1, Fill::Zero))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&blocks, 1)
            }
            _ => Ok(t),
        }
    }

    /// Builds the `M`-long version of axis `dim`: old entries at their targets, new ones
    /// filled as `fill` says.
    fn gather(&self, t: &Tensor, dim: usize, fill: Fill) -> Result<Tensor> {
        let mut parts = Vec::with_capacity(M);
        for n in 0..M {
            let (src, new) = self.source(n);
            debug_assert!(new || self.target(src) == n);
            let slice = t.narrow(dim, src, 1)?;
            parts.push(match (new, fill) {
                (false, _) | (true, Fill::Pair) => slice,
                (true, Fill::Random(s)) if s > 0.0 => {
                    Tensor::randn(0f32, s as f32, slice.shape(), slice.device())?
                }
                (true, _) => slice.zeros_like()?,
            });
        }
        Tensor::cat(&parts, dim)
    }
}

/// How new channels are filled.
#[derive(Clone, Copy)]
enum Fill {
    Zero,
    /// A copy of the paired old channel.
    Pair,
    /// Gaussian with this standard deviation.
    Random(f64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_channels_keep_their_level_order() {
        let w = Widening::new(M / 2).unwrap();
        for c in 0..M / 2 {
            let n = w.target(c);
            assert_eq!(w.source(n), (c, false));
            // Same importance level before and after.
            assert_eq!(c / (M / 2 / LEVELS), n / CH_PER_LEVEL);
        }
        let new = (0..M).filter(|&n| w.source(n).1).count();
        assert_eq!(new, M / 2);
    }

    #[test]
    fn synthesis_columns_of_new_channels_are_zero() {
        let dev = Device::Cpu;
        let m_old = M / 2;
        let t = Tensor::ones((4, m_old, 3, 3), candle_core::DType::F32, &dev).unwrap();
        let w = Widening::new(m_old).unwrap();
        let out = w.apply("dec.0.weight", &t, &dev).unwrap();
        assert_eq!(out.dims(), &[4, M, 3, 3]);
        let sum = out.sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(sum, (4 * m_old * 9) as f32);
    }
}
