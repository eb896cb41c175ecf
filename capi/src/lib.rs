//! The C ABI of the lic decoder (`include/lic.h`, generated from this file by cbindgen):
//! header probe and info, decoding to RGBA8 or to the file's own layout under limits, a
//! region into the caller's buffer, releasing pixel buffers, error strings and the version.
//!
//! Every entry point checks its pointers, never unwinds into C (panics are caught and
//! reported as `LIC_ERR_INTERNAL`), and records a per-thread message for `lic_last_error`.
#![deny(missing_docs)]

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use lic::{ColorType, Error, Limits, WeightsStore};

/// Success.
pub const LIC_OK: i32 = 0;
/// A null pointer or an impossible argument.
pub const LIC_ERR_ARGUMENT: i32 = 1;
/// Not a .lic file, truncated, corrupt.
pub const LIC_ERR_FORMAT: i32 = 2;
/// The image exceeds the limits.
pub const LIC_ERR_LIMITS: i32 = 3;
/// The file needs other weights.
pub const LIC_ERR_WEIGHTS: i32 = 4;
/// Out of memory or an internal failure.
pub const LIC_ERR_INTERNAL: i32 = 5;
/// The caller's progress function cancelled the decode.
pub const LIC_ERR_CANCELLED: i32 = 6;

/// Told by `lic_decode_into` after each decoded tile: `(tiles done, tiles in all, user)`;
/// returning 0 cancels the decode (`LIC_ERR_CANCELLED`), e.g. when a viewer no longer
/// needs the picture. May be called from a worker thread.
pub type LicProgressFn =
    Option<unsafe extern "C" fn(done: usize, total: usize, user: *mut c_void) -> i32>;

/// The caller's `user` pointer, handed back to its progress function on whichever thread
/// calls it (the caller's contract: the function may be called from a worker thread).
struct UserData(*mut c_void);
// SAFETY: lic never dereferences the pointer; it only passes it back to the caller's
// function, which the header says may run on a worker thread.
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}
impl UserData {
    fn get(&self) -> *mut c_void {
        self.0
    }
}

/// Decoder limits (`LicLimits`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LicLimits {
    /// Largest width (default 65536).
    pub max_width: u32,
    /// Largest height (default 65536).
    pub max_height: u32,
    /// Largest pixel count (default 64 Mi).
    pub max_pixels: u64,
    /// Largest memory the decoder may need by its estimate from the header, in bytes
    /// (default 2 GiB); checked before anything is allocated.
    pub max_memory: u64,
}

/// Header facts (`LicInfo`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LicInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Samples per pixel of the coded image: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
    pub channels: u32,
    /// The `-q` the file was made with, 0..1.
    pub quality: f32,
    /// File size in bytes.
    pub file_bytes: u64,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn remember(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn status_of(e: &Error) -> i32 {
    match e {
        Error::Format(_) | Error::Entropy(_) => LIC_ERR_FORMAT,
        Error::Limits { .. } => LIC_ERR_LIMITS,
        Error::WrongWeights { .. } | Error::Weights(_) => LIC_ERR_WEIGHTS,
        Error::Quality(_) | Error::Input(_) => LIC_ERR_ARGUMENT,
        Error::Cancelled { .. } => LIC_ERR_CANCELLED,
        _ => LIC_ERR_INTERNAL,
    }
}

/// Runs `f`, turning errors and panics into a status code and a remembered message.
fn guard(f: impl FnOnce() -> Result<(), (i32, String)>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            remember("");
            LIC_OK
        }
        Ok(Err((status, msg))) => {
            remember(&msg);
            status
        }
        Err(_) => {
            remember("internal error (panic caught at the C boundary)");
            LIC_ERR_INTERNAL
        }
    }
}

fn lic_err(e: Error) -> (i32, String) {
    (status_of(&e), e.to_string())
}

/// # Safety
/// `data` must point to `len` readable bytes (or be null, which is refused).
unsafe fn input<'a>(data: *const u8, len: usize) -> Result<&'a [u8], (i32, String)> {
    if data.is_null() {
        return Err((LIC_ERR_ARGUMENT, "data is NULL".into()));
    }
    // SAFETY: the caller promises `len` readable bytes at `data`.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

fn limits_of(l: *const LicLimits) -> Limits {
    // SAFETY: a non-null pointer must point to a LicLimits (header contract).
    match unsafe { l.as_ref() } {
        Some(l) => Limits {
            max_width: l.max_width,
            max_height: l.max_height,
            max_pixels: l.max_pixels,
            max_memory: l.max_memory,
        },
        None => Limits::default(),
    }
}

fn hand_out(v: Vec<u8>) -> *mut u8 {
    Box::into_raw(v.into_boxed_slice()) as *mut u8
}

/// The `LicInfo` of a header, with the file's size where it is known (0 where not).
fn info_of(h: &lic::Header, file_bytes: u64) -> LicInfo {
    LicInfo {
        width: h.width,
        height: h.height,
        channels: h.color.channels() as u32,
        quality: lic::Codec::quality_of(h).value(),
        file_bytes,
    }
}

/// The default limits.
#[no_mangle]
pub extern "C" fn lic_default_limits() -> LicLimits {
    let l = Limits::default();
    LicLimits {
        max_width: l.max_width,
        max_height: l.max_height,
        max_pixels: l.max_pixels,
        max_memory: l.max_memory,
    }
}

/// Reads the header and chunk table of a whole file (every CRC checked); runs no network.
///
/// # Safety
/// `data` must point to `len` readable bytes; `out` to a writable `LicInfo`.
#[no_mangle]
pub unsafe extern "C" fn lic_info(data: *const u8, len: usize, out: *mut LicInfo) -> i32 {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let bytes = unsafe { input(data, len)? };
        if out.is_null() {
            return Err((LIC_ERR_ARGUMENT, "out is NULL".into()));
        }
        let info = lic::info(bytes).map_err(lic_err)?;
        let h = &info.header;
        // SAFETY: checked non-null; the caller promises it is writable.
        unsafe { *out = info_of(h, info.file_bytes as u64) };
        Ok(())
    })
}

/// Reads the header from the first bytes of a file (the signature and the HEAD chunk, its
/// CRC checked: the first 44 bytes of every file), for loaders that see a prefix before the
/// rest arrives. Sets `file_bytes` to 0: the file's size is not known from a prefix.
///
/// # Safety
/// `data` must point to `len` readable bytes; `out` to a writable `LicInfo`.
#[no_mangle]
pub unsafe extern "C" fn lic_probe(data: *const u8, len: usize, out: *mut LicInfo) -> i32 {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let bytes = unsafe { input(data, len)? };
        if out.is_null() {
            return Err((LIC_ERR_ARGUMENT, "out is NULL".into()));
        }
        let h = lic::container::read_header(bytes).map_err(|e| lic_err(e.into()))?;
        // SAFETY: checked non-null; the caller promises it is writable.
        unsafe { *out = info_of(&h, 0) };
        Ok(())
    })
}

/// Finds the payload of the ancillary chunk `kind` of a (possibly cut) file.
///
/// # Safety
/// As [`lic_icc_profile`].
unsafe fn chunk_of(
    data: *const u8,
    len: usize,
    kind: [u8; 4],
    out: *mut *const u8,
    out_len: *mut usize,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let bytes = unsafe { input(data, len)? };
        if out.is_null() || out_len.is_null() {
            return Err((LIC_ERR_ARGUMENT, "an output pointer is NULL".into()));
        }
        let (file, _) =
            lic::container::Container::parse_prefix(bytes).map_err(|e| lic_err(e.into()))?;
        let found = file.find(kind).map_err(|e| lic_err(e.into()))?;
        // SAFETY: checked non-null; the caller promises they are writable.
        unsafe {
            *out = found.map_or(std::ptr::null(), <[u8]>::as_ptr);
            *out_len = found.map_or(0, <[u8]>::len);
        }
        Ok(())
    })
}

/// The file's ICC colour profile: `*icc` points into `data` (valid as long as it is) and
/// `*icc_len` is its length, or `*icc` is null when the file has none. Works on a prefix of
/// the file that holds the profile (it precedes the coded chunks).
///
/// # Safety
/// `data` must point to `len` readable bytes; `icc` and `icc_len` must be writable.
#[no_mangle]
pub unsafe extern "C" fn lic_icc_profile(
    data: *const u8,
    len: usize,
    icc: *mut *const u8,
    icc_len: *mut usize,
) -> i32 {
    // SAFETY: forwarded caller contract.
    unsafe { chunk_of(data, len, lic::container::types::ICCP, icc, icc_len) }
}

/// The file's EXIF data (a TIFF structure), as [`lic_icc_profile`] gives the ICC profile.
///
/// # Safety
/// As [`lic_icc_profile`].
#[no_mangle]
pub unsafe extern "C" fn lic_exif(
    data: *const u8,
    len: usize,
    exif: *mut *const u8,
    exif_len: *mut usize,
) -> i32 {
    // SAFETY: forwarded caller contract.
    unsafe { chunk_of(data, len, lic::container::types::EXIF, exif, exif_len) }
}

/// The codec the streaming decoders share: the embedded weights, default limits.
fn shared_codec() -> Result<&'static lic::Codec, (i32, String)> {
    static CODEC: std::sync::OnceLock<Result<lic::Codec, (i32, String)>> =
        std::sync::OnceLock::new();
    CODEC
        .get_or_init(|| lic::Codec::embedded().map_err(lic_err))
        .as_ref()
        .map_err(Clone::clone)
}

/// An incremental decoder (`LicStream`): bytes are pushed as they arrive, and polling reports
/// the header, then each picture: one for a cw file once it is complete, one per layer for a
/// progressive (rnn) file, each sharper than the last.
pub struct LicStream {
    dec: lic::stream::StreamDecoder<'static>,
}

/// `LicEvent.kind`: nothing new until more bytes arrive.
pub const LIC_EVENT_NEED_MORE_DATA: i32 = 0;
/// `LicEvent.kind`: the header has arrived (`info` is filled; `file_bytes` is 0).
pub const LIC_EVENT_HEADER: i32 = 1;
/// `LicEvent.kind`: a picture is ready (`layer` of `layers`): `lic_stream_picture_into`.
pub const LIC_EVENT_PICTURE: i32 = 2;
/// `LicEvent.kind`: every picture of the file has been reported.
pub const LIC_EVENT_DONE: i32 = 3;

/// What [`lic_stream_poll`] reports (`LicEvent`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LicEvent {
    /// One of the `LIC_EVENT_*` codes.
    pub kind: i32,
    /// `LIC_EVENT_PICTURE`: layers decoded so far (1-based).
    pub layer: u32,
    /// `LIC_EVENT_PICTURE`: layers in the file (1 for a cw file).
    pub layers: u32,
    /// `LIC_EVENT_HEADER`: the header's facts.
    pub info: LicInfo,
}

/// A new incremental decoder on the embedded weights, or null if they cannot be loaded
/// (`lic_last_error` says why). Release it with `lic_stream_free`.
#[no_mangle]
pub extern "C" fn lic_stream_new() -> *mut LicStream {
    let mut out = std::ptr::null_mut();
    guard(|| {
        let dec = lic::stream::StreamDecoder::new(shared_codec()?);
        out = Box::into_raw(Box::new(LicStream { dec }));
        Ok(())
    });
    out
}

/// Releases a decoder from `lic_stream_new`; null is ignored.
///
/// # Safety
/// `stream` must be null or a decoder from `lic_stream_new`, not yet released.
#[no_mangle]
pub unsafe extern "C" fn lic_stream_free(stream: *mut LicStream) {
    if !stream.is_null() {
        // SAFETY: the caller hands back a pointer from `lic_stream_new`, once.
        drop(unsafe { Box::from_raw(stream) });
    }
}

/// Appends the next `len` bytes of the file.
///
/// # Safety
/// `stream` must be a live decoder from `lic_stream_new`; `data` must point to `len`
/// readable bytes.
#[no_mangle]
pub unsafe extern "C" fn lic_stream_push(
    stream: *mut LicStream,
    data: *const u8,
    len: usize,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let bytes = unsafe { input(data, len)? };
        // SAFETY: a live decoder, not used elsewhere during the call (caller contract).
        let s = unsafe { stream.as_mut() }.ok_or((LIC_ERR_ARGUMENT, "stream is NULL".into()))?;
        s.dec.push(bytes);
        Ok(())
    })
}

/// Advances as far as the bytes pushed so far allow and reports one event in `*event`; call
/// again until `LIC_EVENT_NEED_MORE_DATA` or `LIC_EVENT_DONE`. A corrupt file or one over the
/// default limits gives an error as soon as its bytes have arrived.
///
/// # Safety
/// `stream` must be a live decoder from `lic_stream_new`; `event` must be writable.
#[no_mangle]
pub unsafe extern "C" fn lic_stream_poll(stream: *mut LicStream, event: *mut LicEvent) -> i32 {
    guard(|| {
        // SAFETY: a live decoder, not used elsewhere during the call (caller contract).
        let s = unsafe { stream.as_mut() }.ok_or((LIC_ERR_ARGUMENT, "stream is NULL".into()))?;
        if event.is_null() {
            return Err((LIC_ERR_ARGUMENT, "event is NULL".into()));
        }
        use lic::stream::Event;
        let mut e = LicEvent::default();
        match s.dec.poll().map_err(lic_err)? {
            Event::HeaderKnown(h) => {
                e.kind = LIC_EVENT_HEADER;
                e.info = info_of(&h, 0);
            }
            Event::PictureReady { layer, layers } => {
                e.kind = LIC_EVENT_PICTURE;
                e.layer = layer;
                e.layers = layers;
            }
            Event::Done => e.kind = LIC_EVENT_DONE,
            _ => e.kind = LIC_EVENT_NEED_MORE_DATA,
        }
        // SAFETY: checked non-null; the caller promises it is writable.
        unsafe { *event = e };
        Ok(())
    })
}

/// Writes the latest picture as RGBA8 into the caller's buffer, rows `stride` bytes apart
/// (as `lic_decode_into`); `LIC_ERR_ARGUMENT` before the first `LIC_EVENT_PICTURE`.
///
/// # Safety
/// `stream` must be a live decoder from `lic_stream_new`; `dst` must point to `dst_len`
/// writable bytes.
#[no_mangle]
pub unsafe extern "C" fn lic_stream_picture_into(
    stream: *const LicStream,
    dst: *mut u8,
    dst_len: usize,
    stride: usize,
) -> i32 {
    guard(|| {
        // SAFETY: a live decoder (caller contract).
        let s = unsafe { stream.as_ref() }.ok_or((LIC_ERR_ARGUMENT, "stream is NULL".into()))?;
        let img = s
            .dec
            .picture()
            .ok_or((LIC_ERR_ARGUMENT, "no picture has been reported yet".into()))?;
        // SAFETY: forwarded caller contract.
        unsafe { write_rgba8(img, dst, dst_len, stride) }
    })
}

/// Checks that `dst_len` bytes hold a `width`×`height` RGBA8 picture with rows `stride`
/// bytes apart; returns the row's length.
fn check_rgba8_buffer(
    width: u32,
    height: u32,
    dst_len: usize,
    stride: usize,
) -> Result<usize, (i32, String)> {
    let row = width as usize * 4;
    let needed = (height as usize)
        .checked_sub(1)
        .map_or(0, |h| h * stride + row);
    if stride < row || dst_len < needed {
        return Err((
            LIC_ERR_ARGUMENT,
            format!(
                "a {width}x{height} RGBA8 picture needs a stride of at least {row} and {needed} bytes"
            ),
        ));
    }
    Ok(row)
}

/// Writes `img` as RGBA8 rows `stride` bytes apart into `dst`, after checking the sizes.
///
/// # Safety
/// `dst` must be null (refused) or point to `dst_len` writable bytes.
unsafe fn write_rgba8(
    img: &lic::Image,
    dst: *mut u8,
    dst_len: usize,
    stride: usize,
) -> Result<(), (i32, String)> {
    if dst.is_null() {
        return Err((LIC_ERR_ARGUMENT, "dst is NULL".into()));
    }
    let row = check_rgba8_buffer(img.width, img.height, dst_len, stride)?;
    // SAFETY: the caller promises `dst_len` writable bytes at `dst`, checked above to hold
    // every row.
    let out = unsafe { std::slice::from_raw_parts_mut(dst, dst_len) };
    let ch = img.color.channels();
    for (y, src) in img.data.chunks_exact(img.width as usize * ch).enumerate() {
        to_rgba8(img.color, src, &mut out[y * stride..y * stride + row]);
    }
    Ok(())
}

/// The library's version, "MAJOR.MINOR.PATCH", a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn lic_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// Expands samples of `color` to RGBA8 (grey to three channels, a missing alpha to 255);
/// `dst` holds as many pixels as `src`.
fn to_rgba8(color: ColorType, src: &[u8], dst: &mut [u8]) {
    let px = dst.chunks_exact_mut(4);
    match color {
        ColorType::Gray => px
            .zip(src)
            .for_each(|(d, &g)| d.copy_from_slice(&[g, g, g, 255])),
        ColorType::GrayAlpha => px
            .zip(src.chunks_exact(2))
            .for_each(|(d, p)| d.copy_from_slice(&[p[0], p[0], p[0], p[1]])),
        ColorType::Rgb => px
            .zip(src.chunks_exact(3))
            .for_each(|(d, p)| d.copy_from_slice(&[p[0], p[1], p[2], 255])),
        ColorType::Rgba => dst.copy_from_slice(src),
    }
}

/// A rectangle of pixels (`LicRegion`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LicRegion {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Decodes RGBA8 into the caller's buffer: row r of the picture, or of `*region` (null: the
/// whole picture), at `dst + r·stride`, `width·4` bytes each. Only the tiles under a region
/// are decoded. `threads` > 0 runs the decode on that many worker threads of its own (the
/// pixels do not depend on it); 0 uses one per core. `progress` (may be null) hears of each
/// decoded tile of a cw file with `user`, and cancels the decode by returning 0.
///
/// # Safety
/// `data` must point to `len` readable bytes, `dst` to `dst_len` writable bytes; `limits`
/// and `region` are null or point to their structs; `progress`, if not null, must be safe to
/// call with `user` from any thread until this call returns.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn lic_decode_into(
    data: *const u8,
    len: usize,
    limits: *const LicLimits,
    region: *const LicRegion,
    threads: u32,
    progress: LicProgressFn,
    user: *mut c_void,
    dst: *mut u8,
    dst_len: usize,
    stride: usize,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let bytes = unsafe { input(data, len)? };
        if dst.is_null() {
            return Err((LIC_ERR_ARGUMENT, "dst is NULL".into()));
        }
        let hd = lic::container::read_header(bytes).map_err(|e| lic_err(e.into()))?;
        // SAFETY: a non-null region points to a LicRegion (header contract).
        let r = match unsafe { region.as_ref() } {
            Some(r) => lic::Region {
                x: r.x,
                y: r.y,
                width: r.width,
                height: r.height,
            },
            None => lic::Region {
                x: 0,
                y: 0,
                width: hd.width,
                height: hd.height,
            },
        };
        // Refused before decoding, so a wrong buffer costs no work.
        check_rgba8_buffer(r.width, r.height, dst_len, stride)?;
        let limits = limits_of(limits);
        let progress: Option<lic::Progress> = progress.map(|f| {
            let user = UserData(user);
            // SAFETY: the caller promises `f` may be called with `user` from any thread
            // while this call runs; the codec calls it only during the decode below.
            std::sync::Arc::new(move |done, total| unsafe { f(done, total, user.get()) } != 0)
                as lic::Progress
        });
        let decode = || lic::decode_region_with_limits(bytes, &limits, r, progress.as_ref());
        let img = if threads > 0 {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads as usize)
                .build()
                .map_err(|e| (LIC_ERR_INTERNAL, e.to_string()))?
                .install(decode)
        } else {
            decode()
        }
        .map_err(lic_err)?;
        // SAFETY: forwarded caller contract.
        unsafe { write_rgba8(&img, dst, dst_len, stride) }
    })
}

/// Decodes to the file's own layout (`LicInfo.channels` samples per pixel). On success
/// `*pixels` points to `*out_len` bytes that the caller releases with
/// `lic_free(*pixels, *out_len)`. `limits` may be null for the defaults.
///
/// # Safety
/// `data` must point to `len` readable bytes; every out-pointer must be writable; `limits`
/// is null or points to a `LicLimits`.
#[no_mangle]
pub unsafe extern "C" fn lic_decode(
    data: *const u8,
    len: usize,
    limits: *const LicLimits,
    pixels: *mut *mut u8,
    out_len: *mut usize,
    width: *mut u32,
    height: *mut u32,
    channels: *mut u32,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let bytes = unsafe { input(data, len)? };
        if pixels.is_null()
            || out_len.is_null()
            || width.is_null()
            || height.is_null()
            || channels.is_null()
        {
            return Err((LIC_ERR_ARGUMENT, "an output pointer is NULL".into()));
        }
        let img = lic::decode_with_limits(bytes, &limits_of(limits)).map_err(lic_err)?;
        // SAFETY: all checked non-null; the caller promises they are writable.
        unsafe {
            *width = img.width;
            *height = img.height;
            *channels = img.color.channels() as u32;
            *out_len = img.data.len();
            *pixels = hand_out(img.data);
        }
        Ok(())
    })
}

/// Decodes to RGBA8 (grey is expanded, a missing alpha is 255). On success `*pixels` points
/// to `width·height·4` bytes that the caller releases with `lic_free(*pixels,
/// width·height·4)`. `limits` may be null for the defaults.
///
/// # Safety
/// As [`lic_decode`].
#[no_mangle]
pub unsafe extern "C" fn lic_decode_rgba8(
    data: *const u8,
    len: usize,
    limits: *const LicLimits,
    pixels: *mut *mut u8,
    width: *mut u32,
    height: *mut u32,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let bytes = unsafe { input(data, len)? };
        if pixels.is_null() || width.is_null() || height.is_null() {
            return Err((LIC_ERR_ARGUMENT, "an output pointer is NULL".into()));
        }
        let img = lic::decode_with_limits(bytes, &limits_of(limits)).map_err(lic_err)?;
        let n = img.width as usize * img.height as usize;
        let mut rgba = Vec::new();
        rgba.try_reserve_exact(n * 4)
            .map_err(|_| (LIC_ERR_INTERNAL, "out of memory".to_string()))?;
        rgba.resize(n * 4, 0);
        to_rgba8(img.color, &img.data, &mut rgba);
        // SAFETY: all checked non-null; the caller promises they are writable.
        unsafe {
            *width = img.width;
            *height = img.height;
            *pixels = hand_out(rgba);
        }
        Ok(())
    })
}

/// Adds a folder, searched first, for the weights of files made with other weights than the
/// embedded ones (`cw-ID.safetensors`); `LIC_WEIGHTS_PATH` and the user's data folder are
/// searched anyway.
///
/// # Safety
/// `path` must be null (refused) or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn lic_add_weights_dir(path: *const c_char) -> i32 {
    guard(|| {
        if path.is_null() {
            return Err((LIC_ERR_ARGUMENT, "path is NULL".into()));
        }
        // SAFETY: the caller promises a NUL-terminated string.
        let c = unsafe { std::ffi::CStr::from_ptr(path) };
        let dir = c
            .to_str()
            .map_err(|_| (LIC_ERR_ARGUMENT, "path is not UTF-8".to_string()))?;
        WeightsStore::global().add_dir(dir);
        Ok(())
    })
}

/// Releases a buffer returned by a decode function; null is ignored.
///
/// # Safety
/// `pixels` must be null or a pointer returned by `lic_decode*` with its length, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn lic_free(pixels: *mut u8, len: usize) {
    if !pixels.is_null() {
        // SAFETY: `pixels`/`len` came from `hand_out` (a boxed slice of exactly `len` bytes).
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(pixels, len)) });
    }
}

/// A static description of a status code.
#[no_mangle]
pub extern "C" fn lic_status_string(status: i32) -> *const c_char {
    let s: &'static [u8] = match status {
        LIC_OK => b"ok\0",
        LIC_ERR_ARGUMENT => b"invalid argument\0",
        LIC_ERR_FORMAT => b"not a valid .lic file (corrupt, truncated or unsupported)\0",
        LIC_ERR_LIMITS => b"image exceeds the decoder limits\0",
        LIC_ERR_WEIGHTS => b"the file needs weights this library does not have\0",
        LIC_ERR_INTERNAL => b"internal error or out of memory\0",
        LIC_ERR_CANCELLED => b"cancelled by the caller\0",
        _ => b"unknown status\0",
    };
    s.as_ptr() as *const c_char
}

/// The last failure's message on this thread ("" after a success), valid until this thread's
/// next call.
#[no_mangle]
pub extern "C" fn lic_last_error() -> *const c_char {
    // The pointer stays valid until the next lic call on this thread replaces the string.
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}
