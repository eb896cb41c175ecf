//! The quality knob and the rate code it selects. HEAD stores a 16-bit rate code (format-spec
//! §6.2): for cw it picks a position between the trained rate points (integer arithmetic, so
//! every decoder interpolates the same gains), which the float model reads as a continuous
//! coordinate t; for rnn it gives the number of layers. A [`Quality`] (`-q` ∈ [0, 1]) maps to a
//! rate code through the encoder's calibration ([`Quality::cw_rate_code`]); decoders never
//! need that map, so recalibrating it leaves every file as it was.

use crate::arch::cw::RATE_POINTS;

/// A quality in [0, 1] (0: smallest file, 1: best picture), held as `round(q · 65535)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quality(u16);

/// A quality outside [0, 1].
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[error("quality {0} is out of range: it takes a value from 0 (smallest file) to 1 (best picture)")]
pub struct QualityError(pub f32);

impl Quality {
    /// The quality `q` ∈ [0, 1].
    pub fn new(q: f32) -> Result<Self, QualityError> {
        if !(0.0..=1.0).contains(&q) || q.is_nan() {
            return Err(QualityError(q));
        }
        Ok(Self((q * 65535.0).round() as u16))
    }

    /// The quality `q16 / 65535`.
    pub fn from_q16(q16: u16) -> Self {
        Self(q16)
    }

    /// `round(q · 65535)`; also the rnn rate code (its layer count, format-spec §5).
    pub fn q16(self) -> u16 {
        self.0
    }

    /// The cw rate code of this quality: piecewise linear between [`CW_RATE_KNOTS`].
    pub fn cw_rate_code(self) -> u16 {
        let k = KNOTS_BELOW_ONE as u64;
        let pos = self.0 as u64 * k;
        let (i, frac) = ((pos / 65535) as usize, pos % 65535);
        if i as u64 == k {
            return CW_RATE_KNOTS[i];
        }
        let (a, b) = (CW_RATE_KNOTS[i] as u64, CW_RATE_KNOTS[i + 1] as u64);
        (a + ((b - a) * frac + 32767) / 65535) as u16
    }

    /// The quality whose cw rate code is nearest `rate` (the inverse of
    /// [`cw_rate_code`](Self::cw_rate_code), for showing a file's quality).
    pub fn from_cw_rate_code(rate: u16) -> Self {
        let i = CW_RATE_KNOTS[1..]
            .iter()
            .position(|&k| rate <= k)
            .unwrap_or(KNOTS_BELOW_ONE - 1);
        let (a, b) = (CW_RATE_KNOTS[i] as u64, CW_RATE_KNOTS[i + 1] as u64);
        let frac = ((rate as u64).clamp(a, b) - a) * 65535 / (b - a);
        let k = KNOTS_BELOW_ONE as u64;
        Self(((i as u64 * 65535 + frac + k / 2) / k).min(65535) as u16)
    }

    /// The quality in [0, 1].
    pub fn value(self) -> f32 {
        self.0 as f32 / 65535.0
    }

    /// Where this quality falls between the trained rate points.
    pub fn rate_pos(self) -> RatePos {
        RatePos::from_q16(self.0)
    }
}

/// Layers of an rnn file with rate code `code` (format-spec §4.2b):
/// `1 + round(code · (MAX_ITERS − 1) / 65535)`, so 0 gives one layer and 65535
/// [`MAX_ITERS`](crate::arch::rnn::MAX_ITERS), monotone in between.
pub fn rnn_layers(code: u16) -> usize {
    use crate::arch::rnn::MAX_ITERS;
    1 + ((code as usize * (MAX_ITERS - 1) + 32767) / 65535)
}

/// The rate code nearest the middle of those that give an rnn file `layers` layers
/// (1..=MAX_ITERS): `round((layers − 1) · 65535 / (MAX_ITERS − 1))`.
pub fn rnn_rate_code(layers: usize) -> u16 {
    use crate::arch::rnn::MAX_ITERS;
    let k = layers.clamp(1, MAX_ITERS) - 1;
    ((k * 65535 + (MAX_ITERS - 1) / 2) / (MAX_ITERS - 1)) as u16
}

/// The cw rate code at `-q` = 0, 0.05, 0.10, …, 1 (strictly increasing; `-q 1` is the top of
/// the trained range). Calibrated so that on photographs `-q x` for x from 0.05 up to where the
/// model's best quality ends gives at least the PSNR of `cjpeg -quality 100x` in fewer bytes
/// (`scripts/calibrate-q.sh`: 24 training photographs, a 0.4 dB margin;
/// kodak-bench/results/calibration.md). kodak-bench/results/SUMMARY.md checks it on Kodak.
/// Recalibrate when the shipped weights change.
pub const CW_RATE_KNOTS: [u16; KNOTS_BELOW_ONE + 1] = [
    0, 21675, 32332, 36933, 39753, 41887, 43713, 45278, 46530, 47743, 48845, 49834, 51004, 52300,
    54036, 56067, 59090, 63649, 64278, 64906, 65535,
];

/// The highest `-q` whose JPEG match the calibration promises (past it the model's best
/// quality falls short of JPEG at quality 100q).
pub const CW_CALIBRATED_TO: f32 = 0.85;

/// Segments of [`CW_RATE_KNOTS`].
const KNOTS_BELOW_ONE: usize = 20;

/// Rate coordinate of the best quality, in halves of a rate-point step: `-q 1` sits half a
/// step beyond the last trained rate point. The gains and the importance bias extrapolate
/// linearly there; without it the top of the range fell to 1.31 bpp on Kodak, short of the
/// 1.5 bpp that `-q` must reach (measured 1.76 bpp at 4.5, 2.20 bpp at 5.0 with diminishing
/// PSNR, so half a step is where it stops).
pub const TOP_HALF_STEPS: u32 = 2 * (RATE_POINTS as u32 - 1) + 1;

/// The rate point below `q16` and the weight (0..=98302, above 65535 past the last rate
/// point) of the one above: t = floor(q16·TOP_HALF_STEPS / 2),
/// index = min(t / 65535, RATE_POINTS − 2), frac = t − index·65535.
pub fn rate_position(q16: u16) -> (usize, u32) {
    let t = q16 as u32 * TOP_HALF_STEPS / 2;
    let index = (t / 65535).min(RATE_POINTS as u32 - 2);
    (index as usize, t - index * 65535)
}

/// Where a quality falls between the trained rate points, as the float model reads it.
#[derive(Clone, Copy, Debug)]
pub struct RatePos {
    /// Lower rate point.
    pub index: usize,
    /// Weight of the upper rate point: in [0, 1], up to 1.5 past the last rate point
    /// (linear extrapolation, the top of the `-q` range).
    pub frac: f64,
}

/// The rate coordinate of `-q 1`: half a step past the last rate point ([`rate_position`]).
/// Training covers `[0, T_TOP]`, every coordinate the codec uses.
pub const T_TOP: f64 = (RATE_POINTS - 1) as f64 + 0.5;

impl RatePos {
    /// Position of a continuous rate coordinate `t ∈ [0, T_TOP]` (clamped): interpolation
    /// between rate points, linear extrapolation past the last one.
    pub fn from_t(t: f64) -> Self {
        let t = t.clamp(0.0, T_TOP);
        let index = (t.floor() as usize).min(RATE_POINTS - 2);
        Self {
            index,
            frac: t - index as f64,
        }
    }

    /// The position of a HEAD quality: t = q16·TOP_HALF_STEPS/(2·65535), matching the
    /// integer interpolation (and extrapolation) of [`rate_position`].
    pub fn from_q16(q16: u16) -> Self {
        let (index, frac) = rate_position(q16);
        Self {
            index,
            frac: frac as f64 / 65535.0,
        }
    }

    /// The rate coordinate: `index + frac`.
    pub fn t(&self) -> f64 {
        self.index as f64 + self.frac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_is_checked_and_rounded() {
        assert_eq!(Quality::new(0.5).unwrap().q16(), 32768);
        assert_eq!(Quality::new(1.0).unwrap().q16(), 65535);
        assert!(Quality::new(1.01).is_err() && Quality::new(-0.0001).is_err());
        assert!(Quality::new(f32::NAN).is_err());
        assert_eq!(Quality::from_q16(65535).value(), 1.0);
    }

    #[test]
    fn cw_rate_codes_rise_from_zero_to_the_top_and_invert() {
        assert!(CW_RATE_KNOTS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            (CW_RATE_KNOTS[0], CW_RATE_KNOTS[KNOTS_BELOW_ONE]),
            (0, 65535)
        );
        let code = |q: u16| Quality::from_q16(q).cw_rate_code();
        assert_eq!((code(0), code(65535)), (0, 65535));
        assert!((1..=65535u16).all(|q| code(q) >= code(q - 1)));
        for q in (0..=65535u16).step_by(97) {
            let back = Quality::from_cw_rate_code(code(q)).q16();
            // Steep segments map several qualities to one code: the inverse lands within one
            // code's worth of quality.
            assert!(
                code(back).abs_diff(code(q)) <= 1,
                "{q} -> {} -> {back}",
                code(q)
            );
        }
    }

    #[test]
    fn rnn_rate_codes_give_their_layer_counts() {
        use crate::arch::rnn::MAX_ITERS;
        assert_eq!((rnn_layers(0), rnn_layers(65535)), (1, MAX_ITERS));
        for k in 1..=MAX_ITERS {
            assert_eq!(rnn_layers(rnn_rate_code(k)), k);
        }
    }

    #[test]
    fn rate_position_tops_out_where_training_does() {
        let (index, frac) = rate_position(u16::MAX);
        let t = index as f64 + frac as f64 / 65535.0;
        assert!((t - T_TOP).abs() < 1e-4, "{t}");
    }

    #[test]
    fn rate_position_spans_half_a_step_past_the_last_rate_point() {
        assert_eq!(rate_position(0), (0, 0));
        // q16 = 14564: t = 65538, just past the first rate point.
        assert_eq!(rate_position(14564), (1, 3));
        // The top: t = floor(65535·4.5) = 294907, frac = 1.5·65535 rounded down.
        assert_eq!(rate_position(65535), (RATE_POINTS - 2, 98302));
        // Monotone in q16.
        let t = |q: u16| {
            let (i, f) = rate_position(q);
            i as u64 * 65535 + f as u64
        };
        assert!((1..=65535u16).all(|q| t(q) >= t(q - 1)));
    }
}
