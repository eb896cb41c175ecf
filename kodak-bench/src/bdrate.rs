//! Bjøntegaard delta rate with piecewise-cubic Hermite (PCHIP) interpolation, computed the way
//! `shared/anchors/classic_SUMMARY.md` describes, so our numbers compare with the anchors':
//! log(bpp) is interpolated as a function of distortion (PSNR or MS-SSIM in dB), the gap
//! between the two curves is averaged over the distortion interval where both curves lie
//! inside the rate window (0.1–1.5 bpp), and the result is `exp(mean gap) − 1`.

/// The rate window of every BD number we report, in bpp.
pub const WINDOW: (f64, f64) = (0.1, 1.5);

/// A monotone piecewise-cubic Hermite interpolant (Fritsch–Carlson slopes, SciPy's end
/// conditions), so an interpolated RD curve never overshoots between measured points.
#[derive(Clone, Debug)]
pub struct Pchip {
    x: Vec<f64>,
    y: Vec<f64>,
    d: Vec<f64>,
}

impl Pchip {
    /// Builds the interpolant; `x` must be strictly increasing and have at least two points.
    pub fn new(x: Vec<f64>, y: Vec<f64>) -> Option<Self> {
        let n = x.len();
        if n < 2 || y.len() != n || x.windows(2).any(|w| w[1] <= w[0]) {
            return None;
        }
        let h: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
        let delta: Vec<f64> = (0..n - 1).map(|k| (y[k + 1] - y[k]) / h[k]).collect();
        let mut d = vec![0.0; n];
        if n == 2 {
            d[0] = delta[0];
            d[1] = delta[0];
        } else {
            for k in 1..n - 1 {
                let (a, b) = (delta[k - 1], delta[k]);
                if a * b > 0.0 {
                    let w1 = 2.0 * h[k] + h[k - 1];
                    let w2 = h[k] + 2.0 * h[k - 1];
                    d[k] = (w1 + w2) / (w1 / a + w2 / b);
                }
            }
            d[0] = edge(h[0], h[1], delta[0], delta[1]);
            d[n - 1] = edge(h[n - 2], h[n - 3], delta[n - 2], delta[n - 3]);
        }
        Some(Self { x, y, d })
    }

    /// The interpolated value at `t` (clamped to the end segments outside the data).
    pub fn eval(&self, t: f64) -> f64 {
        let n = self.x.len();
        let k = match self.x.partition_point(|&v| v <= t) {
            0 => 0,
            i if i >= n => n - 2,
            i => i - 1,
        };
        let h = self.x[k + 1] - self.x[k];
        let s = (t - self.x[k]) / h;
        let (s2, s3) = (s * s, s * s * s);
        let h00 = 2.0 * s3 - 3.0 * s2 + 1.0;
        let h10 = s3 - 2.0 * s2 + s;
        let h01 = -2.0 * s3 + 3.0 * s2;
        let h11 = s3 - s2;
        h00 * self.y[k] + h10 * h * self.d[k] + h01 * self.y[k + 1] + h11 * h * self.d[k + 1]
    }

    /// The first and last knot.
    pub fn domain(&self) -> (f64, f64) {
        (self.x[0], self.x[self.x.len() - 1])
    }
}

/// SciPy's three-point end slope, kept shape-preserving.
fn edge(h0: f64, h1: f64, m0: f64, m1: f64) -> f64 {
    let d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1);
    if d.signum() != m0.signum() {
        0.0
    } else if m0.signum() != m1.signum() && d.abs() > 3.0 * m0.abs() {
        3.0 * m0
    } else {
        d
    }
}

/// One rate-distortion curve: (bpp, distortion in dB) points, any order.
#[derive(Clone, Debug)]
pub struct Curve {
    rate_of_dist: Pchip,
    dist_of_rate: Pchip,
}

impl Curve {
    /// Builds both interpolants. Points are sorted by rate; points that do not raise the
    /// distortion measure (a non-monotone tail) are dropped, as a curve must be invertible.
    pub fn new(points: &[(f64, f64)]) -> Option<Self> {
        let mut p: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|(r, d)| *r > 0.0 && r.is_finite() && d.is_finite())
            .collect();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut kept: Vec<(f64, f64)> = Vec::with_capacity(p.len());
        for q in p {
            if kept.last().is_none_or(|l| q.0 > l.0 && q.1 > l.1) {
                kept.push(q);
            }
        }
        let lr: Vec<f64> = kept.iter().map(|p| p.0.ln()).collect();
        let d: Vec<f64> = kept.iter().map(|p| p.1).collect();
        Some(Self {
            rate_of_dist: Pchip::new(d.clone(), lr.clone())?,
            dist_of_rate: Pchip::new(lr, d)?,
        })
    }

    /// Distortion at `bpp`, or `None` outside the measured rates.
    pub fn dist_at(&self, bpp: f64) -> Option<f64> {
        let (lo, hi) = self.dist_of_rate.domain();
        let l = bpp.ln();
        (l >= lo - 1e-12 && l <= hi + 1e-12).then(|| self.dist_of_rate.eval(l))
    }

    /// The distortion interval this curve covers inside the rate window.
    fn window_interval(&self) -> (f64, f64) {
        let (lo, hi) = self.dist_of_rate.domain();
        let a = WINDOW.0.ln().max(lo);
        let b = WINDOW.1.ln().min(hi);
        (self.dist_of_rate.eval(a), self.dist_of_rate.eval(b))
    }
}

/// BD-rate of `test` against `reference` as a fraction (−0.25 = 25% fewer bits at equal
/// quality), or `None` when the two curves share no distortion interval inside the window.
pub fn bd_rate(test: &Curve, reference: &Curve) -> Option<f64> {
    let (a0, a1) = test.window_interval();
    let (b0, b1) = reference.window_interval();
    let (lo, hi) = (a0.max(b0), a1.min(b1));
    if hi <= lo {
        return None;
    }
    // Composite Simpson's rule on 1000 intervals: the integrand is a smooth cubic per piece.
    let n = 1000;
    let step = (hi - lo) / n as f64;
    let gap = |t: f64| test.rate_of_dist.eval(t) - reference.rate_of_dist.eval(t);
    let mut sum = gap(lo) + gap(hi);
    for i in 1..n {
        let w = if i % 2 == 1 { 4.0 } else { 2.0 };
        sum += w * gap(lo + i as f64 * step);
    }
    let mean = sum * step / 3.0 / (hi - lo);
    Some(mean.exp() - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pchip_reproduces_knots_and_lines() {
        let p = Pchip::new(vec![0.0, 1.0, 3.0, 4.0], vec![1.0, 3.0, 7.0, 9.0]).unwrap();
        for (x, y) in [(0.0, 1.0), (1.0, 3.0), (3.0, 7.0), (4.0, 9.0), (2.0, 5.0)] {
            assert!((p.eval(x) - y).abs() < 1e-12, "{x}");
        }
    }

    #[test]
    fn pchip_is_monotone_between_knots() {
        let p = Pchip::new(vec![0.0, 1.0, 2.0, 3.0], vec![0.0, 0.1, 5.0, 5.1]).unwrap();
        let mut last = -1.0;
        for i in 0..=300 {
            let v = p.eval(i as f64 / 100.0);
            assert!(v >= last);
            last = v;
        }
    }

    #[test]
    fn identical_curves_have_zero_bd_rate() {
        let pts = [(0.2, 26.0), (0.5, 29.5), (1.0, 33.0), (1.4, 35.0)];
        let c = Curve::new(&pts).unwrap();
        assert!(bd_rate(&c, &c).unwrap().abs() < 1e-12);
    }

    #[test]
    fn halving_every_rate_is_minus_fifty_percent() {
        let pts = [
            (0.2, 26.0),
            (0.5, 29.5),
            (1.0, 33.0),
            (1.4, 35.0),
            (2.0, 37.0),
        ];
        let half: Vec<_> = pts.iter().map(|&(r, d)| (r / 2.0, d)).collect();
        let (a, b) = (Curve::new(&half).unwrap(), Curve::new(&pts).unwrap());
        assert!((bd_rate(&a, &b).unwrap() + 0.5).abs() < 1e-9);
    }

    #[test]
    fn disjoint_curves_have_no_bd_rate() {
        let a = Curve::new(&[(0.2, 20.0), (1.0, 22.0)]).unwrap();
        let b = Curve::new(&[(0.2, 30.0), (1.0, 32.0)]).unwrap();
        assert!(bd_rate(&a, &b).is_none());
    }

    /// The anchors' own BD-rates (classic_SUMMARY.md, pchip column) from their curves.
    #[test]
    fn reproduces_the_anchor_bd_rates() {
        let csv = include_str!("../reference/classic_curves.csv");
        let curve = |codec: &str, col: usize| {
            let pts: Vec<(f64, f64)> = csv
                .lines()
                .skip(1)
                .map(|l| l.split(',').collect::<Vec<_>>())
                .filter(|f| f[0] == codec)
                .map(|f| (f[3].parse().unwrap(), f[col].parse().unwrap()))
                .collect();
            Curve::new(&pts).unwrap()
        };
        let jpeg = curve("jpeg420", 4);
        for (codec, want) in [
            ("webp", -0.373),
            ("jpeg444", 0.097),
            ("avif444", -0.534),
            ("jxl", -0.283),
        ] {
            let got = bd_rate(&curve(codec, 4), &jpeg).unwrap();
            assert!((got - want).abs() < 0.0015, "{codec}: {got} vs {want}");
        }
        // MS-SSIM in dB (column 6): WebP −28.0 %.
        let got = bd_rate(&curve("webp", 6), &curve("jpeg420", 6)).unwrap();
        assert!((got + 0.280).abs() < 0.0015, "webp ms-ssim: {got}");
    }
}
