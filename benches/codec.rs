//! Encode and decode speed of one 768x512 Kodak image with the embedded weights (the targets:
//! decode ≤ 0.15 s, encode ≤ 0.4 s on the 2-core reference machine). `decode … loading the
//! weights` is what a process that decodes one file pays: the embedded weights parsed, hashed
//! and turned into the synthesis, then the decode.

use criterion::{criterion_group, criterion_main, Criterion};
use lic::{Codec, Image};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    // Keep freed memory rather than purge it (mimalloc v2 option 15, `mi_option_purge_delay`),
    // so that repeated iterations time the codec, not the kernel zeroing returned pages (the
    // `lic` binary returns them after 10 ms, which a single run barely notices).
    // SAFETY: sets a process-wide allocator option; no memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let codec = Codec::embedded().expect("embedded weights");
    let img = Image::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/kodak-bench/kodak/kodim23.png"
    ))
    .unwrap();
    let mut g = c.benchmark_group("kodim23-768x512");
    g.sample_size(10);
    for q in [0.25f32, 0.75] {
        let bytes = codec.encode(&img, q).unwrap();
        g.bench_function(format!("encode q{q}"), |b| {
            b.iter(|| codec.encode(&img, q).unwrap())
        });
        g.bench_function(format!("decode q{q}"), |b| {
            b.iter(|| codec.decode(&bytes).unwrap())
        });
        g.bench_function(format!("decode q{q} loading the weights"), |b| {
            b.iter(|| Codec::embedded().unwrap().decode(&bytes).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
