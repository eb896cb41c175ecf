//! Building blocks of the transforms: a 'same'-padded convolution computed as im2col + matmul
//! (fast forward *and* backward on candle's CPU backend, whose direct conv kernels are slow to
//! differentiate), GDN / inverse GDN, and the pixel (un)shuffles that replace strided and
//! transposed convolutions.

use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use super::im2col::Im2Col;

/// How [`Conv`] runs on a GPU (a process-wide choice; the CPU always uses im2col).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuConv {
    /// candle's `conv2d`.
    Native,
    /// [`Conv::forward_unfolded`].
    Unfolded,
}

static GPU_CONV_UNFOLDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Chooses how convolutions run on a GPU from now on.
pub fn set_gpu_conv(kind: GpuConv) {
    GPU_CONV_UNFOLDED.store(
        kind == GpuConv::Unfolded,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// How convolutions run on a GPU ([`GpuConv::Native`] unless [`set_gpu_conv`] said otherwise).
pub fn gpu_conv() -> GpuConv {
    if GPU_CONV_UNFOLDED.load(std::sync::atomic::Ordering::Relaxed) {
        GpuConv::Unfolded
    } else {
        GpuConv::Native
    }
}

/// A k×k convolution with stride 1, 'same' zero padding and a bias.
///
/// Weights are stored as `(cout, cin, k, k)` (the usual layout) and kept reshaped to
/// `(cout, cin·k·k)` for the matmul.
#[derive(Clone, Debug)]
pub struct Conv {
    w: Tensor,
    b: Tensor,
    k: usize,
    cout: usize,
}

impl Conv {
    /// The same layer with its weights detached from any `Var` (as loaded for coding).
    #[cfg(test)]
    pub(crate) fn detached(&self) -> Self {
        Self {
            w: self.w.detach(),
            b: self.b.detach(),
            k: self.k,
            cout: self.cout,
        }
    }

    /// Creates or loads the layer under `vb` (`weight`, `bias`).
    pub fn new(vb: VarBuilder, cin: usize, cout: usize, k: usize) -> Result<Self> {
        let fan_in = (cin * k * k) as f64;
        let w = vb.get_with_hints(
            (cout, cin, k, k),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: (1.0 / fan_in).sqrt(),
            },
        )?;
        let b = vb.get_with_hints(cout, "bias", Init::Const(0.0))?;
        Ok(Self {
            w: w.reshape((cout, cin * k * k))?,
            b,
            k,
            cout,
        })
    }

    /// The weight `(cout, cin·k·k)` and bias as f32 vectors (for the decoder's own kernels).
    pub fn to_vecs(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((
            self.w.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
            self.b.to_dtype(DType::F32)?.to_vec1()?,
        ))
    }

    /// `x`: `(B, cin, H, W)` → `(B, cout, H, W)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, _, _) = x.dims4()?;
        if !x.device().is_cpu() {
            if gpu_conv() == GpuConv::Unfolded {
                return self.forward_unfolded(x);
            }
            // candle's own convolution (and no im2col op of ours on a GPU).
            let kernel = self.w.reshape((self.cout, c, self.k, self.k))?;
            let y = x.conv2d(&kernel, self.k / 2, 1, 1, 1)?;
            return y.broadcast_add(&self.b.reshape((1, self.cout, 1, 1))?);
        }
        if b == 1 && self.k > 1 && !x.track_op() && !self.w.track_op() {
            // Inference on one image: the im2col columns of a band of rows at a time.
            return in_row_bands(x, self.band_rows(x)?, self.k / 2, 1, |band| {
                self.forward_im2col(band)
            });
        }
        self.forward_im2col(x)
    }

    /// The convolution from candle's generic ops, for any device: the k² shifted views of the
    /// zero-padded input stacked as channels (im2col by copies), then one batched matmul.
    /// Its backward is matmuls and copies, where that of candle's CUDA `conv2d` runs
    /// `conv_transpose2d` as a direct kernel; it holds k² copies of the input.
    pub fn forward_unfolded(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (k, p) = (self.k, self.k / 2);
        let cols = if k == 1 {
            x.reshape((b, c, h * w))?
        } else {
            let xp = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
            let mut views = Vec::with_capacity(k * k);
            for dy in 0..k {
                for dx in 0..k {
                    views.push(xp.narrow(2, dy, h)?.narrow(3, dx, w)?);
                }
            }
            // (b, c, k², h, w): channel ci's taps at ci·k² + k·dy + dx, as the weights are.
            Tensor::stack(&views, 2)?.reshape((b, c * k * k, h * w))?
        };
        let y = self.w.broadcast_matmul(&cols)?;
        y.broadcast_add(&self.b.reshape((1, self.cout, 1))?)?
            .reshape((b, self.cout, h, w))
    }

    /// The CPU convolution as one im2col + matmul over the whole of `x`.
    fn forward_im2col(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let cols = if self.k == 1 {
            x.reshape((b, c, h * w))?
        } else {
            x.contiguous()?.apply_op1(Im2Col { k: self.k })?
        };
        let y = if b == 1 {
            self.w.broadcast_matmul(&cols)?
        } else {
            // One (cout × K)·(K × B·HW) product instead of B small ones: on small maps (a
            // 32² crop is 2×2 at 1/16) the batched form spends its time in per-item overhead,
            // and its backward materialises B copies of the weight gradient.
            let kk = cols.dim(1)?;
            let flat = cols
                .transpose(0, 1)?
                .contiguous()?
                .reshape((kk, b * h * w))?;
            self.w
                .matmul(&flat)?
                .reshape((self.cout, b, h * w))?
                .transpose(0, 1)?
        };
        let y = y.broadcast_add(&self.b.reshape((1, self.cout, 1))?)?;
        y.reshape((b, self.cout, h, w))
    }
}

/// Applies `stage` to `x` `(1, C, H, W)` in bands of `rows` rows and concatenates the
/// results. `stage` reads at most `halo` rows beyond each output row (a k×k convolution:
/// k/2) and scales rows by `up` (a pixel shuffle); each band gets its halo rows from `x` and
/// keeps only the output rows of its own, so the result equals `stage(x)` up to the float
/// rounding of the smaller products.
pub fn in_row_bands(
    x: &Tensor,
    rows: usize,
    halo: usize,
    up: usize,
    stage: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let h = x.dim(2)?;
    if rows >= h {
        return stage(x);
    }
    // Each band's rows go straight into the output planes, so the bands never exist all at
    // once beside the output.
    let mut out: Vec<f32> = Vec::new();
    let mut shape = (0, 0);
    for y0 in (0..h).step_by(rows.max(1)) {
        let y1 = (y0 + rows).min(h);
        let (a, z) = (y0.saturating_sub(halo), (y1 + halo).min(h));
        let band = stage(&x.narrow(2, a, z - a)?)?;
        let (_, c, _, bw) = band.dims4()?;
        if out.is_empty() {
            shape = (c, bw);
            out = vec![0.0; c * h * up * bw];
        }
        let (skip, keep) = ((y0 - a) * up, (y1 - y0) * up);
        let band: Vec<f32> = band.narrow(2, skip, keep)?.flatten_all()?.to_vec1()?;
        let plane = h * up * bw;
        for ch in 0..c {
            let src = &band[ch * keep * bw..(ch + 1) * keep * bw];
            out[ch * plane + y0 * up * bw..][..keep * bw].copy_from_slice(src);
        }
    }
    let (c, bw) = shape;
    Tensor::from_vec(out, (1, c, h * up, bw), x.device())
}

/// Bytes the temporaries of one band of a synthesis stage take at most: the im2col columns
/// ([`Conv::BAND_BYTES`]) and the band's convolution output, pixel shuffle and normalization.
pub const BAND_TEMPORARIES: u64 = 4 * Conv::BAND_BYTES as u64;

impl Conv {
    /// Whether the weights take part in autograd (training) rather than being loaded for
    /// coding.
    pub fn tracked(&self) -> bool {
        self.w.track_op()
    }

    /// Rows of `x` per band for [`in_row_bands`]: as many as keep this layer's im2col
    /// columns within [`Self::BAND_BYTES`], at least 8.
    pub fn band_rows(&self, x: &Tensor) -> Result<usize> {
        let (_, c, _, w) = x.dims4()?;
        let per_row = c * self.k * self.k * w * std::mem::size_of::<f32>();
        Ok((Self::BAND_BYTES / per_row.max(1)).max(8))
    }

    /// Bytes of im2col columns a band may take: a k×k convolution's columns are k² times its
    /// input, which made them most of a decoder's peak memory when built for the whole image.
    pub const BAND_BYTES: usize = 8 << 20;
}

/// Generalized divisive normalization (Ballé et al.): `y = x / sqrt(β + Γ x²)`, or its
/// inverse `y = x · sqrt(β + Γ x²)`. β and Γ are kept non-negative by squaring the stored
/// parameters.
#[derive(Clone, Debug)]
pub struct Gdn {
    beta: Tensor,
    gamma: Tensor,
    inverse: bool,
    c: usize,
}

impl Gdn {
    /// The same layer with its parameters detached from any `Var` (as loaded for coding).
    #[cfg(test)]
    pub(crate) fn detached(&self) -> Self {
        Self {
            beta: self.beta.detach(),
            gamma: self.gamma.detach(),
            ..self.clone()
        }
    }

    /// Creates or loads the layer under `vb` (`beta`, `gamma`).
    pub fn new(vb: VarBuilder, c: usize, inverse: bool) -> Result<Self> {
        let beta = vb.get_with_hints(c, "beta", Init::Const(1.0))?;
        // A fresh VarMap starts Γ at zero; the trainer resets it to 0.1·I (see `lic_train::init_fresh`).
        let gamma = vb.get_with_hints((c, c), "gamma", Init::Const(0.0))?;
        Ok(Self {
            beta,
            gamma,
            inverse,
            c,
        })
    }

    /// The stored (unsquared) β `(C)` and Γ `(C, C)` as f32 vectors.
    pub fn to_vecs(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((
            self.beta.to_dtype(DType::F32)?.to_vec1()?,
            self.gamma.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
        ))
    }

    /// `x`: `(B, C, H, W)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, _, w) = x.dims4()?;
        if b == 1 && !x.track_op() && !self.gamma.track_op() {
            // Inference: per pixel, so bands of rows bound the temporaries (x², Γx², the
            // norm) without changing a value.
            let rows = Conv::BAND_BYTES / (c * w * std::mem::size_of::<f32>()).max(1);
            return in_row_bands(x, rows.max(1), 0, 1, |band| self.normalize(band));
        }
        self.normalize(x)
    }

    fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let flat = x.reshape((b, c, h * w))?;
        let gamma = self.gamma.sqr()?;
        let beta = (self.beta.sqr()? + 1e-6)?.reshape((1, self.c, 1))?;
        let norm = gamma
            .broadcast_matmul(&flat.sqr()?)?
            .broadcast_add(&beta)?
            .sqrt()?;
        let y = if self.inverse {
            (flat * norm)?
        } else {
            (flat / norm)?
        };
        y.reshape((b, c, h, w))
    }
}

/// `(B, C, H, W)` → `(B, C·r², H/r, W/r)` (pixel unshuffle).
pub fn space_to_depth(x: &Tensor, r: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    x.reshape((b, c, h / r, r, w / r, r))?
        .permute((0, 1, 3, 5, 2, 4))?
        .contiguous()?
        .reshape((b, c * r * r, h / r, w / r))
}

/// `(B, C·r², H, W)` → `(B, C, H·r, W·r)` (pixel shuffle); inverse of [`space_to_depth`].
pub fn depth_to_space(x: &Tensor, r: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let co = c / (r * r);
    x.reshape((b, co, r, r, h, w))?
        .permute((0, 1, 4, 2, 5, 3))?
        .contiguous()?
        .reshape((b, co, h * r, w * r))
}

/// Sum over every dimension but the first: `(B, ...)` → `(B,)`.
pub fn sum_per_item(x: &Tensor) -> Result<Tensor> {
    let b = x.dim(0)?;
    x.reshape((b, ()))?.sum(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn shuffles_are_inverse() -> Result<()> {
        let x = Tensor::arange(0f32, 2.0 * 3.0 * 4.0 * 6.0, &Device::Cpu)?.reshape((2, 3, 4, 6))?;
        let y = depth_to_space(&space_to_depth(&x, 2)?, 2)?;
        let d = (x - y)?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert_eq!(d, 0.0);
        Ok(())
    }

    #[test]
    fn im2col_conv_matches_candle_conv2d() -> Result<()> {
        let dev = Device::Cpu;
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let conv = Conv::new(vb.pp("c"), 5, 7, 3)?;
        let x = Tensor::randn(0f32, 1.0, (2, 5, 9, 11), &dev)?;
        let ours = conv.forward(&x)?;
        let w = conv.w.reshape((7, 5, 3, 3))?;
        let theirs = x
            .conv2d(&w, 1, 1, 1, 1)?
            .broadcast_add(&conv.b.reshape((1, 7, 1, 1))?)?;
        let d = (ours - theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-4, "max diff {d}");
        Ok(())
    }

    #[test]
    fn unfolded_conv_matches_im2col_in_value_and_gradients() -> Result<()> {
        // The GPU path, run here on the CPU: same outputs, same gradients for the input and
        // both parameters.
        let dev = Device::Cpu;
        for k in [1, 3] {
            let vm = candle_nn::VarMap::new();
            let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
            let conv = Conv::new(vb.pp("c"), 5, 7, k)?;
            let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 5, 9, 11), &dev)?)?;
            let target = Tensor::randn(0f32, 1.0, (2, 7, 9, 11), &dev)?;
            let max_diff = |a: &Tensor, b: &Tensor| -> Result<f32> {
                (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
            };
            let (a, b) = (conv.forward_im2col(&x)?, conv.forward_unfolded(&x)?);
            assert!(max_diff(&a, &b)? < 1e-4, "k {k}: outputs differ");
            let ga = (a * &target)?.sum_all()?.backward()?;
            let gb = (b * &target)?.sum_all()?.backward()?;
            let mut vars = vm.all_vars();
            vars.push(x.clone());
            for v in &vars {
                let d = max_diff(ga.get(v).unwrap(), gb.get(v).unwrap())?;
                assert!(d < 1e-3, "k {k}: gradient differs by {d}");
            }
        }
        Ok(())
    }

    #[test]
    fn bands_of_rows_give_the_whole_image_result() -> Result<()> {
        let dev = Device::Cpu;
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let conv = Conv::new(vb.pp("c"), 6, 16, 3)?;
        let gdn = Gdn::new(vb.pp("g"), 4, true)?;
        let x = Tensor::randn(0f32, 1.0, (1, 6, 23, 10), &dev)?;
        // Tracked (Var) weights take the whole-image path; detached ones the bands.
        let whole = conv.forward(&x)?;
        let (plain, gdn) = (conv.detached(), gdn.detached());
        let max_diff = |a: &Tensor, b: &Tensor| -> Result<f32> {
            (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
        };
        assert!(max_diff(&whole, &plain.forward(&x)?)? < 1e-5);
        // A synthesis stage (conv, pixel shuffle, inverse GDN) in bands of 1, 4 and 7 rows.
        let stage = |x: &Tensor| gdn.forward(&depth_to_space(&plain.forward(x)?, 2)?);
        let reference = stage(&x)?;
        for rows in [1, 4, 7] {
            let banded = in_row_bands(&x, rows, 1, 2, stage)?;
            assert_eq!(banded.dims4()?, (1, 4, 46, 20));
            let d = max_diff(&reference, &banded)?;
            assert!(d < 1e-5, "{rows} rows: max diff {d}");
        }
        Ok(())
    }
}
