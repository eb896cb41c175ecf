//! `lic-train`: trains lic's models and exports shipped weights files.
//!
//! `lic-train train --data DIR --out RUN` (resumes from RUN/ckpt.safetensors), then
//! `lic-train export --ckpt RUN/ema.safetensors --data DIR --out weights/cw.safetensors`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Training allocates and frees many large tensors; mimalloc reuses them instead of faulting
// in fresh zeroed pages each time (measured: ~2x faster training steps).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "lic-train",
    version,
    about = "Training for lic, the learned image codec"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (resumes from OUT/ckpt.safetensors when present).
    Train {
        /// Which model: cw (default) or rnn.
        #[arg(long, default_value = "cw")]
        model: String,
        /// Folder of training images.
        #[arg(long)]
        data: PathBuf,
        /// Folder for checkpoints and train.log.
        #[arg(long)]
        out: PathBuf,
        /// Start from these weights (checkpoint or shipped file) instead of resuming.
        #[arg(long)]
        init: Option<PathBuf>,
        /// Total steps.
        #[arg(long, default_value_t = 1_000_000)]
        steps: usize,
        /// Wall-clock budget of this run, in minutes.
        #[arg(long, default_value_t = 60.0)]
        minutes: f64,
        /// Crops per step.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Crop side in pixels (a multiple of 16).
        #[arg(long, default_value_t = 128)]
        patch: usize,
        /// Learning rate.
        #[arg(long, default_value_t = 1e-4)]
        lr: f64,
        /// Validate every N steps.
        #[arg(long, default_value_t = 1000)]
        val_every: usize,
        /// Checkpoint every N minutes.
        #[arg(long, default_value_t = 5.0)]
        ckpt_minutes: f64,
        /// Train on the GPU (needs a build with --features cuda).
        #[arg(long)]
        cuda: bool,
        /// How convolutions run on the GPU: candle's `conv2d` (native) or im2col by copies
        /// and one matmul (unfolded, whose backward needs no `conv_transpose2d`).
        #[arg(long, default_value = "native", value_parser = ["native", "unfolded"])]
        gpu_conv: String,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Log every N steps.
        #[arg(long, default_value_t = 50)]
        log_every: usize,
        /// Ramp the rate term in over the first N steps.
        #[arg(long, default_value_t = 2000)]
        warmup: usize,
        /// Straight-through rounding in the synthesis input (fine-tuning).
        #[arg(long)]
        ste: bool,
        /// Start a fresh model from a linear transform code fitted to the data (PCA) instead
        /// of random weights.
        #[arg(long)]
        pca_init: bool,
        /// Decay of the weight average saved as OUT/ema.safetensors (cw; 0 = off).
        #[arg(long, default_value_t = 0.995)]
        ema: f64,
        /// Relative sampling weight KEY=W of a group of training images, repeatable: KEY is
        /// `grey` (equal channels) or a file-name prefix; matching rules multiply.
        #[arg(long = "sample-weight", value_name = "KEY=W")]
        sample_weight: Vec<lic_train::data::SampleWeight>,
        /// Fit only the anchor context of the --init weights, the rest frozen (cw; writes
        /// OUT/ckpt.safetensors whenever validation improves).
        #[arg(long)]
        anchor_context: bool,
    },
    /// Turn a training checkpoint into a shipped weights file.
    Export {
        /// Which model: cw (default) or rnn.
        #[arg(long, default_value = "cw")]
        model: String,
        /// Checkpoint (f32 safetensors).
        #[arg(long)]
        ckpt: PathBuf,
        /// Training images, for the importance-map statistics.
        #[arg(long)]
        data: PathBuf,
        /// Output weights file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Fit a full-resolution post-filter on pictures a cw weights file decoded.
    Postfilter {
        /// Training images.
        #[arg(long)]
        data: PathBuf,
        /// The cw weights whose decoded pictures the filter learns from.
        #[arg(long, default_value = "weights/cw.safetensors")]
        weights: PathBuf,
        /// Folder for the log, the filter (resumed when present) and the weights with it
        /// (`weights.safetensors`).
        #[arg(long)]
        out: PathBuf,
        /// Hidden channels.
        #[arg(long, default_value_t = 16)]
        width: usize,
        /// Wall-clock budget, in minutes.
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
        /// Learning rate.
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
    },
    /// Fit the logistic bit model (format-spec §6.6b) of an rnn weights file on the bits its
    /// encoder gives on the training images; the transforms and the bit table stay as they are.
    RnnBits {
        /// Training images.
        #[arg(long)]
        data: PathBuf,
        /// The rnn weights whose bits are modelled.
        #[arg(long, default_value = "weights/rnn.safetensors")]
        weights: PathBuf,
        /// Output weights file (the input plus `bits.mix`).
        #[arg(long)]
        out: PathBuf,
        /// Largest side of the centre crop coded from each image, in pixels.
        #[arg(long, default_value_t = 256)]
        crop: usize,
        /// Adam steps per iteration and channel.
        #[arg(long, default_value_t = 150)]
        steps: usize,
    },
    /// Fine-tune the decoder (synthesis and post-filter) of a cw weights file on the latents
    /// its encoder writes; the encoder and the entropy model stay as they are.
    Decoder {
        /// Training images.
        #[arg(long)]
        data: PathBuf,
        /// The cw weights (with a post-filter) whose decoder is fitted.
        #[arg(long, default_value = "weights/cw.safetensors")]
        weights: PathBuf,
        /// Folder for the log, the checkpoint (resumed when present) and the best weights
        /// (`weights.safetensors`).
        #[arg(long)]
        out: PathBuf,
        /// Wall-clock budget, in minutes.
        #[arg(long, default_value_t = 60.0)]
        minutes: f64,
        /// Learning rate after a 100-step warm-up.
        #[arg(long, default_value_t = 3e-5)]
        lr: f64,
        /// Crops per step.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Crop side in latent positions (16 pixels each; the loss skips the outer one).
        #[arg(long, default_value_t = 10)]
        crop: usize,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Train {
            model,
            data,
            out,
            init,
            steps,
            minutes,
            batch,
            patch,
            lr,
            val_every,
            ckpt_minutes,
            cuda,
            gpu_conv,
            seed,
            log_every,
            warmup,
            ste,
            pca_init,
            ema,
            sample_weight,
            anchor_context,
        } => {
            lic::model::layers::set_gpu_conv(if gpu_conv == "unfolded" {
                lic::model::layers::GpuConv::Unfolded
            } else {
                lic::model::layers::GpuConv::Native
            });
            if patch % 16 != 0 || patch == 0 {
                return Err("--patch must be a positive multiple of 16".into());
            }
            if !(0.0..1.0).contains(&ema) {
                return Err("--ema must be in [0, 1)".into());
            }
            let cfg = lic_train::TrainConfig {
                data,
                out,
                init,
                steps,
                minutes,
                batch,
                patch,
                lr,
                val_every,
                ckpt_minutes,
                cuda,
                seed,
                log_every,
                warmup,
                ste,
                pca_init,
                ema,
                sample_weights: sample_weight,
            };
            match model.as_str() {
                "cw" if anchor_context => lic_train::anchor::train(&cfg),
                "cw" => lic_train::train(&cfg),
                "rnn" => lic_train::rnn::train(&cfg),
                m => return Err(format!("unknown model {m}: cw or rnn")),
            }
            .map_err(|e| e.to_string())
        }
        Command::Export {
            model,
            ckpt,
            data,
            out,
        } => match model.as_str() {
            "cw" => lic_train::export::export(&ckpt, &data, &out),
            "rnn" => lic_train::rnn::export(&ckpt, &data, &out, 150),
            m => return Err(format!("unknown model {m}: cw or rnn")),
        }
        .map_err(|e| e.to_string()),
        Command::Postfilter {
            data,
            weights,
            out,
            width,
            minutes,
            lr,
        } => lic_train::postfilter::fit(&data, &weights, &out, width, minutes, lr)
            .map_err(|e| e.to_string()),
        Command::RnnBits {
            data,
            weights,
            out,
            crop,
            steps,
        } => lic_train::rnn_bits::fit(&data, &weights, &out, crop, steps, &mut std::io::stdout())
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Command::Decoder {
            data,
            weights,
            out,
            minutes,
            lr,
            batch,
            crop,
        } => {
            if crop < 3 {
                return Err("--crop must be at least 3".into());
            }
            lic_train::decoder::fit(&lic_train::decoder::DecoderConfig {
                data: &data,
                base: &weights,
                out: &out,
                minutes,
                lr,
                batch,
                crop,
            })
            .map_err(|e| e.to_string())
        }
    }
}

/// mimalloc v2's `mi_option_purge_delay` (libmimalloc-sys names only some options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Training frees and re-allocates the same large tensors every step; returning them to
    // the OS makes the kernel zero fresh pages each time. MIMALLOC_PURGE_DELAY in the
    // environment still wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide allocator option; no memory is touched.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lic-train: {e}");
            ExitCode::FAILURE
        }
    }
}
