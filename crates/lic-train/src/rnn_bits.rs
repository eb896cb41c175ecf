//! Fits the logistic bit model of an rnn weights file (format-spec §6.6b): the encoder of the
//! file codes centre crops of the training images, every bit's features are taken exactly as
//! the decoder takes them (`lic::entropy::bits::mix_features`), and one logistic regression
//! per iteration and channel is fitted to them (full-batch Adam, a little L2). The transforms
//! and the table stay as they are: the same bits, the same pictures, fewer bytes.

use std::io::Write;
use std::path::Path;

use candle_core::Device;
use rayon::prelude::*;

use super::data::{self, Dataset, Picture};
use super::export;
use lic::entropy::bits::{
    context, mix_features, BitModel, MIX_FEATURES, MIX_MAX_WEIGHT, MIX_WEIGHTS,
};
use lic::model::rnn::{BITS, MAX_ITERS, STRIDE};
use lic::RnnWeights;

/// The bits of one coded crop: `MAX_ITERS` iterations of `BITS·h·w`.
struct CodedCrop {
    h: usize,
    w: usize,
    bits: Vec<Vec<u8>>,
}

/// What the fit was given and gave, for the log.
pub struct FitReport {
    /// Bits of the validation crops under the table alone, per iteration.
    pub table_bits: Vec<f64>,
    /// The same under the fitted (quantized) logistic model.
    pub mix_bits: Vec<f64>,
}

fn code_crops(
    weights: &RnnWeights,
    pictures: &[Picture],
    crop: usize,
) -> Result<Vec<CodedCrop>, Box<dyn std::error::Error>> {
    let model = &weights.model;
    pictures
        .iter()
        .map(|p| {
            let x = data::centre_crop(p, crop, &Device::Cpu)?;
            let (_, _, h, w) = x.dims4()?;
            let (lh, lw) = (h / STRIDE, w / STRIDE);
            let bits = crate::rnn::encoder_bits(model, &x)?;
            Ok(CodedCrop { h: lh, w: lw, bits })
        })
        .collect()
}

/// Features and bits of channel `c` of iteration `t` over all crops.
fn samples(
    table: &BitModel,
    crops: &[CodedCrop],
    t: usize,
    c: usize,
) -> (Vec<[i8; MIX_FEATURES]>, Vec<u8>) {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for cr in crops {
        let (h, w) = (cr.h, cr.w);
        let cur = &cr.bits[t];
        let prev = t.checked_sub(1).map(|p| cr.bits[p].as_slice());
        for i in 0..h {
            for j in 0..w {
                let ctx = context(t, c, i, j, h, w, cur, prev);
                let mut f = [0i8; MIX_FEATURES];
                mix_features(c, (i, j), (h, w), cur, prev, table.stretched(ctx), &mut f);
                xs.push(f);
                ys.push(cur[c * h * w + i * w + j]);
            }
        }
    }
    (xs, ys)
}

/// Logistic regression by full-batch Adam (`steps` steps, learning rate falling linearly from
/// 0.05 to 0.002, L2 1e-4), from zero weights.
fn fit_row(xs: &[[i8; MIX_FEATURES]], ys: &[u8], steps: usize) -> [f32; MIX_FEATURES] {
    let mut wt = [0f32; MIX_FEATURES];
    let (mut m, mut v) = ([0f32; MIX_FEATURES], [0f32; MIX_FEATURES]);
    let n = xs.len().max(1) as f32;
    for it in 0..steps {
        let mut g = [0f32; MIX_FEATURES];
        for (x, &y) in xs.iter().zip(ys) {
            let z: f32 = x.iter().zip(&wt).map(|(&a, &b)| a as f32 * b).sum();
            let e = 1.0 / (1.0 + (-z).exp()) - y as f32;
            for (gk, &xk) in g.iter_mut().zip(x) {
                *gk += e * xk as f32;
            }
        }
        let lr = 0.05 * (1.0 - it as f32 / steps as f32) + 0.002;
        let (b1, b2) = (0.9f32, 0.999f32);
        for k in 0..MIX_FEATURES {
            let gk = g[k] / n + 1e-4 * wt[k];
            m[k] = b1 * m[k] + (1.0 - b1) * gk;
            v[k] = b2 * v[k] + (1.0 - b2) * gk * gk;
            let mh = m[k] / (1.0 - b1.powi(it as i32 + 1));
            let vh = v[k] / (1.0 - b2.powi(it as i32 + 1));
            wt[k] -= lr * mh / (vh.sqrt() + 1e-8);
        }
    }
    wt
}

/// Fits the logistic bit model to the rnn weights file `weights` on centre crops (at most
/// `crop` pixels a side) of the training images of `data` and writes `out`: the same file
/// plus `bits.mix`. The log (validation crops' bits under the table and the fitted model, by
/// iteration) goes to `log`.
pub fn fit(
    data: &Path,
    weights: &Path,
    out: &Path,
    crop: usize,
    steps: usize,
    log: &mut dyn Write,
) -> Result<FitReport, Box<dyn std::error::Error>> {
    let base = std::fs::read(weights)?;
    let rnn = RnnWeights::from_bytes(&base)?;
    let table = BitModel::new(rnn.bits.p_one.clone())?;
    let ds = Dataset::load(data, 64, &[])?;
    writeln!(
        log,
        "# rnn bit model: {} training and {} validation crops of at most {crop} px, {steps} steps",
        ds.train.len(),
        ds.val.len()
    )?;
    let train = code_crops(&rnn, &ds.train, crop)?;
    let val = code_crops(&rnn, &ds.val, crop)?;
    let rows: Vec<(usize, usize)> = (0..MAX_ITERS)
        .flat_map(|t| (0..BITS).map(move |c| (t, c)))
        .collect();
    let fitted: Vec<Vec<i32>> = rows
        .par_iter()
        .map(|&(t, c)| {
            let (xs, ys) = samples(&table, &train, t, c);
            fit_row(&xs, &ys, steps)
                .iter()
                .map(|&w| {
                    (w as f64 * 256.0)
                        .round()
                        .clamp(-MIX_MAX_WEIGHT as f64, MIX_MAX_WEIGHT as f64)
                        as i32
                })
                .collect()
        })
        .collect();
    let mix: Vec<i32> = fitted.concat();
    debug_assert_eq!(mix.len(), MIX_WEIGHTS);
    let model = BitModel::with_mix(rnn.bits.p_one.clone(), Some(mix.clone()))?;
    let mut report = FitReport {
        table_bits: vec![0.0; MAX_ITERS],
        mix_bits: vec![0.0; MAX_ITERS],
    };
    for cr in &val {
        for t in 0..MAX_ITERS {
            let prev = t.checked_sub(1).map(|p| cr.bits[p].as_slice());
            report.table_bits[t] += table.cost(t, &cr.bits[t], prev, cr.h, cr.w);
            report.mix_bits[t] += model.cost(t, &cr.bits[t], prev, cr.h, cr.w);
        }
    }
    for t in 0..MAX_ITERS {
        writeln!(
            log,
            "iteration {t}: table {:.0} bits, logistic {:.0} bits ({:+.2} %)",
            report.table_bits[t],
            report.mix_bits[t],
            100.0 * (report.mix_bits[t] / report.table_bits[t] - 1.0)
        )?;
    }
    let (a, b): (f64, f64) = (report.table_bits.iter().sum(), report.mix_bits.iter().sum());
    writeln!(
        log,
        "all: table {a:.0} bits, logistic {b:.0} bits ({:+.2} %)",
        100.0 * (b / a - 1.0)
    )?;

    let mut bufs = export::tensors_without(&base, |n| n == "bits.mix")?;
    bufs.insert(
        "bits.mix".into(),
        (
            safetensors::Dtype::I32,
            vec![MIX_WEIGHTS],
            mix.iter().flat_map(|w| w.to_le_bytes()).collect(),
        ),
    );
    export::write_safetensors(&bufs, out)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use candle_nn::{VarBuilder, VarMap};
    use lic::entropy::bits::BIT_CONTEXTS;
    use lic::model::rnn::RnnModel;

    #[test]
    fn the_fitted_model_codes_held_out_bits_in_fewer_bytes_and_keeps_the_earlier_id() {
        // Untrained rnn weights with a flat bit table: their bits still follow the pictures'
        // smooth gradients, which the logistic model can learn and the flat table cannot.
        let dir = std::env::temp_dir().join(format!("lic-rnn-bits-{}", std::process::id()));
        let images = dir.join("images");
        std::fs::create_dir_all(&images).unwrap();
        for k in 0..21u32 {
            let img = image::RgbImage::from_fn(80, 64, |x, y| {
                image::Rgb([
                    (x * 4 + k * 9) as u8,
                    (y * 5 + k * 3) as u8,
                    ((x + y) * 2 + k * 7) as u8,
                ])
            });
            img.save(images.join(format!("{k:02}.png"))).unwrap();
        }
        let vm = VarMap::new();
        RnnModel::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let base = crate::rnn::weights_bytes(&vm, &vec![32768u16; BIT_CONTEXTS]).unwrap();
        let (wpath, out) = (dir.join("base.safetensors"), dir.join("mix.safetensors"));
        std::fs::write(&wpath, &base).unwrap();
        let mut log = Vec::new();
        let report = fit(&images, &wpath, &out, 64, 40, &mut log).unwrap();
        let (table, mix): (f64, f64) =
            (report.table_bits.iter().sum(), report.mix_bits.iter().sum());
        assert!(mix < 0.9 * table, "{mix} bits against {table}");
        let fitted = RnnWeights::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
        assert!(fitted.bits.mix.is_some());
        let before = RnnWeights::from_bytes(&base).unwrap();
        assert_eq!(
            fitted.table_only.as_ref().map(|(id, _)| *id),
            Some(before.id)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
