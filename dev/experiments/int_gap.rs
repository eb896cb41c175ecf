//! How many bits the integer entropy path costs over the float model it was exported from
//! (development aid): on 256² centre crops of a folder, the float model's bits of the
//! rounded latents (importance map not counted) against the real rANS stream of the same
//! crop coded with the exported weights (map included).
//!
//! usage: cargo run --release --features train --example int_gap -- CKPT WEIGHTS DIR [q ...]
//! (CKPT may be WEIGHTS itself: its f16 transform, read as f32, gives the same latents.)
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lic::codec::cw::{read_symbols_keeping, NO_TABLE};
use lic::container::{types::CWLT, Container};
use lic::model::cw::{laplace_bits, CwModel, RatePos, M};
use lic::{Codec, ColorType, CwWeights, Image};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dev = Device::Cpu;
    // SAFETY: the file is not modified while mapped (a development tool).
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&args[1]], DType::F32, &dev)? };
    let model = CwModel::new(vb)?;
    assert!(model.actx.is_some(), "{} has no anchor context", args[1]);
    let wbytes = std::fs::read(&args[2])?;
    let weights = CwWeights::from_bytes(&wbytes)?;
    let codec = Codec::from_weights_bytes(&wbytes)?.with_tile_size(0);
    let files = lic_train::data::image_files(std::path::Path::new(&args[3]))?;
    let qs: Vec<f32> = if args.len() > 4 {
        args[4..].iter().map(|s| s.parse().unwrap()).collect()
    } else {
        vec![0.1, 0.3, 0.5, 0.7, 0.9]
    };
    for q in qs {
        let q16 = (q * 65535.0).round() as u16;
        let pos = lic::codec::cw::rate_pos(q16);
        let (mut float_bits, mut real_bits, mut est_bits) = (0.0, 0.0, 0.0);
        let (mut float_syms, mut int_syms, mut int_latent_bits) = (0.0, 0usize, 0.0);
        for f in &files {
            let p = lic_train::data::load_picture(f)?;
            let x = lic_train::data::centre_crop(&p, 256, &dev)?;
            let (b, n) = latent_bits(&model, &x, pos)?;
            float_bits += b;
            float_syms += n;
            let (_, _, h, w) = x.dims4()?;
            let rgb: Vec<u8> = (x * 255.0)?
                .round()?
                .squeeze(0)?
                .permute((1, 2, 0))?
                .flatten_all()?
                .to_dtype(DType::U8)?
                .to_vec1()?;
            let img = Image {
                width: w as u32,
                height: h as u32,
                color: ColorType::Rgb,
                data: rgb,
            };
            let (file, st) = codec.encode_with_stats(&img, q)?;
            int_latent_bits += table_bits(&weights, &file, h / 16, w / 16)?;
            real_bits += st.stream_bytes as f64 * 8.0;
            est_bits += st.estimated_bits;
            int_syms += st.symbols;
        }
        println!(
            "q {q:.1}: float latent bits {float_bits:.0}, integer estimate {est_bits:.0} ({:+.2} %), real stream {real_bits:.0} ({:+.2} %)",
            (est_bits / float_bits - 1.0) * 100.0,
            (real_bits / float_bits - 1.0) * 100.0
        );
        println!(
            "  symbols: float mask {float_syms:.0}, codec {int_syms} (map included); integer latent bits {int_latent_bits:.0} ({:+.2} %)",
            (int_latent_bits / float_bits - 1.0) * 100.0
        );
    }
    Ok(())
}

/// The float model's bits of the rounded, masked latents of `x` at `pos`, and their number.
fn latent_bits(model: &CwModel, x: &Tensor, pos: RatePos) -> candle_core::Result<(f64, f64)> {
    let (y, logit) = model.analysis(x)?;
    let (lg, _) = model.rate_params(pos)?;
    let lg4 = lg.reshape((1, M, 1, 1))?;
    let (mask, base) = model.mask_and_base(&logit, pos)?;
    let yq = (y.broadcast_mul(&lg4.exp()?)?.round()? * &mask)?;
    let ls = model.log_sigma(&yq, &base, &lg4)?;
    let bits = (laplace_bits(&yq, &ls)? * &mask)?
        .sum_all()?
        .to_scalar::<f32>()? as f64;
    Ok((bits, mask.sum_all()?.to_scalar::<f32>()? as f64))
}

/// The integer tables' bits of the latent symbols of a (single-tile) file, map excluded.
fn table_bits(
    weights: &CwWeights,
    file: &[u8],
    h: usize,
    w: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let parsed = Container::parse(file)?;
    let lat = read_symbols_keeping(
        weights,
        parsed.find_all(CWLT)[0],
        (h, w),
        parsed.header.quality,
        true,
    )?;
    Ok(lat
        .tables
        .iter()
        .enumerate()
        .filter(|(_, &t)| t != NO_TABLE)
        .map(|(k, &t)| weights.scales.table_bits(t as usize, lat.values.get(k)))
        .sum())
}
