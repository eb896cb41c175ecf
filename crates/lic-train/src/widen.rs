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

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarMap;
use nalgebra::DMatrix;
use rand::Rng;

use super::data::Dataset;
use super::pca_init::{pca, rows, set};
use lic::model::cw::{CwModel, CH_PER_LEVEL, LEVELS, M};

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

    /// Number of channels of the file that was widened.
    pub fn old_channels(&self) -> usize {
        self.m_old
    }

    /// Gives the new channels something to carry, as the PCA start did for the first ones:
    /// the principal components of what the synthesis misses. On `crops` training crops,
    /// `r = f − dec₀(y)` is the part of the last analysis stage's input `f` (512 values per
    /// latent position) that the first synthesis convolution does not rebuild from the old
    /// channels. The new analysis rows (centre taps) project `f` on the top principal axes of
    /// `r`, ordered by variance into the levels as the old channels are; the new synthesis
    /// columns are the least-squares map from those projections back to `r`; the new
    /// channels' base scales are their mean absolute values. Returns a one-line report with
    /// the unquantized reconstruction PSNR before and after.
    pub fn fill_new_channels(
        &self,
        vm: &VarMap,
        model: &CwModel,
        ds: &Dataset,
        rng: &mut impl Rng,
        crops: usize,
        patch: usize,
    ) -> Result<String> {
        let cpu = &Device::Cpu;
        let x = ds.batch(rng, crops, patch, model.device())?;
        let psnr = |model: &CwModel| -> Result<f64> {
            let (y, _) = model.analysis(&x)?;
            let mse = (model.synthesis(&y)?.clamp(0f32, 1f32)? - &x)?
                .sqr()?
                .mean_all()?
                .to_scalar::<f32>()? as f64;
            Ok(-10.0 * mse.max(1e-12).log10())
        };
        let before = psnr(model)?;
        let f = model.analysis_last_input(&x)?.to_device(cpu)?;
        let (y, _) = model.analysis(&x)?;
        // The new channels' synthesis columns are still zero: this is the old channels' part.
        let g = model.synthesis_first(&y)?.to_device(cpu)?;
        let r = (&f - &g)?;
        let k_new = M - self.m_old;
        let r_rows = rows(&r)?;
        let axes = pca(&r_rows, k_new)?;
        let fr = rows(&f)?.to_dtype(DType::F64)?; // (N, 512)
        let (n, d) = fr.dims2()?;
        let mu_f = (fr.sum(0)? / n as f64)?;
        let mu_fv: Vec<f64> = mu_f.to_vec1()?;
        let v: Vec<f64> = axes.axes.iter().copied().collect(); // column-major k×d
        let vmat = DMatrix::from_column_slice(k_new, d, &v);
        let fc: Vec<f64> = fr
            .broadcast_sub(&mu_f.reshape((1, d))?)?
            .flatten_all()?
            .to_vec1()?;
        let fc = DMatrix::from_row_slice(n, d, &fc); // N×d
        let ynew = &vmat * fc.transpose(); // k×N
        let rr: Vec<f64> = r_rows.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let rr = DMatrix::from_row_slice(n, d, &rr);
        let mu_r = rr.row_mean();
        let rc = DMatrix::from_fn(n, d, |i, j| rr[(i, j)] - mu_r[j]);
        // C (d×k) minimizing ‖Rcᵀ − C·Y‖²: C = Rcᵀ Yᵀ (Y Yᵀ + εI)⁻¹.
        let yyt = &ynew * ynew.transpose() + DMatrix::identity(k_new, k_new) * 1e-9;
        let inv = yyt
            .try_inverse()
            .ok_or_else(|| candle_core::Error::Msg("singular projection covariance".into()))?;
        let cmat = rc.transpose() * ynew.transpose() * inv; // d×k
        let mad: Vec<f64> = (0..k_new)
            .map(|k| ynew.row(k).iter().map(|v| v.abs()).sum::<f64>() / n as f64)
            .collect();
        let bias: Vec<f64> = (0..k_new)
            .map(|k| -(0..d).map(|i| vmat[(k, i)] * mu_fv[i]).sum::<f64>())
            .collect();

        let data = vm.data().lock().unwrap();
        let read = |name: &str| -> Result<Vec<f32>> {
            data.get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("no variable {name}")))?
                .as_tensor()
                .to_device(cpu)?
                .flatten_all()?
                .to_vec1::<f32>()
        };
        let (mut we, mut be) = (read("enc.3.weight")?, read("enc.3.bias")?);
        let (mut wd, mut base) = (read("dec.0.weight")?, read("base")?);
        let per = self.m_old / LEVELS;
        for ch in 0..M {
            let (_, new) = self.source(ch);
            if !new {
                continue;
            }
            // New channels rank by variance through the levels: level l's new slots hold
            // components l·(C − per) ..
            let (l, slot) = (ch / CH_PER_LEVEL, ch % CH_PER_LEVEL - per);
            let k = l * (CH_PER_LEVEL - per) + slot;
            for i in 0..d {
                for t in 0..9 {
                    we[(ch * d + i) * 9 + t] = if t == 4 { vmat[(k, i)] as f32 } else { 0.0 };
                }
            }
            be[ch] = bias[k] as f32;
            for o in 0..512 {
                for t in 0..9 {
                    wd[(o * M + ch) * 9 + t] = if t == 4 { cmat[(o, k)] as f32 } else { 0.0 };
                }
            }
            for lv in 0..LEVELS {
                base[lv * M + ch] = mad[k].max(1e-3).ln() as f32;
            }
        }
        set(
            &data,
            "enc.3.weight",
            Tensor::from_vec(we, (M + 1, d, 3, 3), cpu)?,
        )?;
        set(&data, "enc.3.bias", Tensor::from_vec(be, M + 1, cpu)?)?;
        set(
            &data,
            "dec.0.weight",
            Tensor::from_vec(wd, (512, M, 3, 3), cpu)?,
        )?;
        set(&data, "base", Tensor::from_vec(base, (LEVELS, M), cpu)?)?;
        drop(data);
        let after = psnr(model)?;
        let missed = axes.total / fr.var_keepdim(0)?.sum_all()?.to_scalar::<f64>()?;
        Ok(format!(
            "new channels filled from {crops} crops of {patch}²: the old channels miss {:.4} of the last stage's input variance, the new ones take {:.4} of that; unquantized PSNR {before:.2} -> {after:.2} dB",
            missed,
            axes.var.iter().sum::<f64>() / axes.total.max(1e-12)
        ))
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
