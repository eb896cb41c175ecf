//! Quick rate-distortion check of a weights file on a folder of images (development aid; the
//! full harness is kodak-bench): real file sizes, PSNR on 8-bit RGB, and the model's estimate.
//!
//! usage: cargo run --release --example eval -- WEIGHTS DIR [q ...]
use lic::{Codec, Image};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let codec = Codec::from_weights_file(&args[1]).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&args[2])
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    let qs: Vec<f32> = if args.len() > 3 {
        args[3..].iter().map(|s| s.parse().unwrap()).collect()
    } else {
        vec![0.0, 0.25, 0.5, 0.75, 1.0]
    };
    for q in qs {
        let (mut bpp, mut psnr, mut est, mut n) = (0.0, 0.0, 0.0, 0.0);
        let t = std::time::Instant::now();
        for f in &files {
            let img = Image::open(f).unwrap();
            let (bytes, st) = codec.encode_with_stats(&img, q).unwrap();
            let out = codec.decode(&bytes).unwrap();
            let px = (img.width * img.height) as f64;
            bpp += bytes.len() as f64 * 8.0 / px;
            est += st.estimated_bits / (st.stream_bytes as f64 * 8.0);
            psnr += lic::metrics::psnr(&img.data, &out.data);
            n += 1.0;
        }
        println!(
            "q {q:.2}: {:.4} bpp  {:.3} dB  (estimate/real stream {:.4}, {:.2} s/image)",
            bpp / n,
            psnr / n,
            est / n,
            t.elapsed().as_secs_f64() / n
        );
    }
}
