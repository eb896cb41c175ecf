//! Whole-file encoding and decoding: colour handling, alpha, the container, and the cw
//! pipeline in [`cw`].

pub mod cw;

use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

use crate::container::{types, write_chunk, ColorType, Container, Header, ModelKind, SIGNATURE};
use crate::model::weights::{id_hex, CwWeights};
use crate::{Error, Image, Limits, Metadata};

/// Statistics of one encode, for rate checks.
#[derive(Clone, Debug)]
pub struct EncodeStats {
    /// Bytes of the whole file.
    pub file_bytes: usize,
    /// Bytes of the rANS stream.
    pub stream_bytes: usize,
    /// The model's own estimate of the stream: Σ −log2 p over coded symbols, in bits.
    pub estimated_bits: f64,
    /// Number of entropy-coded symbols.
    pub symbols: usize,
}

/// Maps a quality in [0, 1] to the 16-bit value stored in HEAD.
pub fn quality_to_q16(q: f32) -> Result<u16, Error> {
    if !(0.0..=1.0).contains(&q) || q.is_nan() {
        return Err(Error::Quality(q));
    }
    Ok((q * 65535.0).round() as u16)
}

/// Interleaved RGB8 of an image (grey replicated, alpha dropped).
fn rgb_of(img: &Image) -> Vec<u8> {
    let n = img.width as usize * img.height as usize;
    let ch = img.color.channels();
    let mut out = Vec::with_capacity(n * 3);
    for p in 0..n {
        let px = &img.data[p * ch..(p + 1) * ch];
        if img.color.is_gray() {
            out.extend_from_slice(&[px[0], px[0], px[0]]);
        } else {
            out.extend_from_slice(&px[..3]);
        }
    }
    out
}

/// Encodes an image with cw weights at quality `q` ∈ [0, 1], carrying `meta` in ancillary
/// chunks.
pub fn encode(
    img: &Image,
    q: f32,
    weights: &CwWeights,
    meta: &Metadata,
) -> Result<(Vec<u8>, EncodeStats), Error> {
    let q16 = quality_to_q16(q)?;
    img.check()?;
    let (w, h) = (img.width as usize, img.height as usize);
    let x = cw::to_tensor(&rgb_of(img), w, h, weights.model.device())?;
    let lat = cw::analyze(weights, &x, q16)?;
    let writer = cw::write_symbols(weights, &lat, q16);
    let stream = writer.finish(&weights.scales, &weights.map_models)?;
    let estimated_bits =
        writer.estimated_bits(&weights.scales, &weights.map_models, &weights.map_freqs);

    let header = Header {
        width: img.width,
        height: img.height,
        color: img.color,
        model: ModelKind::Cw,
        weights_id: weights.id,
        quality: q16,
    };
    let mut out = SIGNATURE.to_vec();
    write_chunk(&mut out, types::HEAD, &header.to_bytes());
    for (kind, data) in [(types::ICCP, &meta.icc_profile), (types::EXIF, &meta.exif)] {
        if let Some(d) = data {
            if d.len() > crate::container::MAX_CHUNK_LEN as usize {
                return Err(Error::Input("metadata larger than a chunk may be".into()));
            }
            write_chunk(&mut out, kind, d);
        }
    }
    if img.color.has_alpha() {
        let ch = img.color.channels();
        let alpha: Vec<u8> = img.data.chunks_exact(ch).map(|px| px[ch - 1]).collect();
        let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&alpha)?;
        write_chunk(&mut out, types::ALPH, &z.finish()?);
    }
    write_chunk(&mut out, types::CWLT, &stream);
    write_chunk(&mut out, types::DONE, &[]);
    let stats = EncodeStats {
        file_bytes: out.len(),
        stream_bytes: stream.len(),
        estimated_bits,
        symbols: writer.len(),
    };
    Ok((out, stats))
}

/// Decodes a file with cw weights, within `limits`.
pub fn decode(bytes: &[u8], weights: &CwWeights, limits: &Limits) -> Result<Image, Error> {
    let file = Container::parse(bytes)?;
    let hd = &file.header;
    limits.check(hd.width, hd.height)?;
    if hd.weights_id != weights.id {
        return Err(Error::WrongWeights {
            needed: id_hex(&hd.weights_id),
            have: id_hex(&weights.id),
        });
    }
    let (w, h) = (hd.width as usize, hd.height as usize);
    let stream = file
        .find(types::CWLT)?
        .ok_or(Error::Format(crate::FormatError::Structure(
            "missing CWLT chunk",
        )))?;
    let (lh, lw) = (
        h.div_ceil(crate::model::cw::STRIDE),
        w.div_ceil(crate::model::cw::STRIDE),
    );
    let lat = cw::read_symbols(weights, stream, lh, lw, hd.quality)?;
    let rgb = cw::synthesize(weights, &lat, hd.quality, w, h)?;

    let alpha = match (hd.color.has_alpha(), file.find(types::ALPH)?) {
        (true, Some(z)) => {
            let mut a = Vec::new();
            // Read at most one byte more than expected, so a zip bomb cannot grow memory.
            ZlibDecoder::new(z)
                .take((w * h + 1) as u64)
                .read_to_end(&mut a)
                .map_err(|_| {
                    Error::Format(crate::FormatError::Invalid {
                        section: "4.3",
                        what: "ALPH is not valid zlib data",
                    })
                })?;
            if a.len() != w * h {
                return Err(Error::Format(crate::FormatError::Invalid {
                    section: "4.3",
                    what: "ALPH has the wrong size",
                }));
            }
            Some(a)
        }
        (true, None) => {
            return Err(Error::Format(crate::FormatError::Structure(
                "missing ALPH chunk",
            )))
        }
        (false, Some(_)) => {
            return Err(Error::Format(crate::FormatError::Structure(
                "ALPH chunk in an image without alpha",
            )))
        }
        (false, None) => None,
    };
    let mut data = Vec::with_capacity(w * h * hd.color.channels());
    for p in 0..w * h {
        let px = &rgb[p * 3..p * 3 + 3];
        if hd.color.is_gray() {
            // The encoder replicated grey into R, G and B; average what came back.
            data.push(((px[0] as u16 + px[1] as u16 + px[2] as u16 + 1) / 3) as u8);
        } else {
            data.extend_from_slice(px);
        }
        if let Some(a) = &alpha {
            data.push(a[p]);
        }
    }
    Ok(Image {
        width: hd.width,
        height: hd.height,
        color: hd.color,
        data,
    })
}

/// Colour type names for `lic info`.
pub fn color_name(c: ColorType) -> &'static str {
    match c {
        ColorType::Gray => "grey",
        ColorType::GrayAlpha => "grey+alpha",
        ColorType::Rgb => "RGB",
        ColorType::Rgba => "RGBA",
    }
}
