//! Incremental decoding for viewers: feed bytes as they arrive and poll for what is known.
//!
//! ```no_run
//! use lic::stream::{Event, StreamDecoder};
//! let codec = lic::Codec::embedded()?;
//! let mut dec = StreamDecoder::new(&codec);
//! # let network_chunks: Vec<Vec<u8>> = Vec::new();
//! for part in network_chunks {
//!     dec.push(&part);
//!     match dec.poll()? {
//!         Event::HeaderKnown(h) => println!("{}x{}", h.width, h.height),
//!         Event::PictureReady { layer, layers } => println!("picture {layer}/{layers}"),
//!         _ => {} // NeedMoreData, Done, and kinds added later
//!     }
//! }
//! # Ok::<(), lic::Error>(())
//! ```
//!
//! A cw file yields one picture, once its last chunk (DONE) has arrived. Chunk boundaries
//! are scanned once as bytes arrive, so feeding a file in many small pieces costs no
//! re-parsing.

use crate::container::{self, FormatError, Header};
use crate::{Codec, Error, Image};

/// What a [`StreamDecoder`] knows after the bytes fed so far.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Nothing new can be decoded until more bytes arrive.
    NeedMoreData,
    /// The header has just become complete (reported once).
    HeaderKnown(Header),
    /// A full-size picture is ready ([`StreamDecoder::picture`]): layer `layer` of `layers`.
    PictureReady {
        /// Layers decoded so far (1-based).
        layer: u32,
        /// Layers in the file.
        layers: u32,
    },
    /// Every picture of the file has been reported.
    Done,
}

/// Decodes a `.lic` file from bytes that arrive piece by piece.
pub struct StreamDecoder<'c> {
    codec: &'c Codec,
    buf: Vec<u8>,
    /// End of the last complete chunk checked so far.
    scanned: usize,
    header: Option<Header>,
    complete: bool,
    picture: Option<Image>,
}

impl<'c> StreamDecoder<'c> {
    /// A decoder using `codec`'s weights and limits.
    pub fn new(codec: &'c Codec) -> Self {
        Self {
            codec,
            buf: Vec::new(),
            scanned: 0,
            header: None,
            complete: false,
            picture: None,
        }
    }

    /// Appends bytes that arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.complete {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The header, once known.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// The latest decoded picture.
    pub fn picture(&self) -> Option<&Image> {
        self.picture.as_ref()
    }

    /// Takes the latest decoded picture.
    pub fn into_picture(self) -> Option<Image> {
        self.picture
    }

    /// Advances as far as the bytes allow. Errors (a corrupt chunk, an image over the limits)
    /// are reported as soon as the offending bytes have arrived.
    pub fn poll(&mut self) -> Result<Event, Error> {
        if self.header.is_none() {
            return match container::read_header(&self.buf) {
                Ok(h) => {
                    self.codec.limits.check(&h)?;
                    self.scanned = container::SIGNATURE.len()
                        + container::CHUNK_OVERHEAD
                        + container::HEAD_LEN;
                    self.header = Some(h.clone());
                    Ok(Event::HeaderKnown(h))
                }
                Err(FormatError::Truncated(_)) => Ok(Event::NeedMoreData),
                Err(e) => Err(e.into()),
            };
        }
        while !self.complete {
            match container::read_chunk(&self.buf, self.scanned) {
                Ok((chunk, next)) => {
                    self.complete = chunk.kind == container::types::DONE;
                    self.scanned = next;
                }
                Err(FormatError::Truncated(_)) => return Ok(Event::NeedMoreData),
                Err(e) => return Err(e.into()),
            }
        }
        if self.picture.is_none() {
            self.buf.truncate(self.scanned);
            self.picture = Some(self.codec.decode(&self.buf)?);
            return Ok(Event::PictureReady {
                layer: 1,
                layers: 1,
            });
        }
        Ok(Event::Done)
    }
}
