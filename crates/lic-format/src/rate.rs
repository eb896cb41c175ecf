//! The quality knob and the rate coordinate it selects (format-spec §6.2): `-q` ∈ [0, 1] is
//! stored as `q16 = round(q · 65535)`; q16 picks a position between the trained rate points
//! (integer arithmetic, so every decoder interpolates the same gains), and the float model
//! reads the same position as a continuous coordinate t.

use crate::arch::cw::RATE_POINTS;

/// A quality in [0, 1] (0: smallest file, 1: best picture), as HEAD stores it.
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

    /// The quality a HEAD field holds.
    pub fn from_q16(q16: u16) -> Self {
        Self(q16)
    }

    /// The HEAD field: `round(q · 65535)`.
    pub fn q16(self) -> u16 {
        self.0
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
