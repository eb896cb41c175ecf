//! Replays every input the fuzzers (`fuzz/`, cargo-fuzz) ever found a failure with, through
//! the same checks the fuzz targets run (`fuzz/checks.rs`), plus the golden vectors as a
//! smoke input. A finding is saved as `tests/fuzz-regressions/<target>/<name>` when fixed.
//! The checks build their rnn codec with the trainer's weight writer (`lic-train`).

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        eprintln!("{target}: {}", path.display());
        check(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

#[test]
fn fuzz_findings_stay_fixed() {
    replay("container", checks::container);
    replay("decode", checks::decode);
    replay("entropy", checks::entropy);
    replay("crafted", checks::crafted);
}

#[test]
fn the_checks_accept_the_golden_vectors() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden");
    for entry in std::fs::read_dir(golden).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "lic") {
            let bytes = std::fs::read(&path).unwrap();
            checks::container(&bytes);
            // Mode byte 0: CRCs as they are; 1: repaired (a no-op on a good file).
            for mode in [0u8, 1, 0x41] {
                let mut input = vec![mode];
                input.extend_from_slice(&bytes);
                checks::decode(&input);
            }
            checks::entropy(&bytes);
        }
    }
}

/// rnn files made with the decode check's fixed rnn weights: small RGB and grey-with-alpha
/// pictures, 4 and 12 layers.
fn rnn_seeds() -> Vec<(String, Vec<u8>)> {
    let codec = checks::codec();
    let mut out = Vec::new();
    for (name, color, w, h) in [
        ("rgb-24x17", lic::ColorType::Rgb, 24u32, 17u32),
        ("greyalpha-9x30", lic::ColorType::GrayAlpha, 9, 30),
    ] {
        let ch = color.channels();
        let data = (0..(w * h) as usize * ch)
            .map(|i| ((i * 37) % 251) as u8)
            .collect();
        let img = lic::Image {
            width: w,
            height: h,
            color,
            data,
        };
        for q in [0.3f32, 1.0] {
            let bytes = codec.encode(&img, q).unwrap();
            assert_eq!(lic::info(&bytes).unwrap().header.model, lic::ModelKind::Rnn);
            out.push((format!("rnn-{name}-q{q}"), bytes));
        }
    }
    out
}

#[test]
fn the_checks_accept_rnn_files_whole_cut_and_damaged() {
    for (_, bytes) in rnn_seeds() {
        // Mode bytes: CRCs as they are or repaired, the stream cut at several places.
        for mode in [0u8, 1, 0x41, 0x81, 0xff] {
            let mut input = vec![mode];
            input.extend_from_slice(&bytes);
            checks::decode(&input);
        }
        // Cut files, and a flipped bit in every 7th byte with the CRCs repaired.
        for cut in (1..bytes.len()).step_by(13) {
            let mut input = vec![1u8];
            input.extend_from_slice(&bytes[..cut]);
            checks::decode(&input);
        }
        for at in (8..bytes.len()).step_by(7) {
            let mut input = vec![1u8];
            input.extend_from_slice(&bytes);
            input[1 + at] ^= 0x10;
            checks::decode(&input);
        }
    }
}

/// Writes the rnn seeds into the decode corpus (`fuzz/seed.sh` runs this).
#[test]
#[ignore]
fn write_rnn_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in rnn_seeds() {
        for mode in [0u8, 1] {
            let mut input = vec![mode];
            input.extend_from_slice(&bytes);
            std::fs::write(dir.join(format!("{name}-{mode}")), input).unwrap();
        }
    }
}
