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

fn psnr(st_x: &Tensor, x255: &Tensor) -> f64 {
    let img = (((st_x + 1.0).unwrap() * 127.5)
        .unwrap()
        .clamp(0f32, 255f32)
        .unwrap())
    .round()
    .unwrap();
    let mse = (img - x255)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-10)).log10()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&args[1]).unwrap();
    let vb = VarBuilder::from_slice_safetensors(&bytes, DType::F32, &Device::Cpu).unwrap();
    let model = RnnModel::new(vb).unwrap();
    let ds = Dataset::load(std::path::Path::new(&args[2]), 64, &[]).unwrap();
    let n = ds.val.len() as f64;
    let (mut p, mut ay, mut small, mut prand) = (
        vec![0.0; MAX_ITERS],
        vec![0.0; MAX_ITERS],
        vec![0.0; MAX_ITERS],
        vec![0.0; MAX_ITERS],
    );
    let sign = |y: &Tensor| {
        ((y.ge(0f32).unwrap().to_dtype(DType::F32).unwrap() * 2.0).unwrap() - 1.0).unwrap()
    };
    for pic in &ds.val {
        let x = data::centre_crop(pic, 256, &Device::Cpu).unwrap();
        let (_, _, h, w) = x.dims4().unwrap();
        let target = ((&x * 2.0).unwrap() - 1.0).unwrap();
        let x255 = (&x * 255.0).unwrap().round().unwrap();
        let mut es = model.encoder_state(1, h, w).unwrap();
        let mut st = model.decoder_state(1, h, w).unwrap();
        let mut residual = target.clone();
        let mut bits_so_far: Vec<Tensor> = Vec::new();
        for t in 0..MAX_ITERS {
            let y = model.encode_step(&residual, &mut es).unwrap();
            let v = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            ay[t] += v.iter().map(|a| a.abs() as f64).sum::<f64>() / v.len() as f64 / n;
            small[t] += v.iter().filter(|a| a.abs() < 0.1).count() as f64 / v.len() as f64 / n;
            let b = sign(&y);
            // The same decoder history, then random bits at iteration t.
            let mut alt = model.decoder_state(1, h, w).unwrap();
            for old in &bits_so_far {
                model.decode_step(old, &mut alt).unwrap();
            }
            let r = sign(&Tensor::rand(-1f32, 1f32, b.shape(), &Device::Cpu).unwrap());
            model.decode_step(&r, &mut alt).unwrap();
            prand[t] += psnr(&alt.x_hat, &x255) / n;
            model.decode_step(&b, &mut st).unwrap();
            bits_so_far.push(b);
            residual = (&target - &st.x_hat).unwrap();
            p[t] += psnr(&st.x_hat, &x255) / n;
        }
    }
    println!("iter  psnr  gain  random-bits  mean|y|  |y|<0.1");
    for t in 0..MAX_ITERS {
        let prev = if t == 0 { f64::NAN } else { p[t - 1] };
        println!(
            "{:4} {:6.2} {:5.2} {:8.2} {:9.3} {:8.3}",
            t + 1,
            p[t],
            p[t] - prev,
            prand[t],
            ay[t],
            small[t]
        );
    }
}
