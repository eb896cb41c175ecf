//! Development experiment: how much does optimizing one image's latents at encode time gain?
//! Starting from the analysis, Adam on the gained latents for N iterations minimizes
//! λ·255²·MSE + bpp, the importance levels fixed. MODE `ste`: rounded latents
//! (straight-through) in the synthesis and the rate; `soft`: noisy latents in both, as in
//! training, and rounding only at the end. Reports the float model's bpp and the 8-bit PSNR
//! of the rounded latents before and after, on 256² centre crops.
//!
//! Measured 2026-11-28 (weights 4c7c01790953dc9c, kodim01/05/08/13/19/23, 20 iterations):
//! `ste` lost 0.7–1.6 dB for ~2 % rate at every learning rate tried (the straight-through
//! distortion gradient is too noisy; the rate gradient wins); `soft` at lr 0.03 moved q 0.6,
//! 0.65, 0.7 to 0.655/27.18, 0.796/28.16, 0.962/29.05 (bpp/dB), +0.19 dB over the unrefined
//! curve (0.489/25.68 … 1.045/29.31) — at about 20 synthesis passes, forward and backward.
//!
//! MODE `sga`: annealed stochastic soft rounding (Yang et al. 2020), temperature 0.5 → 0.05
//! over the iterations, in the synthesis, the rate and the context networks. Measured
//! 2026-11-29 (weights 40b3e892dd4fe65d, 20 iterations, lr 0.03, six held-out training
//! images gcompris-021/061, lomiri-003, opencv-010, wiki-016, sipi-042, q 0.65): `soft`
//! 0.736/28.07 → 0.649/27.66, `sga` → 0.695/27.76 (bpp/dB); against the unrefined curve
//! (q 0.6: 0.628/27.38, q 0.7: 0.865/28.73) `soft` gains ~0.15 dB and `sga` nothing: 20
//! iterations are too few for the annealing.
//!
//! usage: cargo run --release --example refine -- WEIGHTS Q ITERS LR MODE IMAGE...
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use lic::model::cw::{CwModel, M};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn psnr(x_hat: &Tensor, x: &Tensor) -> candle_core::Result<f64> {
    let a = (x_hat.clamp(0f32, 1f32)? * 255.0)?.round()?;
    let b = (x * 255.0)?.round()?;
    let mse = (a - b)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
    Ok(10.0 * (255.0f64 * 255.0 / mse.max(1e-10)).log10())
}

/// Annealed stochastic soft rounding (Yang et al. 2020): floor(v) plus a Gumbel-softmax
/// sample between rounding down and up, each with log-probability −atanh(distance)/τ.
fn sga(v: &Tensor, tau: f64) -> candle_core::Result<Tensor> {
    let f = v.floor()?.detach();
    let r = (v - &f)?.clamp(1e-4f32, 1.0 - 1e-4)?;
    let atanh = |x: &Tensor| -> candle_core::Result<Tensor> {
        ((x + 1.0)?.log()? - (1.0 - x)?.log()?)? * 0.5
    };
    let up_vs_down = ((atanh(&r)? - atanh(&(1.0 - &r)?)?)? / tau)?;
    let u = Tensor::rand(1e-6f32, 1.0 - 1e-6, v.shape(), v.device())?;
    let logistic = (u.log()? - (1.0 - &u)?.log()?)?;
    let w = candle_nn::ops::sigmoid(&((up_vs_down + logistic)? / tau)?)?;
    f + w
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dev = Device::Cpu;
    let path = std::path::Path::new(&args[1]);
    let q: f32 = args[2].parse()?;
    let iters: usize = args[3].parse()?;
    let lr: f64 = args[4].parse()?;
    let mode = args[5].clone();
    if !["soft", "ste", "sga"].contains(&mode.as_str()) {
        return Err(format!("MODE is soft, ste or sga, not {mode}").into());
    }
    let soft_mode = mode == "soft";
    let mut vm = VarMap::new();
    let model = CwModel::with_synthesis(
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
        lic_train::synthesis_of(path)?,
    )?;
    lic_train::load_into(&mut vm, path)?;
    let pos = lic::codec::cw::rate_pos((q * 65535.0).round() as u16);
    let lambda = lic::model::cw::lambda(pos) * 255.0 * 255.0;
    let (mut b0, mut p0, mut b1, mut p1) = (0.0, 0.0, 0.0, 0.0);
    for f in &args[6..] {
        let pic = lic_train::data::load_picture(std::path::Path::new(f))?;
        let x = lic_train::data::centre_crop(&pic, 256, &dev)?;
        let pixels = (x.elem_count() / 3) as f64;
        let (y, logit) = model.analysis(&x)?;
        let (y, logit) = (y.detach(), logit.detach());
        let (lg, _) = model.rate_params(pos)?;
        let yg = y.broadcast_mul(&lg.detach().reshape((1, M, 1, 1))?.exp()?)?;
        let var = Var::from_tensor(&yg)?;
        let mut opt = AdamW::new(
            vec![var.clone()],
            ParamsAdamW {
                lr,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        // bpp and PSNR of the rounded latents, as a file codes them.
        let coded = |v: &Tensor| -> candle_core::Result<(f64, f64)> {
            let out = model.latents_forward(v, &logit, pos, true, true)?;
            Ok((
                out.bits.to_scalar::<f32>()? as f64 / pixels,
                psnr(&out.x_hat, &x)?,
            ))
        };
        let first = coded(var.as_tensor())?;
        for t in 0..iters {
            let out = if mode == "sga" {
                // Temperature from 0.5 down to 0.05, geometrically.
                let tau = 0.5 * 0.1f64.powf(t as f64 / iters.max(1) as f64);
                let yq = sga(var.as_tensor(), tau)?;
                model.quantized_forward(&yq, &logit, pos)?
            } else {
                model.latents_forward(var.as_tensor(), &logit, pos, !soft_mode, !soft_mode)?
            };
            let mse = (&out.x_hat - &x)?.sqr()?.mean_all()?;
            let loss = ((mse * lambda)? + (out.bits / pixels)?)?;
            // Only the latents move: the model's own variables are left out of the step.
            let grads = loss.backward()?;
            opt.step(&grads)?;
        }
        let last = coded(var.as_tensor())?;
        let (fb, fp) = first;
        println!(
            "{f}: {fb:.3} bpp {fp:.2} dB -> {:.3} bpp {:.2} dB",
            last.0, last.1
        );
        b0 += fb;
        p0 += fp;
        b1 += last.0;
        p1 += last.1;
    }
    let n = (args.len() - 6) as f64;
    println!(
        "mean: {:.3} bpp {:.2} dB -> {:.3} bpp {:.2} dB",
        b0 / n,
        p0 / n,
        b1 / n,
        p1 / n
    );
    Ok(())
}
