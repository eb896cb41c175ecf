//! Gradient norm of the training loss at each rate coordinate, one fixed batch of training
//! crops (development aid: which part of the `-q` range dominates Adam's moments).
//!
//! usage: cargo run --release --features train --example grad_by_rate -- CKPT DATA
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use lic::model::cw::{CwModel, RatePos, Synthesis};
use rand::SeedableRng;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dev = Device::Cpu;
    let mut vm = VarMap::new();
    let model = CwModel::with_synthesis(
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
        Synthesis::Igdn,
    )?;
    vm.load(&args[1])?;
    let ds = lic_train::data::Dataset::load(std::path::Path::new(&args[2]), 128, &[])?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let x = ds.batch(&mut rng, 8, 128, &dev)?;
    for t in [0.0, 1.0, 2.0, 3.0, 3.5, 4.0, 4.25, 4.5] {
        let pos = RatePos::from_t(t);
        let out = model.train_forward(&x, pos, true)?;
        let mse = (&out.x_hat - &x)?.sqr()?.mean_all()?;
        let bpp = (&out.bits / (8 * 128 * 128) as f64)?;
        let loss = ((&mse * (lic::model::cw::lambda(pos) * 255.0 * 255.0))? + &bpp)?;
        let grads = loss.backward()?;
        let mut sq = 0.0f64;
        let mut by_name = Vec::new();
        for (name, v) in vm.data().lock().unwrap().iter() {
            if let Some(g) = grads.get(v.as_tensor()) {
                let s = g
                    .sqr()?
                    .sum_all()?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?;
                sq += s;
                by_name.push((s.sqrt(), name.clone()));
            }
        }
        by_name.sort_by(|a, b| b.0.total_cmp(&a.0));
        let top: Vec<String> = by_name
            .iter()
            .take(4)
            .map(|(n, k)| format!("{k} {n:.2}"))
            .collect();
        println!("  largest: {}", top.join(", "));
        let m = mse.to_scalar::<f32>()? as f64;
        println!(
            "t {t:.2}: lambda {:.4} psnr {:.2} bpp {:.3} loss {:.3} gnorm {:.2}",
            lic::model::cw::lambda(pos),
            10.0 * (1.0 / m).log10(),
            bpp.to_scalar::<f32>()?,
            loss.to_scalar::<f32>()?,
            sq.sqrt()
        );
    }
    Ok(())
}
