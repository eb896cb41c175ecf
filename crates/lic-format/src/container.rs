//! The `.lic` container (format-spec/README.md §3–§5): an 8-byte signature, then
//! length-prefixed typed chunks, each closed by a CRC-32 of its type and data.
//!
//! ```text
//! 89 4C 49 43 0D 0A 1A 0A | HEAD | (ALPH) | CWLT (one per tile) ... | DONE
//! chunk = length:u32be  type:[u8;4]  data:[u8; length]  crc32(type ‖ data):u32be
//! ```
//! A chunk whose type starts with an upper-case letter is critical: a decoder that does not
//! know it must refuse the file. Lower-case first letter: ancillary, safe to skip.

use byteorder::{BigEndian, ByteOrder, WriteBytesExt};

/// The file signature. The high-bit first byte, CR-LF, Ctrl-Z and LF catch 7-bit and
/// line-ending transfer damage, as in PNG.
pub const SIGNATURE: [u8; 8] = [0x89, b'L', b'I', b'C', b'\r', b'\n', 0x1A, b'\n'];
/// The container version this library writes and reads.
pub const VERSION: u8 = 1;
/// Largest chunk payload accepted (bytes).
pub const MAX_CHUNK_LEN: u32 = 1 << 30;
/// Largest width or height the format can express.
pub const MAX_DIMENSION: u32 = 1 << 16;
/// Smallest tile side, in latents of 16 pixels (spec §4.1).
pub const MIN_TILE: usize = 4;
/// Largest tile side, in latents of 16 pixels.
pub const MAX_TILE: usize = 4096;
/// Size of the HEAD payload.
pub const HEAD_LEN: usize = 24;
/// Bytes a chunk adds around its payload (length, type, CRC).
pub const CHUNK_OVERHEAD: usize = 12;

/// Chunk types.
pub mod types {
    /// Header: dimensions, colour, model, weights id, quality.
    pub const HEAD: [u8; 4] = *b"HEAD";
    /// The cw latent stream of one tile (rANS words).
    pub const CWLT: [u8; 4] = *b"CWLT";
    /// One rnn layer (iteration): its bits as rANS words.
    pub const RNLY: [u8; 4] = *b"RNLY";
    /// Alpha plane, zlib-compressed 8-bit samples.
    pub const ALPH: [u8; 4] = *b"ALPH";
    /// End of file (empty).
    pub const DONE: [u8; 4] = *b"DONE";
    /// Ancillary: the input's ICC colour profile, unchanged.
    pub const ICCP: [u8; 4] = *b"iCCP";
    /// Ancillary: the input's EXIF data (a TIFF structure, as in PNG's eXIf), unchanged.
    pub const EXIF: [u8; 4] = *b"eXIf";
}

/// Which transform coded the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelKind {
    /// The content-weighted autoencoder.
    Cw,
    /// The recurrent progressive model.
    Rnn,
}

impl ModelKind {
    /// The byte that stands for the model in HEAD.
    pub fn code(self) -> u8 {
        match self {
            ModelKind::Cw => 0,
            ModelKind::Rnn => 1,
        }
    }
    /// Name as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Cw => "cw",
            ModelKind::Rnn => "rnn",
        }
    }
}

/// Colour layout of the original image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorType {
    /// One grey channel.
    Gray,
    /// Grey and alpha.
    GrayAlpha,
    /// Red, green, blue.
    Rgb,
    /// Red, green, blue and alpha.
    Rgba,
}

impl ColorType {
    /// Samples per pixel.
    pub fn channels(self) -> usize {
        match self {
            ColorType::Gray => 1,
            ColorType::GrayAlpha => 2,
            ColorType::Rgb => 3,
            ColorType::Rgba => 4,
        }
    }
    /// Whether the image has an alpha channel.
    pub fn has_alpha(self) -> bool {
        matches!(self, ColorType::GrayAlpha | ColorType::Rgba)
    }
    /// Whether the image is grey.
    pub fn is_gray(self) -> bool {
        matches!(self, ColorType::Gray | ColorType::GrayAlpha)
    }
    fn code(self) -> u8 {
        match self {
            ColorType::Gray => 0,
            ColorType::GrayAlpha => 1,
            ColorType::Rgb => 2,
            ColorType::Rgba => 3,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => ColorType::Gray,
            1 => ColorType::GrayAlpha,
            2 => ColorType::Rgb,
            3 => ColorType::Rgba,
            _ => return None,
        })
    }
}

/// The HEAD chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Image width in pixels (1..=65536).
    pub width: u32,
    /// Image height in pixels (1..=65536).
    pub height: u32,
    /// Colour layout of the original.
    pub color: ColorType,
    /// Transform that coded the image.
    pub model: ModelKind,
    /// First 8 bytes of the SHA-256 of the weights file that coded the image.
    pub weights_id: [u8; 8],
    /// Rate code (spec §4.1): what the decoder reads the rate position from.
    pub quality: u16,
    /// Tile side in latents (16 pixels each); 0: the whole image is one tile (spec §5).
    pub tile: u16,
}

impl Header {
    /// Serializes the HEAD payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEAD_LEN);
        v.push(VERSION);
        v.push(self.model.code());
        v.push(self.color.code());
        v.push(0); // reserved
        v.write_u32::<BigEndian>(self.width).unwrap();
        v.write_u32::<BigEndian>(self.height).unwrap();
        v.extend_from_slice(&self.weights_id);
        v.write_u16::<BigEndian>(self.quality).unwrap();
        v.write_u16::<BigEndian>(self.tile).unwrap();
        v
    }

    /// Parses a HEAD payload.
    pub fn parse(d: &[u8]) -> Result<Self, FormatError> {
        if d.len() != HEAD_LEN {
            return Err(FormatError::Invalid {
                section: "4.1",
                what: "HEAD has the wrong length",
            });
        }
        if d[0] != VERSION {
            return Err(FormatError::UnsupportedVersion(d[0]));
        }
        let model = match d[1] {
            0 => ModelKind::Cw,
            1 => ModelKind::Rnn,
            m => return Err(FormatError::UnknownModel(m)),
        };
        let color = ColorType::from_code(d[2]).ok_or(FormatError::Invalid {
            section: "4.1",
            what: "unknown colour type",
        })?;
        let width = BigEndian::read_u32(&d[4..8]);
        let height = BigEndian::read_u32(&d[8..12]);
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(FormatError::Invalid {
                section: "4.1",
                what: "dimensions out of range",
            });
        }
        let mut weights_id = [0u8; 8];
        weights_id.copy_from_slice(&d[12..20]);
        let quality = BigEndian::read_u16(&d[20..22]);
        let tile = BigEndian::read_u16(&d[22..24]);
        if tile != 0
            && (model == ModelKind::Rnn || !(MIN_TILE..=MAX_TILE).contains(&(tile as usize)))
        {
            return Err(FormatError::Invalid {
                section: "4.1",
                what: "tile side out of range",
            });
        }
        Ok(Self {
            width,
            height,
            color,
            model,
            weights_id,
            quality,
            tile,
        })
    }
}

/// A format violation: the file is not a valid `.lic` file.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// The first 8 bytes are not the signature.
    #[error("not a .lic file (bad signature; spec §3)")]
    BadSignature,
    /// The file ends inside a structure.
    #[error("file is truncated: it ends inside {0} (spec §3)")]
    Truncated(&'static str),
    /// A chunk's CRC does not match its contents.
    #[error("chunk {0} is corrupt: CRC mismatch (spec §3)")]
    Crc(String),
    /// The file was written by an unknown version of the format.
    #[error("unsupported format version {0} (this decoder reads version 1; spec §4.1)")]
    UnsupportedVersion(u8),
    /// The file names a transform this decoder does not know.
    #[error("unknown model code {0} (spec §4.1)")]
    UnknownModel(u8),
    /// A critical chunk this decoder does not know.
    #[error("unknown critical chunk {0} (spec §3)")]
    UnknownCritical(String),
    /// A chunk length over the limit.
    #[error("chunk {0} is too long (spec §7)")]
    TooLong(String),
    /// A required chunk is missing or out of order.
    #[error("{0} (spec §3)")]
    Structure(&'static str),
    /// A field holds an impossible value.
    #[error("invalid file (spec §{section}): {what}")]
    Invalid {
        /// Section of the spec that is violated.
        section: &'static str,
        /// What is wrong.
        what: &'static str,
    },
}

/// One chunk of a parsed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Four-letter type.
    pub kind: [u8; 4],
    /// Payload.
    pub data: &'a [u8],
}

impl Chunk<'_> {
    /// The type as text.
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.kind).into_owned()
    }
    /// Whether a decoder must understand this chunk.
    pub fn is_critical(&self) -> bool {
        self.kind[0].is_ascii_uppercase()
    }
}

/// Appends one chunk (length, type, data, CRC).
pub fn write_chunk(out: &mut Vec<u8>, kind: [u8; 4], data: &[u8]) {
    out.write_u32::<BigEndian>(data.len() as u32).unwrap();
    out.extend_from_slice(&kind);
    out.extend_from_slice(data);
    let mut h = crc32fast::Hasher::new();
    h.update(&kind);
    h.update(data);
    out.write_u32::<BigEndian>(h.finalize()).unwrap();
}

/// A whole file: the header and every chunk after it, up to and including DONE.
#[derive(Clone, Debug)]
pub struct Container<'a> {
    /// The parsed HEAD chunk.
    pub header: Header,
    /// Every chunk after HEAD, DONE excluded, in file order.
    pub chunks: Vec<Chunk<'a>>,
    /// Total file size in bytes.
    pub file_len: usize,
}

impl<'a> Container<'a> {
    /// Parses and checks a file: signature, every length against the remaining bytes and
    /// [`MAX_CHUNK_LEN`], every CRC, HEAD first, DONE last, nothing after DONE. Nothing is
    /// allocated from a length read in the file.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        Ok(Self::parse_impl(bytes, false)?.0)
    }

    /// Like [`Container::parse`], but a file cut inside a chunk or before DONE is accepted:
    /// the chunks complete so far are returned, with `false` for "incomplete". For
    /// progressive files, whose every complete layer decodes. A cut before the end of HEAD is
    /// still an error.
    pub fn parse_prefix(bytes: &'a [u8]) -> Result<(Self, bool), FormatError> {
        Self::parse_impl(bytes, true)
    }

    fn parse_impl(bytes: &'a [u8], prefix: bool) -> Result<(Self, bool), FormatError> {
        check_signature(bytes)?;
        let mut pos = 8;
        let mut header = None;
        let mut chunks = Vec::new();
        let mut complete = true;
        loop {
            let (chunk, next) = match read_chunk(bytes, pos) {
                Err(FormatError::Truncated(_)) if prefix && header.is_some() => {
                    complete = false;
                    break;
                }
                r => r?,
            };
            pos = next;
            let (kind, data) = (chunk.kind, chunk.data);
            if header.is_none() {
                if kind != types::HEAD {
                    return Err(FormatError::Structure("the first chunk must be HEAD"));
                }
                header = Some(Header::parse(data)?);
                continue;
            }
            match kind {
                types::HEAD => return Err(FormatError::Structure("more than one HEAD chunk")),
                types::DONE => {
                    if pos != bytes.len() {
                        return Err(FormatError::Structure("data after the DONE chunk"));
                    }
                    break;
                }
                types::CWLT | types::ALPH | types::RNLY => chunks.push(chunk),
                _ if chunk.is_critical() => return Err(FormatError::UnknownCritical(chunk.name())),
                _ => chunks.push(chunk),
            }
        }
        let header = header.ok_or(FormatError::Structure("missing HEAD"))?;
        Ok((
            Self {
                header,
                chunks,
                file_len: bytes.len(),
            },
            complete,
        ))
    }

    /// The payloads of every chunk of type `kind`, in file order.
    pub fn find_all(&self, kind: [u8; 4]) -> Vec<&'a [u8]> {
        self.chunks
            .iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.data)
            .collect()
    }

    /// The payload of the one chunk of type `kind`, if present.
    pub fn find(&self, kind: [u8; 4]) -> Result<Option<&'a [u8]>, FormatError> {
        let mut it = self.chunks.iter().filter(|c| c.kind == kind);
        let first = it.next().map(|c| c.data);
        if it.next().is_some() {
            return Err(FormatError::Structure(
                "a chunk that may appear once appears twice",
            ));
        }
        Ok(first)
    }
}

/// Reads and checks the chunk at `pos` (8 header bytes, type letters, length limit, length
/// against the bytes present, CRC) and returns it with the position after it.
pub fn read_chunk(bytes: &[u8], pos: usize) -> Result<(Chunk<'_>, usize), FormatError> {
    if bytes.len() - pos < 8 {
        return Err(FormatError::Truncated("a chunk header"));
    }
    let len = BigEndian::read_u32(&bytes[pos..pos + 4]);
    let mut kind = [0u8; 4];
    kind.copy_from_slice(&bytes[pos + 4..pos + 8]);
    if !kind.iter().all(|b| b.is_ascii_alphabetic()) {
        return Err(FormatError::Invalid {
            section: "3",
            what: "chunk type is not four letters",
        });
    }
    let chunk_name = || String::from_utf8_lossy(&kind).into_owned();
    if len > MAX_CHUNK_LEN {
        return Err(FormatError::TooLong(chunk_name()));
    }
    let len = len as usize;
    if bytes.len() - pos - 8 < len + 4 {
        return Err(FormatError::Truncated("a chunk"));
    }
    let data = &bytes[pos + 8..pos + 8 + len];
    let stored = BigEndian::read_u32(&bytes[pos + 8 + len..pos + 12 + len]);
    let mut h = crc32fast::Hasher::new();
    h.update(&kind);
    h.update(data);
    if h.finalize() != stored {
        return Err(FormatError::Crc(chunk_name()));
    }
    Ok((Chunk { kind, data }, pos + CHUNK_OVERHEAD + len))
}

fn check_signature(bytes: &[u8]) -> Result<(), FormatError> {
    if bytes.len() < SIGNATURE.len() {
        return Err(if SIGNATURE.starts_with(bytes) {
            FormatError::Truncated("the signature")
        } else {
            FormatError::BadSignature
        });
    }
    if bytes[..8] != SIGNATURE {
        return Err(FormatError::BadSignature);
    }
    Ok(())
}

/// Reads only the header of a file: checks the signature and the HEAD chunk (with its CRC).
pub fn read_header(bytes: &[u8]) -> Result<Header, FormatError> {
    check_signature(bytes)?;
    let (chunk, _) = read_chunk(bytes, 8)?;
    if chunk.kind != types::HEAD {
        return Err(FormatError::Structure("the first chunk must be HEAD"));
    }
    Header::parse(chunk.data)
}
