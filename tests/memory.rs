//! The memory limit holds for real: `lic decode --max-memory M` on real files, with M the
//! decoder's own estimate (`codec::decode_memory`, rounded up to a MiB), peaks at or under M
//! (the peak resident set that `lic -v` reports from the kernel's VmHWM: `wait4`'s
//! `ru_maxrss` would count this test's own memory, which the child inherits until its
//! `exec`), and one MiB less is refused before decoding; `lic encode` likewise against
//! `codec::encode_memory`.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::Command;

use lic::{Codec, ColorType, Image};

fn kodak(name: &str) -> Image {
    let img = image::open(format!(
        "{}/kodak-bench/kodak/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .into_rgb8();
    Image {
        width: img.width(),
        height: img.height(),
        color: ColorType::Rgb,
        data: img.into_raw(),
    }
}

/// Two Kodak images side by side, twice over: 1536×1024 of real photographs.
fn mosaic() -> Image {
    let tiles = [
        kodak("kodim01.png"),
        kodak("kodim05.png"),
        kodak("kodim13.png"),
        kodak("kodim21.png"),
    ];
    let (w, h) = (768usize * 2, 512usize * 2);
    let mut data = vec![0u8; w * h * 3];
    for (k, t) in tiles.iter().enumerate() {
        let (x0, y0) = ((k % 2) * 768, (k / 2) * 512);
        for y in 0..512 {
            let src = &t.data[y * 768 * 3..(y + 1) * 768 * 3];
            let at = ((y0 + y) * w + x0) * 3;
            data[at..at + 768 * 3].copy_from_slice(src);
        }
    }
    Image {
        width: w as u32,
        height: h as u32,
        color: ColorType::Rgb,
        data,
    }
}

/// Runs `cmd` (a `lic -v` command) and returns its exit success and, when it succeeded, the
/// peak resident set in bytes from its summary line (`…, N MiB peak`).
fn run_with_peak(cmd: &mut Command) -> (bool, u64) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return (false, 0);
    }
    let mib: u64 = stderr
        .split(", ")
        .find_map(|part| part.trim().strip_suffix(" MiB peak")?.parse().ok())
        .unwrap_or_else(|| panic!("no peak in {stderr:?}"));
    (true, mib << 20)
}

/// Encodes `img` with `lic encode --max-memory E` (E: the encoder's estimate for the file it
/// writes, `file`), checks the peak, and that a MiB less is refused.
fn encode_within_the_estimate(name: &str, img: &Image, file: &[u8], tile: u32, dir: &Path) {
    let header = lic::container::read_header(file).unwrap();
    let limit_mib = lic::codec::encode_memory(&header).div_ceil(1 << 20);
    let png = dir.join(format!("{name}-in.png"));
    let color = match img.color {
        ColorType::Rgb => image::ExtendedColorType::Rgb8,
        ColorType::GrayAlpha => image::ExtendedColorType::La8,
        c => panic!("{c:?}"),
    };
    image::save_buffer(&png, &img.data, img.width, img.height, color).unwrap();
    let encode = |mib: u64| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lic"));
        cmd.args(["encode", "-v", "-q", "0.5", "--tile", &tile.to_string()])
            .args(["--max-memory", &mib.to_string()])
            .arg(&png)
            .arg(dir.join(format!("{name}-out.lic")));
        run_with_peak(&mut cmd)
    };
    let (ok, peak) = encode(limit_mib);
    eprintln!(
        "{name} encode: peak {:.1} MiB, limit {limit_mib} MiB",
        peak as f64 / 1048576.0
    );
    assert!(
        ok,
        "{name}: encode refused or failed under its own estimate"
    );
    assert!(
        peak <= limit_mib << 20,
        "{name}: encode peak {peak} over the limit of {limit_mib} MiB"
    );
    assert!(
        !encode(limit_mib - 1).0,
        "{name}: encoded under a limit below the estimate"
    );
}

fn decode_within_the_estimate(name: &str, file: &[u8], dir: &Path) {
    let header = lic::container::read_header(file).unwrap();
    let estimate = lic::codec::decode_memory(&header);
    let limit_mib = estimate.div_ceil(1 << 20);
    let path = dir.join(format!("{name}.lic"));
    std::fs::write(&path, file).unwrap();
    let decode = |mib: u64| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lic"));
        cmd.args(["decode", "-v", "--max-memory", &mib.to_string()])
            .arg(&path)
            .arg(dir.join(format!("{name}.png")));
        run_with_peak(&mut cmd)
    };
    let (ok, peak) = decode(limit_mib);
    eprintln!(
        "{name}: {}x{} tile {}: peak {:.1} MiB, limit {limit_mib} MiB",
        header.width,
        header.height,
        header.tile,
        peak as f64 / 1048576.0
    );
    assert!(ok, "{name}: refused or failed under its own estimate");
    assert!(
        peak <= limit_mib << 20,
        "{name}: peak {peak} over the limit of {limit_mib} MiB"
    );
    let (ok, _) = decode(limit_mib - 1);
    assert!(!ok, "{name}: decoded under a limit below the estimate");
}

#[test]
fn peaks_stay_under_the_limit_they_were_given() {
    // LIC_MEMORY_TEST_DIR keeps the files for a look with /usr/bin/time or heaptrack.
    let temp = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("LIC_MEMORY_TEST_DIR").map(std::path::PathBuf::from);
    let dir = kept.as_deref().unwrap_or(temp.path());
    let codec = Codec::embedded().unwrap();
    let k23 = codec.encode(&kodak("kodim23.png"), 0.75).unwrap();
    decode_within_the_estimate("kodim23", &k23, dir);
    let big = mosaic();
    let mosaic = codec.encode(&big, 0.5).unwrap();
    decode_within_the_estimate("mosaic", &mosaic, dir);
    encode_within_the_estimate("mosaic", &big, &mosaic, 768, dir);
    encode_within_the_estimate("kodim23", &kodak("kodim23.png"), &k23, 768, dir);
    // One tile for the whole picture: the largest synthesis working set.
    let one_tile = Codec::embedded().unwrap().with_tile_size(0);
    let whole = one_tile.encode(&big, 0.5).unwrap();
    decode_within_the_estimate("mosaic-one-tile", &whole, dir);
    encode_within_the_estimate("mosaic-one-tile", &big, &whole, 0, dir);
    // Grey with alpha: an alpha plane to inflate.
    let ga = Image {
        width: big.width,
        height: big.height,
        color: ColorType::GrayAlpha,
        data: big.data.chunks(3).flat_map(|p| [p[1], p[0]]).collect(),
    };
    let ga_file = codec.encode(&ga, 0.3).unwrap();
    decode_within_the_estimate("mosaic-grey-alpha", &ga_file, dir);
    encode_within_the_estimate("mosaic-grey-alpha", &ga, &ga_file, 768, dir);
}
