//! How much a one-step change of each latent channel moves the pixels (development aid):
//! for a few positions of held-out images, the pixel squared error (in 8-bit units, summed)
//! that adding one quantization step to channel c causes, per rate coordinate t.
//!
//! usage: cargo run --release --example rdo_sensitivity -- WEIGHTS IMAGE...
use candle_core::{Device, Tensor};
use lic::codec::cw::{to_tensor, Rect};
use lic::model::cw::{RatePos, M};
use lic::CwWeights;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let weights = CwWeights::from_bytes(&std::fs::read(&args[1])?)?;
    let model = weights.model()?;
    let dev = Device::Cpu;
    let mut table = String::new();
    for t in (0..10).map(|k| k as f64 * 0.5) {
        let (lg, _) = model.rate_params(RatePos::from_t(t))?;
        let g: Vec<f32> = lg.exp()?.to_vec1()?;
        let mut sens = vec![0f64; M];
        let mut count = 0;
        for f in &args[2..] {
            let img = image::open(f)?.to_rgb8();
            let (w, h) = (img.width() as usize, img.height() as usize);
            // An 8×8-latent window at the image centre; the perturbed latent at its middle.
            let (i0, j0) = (h / 32 - 4, w / 32 - 4);
            let r = Rect {
                i0,
                i1: i0 + 8,
                j0,
                j1: j0 + 8,
            };
            let x = to_tensor(img.as_raw(), w, h, &r, &dev)?;
            let (y, _) = model.analysis(&x)?;
            let y: Vec<f32> = y.flatten_all()?.to_vec1()?;
            let q: Vec<f32> = (0..M * 64)
                .map(|k| (y[k] * g[k / 64]).round() / g[k / 64])
                .collect();
            let mut batch = q.clone();
            for c in 0..M {
                let mut p = q.clone();
                p[c * 64 + 4 * 8 + 4] += 1.0 / g[c];
                batch.extend(p);
            }
            let b = Tensor::from_vec(batch, (M + 1, M, 8, 8), &dev)?;
            let base = model.synthesis(&b.narrow(0, 0, 1)?)?;
            for k in (0..M).step_by(32) {
                let n = 32.min(M - k);
                let out = model.synthesis(&b.narrow(0, k + 1, n)?)?;
                let d = out
                    .broadcast_sub(&base)?
                    .sqr()?
                    .sum((1, 2, 3))?
                    .to_vec1::<f32>()?;
                for (i, d) in d.iter().enumerate() {
                    sens[k + i] += *d as f64 * 255.0 * 255.0;
                }
            }
            count += 1;
        }
        let s: Vec<f64> = sens.iter().map(|s| s / count as f64).collect();
        let mut sorted = s.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let q = |f: f64| sorted[((sorted.len() - 1) as f64 * f) as usize];
        println!(
            "t {t}: λ {:.2e} quantiles 10/50/90 % {:.1} {:.1} {:.1}; by channel: {}",
            lic::model::cw::lambda(RatePos::from_t(t)),
            q(0.1),
            q(0.5),
            q(0.9),
            s.iter()
                .step_by(32)
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        table += &s
            .iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(" ");
        table += "\n";
    }
    if let Ok(out) = std::env::var("SENS_OUT") {
        std::fs::write(out, table)?;
    }
    Ok(())
}
