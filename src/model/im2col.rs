//! im2col / col2im as candle custom ops on the CPU.
//!
//! A k×k convolution is then one matmul, forward and backward. candle's own CPU conv2d
//! differentiates through a slow direct transposed convolution, and building im2col from
//! `narrow` views costs a full zero-padded copy per tap in the backward pass; these two
//! loops are memory-bound and cheap.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `(B, C, H, W)` → `(B, C·k·k, H·W)`, zero padding k/2 ('same' convolution).
pub struct Im2Col {
    /// Kernel side (odd).
    pub k: usize,
}

/// `(B, C·k·k, H·W)` → `(B, C, H, W)`: the adjoint of [`Im2Col`] (overlapping taps add).
pub struct Col2Im {
    /// Kernel side (odd).
    pub k: usize,
    /// Output height.
    pub h: usize,
    /// Output width.
    pub w: usize,
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("im2col: only f32 is supported"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("im2col: input must be contiguous"),
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let src = contiguous_f32(s, l)?;
        let (k, p) = (self.k, (self.k / 2) as isize);
        let hw = h * w;
        let mut out = vec![0f32; b * c * k * k * hw];
        // One task per (batch, channel) plane: k·k output rows each.
        out.par_chunks_mut(k * k * hw)
            .enumerate()
            .for_each(|(plane, dst)| {
                let src = &src[plane * hw..(plane + 1) * hw];
                for dy in 0..k {
                    for dx in 0..k {
                        let row = &mut dst[(dy * k + dx) * hw..(dy * k + dx + 1) * hw];
                        let ox = dx as isize - p;
                        for y in 0..h {
                            let sy = y as isize + dy as isize - p;
                            if sy < 0 || sy >= h as isize {
                                continue;
                            }
                            let srow = &src[sy as usize * w..(sy as usize + 1) * w];
                            let drow = &mut row[y * w..(y + 1) * w];
                            let x0 = (-ox).max(0) as usize;
                            let x1 = (w as isize - ox).min(w as isize).max(0) as usize;
                            if x0 < x1 {
                                let s0 = (x0 as isize + ox) as usize;
                                drow[x0..x1].copy_from_slice(&srow[s0..s0 + (x1 - x0)]);
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c * k * k, hw))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = arg.dims4()?;
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Col2Im {
            k: self.k,
            h,
            w,
        })?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, ckk, hw) = l.shape().dims3()?;
        let (k, h, w) = (self.k, self.h, self.w);
        if hw != h * w || ckk % (k * k) != 0 {
            candle_core::bail!("col2im: shape mismatch");
        }
        let c = ckk / (k * k);
        let src = contiguous_f32(s, l)?;
        let p = (k / 2) as isize;
        let mut out = vec![0f32; b * c * hw];
        out.par_chunks_mut(hw).enumerate().for_each(|(plane, dst)| {
            let src = &src[plane * k * k * hw..(plane + 1) * k * k * hw];
            for dy in 0..k {
                for dx in 0..k {
                    let row = &src[(dy * k + dx) * hw..(dy * k + dx + 1) * hw];
                    let ox = dx as isize - p;
                    for y in 0..h {
                        let sy = y as isize + dy as isize - p;
                        if sy < 0 || sy >= h as isize {
                            continue;
                        }
                        let x0 = (-ox).max(0) as usize;
                        let x1 = (w as isize - ox).min(w as isize).max(0) as usize;
                        let drow = &mut dst[sy as usize * w..(sy as usize + 1) * w];
                        let srow = &row[y * w..(y + 1) * w];
                        for x in x0..x1 {
                            drow[(x as isize + ox) as usize] += srow[x];
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }
}
