//! Development check: the bare autoencoder (no quantization, no rate) must fit a batch.
use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use lic::model::cw::CwModel;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let model = CwModel::new(VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
    for (name, var) in vm.data().lock().unwrap().iter() {
        if name.ends_with(".gamma") {
            let c = var.dims()[0];
            var.set(&(Tensor::eye(c, DType::F32, &dev)? * 0.1f64.sqrt())?)?;
        }
    }
    let img = image::open("/work/shared/data/train/gcompris-001.png")
        .unwrap()
        .to_rgb8();
    let crop = image::imageops::crop_imm(&img, 0, 0, 64, 64).to_image();
    let v: Vec<f32> = (0..3)
        .flat_map(|c| {
            crop.pixels()
                .map(move |p| p[c] as f32 / 255.0)
                .collect::<Vec<_>>()
        })
        .collect();
    let x = Tensor::from_vec(v, (1, 3, 64, 64), &dev)?;
    let mut opt = AdamW::new(
        vm.all_vars(),
        ParamsAdamW {
            lr: std::env::var("LR")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1e-3),
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let ds = lic_train::data::Dataset::load(
        std::path::Path::new(&std::env::var("DATA").unwrap_or("/tmp/one".into())),
        64,
        &[],
    )
    .unwrap();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    for step in 0..std::env::var("STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
    {
        let x = if std::env::var("RANDOM").is_ok() {
            ds.batch(&mut rng, 8, 64, &dev)?
        } else {
            x.clone()
        };
        let mode = std::env::var("MODE").unwrap_or_default();
        let (y, _) = model.analysis(&x)?;
        let (mse, extra) = if mode == "ae" {
            let xh = model.synthesis(&y)?;
            ((xh - &x)?.sqr()?.mean_all()?, 0f32)
        } else {
            let out = model.train_forward(
                &x,
                lic::model::cw::RatePos::from_t(
                    std::env::var("T")
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(3.9),
                ),
                mode == "ste",
            )?;
            let mse = (&out.x_hat - &x)?.sqr()?.mean_all()?;
            let bpp = (&out.bits / 4096.0)?;
            let rate_w: f64 = std::env::var("RATEW")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            let b = bpp.to_scalar::<f32>()?;
            (((&mse * 6500.0)? + (bpp * rate_w)?)?, b)
        };
        opt.backward_step(&mse)?;

        if step % 50 == 49 {
            let m = mse.to_scalar::<f32>()?;
            println!(
                "step {step} loss {m:.5} psnr {:.2} |y| {:.4} bpp {extra:.3}",
                -10.0 * (m / if mode == "ae" { 1.0 } else { 6500.0 }).log10(),
                y.abs()?.mean_all()?.to_scalar::<f32>()?
            );
        }
    }
    Ok(())
}
