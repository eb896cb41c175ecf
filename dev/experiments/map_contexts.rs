//! Bits of the importance map under other context choices (development aid): tables counted
//! on training images (every 4th file), cross-entropy measured on the held-out validation
//! images (every 40th file, `train::data::VAL_EVERY`), at rate coordinates 0, 0.5, …, 4.5.
//!
//! usage: cargo run --release --features train --example map_contexts -- WEIGHTS DIR
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use lic::codec::cw::levels_from_logits;
use lic::entropy::params::IntParams;
use lic::model::cw::{CwModel, RatePos, LEVELS, T_TOP};
use lic_train::data::{centre_crop, image_files, load_picture, VAL_EVERY};

/// A context scheme: the context of (i, j) from the levels so far and the rate coordinate.
type Scheme = fn(&[u8], usize, usize, usize, f64) -> usize;

const L: usize = LEVELS + 1; // a neighbour's level, or "none"

fn up_left(levels: &[u8], w: usize, i: usize, j: usize) -> (usize, usize) {
    let up = if i > 0 {
        levels[(i - 1) * w + j] as usize
    } else {
        LEVELS
    };
    let left = if j > 0 {
        levels[i * w + j - 1] as usize
    } else {
        LEVELS
    };
    (up, left)
}

/// The shipped scheme: floor average of up and left.
fn average(levels: &[u8], w: usize, i: usize, j: usize, _t: f64) -> usize {
    IntParams::map_context(levels, w, i, j) as usize
}

fn average_by_rate(levels: &[u8], w: usize, i: usize, j: usize, t: f64) -> usize {
    average(levels, w, i, j, t) * 10 + (t * 2.0).round() as usize
}

fn pair(levels: &[u8], w: usize, i: usize, j: usize, _t: f64) -> usize {
    let (u, l) = up_left(levels, w, i, j);
    u * L + l
}

fn pair_by_rate(levels: &[u8], w: usize, i: usize, j: usize, t: f64) -> usize {
    pair(levels, w, i, j, t) * 10 + (t * 2.0).round() as usize
}

fn three(levels: &[u8], w: usize, i: usize, j: usize, _t: f64) -> usize {
    let (u, l) = up_left(levels, w, i, j);
    let ur = if i > 0 && j + 1 < w {
        levels[(i - 1) * w + j + 1] as usize
    } else {
        LEVELS
    };
    // The average of up and up-right keeps the table count down.
    let a = if ur == LEVELS {
        u
    } else if u == LEVELS {
        ur
    } else {
        (u + ur) / 2
    };
    a * L + l
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dev = Device::Cpu;
    // SAFETY: the file is not modified while mapped (a development tool).
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&args[1]], DType::F32, &dev)? };
    let model = CwModel::new(vb)?;
    let files = image_files(args[2].as_ref())?;
    let ts: Vec<f64> = (0..=9)
        .map(|k| k as f64 * 0.5)
        .filter(|&t| t <= T_TOP)
        .collect();
    // (levels, w, is_validation) per image and rate coordinate.
    let mut maps: Vec<(Vec<u8>, usize, f64, bool)> = Vec::new();
    for (n, f) in files.iter().enumerate() {
        let val = n % VAL_EVERY == VAL_EVERY / 2;
        if !val && n % 4 != 0 {
            continue;
        }
        let x = centre_crop(&load_picture(f)?, 512, &dev)?;
        let (_, logit) = model.analysis(&x)?;
        let w = logit.dims4()?.3;
        let logit: Vec<f32> = logit.flatten_all()?.to_vec1()?;
        for &t in &ts {
            let mb: f32 = model.rate_params(RatePos::from_t(t))?.1.to_scalar()?;
            maps.push((levels_from_logits(&logit, mb), w, t, val));
        }
    }
    let schemes: [(&str, Scheme, usize); 5] = [
        ("average (shipped)", average, L),
        ("average × rate", average_by_rate, L * 10),
        ("up, left", pair, L * L),
        ("up, left × rate", pair_by_rate, L * L * 10),
        ("avg(up, up-right), left", three, L * L),
    ];
    for (name, scheme, n) in schemes {
        let mut counts = vec![0.5f64; n * LEVELS];
        for (lv, w, t, val) in &maps {
            if *val {
                continue;
            }
            for p in 0..lv.len() {
                let c = scheme(lv, *w, p / w, p % w, *t);
                counts[c * LEVELS + lv[p] as usize] += 1.0;
            }
        }
        let mut per_t = vec![(0.0f64, 0usize); ts.len()];
        for (lv, w, t, val) in &maps {
            if !*val {
                continue;
            }
            let k = ts.iter().position(|x| x == t).unwrap();
            for p in 0..lv.len() {
                let c = scheme(lv, *w, p / w, p % w, *t);
                let row = &counts[c * LEVELS..(c + 1) * LEVELS];
                let total: f64 = row.iter().sum();
                per_t[k].0 -= (row[lv[p] as usize] / total).log2();
                per_t[k].1 += 1;
            }
        }
        let line: Vec<String> = per_t
            .iter()
            .map(|(b, n)| format!("{:.3}", b / *n as f64))
            .collect();
        println!(
            "{name:26} bits/position at t = 0, 0.5, …: {}",
            line.join(" ")
        );
    }
    Ok(())
}
