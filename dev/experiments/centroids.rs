//! Where the true latent values sit inside their quantization bins (development aid): for
//! each scale table t, the mean of |ŷ| − |y·g| over coded symbols with |ŷ| = 1 and |ŷ| ≥ 2,
//! on training images (never Kodak), beside the Laplace centroid shift of the table's scale.
//!
//! usage: cargo run --release --example centroids -- WEIGHTS DIR [every-nth-image]
use lic::codec::cw::{kept, read_symbols_keeping, to_tensor, Rect};
use lic::container::{types::CWLT, Container};
use lic::model::cw::M;
use lic::{Codec, ColorType, CwWeights, Image};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&args[1]).unwrap();
    let weights = CwWeights::from_bytes(&bytes).unwrap();
    // One tile, so one CWLT stream holds the whole latent grid.
    let codec = Codec::from_weights_bytes(&bytes).unwrap().with_tile_size(0);
    let every: usize = args.get(3).map_or(10, |s| s.parse().unwrap());
    let files = lic_train::data::image_files(args[2].as_ref()).unwrap();
    // [t][0 = |ŷ| 1, 1 = |ŷ| ≥ 2] → (sum of shrink, count)
    let mut acc = vec![[(0f64, 0u64); 2]; lic::model::cw::SCALE_COUNT];
    let dev = candle_core::Device::Cpu;
    for f in files.iter().skip(3).step_by(every) {
        let img = image::open(f).unwrap().to_rgb8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let r = Rect::grid(h.div_ceil(16), w.div_ceil(16));
        let x = to_tensor(img.as_raw(), w, h, &r, &dev).unwrap();
        let (y, _) = weights.model().unwrap().analysis(&x).unwrap();
        let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let image = Image {
            width: w as u32,
            height: h as u32,
            color: ColorType::Rgb,
            data: img.into_raw(),
        };
        for q in [0.1f32, 0.3, 0.5, 0.7, 0.9] {
            // Encode, then decode the symbols: the decoder knows each value's table.
            let file = codec.encode(&image, q).unwrap();
            let parsed = Container::parse(&file).unwrap();
            let q16 = parsed.header.quality;
            let stream = parsed.find_all(CWLT)[0];
            let lat = read_symbols_keeping(&weights, stream, (r.h(), r.w()), q16, true).unwrap();
            let pos = lic::codec::cw::rate_pos(q16);
            let (lg, _) = weights.model().unwrap().rate_params(pos).unwrap();
            let gains: Vec<f32> = lg.exp().unwrap().to_vec1().unwrap();
            let idx = &lat.tables;
            let n = lat.h * lat.w;
            for c in 0..M {
                for p in 0..n {
                    let v = lat.values.get(c * n + p);
                    if c >= kept(lat.levels[p]) || v == 0 {
                        continue;
                    }
                    let t = idx[c * n + p] as usize;
                    let shrink = v.abs() as f64 - (y[c * n + p] * gains[c]).abs() as f64;
                    let a = &mut acc[t][(v.abs() >= 2) as usize];
                    a.0 += shrink;
                    a.1 += 1;
                }
            }
        }
    }
    println!("t      b  laplace  |y|=1 (n)         |y|>=2 (n)");
    for (t, a) in acc.iter().enumerate() {
        let b = lic::entropy::tables::scale_of(t);
        let lap = lic_train::export::centroid_shift(b);
        let m = |i: usize| a[i].0 / a[i].1.max(1) as f64;
        println!(
            "{t:2} {b:6.3} {lap:7.3}  {:6.3} ({:8})  {:6.3} ({:8})",
            m(0),
            a[0].1,
            m(1),
            a[1].1
        );
    }
}
