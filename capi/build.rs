//! Gives the shared library a soname, so that programs linked against it keep loading the
//! ABI they were built for: `liblic_capi.so.MAJOR`, or `liblic_capi.so.0.MINOR` before 1.0
//! (where, as in Cargo's reading of versions, a minor release may change the ABI).
//! `scripts/install-capi.sh` installs the library under that name with its links.

fn main() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") == "linux" {
        let (major, minor) = (
            var("CARGO_PKG_VERSION_MAJOR"),
            var("CARGO_PKG_VERSION_MINOR"),
        );
        let abi = if major == "0" {
            format!("0.{minor}")
        } else {
            major
        };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liblic_capi.so.{abi}");
    }
}
