//! The learned parts: layers, the cw transform with its float entropy-model twin, the
//! recurrent rnn transform, and the weights files that carry them.

pub mod analysis;
pub mod cw;
pub mod im2col;
pub mod layers;
pub mod postfilter;
pub mod rnn;
pub mod rnn_analysis;
pub mod rnn_synthesis;
pub mod store;
pub mod synthesis;
pub mod weights;
