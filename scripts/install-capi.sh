#!/usr/bin/env bash
# Installs lic's C library as C users expect it, under PREFIX (e.g. /usr/local):
#   lib/liblic_capi.so.VERSION, with the soname link (liblic_capi.so.0.MINOR before 1.0)
#   and the development link liblic_capi.so; include/lic.h; lib/pkgconfig/lic.pc.
# Then `cc prog.c $(pkg-config --cflags --libs lic)` builds against it
# (PKG_CONFIG_PATH=PREFIX/lib/pkgconfig for a prefix pkg-config does not search).
set -euo pipefail
PREFIX="${1:?usage: scripts/install-capi.sh PREFIX}"
cd "$(dirname "$0")/.."
cargo build --release -p lic-capi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' capi/Cargo.toml | head -n 1)
major=${version%%.*}
rest=${version#*.}
minor=${rest%%.*}
if [ "$major" = 0 ]; then abi="0.$minor"; else abi="$major"; fi
libdir="$PREFIX/lib"
install -d "$libdir/pkgconfig" "$PREFIX/include"
install -m 755 target/release/liblic_capi.so "$libdir/liblic_capi.so.$version"
ln -sfn "liblic_capi.so.$version" "$libdir/liblic_capi.so.$abi"
ln -sfn "liblic_capi.so.$abi" "$libdir/liblic_capi.so"
install -m 644 capi/include/lic.h "$PREFIX/include/lic.h"
cat > "$libdir/pkgconfig/lic.pc" <<PC
prefix=$PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: lic
Description: Decoder of .lic images (a learned image codec)
Version: $version
Libs: -L\${libdir} -llic_capi
Cflags: -I\${includedir}
PC
echo "installed lic $version (soname liblic_capi.so.$abi) under $PREFIX"
