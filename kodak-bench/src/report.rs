//! Aggregation and the written outputs: per-image and aggregate CSV, CompressAI-style JSON,
//! and SUMMARY.md with BD-rates, PSNR at fixed rates and the JPEG cross-check.

use std::fmt::Write as _;
use std::path::Path;

use crate::bdrate::{bd_rate, Curve};

/// One measured encode/decode of one image at one setting.
#[derive(Clone, Debug)]
pub struct Record {
    /// Codec name.
    pub codec: String,
    /// Setting label.
    pub setting: String,
    /// Image file name.
    pub image: String,
    /// Width × height.
    pub pixels: u64,
    /// Whole file size.
    pub bytes: usize,
    /// PSNR on 8-bit RGB.
    pub psnr: f64,
    /// MS-SSIM on RGB.
    pub msssim: f64,
    /// Encode wall time, ms.
    pub enc_ms: f64,
    /// Decode wall time, ms.
    pub dec_ms: f64,
}

impl Record {
    /// Bits per pixel of the whole file.
    pub fn bpp(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.pixels as f64
    }
}

/// The mean over images of one codec at one setting (CompressAI's aggregation).
#[derive(Clone, Debug)]
pub struct Point {
    /// Setting label.
    pub setting: String,
    /// Number of images.
    pub n: usize,
    /// Mean bpp.
    pub bpp: f64,
    /// Mean PSNR.
    pub psnr: f64,
    /// Mean MS-SSIM.
    pub msssim: f64,
    /// Mean encode ms.
    pub enc_ms: f64,
    /// Mean decode ms.
    pub dec_ms: f64,
}

impl Point {
    /// MS-SSIM in dB, −10·log10(1 − MS-SSIM) of the mean, as the anchors report it.
    pub fn msssim_db(&self) -> f64 {
        -10.0 * (1.0 - self.msssim).max(1e-12).log10()
    }
}

/// A codec's curve: its points in sweep order.
#[derive(Clone, Debug)]
pub struct Series {
    /// Codec name.
    pub name: String,
    /// Settings, one line.
    pub description: String,
    /// Aggregated points.
    pub points: Vec<Point>,
}

impl Series {
    /// Aggregates the records of one codec, keeping the sweep order of `settings`.
    pub fn from_records(
        name: &str,
        description: String,
        settings: &[String],
        rs: &[Record],
    ) -> Self {
        let points = settings
            .iter()
            .filter_map(|s| {
                let sel: Vec<&Record> = rs
                    .iter()
                    .filter(|r| r.codec == name && &r.setting == s)
                    .collect();
                let n = sel.len();
                (n > 0).then(|| {
                    let mean = |f: &dyn Fn(&Record) -> f64| {
                        sel.iter().map(|r| f(r)).sum::<f64>() / n as f64
                    };
                    Point {
                        setting: s.clone(),
                        n,
                        bpp: mean(&|r| r.bpp()),
                        psnr: mean(&|r| r.psnr),
                        msssim: mean(&|r| r.msssim),
                        enc_ms: mean(&|r| r.enc_ms),
                        dec_ms: mean(&|r| r.dec_ms),
                    }
                })
            })
            .collect();
        Self {
            name: name.into(),
            description,
            points,
        }
    }

    /// The PSNR curve.
    pub fn psnr_curve(&self) -> Option<Curve> {
        Curve::new(
            &self
                .points
                .iter()
                .map(|p| (p.bpp, p.psnr))
                .collect::<Vec<_>>(),
        )
    }

    /// The MS-SSIM (dB) curve.
    pub fn msssim_curve(&self) -> Option<Curve> {
        Curve::new(
            &self
                .points
                .iter()
                .map(|p| (p.bpp, p.msssim_db()))
                .collect::<Vec<_>>(),
        )
    }
}

/// A published reference curve (bpp, PSNR, MS-SSIM) with its source.
#[derive(Clone, Debug)]
pub struct Reference {
    /// Method name as the source spells it.
    pub name: String,
    /// Where the numbers come from.
    pub source: String,
    /// (bpp, PSNR, MS-SSIM) points.
    pub points: Vec<(f64, f64, f64)>,
}

/// Reads `reference/published.csv` (source,method,metric_train,bpp,psnr,msssim; the source
/// may itself hold commas, so fields are taken from the right).
pub fn read_published(csv: &str) -> Vec<Reference> {
    let mut out: Vec<Reference> = Vec::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.rsplitn(6, ',').collect();
        if f.len() < 6 {
            continue;
        }
        let (Ok(b), Ok(p), Ok(m)) = (f[2].parse(), f[1].parse(), f[0].parse()) else {
            continue;
        };
        let (name, source) = (f[4].trim_matches('"').to_string(), f[5].to_string());
        match out.iter_mut().find(|r| r.name == name) {
            Some(r) => r.points.push((b, p, m)),
            None => out.push(Reference {
                name,
                source,
                points: vec![(b, p, m)],
            }),
        }
    }
    out
}

/// Reads one codec's curve from `reference/classic_curves.csv` (the anchors measured with
/// the Debian command-line tools on this kind of machine).
pub fn read_classic(csv: &str, codec: &str) -> Vec<(f64, f64, f64)> {
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > 5 && f[0] == codec)
        .filter_map(|f| Some((f[3].parse().ok()?, f[4].parse().ok()?, f[5].parse().ok()?)))
        .collect()
}

/// Writes per_image.csv.
pub fn write_per_image(path: &Path, rs: &[Record]) -> std::io::Result<()> {
    let mut s = String::from("codec,setting,image,bytes,bpp,psnr,msssim,enc_ms,dec_ms\n");
    for r in rs {
        let _ = writeln!(
            s,
            "{},{},{},{},{:.6},{:.4},{:.6},{:.2},{:.2}",
            r.codec,
            r.setting,
            r.image,
            r.bytes,
            r.bpp(),
            r.psnr,
            r.msssim,
            r.enc_ms,
            r.dec_ms
        );
    }
    std::fs::write(path, s)
}

/// Writes aggregate.csv.
/// The series of an aggregate.csv that [`write_aggregate`] wrote (times and MS-SSIM kept).
pub fn read_aggregate(text: &str) -> Result<Vec<Series>, String> {
    let mut series: Vec<Series> = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let num = |k: usize| -> Result<f64, String> {
            f.get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("aggregate line {}: field {k}", i + 1))
        };
        let point = Point {
            setting: f.get(1).ok_or("aggregate: short line")?.to_string(),
            n: num(2)? as usize,
            bpp: num(3)?,
            psnr: num(4)?,
            msssim: num(5)?,
            enc_ms: num(7)?,
            dec_ms: num(8)?,
        };
        match series.iter_mut().find(|s| s.name == f[0]) {
            Some(s) => s.points.push(point),
            None => series.push(Series {
                name: f[0].to_string(),
                description: String::new(),
                points: vec![point],
            }),
        }
    }
    Ok(series)
}

pub fn write_aggregate(path: &Path, series: &[Series]) -> std::io::Result<()> {
    let mut s = String::from("codec,setting,n,bpp,psnr,msssim,msssim_db,enc_ms,dec_ms\n");
    for c in series {
        for p in &c.points {
            let _ = writeln!(
                s,
                "{},{},{},{:.5},{:.4},{:.6},{:.4},{:.2},{:.2}",
                c.name,
                p.setting,
                p.n,
                p.bpp,
                p.psnr,
                p.msssim,
                p.msssim_db(),
                p.enc_ms,
                p.dec_ms
            );
        }
    }
    std::fs::write(path, s)
}

/// Writes `<name>.json` in CompressAI's results layout.
pub fn write_json(path: &Path, c: &Series) -> std::io::Result<()> {
    let col = |f: &dyn Fn(&Point) -> f64| c.points.iter().map(f).collect::<Vec<f64>>();
    let v = serde_json::json!({
        "name": c.name,
        "description": c.description,
        "results": {
            "bpp": col(&|p| p.bpp),
            "psnr-rgb": col(&|p| p.psnr),
            "ms-ssim-rgb": col(&|p| p.msssim),
            "encoding_time": col(&|p| p.enc_ms / 1000.0),
            "decoding_time": col(&|p| p.dec_ms / 1000.0),
        }
    });
    std::fs::write(
        path,
        serde_json::to_string_pretty(&v).map_err(std::io::Error::other)? + "\n",
    )
}

/// The JPEG cross-check: our jpeg420 PSNR against the anchors' `cjpeg -optimize` at 0.5 and
/// 1.0 bpp. Returns (bpp, ours, anchor) rows; `None` where a curve does not reach the rate.
pub fn jpeg_cross_check(
    ours: &Series,
    anchor: &[(f64, f64, f64)],
) -> Vec<(f64, Option<f64>, Option<f64>)> {
    let a = Curve::new(&anchor.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>());
    let o = ours.psnr_curve();
    [0.5, 1.0]
        .iter()
        .map(|&b| {
            (
                b,
                o.as_ref().and_then(|c| c.dist_at(b)),
                a.as_ref().and_then(|c| c.dist_at(b)),
            )
        })
        .collect()
}

/// Largest allowed gap of the JPEG cross-check, dB.
pub const CROSS_CHECK_DB: f64 = 0.3;

fn pct(x: Option<f64>) -> String {
    x.map_or("n/a (no overlap)".into(), |v| {
        format!("{:+.1} %", 100.0 * v)
    })
}

fn db(x: Option<f64>) -> String {
    x.map_or("—".into(), |v| format!("{v:.2}"))
}

/// The BD-rate table (against `reference`, PSNR and MS-SSIM in dB) with PSNR at fixed rates,
/// its heading included: part of SUMMARY.md, and what a run prints.
pub fn bd_table(series: &[Series], reference: &Series) -> String {
    let mut s = String::new();
    let jp = reference.psnr_curve();
    let jm = reference.msssim_curve();
    s.push_str("## BD-rate against jpeg420 (window 0.1–1.5 bpp, PCHIP), PSNR at fixed rates\n\n");
    s.push_str("| codec | BD-rate PSNR | BD-rate MS-SSIM-dB | PSNR @0.25 | @0.5 | @0.75 | @1.0 bpp | bpp range | enc ms | dec ms |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for c in series {
        let (cp, cm) = (c.psnr_curve(), c.msssim_curve());
        let bd = |a: &Option<Curve>, b: &Option<Curve>| match (a, b) {
            (Some(a), Some(b)) => bd_rate(a, b),
            _ => None,
        };
        let at = |b: f64| db(cp.as_ref().and_then(|c| c.dist_at(b)));
        let n = c.points.len().max(1) as f64;
        let (lo, hi) = c
            .points
            .iter()
            .fold((f64::MAX, 0.0f64), |(l, h), p| (l.min(p.bpp), h.max(p.bpp)));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {:.3}–{:.3} | {:.0} | {:.0} |",
            c.name,
            pct(bd(&cp, &jp)),
            pct(bd(&cm, &jm)),
            at(0.25),
            at(0.5),
            at(0.75),
            at(1.0),
            lo,
            hi,
            c.points.iter().map(|p| p.enc_ms).sum::<f64>() / n,
            c.points.iter().map(|p| p.dec_ms).sum::<f64>() / n,
        );
    }
    s
}

/// SUMMARY.md: what was run, BD-rates against our JPEG, PSNR at fixed rates, the JPEG
/// cross-check, published references against the same JPEG curve, and every point.
pub fn summary(
    header: &str,
    series: &[Series],
    reference: &Series,
    published: &[Reference],
    cross: &[(f64, Option<f64>, Option<f64>)],
    skipped: &[String],
    sections: &str,
) -> String {
    let mut s = String::new();
    s.push_str(header);
    let jp = reference.psnr_curve();
    s.push('\n');
    s.push_str(&bd_table(series, reference));
    s.push_str("\nTimes are wall-clock means per image over the sweep, on this machine.\n");
    s.push_str(sections);
    if !cross.is_empty() {
        s.push_str("\n## JPEG cross-check against the anchors' `cjpeg -optimize` curve\n\n| bpp | ours (dB) | anchor (dB) | gap | within 0.3 dB |\n|---|---|---|---|---|\n");
        for (b, o, a) in cross {
            let gap = o.zip(*a).map(|(o, a)| o - a);
            let _ = writeln!(
                s,
                "| {b:.2} | {} | {} | {} | {} |",
                db(*o),
                db(*a),
                gap.map_or("—".into(), |g| format!("{g:+.2}")),
                if gap.is_some_and(|g| g.abs() <= CROSS_CHECK_DB) {
                    "yes"
                } else {
                    "NO"
                }
            );
        }
    }
    if !published.is_empty() {
        s.push_str("\n## Published references against the same jpeg420 curve\n\nNumbers from the sources named (copied into `reference/published.csv`), BD-rate computed here against our measured JPEG curve.\n\n| method | BD-rate PSNR | PSNR @0.25 | @0.5 | @1.0 bpp | source |\n|---|---|---|---|---|---|\n");
        for r in published {
            let c = Curve::new(&r.points.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>());
            let bd = c.as_ref().zip(jp.as_ref()).and_then(|(a, b)| bd_rate(a, b));
            let at = |b: f64| db(c.as_ref().and_then(|c| c.dist_at(b)));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                r.name,
                pct(bd),
                at(0.25),
                at(0.5),
                at(1.0),
                r.source.replace('|', "\\|")
            );
        }
    }
    if !skipped.is_empty() {
        s.push_str("\n## Not measured\n\n");
        for m in skipped {
            let _ = writeln!(s, "- {m}");
        }
    }
    s.push_str("\n## Every point (mean over images)\n\n| codec | setting | bpp | PSNR | MS-SSIM | MS-SSIM dB | enc ms | dec ms |\n|---|---|---|---|---|---|---|---|\n");
    for c in series {
        for p in &c.points {
            let _ = writeln!(
                s,
                "| {} | {} | {:.4} | {:.3} | {:.5} | {:.3} | {:.1} | {:.1} |",
                c.name,
                p.setting,
                p.bpp,
                p.psnr,
                p.msssim,
                p.msssim_db(),
                p.enc_ms,
                p.dec_ms
            );
        }
    }
    s.push_str("\nSettings:\n\n");
    for c in series {
        let _ = writeln!(s, "- **{}**: {}", c.name, c.description);
    }
    s
}
