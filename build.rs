//! Points `LIC_EMBEDDED_CW` and `LIC_EMBEDDED_RNN` at the shipped default weights, or at an
//! empty file when the repository has none yet (the binary then asks for `--weights`), and
//! sets `LIC_EMBEDDED_CW_PLAIN_ID` to the embedded cw weights' id (hex) when they have no
//! reconstruction shrink, else to nothing: the decoder's memory estimate, which sees only a
//! file's header, then knows that files of those weights need no scale table per latent.
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The id of a cw weights file without an `int.recon_shrink` tensor, as hex; empty if it has
/// one or is not a safetensors file.
fn plain_id(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let Some(header) = bytes
        .get(..8)
        .map(|n| u64::from_le_bytes(n.try_into().unwrap()) as usize)
        .and_then(|n| bytes.get(8..8usize.saturating_add(n)))
    else {
        return String::new();
    };
    if header.windows(16).any(|w| w == b"int.recon_shrink") {
        return String::new();
    }
    Sha256::digest(&bytes)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    // A missing file named here would make cargo rebuild on every run; the folder's own
    // change time notices a weights file that appears.
    println!("cargo:rerun-if-changed={}", root.join("weights").display());
    for (model, var) in [("cw", "LIC_EMBEDDED_CW"), ("rnn", "LIC_EMBEDDED_RNN")] {
        let shipped = root.join("weights").join(format!("{model}.safetensors"));
        let path = if shipped.exists() {
            println!("cargo:rerun-if-changed={}", shipped.display());
            shipped
        } else {
            let empty = PathBuf::from(std::env::var("OUT_DIR").unwrap())
                .join(format!("no-{model}-weights.safetensors"));
            std::fs::write(&empty, b"").unwrap();
            empty
        };
        println!("cargo:rustc-env={var}={}", path.display());
        if model == "cw" {
            println!(
                "cargo:rustc-env=LIC_EMBEDDED_CW_PLAIN_ID={}",
                plain_id(&path)
            );
        }
    }
}
