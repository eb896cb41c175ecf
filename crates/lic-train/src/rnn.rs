//! `lic-train train --model rnn`: the recurrent model on small random crops (what it was designed
//! for), every step unrolled over all [`MAX_ITERS`] iterations, loss = mean over iterations
//! of the mean absolute residual (Toderici et al.), Adam, the same adaptive gradient clipping
//! and checkpointing as cw.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::SeedableRng;

use super::data::{self, Dataset};
use super::export;
use super::{load_into, open_run, read_step, restart_ramp, save_checkpoint, GradClip, TrainConfig};
use lic::entropy::bits::{BitModel, BIT_CONTEXTS};
use lic::model::rnn::{bits_of, bits_tensor, RnnModel, MAX_ITERS, STRIDE};

/// The inference binarizer: ±1 by the sign of the encoder's output (y ≥ 0 → +1).
pub fn sign_bits(y: &Tensor) -> candle_core::Result<Tensor> {
    (y.ge(0f32)?.to_dtype(DType::F32)? * 2.0)? - 1.0
}

/// PSNR (dB) of a reconstruction `x_hat` in [−1, 1] against the 8-bit original `x255`
/// (values 0…255), measured on the 8-bit picture the decoder would show.
pub fn psnr_of(x_hat: &Tensor, x255: &Tensor) -> candle_core::Result<f64> {
    let img = (((x_hat + 1.0)? * 127.5)?.clamp(0f32, 255f32)?).round()?;
    let mse = (img - x255)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
    Ok(10.0 * (255.0f64 * 255.0 / mse.max(1e-10)).log10())
}

/// Validation on the held-out images (centre crops of at most 128²) with the inference
/// binarizer (sign): mean PSNR after each iteration.
pub fn validate(model: &RnnModel, ds: &Dataset) -> candle_core::Result<Vec<f64>> {
    let mut psnr = vec![0.0; MAX_ITERS];
    for p in &ds.val {
        let x = data::centre_crop(p, 128, model.device())?;
        let (_, _, h, w) = x.dims4()?;
        let target = ((&x * 2.0)? - 1.0)?;
        let mut es = model.encoder_state(1, h, w)?;
        let mut st = model.decoder_state(1, h, w)?;
        let mut residual = target.clone();
        let x255 = (&x * 255.0)?.round()?;
        for acc in psnr.iter_mut() {
            let y = model.encode_step(&residual, &mut es)?;
            model.decode_step(&sign_bits(&y)?, &mut st)?;
            residual = (&target - &st.x_hat)?;
            *acc += psnr_of(&st.x_hat, &x255)?;
        }
    }
    let n = ds.val.len().max(1) as f64;
    Ok(psnr.into_iter().map(|p| p / n).collect())
}

fn validation_line(model: &RnnModel, ds: &Dataset) -> candle_core::Result<String> {
    Ok(validate(model, ds)?
        .iter()
        .map(|p| format!("{p:.2}"))
        .collect::<Vec<_>>()
        .join(" "))
}

/// Runs rnn training until `steps` or `minutes` is reached, checkpointing on the way.
pub fn train(cfg: &TrainConfig) -> Result<(), Box<dyn std::error::Error>> {
    let (dev, mut log, ds) = open_run(cfg, &format!("rnn, {MAX_ITERS} iterations: "))?;
    let mut vm = VarMap::new();
    let model = RnnModel::new(VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
    let resume = cfg.out.join("ckpt.safetensors");
    let mut step = 0;
    if let Some(init) = &cfg.init {
        load_into(&mut vm, init)?;
        writeln!(log, "# initialised from {}", init.display())?;
    } else if resume.exists() {
        vm.load(&resume)?;
        step = read_step(&cfg.out);
        writeln!(log, "# resumed from {} at step {step}", resume.display())?;
    }
    writeln!(
        log,
        "val step {step} psnr by iteration {} (start of run)",
        validation_line(&model, &ds)?
    )?;
    let vars = vm.all_vars();
    let mut opt = AdamW::new(
        vars.clone(),
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut clip = GradClip::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ step as u64);
    let start = Instant::now();
    let first_step = step;
    let mut last_ckpt = Instant::now();
    let (mut acc_loss, mut acc_first, mut acc_last, mut acc_n) = (0.0, 0.0, 0.0, 0usize);
    while step < cfg.steps && start.elapsed().as_secs_f64() < cfg.minutes * 60.0 {
        let x = ds.batch(&mut rng, cfg.batch, cfg.patch, &dev)?;
        let (loss, mses) = model.train_forward(&x, MAX_ITERS)?;
        let mut grads = loss.backward()?;
        clip.apply(&mut grads, &vars)?;
        opt.set_learning_rate(cfg.lr * restart_ramp(step - first_step));
        opt.step(&grads)?;
        step += 1;
        let psnr = |m: &Tensor| -> candle_core::Result<f64> {
            Ok(10.0 * (1.0 / (m.to_scalar::<f32>()? as f64).max(1e-10)).log10())
        };
        acc_loss += loss.to_scalar::<f32>()? as f64;
        acc_first += psnr(&mses[0])?;
        acc_last += psnr(&mses[MAX_ITERS - 1])?;
        acc_n += 1;
        if step % cfg.log_every == 0 {
            let n = acc_n as f64;
            writeln!(
                log,
                "step {step} loss {:.4} psnr first {:.2} last {:.2} gnorm {:.3} clipped {} t {:.0}s",
                acc_loss / n,
                acc_first / n,
                acc_last / n,
                clip.ema.unwrap_or(0.0),
                clip.clipped,
                start.elapsed().as_secs_f64()
            )?;
            (acc_loss, acc_first, acc_last, acc_n) = (0.0, 0.0, 0.0, 0);
        }
        if step % cfg.val_every == 0 {
            writeln!(
                log,
                "val step {step} psnr by iteration {}",
                validation_line(&model, &ds)?
            )?;
        }
        if last_ckpt.elapsed().as_secs_f64() > cfg.ckpt_minutes * 60.0 {
            save_checkpoint(&vm, None, &cfg.out, step)?;
            last_ckpt = Instant::now();
        }
    }
    save_checkpoint(&vm, None, &cfg.out, step)?;
    writeln!(
        log,
        "val step {step} psnr by iteration {} (end of run, {:.0}s)",
        validation_line(&model, &ds)?,
        start.elapsed().as_secs_f64()
    )?;
    Ok(())
}

/// The bits of all [`MAX_ITERS`] iterations the encoder of `model` gives for the picture `x`
/// (`(1, 3, H, W)` in [0, 1], sides multiples of 16), each `BITS·(H/16)·(W/16)`.
pub fn encoder_bits(model: &RnnModel, x: &Tensor) -> candle_core::Result<Vec<Vec<u8>>> {
    let (_, _, h, w) = x.dims4()?;
    let (lh, lw) = (h / STRIDE, w / STRIDE);
    let target = ((x * 2.0)? - 1.0)?;
    let mut es = model.encoder_state(1, h, w)?;
    let mut st = model.decoder_state(1, h, w)?;
    let mut residual = target.clone();
    let mut layers = Vec::with_capacity(MAX_ITERS);
    for _ in 0..MAX_ITERS {
        let bits = bits_of(&model.encode_step(&residual, &mut es)?)?;
        model.decode_step(&bits_tensor(&bits, lh, lw, x.device())?, &mut st)?;
        residual = (&target - &st.x_hat)?;
        layers.push(bits);
    }
    Ok(layers)
}

/// Writes the shipped rnn weights from a checkpoint: the transforms as f16, then the bit
/// table, learned by counting the bits the exported (f16) encoder gives on centre crops of
/// up to `images` training images.
pub fn export(
    ckpt: &Path,
    data: &Path,
    out: &Path,
    images: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut vm = VarMap::new();
    let _ = RnnModel::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
    load_into(&mut vm, ckpt)?;
    let mut bufs = export::f16_tensors(&vm)?;
    // Count with the f16-rounded weights the decoder will have.
    let f16_bytes = export::safetensors_bytes(&bufs)?;
    let vb = VarBuilder::from_slice_safetensors(&f16_bytes, DType::F32, &Device::Cpu)?;
    let model = RnnModel::new(vb)?;
    let ds = Dataset::load(data, 64, &[])?;
    let mut counts = vec![[0u64; 2]; BIT_CONTEXTS];
    for p in ds.train.iter().take(images) {
        let x = data::centre_crop(p, 256, &Device::Cpu)?;
        let (_, _, h, w) = x.dims4()?;
        let (lh, lw) = (h / STRIDE, w / STRIDE);
        let layers = encoder_bits(&model, &x)?;
        for t in 0..MAX_ITERS {
            let prev = t.checked_sub(1).map(|p| layers[p].as_slice());
            BitModel::count(&mut counts, t, &layers[t], prev, lh, lw);
        }
    }
    let p_one: Vec<u8> = BitModel::from_counts(&counts)
        .iter()
        .flat_map(|&p| (p as i32).to_le_bytes())
        .collect();
    bufs.insert(
        "bits.p_one".into(),
        (safetensors::Dtype::I32, vec![BIT_CONTEXTS], p_one),
    );
    export::write_safetensors(&bufs, out)
}

/// A weights file of the model in `vm` with a given bit table (`p_one`, one entry per
/// context): for tests of the format that need no trained model.
pub fn weights_bytes(vm: &VarMap, p_one: &[u16]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut bufs = export::f16_tensors(vm)?;
    bufs.insert(
        "bits.p_one".into(),
        (
            safetensors::Dtype::I32,
            vec![p_one.len()],
            p_one
                .iter()
                .flat_map(|&p| (p as i32).to_le_bytes())
                .collect(),
        ),
    );
    Ok(export::safetensors_bytes(&bufs)?)
}
