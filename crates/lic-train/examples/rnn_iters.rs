//! Per-iteration diagnostics of rnn weights on the held-out training images (256² centre
//! crops): PSNR after each iteration with the sign binarizer, the binarizer's mean |y| and
//! share of |y| < 0.1, and the PSNR after that iteration when its bits are replaced by random
//! ones (the earlier iterations kept): what the decoder makes of each iteration's bits.
//!
//! `cargo run --release -p lic-train --example rnn_iters -- WEIGHTS DATA`
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lic::model::rnn::{RnnModel, MAX_ITERS};
use lic_train::data::{self, Dataset};
use lic_train::rnn::{psnr_of, sign_bits};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&args[1])?;
    let vb = VarBuilder::from_slice_safetensors(&bytes, DType::F32, &Device::Cpu)?;
    let model = RnnModel::new(vb)?;
    let ds = Dataset::load(std::path::Path::new(&args[2]), 64, &[])?;
    let n = ds.val.len() as f64;
    let mut p = [0.0; MAX_ITERS];
    let mut prand = [0.0; MAX_ITERS];
    let mut mean_abs = [0.0; MAX_ITERS];
    let mut small = [0.0; MAX_ITERS];
    for pic in &ds.val {
        let x = data::centre_crop(pic, 256, &Device::Cpu)?;
        let (_, _, h, w) = x.dims4()?;
        let target = ((&x * 2.0)? - 1.0)?;
        let x255 = (&x * 255.0)?.round()?;
        let mut es = model.encoder_state(1, h, w)?;
        let mut st = model.decoder_state(1, h, w)?;
        let mut residual = target.clone();
        for t in 0..MAX_ITERS {
            let y = model.encode_step(&residual, &mut es)?;
            let v = y.flatten_all()?.to_vec1::<f32>()?;
            let len = v.len() as f64;
            mean_abs[t] += v.iter().map(|a| a.abs() as f64).sum::<f64>() / len / n;
            small[t] += v.iter().filter(|a| a.abs() < 0.1).count() as f64 / len / n;
            // The same decoder state, then random bits at iteration t.
            let mut alt = st.clone();
            let random = sign_bits(&Tensor::rand(-1f32, 1f32, y.shape(), &Device::Cpu)?)?;
            model.decode_step(&random, &mut alt)?;
            prand[t] += psnr_of(&alt.x_hat, &x255)? / n;
            model.decode_step(&sign_bits(&y)?, &mut st)?;
            residual = (&target - &st.x_hat)?;
            p[t] += psnr_of(&st.x_hat, &x255)? / n;
        }
    }
    println!("iter  psnr  gain  random-bits  mean|y|  |y|<0.1");
    for t in 0..MAX_ITERS {
        let gain = if t == 0 { f64::NAN } else { p[t] - p[t - 1] };
        println!(
            "{:4} {:6.2} {:5.2} {:8.2} {:9.3} {:8.3}",
            t + 1,
            p[t],
            gain,
            prand[t],
            mean_abs[t],
            small[t]
        );
    }
    Ok(())
}
