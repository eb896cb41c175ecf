//! Whole-file encoding and decoding: colour handling, alpha, the container, and the cw
//! pipeline in [`cw`].

pub mod cw;
pub mod rnn;

use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

use rayon::prelude::*;

use crate::container::{
    types, write_chunk, ColorType, Container, FormatError, Header, ModelKind, MAX_TILE, MIN_TILE,
    SIGNATURE,
};
use crate::model::cw::{M, STRIDE};
use crate::model::weights::{id_hex, CwWeights, RnnWeights};
use crate::{Error, Image, InputError, Limits, Metadata, Progress};
use cw::Rect;

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
    /// The rate code in HEAD (format-spec §6.2), which the quality chose.
    pub rate_code: u16,
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

/// Default tile side in pixels: a Kodak image (768×512 either way up) is one tile, and the
/// synthesis of a tile needs about 0.5 GB.
pub const DEFAULT_TILE: u32 = 768;

/// The HEAD tile field for a tile side of `tile_px` pixels (0: no tiling) on a
/// `width`×`height` image: 0 when one tile covers the image, so that field is canonical.
pub fn tile_field(tile_px: u32, width: u32, height: u32) -> Result<u16, Error> {
    if tile_px == 0 || (tile_px >= width && tile_px >= height) {
        return Ok(0);
    }
    let units = tile_px / STRIDE as u32;
    if tile_px % STRIDE as u32 != 0 || !(MIN_TILE as u32..=MAX_TILE as u32).contains(&units) {
        return Err(InputError::TileSide(tile_px).into());
    }
    Ok(units as u16)
}

/// Tells `progress` how far the work is; [`Error::Cancelled`] when it asks to stop.
fn report(progress: Option<&Progress>, done: usize, total: usize) -> Result<(), Error> {
    match progress {
        Some(p) if !p(done, total) => Err(Error::Cancelled { done, total }),
        _ => Ok(()),
    }
}

/// A cw encode in two halves: the analysis transform runs once in [`CwEncoder::new`], and
/// [`CwEncoder::encode`] codes it at any rate code, so a search for a file size repeats only
/// the cheap half.
pub struct CwEncoder<'a> {
    img: &'a Image,
    weights: &'a CwWeights,
    tile: u16,
    analysis: cw::Analysis,
}

impl<'a> CwEncoder<'a> {
    /// Analyses `img` for coding in tiles of `tile_px` pixels (0: one tile), reporting each
    /// analysis window to `progress`.
    pub fn new(
        img: &'a Image,
        tile_px: u32,
        weights: &'a CwWeights,
        progress: Option<&Progress>,
    ) -> Result<Self, Error> {
        img.check()?;
        let tile = tile_field(tile_px, img.width, img.height)?;
        let (w, h) = (img.width as usize, img.height as usize);
        let (lh, lw) = (h.div_ceil(STRIDE), w.div_ceil(STRIDE));
        let rgb = rgb_of(img);
        // The analysis runs in windows of at most DEFAULT_TILE pixels plus the halo, whatever
        // the coded tiling, so encoder memory stays bounded too; the halo makes the windows
        // invisible.
        let mut analysis = cw::Analysis::zeros(lh, lw);
        let windows = cw::tiles(lh, lw, DEFAULT_TILE as usize / STRIDE);
        for (done, r) in windows.iter().enumerate() {
            let g = r.grow(cw::HALO, lh, lw);
            let a = cw::analyze(weights, &rgb, w, h, &g)?;
            analysis.paste(r.i0, r.j0, &a.crop(&r.within(&g)));
            report(progress, done + 1, windows.len())?;
        }
        Ok(Self {
            img,
            weights,
            tile,
            analysis,
        })
    }

    /// The file at rate code `q16` (the HEAD field, format-spec §6.2), carrying `meta`.
    pub fn encode(&self, q16: u16, meta: &Metadata) -> Result<(Vec<u8>, EncodeStats), Error> {
        let (img, weights) = (self.img, self.weights);
        // Each coded tile is its own rANS stream, so tiles decode independently (and in
        // parallel); each is quantized on its own, so only its symbols are held.
        let (lh, lw) = (self.analysis.h, self.analysis.w);
        let coded = cw::tiles(lh, lw, self.tile as usize)
            .par_iter()
            .map(|r| {
                let lat = self.analysis.crop(r).quantize(weights, q16)?;
                let writer = cw::write_symbols(weights, &lat, q16);
                let stream = writer.finish(&weights.scales, &weights.map_models)?;
                let bits =
                    writer.estimated_bits(&weights.scales, &weights.map_models, &weights.map_freqs);
                Ok((stream, bits, writer.len()))
            })
            .collect::<Result<Vec<_>, Error>>()?;

        let header = Header {
            width: img.width,
            height: img.height,
            color: img.color,
            model: ModelKind::Cw,
            weights_id: weights.id,
            quality: q16,
            tile: self.tile,
        };
        let streams: Vec<&[u8]> = coded.iter().map(|(s, _, _)| s.as_slice()).collect();
        let out = write_file(&header, img, meta, types::CWLT, &streams)?;
        let stats = EncodeStats {
            file_bytes: out.len(),
            stream_bytes: streams.iter().map(|s| s.len()).sum(),
            estimated_bits: coded.iter().map(|c| c.1).sum(),
            symbols: coded.iter().map(|c| c.2).sum(),
            rate_code: q16,
        };
        Ok((out, stats))
    }
}

/// Encodes an image with cw weights at rate code `q16` in tiles of `tile_px` pixels
/// (0: one tile), carrying `meta` in ancillary chunks; `progress` hears of each analysis window.
pub fn encode(
    img: &Image,
    q16: u16,
    tile_px: u32,
    weights: &CwWeights,
    meta: &Metadata,
    progress: Option<&Progress>,
) -> Result<(Vec<u8>, EncodeStats), Error> {
    CwEncoder::new(img, tile_px, weights, progress)?.encode(q16, meta)
}

/// The largest file of at most `max_bytes` among the encodes `encode_at(i)`, `i` in
/// `0..count`, whose sizes grow with `i` (rate codes, or rnn layer counts). Searches by
/// interpolating log size between the bracketing encodes (bisecting every other step, so a
/// bend in the curve cannot stall it) and stops within 1 % under the target. Errors with
/// [`Error::TargetTooSmall`] when even `i = 0` is larger.
pub fn encode_to_size(
    max_bytes: usize,
    count: usize,
    encode_at: impl Fn(usize) -> Result<(Vec<u8>, EncodeStats), Error>,
) -> Result<(Vec<u8>, EncodeStats), Error> {
    let (mut lo, mut hi) = (0, count - 1);
    let mut best = encode_at(lo)?;
    if best.0.len() > max_bytes {
        return Err(Error::TargetTooSmall {
            target: max_bytes,
            smallest: best.0.len(),
        });
    }
    let top = encode_at(hi)?;
    if top.0.len() <= max_bytes {
        return Ok(top);
    }
    let mut hi_len = top.0.len();
    let close_enough = max_bytes - max_bytes / 100;
    let mut step = 0;
    while hi - lo > 1 && best.0.len() < close_enough {
        let lo_len = best.0.len();
        let mid = if step % 2 == 0 && lo_len > 0 {
            let (a, b, t) = (
                (lo_len as f64).ln(),
                (hi_len as f64).ln(),
                (max_bytes as f64).ln(),
            );
            let f = ((t - a) / (b - a)).clamp(0.0, 1.0);
            (lo as f64 + f * (hi - lo) as f64).round() as usize
        } else {
            lo + (hi - lo) / 2
        }
        .clamp(lo + 1, hi - 1);
        step += 1;
        let got = encode_at(mid)?;
        if got.0.len() <= max_bytes {
            lo = mid;
            best = got;
        } else {
            hi = mid;
            hi_len = got.0.len();
        }
    }
    Ok(best)
}

/// Writes a whole file: signature, HEAD, metadata, alpha, the coded chunks, DONE.
fn write_file(
    header: &Header,
    img: &Image,
    meta: &Metadata,
    kind: [u8; 4],
    payloads: &[&[u8]],
) -> Result<Vec<u8>, Error> {
    let mut out = SIGNATURE.to_vec();
    write_chunk(&mut out, types::HEAD, &header.to_bytes());
    for (kind, data) in [(types::ICCP, &meta.icc_profile), (types::EXIF, &meta.exif)] {
        if let Some(d) = data {
            if d.len() > crate::container::MAX_CHUNK_LEN as usize {
                return Err(InputError::MetadataTooLarge(d.len()).into());
            }
            write_chunk(&mut out, kind, d);
        }
    }
    // Alpha before the coded chunks, so that every prefix of an rnn file that holds a layer
    // also holds the alpha plane.
    if img.color.has_alpha() {
        let ch = img.color.channels();
        let alpha: Vec<u8> = img.data.chunks_exact(ch).map(|px| px[ch - 1]).collect();
        let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&alpha)?;
        write_chunk(&mut out, types::ALPH, &z.finish()?);
    }
    for p in payloads {
        write_chunk(&mut out, kind, p);
    }
    write_chunk(&mut out, types::DONE, &[]);
    Ok(out)
}

/// Encodes an image with rnn weights at rate code `q16`: [`rnn::layers_for_quality`]
/// layers, one RNLY chunk each, or fewer when `stop_early` and a layer would not improve the
/// picture ([`rnn::encode_layers`]).
pub fn encode_rnn(
    img: &Image,
    q16: u16,
    weights: &RnnWeights,
    meta: &Metadata,
    stop_early: bool,
) -> Result<(Vec<u8>, EncodeStats), Error> {
    img.check()?;
    let layers = rnn::layers_for_quality(q16);
    let coded = rnn::encode_layers(
        weights,
        &rgb_of(img),
        img.width as usize,
        img.height as usize,
        layers,
        stop_early,
    )?;
    // The header's rate code says how many layers the file holds: fewer than asked when the
    // encoder stopped at a layer that added nothing.
    let written = coded.layers.len();
    let header = Header {
        width: img.width,
        height: img.height,
        color: img.color,
        model: ModelKind::Rnn,
        weights_id: weights.id,
        quality: if written < layers {
            crate::rate::rnn_rate_code(written)
        } else {
            q16
        },
        tile: 0,
    };
    let streams: Vec<&[u8]> = coded.layers.iter().map(Vec::as_slice).collect();
    let out = write_file(&header, img, meta, types::RNLY, &streams)?;
    let stats = EncodeStats {
        file_bytes: out.len(),
        stream_bytes: streams.iter().map(|s| s.len()).sum(),
        estimated_bits: coded.estimated_bits.iter().sum(),
        symbols: coded.raw_bits * written,
        rate_code: header.quality,
    };
    Ok((out, stats))
}

/// What [`decode_rnn`] found besides the picture.
#[derive(Clone, Debug)]
pub struct RnnDecoded {
    /// The picture after the decoded layers.
    pub image: Image,
    /// Layers decoded.
    pub layers: usize,
    /// Layers the header promises.
    pub layers_in_file: usize,
    /// The file was cut before its end (the layers before the cut were decoded).
    pub truncated: bool,
}

/// Decodes an rnn file, at most `max_layers` layers of it. A file cut after or inside a
/// layer decodes the complete layers before the cut (`truncated` says so); a cut before the
/// first layer is an error.
pub fn decode_rnn(
    bytes: &[u8],
    weights: &RnnWeights,
    limits: &Limits,
    max_layers: Option<usize>,
) -> Result<RnnDecoded, Error> {
    let (file, complete) = Container::parse_prefix(bytes)?;
    let hd = &file.header;
    limits.check(hd)?;
    if hd.model != ModelKind::Rnn {
        return Err(InputError::WrongModel {
            found: hd.model,
            wanted: "the rnn decoder reads rnn files",
        }
        .into());
    }
    // Progressive::new refuses a file of other weights.
    let layers_in_file = rnn::layers_for_quality(hd.quality);
    let streams = file.find_all(types::RNLY);
    if streams.len() > layers_in_file || (complete && streams.len() != layers_in_file) {
        return Err(Error::Format(FormatError::Structure(
            "the number of RNLY chunks differs from the layers the quality gives",
        )));
    }
    let first_layer = file.chunks.iter().position(|c| c.kind == types::RNLY);
    let alpha_at = file.chunks.iter().position(|c| c.kind == types::ALPH);
    if let (Some(l), Some(a)) = (first_layer, alpha_at) {
        if a > l {
            return Err(Error::Format(FormatError::Structure(
                "ALPH must come before the first RNLY chunk",
            )));
        }
    }
    if streams.is_empty() {
        return Err(Error::Format(FormatError::Truncated("the first layer")));
    }
    // A cut file may lack ALPH only if it also lacks every layer, which was refused above.
    let alpha = read_alpha(&file)?;
    let mut dec = rnn::Progressive::new(weights, hd)?;
    let take = max_layers.unwrap_or(usize::MAX).max(1).min(streams.len());
    dec.push_layers(&streams[..take])?;
    Ok(RnnDecoded {
        image: dec.picture(alpha.as_deref())?,
        layers: take,
        layers_in_file,
        truncated: !complete,
    })
}

/// What a decoding process holds whatever the image: the weights file, the synthesis
/// weights in Winograd form (16/9 of the convolutions' f32 weights) and one stage's f32
/// weights while that form is made, the entropy tables, the code and the runtime (measured:
/// 40–47 MiB for a 33×17 file, depending on what the first entropy decoding holds while the
/// synthesis is prepared beside it).
pub const RESIDENT: u64 = 52 << 20;

/// What an encoding process holds whatever the image: the weights file, the analysis
/// weights in Winograd form, the entropy tables, the code and the runtime (measured: 46 MiB
/// for a 33×17 image).
pub const ENCODER_RESIDENT: u64 = 48 << 20;

/// The allocator's share over the live buffers, in eighths (see [`decode_memory`]):
/// `tests/memory.rs` measures every decode it runs at or under the estimate.
const ALLOCATOR_ALLOWANCE: u64 = 9;

/// An estimate of the peak memory of a process that decodes a file with this header, an
/// upper bound of the measured peak (`tests/memory.rs`): [`RESIDENT`] and, with the
/// allocator's share, the latents, the context offsets of the tiles being entropy-decoded,
/// the synthesis's working rows, the output image and the alpha plane, of which a file of
/// one tile holds the offsets and the picture at different times.
pub fn decode_memory(hd: &Header) -> u64 {
    let (w, h) = (hd.width as u64, hd.height as u64);
    let (lh, lw) = (h.div_ceil(STRIDE as u64), w.div_ceil(STRIDE as u64));
    let image = w * h * hd.color.channels() as u64;
    let alpha = if hd.color.has_alpha() { w * h } else { 0 };
    if hd.model == ModelKind::Rnn {
        // Not tiled: the decoder's recurrent state and one step's temporaries at every
        // resolution, about 110 floats per (padded) pixel, plus the pixels.
        return RESIDENT + image + alpha + lh * lw * 256 * 110 * 4;
    }
    // Tile side in latents, without and with its halo.
    let tile = |n: u64| {
        if hd.tile == 0 {
            n
        } else {
            n.min(hd.tile as u64)
        }
    };
    let side = |n: u64| (tile(n) + 2 * cw::HALO as u64).min(n);
    // Per latent: M values (i16, `cw::Values`), one level, and the M tables the values were
    // decoded with (u8), which only weights with a reconstruction shrink need: counted
    // unless the file's weights are the embedded ones and have none.
    let tables = crate::model::weights::id_hex(&hd.weights_id)
        != crate::model::weights::EMBEDDED_CW_PLAIN_ID;
    let per_latent = M as u64 * (2 + tables as u64) + 1;
    let area = side(lh) * side(lw);
    let latents = if hd.tile == 0 {
        // The one tile, synthesized in place.
        lh * lw * per_latent
    } else {
        // Two tile rows and the halo rows above them, and the tile being synthesized with
        // its halo, copied out.
        (2 * hd.tile as u64 + cw::HALO as u64).min(lh) * lw * per_latent + area * per_latent
    };
    // Tiles being entropy-decoded at once, each with its context offsets (an i32 per
    // channel at each non-anchor position, half the latents).
    let tiles_in_row = if hd.tile == 0 {
        1
    } else {
        lw.div_ceil(hd.tile as u64)
    };
    let threads = rayon::current_num_threads() as u64;
    let offsets = threads.min(tiles_in_row) * (tile(lh) * tile(lw)).div_ceil(2) * M as u64 * 4;
    // The synthesis's working rows (`model::synthesis`) on as many workers as the pool has,
    // and those of a post-filter (counted whether or not the weights have one).
    let working =
        crate::model::synthesis::working_bytes(
            side(lh) as usize,
            side(lw) as usize,
            threads as usize,
        ) + crate::model::postfilter::working_bytes(side(lw) as usize * STRIDE, threads as usize);
    let live = if hd.tile == 0 {
        // One tile is entropy-decoded before any pixel is written (the image's pages are
        // untouched until then), and its context offsets are gone before the synthesis.
        (latents + offsets).max(latents + working + image) + alpha
    } else {
        // A tile row is entropy-decoded while the rows above it are in the image.
        latents + offsets + working + image + alpha
    };
    // The allocator holds more than the live buffers: pages freed by another thread than
    // the one that allocated them (tiles are entropy-decoded in parallel, synthesis chunks
    // computed on the pool) are not reused at once, nor handed back for some milliseconds.
    RESIDENT + live * ALLOCATOR_ALLOWANCE / 8
}

/// What the rnn encoder holds whatever the image: the rnn networks as candle tensors, the
/// code and the runtime.
const RNN_ENCODER_RESIDENT: u64 = 60 << 20;

/// An estimate of the peak memory of a process that encodes an image into a file with this
/// header, in the same terms as [`decode_memory`]: [`ENCODER_RESIDENT`], the input image twice (as
/// read and as the RGB the analysis takes), the analysis grid, the working rows of the
/// analysis of one window (`model::analysis::working_bytes`), and the quantized symbols of the tiles coded at once, with the same allowance for the
/// allocator.
pub fn encode_memory(hd: &Header) -> u64 {
    let (w, h) = (hd.width as u64, hd.height as u64);
    let (lh, lw) = (h.div_ceil(STRIDE as u64), w.div_ceil(STRIDE as u64));
    let image = w * h * (hd.color.channels() as u64 + 3);
    if hd.model == ModelKind::Rnn {
        return decode_memory(hd) - RESIDENT + RNN_ENCODER_RESIDENT + image;
    }
    // Analysis windows are DEFAULT_TILE pixels plus the halo on each side, whatever the tiling.
    let window = |n: u64| (n.min(DEFAULT_TILE as u64 / STRIDE as u64) + 2 * cw::HALO as u64).min(n);
    let working = crate::model::analysis::working_bytes(
        window(lw) as usize * STRIDE,
        rayon::current_num_threads(),
    );
    let analysis = lh * lw * (M as u64 + 1) * 4;
    // Tiles are quantized in parallel; each holds its values (i16) twice (as rounded and as
    // coded), the unrounded values (f32) and the writer's symbols (8 bytes each).
    let tile = |n: u64| {
        if hd.tile == 0 {
            n
        } else {
            n.min(hd.tile as u64)
        }
    };
    let symbols =
        (rayon::current_num_threads() as u64).min(lh * lw) * tile(lh) * tile(lw) * M as u64 * 16;
    ENCODER_RESIDENT + (image + analysis + working + symbols) * 3 / 2
}

/// The latent grid of a parsed file: every tile's CWLT stream decoded and pasted in place.
pub fn read_latents(file: &Container, weights: &CwWeights) -> Result<cw::Latents, Error> {
    let hd = &file.header;
    let all = Rect::grid(
        (hd.height as usize).div_ceil(STRIDE),
        (hd.width as usize).div_ceil(STRIDE),
    );
    let mut tiles = TileReader::new(file)?;
    tiles.decode_meeting(weights, &all)?;
    Ok(tiles.latents_in(&all).into_owned())
}

/// The CWLT streams of a file by tile, decoded when first needed and kept, in part, while
/// later tiles still read them.
struct TileReader<'a> {
    rects: Vec<Rect>,
    streams: Vec<&'a [u8]>,
    /// Each decoded tile's latents and the rectangle of the grid they cover: the whole tile,
    /// or only its bottom rows once the rows above are no longer needed.
    decoded: Vec<Option<(Rect, cw::Latents)>>,
    quality: u16,
}

impl<'a> TileReader<'a> {
    fn new(file: &'a Container) -> Result<Self, Error> {
        let hd = &file.header;
        let (lh, lw) = (
            (hd.height as usize).div_ceil(STRIDE),
            (hd.width as usize).div_ceil(STRIDE),
        );
        let rects = cw::tiles(lh, lw, hd.tile as usize);
        let streams = file.find_all(types::CWLT);
        if streams.len() != rects.len() {
            return Err(Error::Format(FormatError::Structure(
                "the number of CWLT chunks differs from the number of tiles",
            )));
        }
        Ok(Self {
            decoded: (0..rects.len()).map(|_| None).collect(),
            rects,
            streams,
            quality: hd.quality,
        })
    }

    /// Decodes (in parallel) every tile meeting `need` that is not decoded yet.
    fn decode_meeting(&mut self, weights: &CwWeights, need: &Rect) -> Result<(), Error> {
        let todo: Vec<usize> = (0..self.rects.len())
            .filter(|&t| self.decoded[t].is_none() && self.rects[t].meets(need))
            .collect();
        let parts = todo
            .par_iter()
            .map(|&t| {
                let r = &self.rects[t];
                cw::read_symbols(weights, self.streams[t], r.h(), r.w(), self.quality)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        for (t, part) in todo.into_iter().zip(parts) {
            self.decoded[t] = Some((self.rects[t], part));
        }
        Ok(())
    }

    /// The latents of `need`, which the decoded tiles must cover: the tile itself when it is
    /// exactly one decoded tile, else a copy pasted from the tiles it meets.
    fn latents_in(&self, need: &Rect) -> std::borrow::Cow<'_, cw::Latents> {
        if let Some((_, lat)) = self.decoded.iter().flatten().find(|(r, _)| r == need) {
            return std::borrow::Cow::Borrowed(lat);
        }
        let mut lat = cw::Latents::zeros(need.h(), need.w());
        for (r, part) in self.decoded.iter().flatten().filter(|(r, _)| r.meets(need)) {
            let x = Rect {
                i0: r.i0.max(need.i0),
                i1: r.i1.min(need.i1),
                j0: r.j0.max(need.j0),
                j1: r.j1.min(need.j1),
            };
            lat.paste(x.i0 - need.i0, x.j0 - need.j0, &part.crop(&x.within(r)));
        }
        std::borrow::Cow::Owned(lat)
    }

    /// Forgets the decoded latents above latent row `row`: tiles that end there are dropped,
    /// tiles that cross it keep only their rows from `row` on.
    fn forget_above(&mut self, row: usize) {
        for d in self.decoded.iter_mut() {
            match d {
                Some((r, _)) if r.i1 <= row => *d = None,
                Some((r, lat)) if r.i0 < row => {
                    let keep = Rect { i0: row, ..*r };
                    *lat = lat.crop(&keep.within(r));
                    *r = keep;
                }
                _ => {}
            }
        }
    }
}

/// A rectangle of pixels: the part of an image [`decode_region`] decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Region {
    /// The part of this rectangle inside a `width`×`height` image, if any.
    pub fn clip(self, width: u32, height: u32) -> Option<Region> {
        let x1 = (self.x as u64 + self.width as u64).min(width as u64);
        let y1 = (self.y as u64 + self.height as u64).min(height as u64);
        (x1 > self.x as u64 && y1 > self.y as u64).then(|| Region {
            x: self.x,
            y: self.y,
            width: (x1 - self.x as u64) as u32,
            height: (y1 - self.y as u64) as u32,
        })
    }
}

/// Decodes a file within `limits`: cw files with `weights`, rnn files with the embedded rnn
/// weights (all of their complete layers).
pub fn decode(
    bytes: &[u8],
    weights: &CwWeights,
    limits: &Limits,
    progress: Option<&Progress>,
) -> Result<Image, Error> {
    let hd = crate::container::read_header(bytes)?;
    if hd.model == ModelKind::Rnn {
        return Ok(decode_rnn(bytes, RnnWeights::embedded_shared()?, limits, None)?.image);
    }
    let all = Region {
        x: 0,
        y: 0,
        width: hd.width,
        height: hd.height,
    };
    decode_region(bytes, weights, limits, all, progress)
}

/// Decodes only `region` of a file: the tiles under it are synthesized, and only they and
/// their neighbours (for the halo) are entropy-decoded. The pixels equal those of the same
/// region in a whole decode. `progress` hears of each synthesized tile.
pub fn decode_region(
    bytes: &[u8],
    weights: &CwWeights,
    limits: &Limits,
    region: Region,
    progress: Option<&Progress>,
) -> Result<Image, Error> {
    let file = Container::parse(bytes)?;
    let hd = &file.header;
    limits.check(hd)?;
    if hd.model != ModelKind::Cw {
        return Err(InputError::WrongModel {
            found: hd.model,
            wanted: "this region decoder is for cw files; Codec::decode_region crops rnn files",
        }
        .into());
    }
    check_weights(hd, &weights.id)?;
    check_region(hd.width, hd.height, region)?;
    let Region {
        x: rx,
        y: ry,
        width: rw,
        height: rh,
    } = region;
    let w = hd.width as usize;
    let (rx, ry, rw, rh) = (rx as usize, ry as usize, rw as usize, rh as usize);
    let alpha = read_alpha(&file)?;
    let (lh, lw) = ((hd.height as usize).div_ceil(STRIDE), w.div_ceil(STRIDE));
    let under = Rect {
        i0: ry / STRIDE,
        i1: (ry + rh).div_ceil(STRIDE),
        j0: rx / STRIDE,
        j1: (rx + rw).div_ceil(STRIDE),
    };
    let draw: Vec<Rect> = cw::tiles(lh, lw, hd.tile as usize)
        .into_iter()
        .filter(|r| r.meets(&under))
        .collect();
    // Tile row by tile row: decode the tiles the row's synthesis reads (its own, and HALO
    // latent rows of the neighbours), synthesize, and forget what no later row reads, so at
    // most two tile rows of latents and the halo rows above them are held at once.
    let mut tiles = TileReader::new(&file)?;
    let ch = hd.color.channels();
    let mut data = vec![0u8; rw * rh * ch];
    let total = draw.len();
    let mut done = 0;
    for row in draw.chunk_by(|a, b| a.i0 == b.i0) {
        let need = row
            .iter()
            .map(|r| r.grow(cw::HALO, lh, lw))
            .reduce(|a, b| a.union(&b))
            .unwrap_or(row[0]);
        tiles.forget_above(need.i0);
        if row[0].i0 == draw[0].i0 {
            // The synthesis's weights are prepared while the first tiles are entropy-decoded.
            let (synthesis, decoded) = rayon::join(
                || weights.synthesizer().map(drop),
                || tiles.decode_meeting(weights, &need),
            );
            synthesis?;
            decoded?;
        } else {
            tiles.decode_meeting(weights, &need)?;
        }
        for r in row {
            let g = r.grow(cw::HALO, lh, lw);
            let lat = tiles.latents_in(&g);
            // Output rows and columns of this tile inside the region, in the grown tile's
            // pixel coordinates.
            let (ys, xs) = (
                (r.i0 * STRIDE).max(ry)..(r.i1 * STRIDE).min(ry + rh),
                (r.j0 * STRIDE).max(rx)..(r.j1 * STRIDE).min(rx + rw),
            );
            let (gy, gx) = (g.i0 * STRIDE, g.j0 * STRIDE);
            cw::synthesize(weights, &lat, hd.quality, |i, rgb| {
                let y = gy + i;
                if !ys.contains(&y) {
                    return;
                }
                for x in xs.clone() {
                    let s = (x - gx) * 3;
                    let o = ((y - ry) * rw + x - rx) * ch;
                    put_pixel(
                        &mut data[o..o + ch],
                        hd.color,
                        &rgb[s..s + 3],
                        alpha.as_ref().map(|a| a[y * w + x]),
                    );
                }
            })?;
            done += 1;
            report(progress, done, total)?;
        }
        tiles.forget_above(row[0].i1.saturating_sub(cw::HALO));
    }
    Ok(Image {
        width: rw as u32,
        height: rh as u32,
        color: hd.color,
        data,
    })
}

/// Checks that `region` is non-empty and inside a `width`×`height` image.
fn check_region(width: u32, height: u32, region: Region) -> Result<(), Error> {
    let Region {
        x,
        y,
        width: rw,
        height: rh,
    } = region;
    if rw == 0
        || rh == 0
        || x as u64 + rw as u64 > width as u64
        || y as u64 + rh as u64 > height as u64
    {
        return Err(InputError::Region {
            x,
            y,
            width: rw,
            height: rh,
            image_width: width,
            image_height: height,
        }
        .into());
    }
    Ok(())
}

/// The `region` of a decoded picture (rnn files, which are not tiled, decode whole first).
pub fn crop(img: &Image, region: Region) -> Result<Image, Error> {
    check_region(img.width, img.height, region)?;
    let ch = img.color.channels();
    let (w, n) = (img.width as usize, region.width as usize * ch);
    let mut data = Vec::with_capacity(n * region.height as usize);
    for y in region.y as usize..(region.y + region.height) as usize {
        let s = (y * w + region.x as usize) * ch;
        data.extend_from_slice(&img.data[s..s + n]);
    }
    Ok(Image {
        width: region.width,
        height: region.height,
        color: img.color,
        data,
    })
}

/// One output pixel of colour type `color` from synthesized RGB: grey averaged back from the
/// R, G and B the encoder replicated it into (spec §5 step 6), then alpha if any.
pub(crate) fn put_pixel(out: &mut [u8], color: ColorType, rgb: &[u8], alpha: Option<u8>) {
    if color.is_gray() {
        out[0] = ((rgb[0] as u16 + rgb[1] as u16 + rgb[2] as u16 + 1) / 3) as u8;
    } else {
        out[..3].copy_from_slice(rgb);
    }
    if let Some(a) = alpha {
        out[out.len() - 1] = a;
    }
}

/// Refuses a file made with other weights than `id`, saying which it needs.
pub(crate) fn check_weights(hd: &Header, id: &[u8; 8]) -> Result<(), Error> {
    if hd.weights_id != *id {
        return Err(Error::WrongWeights {
            needed: id_hex(&hd.weights_id),
            have: id_hex(id),
        });
    }
    Ok(())
}

/// Inflates an ALPH payload that must hold exactly `n` samples.
pub(crate) fn inflate_alpha(z: &[u8], n: usize) -> Result<Vec<u8>, Error> {
    let mut a = Vec::new();
    // Read at most one byte more than expected, so a zip bomb cannot grow memory.
    ZlibDecoder::new(z)
        .take((n + 1) as u64)
        .read_to_end(&mut a)
        .map_err(|_| {
            Error::Format(FormatError::Invalid {
                section: "4.3",
                what: "ALPH is not valid zlib data",
            })
        })?;
    if a.len() != n {
        return Err(Error::Format(FormatError::Invalid {
            section: "4.3",
            what: "ALPH has the wrong size",
        }));
    }
    Ok(a)
}

/// The alpha plane from ALPH, when the colour type has one.
fn read_alpha(file: &Container) -> Result<Option<Vec<u8>>, Error> {
    let hd = &file.header;
    let n = hd.width as usize * hd.height as usize;
    match (hd.color.has_alpha(), file.find(types::ALPH)?) {
        (true, Some(z)) => Ok(Some(inflate_alpha(z, n)?)),
        (true, None) => Err(Error::Format(FormatError::Structure("missing ALPH chunk"))),
        (false, Some(_)) => Err(Error::Format(FormatError::Structure(
            "ALPH chunk in an image without alpha",
        ))),
        (false, None) => Ok(None),
    }
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
