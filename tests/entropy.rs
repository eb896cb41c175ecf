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
