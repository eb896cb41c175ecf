//! The content-weighted autoencoder (cw): analysis / synthesis transforms, the importance map,
//! the variable-rate gain vectors and the float twin of the conditional probability model.
//!
//! ```text
//!  x ─► s2d·conv·GDN ×3 ─► s2d·conv ─┬─► y (M ch, /16) ─► ×gain(q) ─► round ─► ŷ ─► mask ─┐
//!                                    └─► importance logit ─► +bias(q) ─► level ∈ [0, L) ──┤
//!                                                                                       ▼
//!  x̂ ◄─ conv·d2s ◄─ (IGDN|ReLU·conv·d2s) ×3 ◄─────────────────────────────── ŷ·mask / gain(q)
//!
//!  entropy model (Laplace, scale σ): ln σ[c] = base[level][c] + ln gain[c](q)
//!     + ctx(anchor neighbours)           off-anchor
//!     + actx(earlier channel slices)     on anchors, when the weights carry `actx.*`
//! ```
//!
//! The importance level `l` of a latent position keeps the first `(l + 1)·CH_PER_LEVEL`
//! channels; the others are neither coded nor used (they decode as 0).

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::layers::{depth_to_space, in_row_bands, space_to_depth, Conv, Gdn};
use super::synthesis::{Stage, Synthesizer};

pub use lic_format::arch::cw::*;
pub use lic_format::rate::{RatePos, T_TOP};

/// The float model. Built from a `VarBuilder`: a `VarMap` when training, the shipped
/// safetensors when coding.
pub struct CwModel {
    enc: Vec<Conv>,
    enc_gdn: Vec<Gdn>,
    dec: Vec<Conv>,
    dec_gdn: Option<Vec<Gdn>>,
    /// `(RATE_POINTS, M)`: ln of the per-channel gain of each rate point.
    pub log_gain: Tensor,
    /// `(RATE_POINTS,)`: bias added to the importance logit at each rate point.
    pub map_bias: Tensor,
    /// `(LEVELS, M)`: ln σ of each channel given the importance level (gain 1).
    pub base: Tensor,
    /// Context network, first layer: `(CTX_HIDDEN, CTX_IN)` as a 1×1 conv.
    pub ctx1: Conv,
    /// Context network, second layer: `(M, CTX_HIDDEN)`, output in ln σ units.
    pub ctx2: Conv,
    /// Anchor-context networks of slices 1.. (first and second layer each), when the
    /// weights have them (`actx.K.a`, `actx.K.b`).
    pub actx: Option<Vec<(Conv, Conv)>>,
    device: Device,
}

/// Rate-distortion trade-off of each rate point: loss = λ·255²·MSE + bpp.
///
/// Log-evenly spaced from 3e-5 to 0.04 (×6.04 per point). The first weights used
/// 0.0016..0.10; with the PCA start the model reached 0.47–2.34 bpp on Kodak with those, and
/// 0.18–1.90 bpp with 1e-4..0.04, short of the 0.12 bpp the `-q` range must reach. Raising the
/// top point to 0.06 (steps 3380–4130) made validation worse at every rate point within 600
/// steps, so it stays at 0.04; the top of the `-q` range (1.31 bpp on Kodak, short of 1.5)
/// needs another remedy.
pub const LAMBDAS: [f64; RATE_POINTS] = [3e-5, 1.81e-4, 1.095e-3, 6.61e-3, 0.04];

/// The non-linearity between synthesis stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synthesis {
    /// ReLU (the first shipped weights).
    Relu,
    /// Inverse GDN (`dec_gdn.*` tensors): the identity when Γ = 0, so a linear (PCA) start
    /// stays linear until training bends it.
    Igdn,
}

/// λ at a rate position (log-linear between the rate points' [`LAMBDAS`]).
pub fn lambda(pos: RatePos) -> f64 {
    let (a, b) = (LAMBDAS[pos.index].ln(), LAMBDAS[pos.index + 1].ln());
    (a + (b - a) * pos.frac).exp()
}

/// Everything the training loss needs from one forward pass.
pub struct TrainOutput {
    /// Reconstruction in [0, 1] (not clipped).
    pub x_hat: Tensor,
    /// Estimated bits of the coded latents, summed over the batch (scalar).
    pub bits: Tensor,
    /// Mean fraction of latent channels kept (scalar).
    pub kept: Tensor,
}

impl CwModel {
    /// Loads the model, with the synthesis the tensors describe (inverse GDN when
    /// `dec_gdn.*` is present, else ReLU); on an empty `VarMap` this creates a ReLU model.
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let synthesis = if vb.contains_tensor("dec_gdn.0.beta") {
            Synthesis::Igdn
        } else {
            Synthesis::Relu
        };
        Self::with_synthesis(vb, synthesis)
    }

    /// Creates (training) or loads (coding) the model with the given synthesis non-linearity.
    pub fn with_synthesis(vb: VarBuilder, synthesis: Synthesis) -> Result<Self> {
        let enc_ch = [3 * 4, 64, 96, 128];
        let enc_out = [64, 96, 128, M + 1];
        let mut enc = Vec::new();
        let mut enc_gdn = Vec::new();
        for i in 0..4 {
            let cin = if i == 0 { enc_ch[0] } else { enc_ch[i] * 4 };
            enc.push(Conv::new(vb.pp(format!("enc.{i}")), cin, enc_out[i], 3)?);
            if i < 3 {
                enc_gdn.push(Gdn::new(vb.pp(format!("enc_gdn.{i}")), enc_out[i], false)?);
            }
        }
        // Synthesis: conv to r²·C then depth-to-space.
        let mut dec = Vec::new();
        for (i, &(cin, cout)) in SYNTHESIS.iter().enumerate() {
            dec.push(Conv::new(vb.pp(format!("dec.{i}")), cin, cout * 4, 3)?);
        }
        let dec_gdn = match synthesis {
            Synthesis::Relu => None,
            Synthesis::Igdn => Some(
                (0..3)
                    .map(|i| Gdn::new(vb.pp(format!("dec_gdn.{i}")), SYNTHESIS[i].1, true))
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let dev = vb.device().clone();
        let lg0 = (3.0f64).ln();
        let lg1 = (20.0f64).ln();
        let init_lg: Vec<f32> = (0..RATE_POINTS)
            .flat_map(|r| {
                let v = lg0 + (lg1 - lg0) * r as f64 / (RATE_POINTS - 1) as f64;
                std::iter::repeat(v as f32).take(M)
            })
            .collect();
        let log_gain = get_or_init(
            &vb,
            "log_gain",
            Tensor::from_vec(init_lg, (RATE_POINTS, M), &dev)?,
        )?;
        let init_mb: Vec<f32> = (0..RATE_POINTS)
            .map(|r| -2.0 + 4.0 * r as f32 / (RATE_POINTS - 1) as f32)
            .collect();
        let map_bias = get_or_init(
            &vb,
            "map_bias",
            Tensor::from_vec(init_mb, RATE_POINTS, &dev)?,
        )?;
        let base = vb.get_with_hints((LEVELS, M), "base", Init::Const(-1.0))?;
        let ctx1 = Conv::new(vb.pp("ctx1"), CTX_IN, CTX_HIDDEN, 1)?;
        let ctx2 = Conv::new(vb.pp("ctx2"), CTX_HIDDEN, M, 1)?;
        // Created when training (a VarMap makes what it lacks), loaded when the file has
        // them, absent otherwise (weights from before the anchor context).
        let actx = (1..SLICES)
            .map(|k| -> Result<(Conv, Conv)> {
                let v = vb.pp(format!("actx.{k}"));
                Ok((
                    Conv::new(v.pp("a"), actx_inputs(k), ACTX_HIDDEN, 1)?,
                    Conv::new(
                        v.pp("b"),
                        ACTX_HIDDEN,
                        slice_start(k + 1) - slice_start(k),
                        1,
                    )?,
                ))
            })
            .collect::<Result<Vec<_>>>();
        let actx = match actx {
            Ok(a) => Some(a),
            Err(_) if !vb.contains_tensor("actx.1.a.weight") => None,
            Err(e) => return Err(e),
        };
        Ok(Self {
            enc,
            enc_gdn,
            dec,
            dec_gdn,
            log_gain,
            map_bias,
            base,
            ctx1,
            ctx2,
            actx,
            device: dev,
        })
    }

    /// The synthesis non-linearity.
    pub fn synthesis_kind(&self) -> Synthesis {
        if self.dec_gdn.is_some() {
            Synthesis::Igdn
        } else {
            Synthesis::Relu
        }
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Analysis: `x` in [0, 1], `(B, 3, H, W)` with H, W multiples of 16 →
    /// (`y`: `(B, M, H/16, W/16)`, importance logit `(B, 1, H/16, W/16)`).
    pub fn analysis(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.enc[3].forward(&self.analysis_last_input(x)?)?;
        Ok((h.narrow(1, 0, M)?, h.narrow(1, M, 1)?))
    }

    /// The input of the last analysis convolution, `(B, 512, H/16, W/16)` (net surgery).
    pub fn analysis_last_input(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = ((x - 0.5)? * 2.0)?;
        for i in 0..3 {
            h = self.enc_gdn[i].forward(&self.enc[i].forward(&space_to_depth(&h, 2)?)?)?;
        }
        space_to_depth(&h, 2)
    }

    /// The first synthesis convolution alone, before depth-to-space (net surgery).
    pub fn synthesis_first(&self, y: &Tensor) -> Result<Tensor> {
        self.dec[0].forward(y)
    }

    /// Synthesis: de-gained latents `(B, M, h, w)` → image `(B, 3, 16h, 16w)` around [0, 1].
    pub fn synthesis(&self, y: &Tensor) -> Result<Tensor> {
        // Decoding one image: each stage runs in bands of rows (`in_row_bands`), so only
        // the stage's input and output are whole-image tensors, never its temporaries.
        let inference = y.dim(0)? == 1 && !y.track_op() && !self.dec[0].tracked();
        let mut h = y.clone();
        for i in 0..4 {
            let stage = |x: &Tensor| -> Result<Tensor> {
                let x = depth_to_space(&self.dec[i].forward(x)?, 2)?;
                match (&self.dec_gdn, i < 3) {
                    (Some(g), true) => g[i].forward(&x),
                    (None, true) => x.relu(),
                    (_, false) => Ok(x),
                }
            };
            h = if inference {
                in_row_bands(&h, self.dec[i].band_rows(&h)?, 1, 2, stage)?
            } else {
                stage(&h)?
            };
        }
        (h * 0.5)? + 0.5
    }

    /// The synthesis as the decoder runs it ([`Synthesizer`]), with copies of these weights.
    pub fn synthesizer(&self) -> Result<Synthesizer> {
        let mut stages = Vec::with_capacity(SYNTHESIS.len());
        for (i, &(cin, cout)) in SYNTHESIS.iter().enumerate() {
            let (w, b) = self.dec[i].to_vecs()?;
            let last = i + 1 == SYNTHESIS.len();
            let gdn = match (&self.dec_gdn, last) {
                (Some(g), false) => Some(g[i].to_vecs()?),
                _ => None,
            };
            stages.push(Stage::new(cin, cout, w, b, gdn, last).map_err(candle_core::Error::Msg)?);
        }
        Ok(Synthesizer::new(stages))
    }

    /// ln gain `(M,)` and importance bias (scalar) at a rate position.
    pub fn rate_params(&self, pos: RatePos) -> Result<(Tensor, Tensor)> {
        let lerp = |t: &Tensor| -> Result<Tensor> {
            let a = t.get(pos.index)?;
            let b = t.get(pos.index + 1)?;
            (a * (1.0 - pos.frac))? + (b * pos.frac)?
        };
        Ok((lerp(&self.log_gain)?, lerp(&self.map_bias)?))
    }

    /// Context network on the anchor tensor (values already clipped, non-anchors zero):
    /// ln σ offsets `(B, M, h, w)`.
    pub fn context(&self, anchors: &Tensor) -> Result<Tensor> {
        let feats = context_features(anchors)?;
        let h = self.ctx1.forward(&feats)?.relu()?;
        self.ctx2.forward(&h)
    }

    /// Anchor-context network on the anchor tensor (as for [`context`](Self::context)):
    /// ln σ offsets `(B, M, h, w)`, zero for slice 0 and off-anchor; `None` without `actx`.
    pub fn anchor_context(&self, anchors: &Tensor) -> Result<Option<Tensor>> {
        let Some(nets) = &self.actx else {
            return Ok(None);
        };
        let (b, _, h, w) = anchors.dims4()?;
        let mut outs = vec![Tensor::zeros(
            (b, slice_start(1), h, w),
            DType::F32,
            anchors.device(),
        )?];
        for (k, (a, bnet)) in nets.iter().enumerate().map(|(i, n)| (i + 1, n)) {
            let prev = anchors.narrow(1, 0, slice_start(k))?;
            let mut parts = Vec::with_capacity(2 * ACTX_TAPS.len());
            for (di, dj) in ACTX_TAPS {
                // Per tap: values, then magnitudes.
                let t = shifted(&prev, di, dj)?;
                let magnitude = t.abs()?;
                parts.push(t);
                parts.push(magnitude);
            }
            let hidden = a.forward(&Tensor::cat(&parts, 1)?)?.relu()?;
            outs.push(bnet.forward(&hidden)?);
        }
        Tensor::cat(&outs, 1)?
            .broadcast_mul(&anchor_mask(h, w, anchors.device())?)
            .map(Some)
    }

    /// ln σ of every latent: base and gain, the context network off-anchor, the anchor
    /// context on anchors. `yq` is quantized and masked, `base` from
    /// [`mask_and_base`](Self::mask_and_base), `lg4` the ln gain `(1, M, 1, 1)`.
    pub fn log_sigma(&self, yq: &Tensor, base: &Tensor, lg4: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = yq.dims4()?;
        let am = anchor_mask(h, w, &self.device)?;
        let anchors = yq
            .clamp(-(CTX_CLIP as f32), CTX_CLIP as f32)?
            .broadcast_mul(&am)?;
        let ctx = self.context(&anchors)?.broadcast_mul(&(1.0 - &am)?)?;
        let ls = (base.broadcast_add(lg4)? + ctx)?;
        match self.anchor_context(&anchors)? {
            Some(a) => ls + a,
            None => Ok(ls),
        }
    }

    /// One training pass at rate position `pos`. The synthesis sees the rounded latents
    /// (straight-through gradient) when `ste` is set, else the noisy ones (which always carry
    /// information, so training starts faster).
    pub fn train_forward(&self, x: &Tensor, pos: RatePos, ste: bool) -> Result<TrainOutput> {
        let (y, logit) = self.analysis(x)?;
        let (lg, _) = self.rate_params(pos)?;
        let yg = y.broadcast_mul(&lg.reshape((1, M, 1, 1))?.exp()?)?;
        self.latents_forward(&yg, &logit, pos, ste, false)
    }

    /// The rest of [`train_forward`](Self::train_forward) from the gained latents `yg` and the
    /// importance logits: the synthesis sees rounded latents (straight-through) when `ste`,
    /// else noisy ones; the rate is that of the rounded latents when `rate_rounded` (what a
    /// file codes, for optimizing one image's latents), else of the noisy ones.
    pub fn latents_forward(
        &self,
        yg: &Tensor,
        logit: &Tensor,
        pos: RatePos,
        ste: bool,
        rate_rounded: bool,
    ) -> Result<TrainOutput> {
        let dev = &self.device;
        let (lg, _) = self.rate_params(pos)?;
        let lg4 = lg.reshape((1, M, 1, 1))?;
        let (mask, base) = self.mask_and_base(logit, pos)?;

        let rounded = (yg + (yg.round()? - yg)?.detach())?;
        let yq = (&rounded * &mask)?;
        let noise = Tensor::rand(-0.5f32, 0.5, yg.shape(), dev)?;
        let noisy = (yg + noise)?;

        let rate_in = if rate_rounded { &rounded } else { &noisy };
        let dec_in = if ste { yq.clone() } else { (&noisy * &mask)? };
        self.rate_and_synthesis(&yq, rate_in, &dec_in, &mask, &base, &lg4)
    }

    /// The pass of [`latents_forward`](Self::latents_forward) on latents `yq` that are
    /// already quantized, hard or soft (annealed soft rounding when refining one image's
    /// latents): they feed the synthesis, the rate and the context network alike.
    pub fn quantized_forward(
        &self,
        yq: &Tensor,
        logit: &Tensor,
        pos: RatePos,
    ) -> Result<TrainOutput> {
        let (lg, _) = self.rate_params(pos)?;
        let lg4 = lg.reshape((1, M, 1, 1))?;
        let (mask, base) = self.mask_and_base(logit, pos)?;
        let yq = (yq * &mask)?;
        self.rate_and_synthesis(&yq, &yq, &yq, &mask, &base, &lg4)
    }

    /// The end of both passes: the rate of `rate_in` under the entropy model that the
    /// quantized, masked latents `yq` condition, and the synthesis of `dec_in` (gained).
    fn rate_and_synthesis(
        &self,
        yq: &Tensor,
        rate_in: &Tensor,
        dec_in: &Tensor,
        mask: &Tensor,
        base: &Tensor,
        lg4: &Tensor,
    ) -> Result<TrainOutput> {
        let log_sigma = self.log_sigma(yq, base, lg4)?;
        let bits = (laplace_bits(rate_in, &log_sigma)? * mask)?.sum_all()?;
        let x_hat = self.synthesis(&dec_in.broadcast_div(&lg4.exp()?)?)?;
        let kept = mask.mean_all()?;
        Ok(TrainOutput { x_hat, bits, kept })
    }

    /// The importance mask `(B, M, h, w)` (hard forward, piecewise-linear gradient) and the
    /// base ln σ of every latent for its level `(B, M, h, w)`.
    pub fn mask_and_base(&self, logit: &Tensor, pos: RatePos) -> Result<(Tensor, Tensor)> {
        let dev = &self.device;
        let (b, _, h, w) = logit.dims4()?;
        let (_, mb) = self.rate_params(pos)?;
        let pl = (candle_nn::ops::sigmoid(&logit.broadcast_add(&mb)?)? * LEVELS as f64)?;
        let j = Tensor::arange(0f32, LEVELS as f32, dev)?.reshape((1, LEVELS, 1, 1))?;
        let diff = pl.broadcast_sub(&j)?; // (B, L, h, w)
        let soft = (diff.clone() + 1.0)?.clamp(0f32, 1f32)?;
        let hard = diff.ge(0f64)?.to_dtype(DType::F32)?;
        let gmask = (&soft + (&hard - &soft)?.detach())?;
        let mask = expand_levels(&gmask)?;
        // One-hot of the level: hard[j] − hard[j+1].
        let next = hard.narrow(1, 1, LEVELS - 1)?.pad_with_zeros(1, 0, 1)?;
        let onehot = (&hard - next)?.reshape((b, LEVELS, h * w))?;
        let base = self
            .base
            .t()?
            .broadcast_matmul(&onehot)?
            .reshape((b, M, h, w))?;
        Ok((mask, base))
    }
}

/// Loads `name` from `vb`, initialising a fresh variable with `init`.
fn get_or_init(vb: &VarBuilder, name: &str, init: Tensor) -> Result<Tensor> {
    let t = vb.get_with_hints(init.shape(), name, Init::Const(f64::NAN))?;
    // A fresh VarMap variable holds NaN: replace it by the intended start value.
    if t.is_variable() && t.flatten_all()?.get(0)?.to_scalar::<f32>()?.is_nan() {
        let var = candle_core::Var::from_tensor(&t)?;
        var.set(&init)?;
        return Ok(var.as_tensor().clone());
    }
    Ok(t)
}

/// `out[i, j] = a[i + di, j + dj]` over the last two dimensions, zero outside.
fn shifted(a: &Tensor, di: isize, dj: isize) -> Result<Tensor> {
    let (_, _, h, w) = a.dims4()?;
    let mut t = a.clone();
    if di != 0 {
        let d = di.unsigned_abs();
        let (lo, hi) = if di > 0 { (0, d) } else { (d, 0) };
        t = t.pad_with_zeros(2, lo, hi)?.narrow(2, hi, h)?;
    }
    if dj != 0 {
        let d = dj.unsigned_abs();
        let (lo, hi) = if dj > 0 { (0, d) } else { (d, 0) };
        t = t.pad_with_zeros(3, lo, hi)?.narrow(3, hi, w)?;
    }
    Ok(t)
}

/// `(B, LEVELS, h, w)` per-level mask → `(B, M, h, w)` per-channel mask.
pub fn expand_levels(g: &Tensor) -> Result<Tensor> {
    let (b, l, h, w) = g.dims4()?;
    g.reshape((b, l, 1, h, w))?
        .broadcast_as((b, l, CH_PER_LEVEL, h, w))?
        .reshape((b, l * CH_PER_LEVEL, h, w))
}

/// `(1, 1, h, w)`: 1 at checkerboard anchors ((i + j) even), else 0.
pub fn anchor_mask(h: usize, w: usize, dev: &Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..h * w)
        .map(|k| if (k / w + k % w) % 2 == 0 { 1.0 } else { 0.0 })
        .collect();
    Tensor::from_vec(v, (1, 1, h, w), dev)
}

/// The context features of every position: for the neighbours above, below, left and right
/// (zero outside the image), their values and absolute values: `(B, 8·M, h, w)`.
pub fn context_features(a: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = a.dims4()?;
    let up = a.pad_with_zeros(2, 1, 0)?.narrow(2, 0, h)?; // value of (i−1, j)
    let down = a.pad_with_zeros(2, 0, 1)?.narrow(2, 1, h)?; // (i+1, j)
    let left = a.pad_with_zeros(3, 1, 0)?.narrow(3, 0, w)?; // (i, j−1)
    let right = a.pad_with_zeros(3, 0, 1)?.narrow(3, 1, w)?; // (i, j+1)
    let mut parts = Vec::with_capacity(8);
    for n in [up, down, left, right] {
        let magnitude = n.abs()?;
        parts.push(n);
        parts.push(magnitude);
    }
    Tensor::cat(&parts, 1)
}

/// −log2 of the probability of `v` under the zero-mean Laplace distribution of scale
/// b = exp(log_sigma) (clamped to the table range), integrated over [|v| − ½, |v| + ½].
///
/// Computed in the log domain where |v| ≥ ½ (log p = ln ½ − (|v| − ½)/b + ln(1 − e^(−1/b))),
/// so far-out values keep a gradient instead of underflowing to a clamped zero.
pub fn laplace_bits(v: &Tensor, log_sigma: &Tensor) -> Result<Tensor> {
    let b = log_sigma
        .clamp(SCALE_MIN.ln() as f32, SCALE_MAX.ln() as f32)?
        .exp()?;
    let a = v.abs()?;
    let inv_b = b.recip()?;
    // Tail branch (|v| ≥ ½).
    let a_hi = a.maximum(0.5f32)?;
    let log_bin = (1.0 - inv_b.neg()?.exp()?)?.log()?;
    let log_tail = ((((a_hi - 0.5)? * &inv_b)?.neg()? + 0.5f64.ln())? + log_bin)?;
    // Centre branch (|v| < ½): 1 − ½e^(−(½−|v|)/b) − ½e^(−(½+|v|)/b).
    let a_lo = a.minimum(0.5f32)?;
    let e1 = ((0.5 - &a_lo)? * &inv_b)?.neg()?.exp()?;
    let e2 = ((&a_lo + 0.5)? * &inv_b)?.neg()?.exp()?;
    let p_centre = (1.0 - ((e1 + e2)? * 0.5)?)?.clamp(1e-9f32, 1f32)?;
    let log_p = a.ge(0.5f64)?.where_cond(&log_tail, &p_centre.log()?)?;
    log_p * (-1.0 / std::f64::consts::LN_2)
}
