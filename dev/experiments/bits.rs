//! Where the bits go (development aid): table bits of each class of latent symbol (anchors of
//! each slice, split by row parity, and non-anchors), on the images of a folder.
//!
//! usage: cargo run --release --example bits -- WEIGHTS DIR
use lic::codec::cw::{read_symbols_keeping, NO_TABLE};
use lic::container::{types::CWLT, Container};
use lic::model::cw::{slice_start, M, SLICES};
use lic::{Codec, CwWeights, Image};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&args[1]).unwrap();
    let weights = CwWeights::from_bytes(&bytes).unwrap();
    let codec = Codec::from_weights_bytes(&bytes).unwrap().with_tile_size(0);
    let files = lic_train::data::image_files(args[2].as_ref()).unwrap();
    for q in [0.1f32, 0.4, 0.7, 1.0] {
        // [slice] anchors bits per quincunx half (i even / i odd), then non-anchors
        let mut a = vec![[0f64; 2]; SLICES];
        let mut non = 0f64;
        let mut total_bits = 0f64;
        for f in &files {
            let image = Image::open(f).unwrap();
            let file = codec.encode(&image, q).unwrap();
            total_bits += file.len() as f64 * 8.0;
            let parsed = Container::parse(&file).unwrap();
            let (h, w) = (
                (image.height as usize).div_ceil(16),
                (image.width as usize).div_ceil(16),
            );
            let lat = read_symbols_keeping(
                &weights,
                parsed.find_all(CWLT)[0],
                (h, w),
                parsed.header.quality,
                true,
            )
            .unwrap();
            let n = h * w;
            for c in 0..M {
                let k = (0..SLICES).rev().find(|&k| c >= slice_start(k)).unwrap();
                for p in 0..n {
                    let t = lat.tables[c * n + p];
                    if t == NO_TABLE {
                        continue;
                    }
                    let bits = weights
                        .scales
                        .table_bits(t as usize, lat.values.get(c * n + p));
                    let (i, j) = (p / w, p % w);
                    if (i + j) % 2 == 0 {
                        a[k][i % 2] += bits;
                    } else {
                        non += bits;
                    }
                }
            }
        }
        let lat_bits: f64 = a.iter().map(|x| x[0] + x[1]).sum::<f64>() + non;
        print!("q {q}: file {:.0} kbit, latents {:.0} kbit; anchors by slice (even rows | odd rows) %:", total_bits / 1e3, lat_bits / 1e3);
        for x in &a {
            print!(
                " {:.1}|{:.1}",
                100.0 * x[0] / lat_bits,
                100.0 * x[1] / lat_bits
            );
        }
        println!("; non-anchors {:.1} %", 100.0 * non / lat_bits);
    }
}
