//! `lic-train export`: checkpoint → shipped weights file.
//!
//! The float transform tensors are stored as f16. The entropy path is converted to integers
//! (format-spec/README.md §6): scale-index tables in 1/256 steps, the context network with
//! power-of-two fixed-point weights, and importance-map frequencies counted on training
//! images (never Kodak).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use super::data::{image_files, load_picture};
use lic::codec::cw::levels_from_logits;
use lic::entropy::params::{IntMlp, IntParams, HIDDEN_FRAC_BITS, INDEX_FRAC_BITS, MAP_CONTEXTS};
use lic::entropy::tables::quantize;
use lic::model::cw::{
    CwModel, RatePos, LEVELS, RATE_POINTS, SCALE_COUNT, SCALE_MAX, SCALE_MIN, SLICES,
};

/// Width of one scale-index step in ln σ.
pub fn index_step() -> f64 {
    (SCALE_MAX.ln() - SCALE_MIN.ln()) / (SCALE_COUNT - 1) as f64
}

fn to_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()
}

/// Largest power-of-two exponent that keeps `max |v| · 2^e` within 13 bits, clamped to `[lo, hi]`.
fn exponent_for(v: &[f32], lo: u32, hi: u32) -> u32 {
    let m = v.iter().fold(0f32, |a, &x| a.max(x.abs())) as f64;
    if m == 0.0 {
        return hi;
    }
    ((8191.0 / m).log2().floor().max(0.0) as u32).clamp(lo, hi)
}

fn fixed(v: &[f32], scale: f64) -> Vec<i32> {
    v.iter()
        .map(|&x| {
            (x as f64 * scale)
                .round()
                .clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect()
}

/// Counts importance-map contexts on up to `max_images` training images at every rate point.
fn map_frequencies(
    model: &CwModel,
    data: &Path,
    max_images: usize,
) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
    let mut counts = vec![0.5f64; MAP_CONTEXTS * LEVELS];
    let files = image_files(data)?;
    let stride = (files.len() / max_images.max(1)).max(1);
    for f in files.iter().step_by(stride).take(max_images) {
        let p = load_picture(f)?;
        let x = super::data::centre_crop(&p, 512, &Device::Cpu)?;
        let (_, logit) = model.analysis(&x)?;
        let (_, _, h, w) = logit.dims4()?;
        let logit: Vec<f32> = logit.flatten_all()?.to_vec1()?;
        for r in 0..RATE_POINTS {
            let mb: f32 = model
                .rate_params(RatePos::from_t(r as f64))?
                .1
                .to_scalar()?;
            let levels = levels_from_logits(&logit, mb);
            for i in 0..h {
                for j in 0..w {
                    let ctx = IntParams::map_context(&levels, w, i, j) as usize;
                    counts[ctx * LEVELS + levels[i * w + j] as usize] += 1.0;
                }
            }
        }
    }
    Ok(counts.chunks(LEVELS).flat_map(quantize).collect())
}

/// Builds the integer entropy parameters of a model.
pub fn int_params(
    vm: &VarMap,
    model: &CwModel,
    data: &Path,
) -> Result<IntParams, Box<dyn std::error::Error>> {
    let get = |n: &str| -> Result<Vec<f32>, Box<dyn std::error::Error>> {
        let d = vm.data().lock().unwrap();
        Ok(to_vec(
            d.get(n).ok_or(format!("checkpoint lacks {n}"))?.as_tensor(),
        )?)
    };
    let step = index_step();
    let one = (1u64 << INDEX_FRAC_BITS) as f64;
    let base: Vec<f32> = get("base")?
        .iter()
        .map(|&b| ((b as f64 - SCALE_MIN.ln()) / step) as f32)
        .collect();
    let log_gain: Vec<f32> = get("log_gain")?
        .iter()
        .map(|&g| (g as f64 / step) as f32)
        .collect();
    let (w1, b1) = (get("ctx1.weight")?, get("ctx1.bias")?);
    let (w2, b2) = (in_index(&get("ctx2.weight")?), in_index(&get("ctx2.bias")?));
    let [shift1, shift2] = mlp_shifts(&w1, &w2);
    let ctx = fixed_mlp(&w1, &b1, &w2, &b2, [shift1, shift2]);
    let p = IntParams {
        base: fixed(&base, one),
        log_gain: fixed(&log_gain, one),
        ctx1_w: ctx.w1,
        ctx1_b: ctx.b1,
        ctx2_w: ctx.w2,
        ctx2_b: ctx.b2,
        shift1,
        shift2,
        map_freq: map_frequencies(model, data, 64)?,
        actx: Vec::new(),
        actx_shifts: [0, 0],
        recon_shrink: if RECON_SHRINK_ALPHA > 0.0 {
            recon_shrink(RECON_SHRINK_ALPHA)
        } else {
            Vec::new()
        },
    };
    let mut p = p;
    if let Some((nets, shifts)) = anchor_context(&get)? {
        p.actx = nets;
        p.actx_shifts = shifts;
    }
    p.validate()?;
    Ok(p)
}

/// How far toward zero a coded value's reconstruction moves, as a fraction of the centroid
/// shift of its table's Laplace bin; 0 writes no `int.recon_shrink` tensor. With plain
/// rounding the true latents sit at that centroid (`dev/experiments/centroids.rs`) and 0.5
/// gained the most (+0.03 to +0.06 dB up to 0.6 bpp on ten held-out training images, against
/// 0.35 and 0.65). But the encoder rounds for rate and distortion
/// (`codec::cw::RdRounding`), which moves the cheap near-half values to zero, so the values
/// left at ±1 sit further out: with it, BD-rate against JPEG on the same images (9 -q
/// values) measured −29.3 / −29.6 / −29.8 / −30.0 % at α = 0.5 / 0.3 / 0.15 / 0 (runs in
/// CHANGELOG.md, 2026-11-29).
pub const RECON_SHRINK_ALPHA: f64 = 0.0;

/// `s(b) = ½ − b + 1/(e^(1/b) − 1)`: the distance from the centre of a Laplace(0, b) bin
/// [k − ½, k + ½] (k ≥ 1) to its centroid, toward zero.
pub fn centroid_shift(b: f64) -> f64 {
    0.5 - b + 1.0 / ((1.0 / b).exp() - 1.0)
}

/// The reconstruction shrink of every scale table (spec §5 step 3), ·2^16:
/// `α·`[`centroid_shift`]`(b_t)`.
pub fn recon_shrink(alpha: f64) -> Vec<i32> {
    (0..lic::model::cw::SCALE_COUNT)
        .map(|t| {
            let s = centroid_shift(lic::entropy::tables::scale_of(t));
            (alpha * s * 65536.0).round() as i32
        })
        .collect()
}

/// The integer anchor-context networks, with their shared shifts; `None` when the checkpoint
/// has none or they are still at their start (second layers zero: every offset 0).
#[allow(clippy::type_complexity)]
fn anchor_context(
    get: &dyn Fn(&str) -> Result<Vec<f32>, Box<dyn std::error::Error>>,
) -> Result<Option<(Vec<IntMlp>, [u32; 2])>, Box<dyn std::error::Error>> {
    let mut float = Vec::new();
    for k in 1..SLICES {
        let Ok(w1) = get(&format!("actx.{k}.a.weight")) else {
            return Ok(None);
        };
        float.push((
            w1,
            get(&format!("actx.{k}.a.bias"))?,
            in_index(&get(&format!("actx.{k}.b.weight"))?),
            in_index(&get(&format!("actx.{k}.b.bias"))?),
        ));
    }
    if float.iter().all(|f| f.2.iter().all(|&x| x == 0.0)) {
        return Ok(None);
    }
    // One pair of shifts for all slices (spec §6.4b).
    let all_w1: Vec<f32> = float.iter().flat_map(|f| f.0.iter().copied()).collect();
    let all_w2: Vec<f32> = float.iter().flat_map(|f| f.2.iter().copied()).collect();
    let shifts = mlp_shifts(&all_w1, &all_w2);
    let nets = float
        .iter()
        .map(|(w1, b1, w2, b2)| fixed_mlp(w1, b1, w2, b2, shifts))
        .collect();
    Ok(Some((nets, shifts)))
}

/// ln σ values in scale-index units.
fn in_index(v: &[f32]) -> Vec<f32> {
    let step = index_step();
    v.iter().map(|&x| (x as f64 / step) as f32).collect()
}

/// Fraction bits of a context network's two layers from their weights (the second layer's
/// already in index units): as many as keep every weight within 13 bits.
fn mlp_shifts(w1: &[f32], w2: &[f32]) -> [u32; 2] {
    [
        exponent_for(w1, HIDDEN_FRAC_BITS, 24),
        exponent_for(w2, INDEX_FRAC_BITS.saturating_sub(HIDDEN_FRAC_BITS), 24),
    ]
}

/// A context network in fixed point (spec §6.4): the first layer ·2^s1, the second ·2^s2,
/// its bias ·2^(s2 + HIDDEN_FRAC_BITS).
fn fixed_mlp(w1: &[f32], b1: &[f32], w2: &[f32], b2: &[f32], [s1, s2]: [u32; 2]) -> IntMlp {
    IntMlp {
        w1: fixed(w1, (1u64 << s1) as f64),
        b1: fixed(b1, (1u64 << s1) as f64),
        w2: fixed(w2, (1u64 << s2) as f64),
        b2: fixed(b2, (1u64 << (s2 + HIDDEN_FRAC_BITS)) as f64),
    }
}

/// Writes the shipped weights file from a checkpoint.
pub fn export(ckpt: &Path, data: &Path, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut vm = VarMap::new();
    let model = CwModel::with_synthesis(
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        super::synthesis_of(ckpt)?,
    )?;
    super::load_into(&mut vm, ckpt)?;
    let int = int_params(&vm, &model, data)?;

    let mut bufs = f16_tensors(&vm)?;
    let ints: [(&str, &[i32], Vec<usize>); 6] = [
        ("int.base", &int.base, vec![int.base.len()]),
        ("int.log_gain", &int.log_gain, vec![int.log_gain.len()]),
        ("int.ctx1.w", &int.ctx1_w, vec![int.ctx1_w.len()]),
        ("int.ctx1.b", &int.ctx1_b, vec![int.ctx1_b.len()]),
        ("int.ctx2.w", &int.ctx2_w, vec![int.ctx2_w.len()]),
        ("int.ctx2.b", &int.ctx2_b, vec![int.ctx2_b.len()]),
    ];
    for (name, v, shape) in ints {
        bufs.insert(
            name.into(),
            (
                Dtype::I32,
                shape,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        );
    }
    let shifts = [int.shift1 as i32, int.shift2 as i32];
    bufs.insert(
        "int.shifts".into(),
        (
            Dtype::I32,
            vec![2],
            shifts.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
    );
    let i32_bytes = |v: &[i32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    if !int.actx.is_empty() {
        let shifts = [int.actx_shifts[0] as i32, int.actx_shifts[1] as i32];
        bufs.insert(
            "int.actx.shifts".into(),
            (Dtype::I32, vec![2], i32_bytes(&shifts)),
        );
        for (i, net) in int.actx.iter().enumerate() {
            for (part, v) in [
                ("w1", &net.w1),
                ("b1", &net.b1),
                ("w2", &net.w2),
                ("b2", &net.b2),
            ] {
                bufs.insert(
                    format!("int.actx.{}.{part}", i + 1),
                    (Dtype::I32, vec![v.len()], i32_bytes(v)),
                );
            }
        }
    }
    if !int.recon_shrink.is_empty() {
        bufs.insert(
            "int.recon_shrink".into(),
            (
                Dtype::I32,
                vec![int.recon_shrink.len()],
                i32_bytes(&int.recon_shrink),
            ),
        );
    }
    let mf: Vec<u8> = int
        .map_freq
        .iter()
        .flat_map(|&x| (x as i32).to_le_bytes())
        .collect();
    bufs.insert(
        "int.map_freq".into(),
        (Dtype::I32, vec![int.map_freq.len()], mf),
    );

    write_safetensors(&bufs, out)
}

/// Tensors of a weights file being written: name → (type, shape, little-endian bytes).
pub type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

/// Every variable of `vm` as f16.
pub fn f16_tensors(vm: &VarMap) -> candle_core::Result<Tensors> {
    let mut bufs = Tensors::new();
    for (name, var) in vm.data().lock().unwrap().iter() {
        let t = var.as_tensor().to_dtype(DType::F16)?;
        let v: Vec<half::f16> = t.flatten_all()?.to_vec1()?;
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        bufs.insert(name.clone(), (Dtype::F16, t.dims().to_vec(), bytes));
    }
    Ok(bufs)
}

/// Writes the weights file `base` with the tensors whose names `which` picks taken from `vm`
/// (as f16) instead: those `base` has are replaced, those it lacks added (a post-filter
/// fitted to a file, a decoder fine-tuned on its latents).
pub fn replace_tensors(
    base: &[u8],
    vm: &VarMap,
    which: impl Fn(&str) -> bool,
    out: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut bufs = tensors_without(base, &which)?;
    bufs.extend(f16_tensors(vm)?.into_iter().filter(|(n, _)| which(n)));
    write_safetensors(&bufs, out)
}

/// The tensors of the weights file `base`, without those `drop` names, as they are stored.
pub fn tensors_without(
    base: &[u8],
    drop: impl Fn(&str) -> bool,
) -> Result<Tensors, safetensors::SafeTensorError> {
    let st = safetensors::SafeTensors::deserialize(base)?;
    Ok(st
        .tensors()
        .into_iter()
        .filter(|(name, _)| !drop(name))
        .map(|(name, view)| {
            (
                name,
                (view.dtype(), view.shape().to_vec(), view.data().to_vec()),
            )
        })
        .collect())
}

/// Writes `bufs` as a safetensors file.
pub fn write_safetensors(bufs: &Tensors, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::write(out, safetensors_bytes(bufs)?)?;
    Ok(())
}

/// `bufs` as the bytes of a safetensors file.
pub fn safetensors_bytes(bufs: &Tensors) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let views: Vec<(String, TensorView)> = bufs
        .iter()
        .map(|(n, (d, s, b))| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    safetensors::serialize(views, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_tensors_swaps_the_picked_tensors_and_keeps_the_rest() {
        let dev = Device::Cpu;
        let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut base = Tensors::new();
        base.insert(
            "enc.w".into(),
            (Dtype::F32, vec![2], f32_bytes(&[1.5, -2.0])),
        );
        base.insert(
            "post.w".into(),
            (Dtype::F32, vec![2], f32_bytes(&[9.0, 9.0])),
        );
        let base = safetensors_bytes(&base).unwrap();
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let post = vb
            .get_with_hints(2, "post.w", candle_nn::Init::Const(0.25))
            .unwrap();
        let added = vb
            .get_with_hints(1, "post.b", candle_nn::Init::Const(-0.5))
            .unwrap();
        let other = vb
            .get_with_hints(1, "dec.w", candle_nn::Init::Const(3.0))
            .unwrap();
        assert_eq!(
            (post.dims(), added.dims(), other.dims()),
            (&[2][..], &[1][..], &[1][..])
        );
        let out = std::env::temp_dir().join(format!("replace-{}.safetensors", std::process::id()));
        replace_tensors(&base, &vm, |n| n.starts_with("post."), &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        std::fs::remove_file(&out).ok();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
        names.sort();
        // dec.w is in vm but not picked: not written.
        assert_eq!(names, ["enc.w", "post.b", "post.w"]);
        let enc = st.tensor("enc.w").unwrap();
        assert_eq!(
            (enc.dtype(), enc.data()),
            (Dtype::F32, &f32_bytes(&[1.5, -2.0])[..])
        );
        let f16 = |name: &str| -> Vec<f32> {
            let t = st.tensor(name).unwrap();
            assert_eq!(t.dtype(), Dtype::F16);
            t.data()
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()
        };
        assert_eq!(f16("post.w"), [0.25, 0.25]);
        assert_eq!(f16("post.b"), [-0.5]);
    }
}
