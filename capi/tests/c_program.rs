//! Compiles `decode_golden.c` with the system C compiler against the cdylib (installed as
//! `scripts/install-capi.sh` installs it: loaded by its soname), decodes every
//! golden vector through the C ABI, and checks the pixels: the program's FNV-1a hash must be
//! that of the Rust decoder's pixels of the same file (`tests/golden.rs` checks those against
//! the reference).

use std::path::{Path, PathBuf};
use std::process::Command;

fn fnv1a(p: &[u8]) -> u64 {
    p.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// The folder cargo put this crate's cdylib in (beside the test binary's `deps/`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    for d in [deps.clone(), deps.parent().unwrap().to_path_buf()] {
        if d.join("liblic_capi.so").exists() {
            return d;
        }
    }
    panic!("liblic_capi.so not found near {}", deps.display());
}

#[test]
fn c_program_decodes_the_golden_vectors() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let golden = here.join("../format-spec/golden");
    let dir = tempfile_dir();
    let prog = dir.join("decode_golden");
    // As installed: the program links against liblic_capi.so and, through the library's
    // soname, loads liblic_capi.so.0.MINOR, the only file in the folder it runs with.
    let built = lib_dir().join("liblic_capi.so");
    let (link, lib) = (dir.join("link"), dir.join("run"));
    std::fs::create_dir_all(&link).unwrap();
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::copy(&built, link.join("liblic_capi.so")).unwrap();
    let (major, minor) = (
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
    );
    let soname = if major == "0" {
        format!("liblic_capi.so.0.{minor}")
    } else {
        format!("liblic_capi.so.{major}")
    };
    std::fs::copy(&built, lib.join(soname)).unwrap();
    let st = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg(here.join("tests/decode_golden.c"))
        .arg("-I")
        .arg(here.join("include"))
        .arg("-L")
        .arg(&link)
        .arg("-llic_capi")
        .arg("-o")
        .arg(&prog)
        .status()
        .expect("a C compiler (cc)");
    assert!(st.success(), "cc failed");

    let expected = std::fs::read_to_string(golden.join("EXPECTED.txt")).unwrap();
    let mut checked = 0;
    for line in expected.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let bytes = std::fs::read(golden.join(f[0])).unwrap();
        let img = lic::decode(&bytes).unwrap();
        let out = Command::new(&prog)
            .arg(golden.join(f[0]))
            .env("LD_LIBRARY_PATH", &lib)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            f[0],
            String::from_utf8_lossy(&out.stderr)
        );
        let want = format!(
            "{} {} {} {:016x}\n",
            img.width,
            img.height,
            img.color.channels(),
            fnv1a(&img.data)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{}", f[0]);
        checked += 1;
    }
    assert_eq!(checked, 4);
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("lic-capi-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
