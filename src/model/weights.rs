//! Weights files: the float transform tensors (f16 safetensors) plus the integer entropy
//! tensors (i32), identified by the first 8 bytes of the file's SHA-256.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use super::analysis::{Analyzer, ANALYSIS};
use super::cw::CwModel;
use super::postfilter::{PostFilter, MAX_WIDTH};
use super::rnn::{RnnAnalyzer, RnnModel, RnnSynthesizer};
use super::synthesis::{Stage, Synthesizer};
use crate::arch::cw::{M, RATE_POINTS, SYNTHESIS};
use crate::entropy::bits::BitModel;
use crate::entropy::params::{IntMlp, IntParams};
use crate::entropy::tables::{categorical, Categorical, ScaleTables};

/// The default cw weights, embedded at build time (empty when the repository has none yet).
pub static EMBEDDED_CW: &[u8] = include_bytes!(env!("LIC_EMBEDDED_CW"));
/// The embedded cw weights' id (hex) when they have no reconstruction shrink, else empty
/// (build.rs): their files' latents need no scale table each ([`crate::codec::decode_memory`]).
pub const EMBEDDED_CW_PLAIN_ID: &str = env!("LIC_EMBEDDED_CW_PLAIN_ID");
/// The default rnn weights, embedded likewise.
pub static EMBEDDED_RNN: &[u8] = include_bytes!(env!("LIC_EMBEDDED_RNN"));

/// Why weights could not be loaded.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// This binary was built without default weights.
    #[error("this lic build has no embedded weights; load a weights file")]
    NotEmbedded,
    /// No weights with the id a file needs: neither embedded nor in a weights folder.
    #[error("this file needs weights {id}, which this build does not embed and which are not in {}; {}",
        display_dirs(.searched), super::store::provenance(.id, .shipped))]
    NotFound {
        /// The id, 16 hex digits.
        id: String,
        /// The folders searched.
        searched: Vec<std::path::PathBuf>,
        /// What lic shipped under that id, if it did.
        shipped: Option<Box<super::store::ShippedWeights>>,
    },
    /// A weights file is named for one id but holds another.
    #[error("{}: named for weights {id}, but its contents are weights {actual}", .path.display())]
    Mismatch {
        /// The file.
        path: std::path::PathBuf,
        /// The id its name gives.
        id: String,
        /// The id of its contents.
        actual: String,
    },
    /// A weights file found by id failed to load.
    #[error("{}: {source}", .path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why it failed.
        source: Box<WeightsError>,
    },
    /// The file is not a valid safetensors file.
    #[error("weights file is not valid safetensors: {0}")]
    Parse(String),
    /// A tensor is missing or has the wrong shape or type.
    #[error("weights file is incomplete: {0}")]
    Tensor(String),
}

fn display_dirs(dirs: &[std::path::PathBuf]) -> String {
    if dirs.is_empty() {
        return "any weights folder (none is set)".into();
    }
    let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    list.join(", ")
}

/// Loaded cw weights, ready to code.
///
/// Decoding needs the synthesis, the per-channel gains and the integer tensors; encoding
/// the analysis, the gains, the importance-map bias and the integer tensors. Loading reads
/// the gains, the bias and the integer tensors and checks the synthesis tensors; the
/// synthesis and the analysis are built when [`synthesizer`](Self::synthesizer) and
/// [`analyzer`](Self::analyzer) are first called (a decoder overlaps the synthesis with its
/// first entropy decoding). The float candle model (every layer, twice the size of the file)
/// is built only when [`model`](Self::model) is called, by training and experiments.
pub struct CwWeights {
    /// The weights file, kept to build the transforms from.
    file: std::borrow::Cow<'static, [u8]>,
    model: std::sync::OnceLock<Result<CwModel, WeightsError>>,
    synthesizer: std::sync::OnceLock<Result<Synthesizer, WeightsError>>,
    analyzer: std::sync::OnceLock<Result<Analyzer, WeightsError>>,
    /// `(RATE_POINTS, M)`: ln of the per-channel gain at each rate point (`log_gain`).
    log_gain: Vec<f32>,
    /// `(RATE_POINTS)`: the importance map's bias at each rate point (`map_bias`).
    map_bias: Vec<f32>,
    /// The integer entropy parameters.
    pub int: IntParams,
    /// The scale tables.
    pub scales: ScaleTables,
    /// Importance-map models, one per context.
    pub map_models: Vec<Categorical>,
    /// Importance-map frequencies, one row per context.
    pub map_freqs: Vec<Vec<u32>>,
    /// First 8 bytes of the SHA-256 of the file.
    pub id: [u8; 8],
}

/// The identifier of a weights file: the first 8 bytes of its SHA-256.
pub fn weights_id(bytes: &[u8]) -> [u8; 8] {
    let d = Sha256::digest(bytes);
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    id
}

/// Hex form of a weights id.
pub fn id_hex(id: &[u8; 8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The float tensor (f32, f16 or bf16) `name`, checked to have exactly `shape`.
fn float_tensor<'a>(
    st: &'a SafeTensors,
    name: &str,
    shape: &[usize],
) -> Result<safetensors::tensor::TensorView<'a>, WeightsError> {
    let t = st
        .tensor(name)
        .map_err(|_| WeightsError::Tensor(format!("missing {name}")))?;
    if t.shape() != shape {
        return Err(WeightsError::Tensor(format!(
            "{name} has shape {:?}, expected {shape:?}",
            t.shape()
        )));
    }
    if !matches!(t.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
        return Err(WeightsError::Tensor(format!(
            "{name} is {:?}, not a float",
            t.dtype()
        )));
    }
    Ok(t)
}

/// A float tensor (f32, f16 or bf16) of exactly `shape`, as f32 values.
fn read_f32(st: &SafeTensors, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError> {
    let t = float_tensor(st, name, shape)?;
    let d = t.data();
    Ok(match t.dtype() {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(WeightsError::Tensor(format!(
                "{name} is {other:?}, not a float"
            )))
        }
    })
}

/// The tensors of synthesis stage `i` (`SYNTHESIS[i]`): weight, bias, and the inverse
/// GDN's β and Γ when the file has them (`igdn`) and the stage is not the last.
fn synthesis_tensors(i: usize, igdn: bool) -> Vec<(String, Vec<usize>)> {
    let (cin, cout) = SYNTHESIS[i];
    let mut names = vec![
        (format!("dec.{i}.weight"), vec![4 * cout, cin, 3, 3]),
        (format!("dec.{i}.bias"), vec![4 * cout]),
    ];
    if igdn && i + 1 < SYNTHESIS.len() {
        names.push((format!("dec_gdn.{i}.beta"), vec![cout]));
        names.push((format!("dec_gdn.{i}.gamma"), vec![cout, cout]));
    }
    names
}

/// The post-filter's tensors for `width` hidden channels (spec §5 step 4).
fn post_filter_tensors(width: usize) -> [(&'static str, Vec<usize>); 6] {
    [
        ("post.0.weight", vec![width, 4, 3, 3]),
        ("post.0.bias", vec![width]),
        ("post.1.weight", vec![width, width, 1, 1]),
        ("post.1.bias", vec![width]),
        ("post.2.weight", vec![3, width, 3, 3]),
        ("post.2.bias", vec![3]),
    ]
}

/// The post-filter's width when the file has one (`post.0.bias` present), its tensors
/// checked.
fn check_post_filter(st: &SafeTensors) -> Result<Option<usize>, WeightsError> {
    let Ok(bias) = st.tensor("post.0.bias") else {
        return Ok(None);
    };
    let width = match bias.shape() {
        [w] if (1..=MAX_WIDTH).contains(w) => *w,
        other => {
            return Err(WeightsError::Tensor(format!(
                "post.0.bias has shape {other:?}, expected [width] with width 1..={MAX_WIDTH}"
            )))
        }
    };
    for (name, shape) in post_filter_tensors(width) {
        float_tensor(st, name, &shape)?;
    }
    Ok(Some(width))
}

/// Checks that the file has every synthesis tensor (and the post-filter's, if any), with its
/// shape and a float type; returns whether the synthesis uses inverse GDN (`dec_gdn.*`
/// present; else ReLU) and the post-filter's width if it has one.
fn check_synthesis(st: &SafeTensors) -> Result<(bool, Option<usize>), WeightsError> {
    let igdn = st.names().contains(&"dec_gdn.0.beta");
    for i in 0..SYNTHESIS.len() {
        for (name, shape) in synthesis_tensors(i, igdn) {
            float_tensor(st, &name, &shape)?;
        }
    }
    Ok((igdn, check_post_filter(st)?))
}

/// The decoder's synthesis from the `dec.*` (and `dec_gdn.*`) tensors. One stage at a time:
/// a stage's f32 weights live only until its Winograd form is made.
fn read_synthesizer(st: &SafeTensors) -> Result<Synthesizer, WeightsError> {
    let (igdn, post_width) = check_synthesis(st)?;
    let stages = (0..SYNTHESIS.len())
        .map(|i| {
            let (cin, cout) = SYNTHESIS[i];
            let mut t = synthesis_tensors(i, igdn)
                .into_iter()
                .map(|(name, shape)| read_f32(st, &name, &shape));
            let (w, b) = (t.next().unwrap()?, t.next().unwrap()?);
            let gdn = match (t.next(), t.next()) {
                (Some(beta), Some(gamma)) => Some((beta?, gamma?)),
                _ => None,
            };
            let last = i + 1 == SYNTHESIS.len();
            Stage::new(cin, cout, w, b, gdn, last).map_err(WeightsError::Tensor)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let synthesizer = Synthesizer::new(stages);
    let Some(width) = post_width else {
        return Ok(synthesizer);
    };
    let mut t = post_filter_tensors(width)
        .into_iter()
        .map(|(name, shape)| read_f32(st, name, &shape));
    let mut layer = || -> Result<(Vec<f32>, Vec<f32>), WeightsError> {
        Ok((t.next().unwrap()?, t.next().unwrap()?))
    };
    let post =
        PostFilter::new(width, layer()?, layer()?, layer()?).map_err(WeightsError::Tensor)?;
    Ok(synthesizer.with_post_filter(post))
}

/// The encoder's analysis from the `enc.*` and `enc_gdn.*` tensors.
fn read_analyzer(st: &SafeTensors) -> Result<Analyzer, WeightsError> {
    let stages = ANALYSIS
        .iter()
        .enumerate()
        .map(|(i, &(cin, cout))| {
            let w = read_f32(st, &format!("enc.{i}.weight"), &[cout, cin, 3, 3])?;
            let b = read_f32(st, &format!("enc.{i}.bias"), &[cout])?;
            let gdn = if i + 1 < ANALYSIS.len() {
                Some((
                    read_f32(st, &format!("enc_gdn.{i}.beta"), &[cout])?,
                    read_f32(st, &format!("enc_gdn.{i}.gamma"), &[cout, cout])?,
                ))
            } else {
                None
            };
            Stage::analysis(cin, cout, w, b, gdn).map_err(WeightsError::Tensor)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Analyzer::new(stages))
}

/// The bytes of the safetensors file `st` without its tensor `name`, serialized as lic's
/// tools write every weights file (so a file that had the tensor added to it comes back byte
/// for byte, and with it its id).
fn without_tensor(st: &SafeTensors, name: &str) -> Result<Vec<u8>, WeightsError> {
    let kept: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != name)
        .collect();
    safetensors::serialize(kept, None).map_err(|e| WeightsError::Parse(e.to_string()))
}

fn read_i32(st: &SafeTensors, name: &str) -> Result<Vec<i32>, WeightsError> {
    let t = st
        .tensor(name)
        .map_err(|_| WeightsError::Tensor(format!("missing {name}")))?;
    if t.dtype() != Dtype::I32 {
        return Err(WeightsError::Tensor(format!("{name} is not i32")));
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// A pair of fixed-point shifts: exactly two non-negative values.
fn read_shifts(st: &SafeTensors, name: &str) -> Result<[u32; 2], WeightsError> {
    match read_i32(st, name)?[..] {
        [a, b] if a >= 0 && b >= 0 => Ok([a as u32, b as u32]),
        _ => Err(WeightsError::Tensor(format!(
            "{name} must hold two non-negative values"
        ))),
    }
}

/// Reads the integer entropy tensors of a weights file.
pub fn read_int_params(bytes: &[u8]) -> Result<IntParams, WeightsError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| WeightsError::Parse(e.to_string()))?;
    let [shift1, shift2] = read_shifts(&st, "int.shifts")?;
    let mut p = IntParams {
        base: read_i32(&st, "int.base")?,
        log_gain: read_i32(&st, "int.log_gain")?,
        ctx1_w: read_i32(&st, "int.ctx1.w")?,
        ctx1_b: read_i32(&st, "int.ctx1.b")?,
        ctx2_w: read_i32(&st, "int.ctx2.w")?,
        ctx2_b: read_i32(&st, "int.ctx2.b")?,
        shift1,
        shift2,
        map_freq: read_i32(&st, "int.map_freq")?
            .into_iter()
            .map(|v| v.max(0) as u32)
            .collect(),
        actx: Vec::new(),
        actx_shifts: [0, 0],
        recon_shrink: Vec::new(),
    };
    // Optional too: without it every value reconstructs at its integer.
    if st.names().contains(&"int.recon_shrink") {
        p.recon_shrink = read_i32(&st, "int.recon_shrink")?;
    }
    // The anchor context is optional: weights from before it code anchors without.
    if st.names().iter().any(|n| n.starts_with("int.actx.")) {
        p.actx_shifts = read_shifts(&st, "int.actx.shifts")?;
        for k in 1..crate::model::cw::SLICES {
            p.actx.push(IntMlp {
                w1: read_i32(&st, &format!("int.actx.{k}.w1"))?,
                b1: read_i32(&st, &format!("int.actx.{k}.b1"))?,
                w2: read_i32(&st, &format!("int.actx.{k}.w2"))?,
                b2: read_i32(&st, &format!("int.actx.{k}.b2"))?,
            });
        }
    }
    p.validate().map_err(|e| WeightsError::Tensor(e.into()))?;
    Ok(p)
}

impl CwWeights {
    /// Loads weights from the bytes of a safetensors file (kept in memory for
    /// [`model`](Self::model)).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WeightsError> {
        Self::load(std::borrow::Cow::Owned(bytes.to_vec()))
    }

    /// [`from_bytes`](Self::from_bytes) on bytes that live as long as the program (the
    /// embedded weights), without a copy.
    pub fn from_static(bytes: &'static [u8]) -> Result<Self, WeightsError> {
        Self::load(std::borrow::Cow::Borrowed(bytes))
    }

    fn load(file: std::borrow::Cow<'static, [u8]>) -> Result<Self, WeightsError> {
        if file.is_empty() {
            return Err(WeightsError::NotEmbedded);
        }
        // The file's hash, its longest step, runs beside the rest.
        let (id, loaded) = rayon::join(
            || weights_id(&file),
            || -> Result<_, WeightsError> {
                let int = read_int_params(&file)?;
                let st = SafeTensors::deserialize(&file)
                    .map_err(|e| WeightsError::Parse(e.to_string()))?;
                check_synthesis(&st)?;
                let log_gain = read_f32(&st, "log_gain", &[RATE_POINTS, M])?;
                let map_bias = read_f32(&st, "map_bias", &[RATE_POINTS])?;
                Ok((int, log_gain, map_bias, ScaleTables::new()))
            },
        );
        let (int, log_gain, map_bias, scales) = loaded?;
        let map_freqs: Vec<Vec<u32>> = int
            .map_freq
            .chunks(crate::model::cw::LEVELS)
            .map(|r| r.to_vec())
            .collect();
        Ok(Self {
            synthesizer: std::sync::OnceLock::new(),
            analyzer: std::sync::OnceLock::new(),
            log_gain,
            map_bias,
            scales,
            map_models: map_freqs.iter().map(|f| categorical(f)).collect(),
            map_freqs,
            int,
            id,
            file,
            model: std::sync::OnceLock::new(),
        })
    }

    /// The analysis as encoding runs it, built from the file the first time it is asked for.
    pub fn analyzer(&self) -> Result<&Analyzer, WeightsError> {
        self.built(&self.analyzer, read_analyzer)
    }

    /// The synthesis as decoding runs it, built from the file the first time it is asked
    /// for.
    pub fn synthesizer(&self) -> Result<&Synthesizer, WeightsError> {
        self.built(&self.synthesizer, read_synthesizer)
    }

    /// The float model (analysis, synthesis, rate parameters) that training and the
    /// experiments run, built from the file the first time it is asked for; coding does
    /// not need it.
    pub fn model(&self) -> Result<&CwModel, WeightsError> {
        self.model
            .get_or_init(|| {
                let vb = VarBuilder::from_slice_safetensors(&self.file, DType::F32, &Device::Cpu)
                    .map_err(|e| WeightsError::Parse(e.to_string()))?;
                CwModel::new(vb).map_err(|e| WeightsError::Tensor(e.to_string()))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// What `cell` holds, made from the file by `read` the first time.
    fn built<'s, T>(
        &'s self,
        cell: &'s std::sync::OnceLock<Result<T, WeightsError>>,
        read: fn(&SafeTensors) -> Result<T, WeightsError>,
    ) -> Result<&'s T, WeightsError> {
        cell.get_or_init(|| {
            let st = SafeTensors::deserialize(&self.file)
                .map_err(|e| WeightsError::Parse(e.to_string()))?;
            read(&st)
        })
        .as_ref()
        .map_err(Clone::clone)
    }

    /// The per-channel gains at rate code `q16` (`M` values): `exp` of `log_gain`
    /// interpolated between the two rate points around it, as
    /// [`CwModel::rate_params`] computes it.
    pub fn gains(&self, q16: u16) -> Vec<f32> {
        let pos = crate::rate::RatePos::from_q16(q16);
        let (wa, wb) = ((1.0 - pos.frac) as f32, pos.frac as f32);
        let (a, b) = (
            &self.log_gain[pos.index * M..][..M],
            &self.log_gain[(pos.index + 1) * M..][..M],
        );
        a.iter()
            .zip(b)
            .map(|(a, b)| (a * wa + b * wb).exp())
            .collect()
    }

    /// The importance map's bias at rate code `q16`, interpolated as [`gains`](Self::gains)
    /// interpolates (the encoder's; [`CwModel::rate_params`] computes the same).
    pub fn map_bias(&self, q16: u16) -> f32 {
        let pos = crate::rate::RatePos::from_q16(q16);
        let (wa, wb) = ((1.0 - pos.frac) as f32, pos.frac as f32);
        self.map_bias[pos.index] * wa + self.map_bias[pos.index + 1] * wb
    }

    /// The embedded default weights.
    pub fn embedded() -> Result<Self, WeightsError> {
        Self::from_static(EMBEDDED_CW)
    }

    /// The embedded default weights, parsed once per process and kept: for callers that
    /// decode file after file without holding a [`crate::Codec`] (`lic::decode`, the
    /// `image` integration, the C ABI).
    pub fn embedded_shared() -> Result<&'static Self, WeightsError> {
        static SHARED: std::sync::OnceLock<Result<CwWeights, WeightsError>> =
            std::sync::OnceLock::new();
        SHARED
            .get_or_init(Self::embedded)
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Loaded rnn weights: the recurrent transforms and the bit probability table.
pub struct RnnWeights {
    /// The float transforms.
    pub model: RnnModel,
    /// The decoder's transforms as the codec runs them (made from `model`).
    pub synthesizer: RnnSynthesizer,
    /// The encoder's transforms as the codec runs them (made from `model`).
    pub analyzer: RnnAnalyzer,
    /// The conditional bit model (spec §6.6, with §6.6b when the file has `bits.mix`).
    pub bits: BitModel,
    /// First 8 bytes of the SHA-256 of the file.
    pub id: [u8; 8],
    /// When the file has `bits.mix`: the id of the same file without it, and the table-only
    /// bit model. Files of those weights (before the logistic model was fitted to them) have
    /// the same bits and pictures, so these weights decode them too.
    pub table_only: Option<([u8; 8], BitModel)>,
}

impl RnnWeights {
    /// Loads weights from the bytes of a safetensors file (tensors `e0.*`, `enc.*`, `bin.*`,
    /// `dec.*`, `out.*`, the i32 table `bits.p_one` and, optionally, the i32 logistic bit
    /// weights `bits.mix`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WeightsError> {
        if bytes.is_empty() {
            return Err(WeightsError::NotEmbedded);
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| WeightsError::Parse(e.to_string()))?;
        let p_one: Vec<u16> = read_i32(&st, "bits.p_one")?
            .into_iter()
            .map(|v| u16::try_from(v).unwrap_or(0))
            .collect();
        // The logistic bit model (spec §6.6b) is optional: weights without it code with the
        // table alone.
        let mix = if st.names().iter().any(|n| *n == "bits.mix") {
            Some(read_i32(&st, "bits.mix")?)
        } else {
            None
        };
        let table_only = match mix {
            Some(_) => Some((
                weights_id(&without_tensor(&st, "bits.mix")?),
                BitModel::new(p_one.clone()).map_err(|e| WeightsError::Tensor(e.into()))?,
            )),
            None => None,
        };
        let bits = BitModel::with_mix(p_one, mix).map_err(|e| WeightsError::Tensor(e.into()))?;
        let vb = VarBuilder::from_slice_safetensors(bytes, DType::F32, &Device::Cpu)
            .map_err(|e| WeightsError::Parse(e.to_string()))?;
        let model = RnnModel::new(vb).map_err(|e| WeightsError::Tensor(e.to_string()))?;
        let synthesizer = model
            .synthesizer()
            .map_err(|e| WeightsError::Tensor(e.to_string()))?;
        let analyzer = model
            .analyzer()
            .map_err(|e| WeightsError::Tensor(e.to_string()))?;
        Ok(Self {
            model,
            synthesizer,
            analyzer,
            bits,
            id: weights_id(bytes),
            table_only,
        })
    }

    /// The bit model for a file made with the weights `id`: these weights' own, or their
    /// table-only model for a file of the same weights before `bits.mix`; otherwise the file
    /// needs other weights.
    pub fn bits_for(&self, id: &[u8; 8]) -> Option<&BitModel> {
        if *id == self.id {
            return Some(&self.bits);
        }
        match &self.table_only {
            Some((old, bits)) if old == id => Some(bits),
            _ => None,
        }
    }

    /// The embedded default rnn weights, parsed once per process.
    pub fn embedded_shared() -> Result<&'static Self, WeightsError> {
        static SHARED: std::sync::OnceLock<Result<RnnWeights, WeightsError>> =
            std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| Self::from_bytes(EMBEDDED_RNN))
            .as_ref()
            .map_err(Clone::clone)
    }
}
