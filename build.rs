//! Points `LIC_EMBEDDED_CW` and `LIC_EMBEDDED_RNN` at the shipped default weights, or at an
//! empty file when the repository has none yet (the binary then asks for `--weights`).
use std::path::PathBuf;

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
    }
}
