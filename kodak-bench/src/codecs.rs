//! The codecs under test, behind one small trait: encode RGB8 to bytes at a setting, decode
//! the bytes back to RGB8. Each one is a real encoder writing a real file.

use lic::{ColorType, Image};

/// One point of a codec's quality sweep.
#[derive(Clone, Debug)]
pub struct Setting {
    /// Label in tables (`q0.50`, `q75`).
    pub label: String,
    /// The encoder's own quality knob.
    pub value: f32,
}

/// A codec the harness measures.
pub trait Codec: Sync {
    /// Short name: the curve's label and the file stem of its results.
    fn name(&self) -> &str;
    /// One line on the settings, printed under the tables.
    fn description(&self) -> String;
    /// Encodes an RGB8 image.
    fn encode(&self, rgb: &[u8], w: u32, h: u32, setting: &Setting) -> Result<Vec<u8>, String>;
    /// Decodes to RGB8 of the original size.
    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, String>;
}

/// lic through its public library API.
pub struct Lic {
    codec: lic::Codec,
    model: &'static str,
    /// Settings are raw rate codes (format-spec §6.2), not `-q` values: for calibrating `-q`.
    raw: bool,
}

impl Lic {
    /// The cw model with the embedded weights, or with a weights file.
    pub fn cw(weights: Option<&std::path::Path>) -> Result<Self, lic::Error> {
        let codec = match weights {
            Some(p) => lic::Codec::from_weights_file(p)?,
            None => lic::Codec::embedded()?,
        };
        Ok(Self {
            codec,
            model: "cw",
            raw: false,
        })
    }

    /// The same, swept by raw rate code instead of `-q`.
    pub fn cw_raw(weights: Option<&std::path::Path>) -> Result<Self, lic::Error> {
        Ok(Self {
            raw: true,
            ..Self::cw(weights)?
        })
    }

    /// Bytes of the largest file of at most `bpp` bits per pixel (rate control).
    pub fn bytes_at_most(&self, rgb: &[u8], w: u32, h: u32, bpp: f64) -> Result<usize, String> {
        let img = Image {
            width: w,
            height: h,
            color: ColorType::Rgb,
            data: rgb.to_vec(),
        };
        let max = (bpp * w as f64 * h as f64 / 8.0).floor() as usize;
        let (bytes, _) = self
            .codec
            .encode_to_size(&img, max, &lic::Metadata::default())
            .map_err(|e| e.to_string())?;
        Ok(bytes.len())
    }

    /// `n` rate codes evenly spaced over 0..=65535.
    pub fn raw_sweep(n: usize) -> Vec<Setting> {
        (0..n)
            .map(|i| {
                let code = (i * 65535 + (n - 1) / 2) / (n - 1).max(1);
                Setting {
                    label: format!("r{code}"),
                    value: code as f32,
                }
            })
            .collect()
    }

    /// `n` evenly spaced `-q` values from 0 to 1.
    pub fn sweep(n: usize) -> Vec<Setting> {
        (0..n)
            .map(|i| {
                let q = i as f32 / (n - 1).max(1) as f32;
                Setting {
                    label: format!("q{q:.3}"),
                    value: q,
                }
            })
            .collect()
    }
}

impl Codec for Lic {
    fn name(&self) -> &str {
        if self.raw {
            "lic-cw-rate-code"
        } else {
            "lic-cw"
        }
    }
    fn description(&self) -> String {
        format!(
            "lic {} model, weights {}, {}",
            self.model,
            self.codec.weights_id(),
            if self.raw {
                "rate codes 0..65535"
            } else {
                "-q 0..1"
            }
        )
    }
    fn encode(&self, rgb: &[u8], w: u32, h: u32, s: &Setting) -> Result<Vec<u8>, String> {
        let img = Image {
            width: w,
            height: h,
            color: ColorType::Rgb,
            data: rgb.to_vec(),
        };
        if self.raw {
            let meta = lic::Metadata::default();
            let code = s.value as u16;
            Ok(self
                .codec
                .encode_rate_code(&img, code, &meta)
                .map_err(|e| e.to_string())?
                .0)
        } else {
            self.codec.encode(&img, s.value).map_err(|e| e.to_string())
        }
    }
    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let img = self.codec.decode(bytes).map_err(|e| e.to_string())?;
        match img.color {
            ColorType::Rgb => Ok(img.data),
            c => Err(format!("lic decoded {c:?}, expected RGB")),
        }
    }
}

/// lic's progressive rnn model with the embedded weights. One point per layer count `k`:
/// either its own encode at the `-q` that gives k layers, or (`prefix`) the first k layers of
/// one `-q 1` encode — the bytes a viewer holds when the transfer stops after layer k.
pub struct LicRnn {
    codec: lic::Codec,
    prefix: bool,
    /// Full `-q 1` encodes by image, for the prefix curve (one encode serves every k).
    full: std::sync::Mutex<std::collections::HashMap<u64, Vec<u8>>>,
}

impl LicRnn {
    /// The rnn model on the embedded weights (an error when none are shipped).
    pub fn new(prefix: bool) -> Result<Self, lic::Error> {
        lic::RnnWeights::embedded_shared()?;
        Ok(Self {
            codec: lic::Codec::embedded()?.with_model(lic::ModelKind::Rnn),
            prefix,
            full: Default::default(),
        })
    }

    /// Layer counts 1..=MAX_ITERS.
    pub fn sweep() -> Vec<Setting> {
        (1..=lic::model::rnn::MAX_ITERS)
            .map(|k| Setting {
                label: format!("L{k:02}"),
                value: k as f32,
            })
            .collect()
    }

    fn image(rgb: &[u8], w: u32, h: u32) -> Image {
        Image {
            width: w,
            height: h,
            color: ColorType::Rgb,
            data: rgb.to_vec(),
        }
    }
}

impl Codec for LicRnn {
    fn name(&self) -> &str {
        if self.prefix {
            "lic-rnn-prefix"
        } else {
            "lic-rnn"
        }
    }
    fn description(&self) -> String {
        if self.prefix {
            "lic rnn model, the first k layers of one -q 1 file (progressive delivery)".into()
        } else {
            "lic rnn model, one file per layer count k (-q (k-1)/11)".into()
        }
    }
    fn encode(&self, rgb: &[u8], w: u32, h: u32, s: &Setting) -> Result<Vec<u8>, String> {
        let k = s.value as usize;
        let max = lic::model::rnn::MAX_ITERS;
        if !self.prefix {
            let q = (k - 1) as f32 / (max - 1) as f32;
            return self
                .codec
                .encode(&Self::image(rgb, w, h), q)
                .map_err(|e| e.to_string());
        }
        let key = {
            use std::hash::{Hash, Hasher};
            let mut hs = std::collections::hash_map::DefaultHasher::new();
            (rgb, w, h).hash(&mut hs);
            hs.finish()
        };
        let cached = self.full.lock().unwrap().get(&key).cloned();
        let full = match cached {
            Some(b) => b,
            None => {
                let b = self
                    .codec
                    .encode(&Self::image(rgb, w, h), 1.0)
                    .map_err(|e| e.to_string())?;
                self.full.lock().unwrap().insert(key, b.clone());
                b
            }
        };
        // Cut right after the k-th RNLY chunk. The encoder writes no layer that would not
        // improve the picture, so a file may have fewer than k: a viewer then holds all of it.
        let ends = lic::info(&full).map_err(|e| e.to_string())?.layer_ends();
        match ends.get(k - 1).or(ends.last()) {
            Some(&end) => Ok(full[..end].to_vec()),
            None => Err("the -q 1 file has no layer".into()),
        }
    }
    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let img = self.codec.decode(bytes).map_err(|e| e.to_string())?;
        match img.color {
            ColorType::Rgb => Ok(img.data),
            c => Err(format!("lic decoded {c:?}, expected RGB")),
        }
    }
}

/// Settings `q{Q}` for integer quality knobs.
fn integer_qualities(q: &[u32]) -> Vec<Setting> {
    q.iter()
        .map(|&q| Setting {
            label: format!("q{q}"),
            value: q as f32,
        })
        .collect()
}

/// libjpeg-turbo through its TurboJPEG API: 4:2:0, optimized Huffman tables, islow DCT:
/// the settings of `cjpeg -quality Q -optimize`, the anchors' reference curve.
pub struct Jpeg;

impl Jpeg {
    /// Qualities 5, 10, …, 100: the JPEG side of the `-q` calibration (`-q x` against
    /// quality 100x).
    pub fn calibration_sweep() -> Vec<Setting> {
        integer_qualities(&(1..=20).map(|i| 5 * i).collect::<Vec<_>>())
    }

    /// Qualities 3..95. 3 and 4 extend the anchors' 5..95 sweep down to ~0.1 bpp, the start
    /// of the BD-rate window, so low-rate codecs still overlap the reference.
    pub fn sweep(quick: bool) -> Vec<Setting> {
        let q: &[u32] = if quick {
            &[3, 5, 10, 20, 30, 50, 75, 90]
        } else {
            &[
                3, 4, 5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95,
            ]
        };
        integer_qualities(q)
    }
}

impl Codec for Jpeg {
    fn name(&self) -> &str {
        "jpeg420"
    }
    fn description(&self) -> String {
        "libjpeg-turbo's encoder and decoder (MozJPEG with libjpeg-turbo's defaults, built from source by the mozjpeg crate): 4:2:0, optimized Huffman, baseline, quality 3-95".into()
    }
    fn encode(&self, rgb: &[u8], w: u32, h: u32, s: &Setting) -> Result<Vec<u8>, String> {
        use mozjpeg::qtable::{AnnexK_Chroma, AnnexK_Luma};
        // The library reports errors by unwinding.
        std::panic::catch_unwind(|| {
            let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
            // libjpeg-turbo's defaults: no trellis, no progressive scans, Annex K tables.
            c.set_fastest_defaults();
            c.set_size(w as usize, h as usize);
            c.set_chroma_sampling_pixel_sizes((2, 2), (2, 2));
            c.set_optimize_coding(true);
            // Baseline tables (entries up to 255) scaled by libjpeg's integer percentage
            // (5000/q below 50, else 200 − 2q), as libjpeg-turbo's quality setting makes them.
            let q = s.value as u32;
            let scale = if q < 50 {
                5000.0 / (5000 / q.max(1)) as f32
            } else {
                q as f32
            };
            c.set_luma_qtable(&AnnexK_Luma.scaled(scale, scale));
            c.set_chroma_qtable(&AnnexK_Chroma.scaled(scale, scale));
            let mut started = c.start_compress(Vec::new())?;
            started.write_scanlines(rgb)?;
            started.finish()
        })
        .map_err(|_| "the JPEG encoder failed".to_string())?
        .map_err(|e| e.to_string())
    }
    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        std::panic::catch_unwind(|| {
            let mut d = mozjpeg::Decompress::new_mem(bytes)?.rgb()?;
            let pixels: Vec<u8> = d.read_scanlines()?;
            d.finish()?;
            Ok::<_, std::io::Error>(pixels)
        })
        .map_err(|_| "the JPEG decoder failed".to_string())?
        .map_err(|e| e.to_string())
    }
}

/// libwebp (bundled source, built by libwebp-sys), lossy, method 6 like the anchors' `cwebp -m 6`.
pub struct Webp;

impl Webp {
    /// Qualities 0..95, the anchors' sweep.
    pub fn sweep(quick: bool) -> Vec<Setting> {
        let q: &[u32] = if quick {
            &[0, 10, 30, 50, 75, 90]
        } else {
            &[0, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95]
        };
        integer_qualities(q)
    }
}

impl Codec for Webp {
    fn name(&self) -> &str {
        "webp"
    }
    fn description(&self) -> String {
        "libwebp (bundled by libwebp-sys), lossy, -m 6, quality 0-95".into()
    }
    fn encode(&self, rgb: &[u8], w: u32, h: u32, s: &Setting) -> Result<Vec<u8>, String> {
        let mut config = webp::WebPConfig::new().map_err(|_| "WebPConfig".to_string())?;
        config.quality = s.value;
        config.method = 6;
        let mem = webp::Encoder::from_rgb(rgb, w, h)
            .encode_advanced(&config)
            .map_err(|e| format!("webp encode: {e:?}"))?;
        Ok(mem.to_vec())
    }
    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let img = webp::Decoder::new(bytes)
            .decode()
            .ok_or("webp decode failed")?;
        if img.is_alpha() {
            return Err("webp decoded with alpha".into());
        }
        Ok(img.to_vec())
    }
}
