//! Decode speed of the rnn model (issue 4's target: all layers of a 768x512 image at
//! 0.5 bpp in at most 1.5 s on the 2-core reference machine), and the time per layer.
//!
//! With the embedded rnn weights the file is kodim23 at the largest layer count that stays
//! within 0.5 bpp. Without them (a build without `weights/rnn.safetensors`) the weights are random: the networks cost the
//! same whatever their values, but the layer count is then fixed at 8, about what 0.5 bpp
//! takes with trained weights and the entropy-coded bits (~0.06 bpp a layer).

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion};
use lic::entropy::bits::BIT_CONTEXTS;
use lic::model::rnn::{RnnModel, MAX_ITERS};
use lic::{Codec, Image, ModelKind};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The codec on random rnn weights.
fn random_rnn_codec() -> Codec {
    let vm = VarMap::new();
    RnnModel::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let p_one = vec![32768u16; BIT_CONTEXTS];
    Codec::from_weights_bytes(&lic_train::rnn::weights_bytes(&vm, &p_one).unwrap()).unwrap()
}

/// Quality of `k` layers (the CLI's mapping is 1 + round(q·11)).
fn quality_of_layers(k: usize) -> f32 {
    (k - 1) as f32 / (MAX_ITERS - 1) as f32
}

fn bench(c: &mut Criterion) {
    // As the `lic` binary does: keep freed memory rather than purge it (mimalloc v2 option 15,
    // `mi_option_purge_delay`), so the numbers are the command line's.
    // SAFETY: sets a process-wide allocator option; no memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let img = Image::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/kodak-bench/kodak/kodim23.png"
    ))
    .unwrap();
    let pixels = (img.width * img.height) as f64;
    let embedded = Codec::embedded().unwrap().with_model(ModelKind::Rnn);
    let (codec, bytes, what) = match embedded.encode(&img, 0.0) {
        Ok(_) => {
            // The largest layer count within 0.5 bpp.
            let mut best = None;
            for k in 1..=MAX_ITERS {
                let b = embedded.encode(&img, quality_of_layers(k)).unwrap();
                if b.len() as f64 * 8.0 / pixels <= 0.5 || best.is_none() {
                    best = Some(b);
                }
            }
            (embedded, best.unwrap(), "embedded weights")
        }
        Err(_) => {
            let codec = random_rnn_codec();
            let b = codec.encode(&img, quality_of_layers(8)).unwrap();
            (codec, b, "random weights")
        }
    };
    let info = lic::info(&bytes).unwrap();
    let layers = info.layer_ends().len();
    eprintln!(
        "rnn bench: kodim23, {what}, {layers} layers, {:.3} bpp",
        bytes.len() as f64 * 8.0 / pixels
    );
    let mut g = c.benchmark_group("kodim23-768x512");
    g.sample_size(10);
    g.bench_function(format!("decode rnn all {layers} layers"), |b| {
        b.iter(|| codec.decode(&bytes).unwrap())
    });
    g.bench_function("decode rnn 1 layer", |b| {
        b.iter(|| codec.decode_layers(&bytes, Some(1)).unwrap())
    });
    // Every layer the format allows (issue 18: all layers of a 768×512 file in at most 1.5 s).
    let full = codec.encode(&img, 1.0).unwrap();
    let n = lic::info(&full).unwrap().layer_ends().len();
    eprintln!(
        "rnn bench: the -q 1 file has {n} layers, {:.3} bpp",
        full.len() as f64 * 8.0 / pixels
    );
    g.bench_function(format!("decode rnn -q 1 ({n} layers)"), |b| {
        b.iter(|| codec.decode(&full).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
