//! Training data: every image of a folder in memory as RGB8, random crops and flips, and a
//! fixed held-out validation split (every 40th file in name order).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::distributions::{Distribution, WeightedIndex};
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
    /// Sampling weight of each image of `train`.
    weights: Vec<f64>,
    /// Draws an index of `train` by weight.
    index: WeightedIndex<f64>,
}

/// A relative sampling weight for the training images that match `key`: `grey` matches
/// pictures whose three channels are equal everywhere, any other key is a file-name prefix
/// (`sipi` matches `sipi-002.png`). An image matching several rules gets their product.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleWeight {
    /// `grey` or a file-name prefix.
    pub key: String,
    /// Relative weight (1 = as often as any other image).
    pub weight: f64,
}

impl std::str::FromStr for SampleWeight {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (key, w) = s
            .split_once('=')
            .ok_or_else(|| format!("sample weight {s:?} is not KEY=WEIGHT"))?;
        let weight: f64 = w
            .parse()
            .map_err(|_| format!("sample weight {s:?}: {w:?} is not a number"))?;
        if key.is_empty() || !(weight.is_finite() && weight >= 0.0) {
            return Err(format!(
                "sample weight {s:?}: needs a key and a weight of at least 0"
            ));
        }
        Ok(Self {
            key: key.to_owned(),
            weight,
        })
    }
}

impl Picture {
    /// True when the three channels are equal at every pixel.
    pub fn is_grey(&self) -> bool {
        self.rgb
            .chunks_exact(3)
            .all(|p| p[0] == p[1] && p[1] == p[2])
    }

    /// The product of the weights of the rules that match this picture.
    fn sample_weight(&self, rules: &[SampleWeight]) -> f64 {
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        rules
            .iter()
            .filter(|r| {
                if r.key == "grey" {
                    self.is_grey()
                } else {
                    name.starts_with(&r.key)
                }
            })
            .map(|r| r.weight)
            .product()
    }
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
    /// Loads a folder; images smaller than `min_side` are skipped for training. Crops are
    /// drawn from image i with probability proportional to its weight under `rules`
    /// (uniformly when there are none).
    pub fn load(dir: &Path, min_side: usize, rules: &[SampleWeight]) -> Result<Self, String> {
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
        Self::from_pictures(train, val, rules)
    }

    /// A dataset of pictures already in memory, weighted by `rules`.
    pub fn from_pictures(
        train: Vec<Picture>,
        val: Vec<Picture>,
        rules: &[SampleWeight],
    ) -> Result<Self, String> {
        let weights: Vec<f64> = train.iter().map(|p| p.sample_weight(rules)).collect();
        let index = WeightedIndex::new(&weights)
            .map_err(|_| "no training image (or the sample weights leave none)".to_string())?;
        Ok(Self {
            train,
            val,
            weights,
            index,
        })
    }

    /// The share of crops each training image gets, in `train` order.
    pub fn sampling_shares(&self) -> Vec<f64> {
        let total: f64 = self.weights.iter().sum();
        self.weights.iter().map(|w| w / total).collect()
    }

    /// Index of a training image drawn by weight (never one of weight 0).
    fn pick(&self, rng: &mut impl Rng) -> usize {
        self.index.sample(rng)
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
            let p = &self.train[self.pick(rng)];
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn picture(name: &str, grey: bool) -> Picture {
        let rgb = (0..16 * 16 * 3)
            .map(|i| if grey { (i / 3) as u8 } else { i as u8 })
            .collect();
        Picture {
            path: PathBuf::from(name),
            width: 16,
            height: 16,
            rgb,
        }
    }

    #[test]
    fn sample_weights_parse_and_reject() {
        let w: SampleWeight = "sipi=0.25".parse().unwrap();
        assert_eq!(
            w,
            SampleWeight {
                key: "sipi".into(),
                weight: 0.25
            }
        );
        for bad in ["sipi", "=1", "grey=-1", "grey=x", "grey=inf"] {
            assert!(bad.parse::<SampleWeight>().is_err(), "{bad}");
        }
    }

    #[test]
    fn crops_follow_the_weights() {
        let rules: Vec<SampleWeight> = ["grey=0.5", "tex=0"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let train = vec![
            picture("a.png", false),
            picture("b.png", true),
            picture("tex-1.png", false),
        ];
        let ds = Dataset::from_pictures(train, Vec::new(), &rules).unwrap();
        assert_eq!(ds.sampling_shares(), vec![2.0 / 3.0, 1.0 / 3.0, 0.0]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[ds.pick(&mut rng)] += 1;
        }
        assert_eq!(counts[2], 0, "a zero-weight image is never drawn");
        let share = counts[0] as f64 / 30_000.0;
        assert!((share - 2.0 / 3.0).abs() < 0.02, "{counts:?}");
        assert!(
            Dataset::from_pictures(vec![picture("tex-2.png", true)], Vec::new(), &rules).is_err()
        );
    }
}
