//! The `lic` command line: every command, stdin/stdout, and every error as a sentence on
//! stderr, with exit status 2 for usage errors (as clap gives) and 1 for failures.

#![cfg(feature = "cli")]

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::PathBuf;

fn kodak(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("kodak-bench/kodak")
        .join(name)
}

fn lic() -> Command {
    Command::cargo_bin("lic").unwrap()
}

/// A small PNG cut from a Kodak image.
fn small_png(dir: &std::path::Path) -> PathBuf {
    let img = image::open(kodak("kodim15.png"))
        .unwrap()
        .crop_imm(300, 100, 160, 128);
    let p = dir.join("small.png");
    img.save(&p).unwrap();
    p
}

#[test]
fn encode_info_decode() {
    let dir = tempfile::tempdir().unwrap();
    let png = small_png(dir.path());
    let out = dir.path().join("a.lic");
    lic()
        .args([
            "encode",
            png.to_str().unwrap(),
            "-q",
            "0.3",
            out.to_str().unwrap(),
        ])
        .assert()
        .success();
    lic()
        .args(["info", out.to_str().unwrap()])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("160x128 RGB")
                .and(predicate::str::contains("CWLT"))
                .and(predicate::str::contains("bpp")),
        );
    let back = dir.path().join("b.png");
    lic()
        .args(["decode", out.to_str().unwrap(), back.to_str().unwrap()])
        .assert()
        .success();
    assert_eq!(image::open(&back).unwrap().dimensions_tuple(), (160, 128));
    // -o form and other output formats.
    let o2 = dir.path().join("c.lic");
    lic()
        .args([
            "encode",
            png.to_str().unwrap(),
            "-q",
            "0.3",
            "-o",
            o2.to_str().unwrap(),
        ])
        .assert()
        .success();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&o2).unwrap());
    let ppm = dir.path().join("b.ppm");
    lic()
        .args(["decode", out.to_str().unwrap(), "-o", ppm.to_str().unwrap()])
        .assert()
        .success();
    assert!(image::open(&ppm).is_ok());
}

trait Dims {
    fn dimensions_tuple(&self) -> (u32, u32);
}
impl Dims for image::DynamicImage {
    fn dimensions_tuple(&self) -> (u32, u32) {
        (self.width(), self.height())
    }
}

#[test]
fn stdin_and_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let png = std::fs::read(small_png(dir.path())).unwrap();
    let lic_bytes = lic()
        .args(["encode", "-", "-q", "0.5", "-"])
        .write_stdin(png)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(&lic_bytes[..4], b"\x89LIC");
    let png_out = lic()
        .args(["decode", "-", "-"])
        .write_stdin(lic_bytes)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        image::load_from_memory(&png_out)
            .unwrap()
            .dimensions_tuple(),
        (160, 128)
    );
}

#[test]
fn decoding_is_identical_with_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k.lic");
    lic()
        .args([
            "encode",
            kodak("kodim20.png").to_str().unwrap(),
            "-q",
            "0.4",
            out.to_str().unwrap(),
        ])
        .assert()
        .success();
    let mut pixels = Vec::new();
    for threads in ["1", "2"] {
        let p = dir.path().join(format!("d{threads}.ppm"));
        lic()
            .env("RAYON_NUM_THREADS", threads)
            .args(["decode", out.to_str().unwrap(), p.to_str().unwrap()])
            .assert()
            .success();
        pixels.push(std::fs::read(&p).unwrap());
    }
    assert_eq!(pixels[0], pixels[1]);
    // Encoding is deterministic too.
    let again = dir.path().join("k2.lic");
    lic()
        .env("RAYON_NUM_THREADS", "1")
        .args([
            "encode",
            kodak("kodim20.png").to_str().unwrap(),
            "-q",
            "0.4",
            again.to_str().unwrap(),
        ])
        .assert()
        .success();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn errors_are_sentences_with_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let png = small_png(dir.path());
    let good = dir.path().join("g.lic");
    lic()
        .args([
            "encode",
            png.to_str().unwrap(),
            "-q",
            "0.5",
            good.to_str().unwrap(),
        ])
        .assert()
        .success();
    let bytes = std::fs::read(&good).unwrap();

    // Unreadable input.
    lic()
        .args(["encode", "/no/such/file.png", "x.lic"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot read"));
    let notimg = dir.path().join("not.png");
    std::fs::write(&notimg, b"hello").unwrap();
    lic()
        .args(["encode", notimg.to_str().unwrap(), "x.lic"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot read image"));
    // Usage errors: quality out of range, an unknown model, two outputs, a bad tile side.
    lic()
        .args(["encode", png.to_str().unwrap(), "-q", "1.5", "x.lic"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("out of range"));
    lic()
        .args(["encode", png.to_str().unwrap(), "-q", "-0.5", "x.lic"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("out of range"));
    for extra in [
        &["--model", "jpeg"][..],
        &["-o", "y.lic"][..],
        &["--tile", "100"][..],
    ] {
        lic()
            .args(["encode", png.to_str().unwrap(), "x.lic"])
            .args(extra)
            .assert()
            .code(2)
            .stderr(predicate::str::starts_with("lic: "));
    }
    // clap's own usage errors give 2 as well.
    lic().args(["encode"]).assert().code(2);
    // Truncated and corrupt files.
    let t = dir.path().join("t.lic");
    std::fs::write(&t, &bytes[..bytes.len() / 2]).unwrap();
    lic()
        .args(["decode", t.to_str().unwrap(), "o.png"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("truncated"));
    lic()
        .args(["info", t.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("truncated"));
    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 30] ^= 1;
    let f = dir.path().join("f.lic");
    std::fs::write(&f, &flipped).unwrap();
    lic()
        .args(["decode", f.to_str().unwrap(), "o.png"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("CRC"));
    // Wrong weights: a file made with other weights names both ids.
    let mut hd = lic::container::read_header(&bytes).unwrap();
    hd.weights_id = [0xAB; 8];
    let mut other = lic::container::SIGNATURE.to_vec();
    lic::container::write_chunk(&mut other, lic::container::types::HEAD, &hd.to_bytes());
    other.extend_from_slice(&bytes[8 + 12 + lic::container::HEAD_LEN..]);
    let o = dir.path().join("o.lic");
    std::fs::write(&o, &other).unwrap();
    lic()
        .args(["decode", o.to_str().unwrap(), "o.png"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("abababababababab")
                .and(predicate::str::contains("needs weights")),
        );
    // A weights file that is not one.
    lic()
        .args([
            "decode",
            good.to_str().unwrap(),
            "o.png",
            "--weights",
            png.to_str().unwrap(),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot load weights"));
    // No panics anywhere.
    for a in [
        ["decode", t.to_str().unwrap(), "o.png"],
        ["decode", f.to_str().unwrap(), "o.png"],
    ] {
        lic()
            .args(a)
            .assert()
            .stderr(predicate::str::contains("panicked").not());
    }
}

#[test]
fn sixteen_bit_input_warns() {
    let dir = tempfile::tempdir().unwrap();
    let img = image::open(kodak("kodim03.png"))
        .unwrap()
        .crop_imm(0, 0, 48, 32)
        .into_rgb16();
    let p = dir.path().join("deep.png");
    img.save(&p).unwrap();
    lic()
        .args([
            "encode",
            p.to_str().unwrap(),
            "-q",
            "0.5",
            dir.path().join("d.lic").to_str().unwrap(),
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("warning").and(predicate::str::contains("8 bits")));
}

/// An ICC profile and EXIF data in the input PNG come back, byte for byte, in the decoded
/// PNG; `lic info` lists their chunks; the library reports them without decoding pixels.
#[test]
fn icc_profile_and_exif_travel_through() {
    use image::{ImageDecoder, ImageEncoder};
    let dir = tempfile::tempdir().unwrap();
    let img = image::open(kodak("kodim15.png"))
        .unwrap()
        .crop_imm(0, 0, 48, 32)
        .to_rgb8();
    let icc: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
    // A minimal little-endian TIFF header with no entries.
    let exif = b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
    let mut png = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut png);
    enc.set_icc_profile(icc.clone()).unwrap();
    enc.set_exif_metadata(exif.clone()).unwrap();
    enc.write_image(img.as_raw(), 48, 32, image::ExtendedColorType::Rgb8)
        .unwrap();
    let input = dir.path().join("meta.png");
    std::fs::write(&input, &png).unwrap();

    let lic_file = dir.path().join("meta.lic");
    lic()
        .args([
            "encode",
            input.to_str().unwrap(),
            "-q",
            "0.5",
            lic_file.to_str().unwrap(),
        ])
        .assert()
        .success();
    let bytes = std::fs::read(&lic_file).unwrap();
    let meta = lic::metadata(&bytes).unwrap();
    assert_eq!(meta.icc_profile.as_deref(), Some(&icc[..]));
    assert_eq!(meta.exif.as_deref(), Some(&exif[..]));
    lic()
        .args(["info", lic_file.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("iCCP").and(predicate::str::contains("eXIf")));
    // --strip leaves both out.
    let stripped = dir.path().join("stripped.lic");
    lic()
        .args(["encode", input.to_str().unwrap(), "--strip"])
        .arg(&stripped)
        .assert()
        .success();
    let meta = lic::metadata(&std::fs::read(&stripped).unwrap()).unwrap();
    assert_eq!(meta, lic::Metadata::default());

    let out = dir.path().join("back.png");
    lic()
        .args(["decode", lic_file.to_str().unwrap(), out.to_str().unwrap()])
        .assert()
        .success();
    let mut dec = image::ImageReader::open(&out)
        .unwrap()
        .with_guessed_format()
        .unwrap()
        .into_decoder()
        .unwrap();
    assert_eq!(dec.icc_profile().unwrap(), Some(icc.clone()));
    assert_eq!(dec.exif_metadata().unwrap(), Some(exif.clone()));
    // A viewer reading the .lic through the `image` hook gets them too.
    let mut dec = lic::image_integration::LicDecoder::new(&bytes[..]).unwrap();
    assert_eq!(dec.icc_profile().unwrap(), Some(icc));
    assert_eq!(dec.exif_metadata().unwrap(), Some(exif));
    let stripped = std::fs::read(&stripped).unwrap();
    let mut dec = lic::image_integration::LicDecoder::new(&stripped[..]).unwrap();
    assert_eq!(dec.icc_profile().unwrap(), None);
    assert_eq!(dec.exif_metadata().unwrap(), None);
}

#[test]
fn rnn_files_from_the_command_line() {
    // The shipped rnn weights: every layer of a photo's first four improves its picture, so
    // the encoder writes all four.
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("in.png");
    image::open(kodak("kodim19.png"))
        .unwrap()
        .crop_imm(0, 0, 96, 64)
        .save(&png)
        .unwrap();
    let file = dir.path().join("x.lic");
    lic()
        .args([
            "encode",
            png.to_str().unwrap(),
            "--model",
            "rnn",
            "-q",
            "0.3",
        ])
        .arg(&file)
        .assert()
        .success();
    // -q 0.3 gives 1 + round(0.3 · 11) = 4 layers, each listed with the bpp so far.
    lic()
        .args(["info", file.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("model:      rnn"))
        .stdout(predicate::str::contains("layer 4:"))
        .stdout(predicate::str::contains("layer 5:").not());
    let out = dir.path().join("o.png");
    lic()
        .args(["decode", file.to_str().unwrap(), "--layers", "2"])
        .arg(&out)
        .assert()
        .success();
    assert_eq!(image::open(&out).unwrap().width(), 96);
    // Cut inside the last layer: the complete layers decode, with a warning.
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.lic");
    std::fs::write(&cut, &bytes[..bytes.len() - 20]).unwrap();
    lic()
        .args(["decode", cut.to_str().unwrap()])
        .arg(&out)
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "decoded the 3 complete layer(s) of 4",
        ));
    // --layers is for rnn files.
    let cw = dir.path().join("cw.lic");
    lic()
        .args(["encode", png.to_str().unwrap(), cw.to_str().unwrap()])
        .assert()
        .success();
    lic()
        .args(["decode", cw.to_str().unwrap(), "--layers", "1"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--layers is for rnn files"));
    // Zero layers is a usage error, not one layer.
    lic()
        .args(["decode", cw.to_str().unwrap(), "--layers", "0"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("a layer count of at least 1"));
}

#[test]
fn info_and_decode_into_a_closed_pipe_end_quietly() {
    // `lic info f | head -1`, `lic decode f - | head -c 100`: the reader may go away before
    // lic writes. That must not panic (println! does on a closed stdout) or print an error;
    // lic ends with status 0, as a reader that stops early asked for nothing more.
    let file = format!(
        "{}/format-spec/golden/rgb-160x112-tile64-q050.lic",
        env!("CARGO_MANIFEST_DIR")
    );
    for args in [["info", &file, ""], ["decode", &file, "-"]]
        .iter()
        .cycle()
        .take(6)
    {
        let args: Vec<&str> = args.iter().copied().filter(|a| !a.is_empty()).collect();
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("lic"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?}: {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// A file made with earlier shipped weights decodes when their file is in a weights folder
/// (`--weights-dir` or `LIC_WEIGHTS_PATH`), and without it the error names the id and the
/// commit that shipped them.
#[test]
fn files_of_earlier_weights_decode_from_a_weights_folder() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let prev = root.join("format-spec/golden/previous");
    let gen = std::fs::read_dir(&prev)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let id = gen.file_name().unwrap().to_string_lossy().into_owned();
    let file = gen.join("rgb-64x48-q030.lic");
    let row = lic::model::store::shipped()
        .into_iter()
        .find(|s| s.id == id)
        .unwrap();
    let weights = std::process::Command::new("git")
        .args(["show", &format!("{}:weights/cw.safetensors", row.commit)])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(weights.status.success());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::write(store.join(format!("cw-{id}.safetensors")), &weights.stdout).unwrap();
    let out = dir.path().join("a.png");
    lic()
        .args(["decode", file.to_str().unwrap(), out.to_str().unwrap()])
        .args(["--weights-dir", store.to_str().unwrap()])
        .assert()
        .success();
    assert_eq!(image::open(&out).unwrap().width(), 64);
    lic()
        .args(["decode", file.to_str().unwrap(), out.to_str().unwrap()])
        .env("LIC_WEIGHTS_PATH", &store)
        .assert()
        .success();
    // Found nowhere (the source tree's archive, when `scripts/archive-weights.sh` filled it,
    // or the user's data folder would hold it).
    let home = dir.path().join("home");
    if !root.join("weights/archive").exists() {
        lic()
            .args(["decode", file.to_str().unwrap(), out.to_str().unwrap()])
            .env("HOME", &home)
            .env_remove("XDG_DATA_HOME")
            .env_remove("LIC_WEIGHTS_PATH")
            .assert()
            .code(1)
            .stderr(
                predicate::str::contains(&id)
                    .and(predicate::str::contains(&row.commit))
                    .and(predicate::str::contains("LIC_WEIGHTS_PATH")),
            );
    }
}

/// What the encoder writes, the decoder reads with its defaults: a 17000-pixel-wide strip
/// (past the old 16384 width limit) encodes and decodes; `--no-limits` is accepted by both.
#[test]
fn a_wide_panorama_encodes_and_decodes_with_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("wide.png");
    image::RgbImage::from_fn(17000, 16, |x, y| {
        image::Rgb([(x % 251) as u8, (y * 9) as u8, 90])
    })
    .save(&png)
    .unwrap();
    let (lic_file, out) = (dir.path().join("wide.lic"), dir.path().join("out.png"));
    lic()
        .args([
            "encode",
            png.to_str().unwrap(),
            "-q",
            "0",
            lic_file.to_str().unwrap(),
        ])
        .assert()
        .success();
    lic()
        .args(["decode", lic_file.to_str().unwrap(), out.to_str().unwrap()])
        .assert()
        .success();
    assert_eq!(image::open(&out).unwrap().width(), 17000);
    lic()
        .args([
            "decode",
            lic_file.to_str().unwrap(),
            out.to_str().unwrap(),
            "--no-limits",
        ])
        .assert()
        .success();
    lic()
        .args(["encode", png.to_str().unwrap(), "-q", "0", "--no-limits"])
        .arg(lic_file.to_str().unwrap())
        .assert()
        .success();
}

/// `-v` prints one summary line per file on stderr, `--quiet` silences warnings, `--threads`
/// sets the worker count (the same bytes), and no command writes over its own input.
#[test]
fn verbose_quiet_threads_and_never_over_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let png = small_png(dir.path());
    let (a, b) = (dir.path().join("a.lic"), dir.path().join("b.lic"));
    let run = lic()
        .args([
            "encode",
            png.to_str().unwrap(),
            "-q",
            "0.4",
            "-v",
            "--threads",
            "1",
        ])
        .arg(&a)
        .assert()
        .success()
        .stdout("");
    let line = String::from_utf8(run.get_output().stderr.clone()).unwrap();
    let size = std::fs::metadata(&a).unwrap().len();
    let bpp = size as f64 * 8.0 / (160.0 * 128.0);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains(&format!(
        "160x128 -> {size} bytes, {bpp:.4} bpp, -q 0.400, "
    )));
    assert!(
        // The process's peak memory follows where the system reports it.
        predicate::str::is_match(if cfg!(target_os = "linux") {
            r"\d+\.\d\d s, \d+ MiB peak\n$"
        } else {
            r"\d+\.\d\d s\n$"
        })
        .unwrap()
        .eval(&line),
        "{line}"
    );
    lic()
        .args([
            "encode",
            png.to_str().unwrap(),
            "-q",
            "0.4",
            "--threads",
            "2",
        ])
        .arg(&b)
        .assert()
        .success()
        .stderr("");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let out = dir.path().join("a.png");
    lic()
        .args([
            "decode",
            a.to_str().unwrap(),
            out.to_str().unwrap(),
            "--verbose",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("-> 160x128 RGB"));
    // A cut rnn file warns, unless --quiet.
    let rnn = dir.path().join("p.lic");
    lic()
        .args([
            "encode",
            png.to_str().unwrap(),
            "--model",
            "rnn",
            "-q",
            "0.5",
        ])
        .arg(&rnn)
        .assert()
        .success();
    let bytes = std::fs::read(&rnn).unwrap();
    let ends = lic::info(&bytes).unwrap().layer_ends();
    let cut = dir.path().join("cut.lic");
    std::fs::write(&cut, &bytes[..ends[1] + 5]).unwrap();
    lic()
        .args(["decode", cut.to_str().unwrap(), out.to_str().unwrap()])
        .assert()
        .success()
        .stderr(predicate::str::contains("warning: "));
    lic()
        .args([
            "decode",
            cut.to_str().unwrap(),
            out.to_str().unwrap(),
            "--quiet",
        ])
        .assert()
        .success()
        .stderr("");
    // Never over the input, however it is named.
    let before = std::fs::read(&a).unwrap();
    let same = dir.path().join(".").join("a.lic");
    lic()
        .args(["decode", a.to_str().unwrap(), same.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is the input file"));
    lic()
        .args(["encode", png.to_str().unwrap(), "-o", png.to_str().unwrap()])
        .assert()
        .code(1);
    assert_eq!(std::fs::read(&a).unwrap(), before);
    assert!(image::open(&png).is_ok());
    lic()
        .args(["encode", png.to_str().unwrap(), "--threads", "0"])
        .arg(&b)
        .assert()
        .code(2);
}

/// `.ppm` and `.pgm` outputs are binary P6 and P5 (what cjpeg and netpbm read), `.pam` is PAM.
#[test]
fn pnm_outputs_are_binary_p6_p5_or_pam() {
    let dir = tempfile::tempdir().unwrap();
    let png = small_png(dir.path());
    let grey = dir.path().join("grey.png");
    image::open(&png).unwrap().to_luma8().save(&grey).unwrap();
    for (src, ext, magic, channels) in [
        (&png, "ppm", "P6", 3usize),
        (&grey, "pgm", "P5", 1),
        (&png, "pam", "P7", 3),
    ] {
        let lic_file = dir.path().join(format!("{ext}.lic"));
        lic()
            .args(["encode", src.to_str().unwrap(), "-q", "0.5"])
            .arg(&lic_file)
            .assert()
            .success();
        let out = dir.path().join(format!("out.{ext}"));
        lic()
            .args(["decode", lic_file.to_str().unwrap(), out.to_str().unwrap()])
            .assert()
            .success();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(&bytes[..2], magic.as_bytes(), "{ext}");
        let back = image::open(&out).unwrap();
        assert_eq!((back.width(), back.height()), (160, 128));
        assert_eq!(back.color().channel_count() as usize, channels, "{ext}");
    }
}

/// `--region` is clipped to the picture; one wholly outside it is a usage error.
#[test]
fn a_region_past_the_edge_is_clipped() {
    let dir = tempfile::tempdir().unwrap();
    let png = small_png(dir.path());
    let file = dir.path().join("a.lic");
    lic()
        .args(["encode", png.to_str().unwrap(), "-q", "0.5"])
        .arg(&file)
        .assert()
        .success();
    let (whole, part) = (dir.path().join("whole.png"), dir.path().join("part.png"));
    lic()
        .args(["decode", file.to_str().unwrap(), whole.to_str().unwrap()])
        .assert()
        .success();
    lic()
        .args(["decode", file.to_str().unwrap(), part.to_str().unwrap()])
        .args(["--region", "100,90,500,500"])
        .assert()
        .success();
    let part = image::open(&part).unwrap().to_rgb8();
    assert_eq!(part.dimensions(), (60, 38));
    let expect = image::open(&whole)
        .unwrap()
        .crop_imm(100, 90, 60, 38)
        .to_rgb8();
    assert_eq!(part.as_raw(), expect.as_raw());
    lic()
        .args([
            "decode",
            file.to_str().unwrap(),
            "x.png",
            "--region",
            "160,0,10,10",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("lies outside"));
}

/// `--out-quality` sets a JPEG output's quality; `-o` reads as `-o, --output <FILE>` in help.
#[test]
fn jpeg_output_quality_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let png = small_png(dir.path());
    let file = dir.path().join("a.lic");
    lic()
        .args(["encode", png.to_str().unwrap(), "-q", "0.7"])
        .arg(&file)
        .assert()
        .success();
    let size = |q: &str| {
        let out = dir.path().join(format!("q{q}.jpg"));
        lic()
            .args(["decode", file.to_str().unwrap(), out.to_str().unwrap()])
            .args(["--out-quality", q])
            .assert()
            .success();
        std::fs::metadata(&out).unwrap().len()
    };
    assert!(size("30") < size("95"));
    lic()
        .args([
            "decode",
            file.to_str().unwrap(),
            "x.jpg",
            "--out-quality",
            "0",
        ])
        .assert()
        .code(2);
    for cmd in ["encode", "decode"] {
        lic()
            .args([cmd, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("-o, --output <FILE>"));
    }
}

#[test]
fn rate_control_reaches_a_size_or_bpp_without_going_over() {
    let dir = tempfile::tempdir().unwrap();
    let png = small_png(dir.path());
    let out = dir.path().join("t.lic");
    let size_of = |args: &[&str]| {
        let mut all = vec!["encode", png.to_str().unwrap(), out.to_str().unwrap()];
        all.extend_from_slice(args);
        lic().args(&all).assert().success();
        std::fs::metadata(&out).unwrap().len() as f64
    };
    for target in [700.0, 1500.0, 4000.0] {
        let got = size_of(&["--target-size", &format!("{target}")]);
        assert!(got <= target && got >= 0.97 * target, "{got} for {target}");
    }
    // 160×128 pixels at 0.6 bpp: 1536 bytes.
    let got = size_of(&["--target-bpp", "0.6"]);
    assert!(got <= 1536.0 && got >= 0.97 * 1536.0, "{got}");
    // The rnn model picks the most layers that fit.
    let got = size_of(&["--model", "rnn", "--target-size", "2000"]);
    assert!(got <= 2000.0, "{got}");

    lic()
        .args(["encode", png.to_str().unwrap(), out.to_str().unwrap()])
        .args(["--target-size", "20"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no file of this image fits in 20 bytes",
        ));
    for bad in [
        &["--target-size", "900", "-q", "0.5"][..],
        &["--target-bpp", "0"],
        &["--target-bpp", "0.5", "--target-size", "900"],
    ] {
        lic()
            .args(["encode", png.to_str().unwrap(), out.to_str().unwrap()])
            .args(bad)
            .assert()
            .code(2);
    }
}

#[test]
fn info_shows_the_quality_a_file_was_made_at() {
    let dir = tempfile::tempdir().unwrap();
    let png = small_png(dir.path());
    let out = dir.path().join("q.lic");
    lic()
        .args(["encode", png.to_str().unwrap(), "-q", "0.6"])
        .arg(&out)
        .assert()
        .success();
    let info = lic().arg("info").arg(&out).assert().success();
    let text = String::from_utf8(info.get_output().stdout.clone()).unwrap();
    let q: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("quality:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((q - 0.6).abs() < 1e-3, "{text}");
}
