//! Times the pieces of one training step (development aid).
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use lic::model::cw::{CwModel, RatePos};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let model = CwModel::new(VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
    let x = Tensor::rand(0f32, 1.0, (8, 3, 128, 128), &dev)?;
    for _ in 0..2 {
        let t = Instant::now();
        let (y, _) = model.analysis(&x)?;
        let ta = t.elapsed();
        let t = Instant::now();
        let xh = model.synthesis(&y)?;
        let ts = t.elapsed();
        let t = Instant::now();
        let g = xh.sum_all()?.backward()?;
        let tb = t.elapsed();
        drop(g);
        let t = Instant::now();
        let out = model.train_forward(&x, RatePos::from_t(1.5), true)?;
        let tf = t.elapsed();
        let t = Instant::now();
        let loss = ((&out.x_hat - &x)?.sqr()?.mean_all()? + (out.bits * 1e-6)?)?;
        let _ = loss.backward()?;
        let tb2 = t.elapsed();
        println!("analysis {ta:?} synthesis {ts:?} ae-backward {tb:?} | train fwd {tf:?} full backward {tb2:?}");
    }
    Ok(())
}
