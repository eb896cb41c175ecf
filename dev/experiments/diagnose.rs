//! Development aid: where does a checkpoint lose quality? Compares, on a few images, the
//! reconstruction without any quantization, with noise, and with rounding, at each rate point.
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use lic::model::cw::{expand_levels, CwModel, RatePos, LEVELS, M};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn psnr(a: &Tensor, b: &Tensor) -> f32 {
    let a = (a.clamp(0f32, 1f32).unwrap() * 255.0)
        .unwrap()
        .round()
        .unwrap();
    let b = (b * 255.0).unwrap().round().unwrap();
    let mse = (a - b)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    10.0 * (65025.0 / mse).log10()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dev = Device::Cpu;
    let mut vm = VarMap::new();
    let path = std::path::Path::new(&args[1]);
    let model = CwModel::with_synthesis(
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
        lic_train::synthesis_of(path)?,
    )?;
    lic_train::load_into(&mut vm, path)?;
    for f in &args[2..] {
        let p = lic_train::data::load_picture(std::path::Path::new(f))?;
        let x = lic_train::data::centre_crop(&p, 256, &dev)?;
        let (y, logit) = model.analysis(&x)?;
        let plain = psnr(&model.synthesis(&y)?, &x);
        print!(
            "{f}: |y| {:.2} plain {plain:.2} |",
            y.abs()?.mean_all()?.to_scalar::<f32>()?
        );
        for r in [0usize, 2, 4] {
            let pos = RatePos {
                index: r.min(3),
                frac: if r == 4 { 1.0 } else { 0.0 },
            };
            let (lg, mb) = model.rate_params(pos)?;
            let g = lg.exp()?.reshape((1, M, 1, 1))?;
            let yg = y.broadcast_mul(&g)?;
            let pl = (candle_nn::ops::sigmoid(&logit.broadcast_add(&mb)?)? * LEVELS as f64)?;
            let j = Tensor::arange(0f32, LEVELS as f32, &dev)?.reshape((1, LEVELS, 1, 1))?;
            let mask = expand_levels(&pl.broadcast_sub(&j)?.ge(0f64)?.to_dtype(DType::F32)?)?;
            let rounded = psnr(
                &model.synthesis(&(yg.round()? * &mask)?.broadcast_div(&g)?)?,
                &x,
            );
            let unmasked = psnr(&model.synthesis(&yg.round()?.broadcast_div(&g)?)?, &x);
            let noisy = psnr(
                &model.synthesis(
                    &((&yg + Tensor::rand(-0.5f32, 0.5, yg.shape(), &dev)?)? * &mask)?
                        .broadcast_div(&g)?,
                )?,
                &x,
            );
            print!(" r{r}: gain {:.2} kept {:.2} round {rounded:.2} nomask {unmasked:.2} noise {noisy:.2} |",
                g.mean_all()?.to_scalar::<f32>()?, mask.mean_all()?.to_scalar::<f32>()?);
        }
        println!();
    }
    Ok(())
}
