//! Golden vectors: the files in `format-spec/golden/` decode, with the embedded weights, to
//! the latent symbols whose SHA-256 `format-spec/golden/EXPECTED.txt` records (exactly) and to
//! the pixels of the reference PNG beside each file (within the float tolerance of
//! format-spec §10). Those in `format-spec/golden/previous/ID/`, made with the earlier shipped
//! weights ID, decode likewise with those weights, found by id (format-spec §4.1b).
//!
//! After the shipped weights change, `cargo test --release --test golden -- --ignored
//! regenerate` moves the current set to `previous/OLD-ID/` and writes a new one.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use lic::container::Container;
use lic::{Codec, ColorType, CwWeights, Image};
use sha2::{Digest, Sha256};

mod common;
use common::rnn_table_only_weights;

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
    for k in 0..lat.values.len() {
        d.update(lat.values.get(k).to_le_bytes());
    }
    hex(&d.finalize())
}

fn pixel_hash(img: &Image) -> String {
    hex(&Sha256::digest(&img.data))
}

/// The reference decoder's pixels of golden file `file` in `dir` (`NAME.png` for `NAME.lic`).
fn reference_png(dir: &Path, file: &str) -> PathBuf {
    dir.join(file.replace(".lic", ".png"))
}

/// format-spec §10: the synthesis is float arithmetic, so a decoder on another machine (other
/// SIMD kernels, another summation order) may differ from the reference pixels by at most 1,
/// in at most 1 % of the samples.
fn assert_within_float_tolerance(what: &str, got: &Image, reference: &Path) {
    let want = image::open(reference)
        .unwrap_or_else(|e| panic!("{}: {e}", reference.display()))
        .into_bytes();
    assert_eq!(got.data.len(), want.len(), "{what}: sample count");
    let mut off = 0usize;
    for (a, b) in got.data.iter().zip(&want) {
        let d = a.abs_diff(*b);
        assert!(d <= 1, "{what}: a sample differs by {d} from the reference");
        off += (d != 0) as usize;
    }
    assert!(
        off * 100 <= want.len(),
        "{what}: {off} of {} samples differ from the reference",
        want.len()
    );
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

/// The weights id the golden files in `dir` were made with (all alike).
fn id_of_files(dir: &Path) -> Option<[u8; 8]> {
    let first = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "lic"))?;
    let bytes = std::fs::read(first).ok()?;
    Some(lic::container::read_header(&bytes).ok()?.weights_id)
}

/// The lines of an EXPECTED.txt: (file, symbols-sha256).
fn expected(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("EXPECTED.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string())
        })
        .collect()
}

#[test]
#[ignore = "writes format-spec/golden/; run after the shipped weights change"]
fn regenerate() {
    let weights = CwWeights::embedded().unwrap();
    std::fs::create_dir_all(golden_dir()).unwrap();
    // The set made with the weights shipped before keeps decoding: it moves to previous/.
    if let Some(old) = id_of_files(&golden_dir()).filter(|id| *id != weights.id) {
        let to = golden_dir()
            .join("previous")
            .join(lic::model::weights::id_hex(&old));
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(golden_dir()).unwrap() {
            let p = entry.unwrap().path();
            if p.is_file() {
                std::fs::rename(&p, to.join(p.file_name().unwrap())).unwrap();
            }
        }
    }
    write_set(&Codec::embedded, &weights, &golden_dir());
}

/// Writes a golden set for the shipped weights file `LIC_GOLDEN_WEIGHTS` into
/// `previous/ID/` (for a generation that shipped before golden sets were kept per id).
#[test]
#[ignore = "writes format-spec/golden/previous/; run by hand"]
fn regenerate_previous() {
    let path = std::env::var("LIC_GOLDEN_WEIGHTS").expect("LIC_GOLDEN_WEIGHTS=weights file");
    let bytes = std::fs::read(&path).unwrap();
    let weights = CwWeights::from_bytes(&bytes).unwrap();
    let dir = golden_dir()
        .join("previous")
        .join(lic::model::weights::id_hex(&weights.id));
    std::fs::create_dir_all(&dir).unwrap();
    write_set(&|| Codec::from_weights_bytes(&bytes), &weights, &dir);
}

/// Encodes [`CASES`] with the codecs `codec` makes (on `weights`) into `dir`, with the
/// reference pixels and EXPECTED.txt.
fn write_set(codec: &dyn Fn() -> Result<Codec, lic::Error>, weights: &CwWeights, dir: &Path) {
    let mut expected = String::from(
        "# file symbols-sha256 (written by tests/golden.rs; the reference pixels are NAME.png)\n",
    );
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
        let bytes = codec()
            .unwrap()
            .with_tile_size(tile)
            .encode(&img, q)
            .unwrap();
        std::fs::write(dir.join(file), &bytes).unwrap();
        let out = codec().unwrap().decode(&bytes).unwrap();
        out.to_dynamic().save(reference_png(dir, file)).unwrap();
        writeln!(expected, "{file} {}", symbol_hash(weights, &bytes)).unwrap();
    }
    std::fs::write(dir.join("EXPECTED.txt"), expected).unwrap();
}

#[test]
fn golden_vectors_decode_to_recorded_symbols_and_reference_pixels() {
    let codec = Codec::embedded().unwrap();
    let weights = CwWeights::embedded().unwrap();
    let cases = expected(&golden_dir());
    for (file, symbols) in &cases {
        let bytes = std::fs::read(golden_dir().join(file)).unwrap();
        assert_eq!(&symbol_hash(&weights, &bytes), symbols, "{file}: symbols");
        let img = codec.decode(&bytes).unwrap();
        assert_within_float_tolerance(file, &img, &reference_png(&golden_dir(), file));
    }
    assert_eq!(cases.len(), CASES.len());
}

/// The weights file of shipped id `id`: `weights/archive/cw-ID.safetensors` when
/// `scripts/archive-weights.sh` wrote it, else `weights/cw.safetensors` at the commit that
/// shipped it (`weights/shipped.csv`), from the repository's history.
fn shipped_weights(id: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Ok(b) = std::fs::read(root.join(format!("weights/archive/cw-{id}.safetensors"))) {
        return b;
    }
    let s = lic::model::store::shipped()
        .into_iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("{id} is not in weights/shipped.csv"));
    let out = std::process::Command::new("git")
        .args(["show", &format!("{}:weights/cw.safetensors", s.commit)])
        .current_dir(&root)
        .output()
        .expect("git, to read earlier weights from the repository's history");
    assert!(
        out.status.success(),
        "git show {}:weights/cw.safetensors: {}",
        s.commit,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn previous_weights_generations_decode_by_id() {
    let embedded = CwWeights::embedded().unwrap();
    let folders: Vec<PathBuf> = match std::fs::read_dir(golden_dir().join("previous")) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    assert!(
        !folders.is_empty(),
        "no golden files of an earlier weights generation"
    );
    // A weights folder of the test's own: the codec must find each set by id in it.
    let store = tempfile::tempdir().unwrap();
    for dir in &folders {
        let id = dir.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = shipped_weights(&id);
        let weights = CwWeights::from_bytes(&bytes).unwrap();
        assert_eq!(lic::model::weights::id_hex(&weights.id), id);
        assert_ne!(weights.id, embedded.id, "{id} is the embedded set");
        let cases = expected(dir);
        assert_eq!(cases.len(), CASES.len(), "{id}");
        // Without its weights the file is refused with the id it needs.
        let first = std::fs::read(dir.join(&cases[0].0)).unwrap();
        let none = lic::WeightsStore::with_dirs(vec![store.path().to_path_buf()]);
        let err = none.cw(&weights.id).err().unwrap().to_string();
        assert!(err.contains(&id), "{err}");
        std::fs::write(store.path().join(format!("cw-{id}.safetensors")), &bytes).unwrap();
        let codec = Codec::embedded().unwrap().with_weights_dir(store.path());
        for (file, symbols) in &cases {
            let bytes = std::fs::read(dir.join(file)).unwrap();
            assert_eq!(
                &symbol_hash(&weights, &bytes),
                symbols,
                "{id}/{file}: symbols"
            );
            let img = codec.decode(&bytes).unwrap();
            assert_within_float_tolerance(&format!("{id}/{file}"), &img, &reference_png(dir, file));
        }
        assert!(codec.decode(&first).is_ok());
    }
}

/// Prints the pixel hash of every golden decode, for the thread-count test's child processes.
#[test]
fn print_golden_pixel_hashes() {
    if std::env::var_os("LIC_GOLDEN_CHILD").is_none() {
        return;
    }
    let codec = Codec::embedded().unwrap();
    for (file, _) in expected(&golden_dir()) {
        let bytes = std::fs::read(golden_dir().join(&file)).unwrap();
        println!(
            "PIXELS {file} {}",
            pixel_hash(&codec.decode(&bytes).unwrap())
        );
    }
}

/// The golden decode in child processes with 1 and with 2 threads (rayon and candle read
/// `RAYON_NUM_THREADS` once per process, so it takes a fresh process): the pixels are the same
/// bytes whatever the thread count.
#[test]
fn golden_vectors_decode_the_same_with_1_and_2_threads() {
    if std::env::var_os("LIC_GOLDEN_CHILD").is_some() {
        return;
    }
    let mut runs = Vec::new();
    for threads in ["1", "2"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "print_golden_pixel_hashes",
                "--test-threads",
                "1",
                "--nocapture",
            ])
            .env("RAYON_NUM_THREADS", threads)
            .env("LIC_GOLDEN_CHILD", "1")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{threads} thread(s): {log}");
        // The harness may print its own text ahead of a line (`test NAME ... `).
        let lines: Vec<String> = log
            .lines()
            .filter_map(|l| l.find("PIXELS ").map(|k| l[k..].to_string()))
            .collect();
        assert_eq!(lines.len(), CASES.len(), "{threads} thread(s): {log}");
        runs.push(lines);
    }
    assert_eq!(runs[0], runs[1], "1 and 2 threads decode different pixels");
}

/// The rnn golden files, in `format-spec/golden/rnn/`: (file, source image, crop, quality,
/// made with the earlier table-only weights). The shipped rnn weights carry the logistic bit
/// model (§6.6b); the table-only file is made with the same weights without `bits.mix`
/// (9464c589f49fbe32), which the shipped ones decode too.
const RNN_CASES: [(&str, &str, (u32, u32, u32, u32), f32, bool); 2] = [
    (
        "rnn-48x32-q050.lic",
        "kodim23.png",
        (300, 150, 48, 32),
        0.5,
        false,
    ),
    (
        "rnn-48x32-q050-table.lic",
        "kodim23.png",
        (300, 150, 48, 32),
        0.5,
        true,
    ),
];

fn rnn_golden_dir() -> PathBuf {
    golden_dir().join("rnn")
}

/// SHA-256 of every layer's decoded bits (§6.6), in order.
fn rnn_bits_hash(bytes: &[u8]) -> String {
    let weights = lic::RnnWeights::embedded_shared().unwrap();
    let c = Container::parse(bytes).unwrap();
    let hd = &c.header;
    let bits = weights
        .bits_for(&hd.weights_id)
        .expect("weights of the file");
    let (lh, lw) = (
        (hd.height as usize).div_ceil(16),
        (hd.width as usize).div_ceil(16),
    );
    let mut d = Sha256::new();
    let mut prev: Option<Vec<u8>> = None;
    for (t, s) in c.find_all(lic::container::types::RNLY).iter().enumerate() {
        let b = bits.decode(t, s, prev.as_deref(), lh, lw).unwrap();
        d.update(&b);
        prev = Some(b);
    }
    hex(&d.finalize())
}

#[test]
#[ignore = "writes format-spec/golden/rnn/; run after the shipped rnn weights change"]
fn regenerate_rnn() {
    let dir = rnn_golden_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut expected = String::from(
        "# file bits-sha256 (written by tests/golden.rs; the reference pixels are NAME.png)\n",
    );
    for (file, src, (x, y, w, h), q, table_only) in RNN_CASES {
        let path = format!("{}/kodak-bench/kodak/{src}", env!("CARGO_MANIFEST_DIR"));
        let img = Image {
            width: w,
            height: h,
            color: ColorType::Rgb,
            data: image::open(path)
                .unwrap()
                .crop_imm(x, y, w, h)
                .into_rgb8()
                .into_raw(),
        };
        let codec = if table_only {
            Codec::from_weights_bytes(&rnn_table_only_weights()).unwrap()
        } else {
            Codec::embedded().unwrap().with_model(lic::ModelKind::Rnn)
        };
        let bytes = codec.encode(&img, q).unwrap();
        std::fs::write(dir.join(file), &bytes).unwrap();
        let out = Codec::embedded().unwrap().decode(&bytes).unwrap();
        out.to_dynamic().save(reference_png(&dir, file)).unwrap();
        writeln!(expected, "{file} {}", rnn_bits_hash(&bytes)).unwrap();
    }
    std::fs::write(dir.join("EXPECTED.txt"), expected).unwrap();
}

#[test]
fn rnn_golden_vectors_decode_to_recorded_bits_and_reference_pixels() {
    let codec = Codec::embedded().unwrap();
    let dir = rnn_golden_dir();
    let cases = expected(&dir);
    assert_eq!(cases.len(), RNN_CASES.len());
    let mut ids = Vec::new();
    for (file, bits) in &cases {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        assert_eq!(&rnn_bits_hash(&bytes), bits, "{file}: bits");
        ids.push(lic::container::read_header(&bytes).unwrap().weights_id);
        let img = codec.decode(&bytes).unwrap();
        assert_within_float_tolerance(file, &img, &reference_png(&dir, file));
    }
    // One file of the shipped weights, one of the earlier table-only weights.
    let shipped = lic::RnnWeights::embedded_shared().unwrap();
    assert_eq!(ids[0], shipped.id);
    assert_eq!(Some(ids[1]), shipped.table_only.as_ref().map(|(id, _)| *id));
}
