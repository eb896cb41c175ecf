//! lic: a learned image codec.
//!
//! Pixels go through a content-weighted convolutional autoencoder (cw), whose importance map
//! decides how many latent channels each position spends; every latent symbol gets its
//! probability from an integer conditional model (importance level, gain, and a checkerboard
//! context network over already-decoded neighbours) and is written with rANS. The `.lic`
//! container is specified in `format-spec/README.md`.
//!
//! ```no_run
//! use lic::{Codec, Image};
//! let codec = Codec::embedded()?;
//! let img = Image::open("photo.png")?;
//! let bytes = codec.encode(&img, 0.5)?;
//! let back = codec.decode(&bytes)?;
//! assert_eq!((back.width, back.height), (img.width, img.height));
//! # Ok::<(), lic::Error>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod codec;
/// The entropy layer (the `lic-entropy` crate).
pub use lic_entropy as entropy;
/// The `.lic` container (the `lic-format` crate).
pub use lic_format::container;
/// The format's architecture constants and the quality knob (the `lic-format` crate).
pub use lic_format::{arch, rate};
#[cfg(feature = "image-integration")]
pub mod image_integration;
pub mod metrics;
pub mod model;
pub mod stream;

use std::path::Path;

pub use codec::{EncodeStats, Region};
pub use container::{ColorType, FormatError, Header, ModelKind};
pub use entropy::EntropyError;
pub use model::store::WeightsStore;
pub use model::weights::{CwWeights, RnnWeights, WeightsError};
pub use rate::Quality;

/// Everything that can go wrong in lic, grouped by cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The file breaks the format.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The entropy-coded data is inconsistent.
    #[error(transparent)]
    Entropy(#[from] EntropyError),
    /// The file was made with weights this decoder does not have.
    #[error("this file needs weights {needed}, but the weights given are {have}")]
    WrongWeights {
        /// Id the file needs.
        needed: String,
        /// Id of the loaded weights.
        have: String,
    },
    /// Weights could not be loaded.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The quality is outside [0, 1].
    #[error(transparent)]
    Quality(#[from] rate::QualityError),
    /// No file of the model is as small as the size asked for.
    #[error("no file of this image fits in {target} bytes: the smallest takes {smallest}")]
    TargetTooSmall {
        /// Bytes asked for.
        target: usize,
        /// Bytes of the smallest file (the lowest quality).
        smallest: usize,
    },
    /// The image is over the codec's limits: a decoder with them would refuse the file, or
    /// encoding it would need more memory than they allow. Nothing is written.
    #[error("cannot encode a {width}x{height} image within the limits ({what})")]
    EncodeLimits {
        /// Width of the image.
        width: u32,
        /// Height of the image.
        height: u32,
        /// Which limit.
        what: &'static str,
    },
    /// The image exceeds the decoder's limits.
    #[error("image of {width}x{height} exceeds the limits ({what})")]
    Limits {
        /// Width of the image.
        width: u32,
        /// Height of the image.
        height: u32,
        /// Which limit.
        what: &'static str,
    },
    /// The input is unusable: see [`InputError`].
    #[error(transparent)]
    Input(#[from] InputError),
    /// The progress callback asked to stop.
    #[error("cancelled after {done} of {total} steps")]
    Cancelled {
        /// Steps done.
        done: usize,
        /// Steps in all.
        total: usize,
    },
    /// The network failed to run (out of memory, internal error); candle's error is the
    /// source.
    #[error("network evaluation failed: {0}")]
    Model(#[source] Box<candle_core::Error>),
}

/// What is wrong with an input image, a setting or a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The image has a zero width or height.
    #[error("the image has no pixels")]
    Empty,
    /// The sample buffer does not match the dimensions and colour type.
    #[error("{samples} samples for a {width}x{height} image of {channels} channel(s)")]
    SampleCount {
        /// Samples given.
        samples: usize,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Channels per pixel.
        channels: usize,
    },
    /// The image could not be read.
    #[error("cannot read the image: {0}")]
    Unreadable(#[source] image::ImageError),
    /// A tile side outside what the format allows.
    #[error("tile side {0} must be a multiple of 16 from {min} to {max} pixels (or 0: no tiles)", min = container::MIN_TILE * arch::cw::STRIDE, max = container::MAX_TILE * arch::cw::STRIDE)]
    TileSide(u32),
    /// ICC or EXIF data larger than one chunk can carry.
    #[error("metadata of {0} bytes is larger than a chunk may be")]
    MetadataTooLarge(usize),
    /// A stream of more than the reader accepts.
    #[error("the file is larger than {0} bytes")]
    FileTooLarge(u64),
    /// A request for one model given a file of the other.
    #[error("this is a {found:?} file; {wanted}")]
    WrongModel {
        /// The file's model.
        found: ModelKind,
        /// What the call needs.
        wanted: &'static str,
    },
    /// No encoder exists for this model.
    #[error("no encoder for model {0:?}")]
    NoEncoder(ModelKind),
    /// A region that is empty or outside the picture.
    #[error("region {width}x{height} at ({x}, {y}) is empty or outside the {image_width}x{image_height} image")]
    Region {
        /// Left edge.
        x: u32,
        /// Top edge.
        y: u32,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// The picture's width.
        image_width: u32,
        /// The picture's height.
        image_height: u32,
    },
    /// A thread count of zero.
    #[error("a codec needs at least one worker thread")]
    NoThreads,
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Model(Box::new(e))
    }
}

/// A progress callback, `(done, total)` → keep going: the network passes, which take most of
/// an encode or a cw decode (analysis windows of at most 768×768 pixels when encoding cw,
/// synthesized tiles when decoding cw). Returning `false` cancels the work at that point with
/// [`Error::Cancelled`]: a viewer's way to bound the time a file may take. It may be called
/// from any thread.
pub type Progress = std::sync::Arc<dyn Fn(usize, usize) -> bool + Send + Sync>;

/// An 8-bit image, samples interleaved row by row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Channel layout.
    pub color: ColorType,
    /// `width · height · color.channels()` samples.
    pub data: Vec<u8>,
}

impl Image {
    /// Checks that the sample buffer matches the dimensions.
    pub fn check(&self) -> Result<(), Error> {
        let need = self.width as u64 * self.height as u64 * self.color.channels() as u64;
        if self.width == 0 || self.height == 0 {
            return Err(InputError::Empty.into());
        }
        if self.width > container::MAX_DIMENSION || self.height > container::MAX_DIMENSION {
            return Err(Error::Limits {
                width: self.width,
                height: self.height,
                what: "at most 65536 pixels a side",
            });
        }
        if self.data.len() as u64 != need {
            return Err(InputError::SampleCount {
                samples: self.data.len(),
                width: self.width,
                height: self.height,
                channels: self.color.channels(),
            }
            .into());
        }
        Ok(())
    }

    /// Reads any format the `image` crate decodes. 16-bit images are reduced to 8 bits
    /// (`lossy_depth` tells the caller, who may warn).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Ok(Self::from_dynamic(image::open(path.as_ref()).map_err(InputError::Unreadable)?).0)
    }

    /// Converts an `image` crate image; the flag is true when the depth was reduced.
    pub fn from_dynamic(img: image::DynamicImage) -> (Self, bool) {
        use image::DynamicImage as D;
        let reduced = !matches!(
            img,
            D::ImageLuma8(_) | D::ImageLumaA8(_) | D::ImageRgb8(_) | D::ImageRgba8(_)
        );
        let (width, height) = (img.width(), img.height());
        let has_alpha = img.color().has_alpha();
        let gray = !img.color().has_color();
        let (color, data) = match (gray, has_alpha) {
            (true, false) => (ColorType::Gray, img.into_luma8().into_raw()),
            (true, true) => (ColorType::GrayAlpha, img.into_luma_alpha8().into_raw()),
            (false, false) => (ColorType::Rgb, img.into_rgb8().into_raw()),
            (false, true) => (ColorType::Rgba, img.into_rgba8().into_raw()),
        };
        (
            Self {
                width,
                height,
                color,
                data,
            },
            reduced,
        )
    }

    /// Converts to an `image` crate image.
    pub fn to_dynamic(&self) -> image::DynamicImage {
        use image::{DynamicImage as D, ImageBuffer};
        let (w, h, d) = (self.width, self.height, self.data.clone());
        match self.color {
            ColorType::Gray => D::ImageLuma8(ImageBuffer::from_raw(w, h, d).expect("checked size")),
            ColorType::GrayAlpha => {
                D::ImageLumaA8(ImageBuffer::from_raw(w, h, d).expect("checked size"))
            }
            ColorType::Rgb => D::ImageRgb8(ImageBuffer::from_raw(w, h, d).expect("checked size")),
            ColorType::Rgba => D::ImageRgba8(ImageBuffer::from_raw(w, h, d).expect("checked size")),
        }
    }
}

/// The `image` crate's colour type of 8-bit samples of colour type `c`.
pub fn image_color_type(c: ColorType) -> image::ColorType {
    match c {
        ColorType::Gray => image::ColorType::L8,
        ColorType::GrayAlpha => image::ColorType::La8,
        ColorType::Rgb => image::ColorType::Rgb8,
        ColorType::Rgba => image::ColorType::Rgba8,
    }
}

/// Decoder limits, checked against the header before anything is allocated. The encoder
/// checks the same limits, so that what it writes decodes under them.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest width (default 65536, the format's limit: a panorama is no risk as such; the
    /// pixel count and memory bound the work).
    pub max_width: u32,
    /// Largest height (default 65536).
    pub max_height: u32,
    /// Largest pixel count (default 64 Mpx).
    pub max_pixels: u64,
    /// Largest memory the decode may allocate, in bytes, as estimated from the header by
    /// [`codec::decode_memory`] before anything is allocated (default 2 GiB).
    pub max_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_width: container::MAX_DIMENSION,
            max_height: container::MAX_DIMENSION,
            max_pixels: 64 << 20,
            max_memory: 2 << 30,
        }
    }
}

impl Limits {
    /// No limits beyond the format's own.
    pub fn none() -> Self {
        Self {
            max_width: u32::MAX,
            max_height: u32::MAX,
            max_pixels: u64::MAX,
            max_memory: u64::MAX,
        }
    }

    /// Checks a header against the limits: dimensions, pixel count, and the decoder's memory
    /// estimate.
    pub fn check(&self, header: &Header) -> Result<(), Error> {
        let (width, height) = (header.width, header.height);
        let err = |what| {
            Err(Error::Limits {
                width,
                height,
                what,
            })
        };
        if width > self.max_width {
            return err("width");
        }
        if height > self.max_height {
            return err("height");
        }
        if width as u64 * height as u64 > self.max_pixels {
            return err("pixel count");
        }
        if codec::decode_memory(header) > self.max_memory {
            return err("memory: the image or its tiles are too large");
        }
        Ok(())
    }
}

/// Metadata carried from the input to the decoded image, unchanged (ancillary chunks
/// `iCCP` and `eXIf`, spec §4.5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// ICC colour profile.
    pub icc_profile: Option<Vec<u8>>,
    /// EXIF data (a TIFF structure).
    pub exif: Option<Vec<u8>>,
}

/// An input image read by [`read_image`] or [`Codec::read_image`].
#[derive(Clone, Debug)]
pub struct InputImage {
    /// The pixels, 8 bits per sample.
    pub image: Image,
    /// Its ICC profile and EXIF data.
    pub metadata: Metadata,
    /// True when samples of more than 8 bits were reduced to 8.
    pub reduced_depth: bool,
    /// True for an animated PNG: only its first frame was read.
    pub first_frame_only: bool,
}

/// Reads an image and its metadata (ICC profile, EXIF) from encoded bytes in any format the
/// `image` crate decodes, whatever its size ([`Codec::read_image`] checks the codec's limits
/// before decoding the pixels).
pub fn read_image(bytes: &[u8]) -> Result<InputImage, Error> {
    read_image_checked(bytes, |_, _, _| Ok(()))
}

/// Reads an image, first handing its size and colour type to `check`, before the pixels are
/// decoded.
fn read_image_checked(
    bytes: &[u8],
    check: impl FnOnce(u32, u32, ColorType) -> Result<(), Error>,
) -> Result<InputImage, Error> {
    use image::ImageDecoder;
    let bad = InputError::Unreadable;
    let mut decoder = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()?
        .into_decoder()
        .map_err(bad)?;
    let (width, height) = decoder.dimensions();
    let c = decoder.color_type();
    let color = match (c.has_color(), c.has_alpha()) {
        (false, false) => ColorType::Gray,
        (false, true) => ColorType::GrayAlpha,
        (true, false) => ColorType::Rgb,
        (true, true) => ColorType::Rgba,
    };
    check(width, height, color)?;
    let metadata = Metadata {
        icc_profile: decoder.icc_profile().map_err(bad)?,
        exif: decoder.exif_metadata().map_err(bad)?,
    };
    let dynimg = image::DynamicImage::from_decoder(decoder).map_err(bad)?;
    let (image, reduced_depth) = Image::from_dynamic(dynimg);
    Ok(InputImage {
        image,
        metadata,
        reduced_depth,
        first_frame_only: is_animated_png(bytes),
    })
}

/// Whether `bytes` are a PNG with an animation control chunk (`acTL`) before its image data.
fn is_animated_png(bytes: &[u8]) -> bool {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1A, b'\n'];
    if !bytes.starts_with(&SIGNATURE) {
        return false;
    }
    let mut pos = SIGNATURE.len();
    while let Some(head) = bytes.get(pos..pos + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        match &head[4..8] {
            b"acTL" => return true,
            b"IDAT" | b"IEND" => return false,
            _ => pos = pos.saturating_add(12).saturating_add(len),
        }
    }
    false
}

/// The metadata of a `.lic` file (CRCs checked); runs no network. A cut file gives the
/// metadata chunks before the cut (they precede the coded chunks).
pub fn metadata(bytes: &[u8]) -> Result<Metadata, Error> {
    let (c, _) = container::Container::parse_prefix(bytes)?;
    Ok(Metadata {
        icc_profile: c.find(container::types::ICCP)?.map(<[u8]>::to_vec),
        exif: c.find(container::types::EXIF)?.map(<[u8]>::to_vec),
    })
}

/// What `info` reports: the header and the chunk table, without running any network.
#[derive(Clone, Debug)]
pub struct Info {
    /// The header.
    pub header: Header,
    /// (type, payload bytes) of every chunk after HEAD, in file order.
    pub chunks: Vec<(String, usize)>,
    /// File size in bytes.
    pub file_bytes: usize,
    /// False when the file ends before its DONE chunk (a cut progressive file).
    pub complete: bool,
}

impl Info {
    /// Bits per pixel of the whole file.
    pub fn bpp(&self) -> f64 {
        self.file_bytes as f64 * 8.0 / (self.header.width as f64 * self.header.height as f64)
    }

    /// The file offset just after each chunk of `chunks`, in the same order.
    pub fn chunk_ends(&self) -> Vec<usize> {
        let mut end = container::SIGNATURE.len() + container::CHUNK_OVERHEAD + container::HEAD_LEN;
        self.chunks
            .iter()
            .map(|(_, len)| {
                end += container::CHUNK_OVERHEAD + len;
                end
            })
            .collect()
    }

    /// The file offset just after each layer (RNLY chunk) of an rnn file: the bytes a viewer
    /// must hold to show that layer.
    pub fn layer_ends(&self) -> Vec<usize> {
        self.chunks
            .iter()
            .zip(self.chunk_ends())
            .filter(|((name, _), _)| name == "RNLY")
            .map(|(_, end)| end)
            .collect()
    }
}

/// Reads the header and chunk table of a file (checking every CRC); runs no network. An rnn
/// file cut after its header lists the chunks complete so far (`complete` is false: every
/// complete layer still decodes); a cut cw file is an error.
pub fn info(bytes: &[u8]) -> Result<Info, Error> {
    let (c, complete) = container::Container::parse_prefix(bytes)?;
    if !complete && c.header.model != ModelKind::Rnn {
        // Report the truncation the strict parser finds.
        container::Container::parse(bytes)?;
    }
    Ok(Info {
        header: c.header.clone(),
        chunks: c
            .chunks
            .iter()
            .map(|ch| (ch.name(), ch.data.len()))
            .collect(),
        file_bytes: c.file_len,
        complete,
    })
}

/// An encoder/decoder with loaded weights.
pub struct Codec {
    weights: CwWeights,
    /// Told how far the network passes of an encode or decode have come.
    progress: Option<Progress>,
    /// Where the weights of files made with other cw weights are found.
    store: WeightsStore,
    /// rnn weights from a file; `None`: the embedded ones, loaded when first needed.
    rnn: Option<RnnWeights>,
    pub(crate) limits: Limits,
    tile: u32,
    model: ModelKind,
    /// rnn encodes write every layer asked for, even one that does not improve the picture.
    every_rnn_layer: bool,
    /// Worker threads of this codec's own; `None`: rayon's global pool.
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
}

impl Codec {
    /// The codec on the weights embedded in this binary.
    pub fn embedded() -> Result<Self, Error> {
        Ok(Self::on_cw_weights(CwWeights::embedded()?))
    }

    /// The codec with default settings on these cw weights (rnn weights: the embedded ones).
    fn on_cw_weights(weights: CwWeights) -> Self {
        Self {
            weights,
            store: WeightsStore::from_env(),
            rnn: None,
            limits: Limits::default(),
            tile: codec::DEFAULT_TILE,
            model: ModelKind::Cw,
            every_rnn_layer: false,
            progress: None,
            pool: None,
        }
    }

    /// Runs this codec's encodes and decodes on `threads` worker threads of its own instead
    /// of the process's global pool (one thread per core): a viewer decoding several files at
    /// once gives each a share. Files and pixels do not depend on the thread count, and the
    /// memory estimate ([`codec::decode_memory`]) follows it.
    pub fn with_threads(mut self, threads: usize) -> Result<Self, Error> {
        if threads == 0 {
            return Err(InputError::NoThreads.into());
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
        self.pool = Some(std::sync::Arc::new(pool));
        Ok(self)
    }

    /// Runs `f` on this codec's threads.
    fn on_threads<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// Reports progress to `f` as `(done, total)`, e.g. for a progress bar; `f` returns
    /// `false` to cancel ([`Progress`]).
    pub fn with_progress(
        mut self,
        f: impl Fn(usize, usize) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some(std::sync::Arc::new(f));
        self
    }

    /// The codec on a weights file: cw weights, or rnn weights (which also make rnn the
    /// encoder's model); the other model keeps the embedded weights.
    pub fn from_weights_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::from_weights_bytes(&std::fs::read(path)?)
    }

    /// [`Codec::from_weights_file`] on the bytes of a weights file already in memory.
    pub fn from_weights_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let is_rnn = safetensors::SafeTensors::deserialize(bytes)
            .map(|st| st.names().iter().any(|n| *n == "bits.p_one"))
            .unwrap_or(false);
        if is_rnn {
            let rnn = RnnWeights::from_bytes(bytes)?;
            return Ok(Self {
                rnn: Some(rnn),
                model: ModelKind::Rnn,
                ..Self::embedded()?
            });
        }
        // Built without the embedded cw weights, which need not even load with this build's
        // model shapes (weights from a wider or narrower build).
        Ok(Self::on_cw_weights(CwWeights::from_bytes(bytes)?))
    }

    /// Chooses the encoder's model (default cw). Decoding follows each file's header.
    pub fn with_model(mut self, model: ModelKind) -> Self {
        self.model = model;
        self
    }

    pub(crate) fn rnn_weights(&self) -> Result<&RnnWeights, Error> {
        match &self.rnn {
            Some(w) => Ok(w),
            None => Ok(RnnWeights::embedded_shared()?),
        }
    }

    /// Searches `dir` first for the weights of files made with other cw weights than the
    /// codec's own (see [`WeightsStore`] for the folders searched anyway).
    pub fn with_weights_dir(self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.store.add_dir(dir);
        self
    }

    /// The cw weights a file's header names: the codec's own, or the set of that id from
    /// the weights folders.
    fn cw_weights_for(&self, bytes: &[u8]) -> Result<CwFor<'_>, Error> {
        let hd = container::read_header(bytes)?;
        if hd.model != ModelKind::Cw || hd.weights_id == self.weights.id {
            return Ok(CwFor::Own(&self.weights));
        }
        Ok(CwFor::Found(self.store.cw(&hd.weights_id)?))
    }

    /// Replaces the limits (default [`Limits::default`]): the decoder refuses files over
    /// them, and the encoder refuses to write a file that a decoder with them would refuse.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the encoder's tile side in pixels: a multiple of 16 from 64 to 65536, or 0 for one
    /// tile whatever the size (default [`codec::DEFAULT_TILE`]). Decoding memory grows with
    /// the tile, not the image; tiles cost a little rate at their borders and leave no seams.
    pub fn with_tile_size(mut self, pixels: u32) -> Self {
        self.tile = pixels;
        self
    }

    /// rnn encodes: write every layer the quality asks for (`true`), or stop before a layer
    /// that would not bring the picture closer to the image (`false`, the default; such a
    /// layer only costs bytes, and the file's rate code then says how many layers it has).
    pub fn with_every_rnn_layer(mut self, every: bool) -> Self {
        self.every_rnn_layer = every;
        self
    }

    /// Hex id of the loaded weights.
    pub fn weights_id(&self) -> String {
        model::weights::id_hex(&self.weights.id)
    }

    /// Encodes at quality `q` ∈ [0, 1] (0: smallest file, 1: best picture).
    pub fn encode(&self, img: &Image, q: f32) -> Result<Vec<u8>, Error> {
        Ok(self.encode_full(img, q, &Metadata::default())?.0)
    }

    /// Encodes and reports the stream statistics.
    pub fn encode_with_stats(&self, img: &Image, q: f32) -> Result<(Vec<u8>, EncodeStats), Error> {
        self.encode_full(img, q, &Metadata::default())
    }

    /// Encodes and carries `meta` (ICC profile, EXIF) in ancillary chunks.
    pub fn encode_with_metadata(
        &self,
        img: &Image,
        q: f32,
        meta: &Metadata,
    ) -> Result<Vec<u8>, Error> {
        Ok(self.encode_full(img, q, meta)?.0)
    }

    /// Encodes at quality `q` ∈ [0, 1] with `meta`, and reports the stream statistics.
    pub fn encode_full(
        &self,
        img: &Image,
        q: f32,
        meta: &Metadata,
    ) -> Result<(Vec<u8>, EncodeStats), Error> {
        let q = Quality::new(q)?;
        let code = match self.model {
            ModelKind::Cw => q.cw_rate_code(),
            _ => q.q16(),
        };
        self.encode_rate_code(img, code, meta)
    }

    /// The quality a file's rate code stands for (what [`Codec::encode`] would have been
    /// given), by the model that reads it.
    pub fn quality_of(header: &Header) -> Quality {
        match header.model {
            ModelKind::Cw => Quality::from_cw_rate_code(header.quality),
            _ => Quality::from_q16(header.quality),
        }
    }

    /// The largest file of at most `max_bytes` (rate control: whole file, container and
    /// metadata included), with `meta`. A cw encode runs the analysis once and searches the
    /// rate codes; an rnn encode searches the layer counts.
    pub fn encode_to_size(
        &self,
        img: &Image,
        max_bytes: usize,
        meta: &Metadata,
    ) -> Result<(Vec<u8>, EncodeStats), Error> {
        self.check_encode_limits(img)?;
        self.on_threads(|| match self.model {
            ModelKind::Cw => {
                let enc =
                    codec::CwEncoder::new(img, self.tile, &self.weights, self.progress.as_ref())?;
                codec::encode_to_size(max_bytes, 65536, |i| enc.encode(i as u16, meta))
            }
            ModelKind::Rnn => {
                let weights = self.rnn_weights()?;
                codec::encode_to_size(max_bytes, model::rnn::MAX_ITERS, |i| {
                    codec::encode_rnn(
                        img,
                        rate::rnn_rate_code(i + 1),
                        weights,
                        meta,
                        !self.every_rnn_layer,
                    )
                })
            }
            m => Err(InputError::NoEncoder(m).into()),
        })
    }

    /// Encodes at a raw rate code (the HEAD field, format-spec §6.2), bypassing the quality
    /// calibration: for calibration and rate-distortion tools.
    pub fn encode_rate_code(
        &self,
        img: &Image,
        rate_code: u16,
        meta: &Metadata,
    ) -> Result<(Vec<u8>, EncodeStats), Error> {
        self.check_encode_limits(img)?;
        self.on_threads(|| match self.model {
            ModelKind::Cw => codec::encode(
                img,
                rate_code,
                self.tile,
                &self.weights,
                meta,
                self.progress.as_ref(),
            ),
            ModelKind::Rnn => codec::encode_rnn(
                img,
                rate_code,
                self.rnn_weights()?,
                meta,
                !self.every_rnn_layer,
            ),
            m => Err(InputError::NoEncoder(m).into()),
        })
    }

    /// Refuses what a decoder with this codec's limits would refuse.
    fn check_encode_limits(&self, img: &Image) -> Result<(), Error> {
        img.check()?;
        self.check_encode_size(img.width, img.height, img.color)
    }

    /// Refuses a `width`×`height` image that a decoder with this codec's limits would refuse.
    fn check_encode_size(&self, width: u32, height: u32, color: ColorType) -> Result<(), Error> {
        let header = Header {
            width,
            height,
            color,
            model: self.model,
            weights_id: self.weights.id,
            quality: 0,
            tile: match self.model {
                ModelKind::Cw => codec::tile_field(self.tile, width, height)?,
                _ => 0,
            },
        };
        match self.limits.check(&header) {
            Err(Error::Limits { what, .. }) => Err(Error::EncodeLimits {
                width,
                height,
                what,
            }),
            // The encoder's own peak is estimated as the decoder's is and held to the same
            // limit.
            _ if codec::encode_memory(&header) > self.limits.max_memory => {
                Err(Error::EncodeLimits {
                    width,
                    height,
                    what: "memory: encoding it needs more",
                })
            }
            _ => Ok(()),
        }
    }

    /// Reads an image to encode, as [`read_image`] does, but refuses it before its pixels are
    /// decoded when the encoder would refuse it ([`Error::EncodeLimits`]): a small PNG of a
    /// huge flat picture costs no memory.
    pub fn read_image(&self, bytes: &[u8]) -> Result<InputImage, Error> {
        read_image_checked(bytes, |w, h, c| self.check_encode_size(w, h, c))
    }

    /// Decodes a `.lic` file (an rnn file: every complete layer, even if the file was cut).
    pub fn decode(&self, bytes: &[u8]) -> Result<Image, Error> {
        Ok(match container::read_header(bytes)?.model {
            ModelKind::Rnn => self.decode_layers(bytes, None)?.image,
            _ => {
                let weights = self.cw_weights_for(bytes)?;
                self.on_threads(|| {
                    codec::decode(bytes, &weights, &self.limits, self.progress.as_ref())
                })?
            }
        })
    }

    /// Decodes the first `max_layers` layers of an rnn file (all when `None`), and says how
    /// many there were and whether the file was cut.
    pub fn decode_layers(
        &self,
        bytes: &[u8],
        max_layers: Option<usize>,
    ) -> Result<codec::RnnDecoded, Error> {
        let weights = self.rnn_weights()?;
        self.on_threads(|| codec::decode_rnn(bytes, weights, &self.limits, max_layers))
    }

    /// Decodes only a rectangle of a `.lic` file: a viewer's visible part of a large image.
    /// Only the tiles under the region are synthesized; its pixels equal that part of a whole
    /// decode. rnn files have no tiles: they are decoded whole (every complete layer) and
    /// cropped.
    ///
    /// ```no_run
    /// let codec = lic::Codec::embedded()?;
    /// let bytes = std::fs::read("big.lic")?;
    /// let corner = codec.decode_region(&bytes, lic::Region { x: 0, y: 0, width: 512, height: 512 })?;
    /// # Ok::<(), lic::Error>(())
    /// ```
    pub fn decode_region(&self, bytes: &[u8], region: Region) -> Result<Image, Error> {
        if container::read_header(bytes)?.model == ModelKind::Rnn {
            return codec::crop(&self.decode_layers(bytes, None)?.image, region);
        }
        let weights = self.cw_weights_for(bytes)?;
        self.on_threads(|| {
            codec::decode_region(
                bytes,
                &weights,
                &self.limits,
                region,
                self.progress.as_ref(),
            )
        })
    }
}

/// The cw weights of one file: the codec's own or a set found by id.
enum CwFor<'a> {
    Own(&'a CwWeights),
    Found(std::sync::Arc<CwWeights>),
}

impl std::ops::Deref for CwFor<'_> {
    type Target = CwWeights;
    fn deref(&self) -> &CwWeights {
        match self {
            CwFor::Own(w) => w,
            CwFor::Found(w) => w,
        }
    }
}

/// Decodes a `.lic` file with the embedded weights.
pub fn decode(bytes: &[u8]) -> Result<Image, Error> {
    decode_with_limits(bytes, &Limits::default())
}

/// Decodes only `region` of a `.lic` file within `limits`, with the weights its header names
/// (as [`decode_with_limits`]): only the tiles under the region are synthesized, and its
/// pixels equal that part of a whole decode; `progress` hears of each synthesized tile and
/// may cancel ([`Progress`]). rnn files are decoded whole and cropped.
pub fn decode_region_with_limits(
    bytes: &[u8],
    limits: &Limits,
    region: Region,
    progress: Option<&Progress>,
) -> Result<Image, Error> {
    let hd = container::read_header(bytes)?;
    match hd.model {
        ModelKind::Cw => {
            let weights = WeightsStore::global().cw(&hd.weights_id)?;
            codec::decode_region(bytes, &weights, limits, region, progress)
        }
        _ => codec::crop(&decode_with_limits(bytes, limits)?, region),
    }
}

/// Decodes a `.lic` file within `limits`, with the weights its header names: the embedded
/// ones, or a shipped set found by [`WeightsStore::global`].
pub fn decode_with_limits(bytes: &[u8], limits: &Limits) -> Result<Image, Error> {
    let hd = container::read_header(bytes)?;
    let weights = match hd.model {
        ModelKind::Cw => WeightsStore::global().cw(&hd.weights_id)?,
        // rnn files are decoded with the embedded rnn weights; the cw weights go unused.
        _ => return codec::decode(bytes, CwWeights::embedded_shared()?, limits, None),
    };
    codec::decode(bytes, &weights, limits, None)
}
