//! The rnn pipeline: pixels → iterations of bits → one RNLY chunk each, and back, one layer
//! at a time (format-spec §5.2, §6.6).
//!
//! [`Progressive`] is the decoder's state between layers: the recurrent state of the
//! synthesis and the last layer's bits (the context of the next). A viewer that has shown
//! layer k continues from there when layer k + 1 arrives; nothing is recomputed.

use super::cw::{to_tensor, Rect};
use crate::container::Header;
use crate::model::rnn::{RnnState, MAX_ITERS, STRIDE};
use crate::model::weights::RnnWeights;
use crate::{Error, Image};

pub use crate::rate::rnn_layers as layers_for_quality;

/// The coded layers of an image: one rANS stream per iteration.
pub struct Coded {
    /// The RNLY payloads, in order.
    pub layers: Vec<Vec<u8>>,
    /// The model's estimate of each layer, in bits.
    pub estimated_bits: Vec<f64>,
    /// Bits before entropy coding, per layer.
    pub raw_bits: usize,
}

/// Runs the encoder for `layers` iterations on interleaved RGB8 and codes every layer. With
/// `stop_early` it stops before a layer that would not make the 8-bit picture closer to the
/// image (the late layers of some images add nothing, and such a layer only costs bytes), so
/// every layer of the result is a better picture than the one before.
pub fn encode_layers(
    weights: &RnnWeights,
    rgb: &[u8],
    width: usize,
    height: usize,
    layers: usize,
    stop_early: bool,
) -> Result<Coded, Error> {
    let (lh, lw) = (height.div_ceil(STRIDE), width.div_ceil(STRIDE));
    let x = to_tensor(
        rgb,
        width,
        height,
        &Rect::grid(lh, lw),
        weights.model.device(),
    )?;
    let (hp, wp) = (lh * STRIDE, lw * STRIDE);
    // Planar (3, hp, wp), scaled to [−1, 1].
    let target: Vec<f32> = ((x * 2.0)? - 1.0)?.flatten_all()?.to_vec1()?;
    let mut es = weights.analyzer.state(hp, wp);
    // The decoder's own synthesis, so the residual each layer codes is the one left by the
    // picture a decoder shows.
    let mut ds = weights.synthesizer.state(hp, wp);
    let mut residual = target.clone();
    let mut prev: Option<Vec<u8>> = None;
    let mut out = Coded {
        layers: Vec::new(),
        estimated_bits: Vec::new(),
        raw_bits: crate::model::rnn::BITS * lh * lw,
    };
    let mut error = u64::MAX;
    for t in 0..layers {
        let bits = weights.analyzer.step(&residual, &mut es);
        // The last layer's picture is needed only to decide whether to keep it.
        if stop_early || t + 1 < layers {
            weights.synthesizer.step(&bits, &mut ds);
        }
        if stop_early {
            let e = squared_error(&ds.x_hat, wp, rgb, width, height);
            if e >= error {
                break;
            }
            error = e;
        }
        let (stream, cost) = weights.bits.encode(t, &bits, prev.as_deref(), lh, lw)?;
        out.layers.push(stream);
        out.estimated_bits.push(cost);
        if t + 1 < layers {
            for ((r, &x), &xh) in residual.iter_mut().zip(&target).zip(&ds.x_hat) {
                *r = x - xh;
            }
        }
        prev = Some(bits);
    }
    Ok(out)
}

/// Squared error between the decoder's 8-bit picture of `x` (planar `x̂`, `wp` wide; spec
/// §5.2) and the RGB8 image it codes, over the image's own pixels.
fn squared_error(x: &[f32], wp: usize, rgb: &[u8], width: usize, height: usize) -> u64 {
    let hp = x.len() / (3 * wp);
    let mut sum = 0u64;
    for c in 0..3 {
        for y in 0..height {
            let row = &x[c * hp * wp + y * wp..][..width];
            for (xx, &v) in row.iter().enumerate() {
                let px = ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as i64;
                let d = px - rgb[(y * width + xx) * 3 + c] as i64;
                sum += (d * d) as u64;
            }
        }
    }
    sum
}

/// The decoder between layers.
pub struct Progressive<'w> {
    weights: &'w RnnWeights,
    /// The bit model of the file's weights id (`RnnWeights::bits_for`).
    bits: &'w crate::entropy::bits::BitModel,
    header: Header,
    state: RnnState,
    prev: Option<Vec<u8>>,
    lh: usize,
    lw: usize,
}

impl<'w> Progressive<'w> {
    /// A decoder for an image with this header (checked by the caller), before any layer; an
    /// error when the file was made with weights these cannot decode.
    pub fn new(weights: &'w RnnWeights, header: &Header) -> Result<Self, Error> {
        let Some(bits) = weights.bits_for(&header.weights_id) else {
            return Err(Error::WrongWeights {
                needed: crate::model::weights::id_hex(&header.weights_id),
                have: crate::model::weights::id_hex(&weights.id),
            });
        };
        let (lh, lw) = (
            (header.height as usize).div_ceil(STRIDE),
            (header.width as usize).div_ceil(STRIDE),
        );
        Ok(Self {
            weights,
            bits,
            header: header.clone(),
            state: weights.synthesizer.state(lh * STRIDE, lw * STRIDE),
            prev: None,
            lh,
            lw,
        })
    }

    /// Layers decoded so far.
    pub fn layers(&self) -> usize {
        self.state.iterations
    }

    /// Decodes the next layer from its RNLY payload and runs one synthesis iteration.
    pub fn push_layer(&mut self, stream: &[u8]) -> Result<(), Error> {
        let t = self.state.iterations;
        if t >= MAX_ITERS {
            return Err(Error::Format(crate::FormatError::Structure(
                "more RNLY chunks than the format allows",
            )));
        }
        let bits = self
            .bits
            .decode(t, stream, self.prev.as_deref(), self.lh, self.lw)?;
        self.weights.synthesizer.step(&bits, &mut self.state);
        self.prev = Some(bits);
        Ok(())
    }

    /// Decodes the next layers, as [`Self::push_layer`] on each in turn, with each layer's
    /// bits decoded beside the synthesis of the layer before (the bits depend only on earlier
    /// bits, the synthesis only on them): the entropy decoding is serial, and this way it
    /// runs while the synthesis keeps the other cores busy.
    pub fn push_layers(&mut self, streams: &[&[u8]]) -> Result<(), Error> {
        let Some((first, rest)) = streams.split_first() else {
            return Ok(());
        };
        if self.state.iterations + streams.len() > MAX_ITERS {
            return Err(Error::Format(crate::FormatError::Structure(
                "more RNLY chunks than the format allows",
            )));
        }
        let (lh, lw) = (self.lh, self.lw);
        let t = self.state.iterations;
        let mut bits = self.bits.decode(t, first, self.prev.as_deref(), lh, lw)?;
        for stream in rest {
            let t = self.state.iterations + 1;
            let (model, synthesizer, state) =
                (self.bits, &self.weights.synthesizer, &mut self.state);
            let (_, next) = rayon::join(
                || synthesizer.step(&bits, state),
                || model.decode(t, stream, Some(&bits), lh, lw),
            );
            bits = next?;
        }
        self.weights.synthesizer.step(&bits, &mut self.state);
        self.prev = Some(bits);
        Ok(())
    }

    /// The picture after the layers so far, as RGB8 (grey images: averaged to one channel;
    /// alpha is added by the caller).
    pub fn rgb(&self) -> Result<Vec<u8>, Error> {
        let (w, h) = (self.header.width as usize, self.header.height as usize);
        let (hp, wp) = (self.state.height, self.state.width);
        let x = &self.state.x_hat;
        let mut out = vec![0u8; w * h * 3];
        for y in 0..h {
            for xx in 0..w {
                for c in 0..3 {
                    let v = (x[c * hp * wp + y * wp + xx] + 1.0) * 127.5;
                    out[(y * w + xx) * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        Ok(out)
    }

    /// The picture after the layers so far, in the file's colour type (`alpha` from ALPH).
    pub fn picture(&self, alpha: Option<&[u8]>) -> Result<Image, Error> {
        let rgb = self.rgb()?;
        let hd = &self.header;
        let ch = hd.color.channels();
        let n = hd.width as usize * hd.height as usize;
        let mut data = vec![0u8; n * ch];
        for p in 0..n {
            super::put_pixel(
                &mut data[p * ch..(p + 1) * ch],
                hd.color,
                &rgb[p * 3..p * 3 + 3],
                alpha.map(|a| a[p]),
            );
        }
        Ok(Image {
            width: hd.width,
            height: hd.height,
            color: hd.color,
            data,
        })
    }
}
