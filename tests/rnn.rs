//! The rnn format with an untrained model (random weights, a flat bit table): what every rnn
//! file must do whatever the weights — round trips of every layer count, prefixes and cuts,
//! the streaming decoder's pictures, and the error kinds. Quality with the shipped weights is
//! measured by kodak-bench (`lic-rnn` in its results).

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use lic::codec::rnn::layers_for_quality;
use lic::entropy::bits::BIT_CONTEXTS;
use lic::model::rnn::{RnnModel, MAX_ITERS};
use lic::stream::{Event, StreamDecoder};
use lic::{Codec, ColorType, Error, FormatError, Image, ModelKind};

fn random_rnn_codec() -> Codec {
    let vm = VarMap::new();
    RnnModel::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    // A bit table that is not flat, so contexts matter for the coder.
    let p_one: Vec<u16> = (0..BIT_CONTEXTS)
        .map(|i| 4096 + (i * 7919 % 57000) as u16)
        .collect();
    Codec::from_weights_bytes(&lic_train::rnn::weights_bytes(&vm, &p_one).unwrap())
        .unwrap()
        .with_every_rnn_layer(true)
}

fn image(w: u32, h: u32, color: ColorType) -> Image {
    let ch = color.channels();
    let data = (0..(w * h) as usize * ch)
        .map(|i| ((i * 37) % 251) as u8)
        .collect();
    Image {
        width: w,
        height: h,
        color,
        data,
    }
}

#[test]
fn quality_gives_one_to_max_layers_monotonically() {
    assert_eq!(layers_for_quality(0), 1);
    assert_eq!(layers_for_quality(65535), MAX_ITERS);
    let mut last = 0;
    for q in (0..=65535u32).step_by(97) {
        let k = layers_for_quality(q as u16);
        assert!(k >= last && (1..=MAX_ITERS).contains(&k));
        last = k;
    }
}

#[test]
fn every_layer_count_round_trips_and_prefixes_decode() {
    let codec = random_rnn_codec();
    for color in [ColorType::Rgb, ColorType::GrayAlpha] {
        let img = image(37, 21, color);
        let bytes = codec.encode(&img, 1.0).unwrap();
        let info = lic::info(&bytes).unwrap();
        assert_eq!(info.header.model, ModelKind::Rnn);
        let layer_ends = info.layer_ends();
        assert_eq!(layer_ends.len(), MAX_ITERS);
        let whole = codec.decode(&bytes).unwrap();
        assert_eq!((whole.width, whole.height, whole.color), (37, 21, color));
        for k in 1..=MAX_ITERS {
            let d = codec.decode_layers(&bytes, Some(k)).unwrap();
            assert_eq!(
                (d.layers, d.layers_in_file, d.truncated),
                (k, MAX_ITERS, false)
            );
            // A file cut right after layer k, or inside layer k + 1, gives the same picture.
            let cut = codec
                .decode_layers(&bytes[..layer_ends[k - 1]], None)
                .unwrap();
            assert_eq!((cut.layers, cut.truncated), (k, true));
            assert_eq!(cut.image, d.image);
            if k < MAX_ITERS {
                let inside = codec
                    .decode_layers(&bytes[..layer_ends[k - 1] + 9], None)
                    .unwrap();
                assert_eq!(inside.image, d.image);
            }
            if color.has_alpha() {
                // Alpha is lossless at every layer.
                let ch = color.channels();
                for (a, b) in d.image.data.chunks(ch).zip(img.data.chunks(ch)) {
                    assert_eq!(a[ch - 1], b[ch - 1]);
                }
            }
        }
        assert_eq!(codec.decode_layers(&bytes, None).unwrap().image, whole);
        // A region is that part of the whole picture; one outside the image is an error.
        let region = lic::Region {
            x: 5,
            y: 3,
            width: 20,
            height: 11,
        };
        let part = codec.decode_region(&bytes, region).unwrap();
        assert_eq!((part.width, part.height, part.color), (20, 11, color));
        let ch = color.channels();
        for row in 0..11 {
            let s = ((3 + row) * 37 + 5) * ch;
            assert_eq!(
                &part.data[row * 20 * ch..(row + 1) * 20 * ch],
                &whole.data[s..s + 20 * ch]
            );
        }
        let outside = lic::Region { x: 30, ..region };
        assert!(matches!(
            codec.decode_region(&bytes, outside),
            Err(Error::Input(_))
        ));
        // Cut before the first layer: an error, not a picture.
        let first = layer_ends[0];
        let e = codec.decode_layers(&bytes[..first - 1], None).unwrap_err();
        assert!(matches!(e, Error::Format(FormatError::Truncated(_))), "{e}");
    }
}

#[test]
fn the_stream_decoder_gives_a_picture_per_layer() {
    let codec = random_rnn_codec();
    let img = image(48, 40, ColorType::Rgba);
    let bytes = codec.encode(&img, 0.5).unwrap();
    let layers = layers_for_quality(32768);
    let mut dec = StreamDecoder::new(&codec);
    let mut seen = Vec::new();
    // Feed 7 bytes at a time, polling until nothing new.
    for part in bytes.chunks(7) {
        dec.push(part);
        loop {
            match dec.poll().unwrap() {
                Event::PictureReady { layer, layers: n } => {
                    assert_eq!(n as usize, layers);
                    let want = codec.decode_layers(&bytes, Some(layer as usize)).unwrap();
                    assert_eq!(dec.picture().unwrap(), &want.image, "layer {layer}");
                    seen.push(layer);
                }
                Event::HeaderKnown(_) => {}
                Event::NeedMoreData | Event::Done => break,
                e => panic!("unexpected {e:?}"),
            }
        }
    }
    assert_eq!(seen, (1..=layers as u32).collect::<Vec<_>>());
    assert_eq!(dec.poll().unwrap(), Event::Done);
}

#[test]
fn damaged_rnn_files_give_typed_errors() {
    let codec = random_rnn_codec();
    let img = image(32, 32, ColorType::Rgb);
    let bytes = codec.encode(&img, 0.3).unwrap();
    // A complete file that lacks a layer: the header's quality promises more.
    let info = lic::info(&bytes).unwrap();
    let last_len = info.chunks.last().unwrap().1;
    let mut fewer = bytes[..bytes.len() - 12 - (12 + last_len)].to_vec();
    lic::container::write_chunk(&mut fewer, lic::container::types::DONE, &[]);
    assert!(matches!(
        codec.decode(&fewer).unwrap_err(),
        Error::Format(FormatError::Structure(_))
    ));
    // A flipped bit in a layer: the CRC names RNLY.
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 20] ^= 1;
    assert!(matches!(
        codec.decode(&bad).unwrap_err(),
        Error::Format(FormatError::Crc(c)) if c == "RNLY"
    ));
    // A region of a damaged file is the same error as the whole.
    assert!(matches!(
        codec.decode_region(
            &bad,
            lic::Region {
                x: 0,
                y: 0,
                width: 8,
                height: 8
            }
        ),
        Err(Error::Format(FormatError::Crc(_)))
    ));
    // The embedded cw weights cannot decode it (other weights id).
    let cw = Codec::embedded().unwrap();
    assert!(cw.decode_layers(&bytes, None).is_err());
}
