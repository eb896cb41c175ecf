//! Hostile input: seeded random damage to the golden vectors (bit flips with and without a
//! repaired CRC, so the entropy decoder itself sees garbage; truncations; length-field edits)
//! must each give an error or an image, never a panic or a hang.

use std::time::{Duration, Instant};

use lic::container::{types, write_chunk, Container, SIGNATURE};
use lic::Codec;
use rand::{Rng, SeedableRng};

/// Rewrites every chunk's CRC so that payload damage reaches the decoders behind the CRC.
fn repair_crcs(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = SIGNATURE.to_vec();
    let mut pos = 8;
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = bytes[pos + 4..pos + 8].try_into().unwrap();
        if pos + 12 + len > bytes.len() {
            return None;
        }
        write_chunk(&mut out, kind, &bytes[pos + 8..pos + 8 + len]);
        pos += 12 + len;
    }
    Some(out)
}

#[test]
fn random_damage_never_panics() {
    let codec = Codec::embedded().unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden");
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let (mut errors, mut images) = (0, 0);
    for name in [
        "rgb-64x48-q030.lic",
        "rgb-33x17-q090.lic",
        "grey-40x40-q050.lic",
        "rgb-160x112-tile64-q050.lic",
    ] {
        let good = std::fs::read(dir.join(name)).unwrap();
        assert!(Container::parse(&good).is_ok());
        // Byte ranges of the CWLT payloads, to aim a quarter of the flips at the rANS words.
        let streams: Vec<std::ops::Range<usize>> = Container::parse(&good)
            .unwrap()
            .find_all(types::CWLT)
            .iter()
            .map(|s| {
                let at = s.as_ptr() as usize - good.as_ptr() as usize;
                at..at + s.len()
            })
            .collect();
        for k in 0..700 {
            let mut bad = good.clone();
            match k % 4 {
                0 => {
                    let n = rng.gen_range(1..4);
                    for _ in 0..n {
                        let p = rng.gen_range(0..bad.len());
                        bad[p] ^= 1 << rng.gen_range(0..8);
                    }
                }
                1 => {
                    let s = streams[rng.gen_range(0..streams.len())].clone();
                    let p = rng.gen_range(s);
                    bad[p] ^= 1 << rng.gen_range(0..8);
                    bad = repair_crcs(&bad).unwrap();
                }
                2 => bad.truncate(rng.gen_range(0..good.len())),
                _ => {
                    // Overwrite a chunk length field with a random value.
                    let at = [8usize, 8 + 12 + lic::container::HEAD_LEN][rng.gen_range(0..2)];
                    let v: u32 = if rng.gen_bool(0.5) {
                        rng.gen()
                    } else {
                        rng.gen_range(0..200)
                    };
                    bad[at..at + 4].copy_from_slice(&v.to_be_bytes());
                }
            }
            let t = Instant::now();
            match codec.decode(&bad) {
                Ok(img) => {
                    assert_eq!(
                        img.data.len(),
                        (img.width * img.height) as usize * img.color.channels()
                    );
                    images += 1;
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    errors += 1;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{name} mutation {k} took {:?}",
                t.elapsed()
            );
        }
    }
    // Flips behind repaired CRCs are only sometimes detectable; everything else must be.
    assert!(
        errors > 1500,
        "only {errors} of {} damaged files were rejected ({images} decoded)",
        errors + images
    );
}
