//! Incremental decoding for viewers: feed bytes as they arrive and poll for what is known.
//!
//! ```no_run
//! use lic::stream::{Event, StreamDecoder};
//! let codec = lic::Codec::embedded()?;
//! let mut dec = StreamDecoder::new(&codec);
//! # let network_chunks: Vec<Vec<u8>> = Vec::new();
//! for part in network_chunks {
//!     dec.push(&part);
//!     loop {
//!         match dec.poll()? {
//!             Event::HeaderKnown(h) => println!("{}x{}", h.width, h.height),
//!             Event::PictureReady { layer, layers } => println!("picture {layer}/{layers}"),
//!             _ => break, // NeedMoreData, Done, and kinds added later
//!         }
//!     }
//! }
//! # Ok::<(), lic::Error>(())
//! ```
//!
//! A cw file yields one picture, once its last chunk (DONE) has arrived. An rnn file yields a
//! picture after every layer (RNLY chunk): the decoder keeps its recurrent state between
//! layers, so each layer costs one synthesis iteration, not a decode from the start. Chunk
//! boundaries are scanned once as bytes arrive, so feeding a file in many small pieces costs
//! no re-parsing.

use crate::codec::rnn::{layers_for_quality, Progressive};
use crate::container::{self, types, FormatError, Header, ModelKind};
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
    /// rnn files: the decoder between layers, and the alpha plane once ALPH has arrived.
    rnn: Option<Progressive<'c>>,
    alpha: Option<Vec<u8>>,
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
            rnn: None,
            alpha: None,
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

    /// Advances as far as the bytes allow, reporting one event per call (call again until
    /// `NeedMoreData` or `Done`). Errors (a corrupt chunk, an image over the limits) are
    /// reported as soon as the offending bytes have arrived.
    pub fn poll(&mut self) -> Result<Event, Error> {
        let Some(header) = self.header.clone() else {
            return match container::read_header(&self.buf) {
                Ok(h) => {
                    self.codec.limits.check(&h)?;
                    if h.model == ModelKind::Rnn {
                        let weights = self.codec.rnn_weights()?;
                        self.rnn = Some(Progressive::new(weights, &h)?);
                    }
                    self.scanned = container::SIGNATURE.len()
                        + container::CHUNK_OVERHEAD
                        + container::HEAD_LEN;
                    self.header = Some(h.clone());
                    Ok(Event::HeaderKnown(h))
                }
                Err(FormatError::Truncated(_)) => Ok(Event::NeedMoreData),
                Err(e) => Err(e.into()),
            };
        };
        let layers = layers_for_quality(header.quality);
        while !self.complete {
            let (chunk, next) = match container::read_chunk(&self.buf, self.scanned) {
                Ok(c) => c,
                Err(FormatError::Truncated(_)) => return Ok(Event::NeedMoreData),
                Err(e) => return Err(e.into()),
            };
            self.scanned = next;
            self.complete = chunk.kind == types::DONE;
            let Some(rnn) = self.rnn.as_mut() else {
                continue;
            };
            match chunk.kind {
                types::ALPH if header.color.has_alpha() && rnn.layers() == 0 => {
                    let n = header.width as usize * header.height as usize;
                    self.alpha = Some(crate::codec::inflate_alpha(chunk.data, n)?);
                }
                types::RNLY => {
                    if header.color.has_alpha() && self.alpha.is_none() {
                        return Err(Error::Format(FormatError::Structure(
                            "ALPH must come before the first RNLY chunk",
                        )));
                    }
                    if rnn.layers() >= layers {
                        return Err(Error::Format(FormatError::Structure(
                            "more RNLY chunks than the quality gives",
                        )));
                    }
                    rnn.push_layer(chunk.data)?;
                    self.picture = Some(rnn.picture(self.alpha.as_deref())?);
                    return Ok(Event::PictureReady {
                        layer: rnn.layers() as u32,
                        layers: layers as u32,
                    });
                }
                _ => {}
            }
        }
        if let Some(rnn) = &self.rnn {
            if rnn.layers() != layers {
                return Err(Error::Format(FormatError::Structure(
                    "the number of RNLY chunks differs from the layers the quality gives",
                )));
            }
            return Ok(Event::Done);
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
