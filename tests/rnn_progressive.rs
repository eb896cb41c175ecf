//! The shipped rnn weights shown as a file arrives: the streaming decoder, fed a real
//! photograph's rnn file in small pieces, hands out one picture per complete layer, and each
//! is closer to the original than the one before (what a viewer showing a download needs).

use lic::stream::{Event, StreamDecoder};
use lic::{Codec, ColorType, Image, ModelKind};

fn kodak_crop(name: &str, x0: u32, y0: u32, w: u32, h: u32) -> Image {
    let path = format!("{}/kodak-bench/kodak/{name}", env!("CARGO_MANIFEST_DIR"));
    let img = image::open(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .into_rgb8();
    let crop = image::imageops::crop_imm(&img, x0, y0, w, h).to_image();
    Image {
        width: w,
        height: h,
        color: ColorType::Rgb,
        data: crop.into_raw(),
    }
}

#[test]
fn each_streamed_layer_is_a_better_picture() {
    let codec = Codec::embedded()
        .expect("the repository ships default weights")
        .with_model(ModelKind::Rnn);
    let img = kodak_crop("kodim23.png", 200, 100, 256, 192);
    // -q 0.5: 7 of the 12 layers.
    let bytes = codec.encode(&img, 0.5).unwrap();
    let mut dec = StreamDecoder::new(&codec);
    let mut psnrs: Vec<f64> = Vec::new();
    for part in bytes.chunks(500) {
        dec.push(part);
        loop {
            match dec.poll().unwrap() {
                Event::PictureReady { layer, .. } => {
                    assert_eq!(layer as usize, psnrs.len() + 1);
                    let pic = dec.picture().unwrap();
                    psnrs.push(lic::metrics::psnr(&pic.data, &img.data));
                }
                Event::HeaderKnown(_) => {}
                Event::NeedMoreData | Event::Done => break,
                e => panic!("unexpected {e:?}"),
            }
        }
    }
    assert_eq!(psnrs.len(), 7, "{psnrs:?}");
    for (k, w) in psnrs.windows(2).enumerate() {
        assert!(
            w[1] > w[0],
            "layer {} is no better than {}: {psnrs:.2?}",
            k + 2,
            k + 1
        );
    }
    // The whole file's picture is the last one shown.
    let whole = codec.decode(&bytes).unwrap();
    assert_eq!(psnrs[6], lic::metrics::psnr(&whole.data, &img.data));
    assert!(psnrs[6] > 27.0, "{psnrs:.2?}");
}
