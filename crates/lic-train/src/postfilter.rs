//! `lic-train postfilter`: fits a small full-resolution residual network on pictures the
//! shipped cw codec decoded (real files, real quantization), to measure what a post-filter
//! would add and to train one.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};

use super::data::{Dataset, Picture};
use super::export;
use lic::model::layers::Conv;

/// A decoded picture beside its original.
pub struct Pair {
    /// Original RGB8.
    pub orig: Vec<u8>,
    /// What the codec decoded, RGB8.
    pub dec: Vec<u8>,
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// The `-q` it was coded at.
    pub q: f32,
}

/// The post-filter: `x + f([x − ½, q])`, f a 3×3, a 1×1 and a 3×3 convolution with ReLUs
/// between (each output pixel reads the pixels within 2 of it).
pub struct PostFilter {
    convs: Vec<Conv>,
}

impl PostFilter {
    /// Creates the filter of `width` hidden channels under `vb`.
    pub fn new(vb: VarBuilder, width: usize) -> candle_core::Result<Self> {
        Ok(Self {
            convs: vec![
                Conv::new(vb.pp("post.0"), 4, width, 3)?,
                Conv::new(vb.pp("post.1"), width, width, 1)?,
                Conv::new(vb.pp("post.2"), width, 3, 3)?,
            ],
        })
    }

    /// `x` `(B, 3, H, W)` in [0, 1], `q` `(B)` → the filtered picture.
    pub fn forward(&self, x: &Tensor, q: &Tensor) -> candle_core::Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let plane = q.reshape((b, 1, 1, 1))?.broadcast_as((b, 1, h, w))?;
        let mut y = Tensor::cat(&[&(x - 0.5)?, &plane], 1)?;
        for (i, c) in self.convs.iter().enumerate() {
            y = c.forward(&y)?;
            if i + 1 < self.convs.len() {
                y = y.relu()?;
            }
        }
        x + y
    }
}

fn encode_decode(codec: &lic::Codec, p: &Picture, q: f32) -> Result<Pair, lic::Error> {
    let img = lic::Image {
        width: p.width as u32,
        height: p.height as u32,
        color: lic::ColorType::Rgb,
        data: p.rgb.clone(),
    };
    let dec = codec.decode(&codec.encode(&img, q)?)?;
    Ok(Pair {
        orig: p.rgb.clone(),
        dec: dec.data,
        width: p.width,
        height: p.height,
        q,
    })
}

/// Crops of pairs as tensors: (decoded, original, q).
fn crops(
    pairs: &[&Pair],
    at: &[(usize, usize)],
    patch: usize,
    dev: &Device,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let b = pairs.len();
    let mut d = vec![0f32; b * 3 * patch * patch];
    let mut o = vec![0f32; b * 3 * patch * patch];
    for (i, (p, &(y0, x0))) in pairs.iter().zip(at).enumerate() {
        for y in 0..patch {
            for x in 0..patch {
                let s = ((y0 + y) * p.width + x0 + x) * 3;
                for c in 0..3 {
                    let k = ((i * 3 + c) * patch + y) * patch + x;
                    d[k] = p.dec[s + c] as f32 / 255.0;
                    o[k] = p.orig[s + c] as f32 / 255.0;
                }
            }
        }
    }
    // The decoder sees the file's rate code, not the encoder's -q.
    let q: Vec<f32> = pairs
        .iter()
        .map(|p| lic::Quality::new(p.q).map_or(0.0, |q| q.cw_rate_code() as f32 / 65535.0))
        .collect();
    Ok((
        Tensor::from_vec(d, (b, 3, patch, patch), dev)?,
        Tensor::from_vec(o, (b, 3, patch, patch), dev)?,
        Tensor::from_vec(q, b, dev)?,
    ))
}

fn write_pairs(train: &[Pair], val: &[Pair]) -> Vec<u8> {
    let mut b = (train.len() as u32).to_le_bytes().to_vec();
    for p in train.iter().chain(val) {
        b.extend((p.width as u32).to_le_bytes());
        b.extend((p.height as u32).to_le_bytes());
        b.extend(p.q.to_le_bytes());
        b.extend(&p.orig);
        b.extend(&p.dec);
    }
    b
}

fn read_pairs(b: &[u8]) -> (usize, Vec<Pair>) {
    let u = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let n = u(0) as usize;
    let (mut at, mut pairs) = (4, Vec::new());
    while at < b.len() {
        let (width, height) = (u(at) as usize, u(at + 4) as usize);
        let q = f32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap());
        let len = width * height * 3;
        at += 12;
        let orig = b[at..at + len].to_vec();
        let dec = b[at + len..at + 2 * len].to_vec();
        at += 2 * len;
        pairs.push(Pair {
            orig,
            dec,
            width,
            height,
            q,
        });
    }
    (n, pairs)
}

fn psnr8(a: &Tensor, b: &Tensor) -> candle_core::Result<f64> {
    let a = (a.clamp(0f32, 1f32)? * 255.0)?.round()?;
    let b = (b * 255.0)?.round()?;
    let mse = (a - b)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
    Ok(10.0 * (255.0f64 * 255.0 / mse.max(1e-10)).log10())
}

/// Makes the pairs (two random `-q` per training image, five fixed ones per validation
/// image), then trains the filter, logging validation PSNR gains by `-q`.
pub fn fit(
    data: &Path,
    base: &Path,
    out: &Path,
    width: usize,
    minutes: f64,
    lr: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(out)?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("postfilter.log"))?;
    let ds = Dataset::load(data, 128, &[])?;
    let codec = lic::Codec::from_weights_file(base)?;
    let base_bytes = std::fs::read(base)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let t0 = Instant::now();
    const VAL_Q: [f32; 5] = [0.1, 0.3, 0.5, 0.7, 0.9];
    let cache = out.join(format!("pairs-{}.bin", codec.weights_id()));
    let (train, val) = if let Ok(bytes) = std::fs::read(&cache) {
        let (n, pairs) = read_pairs(&bytes);
        let mut pairs = pairs;
        let val = pairs.split_off(n);
        (pairs, val)
    } else {
        let mut train = Vec::new();
        for p in &ds.train {
            for _ in 0..2 {
                train.push(encode_decode(&codec, p, rng.gen_range(0.0..=1.0))?);
            }
        }
        let mut val = Vec::new();
        for p in &ds.val {
            for q in VAL_Q {
                val.push(encode_decode(&codec, p, q)?);
            }
        }
        std::fs::write(&cache, write_pairs(&train, &val))?;
        (train, val)
    };
    writeln!(
        log,
        "# {} training pairs, {} validation pairs, made in {:.0}s; width {width}, lr {lr}",
        train.len(),
        val.len(),
        t0.elapsed().as_secs_f64()
    )?;
    let dev = Device::Cpu;
    let mut vm = VarMap::new();
    let filter = PostFilter::new(VarBuilder::from_varmap(&vm, DType::F32, &dev), width)?;
    let resume = out.join("postfilter.safetensors");
    if resume.exists() {
        vm.load(&resume)?;
        writeln!(log, "# resumed from {}", resume.display())?;
    } else {
        // Start at the identity: the last layer's weights zero.
        for (name, var) in vm.data().lock().unwrap().iter() {
            if name.starts_with("post.2") {
                var.set(&var.zeros_like()?)?;
            }
        }
    }
    let save = |vm: &VarMap| -> Result<(), Box<dyn std::error::Error>> {
        vm.save(&resume)?;
        export::replace_tensors(
            &base_bytes,
            vm,
            |n| n.starts_with("post."),
            &out.join("weights.safetensors"),
        )
    };
    let validate = |log: &mut std::fs::File, step: usize| -> candle_core::Result<()> {
        let mut gains = vec![0.0; VAL_Q.len()];
        for (i, p) in val.iter().enumerate() {
            let side = 256.min(p.height).min(p.width);
            let at = [((p.height - side) / 2, (p.width - side) / 2)];
            let (d, o, q) = crops(&[p], &at, side, &dev)?;
            let f = filter.forward(&d, &q)?;
            gains[i % VAL_Q.len()] += psnr8(&f, &o)? - psnr8(&d, &o)?;
        }
        let n = (val.len() / VAL_Q.len()) as f64;
        let line: Vec<String> = gains.iter().map(|g| format!("{:+.3}", g / n)).collect();
        writeln!(
            log,
            "val step {step} gain dB at q 0.1/0.3/0.5/0.7/0.9: {} mean {:+.3}",
            line.join(" "),
            gains.iter().sum::<f64>() / val.len() as f64
        )
        .ok();
        log.flush().ok();
        Ok(())
    };
    validate(&mut log, 0)?;
    let vars = vm.all_vars();
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let (batch, patch) = (16, 96);
    let start = Instant::now();
    let mut step = 0;
    let mut acc = 0.0;
    while start.elapsed().as_secs_f64() < minutes * 60.0 {
        let picks: Vec<&Pair> = (0..batch)
            .map(|_| &train[rng.gen_range(0..train.len())])
            .filter(|p| p.width >= patch && p.height >= patch)
            .collect();
        let at: Vec<(usize, usize)> = picks
            .iter()
            .map(|p| {
                (
                    rng.gen_range(0..=p.height - patch),
                    rng.gen_range(0..=p.width - patch),
                )
            })
            .collect();
        let (d, o, q) = crops(&picks, &at, patch, &dev)?;
        let loss = (filter.forward(&d, &q)? - o)?.sqr()?.mean_all()?;
        opt.backward_step(&loss)?;
        acc += loss.to_scalar::<f32>()? as f64;
        step += 1;
        if step % 50 == 0 {
            writeln!(
                log,
                "step {step} mse {:.3e} t {:.0}s",
                acc / 50.0,
                start.elapsed().as_secs_f64()
            )?;
            acc = 0.0;
        }
        if step % 250 == 0 {
            validate(&mut log, step)?;
            save(&vm)?;
        }
    }
    validate(&mut log, step)?;
    save(&vm)
}
