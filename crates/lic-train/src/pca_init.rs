//! A data-driven starting point for the cw transforms: a linear transform code (a cascade of
//! principal component analyses, the Karhunen–Loève transform) written into the network's
//! weights, so training starts from a working codec instead of from noise.
//!
//! With Γ = 0 every GDN is the identity and, using only the centre tap of each 3×3 kernel,
//! each analysis stage is a linear map of space-to-depth blocks:
//! - stages 0 and 1 copy the 2×2×3 and 4×4×3 pixel blocks through unchanged (12 ≤ 64 and
//!   48 ≤ 96 channels);
//! - stage 2 keeps the 128 principal components of the 8×8×3 blocks (of 192);
//! - stage 3 keeps the 160 principal components of 2×2 groups of those (of 512), ordered by
//!   variance, which is the order in which the importance map switches channels off.
//!
//! The synthesis is the transpose of each stage, with inverse GDNs (Γ = 0: the identity).
//! A ReLU synthesis cannot start linear: constant offsets in front of each ReLU were tried,
//! and Adam moved every weight multiplying an offset the same way at once, which wrecked the
//! reconstruction within 25 steps (3.7 dB). The entropy model starts from each component's
//! measured Laplace scale and a silent context network.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use nalgebra::{DMatrix, SymmetricEigen};
use rand::Rng;

use super::data::Dataset;
use lic::model::cw::{CwModel, Synthesis, LEVELS, M};
use lic::model::layers::space_to_depth;

/// Principal axes of the rows of `v` (n × d).
pub(super) struct Pca {
    /// Mean row (d).
    pub(super) mean: Vec<f64>,
    /// The top k axes as a k × d matrix, by decreasing variance.
    pub(super) axes: DMatrix<f64>,
    /// Their variances.
    pub(super) var: Vec<f64>,
    /// Total variance of the rows (trace of the covariance).
    pub(super) total: f64,
}

impl Pca {
    /// `(B, d, h, w)` → `(B, k, h, w)`: the centred blocks projected on the axes (f64).
    pub(super) fn project(&self, v: &Tensor) -> candle_core::Result<Tensor> {
        let (b, d, h, w) = v.dims4()?;
        let k = self.axes.nrows();
        let mean = Tensor::from_vec(self.mean.clone(), (1, d, 1, 1), v.device())?;
        // nalgebra stores column-major: read as (d, k) row-major that is Pᵀ, so transpose.
        let p = Tensor::from_vec(self.axes.iter().copied().collect(), (d, k), v.device())?.t()?;
        let c = v.to_dtype(DType::F64)?.broadcast_sub(&mean)?;
        p.broadcast_matmul(&c.reshape((b, d, h * w))?)?
            .reshape((b, k, h, w))
    }
}

/// The top `k` principal axes of the rows of `v` (n × d).
pub(super) fn pca(v: &Tensor, k: usize) -> candle_core::Result<Pca> {
    let (n, d) = v.dims2()?;
    let v = v.to_dtype(DType::F64)?;
    let mean = (v.sum(0)? / n as f64)?;
    let c = v.broadcast_sub(&mean.reshape((1, d))?)?;
    let cov = (c.t()?.matmul(&c)? / n as f64)?;
    let cov: Vec<f64> = cov.flatten_all()?.to_vec1()?;
    let eig = SymmetricEigen::new(DMatrix::from_row_slice(d, d, &cov));
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let mut p = DMatrix::zeros(k, d);
    let mut var = Vec::with_capacity(k);
    for (row, &j) in order.iter().take(k).enumerate() {
        let col = eig.eigenvectors.column(j);
        // Sign convention: the largest entry positive, so the result is reproducible.
        let s = if col
            .iter()
            .fold(0.0f64, |m, &x| if x.abs() > m.abs() { x } else { m })
            < 0.0
        {
            -1.0
        } else {
            1.0
        };
        for i in 0..d {
            p[(row, i)] = s * col[i];
        }
        var.push(eig.eigenvalues[j].max(0.0));
    }
    Ok(Pca {
        mean: mean.to_vec1()?,
        axes: p,
        var,
        total: eig.eigenvalues.iter().map(|&e| e.max(0.0)).sum(),
    })
}

/// `(B, C, h, w)` → `(B·h·w, C)`.
pub(super) fn rows(t: &Tensor) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = t.dims4()?;
    t.permute((0, 2, 3, 1))?
        .contiguous()?
        .reshape((b * h * w, c))
}

/// A 3×3 kernel `(cout, cin, 3, 3)` that is `centre` (cout × cin, row-major) in the middle.
fn centre_kernel(
    cout: usize,
    cin: usize,
    centre: &[f64],
    dev: &Device,
) -> candle_core::Result<Tensor> {
    let mut v = vec![0f32; cout * cin * 9];
    for o in 0..cout {
        for i in 0..cin {
            v[(o * cin + i) * 9 + 4] = centre[o * cin + i] as f32;
        }
    }
    Tensor::from_vec(v, (cout, cin, 3, 3), dev)
}

pub(super) fn set(
    vars: &std::collections::HashMap<String, Var>,
    name: &str,
    t: Tensor,
) -> candle_core::Result<()> {
    let var = vars
        .get(name)
        .ok_or_else(|| candle_core::Error::Msg(format!("no variable {name}")))?;
    var.set(
        &t.to_dtype(DType::F32)?
            .reshape(var.shape())?
            .to_device(var.device())?,
    )
}

/// Writes the linear transform code into `vm` (a model built with [`Synthesis::Igdn`]), with
/// statistics from `crops` random `patch`² crops of the training set (on any device). Returns
/// a one-line report (variance kept).
pub fn pca_init(
    vm: &VarMap,
    model: &CwModel,
    ds: &Dataset,
    rng: &mut impl Rng,
    crops: usize,
    patch: usize,
) -> candle_core::Result<String> {
    // Statistics and eigen-decompositions run on the CPU whatever device trains the model;
    // `set` moves each tensor to its variable's device.
    let dev = &Device::Cpu;
    if model.synthesis_kind() != Synthesis::Igdn {
        return Err(candle_core::Error::Msg(
            "the PCA start needs the inverse-GDN synthesis".into(),
        ));
    }
    let x = ds.batch(rng, crops, patch, dev)?;
    let xp = ((x - 0.5)? * 2.0)?;
    // 8×8×3 blocks, in the channel order the network's space-to-depth stages produce.
    let v2 = space_to_depth(&space_to_depth(&space_to_depth(&xp, 2)?, 2)?, 2)?;
    let pca2 = pca(&rows(&v2)?, 128)?;
    let v3 = space_to_depth(&pca2.project(&v2)?, 2)?;
    let pca3 = pca(&rows(&v3)?, M)?;
    // Mean absolute deviation of each component: the Laplace scale of a centred coefficient.
    let mad: Vec<f64> = pca3.project(&v3)?.abs()?.mean((0, 2, 3))?.to_vec1()?;
    let (mu2, p2, mu3, p3) = (&pca2.mean, &pca2.axes, &pca3.mean, &pca3.axes);

    let p2r = |o: usize, i: usize| if i < 192 { p2[(o, i)] } else { 0.0 };
    let p3r = |o: usize, i: usize| p3[(o, i)];
    let data = vm.data().lock().unwrap();
    let eye = |cout: usize, cin: usize, n: usize| {
        let mut v = vec![0.0; cout * cin];
        for k in 0..n {
            v[k * cin + k] = 1.0;
        }
        v
    };

    // Analysis.
    set(
        &data,
        "enc.0.weight",
        centre_kernel(64, 12, &eye(64, 12, 12), dev)?,
    )?;
    set(&data, "enc.0.bias", Tensor::zeros(64, DType::F32, dev)?)?;
    set(
        &data,
        "enc.1.weight",
        centre_kernel(96, 256, &eye(96, 256, 48), dev)?,
    )?;
    set(&data, "enc.1.bias", Tensor::zeros(96, DType::F32, dev)?)?;
    let w2: Vec<f64> = (0..128 * 384).map(|k| p2r(k / 384, k % 384)).collect();
    set(&data, "enc.2.weight", centre_kernel(128, 384, &w2, dev)?)?;
    let b2: Vec<f64> = (0..128)
        .map(|o| -(0..192).map(|i| p2[(o, i)] * mu2[i]).sum::<f64>())
        .collect();
    set(&data, "enc.2.bias", Tensor::new(b2, dev)?)?;
    let mut w3 = vec![0.0; (M + 1) * 512];
    for o in 0..M {
        for i in 0..512 {
            w3[o * 512 + i] = p3r(o, i);
        }
    }
    set(&data, "enc.3.weight", centre_kernel(M + 1, 512, &w3, dev)?)?;
    let mut b3 = vec![0.0; M + 1];
    for (o, b) in b3.iter_mut().enumerate().take(M) {
        *b = -(0..512).map(|i| p3r(o, i) * mu3[i]).sum::<f64>();
    }
    set(&data, "enc.3.bias", Tensor::new(b3, dev)?)?;
    for (name, var) in data.iter() {
        let gdn = name.starts_with("enc_gdn.") || name.starts_with("dec_gdn.");
        if gdn && name.ends_with(".gamma") {
            var.set(&var.zeros_like()?)?;
        }
        if gdn && name.ends_with(".beta") {
            var.set(&var.ones_like()?)?;
        }
    }

    // Synthesis: the transposes.
    let wd0: Vec<f64> = (0..512 * M).map(|k| p3r(k % M, k / M)).collect();
    set(&data, "dec.0.weight", centre_kernel(512, M, &wd0, dev)?)?;
    set(&data, "dec.0.bias", Tensor::new(mu3.as_slice(), dev)?)?;
    let wd1: Vec<f64> = (0..384 * 128).map(|k| p2r(k % 128, k / 128)).collect();
    set(&data, "dec.1.weight", centre_kernel(384, 128, &wd1, dev)?)?;
    let bd1: Vec<f64> = (0..384)
        .map(|o| if o < 192 { mu2[o] } else { 0.0 })
        .collect();
    set(&data, "dec.1.bias", Tensor::new(bd1, dev)?)?;
    set(
        &data,
        "dec.2.weight",
        centre_kernel(256, 96, &eye(256, 96, 48), dev)?,
    )?;
    set(&data, "dec.2.bias", Tensor::zeros(256, DType::F32, dev)?)?;
    set(
        &data,
        "dec.3.weight",
        centre_kernel(12, 64, &eye(12, 64, 12), dev)?,
    )?;
    set(&data, "dec.3.bias", Tensor::zeros(12, DType::F32, dev)?)?;

    // Entropy model: ln σ of each component (gain 1) at every level; no context at first.
    let base: Vec<f64> = (0..LEVELS * M).map(|k| mad[k % M].max(1e-3).ln()).collect();
    set(&data, "base", Tensor::from_vec(base, (LEVELS, M), dev)?)?;
    for name in ["ctx2.weight", "ctx2.bias"] {
        if let Some(v) = data.get(name) {
            v.set(&v.zeros_like()?)?;
        }
    }
    let kept2 = pca2.var.iter().sum::<f64>() / pca2.total.max(1e-12);
    let kept3 = pca3.var.iter().sum::<f64>() / pca3.total.max(1e-12);
    Ok(format!(
        "pca init from {crops} crops of {patch}²: stage 2 keeps {:.4} of the 8×8×3 block variance, stage 3 keeps {:.4} of the rest",
        kept2, kept3
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Picture;
    use candle_nn::VarBuilder;
    use rand::SeedableRng;

    /// Smooth synthetic pictures: a few random low-frequency waves per channel.
    fn pictures(n: usize, side: usize, rng: &mut impl Rng) -> Vec<Picture> {
        (0..n)
            .map(|_| {
                let waves: Vec<[f64; 4]> = (0..9)
                    .map(|_| {
                        [
                            rng.gen_range(0.0..0.15),
                            rng.gen_range(0.0..0.15),
                            rng.gen_range(0.0..6.28),
                            rng.gen_range(10.0..40.0),
                        ]
                    })
                    .collect();
                let mut rgb = vec![0u8; side * side * 3];
                for y in 0..side {
                    for x in 0..side {
                        for c in 0..3 {
                            let v: f64 = waves[c * 3..c * 3 + 3]
                                .iter()
                                .map(|w| w[3] * (w[0] * x as f64 + w[1] * y as f64 + w[2]).sin())
                                .sum();
                            rgb[(y * side + x) * 3 + c] = (128.0 + v).clamp(0.0, 255.0) as u8;
                        }
                    }
                }
                Picture {
                    path: "synthetic".into(),
                    width: side,
                    height: side,
                    rgb,
                }
            })
            .collect()
    }

    /// Before any training, analysis → synthesis (no quantization) is the PCA projection,
    /// which keeps nearly all of a smooth picture, and the latent channels come out ordered
    /// by variance.
    #[test]
    fn pca_start_reconstructs_smooth_pictures() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let ds = Dataset::from_pictures(pictures(6, 160, &mut rng), Vec::new(), &[]).unwrap();
        let vm = VarMap::new();
        let model = CwModel::with_synthesis(
            VarBuilder::from_varmap(&vm, DType::F32, &dev),
            Synthesis::Igdn,
        )?;
        super::super::init_fresh(&vm, &dev)?;
        pca_init(&vm, &model, &ds, &mut rng, 96, 64).unwrap();
        let x = ds.batch(&mut rng, 4, 64, &dev)?;
        let (y, _) = model.analysis(&x)?;
        let mse = (model.synthesis(&y)? - &x)?
            .sqr()?
            .mean_all()?
            .to_scalar::<f32>()? as f64;
        let psnr = 10.0 * (1.0 / mse).log10();
        assert!(psnr > 40.0, "unquantized PSNR {psnr:.2} dB");
        let var: Vec<f32> = y.sqr()?.mean((0, 2, 3))?.to_vec1()?;
        assert!(
            var[0] > var[40] && var[40] > var[150],
            "{} {} {}",
            var[0],
            var[40],
            var[150]
        );
        // A ReLU model is refused.
        let vm2 = VarMap::new();
        let relu = CwModel::with_synthesis(
            VarBuilder::from_varmap(&vm2, DType::F32, &dev),
            Synthesis::Relu,
        )?;
        assert!(pca_init(&vm2, &relu, &ds, &mut rng, 8, 64).is_err());
        Ok(())
    }
}
