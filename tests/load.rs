//! A thumbnailer's pattern: many decodes at once from several threads of one process sharing
//! one `Codec`. Every output equals a lone decode of the same file, and the process's peak
//! resident memory stays within what the decoder's estimates allow for the decodes running
//! at once. Its own test binary, so that no other test's memory counts.
#![cfg(target_os = "linux")]

use lic::{Codec, ColorType, Image};

fn kodak(name: &str, w: u32, h: u32) -> Image {
    let img = image::open(format!(
        "{}/kodak-bench/kodak/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .into_rgb8();
    let crop = image::imageops::crop_imm(&img, 0, 0, w, h).to_image();
    Image {
        width: w,
        height: h,
        color: ColorType::Rgb,
        data: crop.into_raw(),
    }
}

/// A field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn concurrent_decodes_match_lone_ones_within_their_memory() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 2;
    let codec = Codec::embedded().unwrap();
    let files: Vec<Vec<u8>> = [
        (kodak("kodim23.png", 768, 512), 0.5),
        (kodak("kodim05.png", 512, 384), 0.3),
        (kodak("kodim19.png", 256, 256), 0.8),
    ]
    .iter()
    .map(|(img, q)| codec.encode(img, *q).unwrap())
    .collect();
    let lone: Vec<Image> = files.iter().map(|f| codec.decode(f).unwrap()).collect();
    let largest = files
        .iter()
        .map(|f| lic::codec::decode_memory(&lic::container::read_header(f).unwrap()))
        .max()
        .unwrap();

    // Peak from here on: writing 5 to clear_refs resets VmHWM to the current resident set.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let base = status_bytes("VmRSS:");
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (codec, files, lone) = (&codec, &files, &lone);
            s.spawn(move || {
                for r in 0..ROUNDS * files.len() {
                    let k = (t + r) % files.len();
                    let img = codec.decode(&files[k]).unwrap();
                    assert!(img == lone[k], "thread {t}, file {k}: other pixels");
                }
            });
        }
    });
    let peak = status_bytes("VmHWM:");
    // Each decode's estimate counts the resident code and weights (RESIDENT) once; the
    // process already holds them.
    let allowed = base + THREADS as u64 * (largest - lic::codec::RESIDENT);
    eprintln!(
        "{THREADS} threads × {} decodes: peak {:.0} MiB over a base of {:.0} MiB; allowed {:.0} MiB",
        ROUNDS * files.len(),
        peak as f64 / 1048576.0,
        base as f64 / 1048576.0,
        allowed as f64 / 1048576.0
    );
    assert!(peak <= allowed);
}
