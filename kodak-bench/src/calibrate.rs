//! `--calibrate`: fits lic's `-q` scale (`lic::rate::CW_RATE_KNOTS`) on a folder of photographs
//! that are not the test set. For each step x = 0.05, 0.10, …, 1 it finds the smallest cw rate
//! code whose mean PSNR over the folder reaches JPEG's at quality 100x plus a margin; past the
//! model's best quality the remaining steps rise evenly to the top rate code.

use std::fmt::Write as _;

use crate::report::{Point, Series};

/// Steps of the `-q` scale below 1 (`-q` = k/STEPS).
pub const STEPS: usize = 20;

/// One fitted step of the scale.
pub struct Knot {
    /// `-q` of the step.
    pub q: f64,
    /// JPEG's mean bpp and PSNR at quality 100q.
    pub jpeg: (f64, f64),
    /// The rate code, and lic's interpolated mean bpp and PSNR there; `None` for the steps
    /// past the model's best quality.
    pub fit: Option<(u16, f64, f64)>,
    /// The rate code the scale uses (fitted, or spread over what the model has left).
    pub code: u16,
}

/// The rate code of a `lic-cw-rate-code` point (`r12345`).
fn code_of(p: &Point) -> Option<f64> {
    p.setting.strip_prefix('r')?.parse().ok()
}

/// Fits the scale from lic's curve over rate codes and JPEG's calibration sweep.
pub fn fit(lic: &Series, jpeg: &Series, margin_db: f64) -> Result<Vec<Knot>, String> {
    let curve: Vec<(f64, f64, f64)> = lic
        .points
        .iter()
        .map(|p| code_of(p).map(|c| (c, p.bpp, p.psnr)))
        .collect::<Option<_>>()
        .ok_or("lic points without rate codes")?;
    if jpeg.points.len() != STEPS {
        return Err(format!(
            "JPEG sweep has {} points, not {STEPS}",
            jpeg.points.len()
        ));
    }
    let mut knots = vec![Knot {
        q: 0.0,
        jpeg: (f64::NAN, f64::NAN),
        fit: Some((0, curve[0].1, curve[0].2)),
        code: 0,
    }];
    for (k, j) in jpeg.points.iter().enumerate() {
        let want = j.psnr + margin_db;
        // The first segment of lic's curve that reaches `want`; PSNR and log bpp linear in the
        // rate code inside it.
        let fit = curve.windows(2).find(|w| w[1].2 >= want).map(|w| {
            let (a, b) = (w[0], w[1]);
            let f = ((want - a.2) / (b.2 - a.2)).clamp(0.0, 1.0);
            let code = (a.0 + f * (b.0 - a.0)).ceil();
            let f = (code - a.0) / (b.0 - a.0);
            let bpp = (a.1.ln() + f * (b.1.ln() - a.1.ln())).exp();
            (code as u16, bpp, a.2 + f * (b.2 - a.2))
        });
        let prev = knots.last().map_or(0, |k| k.code);
        knots.push(Knot {
            q: (k + 1) as f64 / STEPS as f64,
            jpeg: (j.bpp, j.psnr),
            fit,
            code: fit.map_or(0, |f| f.0.max(prev + 1)),
        });
    }
    // Past the last step the model reaches, spread the remaining codes evenly up to 65535.
    let last = knots.iter().rposition(|k| k.fit.is_some()).unwrap_or(0);
    let from = knots[last].code as f64;
    for (i, k) in knots.iter_mut().enumerate().skip(last + 1) {
        k.fit = None;
        let f = (i - last) as f64 / (STEPS - last) as f64;
        k.code = (from + f * (65535.0 - from)).round() as u16;
    }
    knots[STEPS].code = 65535;
    Ok(knots)
}

/// calibration.md: the table and the constant to paste into lic-format's rate module.
pub fn report(knots: &[Knot], header: &str, margin_db: f64) -> String {
    let mut md = String::from(header);
    let _ = writeln!(
        md,
        "\nEach step x: the smallest rate code whose mean PSNR reaches JPEG quality 100x + {margin_db} dB (lic bpp and PSNR interpolated on the measured rate-code curve).\n\n| -q | JPEG quality | JPEG bpp | JPEG PSNR | rate code | lic bpp | lic PSNR | smaller than JPEG |\n|---|---|---|---|---|---|---|---|"
    );
    for k in knots {
        let (jb, jp) = k.jpeg;
        match k.fit {
            Some((_, b, p)) if k.q > 0.0 => {
                let _ = writeln!(
                    md,
                    "| {:.2} | {:.0} | {jb:.4} | {jp:.2} | {} | {b:.4} | {p:.2} | {} |",
                    k.q,
                    100.0 * k.q,
                    k.code,
                    if b < jb { "yes" } else { "**no**" }
                );
            }
            _ if k.q == 0.0 => {
                let _ = writeln!(md, "| 0.00 | | | | 0 | | | |");
            }
            _ => {
                let _ = writeln!(
                    md,
                    "| {:.2} | {:.0} | {jb:.4} | {jp:.2} | {} | past the model's best | | |",
                    k.q,
                    100.0 * k.q,
                    k.code
                );
            }
        }
    }
    let codes: Vec<String> = knots.iter().map(|k| k.code.to_string()).collect();
    let _ = writeln!(
        md,
        "\n```rust\npub const CW_RATE_KNOTS: [u16; KNOTS_BELOW_ONE + 1] = [{}];\n```",
        codes.join(", ")
    );
    md
}

/// The `-q` check on a measured run: for every lic `-q x` that has a JPEG quality 100x
/// beside it, both means and whether lic is at least as good in fewer bytes. The second value
/// says whether every row up to `up_to` holds.
pub fn check_table(lic: &Series, jpeg: &Series, up_to: f64) -> (String, bool) {
    let mut s = String::from(
        "| -q | lic bpp | lic PSNR | JPEG quality | JPEG bpp | JPEG PSNR | lic as good, smaller |\n|---|---|---|---|---|---|---|\n",
    );
    let mut all = true;
    for p in &lic.points {
        let Some(q) = p
            .setting
            .strip_prefix('q')
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        let jq = format!("q{:.0}", 100.0 * q);
        let Some(j) = jpeg.points.iter().find(|j| j.setting == jq) else {
            continue;
        };
        if q < 0.01 {
            continue;
        }
        let holds = p.psnr >= j.psnr && p.bpp < j.bpp;
        if q <= up_to + 1e-9 {
            all &= holds;
        }
        let _ = writeln!(
            s,
            "| {q:.2} | {:.4} | {:.2} | {:.0} | {:.4} | {:.2} | {} |",
            p.bpp,
            p.psnr,
            100.0 * q,
            j.bpp,
            j.psnr,
            match (holds, q <= up_to + 1e-9) {
                (true, _) => "yes",
                (false, true) => "**no**",
                (false, false) => "no (past the model's best)",
            }
        );
    }
    (s, all)
}
