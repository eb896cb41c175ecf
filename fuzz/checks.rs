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

/// rnn weights that are the same in every run (so files made with them, the seeds, keep
/// their weights id): the model's shapes filled from a fixed sequence, scaled like a fresh
/// initialisation, and an uneven bit table. Fixed weights, not the shipped ones, keep the seeds
/// decodable across weights updates; the rnn decoder's handling of hostile files does not depend on their values.
pub fn fixed_rnn_weights() -> Vec<u8> {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};
    let vm = VarMap::new();
    lic::model::rnn::RnnModel::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let mut state = 0x9E37_79B9u32;
    let data = vm.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let fan_in: usize = dims[1..].iter().product::<usize>().max(1);
        let bound = if dims.len() == 1 {
            0.1
        } else {
            (1.0 / fan_in as f64).sqrt()
        };
        let v: Vec<f32> = (0..var.elem_count())
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((state >> 8) as f64 / (1u32 << 24) as f64 * 2.0 - 1.0) as f32 * bound as f32
            })
            .collect();
        var.set(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap())
            .unwrap();
    }
    drop(data);
    let p_one: Vec<u16> = (0..lic::entropy::bits::BIT_CONTEXTS)
        .map(|i| 4096 + (i * 7919 % 57000) as u16)
        .collect();
    lic_train::rnn::weights_bytes(&vm, &p_one).unwrap()
}

/// The codec the decode check runs: the shipped cw weights, the fixed rnn weights, tiny limits.
pub fn codec() -> &'static Codec {
    static CODEC: OnceLock<Codec> = OnceLock::new();
    CODEC.get_or_init(|| {
        Codec::from_weights_bytes(&fixed_rnn_weights())
            .unwrap()
            .with_limits(Limits {
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

/// Full decode under tiny limits, with the shipped cw weights and fixed rnn weights (cw and
/// rnn files). The first input byte chooses
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
    // Until it stops: an rnn file reports a picture per layer (at most 12), then Done.
    for _ in 0..32 {
        match last {
            Ok(lic::stream::Event::Done) | Err(_) => break,
            _ => last = dec.poll(),
        }
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
    // In-range symbols always encode, unless the stream's last symbols would code for free
    // past the information bound (§6.5), which the writer refuses as a decoder would.
    match w.finish(scales, side) {
        Ok(bytes) => {
            let mut r = SymbolReader::new(&bytes, scales, side).expect("own stream opens");
            for &(is_side, m, v) in &ops {
                if is_side {
                    assert_eq!(r.side(m).unwrap() as i32, v);
                } else {
                    assert_eq!(r.latent(m as u8).unwrap(), v);
                }
            }
            assert!(r.finish().is_ok());
        }
        Err(lic::entropy::EntropyError::OverBudget) => {}
        Err(e) => panic!("in-range symbols did not encode: {e}"),
    }

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

/// Reads fields off the front of the input, with zeros once it runs out.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// The weights ids of the codec's cw and rnn weights, as files made with them carry them.
fn weights_ids() -> &'static ([u8; 8], [u8; 8]) {
    static IDS: OnceLock<([u8; 8], [u8; 8])> = OnceLock::new();
    IDS.get_or_init(|| {
        let tiny = lic::Image {
            width: 16,
            height: 16,
            color: lic::ColorType::Gray,
            data: vec![100; 256],
        };
        let id = |m| {
            let c = Codec::from_weights_bytes(&fixed_rnn_weights())
                .unwrap()
                .with_model(m);
            lic::container::read_header(&c.encode(&tiny, 0.0).unwrap())
                .unwrap()
                .weights_id
        };
        (id(lic::ModelKind::Cw), id(lic::ModelKind::Rnn))
    })
}

/// The codec the crafted check runs: the decode check's weights, desktop-like limits cut to
/// 1 Mpx so that an accepted picture decodes in well under a second.
fn crafted_codec() -> &'static Codec {
    static CODEC: OnceLock<Codec> = OnceLock::new();
    CODEC.get_or_init(|| {
        Codec::from_weights_bytes(&fixed_rnn_weights())
            .unwrap()
            .with_limits(Limits {
                max_pixels: 1 << 20,
                max_memory: 512 << 20,
                ..Limits::default()
            })
    })
}

/// Builds a file with valid CRCs from the input's fields: a header with any size, colour
/// type, model (with the matching weights id), rate code and tile field, then a sequence of
/// chunks (every critical and ancillary type, a repeated HEAD, an unknown one) with payloads
/// from the input, short ones and the word `01 00 00 00` among them. Returns it with the
/// header it declares.
pub fn craft(data: &[u8]) -> (Vec<u8>, lic::Header) {
    use lic::container::{types, write_chunk, ColorType, Header, ModelKind, SIGNATURE};
    let mut f = Fields(data);
    let (cw_id, rnn_id) = *weights_ids();
    let model = if f.u8() & 1 == 0 {
        ModelKind::Cw
    } else {
        ModelKind::Rnn
    };
    let width = 1 + (f.u16() % 2048) as u32;
    let height = 1 + (f.u16() % 2048) as u32;
    let color = [
        ColorType::Gray,
        ColorType::GrayAlpha,
        ColorType::Rgb,
        ColorType::Rgba,
    ][(f.u8() % 4) as usize];
    let quality = f.u16();
    let tile = match f.u8() % 4 {
        0 => 0,
        1 => 48,
        2 => (f.u8() % 64) as u16,
        _ => f.u16(),
    };
    let header = Header {
        width,
        height,
        color,
        model,
        weights_id: if model == ModelKind::Cw {
            cw_id
        } else {
            rnn_id
        },
        quality,
        tile,
    };
    let mut out = SIGNATURE.to_vec();
    write_chunk(&mut out, types::HEAD, &header.to_bytes());
    let kinds = [
        types::CWLT,
        types::RNLY,
        types::ALPH,
        types::ICCP,
        types::EXIF,
        types::HEAD,
        *b"zzZZ",
        types::CWLT,
    ];
    let mut done = false;
    while !f.0.is_empty() && !done {
        let sel = f.u8();
        let kind = kinds[(sel & 7) as usize];
        let repeat = 1 + ((sel >> 3) & 3) as usize;
        let payload = match sel >> 5 {
            0 => vec![1, 0, 0, 0],
            1 => f.take(4).to_vec(),
            _ => {
                let n = f.u16() as usize % 4096;
                f.take(n).to_vec()
            }
        };
        for _ in 0..repeat {
            write_chunk(&mut out, kind, &payload);
        }
        done = sel == 0xFF;
    }
    write_chunk(&mut out, types::DONE, &[]);
    (out, header)
}

/// Crafted files ([`craft`]) decoded whole and streamed: no panic, and a picture that
/// decodes has the size its header declares.
pub fn crafted(data: &[u8]) {
    let (file, header) = craft(data);
    let codec = crafted_codec();
    if let Ok(img) = codec.decode(&file) {
        assert_eq!((img.width, img.height), (header.width, header.height));
    }
    let mut dec = StreamDecoder::new(codec);
    dec.push(&file);
    for _ in 0..32 {
        match dec.poll() {
            Ok(lic::stream::Event::Done) | Err(_) => break,
            _ => {}
        }
    }
}
