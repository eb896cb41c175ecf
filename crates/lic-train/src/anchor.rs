//! `lic-train train --anchor-context`: fits the anchor-context networks (spec §6.4b) of a trained
//! cw model with everything else frozen. Only the rate of the rounded latents depends on
//! them, so no synthesis runs: the analysis codes a pool of training crops once, and the
//! networks train on those latents in minutes. The run keeps the weights that code the
//! held-out images in the fewest bits.

use std::io::Write;

use candle_core::{DType, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};

use super::{data, load_into, open_run, save_atomic, synthesis_of, TrainConfig};
use lic::model::cw::{laplace_bits, CwModel, RatePos, M, RATE_POINTS, T_TOP};

/// Training crops coded per batch of the latent pool, and batches in it.
const POOL_BATCHES: usize = 128;

/// Rounded, masked latents of some crops at one rate position, with what their rate needs.
struct Coded {
    yq: Tensor,
    mask: Tensor,
    base: Tensor,
    lg4: Tensor,
    pixels: f64,
}

fn code(model: &CwModel, x: &Tensor, pos: RatePos) -> candle_core::Result<Coded> {
    let (y, logit) = model.analysis(x)?;
    let (lg, _) = model.rate_params(pos)?;
    let lg4 = lg.reshape((1, M, 1, 1))?.detach();
    let (mask, base) = model.mask_and_base(&logit.detach(), pos)?;
    let yq = (y.detach().broadcast_mul(&lg4.exp()?)?.round()? * &mask)?;
    Ok(Coded {
        yq,
        mask: mask.detach(),
        base: base.detach(),
        lg4,
        pixels: (x.elem_count() / 3) as f64,
    })
}

/// Bits of the coded latents under the model's entropy parameters (all of them; only the
/// anchors' depend on the anchor context).
fn bits(model: &CwModel, c: &Coded) -> candle_core::Result<Tensor> {
    let ls = model.log_sigma(&c.yq, &c.base, &c.lg4)?;
    (laplace_bits(&c.yq, &ls)? * &c.mask)?.sum_all()
}

/// Trains the anchor context of `cfg.init` (or `out/ckpt.safetensors`) for `cfg.steps`
/// steps of `cfg.batch` crops; writes `out/ckpt.safetensors` whenever validation improves.
pub fn train(cfg: &TrainConfig) -> Result<(), Box<dyn std::error::Error>> {
    let (dev, mut log, ds) = open_run(cfg, "cw anchor context (rest frozen): ")?;
    let init = cfg
        .init
        .clone()
        .unwrap_or_else(|| cfg.out.join("ckpt.safetensors"));
    let mut vm = VarMap::new();
    let model = CwModel::with_synthesis(
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
        synthesis_of(&init)?,
    )?;
    load_into(&mut vm, &init)?;
    let vars: Vec<_> = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| n.starts_with("actx."))
        .map(|(_, v)| v.clone())
        .collect();

    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let t0 = std::time::Instant::now();
    let mut pool = Vec::with_capacity(POOL_BATCHES);
    for _ in 0..POOL_BATCHES {
        let x = ds.batch(&mut rng, cfg.batch, cfg.patch, &dev)?;
        pool.push(code(
            &model,
            &x,
            RatePos::from_t(rng.gen_range(0.0..T_TOP)),
        )?);
    }
    let mut val = Vec::new();
    for p in &ds.val {
        let x = data::centre_crop(p, 256, &dev)?;
        for r in 0..RATE_POINTS {
            val.push(code(&model, &x, RatePos::from_t(r as f64 + 0.1))?);
        }
    }
    let validate = |model: &CwModel| -> candle_core::Result<f64> {
        let (mut b, mut px) = (0.0, 0.0);
        for c in &val {
            b += bits(model, c)?.to_scalar::<f32>()? as f64;
            px += c.pixels;
        }
        Ok(b / px)
    };
    let mut best = validate(&model)?;
    let line = format!(
        "latent pool of {} crops in {:.0} s; step 0 val {best:.5} bpp",
        POOL_BATCHES * cfg.batch,
        t0.elapsed().as_secs_f64()
    );
    println!("{line}");
    writeln!(log, "{line}")?;

    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut running = 0.0;
    for step in 1..=cfg.steps {
        let c = &pool[rng.gen_range(0..pool.len())];
        let loss = (bits(&model, c)? / c.pixels)?;
        running += loss.to_scalar::<f32>()? as f64;
        opt.step(&loss.backward()?)?;
        if step % cfg.val_every == 0 || step == cfg.steps {
            let v = validate(&model)?;
            let kept = v < best;
            if kept {
                best = v;
                save_atomic(&vm, &cfg.out, "ckpt")?;
            }
            let line = format!(
                "step {step} train {:.5} bpp val {v:.5} bpp{} t {:.0}s",
                running / cfg.val_every as f64,
                if kept { " (saved)" } else { "" },
                t0.elapsed().as_secs_f64()
            );
            running = 0.0;
            println!("{line}");
            writeln!(log, "{line}")?;
        }
        if t0.elapsed().as_secs_f64() > cfg.minutes * 60.0 {
            break;
        }
    }
    Ok(())
}
