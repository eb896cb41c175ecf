//! The checks behind the fuzz targets, shared with `tests/fuzz_regressions.rs`, which replays
//! every input the fuzzers found (`tests/fuzz-regressions/<target>/`). Each function takes
//! arbitrary bytes and must return without panicking; the asserts in it are the properties.

use std::sync::OnceLock;

use lic::entropy::tables::{categorical, quantize, Categorical, ScaleTables};
use lic::entropy::{SymbolReader, SymbolWriter};
use lic::model::cw::SCALE_COUNT;
use lic::stream::StreamDecoder;
use lic::{Codec, Limits};

/// Container parsing on arbitrary bytes: `info`, `metadata`, the header reader and the
/// chunk parser must return, never panic.
pub fn container(data: &[u8]) {
    let _ = lic::container::read_header(data);
    let _ = lic::metadata(data);
    if let Ok(info) = lic::info(data) {
        // What info reports must agree with the bytes it came from.
        assert_eq!(info.file_bytes, data.len());
        let _ = lic::codec::decode_memory(&info.header);
    }
    if let Ok(c) = lic::container::Container::parse(data) {
        let _ = c.find(lic::container::types::CWLT);
        let _ = c.find_all(lic::container::types::CWLT);
    }
}

fn codec() -> &'static Codec {
    static CODEC: OnceLock<Codec> = OnceLock::new();
    CODEC.get_or_init(|| {
        Codec::embedded().unwrap().with_limits(Limits {
            max_width: 256,
            max_height: 256,
            max_pixels: 1 << 15,
            max_memory: 64 << 20,
        })
    })
}

/// Rewrites every complete chunk's CRC (bytes after the last complete chunk are kept).
fn repair_crcs(bytes: &[u8]) -> Vec<u8> {
    if bytes.len() < 8 {
        return bytes.to_vec();
    }
    let mut out = bytes[..8].to_vec();
    let mut pos = 8;
    while pos + 12 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        if len > bytes.len() - pos - 12 {
            break;
        }
        let kind: [u8; 4] = bytes[pos + 4..pos + 8].try_into().unwrap();
        lic::container::write_chunk(&mut out, kind, &bytes[pos + 8..pos + 8 + len]);
        pos += 12 + len;
    }
    out.extend_from_slice(&bytes[pos..]);
    out
}

/// Full decode under tiny limits, with the shipped weights. The first input byte chooses
/// whether the chunk CRCs are repaired first, so that damage reaches the entropy decoder and
/// the tile logic behind them; the rest is the file, decoded whole and through the streaming
/// decoder in two pieces.
pub fn decode(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode & 1 == 1 {
        repair_crcs(rest)
    } else {
        rest.to_vec()
    };
    let whole = codec().decode(&file);
    if let Ok(img) = &whole {
        assert_eq!(
            img.data.len(),
            (img.width * img.height) as usize * img.color.channels()
        );
        // The lower-right quarter (at least one pixel) decoded alone matches the whole decode.
        let (x, y) = (img.width / 2, img.height / 2);
        let region = lic::Region {
            x,
            y,
            width: img.width - x,
            height: img.height - y,
        };
        let part = codec()
            .decode_region(&file, region)
            .expect("the whole decoded");
        let ch = img.color.channels();
        for row in 0..region.height as usize {
            let s = ((y as usize + row) * img.width as usize + x as usize) * ch;
            let n = region.width as usize * ch;
            assert_eq!(&part.data[row * n..(row + 1) * n], &img.data[s..s + n]);
        }
    }
    let mut dec = StreamDecoder::new(codec());
    let cut = (mode as usize >> 1) % (file.len() + 1);
    dec.push(&file[..cut]);
    let mut last = dec.poll();
    dec.push(&file[cut..]);
    for _ in 0..4 {
        if last.is_err() {
            break;
        }
        last = dec.poll();
    }
    // The stream decoder agrees with the whole-file decoder on files that decode.
    if let (Ok(img), Some(pic)) = (&whole, dec.picture()) {
        assert_eq!(img, pic);
    }
}

fn tables() -> &'static (ScaleTables, Vec<Categorical>) {
    static T: OnceLock<(ScaleTables, Vec<Categorical>)> = OnceLock::new();
    T.get_or_init(|| {
        let side = (1..4)
            .map(|k| {
                let w: Vec<f64> = (0..21).map(|i| 1.0 + ((i * k) % 7) as f64).collect();
                categorical(&quantize(&w))
            })
            .collect();
        (ScaleTables::new(), side)
    })
}

/// One symbol from 4 input bytes: a side symbol (model, symbol < 21) or a latent (table,
/// value up to ±2^20, the escape range).
fn symbol(b: &[u8]) -> (bool, u16, i32) {
    let v = i32::from_le_bytes([b[1], b[2], b[3], 0]);
    if b[0] & 0x80 != 0 {
        (true, (b[0] as u16) % 3, v % 21)
    } else {
        let m = lic::entropy::coder::MAX_VALUE;
        let value = (v - (1 << 23)).clamp(-m, m);
        // Mostly small values, as real latents are.
        let value = if b[0] & 0x40 == 0 { value % 9 } else { value };
        (false, (b[0] as u16) % SCALE_COUNT as u16, value)
    }
}

/// The rANS symbol layer: symbols taken from the input must round trip exactly, and the
/// input read as a stream must decode to values or errors, never a panic.
pub fn entropy(data: &[u8]) {
    let (scales, side) = tables();
    let ops: Vec<_> = data.chunks_exact(4).map(symbol).collect();
    let mut w = SymbolWriter::new();
    for &(is_side, m, v) in &ops {
        if is_side {
            w.side(m, v as u16);
        } else {
            w.latent(m as u8, v);
        }
    }
    let bytes = w
        .finish(scales, side)
        .expect("in-range symbols always encode");
    let mut r = SymbolReader::new(&bytes, scales, side).expect("own stream opens");
    for &(is_side, m, v) in &ops {
        if is_side {
            assert_eq!(r.side(m).unwrap() as i32, v);
        } else {
            assert_eq!(r.latent(m as u8).unwrap(), v);
        }
    }
    assert!(r.finish().is_ok());

    // The raw input as a stream, read with tables drawn from its own bytes.
    if let Ok(mut r) = SymbolReader::new(data, scales, side) {
        for (k, &b) in data.iter().enumerate().take(4096) {
            let res = if k % 5 == 0 {
                r.side((b % 3) as u16).map(|s| s as i32)
            } else {
                r.latent(b % SCALE_COUNT as u8)
            };
            if res.is_err() {
                break;
            }
        }
        let _ = r.finish();
    }
}
