//! kodak-bench: lic's rate-distortion harness. Real encodes to bytes and real decodes for lic
//! and the classic codecs on the Kodak set (or any folder), bpp from the byte count, PSNR and
//! MS-SSIM on 8-bit RGB, wall times; BD-rates against libjpeg-turbo, CSV/JSON/Markdown
//! results and SVG plots beside published reference curves.
//!
//! `cargo run --release -p kodak-bench` (full set) or `... -- --quick` (CI: a subset, and the
//! regression gate in `gate.txt`).

mod bdrate;
mod calibrate;
mod codecs;
mod plot;
mod report;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use codecs::{Codec, Jpeg, Lic, LicRnn, Setting, Webp};
use report::{Record, Series};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HERE: &str = env!("CARGO_MANIFEST_DIR");
/// The images `--quick` uses from the Kodak set: a portrait, fine texture, a face, flat colour.
const QUICK_IMAGES: [&str; 4] = ["kodim04.png", "kodim08.png", "kodim15.png", "kodim23.png"];

#[derive(Parser)]
#[command(
    version,
    about = "Rate-distortion harness: lic against libjpeg-turbo and libwebp"
)]
struct Args {
    /// Folder of PNG images (default: the 24 Kodak images in kodak-bench/kodak).
    dir: Option<PathBuf>,
    /// A subset of images and rates that fits in a few minutes on 2 cores; checks the gate.
    #[arg(long)]
    quick: bool,
    /// Use only the first N images (sorted by name).
    #[arg(long)]
    images: Option<usize>,
    /// Worker threads for the codecs (default: all cores). Images run one at a time so the
    /// times are per image.
    #[arg(long)]
    threads: Option<usize>,
    /// Output folder (default: kodak-bench/results, or results/quick with --quick).
    #[arg(long)]
    out: Option<PathBuf>,
    /// lic weights file (default: the weights embedded in lic).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Number of lic -q values, evenly spaced over [0, 1].
    #[arg(long)]
    lic_points: Option<usize>,
    /// Skip WebP.
    #[arg(long)]
    no_webp: bool,
    /// Skip lic's rnn model (its 12 layer counts take most of a full run).
    #[arg(long)]
    no_rnn: bool,
    /// Fit lic's `-q` scale on the photographs in DIR (not the test set): writes
    /// calibration.md with the table and the rate codes for `lic::rate::CW_RATE_KNOTS`.
    #[arg(long, requires = "dir")]
    calibrate: bool,
    /// Fit the `-q` scale again from the calibration.csv of an earlier --calibrate run (no
    /// images are coded; with --margin-db).
    #[arg(long, value_name = "CSV", conflicts_with = "calibrate")]
    refit: Option<PathBuf>,
    /// With --calibrate: rate codes measured (evenly spaced).
    #[arg(long, default_value_t = 31)]
    calibrate_points: usize,
    /// With --calibrate or --refit: dB over JPEG's PSNR that each step aims for on the
    /// calibration photographs (0.2 left lic up to 0.1 dB under JPEG on Kodak).
    #[arg(long, default_value_t = 0.4)]
    margin_db: f64,
    /// Regression gate file (`max_quick_bd_rate_psnr_percent = X` for cw, `max_quick_rnn_prefix_bd_rate_psnr_percent = X` for the rnn prefix curve), checked with --quick.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/gate.txt"))]
    gate: PathBuf,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kodak-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Picture {
    name: String,
    w: u32,
    h: u32,
    rgb: Vec<u8>,
}

fn load_images(dir: &Path, quick: bool, limit: Option<usize>) -> Result<Vec<Picture>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    if quick {
        let picked: Vec<PathBuf> = files
            .iter()
            .filter(|p| QUICK_IMAGES.iter().any(|q| p.ends_with(q)))
            .cloned()
            .collect();
        files = if picked.is_empty() {
            files.into_iter().take(4).collect()
        } else {
            picked
        };
    }
    if let Some(n) = limit {
        files.truncate(n);
    }
    if files.is_empty() {
        return Err(format!("no PNG images in {}", dir.display()));
    }
    files
        .iter()
        .map(|p| {
            let img = lic::Image::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let rgb = img.to_dynamic().into_rgb8().into_raw();
            Ok(Picture {
                name: p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                w: img.width,
                h: img.height,
                rgb,
            })
        })
        .collect()
}

fn measure(codec: &dyn Codec, s: &Setting, p: &Picture) -> Result<Record, String> {
    let t = Instant::now();
    let bytes = codec.encode(&p.rgb, p.w, p.h, s)?;
    let enc_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let out = codec.decode(&bytes)?;
    let dec_ms = t.elapsed().as_secs_f64() * 1e3;
    if out.len() != p.rgb.len() {
        return Err(format!(
            "{} decoded {} samples, expected {}",
            codec.name(),
            out.len(),
            p.rgb.len()
        ));
    }
    let (psnr, msssim) = rayon::join(
        || lic::metrics::psnr(&p.rgb, &out),
        || lic::metrics::ms_ssim(&p.rgb, &out, p.w as usize, p.h as usize).unwrap_or(f64::NAN),
    );
    Ok(Record {
        codec: codec.name().into(),
        setting: s.label.clone(),
        image: p.name.clone(),
        pixels: p.w as u64 * p.h as u64,
        bytes: bytes.len(),
        psnr,
        msssim,
        enc_ms,
        dec_ms,
    })
}

/// Measures what `--calibrate` needs, fits the `-q` scale and writes calibration.md.
fn calibrate_q(
    args: &Args,
    dir: &Path,
    out: &Path,
    pictures: &[Picture],
) -> Result<ExitCode, String> {
    let lic = Lic::cw_raw(args.weights.as_deref()).map_err(|e| format!("lic: {e}"))?;
    let plan: Vec<(Box<dyn Codec>, Vec<Setting>)> = vec![
        (Box::new(lic), Lic::raw_sweep(args.calibrate_points)),
        (Box::new(Jpeg), Jpeg::calibration_sweep()),
    ];
    let (_, series) = run_plan(&plan, pictures)?;
    let knots = calibrate::fit(&series[0], &series[1], args.margin_db)?;
    let header = format!(
        "# lic -q calibration\n\nGenerated by `kodak-bench --calibrate {}` on {} images ({}), weights {}.\n",
        dir.display(),
        pictures.len(),
        pictures.iter().map(|p| p.name.trim_end_matches(".png")).collect::<Vec<_>>().join(" "),
        series[0].description,
    );
    let md = calibrate::report(&knots, &header, args.margin_db);
    let io = |e: std::io::Error| e.to_string();
    std::fs::write(out.join("calibration.md"), &md).map_err(io)?;
    report::write_aggregate(&out.join("calibration.csv"), &series).map_err(io)?;
    println!("{md}");
    Ok(ExitCode::SUCCESS)
}

/// Runs every setting of every codec of `plan` on every picture, with a progress bar: the
/// records, and each codec's series of means in sweep order.
fn run_plan(
    plan: &[(Box<dyn Codec>, Vec<Setting>)],
    pictures: &[Picture],
) -> Result<(Vec<Record>, Vec<Series>), String> {
    let total: usize = plan.iter().map(|(_, s)| s.len() * pictures.len()).sum();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed_precise}, eta {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut records = Vec::with_capacity(total);
    for (codec, settings) in plan {
        for s in settings {
            for p in pictures {
                bar.set_message(format!("{} {} {}", codec.name(), s.label, p.name));
                records.push(
                    measure(codec.as_ref(), s, p)
                        .map_err(|e| format!("{} {} {}: {e}", codec.name(), s.label, p.name))?,
                );
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let series: Vec<Series> = plan
        .iter()
        .map(|(c, s)| {
            let labels: Vec<String> = s.iter().map(|s| s.label.clone()).collect();
            Series::from_records(c.name(), c.description(), &labels, &records)
        })
        .collect();
    Ok((records, series))
}

/// gate.txt keys: the cw curve and the rnn prefix curve on the quick run.
const GATE_CW: &str = "max_quick_bd_rate_psnr_percent";
const GATE_RNN: &str = "max_quick_rnn_prefix_bd_rate_psnr_percent";

/// The value of `key = X` in the gate file.
fn read_gate(path: &Path, key: &str) -> Result<f64, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("gate {}: {e}", path.display()))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(|| format!("{} has no {key} = X line", path.display()))
}

/// Checks one series' BD-rate (PSNR) against JPEG on the quick run against the gate's `key`.
fn check_gate(series: &Series, jpeg: &Series, limit: f64, key: &str) -> bool {
    let name = &series.name;
    match series
        .psnr_curve()
        .zip(jpeg.psnr_curve())
        .and_then(|(a, b)| bdrate::bd_rate(&a, &b))
    {
        Some(v) if 100.0 * v <= limit => {
            println!(
                "gate: {name} quick BD-rate {:+.1} % <= {limit:+.1} % ({key}): pass",
                100.0 * v
            );
            true
        }
        Some(v) => {
            eprintln!(
                "gate: {name} quick BD-rate {:+.1} % is worse than {limit:+.1} % ({key}): FAIL",
                100.0 * v
            );
            false
        }
        None => {
            eprintln!("gate: {name}'s quick curve does not overlap JPEG's in the BD window: FAIL");
            false
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    if let Some(n) = args.threads {
        // candle's CPU kernels size their pools from RAYON_NUM_THREADS.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| e.to_string())?;
    }
    let default_dir = Path::new(HERE).join("kodak");
    let dir = args.dir.clone().unwrap_or(default_dir.clone());
    let out = args.out.clone().unwrap_or_else(|| {
        let r = Path::new(HERE).join("results");
        if args.quick {
            r.join("quick")
        } else {
            r
        }
    });
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    if let Some(csv) = &args.refit {
        let text = std::fs::read_to_string(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
        let series = report::read_aggregate(&text)?;
        let find = |name: &str| {
            series
                .iter()
                .find(|s| s.name == name)
                .ok_or(format!("{} has no {name} series", csv.display()))
        };
        let knots = calibrate::fit(find("lic-cw-rate-code")?, find("jpeg420")?, args.margin_db)?;
        let header = format!(
            "# lic -q calibration\n\nFitted by `kodak-bench --refit {} --margin-db {}` from the measurements of `scripts/calibrate-q.sh` (`calibration.csv`: the cw rate-code sweep and JPEG on 24 colour training photographs).\n",
            csv.file_name().unwrap_or_default().to_string_lossy(),
            args.margin_db
        );
        let md = calibrate::report(&knots, &header, args.margin_db);
        std::fs::write(out.join("calibration.md"), &md).map_err(|e| e.to_string())?;
        println!("{md}");
        return Ok(ExitCode::SUCCESS);
    }
    let pictures = load_images(&dir, args.quick, args.images)?;
    if args.calibrate {
        if dir == default_dir {
            return Err("--calibrate fits on photographs other than the Kodak test set".into());
        }
        return calibrate_q(&args, &dir, &out, &pictures);
    }

    let lic = Lic::cw(args.weights.as_deref()).map_err(|e| format!("lic: {e}"))?;
    // 21 on the full run (-q 0, 0.05, …, 1): every JPEG quality 100x of its sweep has its lic
    // -q x beside it for the -q check, and the BD window holds enough points for the
    // interpolant.
    let lic_points = args.lic_points.unwrap_or(if args.quick { 5 } else { 21 });
    let mut plan: Vec<(Box<dyn Codec>, Vec<Setting>)> = vec![
        (Box::new(lic), Lic::sweep(lic_points)),
        (Box::new(Jpeg), Jpeg::sweep(args.quick)),
    ];
    let mut skipped = vec![
        "AVIF: not measured yet. ravif/rav1e would encode, but no AV1 decoder is set up that builds offline here (libdav1d-dev and libaom-dev are not installed; the pure-Rust rav1d is untried); the anchors' avifenc curve (`reference/classic_curves.csv`) is drawn in the plots instead.".to_string(),
    ];
    if args.no_webp {
        skipped.push("WebP: skipped by --no-webp.".into());
    } else {
        plan.push((Box::new(Webp), Webp::sweep(args.quick)));
    }
    if args.no_rnn {
        skipped.push("lic rnn: skipped by --no-rnn.".into());
    } else {
        // The quick run draws only the prefix curve: one encode per image serves every point.
        match (LicRnn::new(false), LicRnn::new(true)) {
            (Ok(rnn), Ok(prefix)) => {
                if args.quick {
                    skipped.push("lic rnn, one file per layer count: not in the quick run (the prefix curve is).".into());
                } else {
                    plan.push((Box::new(rnn), LicRnn::sweep()));
                }
                plan.push((Box::new(prefix), LicRnn::sweep()));
            }
            (Err(e), _) | (_, Err(e)) => skipped.push(format!("lic rnn: {e}.")),
        }
    }

    let (records, series) = run_plan(&plan, &pictures)?;
    let jpeg = series
        .iter()
        .find(|s| s.name == "jpeg420")
        .ok_or("no jpeg series")?
        .clone();

    let classic = include_str!("../reference/classic_curves.csv");
    let published = report::read_published(include_str!("../reference/published.csv"));
    let full_kodak =
        !args.quick && args.images.is_none() && dir == default_dir && pictures.len() == 24;
    let cross = if full_kodak {
        report::jpeg_cross_check(&jpeg, &report::read_classic(classic, "jpeg420"))
    } else {
        Vec::new()
    };

    let mut references = published.clone();
    for (codec, label) in [
        ("avif444", "avifenc aom s6 4:4:4 (anchor)"),
        ("jxl", "cjxl e7 (anchor)"),
    ] {
        references.push(report::Reference {
            name: label.into(),
            source: "shared/anchors/classic_curves.csv".into(),
            points: report::read_classic(classic, codec),
        });
    }

    let mode = if args.quick { " --quick" } else { "" };
    let header = format!(
        "# kodak-bench results{}\n\nGenerated by `cargo run --release -p kodak-bench{mode}` on {} images from `{}` ({}), {} threads. bpp from the whole file, PSNR and MS-SSIM on 8-bit RGB, means over images (CompressAI's aggregation). Regenerate whenever the shipped weights change.\n",
        if args.quick { " (quick subset)" } else { "" },
        pictures.len(),
        dir.strip_prefix(HERE).map(|p| format!("kodak-bench/{}", p.display())).unwrap_or_else(|_| dir.display().to_string()),
        pictures.iter().map(|p| p.name.trim_end_matches(".png")).collect::<Vec<_>>().join(" "),
        args.threads.map_or_else(|| rayon::current_num_threads().to_string(), |n| n.to_string()),
    );
    let mut sections = String::new();
    let mut q_holds = true;
    if let Some(l) = series.iter().find(|s| s.name == "lic-cw") {
        let up_to = lic::rate::CW_CALIBRATED_TO as f64;
        let (table, holds) = calibrate::check_table(l, &jpeg, up_to);
        q_holds = holds;
        let _ = write!(
            sections,
            "\n## -q against JPEG quality 100q\n\n`-q x` should give at least JPEG's PSNR at quality 100x in fewer bytes, for x up to {up_to:.2} (where the model's best quality ends): {}.\n\n{table}",
            if holds { "holds" } else { "**does not hold**" }
        );
    }
    if !args.quick {
        let lic = Lic::cw(args.weights.as_deref()).map_err(|e| format!("lic: {e}"))?;
        let _ = write!(
            sections,
            "\n## Rate control (`--target-bpp`)\n\nThe largest file of at most the target, per image; ratio = file bpp / target.\n\n| target bpp | mean bpp | lowest ratio | highest ratio | over the target |\n|---|---|---|---|---|\n"
        );
        for target in [0.25, 0.5, 1.0] {
            let got = pictures
                .iter()
                .map(|p| {
                    let b = lic.bytes_at_most(&p.rgb, p.w, p.h, target)?;
                    Ok(b as f64 * 8.0 / (p.w as f64 * p.h as f64))
                })
                .collect::<Result<Vec<f64>, String>>()?;
            let ratio = |f: fn(f64, f64) -> f64| got.iter().fold(got[0], |a, &b| f(a, b)) / target;
            let _ = writeln!(
                sections,
                "| {target} | {:.4} | {:.1} % | {:.1} % | {} |",
                got.iter().sum::<f64>() / got.len() as f64,
                100.0 * ratio(f64::min),
                100.0 * ratio(f64::max),
                got.iter().filter(|&&b| b > target).count()
            );
        }
    }
    let md = report::summary(
        &header, &series, &jpeg, &published, &cross, &skipped, &sections,
    );
    let io = |e: std::io::Error| e.to_string();
    std::fs::write(out.join("SUMMARY.md"), &md).map_err(io)?;
    report::write_per_image(&out.join("per_image.csv"), &records).map_err(io)?;
    report::write_aggregate(&out.join("aggregate.csv"), &series).map_err(io)?;
    for s in &series {
        report::write_json(&out.join(format!("{}.json", s.name)), s).map_err(io)?;
    }
    let title = |m: &str| format!("Kodak ({} images): {m}", pictures.len());
    plot::draw(
        &out.join("psnr.svg"),
        &title("PSNR vs rate"),
        plot::Metric::Psnr,
        &series,
        &references,
        1.6,
    )?;
    plot::draw(
        &out.join("msssim.svg"),
        &title("MS-SSIM vs rate"),
        plot::Metric::MsSsimDb,
        &series,
        &references,
        1.6,
    )?;

    // The BD table goes to stdout so CI logs show it.
    println!("{}", report::bd_table(&series, &jpeg));
    println!("wrote {}", out.display());

    let mut ok = true;
    if !q_holds && full_kodak {
        eprintln!("-q calibration does not hold on this set (SUMMARY.md): FAIL");
        ok = false;
    }
    for (b, o, a) in &cross {
        let good = o
            .zip(*a)
            .is_some_and(|(o, a)| (o - a).abs() <= report::CROSS_CHECK_DB);
        if !good {
            eprintln!("JPEG cross-check failed at {b} bpp: ours {o:?} dB, anchor {a:?} dB");
            ok = false;
        }
    }
    if args.quick {
        let limit = read_gate(&args.gate, GATE_CW)?;
        ok &= check_gate(&series[0], &jpeg, limit, GATE_CW);
        if let Some(rnn) = series.iter().find(|s| s.name == "lic-rnn-prefix") {
            let limit = read_gate(&args.gate, GATE_RNN)?;
            ok &= check_gate(rnn, &jpeg, limit, GATE_RNN);
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
