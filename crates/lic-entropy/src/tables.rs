//! Quantized probability tables.
//!
//! Every table is a list of integer frequencies summing to `1 << PRECISION`. The Laplace
//! tables are derived from the scale index alone with `libm` (a pure-software, bit-exact
//! port of musl's math library) and basic IEEE-754 arithmetic, so every platform builds the
//! same integers; the importance-map tables are integers stored in the weights file.

use constriction::stream::model::ContiguousCategoricalEntropyModel;

use lic_format::arch::cw::{SCALE_COUNT, SCALE_MAX, SCALE_MIN};

/// Fixed-point precision of every table (frequencies sum to 2^16).
pub const PRECISION: usize = 16;
/// Largest half-width of a scale table's support; larger values escape.
pub const MAX_SUPPORT: i32 = 511;

/// A categorical model with 16-bit fixed-point frequencies.
pub type Categorical = ContiguousCategoricalEntropyModel<u32, Vec<u32>, PRECISION>;

/// The scale of table `i`: log-spaced from `SCALE_MIN` to `SCALE_MAX`.
pub fn scale_of(index: usize) -> f64 {
    let (lo, hi) = (libm::log(SCALE_MIN), libm::log(SCALE_MAX));
    libm::exp(lo + (hi - lo) * index as f64 / (SCALE_COUNT - 1) as f64)
}

/// Half-width R of the support of table `i`: symbols −R..=R, then one escape symbol.
pub fn support_of(index: usize) -> i32 {
    let r = libm::ceil(8.0 * scale_of(index)) as i32;
    r.clamp(2, MAX_SUPPORT)
}

/// Integer frequencies of the discretized zero-mean Laplace distribution of table `index`,
/// in symbol order −R..=R followed by the escape symbol.
pub fn laplace_frequencies(index: usize) -> Vec<u32> {
    let b = scale_of(index);
    let r = support_of(index);
    // Upper-tail mass beyond x ≥ 0: ½·e^(−x/b).
    let tail = |x: f64| 0.5 * libm::exp(-x / b);
    let mut p: Vec<f64> = (-r..=r)
        .map(|v| {
            let a = v.unsigned_abs() as f64;
            if v == 0 {
                1.0 - 2.0 * tail(0.5)
            } else {
                tail(a - 0.5) - tail(a + 0.5)
            }
        })
        .collect();
    p.push(2.0 * tail(r as f64 + 0.5));
    quantize(&p)
}

/// Turns non-negative weights into frequencies ≥ 1 that sum to exactly 2^PRECISION: each
/// gets `1 + floor(w / Σw · (2^PRECISION − n))`, and the remainder goes to the first of the largest weights.
pub fn quantize(weights: &[f64]) -> Vec<u32> {
    let total = (1u64 << PRECISION) as f64;
    let n = weights.len();
    let sum: f64 = weights.iter().sum();
    let spare = total - n as f64;
    let mut freq: Vec<u32> = weights
        .iter()
        .map(|&w| {
            1 + if sum > 0.0 {
                libm::floor(w / sum * spare) as u32
            } else {
                0
            }
        })
        .collect();
    let used: u64 = freq.iter().map(|&f| f as u64).sum();
    let largest = (0..n).fold(
        0,
        |best, i| if weights[i] > weights[best] { i } else { best },
    );
    freq[largest] += ((1u64 << PRECISION) - used) as u32;
    freq
}

/// Builds the constriction model of a frequency list (which must sum to 2^PRECISION and
/// have no zero entry).
pub fn categorical(freq: &[u32]) -> Categorical {
    Categorical::from_nonzero_fixed_point_probabilities(freq, false)
        .expect("frequency tables are validated when they are built")
}

/// The Laplace tables, indexed by scale index.
pub struct ScaleTables {
    /// One model per scale index.
    pub models: Vec<Categorical>,
    /// Frequencies, for rate estimates.
    pub freqs: Vec<Vec<u32>>,
    /// Support half-width R of each table.
    pub support: Vec<i32>,
    /// [`Self::cheapest_latent_info`], found once: decoders ask for it per tile.
    cheapest_latent: u64,
}

impl ScaleTables {
    /// Builds all `SCALE_COUNT` tables.
    pub fn new() -> Self {
        let freqs: Vec<Vec<u32>> = (0..SCALE_COUNT).map(laplace_frequencies).collect();
        let largest = freqs.iter().flatten().copied().max().unwrap_or(1);
        Self {
            models: freqs.iter().map(|f| categorical(f)).collect(),
            support: (0..SCALE_COUNT).map(support_of).collect(),
            freqs,
            cheapest_latent: crate::coder::categorical_info(largest),
        }
    }

    /// The least information a latent value can carry ([`crate::coder::categorical_info`] of
    /// the largest frequency of any table), in 2^-16 bit.
    pub fn cheapest_latent_info(&self) -> u64 {
        self.cheapest_latent
    }

    /// −log2 of the probability table `t` gives `value`'s symbol: the escape symbol for a
    /// value outside the support (whose raw bits come on top, not counted here).
    pub fn table_bits(&self, t: usize, value: i32) -> f64 {
        let (freq, r) = (&self.freqs[t], self.support[t]);
        let s = if value.abs() <= r {
            (value + r) as usize
        } else {
            freq.len() - 1
        };
        -(freq[s] as f64 / (1u64 << PRECISION) as f64).log2()
    }
}

impl Default for ScaleTables {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_valid_and_unimodal() {
        for i in 0..SCALE_COUNT {
            let f = laplace_frequencies(i);
            assert_eq!(f.iter().map(|&x| x as u64).sum::<u64>(), 1 << PRECISION);
            assert!(f.iter().all(|&x| x >= 1));
            let r = support_of(i) as usize;
            assert_eq!(f.len(), 2 * r + 2);
            // Symmetric around the centre (up to the remainder added to the centre).
            for k in 1..=r {
                assert_eq!(f[r - k], f[r + k], "table {i} asymmetric at {k}");
            }
        }
    }

    #[test]
    fn golden_table_values() {
        // Pinned values: a change here changes the format.
        let f = laplace_frequencies(32);
        let r = support_of(32) as usize;
        let moment: u64 = laplace_frequencies(63)
            .iter()
            .enumerate()
            .map(|(i, &v)| i as u64 * v as u64)
            .sum();
        assert_eq!(r, 23);
        assert_eq!(f[r], 10759);
        assert_eq!(laplace_frequencies(0), vec![1, 348, 64837, 348, 1, 1]);
        assert_eq!(moment, 33500160);
    }
}
