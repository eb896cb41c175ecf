//! The architecture constants a decoder needs: the shapes of the cw latents, the importance
//! levels, the context networks' inputs and the scale tables (format-spec §2, §6), and the
//! rnn bit planes (§5.2). Everything that reads or writes a stream agrees on these numbers;
//! weights files must match them.

/// The content-weighted model (`model: 0` in HEAD).
pub mod cw {
    /// Latent channels.
    pub const M: usize = 320;
    /// Importance levels.
    pub const LEVELS: usize = 20;
    /// Channels switched on per importance level.
    pub const CH_PER_LEVEL: usize = M / LEVELS;
    /// Trained rate points (the `-q` range interpolates between them).
    pub const RATE_POINTS: usize = 5;
    /// Hidden width of the context network.
    pub const CTX_HIDDEN: usize = 64;
    /// Anchor values are clipped to ±CTX_CLIP before they enter the context network.
    pub const CTX_CLIP: i32 = 15;
    /// Number of context-network inputs: 4 neighbours × (value, |value|) × M.
    pub const CTX_IN: usize = 8 * M;
    /// Channel slices of the anchor context, as importance-level boundaries: slice k holds the
    /// channels of levels `SLICE_LEVELS[k]..SLICE_LEVELS[k + 1]`. Uneven, because low rates
    /// keep only the first levels' channels.
    pub const SLICE_LEVELS: [usize; 6] = [0, 1, 2, 4, 8, LEVELS];
    /// Number of anchor-context slices (slice 0 has no context).
    pub const SLICES: usize = SLICE_LEVELS.len() - 1;
    /// Hidden width of each anchor-context network.
    pub const ACTX_HIDDEN: usize = 64;
    /// The anchor positions an anchor-context network reads, as (row, column) offsets: the
    /// anchor itself and its four diagonal neighbours (anchors too, decoded in earlier slices).
    pub const ACTX_TAPS: [(isize, isize); 5] = [(0, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)];

    /// First channel of anchor-context slice `k` (`M` for `k = SLICES`).
    pub const fn slice_start(k: usize) -> usize {
        SLICE_LEVELS[k] * CH_PER_LEVEL
    }

    /// Inputs of the anchor-context network of slice `k`: per tap, the values and magnitudes of
    /// the channels before the slice.
    pub const fn actx_inputs(k: usize) -> usize {
        ACTX_TAPS.len() * 2 * slice_start(k)
    }

    /// The synthesis stages, (input channels, output channels) of each 3×3 convolution
    /// before its depth-to-space ×2 (format-spec §5 step 3). The decoder's memory estimate
    /// sizes its buffers from them.
    pub const SYNTHESIS: [(usize, usize); 4] = [(M, 128), (128, 96), (96, 64), (64, 3)];
    /// Total down-sampling of the transform.
    pub const STRIDE: usize = 16;
    /// Smallest and largest scale of the scale table, and its number of entries.
    pub const SCALE_MIN: f64 = 0.11;
    /// See [`SCALE_MIN`].
    pub const SCALE_MAX: f64 = 64.0;
    /// See [`SCALE_MIN`].
    pub const SCALE_COUNT: usize = 64;
}

/// The recurrent progressive model (`model: 1` in HEAD).
pub mod rnn {
    /// Bits per 16×16 block per iteration (layer).
    pub const BITS: usize = 32;
    /// Most iterations a file may have (1.5 bpp before entropy coding).
    pub const MAX_ITERS: usize = 12;
    /// Total down-sampling: one block of bits covers STRIDE×STRIDE pixels.
    pub const STRIDE: usize = 16;
}
