//! Golden vectors: the files in `format-spec/golden/` decode to the latent symbols and pixels
//! recorded in `format-spec/golden/EXPECTED.txt`.
//!
//! After the shipped weights change, regenerate them with
//! `cargo test --release --test golden -- --ignored regenerate` (and say so in the commit).

use std::fmt::Write as _;
use std::path::PathBuf;

use lic::container::Container;
use lic::{Codec, ColorType, CwWeights, Image};
use sha2::{Digest, Sha256};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden")
}

fn hex(d: &[u8]) -> String {
    d.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-256 of the decoded symbols: levels, then values as little-endian i32.
fn symbol_hash(weights: &CwWeights, bytes: &[u8]) -> String {
    let c = Container::parse(bytes).unwrap();
    let lat = lic::codec::read_latents(&c, weights).unwrap();
    let mut d = Sha256::new();
    d.update(&lat.levels);
    for v in &lat.values {
        d.update(v.to_le_bytes());
    }
    hex(&d.finalize())
}

fn pixel_hash(img: &Image) -> String {
    hex(&Sha256::digest(&img.data))
}

/// (file, source image, crop, colour, quality, tile side in pixels)
const CASES: [(&str, &str, (u32, u32, u32, u32), ColorType, f32, u32); 4] = [
    (
        "rgb-64x48-q030.lic",
        "kodim04.png",
        (300, 200, 64, 48),
        ColorType::Rgb,
        0.3,
        0,
    ),
    (
        "rgb-33x17-q090.lic",
        "kodim07.png",
        (100, 100, 33, 17),
        ColorType::Rgb,
        0.9,
        0,
    ),
    (
        "grey-40x40-q050.lic",
        "kodim10.png",
        (200, 300, 40, 40),
        ColorType::Gray,
        0.5,
        0,
    ),
    // Six tiles of 64×64 (the last column and row partial): each its own CWLT stream.
    (
        "rgb-160x112-tile64-q050.lic",
        "kodim19.png",
        (200, 250, 160, 112),
        ColorType::Rgb,
        0.5,
        64,
    ),
];

#[test]
#[ignore = "writes format-spec/golden/; run after the shipped weights change"]
fn regenerate() {
    let codec = Codec::embedded().unwrap();
    let weights = CwWeights::embedded().unwrap();
    std::fs::create_dir_all(golden_dir()).unwrap();
    let mut expected =
        String::from("# file symbols-sha256 pixels-sha256 (written by tests/golden.rs)\n");
    for (file, src, (x, y, w, h), color, q, tile) in CASES {
        let path = format!("{}/kodak-bench/kodak/{src}", env!("CARGO_MANIFEST_DIR"));
        let rgb = image::open(path)
            .unwrap()
            .crop_imm(x, y, w, h)
            .into_rgb8()
            .into_raw();
        let data = if color == ColorType::Gray {
            rgb.chunks(3).map(|p| p[1]).collect()
        } else {
            rgb
        };
        let img = Image {
            width: w,
            height: h,
            color,
            data,
        };
        let bytes = Codec::embedded()
            .unwrap()
            .with_tile_size(tile)
            .encode(&img, q)
            .unwrap();
        std::fs::write(golden_dir().join(file), &bytes).unwrap();
        let out = codec.decode(&bytes).unwrap();
        writeln!(
            expected,
            "{file} {} {}",
            symbol_hash(&weights, &bytes),
            pixel_hash(&out)
        )
        .unwrap();
    }
    std::fs::write(golden_dir().join("EXPECTED.txt"), expected).unwrap();
}

#[test]
fn golden_vectors_decode_to_recorded_hashes() {
    let codec = Codec::embedded().unwrap();
    let weights = CwWeights::embedded().unwrap();
    let expected = std::fs::read_to_string(golden_dir().join("EXPECTED.txt")).unwrap();
    let mut n = 0;
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let bytes = std::fs::read(golden_dir().join(f[0])).unwrap();
        assert_eq!(
            symbol_hash(&weights, &bytes),
            f[1],
            "{}: symbols differ",
            f[0]
        );
        assert_eq!(
            pixel_hash(&codec.decode(&bytes).unwrap()),
            f[2],
            "{}: pixels differ",
            f[0]
        );
        n += 1;
    }
    assert_eq!(n, CASES.len());
}

/// The golden decode again in child processes with 1 and with 2 threads (rayon and candle
/// read `RAYON_NUM_THREADS` once per process, so it takes a fresh process). CI also runs this
/// file in a debug build (`.ci/run`), so both builds meet the same recorded hashes.
#[test]
fn golden_vectors_decode_the_same_with_1_and_2_threads() {
    if std::env::var_os("LIC_GOLDEN_CHILD").is_some() {
        return;
    }
    for threads in ["1", "2"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "golden_vectors_decode_to_recorded_hashes",
                "--test-threads",
                "1",
            ])
            .env("RAYON_NUM_THREADS", threads)
            .env("LIC_GOLDEN_CHILD", "1")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && log.contains("1 passed"),
            "{threads} thread(s): {log}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
