//! Incremental decoding and the `image` crate integration, on the golden vectors.

use lic::stream::{Event, StreamDecoder};
use lic::Codec;

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/format-spec/golden/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Byte by byte: the header is reported exactly when HEAD is complete (8 + 12 + 24 bytes),
/// the picture exactly when the last byte arrives, and it equals the one-shot decode.
#[test]
fn byte_by_byte_stream_matches_one_shot_decode() {
    let codec = Codec::embedded().unwrap();
    for name in ["rgb-64x48-q030.lic", "grey-40x40-q050.lic"] {
        let bytes = golden(name);
        let mut dec = StreamDecoder::new(&codec);
        let mut events = Vec::new();
        for (i, b) in bytes.iter().enumerate() {
            dec.push(std::slice::from_ref(b));
            match dec.poll().unwrap() {
                Event::NeedMoreData => {}
                e => events.push((i + 1, e)),
            }
        }
        assert_eq!(events.len(), 2, "{name}: {events:?}");
        assert!(
            matches!(events[0], (44, Event::HeaderKnown(_))),
            "{name}: {events:?}"
        );
        assert_eq!(
            events[1],
            (
                bytes.len(),
                Event::PictureReady {
                    layer: 1,
                    layers: 1
                }
            )
        );
        assert_eq!(dec.poll().unwrap(), Event::Done);
        assert_eq!(dec.picture(), Some(&codec.decode(&bytes).unwrap()));
    }
}

#[test]
fn stream_errors_on_garbage_and_waits_on_truncation() {
    let codec = Codec::embedded().unwrap();
    let bytes = golden("rgb-33x17-q090.lic");
    let mut dec = StreamDecoder::new(&codec);
    dec.push(&bytes[..bytes.len() - 1]);
    assert!(matches!(dec.poll().unwrap(), Event::HeaderKnown(_)));
    assert_eq!(dec.poll().unwrap(), Event::NeedMoreData);
    assert!(dec.picture().is_none());

    let mut bad = bytes.clone();
    bad[60] ^= 0x40; // inside the CWLT chunk: CRC mismatch
    let mut dec = StreamDecoder::new(&codec);
    dec.push(&bad);
    assert!(matches!(dec.poll().unwrap(), Event::HeaderKnown(_)));
    assert!(matches!(dec.poll(), Err(lic::Error::Format(_))));

    let mut dec = StreamDecoder::new(&codec);
    dec.push(b"GIF89a not a lic file");
    assert!(dec.poll().is_err());

    let small = codec.with_limits(lic::Limits {
        max_width: 32,
        max_height: 32,
        max_pixels: 1024,
        ..lic::Limits::default()
    });
    let mut dec = StreamDecoder::new(&small);
    dec.push(&bytes);
    assert!(matches!(dec.poll(), Err(lic::Error::Limits { .. })));
}

#[test]
#[cfg(feature = "image-integration")]
fn image_open_reads_lic_files_through_the_hooks() {
    use image::ImageDecoder;
    lic::image_integration::register_image_hooks();
    let bytes = golden("rgb-64x48-q030.lic");
    let want = lic::decode(&bytes).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.lic");
    std::fs::write(&path, &bytes).unwrap();
    let img = image::open(&path).unwrap().into_rgb8();
    assert_eq!((img.width(), img.height()), (64, 48));
    assert_eq!(img.into_raw(), want.data);

    // By signature, without an extension.
    let img = image::load_from_memory(&bytes).unwrap().into_rgb8();
    assert_eq!(img.into_raw(), want.data);

    // Limits are honoured before decoding.
    let mut dec = lic::image_integration::LicDecoder::new(&bytes[..]).unwrap();
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(10);
    assert!(dec.set_limits(limits).is_err());
    // A rectangle through `ImageDecoderRect`, rows padded: that part of the whole decode.
    {
        use image::ImageDecoderRect;
        let mut dec = lic::image_integration::LicDecoder::new(&bytes[..]).unwrap();
        let (x, y, w, h, pitch) = (10usize, 5usize, 30usize, 20usize, 30 * 3 + 7);
        let mut buf = vec![0u8; h * pitch];
        dec.read_rect(x as u32, y as u32, w as u32, h as u32, &mut buf, pitch)
            .unwrap();
        for r in 0..h {
            let at = ((y + r) * 64 + x) * 3;
            assert_eq!(
                &buf[r * pitch..r * pitch + w * 3],
                &want.data[at..at + w * 3]
            );
        }
        assert!(dec.read_rect(60, 0, 10, 10, &mut buf, pitch).is_err());
    }
    // Grey stays grey.
    let grey = golden("grey-40x40-q050.lic");
    let dec = lic::image_integration::LicDecoder::new(&grey[..]).unwrap();
    assert_eq!(dec.color_type(), image::ColorType::L8);
}
