//! Training data: every image of a folder in memory as RGB8, random crops and flips, and a
//! fixed held-out validation split (every 40th file in name order).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::Rng;

/// One decoded image.
pub struct Picture {
    /// File it came from.
    pub path: PathBuf,
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// Interleaved RGB8.
    pub rgb: Vec<u8>,
}

/// The training and validation images.
pub struct Dataset {
    /// Images crops are drawn from.
    pub train: Vec<Picture>,
    /// Held-out images.
    pub val: Vec<Picture>,
}

/// Every 40th image (in name order) is held out for validation.
pub const VAL_EVERY: usize = 40;

/// Image files of a folder, sorted by name.
pub fn image_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(|e| e.to_ascii_lowercase())
                    .as_deref(),
                Some("png" | "jpg" | "jpeg" | "ppm" | "bmp" | "tif" | "tiff" | "webp")
            )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Loads an image as RGB8.
pub fn load_picture(path: &Path) -> Result<Picture, String> {
    let img = image::open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .into_rgb8();
    Ok(Picture {
        path: path.to_owned(),
        width: img.width() as usize,
        height: img.height() as usize,
        rgb: img.into_raw(),
    })
}

impl Dataset {
    /// Loads a folder; images smaller than `min_side` are skipped for training.
    pub fn load(dir: &Path, min_side: usize) -> Result<Self, String> {
        let files = image_files(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut train = Vec::new();
        let mut val = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let p = load_picture(f)?;
            if i % VAL_EVERY == VAL_EVERY / 2 {
                val.push(p);
            } else if p.width >= min_side && p.height >= min_side {
                train.push(p);
            }
        }
        if train.is_empty() {
            return Err(format!(
                "no training images of at least {min_side} px in {}",
                dir.display()
            ));
        }
        Ok(Self { train, val })
    }

    /// A batch of random `patch`×`patch` crops with random horizontal flips, `(B, 3, P, P)` in [0, 1].
    pub fn batch(
        &self,
        rng: &mut impl Rng,
        batch: usize,
        patch: usize,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut v = vec![0f32; batch * 3 * patch * patch];
        for b in 0..batch {
            let p = &self.train[rng.gen_range(0..self.train.len())];
            let y0 = rng.gen_range(0..=p.height - patch);
            let x0 = rng.gen_range(0..=p.width - patch);
            let flip = rng.gen_bool(0.5);
            for y in 0..patch {
                for x in 0..patch {
                    let sx = if flip { x0 + patch - 1 - x } else { x0 + x };
                    let s = ((y0 + y) * p.width + sx) * 3;
                    for c in 0..3 {
                        v[((b * 3 + c) * patch + y) * patch + x] = p.rgb[s + c] as f32 / 255.0;
                    }
                }
            }
        }
        Tensor::from_vec(v, (batch, 3, patch, patch), dev)
    }
}

/// The centre crop of a picture to multiples of 16 (at most `max` a side), `(1, 3, H, W)`.
pub fn centre_crop(p: &Picture, max: usize, dev: &Device) -> candle_core::Result<Tensor> {
    let h = (p.height.min(max) / 16) * 16;
    let w = (p.width.min(max) / 16) * 16;
    let (y0, x0) = ((p.height - h) / 2, (p.width - w) / 2);
    let mut v = vec![0f32; 3 * h * w];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                v[(c * h + y) * w + x] =
                    p.rgb[((y0 + y) * p.width + x0 + x) * 3 + c] as f32 / 255.0;
            }
        }
    }
    Tensor::from_vec(v, (1, 3, h, w), dev)
}
