//! Hostile and huge input (issue 21's cases): files of a few bytes that declare large
//! pictures are refused at once, a real stream under a larger header is refused before any
//! synthesis, and the encoder refuses oversized inputs before decoding their pixels.

use std::time::{Duration, Instant};

use lic::container::{types, write_chunk, ColorType, Header, ModelKind, SIGNATURE};
use lic::{Codec, EntropyError, Error, Image};

fn codec() -> Codec {
    Codec::embedded().expect("the repository ships default weights")
}

/// A cw file with the embedded weights' id: `header` then `chunks`, valid CRCs.
fn file(header: &Header, chunks: &[([u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    write_chunk(&mut out, types::HEAD, &header.to_bytes());
    for (kind, data) in chunks {
        write_chunk(&mut out, *kind, data);
    }
    write_chunk(&mut out, types::DONE, &[]);
    out
}

/// The embedded weights' id, as a file made with them carries it.
fn weights_id() -> [u8; 8] {
    let tiny = Image {
        width: 16,
        height: 16,
        color: ColorType::Gray,
        data: vec![128; 256],
    };
    lic::container::read_header(&codec().encode(&tiny, 0.0).unwrap())
        .unwrap()
        .weights_id
}

fn header(width: u32, height: u32, tile: u16) -> Header {
    Header {
        width,
        height,
        color: ColorType::Rgb,
        model: ModelKind::Cw,
        weights_id: weights_id(),
        quality: 0,
        tile,
    }
}

/// Decodes `bytes`, expecting the entropy layer to refuse them within `within`.
fn refused_quickly(bytes: &[u8], within: Duration) {
    let t = Instant::now();
    let e = codec().decode(bytes).unwrap_err();
    let took = t.elapsed();
    assert!(matches!(e, Error::Entropy(EntropyError::Corrupt(_))), "{e}");
    assert!(took < within, "refused after {took:?}");
}

#[test]
fn a_word_cannot_declare_a_picture() {
    // One 4-byte CWLT decoded as a whole 1600×1200 tile (a 72-byte file).
    let one = file(&header(1600, 1200, 0), &[(types::CWLT, vec![1, 0, 0, 0])]);
    assert!(one.len() < 100);
    refused_quickly(&one, Duration::from_secs(1));
    // 8192×8192 in 121 tiles of 48×48 latents, each the same word.
    let tiles = vec![(types::CWLT, vec![1, 0, 0, 0]); 121];
    refused_quickly(
        &file(&header(8192, 8192, 48), &tiles),
        Duration::from_secs(1),
    );
    // The streaming decoder refuses them the same way.
    let c = codec();
    let mut s = lic::stream::StreamDecoder::new(&c);
    s.push(&one);
    let e = loop {
        match s.poll() {
            Err(e) => break e,
            Ok(lic::stream::Event::PictureReady { .. } | lic::stream::Event::Done) => {
                panic!("decoded a picture from one word")
            }
            Ok(lic::stream::Event::NeedMoreData) => panic!("the whole file was pushed"),
            Ok(_) => {}
        }
    };
    assert!(matches!(e, Error::Entropy(EntropyError::Corrupt(_))), "{e}");
}

#[test]
fn a_real_stream_under_a_larger_header_is_refused() {
    // kodim05's stream at -q 0.1 (one tile of 48×32 latents) under a header of 3000×2000 in
    // one tile: it runs out of information long before the larger grid is decoded.
    let img = image::open(format!(
        "{}/kodak-bench/kodak/kodim05.png",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .into_rgb8();
    let img = Image {
        width: img.width(),
        height: img.height(),
        color: ColorType::Rgb,
        data: img.into_raw(),
    };
    let bytes = codec().encode(&img, 0.1).unwrap();
    let mut h = lic::container::read_header(&bytes).unwrap();
    h.width = 3000;
    h.height = 2000;
    h.tile = 0;
    let mut crafted = SIGNATURE.to_vec();
    write_chunk(&mut crafted, types::HEAD, &h.to_bytes());
    crafted.extend_from_slice(&bytes[8 + 12 + lic::container::HEAD_LEN..]);
    refused_quickly(&crafted, Duration::from_secs(2));
}

/// A PNG whose IHDR says `width`×`height`, RGB 8-bit, with `before_idat` chunks ahead of an
/// image-data chunk holding `idat`.
fn png(width: u32, height: u32, before_idat: &[(&[u8; 4], Vec<u8>)], idat: &[u8]) -> Vec<u8> {
    let chunk = |out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    };
    let mut out = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1A, b'\n'];
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    for (kind, data) in before_idat {
        chunk(&mut out, kind, data);
    }
    chunk(&mut out, b"IDAT", idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn the_encoder_refuses_a_huge_input_before_decoding_it() {
    // A 20000×20000 PNG header (400 Mpx, over the default 64 Mpx): refused from its size
    // alone; the pixel data is never inflated (here it is not even valid).
    let bytes = png(20000, 20000, &[], &[0; 16]);
    let t = Instant::now();
    let e = codec().read_image(&bytes).unwrap_err();
    assert!(
        matches!(
            e,
            Error::EncodeLimits {
                width: 20000,
                what: "pixel count",
                ..
            }
        ),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(1));
    // Raised limits let the same header through to the pixel decoder (which then finds the
    // data broken).
    let e = codec()
        .with_limits(lic::Limits::none())
        .read_image(&bytes)
        .unwrap_err();
    assert!(matches!(e, Error::Input(_)), "{e}");
}

#[test]
fn an_animated_png_is_read_as_its_first_frame_and_says_so() {
    let raw: Vec<u8> = (0..4).flat_map(|_| [0u8, 10, 20, 30, 40, 50, 60]).collect();
    let mut z = Vec::new();
    {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(&mut z, flate2::Compression::default());
        e.write_all(&raw).unwrap();
        e.finish().unwrap();
    }
    let actl = [1u32.to_be_bytes(), 0u32.to_be_bytes()].concat();
    let still = codec().read_image(&png(2, 4, &[], &z)).unwrap();
    assert!(!still.first_frame_only);
    let anim = codec()
        .read_image(&png(2, 4, &[(b"acTL", actl)], &z))
        .unwrap();
    assert!(anim.first_frame_only);
    assert_eq!(anim.image.data, still.image.data);
    assert_eq!(still.image.data[..6], [10, 20, 30, 40, 50, 60]);
}
