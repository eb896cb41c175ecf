//! The recurrent progressive transform (rnn), after Toderici et al. (CVPR 2017): an encoder
//! and a decoder of convolutional GRUs that code an image in iterations. Iteration t sees the
//! residual the decoder has not yet explained, emits [`BITS`] bits per 16×16 block
//! (0.125 bpp before entropy coding), and the decoder adds what it makes of them:
//!
//! ```text
//!  r₀ = x                         x̂₀ = 0
//!  b_t = sign(E(r_{t−1}; state))  x̂_t = x̂_{t−1} + D(b_t; state)   r_t = x − x̂_t
//! ```
//!
//! Both E and D keep their recurrent state across iterations, so a decoder that has shown
//! iteration t continues from there when iteration t + 1 arrives. Pixels are scaled to
//! [−1, 1]; x̂₀ = 0 is mid grey.
//!
//! Sizes are chosen for 2-core CPU training and decoding: about 8k multiply-adds per pixel
//! per decoder iteration (cw's whole synthesis is about 25k). The decoder's last stage, at
//! 1/2 resolution, is a plain convolution rather than a fourth GRU: that GRU took a third of
//! the multiply-adds and most of the memory traffic of a layer, and the recurrence at the
//! coarser scales carries what the next iteration needs.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{depth_to_space, space_to_depth, Conv};
pub use super::rnn_analysis::{RnnAnalyzer, RnnEncoderState};
pub use super::rnn_synthesis::{RnnState, RnnSynthesizer};
use lic_kernels::gru_update;
/// The tanh of the decoder's GRU gates; the decoder's pictures depend on it, never its
/// symbols.
pub use lic_kernels::tanh_fast;

pub use lic_format::arch::rnn::{BITS, MAX_ITERS, STRIDE};

/// Encoder GRU widths at 1/4, 1/8 and 1/16 resolution.
const ENC_HIDDEN: [usize; 3] = [64, 128, 128];
/// Decoder GRU widths at 1/16, 1/8 and 1/4 resolution.
const DEC_HIDDEN: [usize; 3] = [128, 128, 64];

/// `σ(x) = (tanh(x/2) + 1)/2`: one differentiable op instead of exp and reciprocal.
fn sigmoid(x: &Tensor) -> Result<Tensor> {
    ((x * 0.5)?.tanh()? + 1.0)? * 0.5
}

/// A convolutional GRU cell: `z = σ(Wz∗x + Uz∗h)`, `r = σ(Wr∗x + Ur∗h)`,
/// `n = tanh(Wn∗x + r ⊙ (Un∗h))`, `h' = (1 − z) ⊙ n + z ⊙ h`. The input convolution is k×k,
/// the hidden one 1×1 (cheap; the spatial reach comes from the input path and the strides).
pub struct ConvGru {
    wx: Conv,
    wh: Conv,
    hidden: usize,
}

impl ConvGru {
    fn new(vb: VarBuilder, cin: usize, hidden: usize, k: usize) -> Result<Self> {
        Ok(Self {
            wx: Conv::new(vb.pp("x"), cin, 3 * hidden, k)?,
            wh: Conv::new(vb.pp("h"), hidden, 3 * hidden, 1)?,
            hidden,
        })
    }

    /// One step: input `(B, cin, H, W)`, state `(B, hidden, H, W)` → new state.
    ///
    /// In training (the convolutions' outputs track gradients) the gates are candle ops;
    /// otherwise one fused pass over the gate tensors computes them ([`gru_gates`]), which
    /// more than halves decoding time: as separate ops, libm's tanh and the temporaries
    /// took three quarters of it, the matrix products one quarter.
    fn step(&self, x: &Tensor, h: &Tensor) -> Result<Tensor> {
        let gx = self.wx.forward(x)?;
        let gh = self.wh.forward(h)?;
        let n = self.hidden;
        if !gx.track_op() && !gh.track_op() && gx.device().is_cpu() {
            let (b, _, hh, ww) = h.dims4()?;
            let gx = gx.flatten_all()?.to_vec1::<f32>()?;
            let gh = gh.flatten_all()?.to_vec1::<f32>()?;
            let mut state = h.flatten_all()?.to_vec1::<f32>()?;
            gru_gates(&gx, &gh, &mut state, n, hh * ww);
            return Tensor::from_vec(state, (b, n, hh, ww), h.device());
        }
        let z = sigmoid(&(gx.narrow(1, 0, n)? + gh.narrow(1, 0, n)?)?)?;
        let r = sigmoid(&(gx.narrow(1, n, n)? + gh.narrow(1, n, n)?)?)?;
        let cand = (gx.narrow(1, 2 * n, n)? + (r * gh.narrow(1, 2 * n, n)?)?)?.tanh()?;
        // (1 − z)·n + z·h = n + z·(h − n)
        &cand + (z * (h - &cand)?)?
    }
}

/// The GRU update in place: `state` `(B, n, P)` becomes `(1 − z)·c + z·state` from the gate
/// pre-activations `gx`, `gh` `(B, 3n, P)` (z, r, candidate thirds), the same formula as the
/// candle ops of [`ConvGru::step`] with [`tanh_fast`] for tanh.
fn gru_gates(gx: &[f32], gh: &[f32], state: &mut [f32], n: usize, p: usize) {
    use rayon::prelude::*;
    state.par_chunks_mut(p).enumerate().for_each(|(bc, hrow)| {
        let (bi, c) = (bc / n, bc % n);
        let at = |g: usize| (bi * 3 * n + g * n + c) * p;
        gru_update(
            [&gx[at(0)..][..p], &gx[at(1)..][..p], &gx[at(2)..][..p]],
            [&gh[at(0)..][..p], &gh[at(1)..][..p], &gh[at(2)..][..p]],
            [0.0; 3],
            hrow,
        );
    });
}

/// The encoder's recurrent state.
pub struct EncoderState {
    h: Vec<Tensor>,
}

/// The decoder's recurrent state and its reconstruction so far (scaled to [−1, 1]). Cloning
/// is cheap (the tensors are shared) and lets a caller try other bits from the same state.
#[derive(Clone)]
pub struct DecoderState {
    h: Vec<Tensor>,
    /// `x̂_t`, `(B, 3, H, W)`.
    pub x_hat: Tensor,
    /// Iterations decoded so far.
    pub iterations: usize,
}

/// The rnn model: encoder, binarizer and decoder.
pub struct RnnModel {
    e0: Conv,
    enc: Vec<ConvGru>,
    bin: Conv,
    dec: Vec<ConvGru>,
    out: Conv,
    device: Device,
}

impl RnnModel {
    /// Creates (training) or loads (coding) the model under `vb`.
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let e0 = Conv::new(vb.pp("e0"), 12, 32, 3)?;
        let mut enc = Vec::new();
        let mut cin = 32;
        for (i, &h) in ENC_HIDDEN.iter().enumerate() {
            // The last cell sees 512 space-to-depth channels: a 1×1 input convolution there
            // (a 2×2 stride-2 one in effect) saves 1.6M parameters and half its time.
            let k = if i == ENC_HIDDEN.len() - 1 { 1 } else { 3 };
            enc.push(ConvGru::new(vb.pp(format!("enc.{i}")), cin * 4, h, k)?);
            cin = h;
        }
        let bin = Conv::new(vb.pp("bin"), cin, BITS, 1)?;
        let mut dec = Vec::new();
        let mut cin = BITS;
        for (i, &h) in DEC_HIDDEN.iter().enumerate() {
            dec.push(ConvGru::new(vb.pp(format!("dec.{i}")), cin, h, 3)?);
            cin = h / 4;
        }
        // 3×3 at 1/2 resolution to 4·3 channels: depth-to-space makes them the RGB update.
        let out = Conv::new(vb.pp("out"), cin, 12, 3)?;
        Ok(Self {
            e0,
            enc,
            bin,
            dec,
            out,
            device: vb.device().clone(),
        })
    }

    /// The decoder as plain f32 kernels ([`RnnSynthesizer`]), which the codec decodes with.
    pub fn synthesizer(&self) -> Result<RnnSynthesizer> {
        let mut cells = Vec::new();
        let mut cin = BITS;
        for (cell, &n) in self.dec.iter().zip(&DEC_HIDDEN) {
            let (wx, bx) = cell.wx.to_vecs()?;
            let (wh, bh) = cell.wh.to_vecs()?;
            cells.push((cin, n, wx, bx, wh, bh));
            cin = n / 4;
        }
        let (w, b) = self.out.to_vecs()?;
        RnnSynthesizer::new(cells, (cin, w, b)).map_err(candle_core::Error::Msg)
    }

    /// The encoder as plain f32 kernels ([`RnnAnalyzer`]), which the codec encodes with.
    pub fn analyzer(&self) -> Result<RnnAnalyzer> {
        let mut cells = Vec::new();
        let mut cin = 32 * 4;
        for (i, (cell, &n)) in self.enc.iter().zip(&ENC_HIDDEN).enumerate() {
            let k = if i == ENC_HIDDEN.len() - 1 { 1 } else { 3 };
            let (wx, bx) = cell.wx.to_vecs()?;
            let (wh, bh) = cell.wh.to_vecs()?;
            cells.push((cin, n, k, wx, bx, wh, bh));
            cin = n * 4;
        }
        let (bw, bb) = self.bin.to_vecs()?;
        RnnAnalyzer::new(self.e0.to_vecs()?, cells, (cin / 4, bw, bb))
            .map_err(candle_core::Error::Msg)
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A fresh encoder state for `b` images of `h`×`w` pixels (multiples of 16).
    pub fn encoder_state(&self, b: usize, h: usize, w: usize) -> Result<EncoderState> {
        let hs = ENC_HIDDEN
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let s = 4 << i;
                Tensor::zeros((b, c, h / s, w / s), DType::F32, &self.device)
            })
            .collect::<Result<_>>()?;
        Ok(EncoderState { h: hs })
    }

    /// A fresh decoder state (x̂ = 0, mid grey) for `b` images of `h`×`w` pixels.
    pub fn decoder_state(&self, b: usize, h: usize, w: usize) -> Result<DecoderState> {
        let hs = DEC_HIDDEN
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let s = STRIDE >> i;
                Tensor::zeros((b, c, h / s, w / s), DType::F32, &self.device)
            })
            .collect::<Result<_>>()?;
        Ok(DecoderState {
            h: hs,
            x_hat: Tensor::zeros((b, 3, h, w), DType::F32, &self.device)?,
            iterations: 0,
        })
    }

    /// One encoder iteration: the residual `(B, 3, H, W)` → the binarizer's input in (−1, 1),
    /// `(B, BITS, H/16, W/16)`. Its sign is what is coded.
    pub fn encode_step(&self, residual: &Tensor, st: &mut EncoderState) -> Result<Tensor> {
        let mut x = self.e0.forward(&space_to_depth(residual, 2)?)?;
        for (cell, h) in self.enc.iter().zip(st.h.iter_mut()) {
            *h = cell.step(&space_to_depth(&x, 2)?, h)?;
            x = h.clone();
        }
        self.bin.forward(&x)?.tanh()
    }

    /// One decoder iteration: bits (±1) `(B, BITS, H/16, W/16)` → updates the state and its
    /// reconstruction `st.x_hat`.
    pub fn decode_step(&self, bits: &Tensor, st: &mut DecoderState) -> Result<()> {
        let mut x = bits.clone();
        for (cell, h) in self.dec.iter().zip(st.h.iter_mut()) {
            *h = cell.step(&x, h)?;
            x = depth_to_space(h, 2)?;
        }
        st.x_hat = (&st.x_hat + depth_to_space(&self.out.forward(&x)?, 2)?)?;
        st.iterations += 1;
        Ok(())
    }

    /// Training forward pass over `iters` iterations on `x` in [0, 1]: bits are drawn
    /// stochastically (+1 with probability (1 + y)/2) with a straight-through gradient.
    /// Returns the mean over iterations of the mean absolute residual, and the MSE (in
    /// [0, 1] pixel units) after each iteration.
    pub fn train_forward(&self, x: &Tensor, iters: usize) -> Result<(Tensor, Vec<Tensor>)> {
        let (b, _, h, w) = x.dims4()?;
        let target = ((x * 2.0)? - 1.0)?;
        let mut es = self.encoder_state(b, h, w)?;
        let mut ds = self.decoder_state(b, h, w)?;
        let mut residual = target.clone();
        let mut loss = Tensor::zeros((), DType::F32, &self.device)?;
        let mut mses = Vec::with_capacity(iters);
        for _ in 0..iters {
            let y = self.encode_step(&residual, &mut es)?;
            let p = ((&y + 1.0)? * 0.5)?;
            let u = Tensor::rand(0f32, 1f32, y.shape(), &self.device)?;
            let hard = ((u.lt(&p)?.to_dtype(DType::F32)? * 2.0)? - 1.0)?;
            let bits = (&y + (hard - &y)?.detach())?;
            self.decode_step(&bits, &mut ds)?;
            residual = (&target - &ds.x_hat)?;
            loss = (loss + residual.abs()?.mean_all()?)?;
            mses.push((residual.sqr()?.mean_all()? * 0.25)?);
        }
        Ok(((loss / iters as f64)?, mses))
    }
}

/// Signs of the binarizer output as coded bits: 1 for y ≥ 0 (+1), 0 for y < 0 (−1).
pub fn bits_of(y: &Tensor) -> Result<Vec<u8>> {
    Ok(y.flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|v| u8::from(v >= 0.0))
        .collect())
}

/// Coded bits back to ±1 values, `(1, BITS, h, w)`.
pub fn bits_tensor(bits: &[u8], h: usize, w: usize, dev: &Device) -> Result<Tensor> {
    let v: Vec<f32> = bits
        .iter()
        .map(|&b| if b == 1 { 1.0 } else { -1.0 })
        .collect();
    Tensor::from_vec(v, (1, BITS, h, w), dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_fast_matches_tanh() {
        let mut worst = 0.0f32;
        for i in -20000..=20000 {
            let x = i as f32 * 0.001;
            worst = worst.max((tanh_fast(x) - x.tanh()).abs());
        }
        assert!(worst < 2e-6, "worst error {worst}");
        assert_eq!(tanh_fast(0.0), 0.0);
        assert_eq!(tanh_fast(100.0), tanh_fast(7.905_311));
    }

    #[test]
    fn fused_gru_step_equals_the_candle_ops() {
        let dev = Device::Cpu;
        let vm = candle_nn::VarMap::new();
        let cell = ConvGru::new(VarBuilder::from_varmap(&vm, DType::F32, &dev), 5, 6, 3).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 5, 4, 7), &dev).unwrap();
        let h = Tensor::randn(0f32, 0.5, (2, 6, 4, 7), &dev).unwrap();
        // Through Vars the gates are candle ops; detached copies of the weights take the
        // fused path.
        let ops = cell.step(&x, &h).unwrap();
        let frozen = ConvGru {
            wx: cell.wx.detached(),
            wh: cell.wh.detached(),
            hidden: 6,
        };
        let fused = frozen.step(&x, &h).unwrap();
        // The two paths were taken: only the candle ops record a graph.
        assert!(ops.track_op() && !fused.track_op());
        let d = (ops - fused).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
    }
}
