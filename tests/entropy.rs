//! The rANS symbol stream: random symbols and scales round trip exactly (escapes included),
//! the stream matches the model's estimate, and damage is detected.

use lic::entropy::tables::{categorical, quantize, ScaleTables};
use lic::entropy::{SymbolReader, SymbolWriter};
use lic::model::cw::SCALE_COUNT;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

fn side_models() -> (Vec<lic::entropy::tables::Categorical>, Vec<Vec<u32>>) {
    let freqs: Vec<Vec<u32>> = (0..3)
        .map(|k| {
            quantize(
                &(0..20)
                    .map(|i| 1.0 + ((i * (k + 1)) % 7) as f64)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    (freqs.iter().map(|f| categorical(f)).collect(), freqs)
}

fn laplace_sample(rng: &mut impl Rng, table: usize) -> i32 {
    let b = lic::entropy::tables::scale_of(table);
    // Inverse CDF of the Laplace distribution, then round.
    let u: f64 = rng.gen_range(-0.5..0.5);
    (-b * u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln()).round() as i32
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_symbols_round_trip(seed: u64, n in 0usize..3000, wild in 0u32..4) {
        let scales = ScaleTables::new();
        let (side, _) = side_models();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut ops = Vec::new();
        let mut w = SymbolWriter::new();
        for _ in 0..n {
            if rng.gen_bool(0.1) {
                let (m, s) = (rng.gen_range(0..3u16), rng.gen_range(0..20u16));
                w.side(m, s);
                ops.push((true, m as i64, s as i32));
            } else {
                let t = rng.gen_range(0..SCALE_COUNT);
                // Mostly in-distribution values; `wild` mixes in escapes up to ±2^20.
                let v = if rng.gen_range(0..8) < wild { rng.gen_range(-(1 << 20)..=(1 << 20)) } else { laplace_sample(&mut rng, t) };
                w.latent(t as u8, v);
                ops.push((false, t as i64, v));
            }
        }
        let bytes = w.finish(&scales, &side).unwrap();
        let mut r = SymbolReader::new(&bytes, &scales, &side).unwrap();
        for &(is_side, m, v) in &ops {
            if is_side {
                prop_assert_eq!(r.side(m as u16).unwrap() as i32, v);
            } else {
                prop_assert_eq!(r.latent(m as u8).unwrap(), v);
            }
        }
        prop_assert!(r.finish().is_ok());
    }
}

#[test]
fn stream_size_matches_estimate() {
    let scales = ScaleTables::new();
    let (side, side_freqs) = side_models();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut w = SymbolWriter::new();
    for _ in 0..200_000 {
        let t = rng.gen_range(0..SCALE_COUNT);
        w.latent(t as u8, laplace_sample(&mut rng, t));
    }
    let bytes = w.finish(&scales, &side).unwrap();
    let est = w.estimated_bits(&scales, &side, &side_freqs);
    let real = bytes.len() as f64 * 8.0;
    assert!(
        real >= est * 0.999 && real <= est * 1.01 + 64.0,
        "real {real} bits vs estimate {est}"
    );
}

#[test]
fn leftover_or_damaged_streams_are_errors() {
    let scales = ScaleTables::new();
    let (side, _) = side_models();
    let mut w = SymbolWriter::new();
    for k in 0..500 {
        w.latent((k % 64) as u8, (k % 13) - 6);
    }
    let bytes = w.finish(&scales, &side).unwrap();
    // Reading fewer symbols than were written leaves data: an error.
    let mut r = SymbolReader::new(&bytes, &scales, &side).unwrap();
    for k in 0..400 {
        r.latent((k % 64) as u8).unwrap();
    }
    assert!(r.finish().is_err());
    // Odd lengths are refused.
    assert!(SymbolReader::new(&bytes[..bytes.len() - 1], &scales, &side).is_err());
}

/// The integer anchor context (spec §6.4b) computes what the float network it was exported
/// from computes, to within the fixed-point rounding: same inputs, same order, same taps.
#[test]
fn integer_anchor_context_follows_the_float_network() {
    use lic::model::cw::{slice_start, CTX_CLIP, M, SLICES};
    let w = lic::model::weights::CwWeights::embedded().unwrap();
    let (h, wd) = (9, 11);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    // Sparse small values, a few beyond the clip.
    let values: Vec<i32> = (0..M * h * wd)
        .map(|_| match rng.gen_range(0..10) {
            0..=5 => 0,
            6..=8 => rng.gen_range(-3..=3),
            _ => rng.gen_range(-40..=40),
        })
        .collect();
    let anchors: Vec<f32> = values
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            let p = k % (h * wd);
            if (p / wd + p % wd) % 2 == 0 {
                v.clamp(-CTX_CLIP, CTX_CLIP) as f32
            } else {
                0.0
            }
        })
        .collect();
    let t =
        candle_core::Tensor::from_vec(anchors, (1, M, h, wd), &candle_core::Device::Cpu).unwrap();
    let float: Vec<f32> = w
        .model()
        .unwrap()
        .anchor_context(&t)
        .unwrap()
        .expect("the shipped weights have an anchor context")
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    // ln σ → scale-index units ·2^8.
    let unit = 256.0 / lic_train::export::index_step();
    let n = h * wd;
    let (mut worst, mut sum, mut count) = (0f64, 0f64, 0usize);
    // The decoder keeps values as i16 (all of these fit).
    let narrow: Vec<i16> = values.iter().map(|&v| v as i16).collect();
    for k in 1..SLICES {
        let int = w.int.anchor_offsets(&narrow, h, wd, k).unwrap();
        let width = slice_start(k + 1) - slice_start(k);
        // Anchor positions only, stored position-major at half_index(p).
        for p in (0..n).filter(|p| (p / wd + p % wd) % 2 == 0) {
            let at = lic::entropy::params::half_index(p) * width;
            for (c, &x) in int[at..at + width].iter().enumerate() {
                let f = float[(slice_start(k) + c) * n + p] as f64 * unit;
                let d = (f - x as f64).abs();
                worst = worst.max(d);
                sum += d;
                count += 1;
            }
        }
    }
    eprintln!(
        "worst {worst:.2}, mean {:.3} (1/256 index steps)",
        sum / count as f64
    );
    // Measured with the shipped weights: worst 21.8, mean 2.1 (a twelfth and a hundred-and-
    // twentieth of an index step). A wrong tap or input order is off by whole steps.
    let mean = sum / count as f64;
    assert!(worst < 64.0 && mean < 4.0, "worst {worst}, mean {mean}");
}
