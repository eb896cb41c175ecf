//! The rnn encoder as the codec runs it: [`RnnModel::encode_step`] on plain f32 rows, with
//! the kernels of the decoder ([`rnn_synthesis`](super::rnn_synthesis)).
//!
//! [`RnnModel::encode_step`](super::rnn::RnnModel::encode_step) (candle) serves training.
//! Here each space-to-depth is a fold of row pairs, the 3×3 convolutions run by Winograd in
//! chunks and each GRU's gates follow its state product per chunk. The bits equal the candle
//! path's except where the binarizer's input is within float rounding of zero.

use super::analysis::fold;
use super::rnn::{BITS, STRIDE};
use super::rnn_synthesis::{rows_of, run_chunks, Cell, ChunkConv};
use rayon::prelude::*;

/// The encoder's transforms as plain f32 kernels, made once from the loaded model.
#[derive(Clone, Debug)]
pub struct RnnAnalyzer {
    /// 3×3, 12 → 32 channels at 1/2 resolution (on the space-to-depth residual).
    e0: ChunkConv,
    cells: Vec<Cell>,
    /// 1×1 to the [`BITS`] binarizer inputs at 1/16 resolution.
    bin: ChunkConv,
}

/// The encoder's recurrent state: per GRU (1/4, 1/8, 1/16 resolution) its rows `(n, w)`.
#[derive(Clone, Debug)]
pub struct RnnEncoderState {
    h: Vec<Vec<Vec<f32>>>,
    height: usize,
    width: usize,
}

/// Rows `(c, w)` (an even number of them) → space-to-depth rows `(4c, w/2)`.
fn fold_rows(rows: &[Vec<f32>], c: usize, w: usize) -> Vec<Vec<f32>> {
    rows.par_chunks_exact(2)
        .map(|pair| fold(&pair[0], &pair[1], c, w))
        .collect()
}

impl RnnAnalyzer {
    /// The encoder from `e0` `(32, 12, 3, 3)` and its bias, the GRUs, each `(cin, n, k, wx
    /// weight (3n, cin, k, k), wx bias, wh weight (3n, n), wh bias)` flattened, and the
    /// binarizer `(cin, weight (BITS, cin), bias)`.
    #[allow(clippy::type_complexity)]
    pub fn new(
        e0: (Vec<f32>, Vec<f32>),
        cells: Vec<(usize, usize, usize, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)>,
        bin: (usize, Vec<f32>, Vec<f32>),
    ) -> Result<Self, String> {
        Ok(Self {
            e0: ChunkConv::new(12, 32, 3, e0.0, e0.1)?,
            cells: cells
                .into_iter()
                .map(|(cin, n, k, wx, bx, wh, bh)| Cell::new(cin, n, k, wx, bx, wh, bh))
                .collect::<Result<_, _>>()?,
            bin: ChunkConv::new(bin.0, BITS, 1, bin.1, bin.2)?,
        })
    }

    /// A fresh state for a `height × width` picture (multiples of [`STRIDE`]).
    pub fn state(&self, height: usize, width: usize) -> RnnEncoderState {
        let h = self
            .cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let s = 4 << i;
                vec![vec![0f32; cell.n() * (width / s)]; height / s]
            })
            .collect();
        RnnEncoderState { h, height, width }
    }

    /// One encoder iteration on the residual (planar `(3, height, width)`, pixels scaled to
    /// [−1, 1]): the layer's bits `(BITS, height/16, width/16)`, 1 where the binarizer's
    /// input is ≥ 0 (its output, a tanh, has the same sign).
    pub fn step(&self, residual: &[f32], st: &mut RnnEncoderState) -> Vec<u8> {
        let (hp, wp) = (st.height, st.width);
        assert_eq!(residual.len(), 3 * hp * wp, "residual of the wrong size");
        let pixel_rows: Vec<Vec<f32>> = (0..hp)
            .into_par_iter()
            .map(|y| {
                let mut row = Vec::with_capacity(3 * wp);
                for c in 0..3 {
                    row.extend_from_slice(&residual[(c * hp + y) * wp..][..wp]);
                }
                row
            })
            .collect();
        let mut w = wp / 2;
        let (outs, g, rows) =
            run_chunks(&self.e0, fold_rows(&pixel_rows, 3, wp), w, |_, _, _, y| y);
        let mut x = rows_of(&outs, &g, rows, w, 32);
        let mut c = 32;
        for (cell, h) in self.cells.iter().zip(st.h.iter_mut()) {
            cell.step(fold_rows(&x, c, w), h, w / 2);
            w /= 2;
            c = cell.n();
            x = h.clone();
        }
        let (outs, g, rows) = run_chunks(&self.bin, x, w, |_, _, _, y| y);
        let y = rows_of(&outs, &g, rows, w, BITS);
        let (lh, lw) = (hp / STRIDE, wp / STRIDE);
        let mut bits = vec![0u8; BITS * lh * lw];
        for (yy, row) in y.iter().enumerate() {
            for c in 0..BITS {
                let dst = &mut bits[(c * lh + yy) * lw..][..lw];
                for (b, &v) in dst.iter_mut().zip(&row[c * lw..][..lw]) {
                    *b = u8::from(v >= 0.0);
                }
            }
        }
        bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rnn_synthesis::tests::model;
    use candle_core::{Device, Tensor};

    #[test]
    fn matches_the_model_encoder_over_iterations() {
        let model = model();
        let ana = model.analyzer().unwrap();
        // 3×5 blocks: odd numbers of rows and columns at the coarse levels.
        let (h, w) = (3 * STRIDE, 5 * STRIDE);
        let mut ours = ana.state(h, w);
        let mut theirs = model.encoder_state(1, h, w).unwrap();
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let (mut agree, mut total) = (0, 0);
        for t in 0..4 {
            let residual: Vec<f32> = (0..3 * h * w)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) / (t + 1) as f32
                })
                .collect();
            let bits = ana.step(&residual, &mut ours);
            let r = Tensor::from_vec(residual, (1, 3, h, w), &Device::Cpu).unwrap();
            let y: Vec<f32> = model
                .encode_step(&r, &mut theirs)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(bits.len(), y.len());
            let ones = bits.iter().filter(|&&b| b == 1).count();
            assert!(
                (bits.len() / 10..bits.len() * 9 / 10).contains(&ones),
                "{ones} ones"
            );
            for (&b, &v) in bits.iter().zip(&y) {
                total += 1;
                if b == u8::from(v >= 0.0) {
                    agree += 1;
                } else {
                    assert!(v.abs() < 1e-4, "iteration {t}: bit {b} where y = {v}");
                }
            }
        }
        assert!(agree * 1000 >= total * 999, "{agree} of {total} bits agree");
    }
}
