//! Image quality metrics on 8-bit RGB, as CompressAI and the anchors in `shared/anchors`
//! compute them: PSNR over all samples (peak 255), and MS-SSIM with 5 scales, the standard
//! weights, an 11-tap σ = 1.5 Gaussian window with 'valid' filtering, 2×2 average pooling,
//! per channel, averaged over channels (pytorch_msssim conventions).

/// PSNR in dB between two equally sized sample buffers (∞ when identical).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "psnr needs equally sized images");
    let se: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    let mse = se / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

const WEIGHTS: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];

fn gaussian_window() -> [f64; 11] {
    let mut g = [0.0; 11];
    for (i, v) in g.iter_mut().enumerate() {
        let x = i as f64 - 5.0;
        *v = (-(x * x) / (2.0 * 1.5 * 1.5)).exp();
    }
    let s: f64 = g.iter().sum();
    g.map(|v| v / s)
}

/// Separable 'valid' Gaussian filter of a w×h plane.
fn blur(p: &[f64], w: usize, h: usize, g: &[f64; 11]) -> (Vec<f64>, usize, usize) {
    let (ow, oh) = (w - 10, h - 10);
    let mut tmp = vec![0.0; ow * h];
    for y in 0..h {
        for x in 0..ow {
            tmp[y * ow + x] = (0..11).map(|k| g[k] * p[y * w + x + k]).sum();
        }
    }
    let mut out = vec![0.0; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            out[y * ow + x] = (0..11).map(|k| g[k] * tmp[(y + k) * ow + x]).sum();
        }
    }
    (out, ow, oh)
}

/// (SSIM, contrast-structure) of one plane at one scale.
fn ssim_cs(a: &[f64], b: &[f64], w: usize, h: usize) -> (f64, f64) {
    let g = gaussian_window();
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let prod = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).collect::<Vec<_>>();
    let (ma, ow, oh) = blur(a, w, h, &g);
    let (mb, _, _) = blur(b, w, h, &g);
    let (saa, _, _) = blur(&prod(a, a), w, h, &g);
    let (sbb, _, _) = blur(&prod(b, b), w, h, &g);
    let (sab, _, _) = blur(&prod(a, b), w, h, &g);
    let n = (ow * oh) as f64;
    let (mut ssim, mut cs) = (0.0, 0.0);
    for i in 0..ow * oh {
        let (va, vb, cov) = (
            saa[i] - ma[i] * ma[i],
            sbb[i] - mb[i] * mb[i],
            sab[i] - ma[i] * mb[i],
        );
        let c = (2.0 * cov + c2) / (va + vb + c2);
        let l = (2.0 * ma[i] * mb[i] + c1) / (ma[i] * ma[i] + mb[i] * mb[i] + c1);
        ssim += l * c;
        cs += c;
    }
    (ssim / n, cs / n)
}

fn pool(p: &[f64], w: usize, h: usize) -> (Vec<f64>, usize, usize) {
    let (ow, oh) = (w / 2, h / 2);
    let mut out = vec![0.0; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            out[y * ow + x] = (p[2 * y * w + 2 * x]
                + p[2 * y * w + 2 * x + 1]
                + p[(2 * y + 1) * w + 2 * x]
                + p[(2 * y + 1) * w + 2 * x + 1])
                / 4.0;
        }
    }
    (out, ow, oh)
}

/// MS-SSIM of two interleaved RGB8 images of `w`×`h`. Returns `None` when a side is under
/// 176 px: the fifth scale (side/16, pooling drops an odd last row or column) must still hold
/// the 11-tap window. For sides that stay even down the scales (Kodak's 768×512) this equals
/// pytorch_msssim, which pads odd sides instead.
pub fn ms_ssim(a: &[u8], b: &[u8], w: usize, h: usize) -> Option<f64> {
    if w < 176 || h < 176 || a.len() != w * h * 3 || b.len() != a.len() {
        return None;
    }
    let mut total = 0.0;
    for c in 0..3 {
        let mut pa: Vec<f64> = (0..w * h).map(|i| a[i * 3 + c] as f64).collect();
        let mut pb: Vec<f64> = (0..w * h).map(|i| b[i * 3 + c] as f64).collect();
        let (mut cw, mut ch) = (w, h);
        let mut value = 1.0;
        for (s, &wt) in WEIGHTS.iter().enumerate() {
            let (ssim, cs) = ssim_cs(&pa, &pb, cw, ch);
            let term = if s == WEIGHTS.len() - 1 { ssim } else { cs };
            value *= term.max(0.0).powf(wt);
            let (na, nw, nh) = pool(&pa, cw, ch);
            pb = pool(&pb, cw, ch).0;
            pa = na;
            cw = nw;
            ch = nh;
        }
        total += value;
    }
    Some(total / 3.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_known_values() {
        let a = vec![100u8; 300];
        assert!(psnr(&a, &a).is_infinite());
        let b = vec![110u8; 300]; // MSE 100 → 10·log10(65025/100) = 28.1308 dB
        assert!((psnr(&a, &b) - 28.130_803_608_679_1).abs() < 1e-9);
    }

    #[test]
    fn ms_ssim_identity_and_distortion() {
        let (w, h) = (192, 176);
        let img: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7919) % 251) as u8).collect();
        assert!((ms_ssim(&img, &img, w, h).unwrap() - 1.0).abs() < 1e-12);
        let noisy: Vec<u8> = img
            .iter()
            .enumerate()
            .map(|(i, &v)| v.saturating_add((i % 5) as u8 * 6))
            .collect();
        let s = ms_ssim(&img, &noisy, w, h).unwrap();
        assert!(s < 0.999 && s > 0.5, "ms-ssim {s}");
        assert!(ms_ssim(&img[..30], &img[..30], 2, 5).is_none());
        let small = vec![9u8; 175 * 200 * 3];
        assert!(ms_ssim(&small, &small, 200, 175).is_none());
    }

    /// Two flat images a and b: every scale's contrast-structure term is exactly 1 and the
    /// luminance term is (2ab + C1)/(a² + b² + C1), so MS-SSIM = that to the power 0.1333.
    #[test]
    fn ms_ssim_closed_form_for_flat_images() {
        let (w, h) = (200, 176);
        for (a, b) in [(100u8, 110u8), (20, 200), (0, 255)] {
            let x = vec![a; w * h * 3];
            let y = vec![b; w * h * 3];
            let (a, b) = (a as f64, b as f64);
            let c1 = (0.01f64 * 255.0).powi(2);
            let want = ((2.0 * a * b + c1) / (a * a + b * b + c1)).powf(0.1333);
            let got = ms_ssim(&x, &y, w, h).unwrap();
            assert!((got - want).abs() < 1e-12, "{a} vs {b}: {got} != {want}");
        }
    }
}
