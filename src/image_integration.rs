//! `image` crate integration: [`LicDecoder`] implements `image::ImageDecoder` (with
//! `set_limits`), and [`register_image_hooks`] lets `image::open("x.lic")` decode `.lic`
//! files by extension or by signature.
//!
//! ```no_run
//! lic::image_integration::register_image_hooks();
//! let img = image::open("photo.lic").unwrap();
//! ```

use std::io::Read;

use image::error::{
    DecodingError, ImageFormatHint, LimitError, LimitErrorKind, UnsupportedError,
    UnsupportedErrorKind,
};
use image::{ImageDecoder, ImageDecoderRect, ImageError, ImageResult};

use crate::container::{self, Header};
use crate::{Error, Limits};

/// Largest `.lic` file the decoder reads from a stream (1 GiB): the chunk length limit.
const MAX_FILE: u64 = container::MAX_CHUNK_LEN as u64;

fn hint() -> ImageFormatHint {
    ImageFormatHint::Name("lic".into())
}

fn to_image_error(e: Error) -> ImageError {
    match e {
        Error::Io(io) => ImageError::IoError(io),
        Error::Limits { .. } => {
            ImageError::Limits(LimitError::from_kind(LimitErrorKind::DimensionError))
        }
        Error::WrongWeights { .. } | Error::Weights(_) => {
            ImageError::Unsupported(UnsupportedError::from_format_and_kind(
                hint(),
                UnsupportedErrorKind::GenericFeature(e.to_string()),
            ))
        }
        other => ImageError::Decoding(DecodingError::new(hint(), other)),
    }
}

/// An `image::ImageDecoder` for `.lic` data, decoding with the embedded weights.
pub struct LicDecoder {
    bytes: Vec<u8>,
    header: Header,
    limits: Limits,
}

impl LicDecoder {
    /// Reads the whole stream (at most 1 GiB) and its header; runs no network yet.
    pub fn new<R: Read>(reader: R) -> Result<Self, Error> {
        let mut bytes = Vec::new();
        reader.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(crate::InputError::FileTooLarge(MAX_FILE).into());
        }
        let header = container::read_header(&bytes)?;
        let limits = Limits::default();
        limits.check(&header)?;
        Ok(Self {
            bytes,
            header,
            limits,
        })
    }
}

impl ImageDecoder for LicDecoder {
    fn dimensions(&self) -> (u32, u32) {
        (self.header.width, self.header.height)
    }

    fn color_type(&self) -> image::ColorType {
        crate::image_color_type(self.header.color)
    }

    fn set_limits(&mut self, limits: image::Limits) -> ImageResult<()> {
        let (w, h) = self.dimensions();
        limits.check_dimensions(w, h)?;
        if let Some(mw) = limits.max_image_width {
            self.limits.max_width = self.limits.max_width.min(mw);
        }
        if let Some(mh) = limits.max_image_height {
            self.limits.max_height = self.limits.max_height.min(mh);
        }
        if let Some(alloc) = limits.max_alloc {
            // Refuse before decoding if the decoder's own estimate is over the budget.
            self.limits.max_memory = self.limits.max_memory.min(alloc);
            if crate::codec::decode_memory(&self.header) > alloc {
                return Err(ImageError::Limits(LimitError::from_kind(
                    LimitErrorKind::InsufficientMemory,
                )));
            }
        }
        Ok(())
    }

    /// The file's ICC profile (`iCCP`), so colour-managed viewers show the right colours.
    fn icc_profile(&mut self) -> ImageResult<Option<Vec<u8>>> {
        Ok(crate::metadata(&self.bytes)
            .map_err(to_image_error)?
            .icc_profile)
    }

    /// The file's EXIF data (`eXIf`, a TIFF structure); `image` reads the orientation from it.
    fn exif_metadata(&mut self) -> ImageResult<Option<Vec<u8>>> {
        Ok(crate::metadata(&self.bytes).map_err(to_image_error)?.exif)
    }

    fn read_image(self, buf: &mut [u8]) -> ImageResult<()> {
        let img = crate::decode_with_limits(&self.bytes, &self.limits).map_err(to_image_error)?;
        if buf.len() != img.data.len() {
            return Err(ImageError::Decoding(DecodingError::new(
                hint(),
                "output buffer has the wrong size",
            )));
        }
        buf.copy_from_slice(&img.data);
        Ok(())
    }

    fn read_image_boxed(self: Box<Self>, buf: &mut [u8]) -> ImageResult<()> {
        (*self).read_image(buf)
    }
}

impl ImageDecoderRect for LicDecoder {
    /// Decodes only the rectangle (the tiles under it, [`crate::decode_region_with_limits`])
    /// into `buf`, rows `row_pitch` bytes apart, in the file's own colour type.
    fn read_rect(
        &mut self,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        buf: &mut [u8],
        row_pitch: usize,
    ) -> ImageResult<()> {
        let region = crate::Region {
            x,
            y,
            width,
            height,
        };
        let img = crate::decode_region_with_limits(&self.bytes, &self.limits, region, None)
            .map_err(to_image_error)?;
        let row = width as usize * self.header.color.channels();
        let needed = (height as usize)
            .checked_sub(1)
            .map_or(0, |h| h * row_pitch + row);
        if row_pitch < row || buf.len() < needed {
            return Err(ImageError::Decoding(DecodingError::new(
                hint(),
                "output buffer or row pitch too small for the rectangle",
            )));
        }
        for (k, src) in img.data.chunks_exact(row).enumerate() {
            buf[k * row_pitch..k * row_pitch + row].copy_from_slice(src);
        }
        Ok(())
    }
}

/// Registers `.lic` with the `image` crate: the `lic` extension and the file signature.
/// Returns false when a hook for `lic` was already registered.
pub fn register_image_hooks() -> bool {
    let added = image::hooks::register_decoding_hook(
        "lic".into(),
        Box::new(|r| {
            Ok(Box::new(LicDecoder::new(r).map_err(to_image_error)?) as Box<dyn ImageDecoder>)
        }),
    );
    if added {
        image::hooks::register_format_detection_hook("lic".into(), &container::SIGNATURE, None);
    }
    added
}
