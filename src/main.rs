//! The `lic` command line.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lic::{Codec, Image};

// Training and inference allocate and free many large tensors; mimalloc reuses them
// instead of faulting in fresh zeroed pages each time (measured: ~2x faster training steps).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "lic", version, about = "lic: a learned image codec")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Worker threads (default: one per core). The pixels do not depend on it.
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    /// Print one summary line per encode or decode on stderr (size, bpp, quality, time).
    #[arg(short = 'v', long, global = true)]
    verbose: bool,
    /// Print no warnings (errors still go to stderr).
    #[arg(long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

/// Images from this many pixels get a progress bar (on a terminal, without `--quiet`): their
/// encode or decode takes a few seconds.
const PROGRESS_PIXELS: u64 = 2_000_000;

/// A progress bar on stderr for the network passes of `codec`, when stderr is a terminal,
/// warnings are on and the image is large enough to take a while.
fn with_progress_bar(
    codec: Codec,
    pixels: u64,
    what: &str,
) -> (Codec, Option<indicatif::ProgressBar>) {
    use std::io::IsTerminal;
    if pixels < PROGRESS_PIXELS
        || QUIET.load(std::sync::atomic::Ordering::Relaxed)
        || !std::io::stderr().is_terminal()
    {
        return (codec, None);
    }
    let bar = indicatif::ProgressBar::new(0)
        .with_message(what.to_string())
        .with_style(
            indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    let b = bar.clone();
    let codec = codec.with_progress(move |done, total| {
        b.set_length(total as u64);
        b.set_position(done as u64);
        true
    });
    (codec, Some(bar))
}

/// The decoder's limits (format-spec §7), shared by `encode` (which writes nothing they would
/// refuse) and `decode`.
#[derive(clap::Args, Clone, Copy, Debug)]
struct LimitArgs {
    /// Largest picture, in pixels (default 64 Mi).
    #[arg(long, value_name = "N")]
    max_pixels: Option<u64>,
    /// Largest decoder memory, in MiB, as estimated from the header before anything is
    /// allocated; the estimate is an upper bound of the decode's peak (default 2048).
    #[arg(long, value_name = "MIB")]
    max_memory: Option<u64>,
    /// No limits but the format's own.
    #[arg(long, conflicts_with_all = ["max_pixels", "max_memory"])]
    no_limits: bool,
}

impl LimitArgs {
    fn limits(self) -> lic::Limits {
        if self.no_limits {
            return lic::Limits::none();
        }
        let mut l = lic::Limits::default();
        if let Some(p) = self.max_pixels {
            l.max_pixels = p;
        }
        if let Some(m) = self.max_memory {
            l.max_memory = m.saturating_mul(1 << 20);
        }
        l
    }
}

/// An error's message, with the flags that raise the limits when it is a limit error.
fn with_limit_hint(e: &lic::Error) -> String {
    match e {
        lic::Error::Limits { .. } | lic::Error::EncodeLimits { .. } => {
            format!("{e} (--max-pixels, --max-memory or --no-limits raise the limits)")
        }
        _ => e.to_string(),
    }
}

/// Set by `--quiet`: [`warn!`] stays silent.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A warning on stderr, unless `--quiet`.
macro_rules! warn {
    ($($arg:tt)*) => {{
        if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("warning: {}", format!($($arg)*));
        }
    }};
}

#[derive(Subcommand)]
enum Command {
    /// Encode an image (PNG, JPEG, PPM, WebP, TIFF, BMP) to .lic.
    Encode {
        /// Input image, or - for standard input.
        input: String,
        /// Output .lic file, or - for standard output.
        output: Option<String>,
        /// Output file (same as the second positional argument).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        out_flag: Option<String>,
        /// Quality from 0 (smallest file) to 1 (best picture). On photographs `-q x` gives
        /// at least the PSNR of JPEG at quality 100x in fewer bytes, from 0.05 up to about
        /// 0.85, where the model's best quality ends.
        #[arg(
            short = 'q',
            long = "quality",
            default_value_t = 0.75,
            allow_negative_numbers = true
        )]
        quality: f32,
        /// Rate control: the largest file of at most BYTES bytes (the whole file, metadata
        /// included). Instead of -q.
        #[arg(long, value_name = "BYTES", conflicts_with_all = ["quality", "target_bpp"])]
        target_size: Option<usize>,
        /// Rate control: the largest file of at most B bits per pixel (the whole file).
        /// Instead of -q.
        #[arg(long, value_name = "B", conflicts_with = "quality")]
        target_bpp: Option<f64>,
        /// Tile side in pixels (a multiple of 16, at least 64; 0: one tile). Decoder memory
        /// depends on the tile, not on the image. cw only.
        #[arg(long, default_value_t = lic::codec::DEFAULT_TILE)]
        tile: u32,
        /// Model: cw (the default, unless --weights names rnn weights) or rnn (progressive:
        /// every layer is a chunk, and a file cut after any layer still decodes). With rnn,
        /// -q sets the layer count: 1 + round(q·11).
        #[arg(long)]
        model: Option<String>,
        /// Weights file to use instead of the embedded default.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// The limits this file must fit: the encoder refuses an image that a decoder with
        /// them would refuse (the defaults are the decoder's).
        #[command(flatten)]
        limits: LimitArgs,
        /// Leave out the input's ICC profile and EXIF data.
        #[arg(long)]
        strip: bool,
    },
    /// Decode a .lic file; the output format follows the extension (- writes PNG to stdout).
    Decode {
        /// Input .lic file, or - for standard input.
        input: String,
        /// Output image, or - for standard output.
        output: Option<String>,
        /// Output file (same as the second positional argument).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        out_flag: Option<String>,
        /// Decode only this rectangle, X,Y,WIDTH,HEIGHT in pixels, clipped to the picture
        /// (only the tiles under it are synthesized).
        #[arg(long, value_parser = parse_region)]
        region: Option<lic::Region>,
        /// Quality of a JPEG output, 1 to 100.
        #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100))]
        out_quality: u8,
        /// Decode only the first K layers of an rnn file (K from 1).
        #[arg(long, value_name = "K", value_parser = parse_layers)]
        layers: Option<usize>,
        /// Weights file to use instead of the embedded default.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Folder searched first for the weights of files made with other weights than the
        /// embedded ones (cw-ID.safetensors; LIC_WEIGHTS_PATH and ~/.local/share/lic/weights
        /// are searched too).
        #[arg(long, value_name = "DIR")]
        weights_dir: Option<PathBuf>,
        /// Limits checked before anything is allocated.
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Describe a .lic file without decoding it.
    Info {
        /// The .lic file, or - for standard input.
        input: String,
    },
}

/// `--layers K`: a layer count of at least 1.
fn parse_layers(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(k) if k >= 1 => Ok(k),
        _ => Err("a layer count of at least 1".into()),
    }
}

fn read_input(path: &str) -> Result<Vec<u8>, String> {
    if path == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        Ok(v)
    } else {
        std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
    }
}

/// Writes bytes to stdout. A reader that closed the pipe early (`lic info f | head -1`,
/// `lic decode f.lic - | head -c 100`) chose to stop: not an error.
fn write_stdout(bytes: &[u8]) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write standard output: {e}"))
        }
        _ => Ok(()),
    }
}

/// Writes a result to a file, or to stdout for `-`.
fn write_output(path: &str, bytes: &[u8]) -> Result<(), String> {
    if path == "-" {
        write_stdout(bytes)
    } else {
        std::fs::write(path, bytes).map_err(|e| format!("cannot write {path}: {e}"))
    }
}

fn codec(weights: &Option<PathBuf>) -> Result<Codec, String> {
    match weights {
        Some(p) => Codec::from_weights_file(p)
            .map_err(|e| format!("cannot load weights {}: {e}", p.display())),
        None => Codec::embedded().map_err(|e| e.to_string()),
    }
}

/// Writes `img` as PNG to the file `path` (or stdout for `-`) as it compresses, with the ICC
/// profile and EXIF of `meta`: neither the filtered picture nor the compressed file is held
/// in memory, which for a large picture would cost more than the decoder's own working set.
/// A file left incomplete by an error is removed.
fn stream_png(path: &str, img: &Image, meta: &lic::Metadata) -> Result<(), String> {
    let write = |w: &mut dyn Write| -> Result<(), png::EncodingError> {
        let mut info = png::Info::with_size(img.width, img.height);
        info.icc_profile = meta.icc_profile.as_deref().map(std::borrow::Cow::Borrowed);
        info.exif_metadata = meta.exif.as_deref().map(std::borrow::Cow::Borrowed);
        let mut enc = png::Encoder::with_info(w, info)?;
        enc.set_color(match img.color.channels() {
            1 => png::ColorType::Grayscale,
            2 => png::ColorType::GrayscaleAlpha,
            3 => png::ColorType::Rgb,
            _ => png::ColorType::Rgba,
        });
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        enc.set_filter(png::Filter::Adaptive);
        let mut writer = enc.write_header()?;
        let mut stream = writer.stream_writer()?;
        stream.write_all(&img.data)?;
        stream.finish()?;
        writer.finish()
    };
    if path == "-" {
        // The PNG stream writer turns the sink's I/O errors into messages, so the sink itself
        // notes a reader that stopped early (`| head`), which is not a failure.
        struct Sink<W> {
            inner: W,
            broken_pipe: bool,
        }
        impl<W: Write> Write for Sink<W> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let r = self.inner.write(buf);
                self.broken_pipe |=
                    matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe);
                r
            }
            fn flush(&mut self) -> std::io::Result<()> {
                let r = self.inner.flush();
                self.broken_pipe |=
                    matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe);
                r
            }
        }
        let mut out = Sink {
            inner: std::io::BufWriter::new(std::io::stdout().lock()),
            broken_pipe: false,
        };
        let done = write(&mut out)
            .map_err(std::io::Error::other)
            .and_then(|_| out.flush());
        return match done {
            Err(e) if !out.broken_pipe => Err(format!("cannot write standard output: {e}")),
            _ => Ok(()),
        };
    }
    let file = std::fs::File::create(path).map_err(|e| format!("cannot write {path}: {e}"))?;
    let mut out = std::io::BufWriter::new(file);
    let done = write(&mut out)
        .map_err(std::io::Error::other)
        .and_then(|_| out.flush());
    done.map_err(|e| {
        let _ = std::fs::remove_file(path);
        format!("cannot write {path}: {e}")
    })
}

/// Encodes a decoded image in `fmt`, with the ICC profile and EXIF where the format's
/// encoder holds them (PNG, JPEG, WebP, TIFF: ICC; PNG, JPEG: EXIF where supported); `pam`
/// picks PAM over binary PPM/PGM for PNM output, `jpeg_quality` is a JPEG output's quality.
fn write_image(
    img: &Image,
    fmt: image::ImageFormat,
    pam: bool,
    jpeg_quality: u8,
    meta: &lic::Metadata,
) -> Result<Vec<u8>, String> {
    use image::codecs::{jpeg::JpegEncoder, png::PngEncoder};
    use image::ImageEncoder;
    let mut buf = Vec::new();
    let e = |e: image::ImageError| e.to_string();
    if fmt == image::ImageFormat::Png {
        // Straight from the decoded samples: a copy of a large picture costs as much memory
        // as the decoder's own working set.
        let mut enc = PngEncoder::new(&mut buf);
        attach_metadata(&mut enc, meta, fmt);
        let color = lic::image_color_type(img.color).into();
        enc.write_image(&img.data, img.width, img.height, color)
            .map_err(e)?;
        return Ok(buf);
    }
    let dynimg = img.to_dynamic();
    match fmt {
        image::ImageFormat::Jpeg => {
            // JPEG has no alpha: flatten to RGB (or grey).
            let flat = if img.color.is_gray() {
                image::DynamicImage::ImageLuma8(dynimg.to_luma8())
            } else {
                image::DynamicImage::ImageRgb8(dynimg.to_rgb8())
            };
            let mut enc = JpegEncoder::new_with_quality(&mut buf, jpeg_quality);
            attach_metadata(&mut enc, meta, fmt);
            enc.write_image(flat.as_bytes(), img.width, img.height, flat.color().into())
                .map_err(e)?;
        }
        image::ImageFormat::Pnm if !pam => {
            // Binary P6 (colour) or P5 (grey), what cjpeg and the netpbm tools read; they
            // carry no alpha. `.pam` keeps the PAM the image crate writes by default.
            use image::codecs::pnm::{PnmEncoder, PnmSubtype, SampleEncoding};
            if img.color.has_alpha() {
                warn!(
                    "PPM/PGM have no alpha channel: it is dropped (write .pam or .png to keep it)"
                );
            }
            let (flat, subtype) = if img.color.is_gray() {
                let f = image::DynamicImage::ImageLuma8(dynimg.to_luma8());
                (f, PnmSubtype::Graymap(SampleEncoding::Binary))
            } else {
                let f = image::DynamicImage::ImageRgb8(dynimg.to_rgb8());
                (f, PnmSubtype::Pixmap(SampleEncoding::Binary))
            };
            PnmEncoder::new(&mut buf)
                .with_subtype(subtype)
                .write_image(flat.as_bytes(), img.width, img.height, flat.color().into())
                .map_err(e)?;
        }
        _ => {
            if meta.icc_profile.is_some() || meta.exif.is_some() {
                warn!("metadata (ICC/EXIF) is not written to {fmt:?} output");
            }
            dynimg
                .write_to(&mut std::io::Cursor::new(&mut buf), fmt)
                .map_err(e)?;
        }
    }
    Ok(buf)
}

/// Hands the ICC profile and EXIF to an encoder, warning where it does not take them.
fn attach_metadata(
    enc: &mut impl image::ImageEncoder,
    meta: &lic::Metadata,
    fmt: image::ImageFormat,
) {
    if let Some(icc) = &meta.icc_profile {
        if enc.set_icc_profile(icc.clone()).is_err() {
            warn!("the ICC profile is not written ({fmt:?} encoder does not take it)");
        }
    }
    if let Some(exif) = &meta.exif {
        if enc.set_exif_metadata(exif.clone()).is_err() {
            warn!("the EXIF data is not written ({fmt:?} encoder does not take it)");
        }
    }
}

fn output_name(pos: Option<String>, flag: Option<String>, what: &str) -> Result<String, String> {
    match (pos, flag) {
        (Some(_), Some(_)) => Err(format!(
            "give the {what} once: either as an argument or with -o"
        )),
        (Some(p), None) | (None, Some(p)) => Ok(p),
        (None, None) => Err(format!("no {what} given")),
    }
}

/// Parses `X,Y,WIDTH,HEIGHT`.
fn parse_region(s: &str) -> Result<lic::Region, String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{s}: {e}"))?;
    match v[..] {
        [x, y, width, height] => Ok(lic::Region {
            x,
            y,
            width,
            height,
        }),
        _ => Err(format!("{s}: expected X,Y,WIDTH,HEIGHT")),
    }
}

/// `writeln!` into a `String` (which cannot fail).
macro_rules! outln {
    ($t:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($t, $($arg)*);
    }};
}

/// Why a command failed: a usage error (exit status 2, as clap gives for its own) or a
/// failure of the work itself (exit status 1).
enum CliError {
    Usage(String),
    Failed(String),
}

impl From<String> for CliError {
    fn from(e: String) -> Self {
        CliError::Failed(e)
    }
}

/// A usage error: the command line asked for something impossible.
fn usage<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError::Usage(msg.into()))
}

/// Refuses to write over the input file (`lic decode photo.lic photo.lic`, or an encode whose
/// output names its own input).
fn not_the_input(input: &str, out: &str) -> Result<(), String> {
    if input == "-" || out == "-" {
        return Ok(());
    }
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(out)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(format!(
            "the output {out} is the input file; lic does not write over its input"
        ));
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), CliError> {
    QUIET.store(cli.quiet, std::sync::atomic::Ordering::Relaxed);
    if let Some(n) = cli.threads {
        if n == 0 {
            return usage("--threads takes a count of at least 1");
        }
        // candle's CPU kernels size their pools from RAYON_NUM_THREADS when first used;
        // nothing has run yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| CliError::Failed(format!("cannot start {n} threads: {e}")))?;
    }
    let verbose = cli.verbose;
    let start = std::time::Instant::now();
    match cli.command {
        Command::Encode {
            input,
            output,
            out_flag,
            quality,
            target_size,
            target_bpp,
            tile,
            model,
            weights,
            limits,
            strip,
        } => {
            let model = match model.as_deref() {
                None => None,
                Some("cw") => Some(lic::ModelKind::Cw),
                Some("rnn") => {
                    keep_freed_memory();
                    Some(lic::ModelKind::Rnn)
                }
                Some(m) => return usage(format!("unknown model {m}: cw or rnn")),
            };
            let out = output_name(output, out_flag, "output file").or_else(usage)?;
            if let Err(e) = lic::Quality::new(quality) {
                return usage(e.to_string());
            }
            if let Some(b) = target_bpp.filter(|b| !(b.is_finite() && *b > 0.0)) {
                return usage(format!(
                    "--target-bpp {b}: a number of bits per pixel above 0"
                ));
            }
            // Check the tile side before the (slow) image read; 1x1 never tiles, so use a size
            // that always does.
            if let Err(e) = lic::codec::tile_field(tile, u32::MAX, u32::MAX) {
                return usage(e.to_string());
            }
            not_the_input(&input, &out)?;
            let bytes = read_input(&input)?;
            let mut codec = codec(&weights)?
                .with_tile_size(tile)
                .with_limits(limits.limits());
            if let Some(m) = model {
                codec = codec.with_model(m);
            }
            let read = codec
                .read_image(&bytes)
                .map_err(|e| format!("cannot read image {input}: {}", with_limit_hint(&e)))?;
            if read.reduced_depth {
                warn!("{input} has more than 8 bits per sample; lic codes it at 8 bits");
            }
            if read.first_frame_only {
                warn!("{input} is an animated PNG; lic codes its first frame only");
            }
            let (img, mut meta) = (read.image, read.metadata);
            if strip {
                meta = lic::Metadata::default();
            }
            let pixels = img.width as f64 * img.height as f64;
            let target = target_size.or(target_bpp.map(|b| (b * pixels / 8.0).floor() as usize));
            let (codec, bar) = with_progress_bar(codec, pixels as u64, "analysis");
            let encoded = match target {
                Some(bytes) => codec.encode_to_size(&img, bytes, &meta),
                None => codec.encode_full(&img, quality, &meta),
            };
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let (lic, _) = encoded.map_err(|e| e.to_string())?;
            write_output(&out, &lic)?;
            if verbose {
                // One line, as cwebp and cjxl print: what was written and how long it took.
                let head = lic::container::read_header(&lic).map_err(|e| e.to_string())?;
                eprintln!(
                    "{input}: {}x{} -> {} bytes, {:.4} bpp, -q {:.3}, {:.2} s{}",
                    img.width,
                    img.height,
                    lic.len(),
                    lic.len() as f64 * 8.0 / pixels,
                    lic::Codec::quality_of(&head).value(),
                    start.elapsed().as_secs_f64(),
                    peak_memory()
                );
            }
            Ok(())
        }
        Command::Decode {
            input,
            output,
            out_flag,
            region,
            layers,
            weights,
            weights_dir,
            limits,
            out_quality,
        } => {
            let out = output_name(output, out_flag, "output file").or_else(usage)?;
            not_the_input(&input, &out)?;
            let bytes = read_input(&input)?;
            let mut codec = codec(&weights)?;
            if let Some(d) = weights_dir {
                codec = codec.with_weights_dir(d);
            }
            codec = codec.with_limits(limits.limits());
            let header = lic::container::read_header(&bytes)
                .map_err(|e| format!("cannot decode {input}: {e}"))?;
            if layers.is_some() && header.model != lic::ModelKind::Rnn {
                return usage(format!("--layers is for rnn files; {input} is a cw file"));
            }
            // A rectangle that reaches past the picture is clipped to it, as croppers do.
            let region = match region.map(|r| (r, r.clip(header.width, header.height))) {
                None => None,
                Some((_, Some(c))) => Some(c),
                Some((r, None)) => {
                    return usage(format!(
                        "--region {},{},{},{} lies outside the {}x{} picture of {input}",
                        r.x, r.y, r.width, r.height, header.width, header.height
                    ))
                }
            };
            let pixels = region.map_or(header.width as u64 * header.height as u64, |r| {
                r.width as u64 * r.height as u64
            });
            let (codec, bar) = with_progress_bar(codec, pixels, "synthesis");
            let img = if header.model == lic::ModelKind::Rnn {
                keep_freed_memory();
                // rnn files are not tiled: a region is cut from the decoded layers.
                codec.decode_layers(&bytes, layers).and_then(|d| {
                    if d.truncated {
                        warn!(
                            "{input} is cut short: decoded the {} complete layer(s) of {}",
                            d.layers, d.layers_in_file
                        );
                    }
                    match region {
                        Some(r) => lic::codec::crop(&d.image, r),
                        None => Ok(d.image),
                    }
                })
            } else {
                match region {
                    Some(r) => codec.decode_region(&bytes, r),
                    None => codec.decode(&bytes),
                }
            };
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let img = img.map_err(|e| format!("cannot decode {input}: {}", with_limit_hint(&e)))?;
            let meta = lic::metadata(&bytes).map_err(|e| e.to_string())?;
            let fmt = if out == "-" {
                image::ImageFormat::Png
            } else {
                image::ImageFormat::from_path(&out).map_err(|_| {
                    format!("cannot tell the image format of {out} from its extension")
                })?
            };
            let pam = out.to_ascii_lowercase().ends_with(".pam");
            if fmt == image::ImageFormat::Png {
                stream_png(&out, &img, &meta)?;
            } else {
                let encoded = write_image(&img, fmt, pam, out_quality, &meta)
                    .map_err(|e| format!("cannot write {out}: {e}"))?;
                write_output(&out, &encoded)?;
            }
            if verbose {
                eprintln!(
                    "{input}: {} bytes, {:.4} bpp -> {}x{} {}, {:.2} s{}",
                    bytes.len(),
                    bytes.len() as f64 * 8.0 / (img.width as f64 * img.height as f64),
                    img.width,
                    img.height,
                    lic::codec::color_name(img.color),
                    start.elapsed().as_secs_f64(),
                    peak_memory()
                );
            }
            Ok(())
        }
        Command::Info { input } => {
            let bytes = read_input(&input)?;
            let info = lic::info(&bytes).map_err(|e| format!("cannot read {input}: {e}"))?;
            let h = &info.header;
            // The report is written in one piece: a reader that stops early (`| head`)
            // closes the pipe, which ends the command quietly instead of panicking in println!.
            let mut t = String::new();
            outln!(t, "file:       {input}");
            outln!(
                t,
                "size:       {} bytes, {:.4} bpp",
                info.file_bytes,
                info.bpp()
            );
            outln!(
                t,
                "image:      {}x{} {}",
                h.width,
                h.height,
                lic::codec::color_name(h.color)
            );
            outln!(t, "model:      {}", h.model.name());
            outln!(
                t,
                "weights:    {}",
                lic::model::weights::id_hex(&h.weights_id)
            );
            outln!(
                t,
                "quality:    {:.4} (rate code {})",
                lic::Codec::quality_of(h).value(),
                h.quality
            );
            if h.tile == 0 {
                outln!(t, "tiles:      1");
            } else {
                let side = h.tile as u32 * 16;
                outln!(
                    t,
                    "tiles:      {} of {side}x{side} pixels",
                    h.width.div_ceil(side) * h.height.div_ceil(side)
                );
            }
            outln!(
                t,
                "decoding:   needs about {} MiB",
                lic::codec::decode_memory(h).div_ceil(1 << 20)
            );
            if !info.complete {
                outln!(t, "warning:    the file is cut short (no DONE chunk)");
            }
            outln!(t, "chunks:");
            let pixels = h.width as f64 * h.height as f64;
            let mut layer = 0;
            for ((name, len), end) in info.chunks.iter().zip(info.chunk_ends()) {
                if name == "RNLY" {
                    // What a viewer has once this layer has arrived.
                    layer += 1;
                    outln!(
                        t,
                        "  {name}  {len} bytes  layer {layer}: {:.4} bpp so far",
                        end as f64 * 8.0 / pixels
                    );
                } else {
                    outln!(t, "  {name}  {len} bytes");
                }
            }
            Ok(write_stdout(t.as_bytes())?)
        }
    }
}

/// `", N MiB peak"`: the most memory this process has held so far (the kernel's VmHWM), where
/// the system says (Linux); else nothing. Unlike `getrusage`, it does not count what the
/// parent held when it started this process.
fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!(", {} MiB peak", kib.div_ceil(1024)))
        })
        .unwrap_or_default()
}

/// mimalloc v2's `mi_option_purge_delay` (libmimalloc-sys names only some options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory in the process instead of handing it back to the OS, for the work
/// that runs candle's networks: they free and re-allocate the same large tensors at every
/// layer, and the kernel zeroing fresh pages took a quarter of rnn decoding (perf). The cw
/// encoder and decoder reuse their buffers; there, returning pages kept a 6000×4000 decode at 188 MiB
/// instead of 258 MiB, and a 768×512 one at 62 instead of 75 MiB, in the same time.
fn keep_freed_memory() {
    set_purge_delay(-1);
}

/// Sets mimalloc's purge delay (ms; -1: never), unless MIMALLOC_PURGE_DELAY is set.
fn set_purge_delay(ms: std::os::raw::c_long) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide allocator option; no memory is touched.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms) };
    }
}

fn main() -> ExitCode {
    // Freed memory goes back to the OS after 10 ms; the work that runs candle's networks
    // changes that (`keep_freed_memory`). Set explicitly: left to its default, mimalloc
    // returned less (a 6000×4000 decode peaked at 221 MiB, against 188 MiB so).
    set_purge_delay(10);
    // mimalloc asks for transparent huge pages on its arenas (before main, so its own option
    // comes too late), and each 2 MiB page is resident in full once touched: a decode of a
    // 768×512 image peaked at 120 MiB with them, 80 MiB without, in the same time.
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag of this process; no memory
        // is touched and the arguments are plain integers.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(e)) => {
            eprintln!("lic: {e}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(e)) => {
            eprintln!("lic: {e}");
            ExitCode::from(1)
        }
    }
}
