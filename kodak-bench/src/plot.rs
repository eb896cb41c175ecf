//! SVG rate-distortion plots with plotters: the measured codecs as bold lines with markers,
//! published references as thin lines, so a reader sees where lic stands in the field.

use std::path::Path;

use plotters::prelude::*;

use crate::report::{Reference, Series};

/// Which distortion axis.
#[derive(Clone, Copy)]
pub enum Metric {
    /// PSNR on RGB, dB.
    Psnr,
    /// MS-SSIM on RGB, as −10·log10(1 − MS-SSIM).
    MsSsimDb,
}

const MEASURED: [RGBColor; 5] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];
const REFERENCE: [RGBColor; 8] = [
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(90, 90, 160),
    RGBColor(60, 60, 60),
    RGBColor(170, 120, 40),
];

/// Draws one plot; rates up to `max_bpp`.
pub fn draw(
    path: &Path,
    title: &str,
    metric: Metric,
    series: &[Series],
    references: &[Reference],
    max_bpp: f64,
) -> Result<(), String> {
    let y_of = |psnr: f64, msssim: f64| match metric {
        Metric::Psnr => psnr,
        Metric::MsSsimDb => -10.0 * (1.0 - msssim).max(1e-12).log10(),
    };
    let mut lines: Vec<(String, Vec<(f64, f64)>, bool)> = Vec::new();
    for s in series {
        let pts = s
            .points
            .iter()
            .map(|p| (p.bpp, y_of(p.psnr, p.msssim)))
            .collect();
        lines.push((s.name.clone(), pts, true));
    }
    for r in references {
        let pts: Vec<(f64, f64)> = r
            .points
            .iter()
            .filter(|p| p.0 <= max_bpp * 1.05 && (p.2 > 0.0 || matches!(metric, Metric::Psnr)))
            .map(|p| (p.0, y_of(p.1, p.2)))
            .collect();
        if pts.len() >= 2 {
            lines.push((r.name.clone(), pts, false));
        }
    }
    let visible = lines
        .iter()
        .flat_map(|l| l.1.iter())
        .filter(|p| p.0 <= max_bpp);
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for p in visible {
        lo = lo.min(p.1);
        hi = hi.max(p.1);
    }
    if lo > hi {
        return Err("nothing to plot".into());
    }
    let (lo, hi) = ((lo - 0.5).floor(), (hi + 0.5).ceil());

    let root = SVGBackend::new(path, (960, 680)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..max_bpp, lo..hi)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("bits per pixel (whole file)")
        .y_desc(match metric {
            Metric::Psnr => "PSNR RGB (dB)",
            Metric::MsSsimDb => "MS-SSIM RGB (dB, −10·log10(1−x))",
        })
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(e)?;
    let (mut mi, mut ri) = (0, 0);
    for (name, pts, measured) in lines {
        let pts: Vec<(f64, f64)> = pts.into_iter().filter(|p| p.0 <= max_bpp).collect();
        let (color, width) = if measured {
            mi += 1;
            (MEASURED[(mi - 1) % MEASURED.len()], 3)
        } else {
            ri += 1;
            (REFERENCE[(ri - 1) % REFERENCE.len()], 1)
        };
        let style = ShapeStyle::from(&color).stroke_width(width);
        let label = if measured || name.contains("(anchor)") {
            name
        } else {
            format!("{name} (published)")
        };
        chart
            .draw_series(LineSeries::new(pts.clone(), style))
            .map_err(e)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        if measured {
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(e)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}
