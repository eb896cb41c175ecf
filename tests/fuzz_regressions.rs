//! Replays every input the fuzzers (`fuzz/`, cargo-fuzz) ever found a failure with, through
//! the same checks the fuzz targets run (`fuzz/checks.rs`), plus the golden vectors as a
//! smoke input. A finding is saved as `tests/fuzz-regressions/<target>/<name>` when fixed.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        eprintln!("{target}: {}", path.display());
        check(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

#[test]
fn fuzz_findings_stay_fixed() {
    replay("container", checks::container);
    replay("decode", checks::decode);
    replay("entropy", checks::entropy);
}

#[test]
fn the_checks_accept_the_golden_vectors() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden");
    for entry in std::fs::read_dir(golden).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "lic") {
            let bytes = std::fs::read(&path).unwrap();
            checks::container(&bytes);
            // Mode byte 0: CRCs as they are; 1: repaired (a no-op on a good file).
            for mode in [0u8, 1, 0x41] {
                let mut input = vec![mode];
                input.extend_from_slice(&bytes);
                checks::decode(&input);
            }
            checks::entropy(&bytes);
        }
    }
}
