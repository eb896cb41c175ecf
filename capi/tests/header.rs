//! `include/lic.h` is what cbindgen generates from `src/lib.rs` with `cbindgen.toml`, so the
//! header C programs compile against cannot drift from the ABI. `LIC_REGENERATE_HEADER=1`
//! rewrites it.

#[test]
fn the_header_is_generated_from_the_rust_declarations() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).unwrap();
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_src(format!("{dir}/src/lib.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen reads the C API")
        .write(&mut out);
    let out = String::from_utf8(out).unwrap();
    let path = format!("{dir}/include/lic.h");
    if std::env::var_os("LIC_REGENERATE_HEADER").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    assert!(
        out == std::fs::read_to_string(&path).unwrap(),
        "include/lic.h differs from cbindgen's output: \
         LIC_REGENERATE_HEADER=1 cargo test -p lic-capi --test header"
    );
}
