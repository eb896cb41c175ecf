//! lic's trainer (`lic-train train`): rate-distortion training of the cw model with candle,
//! and `lic-train export`, which turns a checkpoint into a shipped weights file (f16
//! transforms + the integer entropy path).
//!
//! Each step draws a rate coordinate t uniformly in [0, RATE_POINTS − 1] (so every `-q`
//! between the trained points is trained too; the top half step that `-q` extrapolates to
//! is validated, not trained), and minimizes λ(t)·255²·MSE + bpp, with λ(t) log-linear in
//! t and bpp the float model's estimate of the coded latents.

pub mod anchor;
pub mod data;
pub mod decoder;
pub mod export;
pub mod pca_init;
pub mod postfilter;
pub mod rnn;
pub mod rnn_bits;
pub mod widen;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};

use data::Dataset;
use lic::model::cw::{CwModel, RatePos, Synthesis, RATE_POINTS, T_TOP};

/// Settings of a training run.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Folder of training images.
    pub data: PathBuf,
    /// Folder for checkpoints and the log.
    pub out: PathBuf,
    /// Checkpoint to start from (a checkpoint or a shipped weights file); else `out/ckpt.safetensors` if present.
    pub init: Option<PathBuf>,
    /// Stop after this many steps in total.
    pub steps: usize,
    /// Stop after this many minutes of this run.
    pub minutes: f64,
    /// Crops per step.
    pub batch: usize,
    /// Crop side.
    pub patch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Validate every this many steps.
    pub val_every: usize,
    /// Save a checkpoint every this many minutes.
    pub ckpt_minutes: f64,
    /// Train on the first CUDA device.
    pub cuda: bool,
    /// Random seed.
    pub seed: u64,
    /// Log the running means every this many steps.
    pub log_every: usize,
    /// The rate term's weight ramps from 0 to 1 over this many steps (counted from step 0),
    /// so the transforms learn to carry information before the rate squeezes it.
    pub warmup: usize,
    /// Feed the synthesis the rounded latents (straight-through) instead of noisy ones:
    /// for fine-tuning a trained model to the hard quantizer it is used with.
    pub ste: bool,
    /// Start a fresh model from a PCA transform code (see [`pca_init`]).
    pub pca_init: bool,
    /// Decay of the exponential moving average of the weights (0 turns it off). The
    /// average is validated beside the live weights and saved as `out/ema.safetensors`,
    /// the file to export: single steps move validation PSNR by up to 1 dB at the top rate.
    pub ema: f64,
    /// Relative sampling weights of groups of training images (none: every image alike).
    pub sample_weights: Vec<data::SampleWeight>,
}

/// Sets GDN Γ to 0.1·I in a fresh model (the parameter is squared: √0.1 on the diagonal).
fn init_fresh(vm: &VarMap, dev: &Device) -> candle_core::Result<()> {
    for (name, var) in vm.data().lock().unwrap().iter() {
        if name.ends_with(".gamma") {
            let c = var.dims()[0];
            var.set(&(Tensor::eye(c, DType::F32, dev)? * 0.1f64.sqrt())?)?;
        }
    }
    Ok(())
}

/// Adaptive gradient clipping: the global gradient norm is held to 10× its running mean
/// (norms vary several-fold between rate points, so a tighter bound clips the high-λ steps).
/// A CPU run from the PCA start blew up at step ~1360 (training PSNR 27 → 13 dB in 30 steps,
/// a thousand steps to recover); clipping against the run's own typical norm needs no
/// threshold tuned per model or learning rate.
#[derive(Default)]
struct GradClip {
    /// Running mean of the (clipped) norm.
    ema: Option<f64>,
    /// Steps clipped so far in this run.
    clipped: usize,
}

impl GradClip {
    fn apply(
        &mut self,
        grads: &mut candle_core::backprop::GradStore,
        vars: &[candle_core::Var],
    ) -> candle_core::Result<()> {
        let mut sq = 0.0f64;
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                sq += g
                    .sqr()?
                    .sum_all()?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?;
            }
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            // Drop the step's gradients altogether (scaling would keep the NaNs).
            rewrite(grads, vars, |g| g.zeros_like())?;
            self.clipped += 1;
            return Ok(());
        }
        let limit = self.ema.map(|e| 10.0 * e);
        let used = match limit {
            Some(l) if norm > l => {
                rewrite(grads, vars, |g| g * (l / norm))?;
                self.clipped += 1;
                l
            }
            _ => norm,
        };
        self.ema = Some(self.ema.map_or(used, |e| 0.99 * e + 0.01 * used));
        Ok(())
    }
}

/// Learning-rate factor for the `k`-th step of a run: a linear ramp over the first
/// [`RESTART_RAMP`] steps. Adam's moments are not checkpointed, and a fresh Adam moves every
/// weight by the full learning rate at its first steps: one step at 1e-4 from the shipped
/// weights cost 1.3 dB of validation PSNR at the top rate point, two steps 2.0 dB.
fn restart_ramp(k: usize) -> f64 {
    ((k + 1) as f64 / RESTART_RAMP as f64).min(1.0)
}

/// Steps over which a run ramps its learning rate up (see [`restart_ramp`]).
const RESTART_RAMP: usize = 200;

/// Exponential moving average of the weights: `avg ← d·avg + (1 − d)·live` after each
/// step. Its variables belong to a second model, so it validates and saves like the first.
struct WeightAverage {
    decay: f64,
    /// (average, live) pairs.
    pairs: Vec<(candle_core::Var, candle_core::Var)>,
}

impl WeightAverage {
    /// Pairs every variable of `avg` with the same-named one of `live`; copies the live
    /// values unless `avg` was loaded from a file (`keep`).
    fn new(avg: &VarMap, live: &VarMap, decay: f64, keep: bool) -> candle_core::Result<Self> {
        let live = live.data().lock().unwrap();
        let mut pairs = Vec::new();
        for (name, a) in avg.data().lock().unwrap().iter() {
            let l = live.get(name).ok_or_else(|| {
                candle_core::Error::Msg(format!("weight average: no live variable {name}"))
            })?;
            if !keep {
                a.set(l.as_tensor())?;
            }
            pairs.push((a.clone(), l.clone()));
        }
        Ok(Self { decay, pairs })
    }

    fn update(&self) -> candle_core::Result<()> {
        for (a, l) in &self.pairs {
            let next = ((a.as_tensor() * self.decay)? + (l.as_tensor() * (1.0 - self.decay))?)?;
            a.set(&next)?;
        }
        Ok(())
    }
}

/// Replaces the gradient of every variable in `vars` by `f(gradient)`.
fn rewrite(
    grads: &mut candle_core::backprop::GradStore,
    vars: &[candle_core::Var],
    f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<()> {
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            let new = f(g)?;
            grads.insert(v.as_tensor(), new);
        }
    }
    Ok(())
}

/// Step count stored beside a checkpoint.
fn read_step(out: &Path) -> usize {
    std::fs::read_to_string(out.join("step.txt"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Saves the variables (f32), their average if there is one, and the step count, each
/// file atomically.
pub fn save_checkpoint(
    vm: &VarMap,
    avg: Option<&VarMap>,
    out: &Path,
    step: usize,
) -> candle_core::Result<()> {
    if let Some(avg) = avg {
        save_atomic(avg, out, "ema")?;
    }
    save_atomic(vm, out, "ckpt")?;
    std::fs::write(out.join("step.txt"), format!("{step}\n"))?;
    Ok(())
}

/// Saves `vars` as `out/NAME.safetensors` through a temporary name and a rename, so a stop
/// mid-write leaves the previous file (or none), never a truncated one.
fn save_atomic(vars: &VarMap, out: &Path, name: &str) -> candle_core::Result<()> {
    let tmp = out.join(format!("{name}.tmp.safetensors"));
    vars.save(&tmp)?;
    std::fs::rename(&tmp, out.join(format!("{name}.safetensors")))?;
    Ok(())
}

/// Validation on the held-out images: mean PSNR and estimated bpp at each rate point and at
/// the top of the `-q` range ([`T_TOP`], half a step past the last rate point).
pub fn validate(
    model: &CwModel,
    ds: &Dataset,
    dev: &Device,
) -> candle_core::Result<Vec<(f64, f64)>> {
    let mut res = vec![(0.0, 0.0); RATE_POINTS + 1];
    for p in &ds.val {
        let x = data::centre_crop(p, 256, dev)?;
        let pixels = x.elem_count() as f64 / 3.0;
        for (r, acc) in res.iter_mut().enumerate() {
            let t = if r < RATE_POINTS { r as f64 } else { T_TOP };
            let out = model.train_forward(&x, RatePos::from_t(t), true)?;
            let xh = (out.x_hat.clamp(0f32, 1f32)? * 255.0)?.round()?;
            let mse = (xh - (&x * 255.0)?.round()?)?
                .sqr()?
                .mean_all()?
                .to_scalar::<f32>()? as f64;
            acc.0 += 10.0 * (255.0f64 * 255.0 / mse.max(1e-10)).log10();
            acc.1 += out.bits.to_scalar::<f32>()? as f64 / pixels;
        }
    }
    let n = ds.val.len().max(1) as f64;
    Ok(res.into_iter().map(|(p, b)| (p / n, b / n)).collect())
}

/// [`validate`] as one log field: `bpp/dB` at every rate point.
fn validation_line(model: &CwModel, ds: &Dataset, dev: &Device) -> candle_core::Result<String> {
    let v = validate(model, ds, dev)?;
    Ok(v.iter()
        .map(|(p, b)| format!("{b:.3}bpp/{p:.2}dB"))
        .collect::<Vec<_>>()
        .join(" "))
}

/// What every training run starts with: the device, `out/train.log` opened for appending
/// with a first line describing the run (`what` leads it), and the data.
fn open_run(
    cfg: &TrainConfig,
    what: &str,
) -> Result<(Device, std::fs::File, Dataset), Box<dyn std::error::Error>> {
    let dev = if cfg.cuda {
        Device::new_cuda(0)?
    } else {
        Device::Cpu
    };
    std::fs::create_dir_all(&cfg.out)?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cfg.out.join("train.log"))?;
    let ds = Dataset::load(&cfg.data, cfg.patch, &cfg.sample_weights)?;
    writeln!(
        log,
        "# {what}data {} ({} train, {} val), batch {}, patch {}, lr {}",
        cfg.data.display(),
        ds.train.len(),
        ds.val.len(),
        cfg.batch,
        cfg.patch,
        cfg.lr
    )?;
    if !cfg.sample_weights.is_empty() {
        let shares = ds.sampling_shares();
        let grey: f64 = ds
            .train
            .iter()
            .zip(&shares)
            .filter(|(p, _)| p.is_grey())
            .map(|(_, s)| s)
            .sum();
        let rules: Vec<String> = cfg
            .sample_weights
            .iter()
            .map(|r| format!("{}={}", r.key, r.weight))
            .collect();
        writeln!(
            log,
            "# sample weights {}: greyscale images get {:.1} % of the crops",
            rules.join(" "),
            grey * 100.0
        )?;
    }
    Ok((dev, log, ds))
}

/// Runs training until `steps` or `minutes` is reached, checkpointing on the way.
pub fn train(cfg: &TrainConfig) -> Result<(), Box<dyn std::error::Error>> {
    let (dev, mut log, ds) = open_run(
        cfg,
        &format!(
            "cw, {} synthesis input, weight average {}: ",
            if cfg.ste { "rounded (--ste)" } else { "noisy" },
            cfg.ema
        ),
    )?;

    let resume = cfg.out.join("ckpt.safetensors");
    let source = cfg
        .init
        .clone()
        .or_else(|| resume.exists().then(|| resume.clone()));
    let synthesis = match &source {
        Some(p) => synthesis_of(p)?,
        None if cfg.pca_init => Synthesis::Igdn,
        None => Synthesis::Relu,
    };
    let mut vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    let model = CwModel::with_synthesis(vb, synthesis)?;
    init_fresh(&vm, &dev)?;
    let mut step = 0;
    if let Some(init) = &cfg.init {
        let widened = load_into(&mut vm, init)?;
        writeln!(log, "# initialised from {}", init.display())?;
        if let Some(w) = widened {
            let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed.wrapping_add(11));
            writeln!(
                log,
                "# widened from {} to {} latent channels",
                w.old_channels(),
                lic::model::cw::M
            )?;
            let report = w.fill_new_channels(&vm, &model, &ds, &mut rng, 64, 128)?;
            writeln!(log, "# {report}")?;
        }
    } else if resume.exists() {
        vm.load(&resume)?;
        step = read_step(&cfg.out);
        writeln!(log, "# resumed from {} at step {step}", resume.display())?;
    } else if cfg.pca_init {
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed.wrapping_add(7));
        let report = pca_init::pca_init(&vm, &model, &ds, &mut rng, 256, 128)?;
        writeln!(log, "# {report}")?;
    }
    // The weight average: resumed from out/ema.safetensors when resuming, else a copy.
    let mut vm_avg = VarMap::new();
    let avg = if cfg.ema > 0.0 {
        let model_avg = CwModel::with_synthesis(
            VarBuilder::from_varmap(&vm_avg, DType::F32, &dev),
            synthesis,
        )?;
        let saved = cfg.out.join("ema.safetensors");
        let keep = cfg.init.is_none() && resume.exists() && saved.exists();
        if keep {
            vm_avg.load(&saved)?;
        }
        let wa = WeightAverage::new(&vm_avg, &vm, cfg.ema, keep)?;
        Some((model_avg, wa))
    } else {
        None
    };
    // Validation of the live weights and, when kept, of their average.
    let validate_all = |log: &mut std::fs::File,
                        step: usize,
                        note: &str|
     -> Result<(), Box<dyn std::error::Error>> {
        let line = validation_line(&model, &ds, &dev)?;
        writeln!(log, "val step {step} {line}{note}")?;
        if let Some((model_avg, _)) = &avg {
            let line = validation_line(model_avg, &ds, &dev)?;
            writeln!(log, "val-ema step {step} {line}{note}")?;
        }
        Ok(())
    };
    validate_all(&mut log, step, " (start of run)")?;
    let all_vars: Vec<candle_core::Var> = vm.all_vars();
    let mut clip = GradClip::default();
    // The entropy-model and rate parameters (scales, gains, importance biases, context and
    // anchor-context nets) live in log units and must travel several units early on: they
    // get a 10x learning rate.
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    for (name, var) in vm.data().lock().unwrap().iter() {
        let entropy = ["base", "log_gain", "map_bias"].contains(&name.as_str())
            || name.starts_with("ctx")
            || name.starts_with("actx.");
        if entropy {
            fast.push(var.clone())
        } else {
            slow.push(var.clone())
        }
    }
    let mut opt = AdamW::new(
        slow,
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut opt_fast = AdamW::new(
        fast,
        ParamsAdamW {
            lr: cfg.lr * 10.0,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ step as u64);

    let bar = indicatif::ProgressBar::new(cfg.steps as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(step as u64);
    let start = Instant::now();
    let first_step = step;
    let mut last_ckpt = Instant::now();
    let (mut acc_loss, mut acc_psnr, mut acc_bpp, mut acc_n) = (0.0, 0.0, 0.0, 0);
    while step < cfg.steps && start.elapsed().as_secs_f64() < cfg.minutes * 60.0 {
        let x = ds.batch(&mut rng, cfg.batch, cfg.patch, &dev)?;
        // Not up to T_TOP, as a precaution (not shown to hurt): with the extrapolated half
        // step drawn too (λ up to 0.098) the mean gradient norm rose from ~2 to ~13 within
        // 200 steps (the live weights' norm at t = 4: 50, against 30 after 540 steps drawn
        // in [0, 4]; CHANGELOG.md, 2026-11-29).
        let pos = RatePos::from_t(rng.gen_range(0.0..(RATE_POINTS - 1) as f64));
        let out = model.train_forward(&x, pos, cfg.ste)?;
        let mse = (&out.x_hat - &x)?.sqr()?.mean_all()?;
        let bpp = (&out.bits / (cfg.batch * cfg.patch * cfg.patch) as f64)?;
        let rate_weight = ((step + 1) as f64 / cfg.warmup.max(1) as f64).min(1.0);
        let loss =
            ((&mse * (lic::model::cw::lambda(pos) * 255.0 * 255.0))? + (&bpp * rate_weight)?)?;
        let mut grads = loss.backward()?;
        clip.apply(&mut grads, &all_vars)?;
        let ramp = restart_ramp(step - first_step);
        opt.set_learning_rate(cfg.lr * ramp);
        opt_fast.set_learning_rate(cfg.lr * 10.0 * ramp);
        opt.step(&grads)?;
        opt_fast.step(&grads)?;
        if let Some((_, wa)) = &avg {
            wa.update()?;
        }
        step += 1;
        let mse_v = mse.to_scalar::<f32>()? as f64;
        acc_loss += loss.to_scalar::<f32>()? as f64;
        acc_psnr += 10.0 * (1.0 / mse_v.max(1e-10)).log10();
        acc_bpp += bpp.to_scalar::<f32>()? as f64;
        acc_n += 1;
        bar.set_position(step as u64);
        if step % cfg.log_every == 0 {
            let n = acc_n as f64;
            let msg = format!(
                "loss {:.4} psnr {:.2} bpp {:.3} kept {:.3} gnorm {:.3} clipped {}",
                acc_loss / n,
                acc_psnr / n,
                acc_bpp / n,
                out.kept.to_scalar::<f32>()?,
                clip.ema.unwrap_or(0.0),
                clip.clipped
            );
            bar.set_message(msg.clone());
            writeln!(
                log,
                "step {step} {msg} t {:.0}s",
                start.elapsed().as_secs_f64()
            )?;
            (acc_loss, acc_psnr, acc_bpp, acc_n) = (0.0, 0.0, 0.0, 0);
        }
        if step % cfg.val_every == 0 {
            validate_all(&mut log, step, "")?;
            // Every validated weight average is kept: a blow-up between two checkpoints
            // (one at step ~2900 of the widened run cost 0.5 dB) cannot take the best one.
            if avg.is_some() {
                save_atomic(&vm_avg, &cfg.out, &format!("ema-{step}"))?;
            }
        }
        if last_ckpt.elapsed().as_secs_f64() > cfg.ckpt_minutes * 60.0 {
            save_checkpoint(&vm, avg.as_ref().map(|_| &vm_avg), &cfg.out, step)?;
            last_ckpt = Instant::now();
        }
    }
    save_checkpoint(&vm, avg.as_ref().map(|_| &vm_avg), &cfg.out, step)?;
    let note = format!(" (end of run, {:.0}s)", start.elapsed().as_secs_f64());
    validate_all(&mut log, step, &note)?;
    bar.finish();
    Ok(())
}

/// The synthesis a checkpoint or weights file was trained with.
pub fn synthesis_of(path: &Path) -> Result<Synthesis, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    Ok(if st.names().iter().any(|n| n.starts_with("dec_gdn.")) {
        Synthesis::Igdn
    } else {
        Synthesis::Relu
    })
}

/// Loads a checkpoint or a shipped weights file (f16, with extra integer tensors) into the
/// variables that exist in `vm`. A cw file with fewer latent channels than [`lic::model::cw::M`]
/// is widened on the way (see [`widen`]), and the widening is returned.
pub fn load_into(
    vm: &mut VarMap,
    path: &Path,
) -> Result<Option<widen::Widening>, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    let m_file = st
        .tensor("log_gain")
        .ok()
        .and_then(|v| v.shape().get(1).copied());
    let widening = match m_file {
        Some(m) if m != lic::model::cw::M => Some(widen::Widening::new(m).ok_or_else(|| {
            format!(
                "{} has {m} latent channels: cannot widen to {}",
                path.display(),
                lic::model::cw::M
            )
        })?),
        _ => None,
    };
    let data = vm.data().lock().unwrap();
    for (name, var) in data.iter() {
        // Files from before the anchor context, and any file being widened (its slices
        // have other widths): the anchor context starts with zero second layers (every
        // offset 0), so the loaded model codes exactly as before.
        let view = match st.tensor(name) {
            Ok(v) if !(widening.is_some() && name.starts_with("actx.")) => v,
            _ if name.starts_with("actx.") => {
                if name.contains(".b.") {
                    var.set(&var.as_tensor().zeros_like()?)?;
                }
                continue;
            }
            _ => return Err(format!("{} lacks {name}", path.display()).into()),
        };
        let mut t =
            candle_core::safetensors::Load::load(&view, var.device())?.to_dtype(DType::F32)?;
        if let Some(w) = &widening {
            t = w.apply(name, &t, var.device())?;
        }
        var.set(&t)?;
    }
    Ok(widening)
}
