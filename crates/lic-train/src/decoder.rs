//! `lic-train decoder`: fine-tunes the decoder side of a cw weights file (the synthesis and
//! its post-filter) on the latents the shipped encoder really writes.
//!
//! The transform is trained with noisy or plainly rounded latents, but files hold latents
//! after the encoder's rate-distortion rounding, and the decoder's output is rounded to 8 bits
//! before the post-filter. Here the encoder, the entropy model and the symbols stay fixed:
//! every training image is coded once at two random `-q`, its decoded latents kept, and the
//! synthesis and post-filter are fitted to the originals (the mean of each crop's ln MSE). Files coded before decode
//! the same symbols; only the pictures change.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::distributions::{Distribution, WeightedIndex};
use rand::{Rng, SeedableRng};

use super::data::{Dataset, Picture, SampleWeight};
use super::export;
use super::postfilter::PostFilter;
use lic::container::Container;
use lic::metrics::psnr;
use lic::model::cw::{CwModel, M, STRIDE};
use lic::{Codec, CwWeights};

/// One coded image: its original pixels and the de-gained latents the decoder reads.
struct Coded {
    orig: Vec<u8>,
    width: usize,
    height: usize,
    /// Latent grid.
    lh: usize,
    lw: usize,
    /// Quantized values `(M, lh, lw)`, saturated to i16 (what the file codes; values past
    /// ±32767 do not occur in practice).
    values: Vec<i16>,
    q16: u16,
    /// PSNR of what the real decoder made of it (8-bit output, whole picture).
    psnr: f64,
    /// Relative sampling weight ([`SAMPLE_WEIGHTS`]).
    share: f64,
}

fn code(
    codec: &Codec,
    weights: &CwWeights,
    (p, share): (&Picture, f64),
    q: f32,
) -> Result<Coded, lic::Error> {
    let img = lic::Image {
        width: p.width as u32,
        height: p.height as u32,
        color: lic::ColorType::Rgb,
        data: p.rgb.clone(),
    };
    let file = codec.encode(&img, q)?;
    let dec = codec.decode(&file)?;
    let parsed = Container::parse(&file)?;
    let (lh, lw) = (p.height.div_ceil(STRIDE), p.width.div_ceil(STRIDE));
    let q16 = parsed.header.quality;
    let lat = lic::codec::read_latents(&parsed, weights)?;
    Ok(Coded {
        orig: p.rgb.clone(),
        width: p.width,
        height: p.height,
        lh,
        lw,
        values: lat.values.saturated().to_vec(),
        q16,
        psnr: psnr(&dec.data, &p.rgb),
        share,
    })
}

/// The latents of `c` inside the latent rectangle at `(i0, j0)`, `l_h`×`l_w`, de-gained, and
/// the original pixels under it (edge-replicated past the picture).
fn crop(
    c: &Coded,
    gains: &[f32],
    (i0, j0, l_h, l_w): (usize, usize, usize, usize),
    lat: &mut Vec<f32>,
    pix: &mut Vec<f32>,
) {
    let n = c.lh * c.lw;
    for (ch, g) in gains.iter().enumerate().take(M) {
        for i in 0..l_h {
            let row = &c.values[ch * n + (i0 + i) * c.lw + j0..][..l_w];
            lat.extend(row.iter().map(|&v| v as f32 / g));
        }
    }
    let (ph, pw) = (l_h * STRIDE, l_w * STRIDE);
    for ch in 0..3 {
        for y in 0..ph {
            let sy = (i0 * STRIDE + y).min(c.height - 1);
            for x in 0..pw {
                let sx = (j0 * STRIDE + x).min(c.width - 1);
                pix.push(c.orig[(sy * c.width + sx) * 3 + ch] as f32 / 255.0);
            }
        }
    }
}

/// The decoder as a file decodes: synthesis, 8-bit rounding (straight-through), post-filter.
fn decode(
    model: &CwModel,
    post: &PostFilter,
    lat: &Tensor,
    q: &Tensor,
) -> candle_core::Result<Tensor> {
    let x = model.synthesis(lat)?.clamp(0f32, 1f32)?;
    let x8 = ((&x * 255.0)?.round()? / 255.0)?;
    let x = (&x + (x8 - &x)?.detach())?;
    post.forward(&x, q)
}

fn rate_code(q16: u16) -> f32 {
    q16 as f32 / 65535.0
}

fn write_coded(train: &[Coded], val: &[Coded]) -> Vec<u8> {
    let mut b = (train.len() as u32).to_le_bytes().to_vec();
    for c in train.iter().chain(val) {
        for v in [c.width, c.height, c.lh, c.lw] {
            b.extend((v as u32).to_le_bytes());
        }
        b.extend(c.q16.to_le_bytes());
        b.extend(c.psnr.to_le_bytes());
        b.extend(c.share.to_le_bytes());
        b.extend(&c.orig);
        b.extend(c.values.iter().flat_map(|v| v.to_le_bytes()));
    }
    b
}

fn read_coded(b: &[u8]) -> Option<(usize, Vec<Coded>)> {
    let u = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let n = u(0)?;
    let (mut at, mut all) = (4, Vec::new());
    while at < b.len() {
        let (width, height, lh, lw) = (u(at)?, u(at + 4)?, u(at + 8)?, u(at + 12)?);
        let q16 = u16::from_le_bytes(b.get(at + 16..at + 18)?.try_into().ok()?);
        let psnr = f64::from_le_bytes(b.get(at + 18..at + 26)?.try_into().ok()?);
        let share = f64::from_le_bytes(b.get(at + 26..at + 34)?.try_into().ok()?);
        at += 34;
        let len = width * height * 3;
        let orig = b.get(at..at + len)?.to_vec();
        at += len;
        let nv = M * lh * lw;
        let values = b
            .get(at..at + 2 * nv)?
            .chunks_exact(2)
            .map(|x| i16::from_le_bytes([x[0], x[1]]))
            .collect();
        at += 2 * nv;
        all.push(Coded {
            orig,
            width,
            height,
            lh,
            lw,
            values,
            q16,
            psnr,
            share,
        });
    }
    Some((n, all))
}

/// Settings of [`fit`].
pub struct DecoderConfig<'a> {
    /// Training images.
    pub data: &'a Path,
    /// The cw weights file (with its post-filter) whose decoder is fitted.
    pub base: &'a Path,
    /// Folder for the log, the resumable checkpoint and `weights.safetensors`.
    pub out: &'a Path,
    /// Wall-clock budget in minutes.
    pub minutes: f64,
    /// Peak learning rate (reached after a linear warm-up of 100 steps).
    pub lr: f64,
    /// Crops per step.
    pub batch: usize,
    /// Crop side in latent positions (16 pixels each); the loss skips the outer one.
    pub crop: usize,
}

/// Codes the images (cached in OUT), then fits the decoder, logging the validation PSNR gain
/// over the real decoder of `base` at five `-q` and writing `weights.safetensors` whenever
/// it improves.
pub fn fit(cfg: &DecoderConfig) -> Result<(), Box<dyn std::error::Error>> {
    let out = cfg.out;
    std::fs::create_dir_all(out)?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("decoder.log"))?;
    let base_bytes = std::fs::read(cfg.base)?;
    let weights = CwWeights::from_bytes(&base_bytes)?;
    let codec = Codec::from_weights_bytes(&base_bytes)?.with_tile_size(0);
    if weights.synthesizer()?.post_filter().is_none() {
        return Err(format!("{} has no post-filter (post.*)", cfg.base.display()).into());
    }
    let rules = SAMPLE_WEIGHTS.map(|(key, weight)| SampleWeight {
        key: key.into(),
        weight,
    });
    let ds = Dataset::load(cfg.data, cfg.crop * STRIDE, &rules)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    const VAL_Q: [f32; 5] = [0.1, 0.3, 0.5, 0.7, 0.9];
    let t0 = Instant::now();
    let cache = out.join(format!("coded-{}.bin", codec.weights_id()));
    let cached = std::fs::read(&cache).ok().and_then(|b| read_coded(&b));
    let (train, val, shares) = match cached {
        Some((n, mut all)) => {
            let val = all.split_off(n);
            let shares = all.iter().map(|c| c.share).collect::<Vec<_>>();
            (all, val, shares)
        }
        None => {
            let mut train = Vec::new();
            for (p, &share) in ds.train.iter().zip(&ds.sampling_shares()) {
                for _ in 0..2 {
                    train.push(code(
                        &codec,
                        &weights,
                        (p, share),
                        rng.gen_range(0.0..=1.0),
                    )?);
                }
            }
            let mut val = Vec::new();
            for p in &ds.val {
                for q in VAL_Q {
                    val.push(code(&codec, &weights, (p, 1.0), q)?);
                }
            }
            std::fs::write(&cache, write_coded(&train, &val))?;
            let shares = train.iter().map(|c| c.share).collect::<Vec<_>>();
            (train, val, shares)
        }
    };
    let pick = WeightedIndex::new(&shares)?;
    writeln!(
        log,
        "# {} training codings, {} validation codings, made in {:.0}s; lr {}, batch {}, crop {}",
        train.len(),
        val.len(),
        t0.elapsed().as_secs_f64(),
        cfg.lr,
        cfg.batch,
        cfg.crop
    )?;

    let dev = Device::Cpu;
    let mut vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    let model = CwModel::with_synthesis(vb.clone(), super::synthesis_of(cfg.base)?)?;
    let post_width = base_post_width(&base_bytes)?;
    let post = PostFilter::new(vb, post_width)?;
    let resume = out.join("decoder.safetensors");
    if resume.exists() {
        super::load_into(&mut vm, &resume)?;
        writeln!(log, "# resumed from {}", resume.display())?;
    } else {
        super::load_into(&mut vm, cfg.base)?;
    }
    let trained: Vec<Var> = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| is_decoder(n))
        .map(|(_, v)| v.clone())
        .collect();

    let gains_of = |q16: u16| weights.gains(q16);
    // Validation: whole pictures, float decoder, 8-bit output, against the real decoder.
    let validate = |log: &mut std::fs::File, step: usize| -> candle_core::Result<f64> {
        let mut gains = [0.0; VAL_Q.len()];
        for (k, c) in val.iter().enumerate() {
            let g = gains_of(c.q16);
            let (mut lat, mut pix) = (Vec::new(), Vec::new());
            crop(c, &g, (0, 0, c.lh, c.lw), &mut lat, &mut pix);
            let lat = Tensor::from_vec(lat, (1, M, c.lh, c.lw), &dev)?;
            let q = Tensor::new(&[rate_code(c.q16)], &dev)?;
            let y = decode(&model, &post, &lat, &q)?.clamp(0f32, 1f32)?.i((
                0,
                ..,
                ..c.height,
                ..c.width,
            ))?;
            let y: Vec<f32> = (y * 255.0)?
                .round()?
                .permute((1, 2, 0))?
                .flatten_all()?
                .to_vec1()?;
            let y: Vec<u8> = y.iter().map(|&v| v as u8).collect();
            gains[k % VAL_Q.len()] += psnr(&y, &c.orig) - c.psnr;
        }
        let n = (val.len() / VAL_Q.len()) as f64;
        let line: Vec<String> = gains.iter().map(|g| format!("{:+.3}", g / n)).collect();
        let mean = gains.iter().sum::<f64>() / val.len() as f64;
        writeln!(
            log,
            "val step {step} gain dB over the real decoder at q 0.1/0.3/0.5/0.7/0.9: {} mean {mean:+.3}",
            line.join(" ")
        )
        .ok();
        log.flush().ok();
        Ok(mean)
    };
    let save = |vm: &VarMap, best: bool| -> Result<(), Box<dyn std::error::Error>> {
        vm.save(&resume)?;
        if best {
            export::replace_tensors(
                &base_bytes,
                vm,
                is_decoder,
                &out.join("weights.safetensors"),
            )?;
        }
        Ok(())
    };
    let mut best = validate(&mut log, 0)?;
    let mut opt = AdamW::new(
        trained,
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let (l, margin) = (cfg.crop, STRIDE);
    let start = Instant::now();
    let (mut step, mut acc) = (0usize, 0.0);
    while start.elapsed().as_secs_f64() < cfg.minutes * 60.0 {
        opt.set_learning_rate(cfg.lr * ((step + 1) as f64 / 100.0).min(1.0));
        let (mut lat, mut pix, mut qs) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..cfg.batch {
            let c = &train[pick.sample(&mut rng)];
            let i0 = rng.gen_range(0..=(c.height / STRIDE).saturating_sub(l));
            let j0 = rng.gen_range(0..=(c.width / STRIDE).saturating_sub(l));
            crop(c, &gains_of(c.q16), (i0, j0, l, l), &mut lat, &mut pix);
            qs.push(rate_code(c.q16));
        }
        let b = cfg.batch;
        let side = l * STRIDE;
        let lat = Tensor::from_vec(lat, (b, M, l, l), &dev)?;
        let pix = Tensor::from_vec(pix, (b, 3, side, side), &dev)?;
        let q = Tensor::from_vec(qs, b, &dev)?;
        let inner = side - 2 * margin;
        let y = decode(&model, &post, &lat, &q)?;
        let d = (y.narrow(2, margin, inner)?.narrow(3, margin, inner)?
            - pix.narrow(2, margin, inner)?.narrow(3, margin, inner)?)?;
        // The mean of each crop's ln MSE: every crop counts by its PSNR change, so the
        // low rates (large errors) do not outweigh the high ones, as a plain MSE lets them.
        let mse = d.sqr()?.flatten_from(1)?.mean(1)?;
        let loss = (mse.clone() + 1e-7)?.log()?.mean_all()?;
        opt.backward_step(&loss)?;
        acc += mse.mean_all()?.to_scalar::<f32>()? as f64;
        step += 1;
        if step % 50 == 0 {
            writeln!(
                log,
                "step {step} mse {:.3e} t {:.0}s",
                acc / 50.0,
                start.elapsed().as_secs_f64()
            )?;
            log.flush()?;
            acc = 0.0;
        }
        if step % 250 == 0 {
            let v = validate(&mut log, step)?;
            save(&vm, v > best)?;
            best = best.max(v);
        }
    }
    let v = validate(&mut log, step)?;
    save(&vm, v > best)?;
    Ok(())
}

/// How often each training image is drawn: grey pictures and the USC-SIPI textures and
/// aerials a quarter each, the transform trainer's `--sample-weight` recipe.
const SAMPLE_WEIGHTS: [(&str, f64); 2] = [("grey", 0.25), ("sipi", 0.25)];

/// The tensors this fit changes: the synthesis and the post-filter.
fn is_decoder(name: &str) -> bool {
    name.starts_with("dec.") || name.starts_with("dec_gdn.") || name.starts_with("post.")
}

/// Hidden width of the post-filter in a weights file.
fn base_post_width(bytes: &[u8]) -> Result<usize, Box<dyn std::error::Error>> {
    let st = safetensors::SafeTensors::deserialize(bytes)?;
    let t = st.tensor("post.0.weight")?;
    Ok(t.shape()[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coded(seed: u16, lh: usize, lw: usize) -> Coded {
        let (width, height) = (lw * STRIDE - 3, lh * STRIDE - 5);
        Coded {
            orig: (0..width * height * 3)
                .map(|k| (k * 7 + seed as usize) as u8)
                .collect(),
            width,
            height,
            lh,
            lw,
            values: (0..M * lh * lw)
                .map(|k| (k as i32 * 31 - 5000 + seed as i32) as i16)
                .collect(),
            q16: 1234 + seed,
            psnr: 31.25 + seed as f64,
            share: 0.0625,
        }
    }

    #[test]
    fn the_coding_cache_reads_back_what_was_written() {
        let train = [coded(1, 2, 3), coded(2, 1, 1)];
        let val = [coded(3, 3, 2)];
        let (n, all) = read_coded(&write_coded(&train, &val)).unwrap();
        assert_eq!((n, all.len()), (2, 3));
        for (a, b) in all.iter().zip(train.iter().chain(&val)) {
            assert_eq!(
                (a.width, a.height, a.lh, a.lw),
                (b.width, b.height, b.lh, b.lw)
            );
            assert_eq!((a.q16, a.psnr, a.share), (b.q16, b.psnr, b.share));
            assert_eq!(a.orig, b.orig);
            assert_eq!(a.values, b.values);
        }
        // A truncated cache is refused, not misread.
        let bytes = write_coded(&train, &val);
        assert!(read_coded(&bytes[..bytes.len() - 1]).is_none());
    }

    #[test]
    fn a_crop_degains_the_latents_and_replicates_the_edges() {
        let c = coded(0, 2, 3);
        let gains: Vec<f32> = (0..M).map(|k| 1.0 + k as f32).collect();
        let (mut lat, mut pix) = (Vec::new(), Vec::new());
        crop(&c, &gains, (1, 1, 1, 2), &mut lat, &mut pix);
        assert_eq!(lat.len(), M * 2);
        let n = c.lh * c.lw;
        for ch in [0, 17, M - 1] {
            for j in 0..2 {
                let v = c.values[ch * n + c.lw + 1 + j] as f32 / gains[ch];
                assert_eq!(lat[ch * 2 + j], v);
            }
        }
        // The crop's last pixel row and column lie past the picture: edge pixels repeat.
        let (ph, pw) = (STRIDE, 2 * STRIDE);
        assert_eq!(pix.len(), 3 * ph * pw);
        let at = |ch: usize, y: usize, x: usize| pix[(ch * ph + y) * pw + x];
        let orig =
            |ch: usize, y: usize, x: usize| c.orig[(y * c.width + x) * 3 + ch] as f32 / 255.0;
        assert_eq!(at(2, ph - 1, pw - 1), orig(2, c.height - 1, c.width - 1));
        assert_eq!(at(0, 0, 0), orig(0, STRIDE, STRIDE));
    }
}
