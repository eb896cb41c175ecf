#!/usr/bin/env bash
# Builds the gdk-pixbuf loader (io-lic.c) against lic's C library installed in a temporary
# prefix, registers it in a loaders.cache of its own and the .lic MIME type (lic-mime.xml:
# gdk-pixbuf picks loaders by GIO's MIME sniffing) in a data folder of its own, and loads .lic
# files through GdkPixbuf itself (test-load.c): the golden vectors, a file made from a PNG
# with an ICC profile, and a progressive one. Installs Debian's gdk-pixbuf development packages when missing (CI).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! pkg-config --exists gdk-pixbuf-2.0 2>/dev/null || ! command -v update-mime-database >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pkgconf libgdk-pixbuf-2.0-dev \
        shared-mime-info >/dev/null
fi
work=$(mktemp -d)
scripts/install-capi.sh "$work/prefix" >/dev/null
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
cc -shared -fPIC -Wall -Werror -o "$work/libpixbufloader-lic.so" viewers/gdk-pixbuf/io-lic.c \
    $(pkg-config --cflags --libs gdk-pixbuf-2.0 lic) -Wl,-rpath,"$work/prefix/lib"
# shellcheck disable=SC2046
cc -Wall -Werror -o "$work/test-load" viewers/gdk-pixbuf/test-load.c \
    $(pkg-config --cflags --libs gdk-pixbuf-2.0 lic) -Wl,-rpath,"$work/prefix/lib"
query=$(pkg-config --variable=gdk_pixbuf_query_loaders gdk-pixbuf-2.0)
"$query" "$work/libpixbufloader-lic.so" > "$work/loaders.cache"
grep -q '"lic"' "$work/loaders.cache"
mkdir -p "$work/share/mime/packages"
cp viewers/gdk-pixbuf/lic-mime.xml "$work/share/mime/packages/lic.xml"
update-mime-database "$work/share/mime" 2>/dev/null
# A PNG with an ICC profile (arbitrary bytes: lic carries them unread), encoded by lic.
python3 - "$work/icc.png" <<'PY'
import struct, sys, zlib
def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
w, h = 40, 24
rows = b"".join(b"\0" + bytes((x * 6 + y * 3) % 256 for x in range(w) for _ in range(3)) for y in range(h))
icc = bytes((i * 7) % 251 for i in range(600))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
png += chunk(b"iCCP", b"test\0\0" + zlib.compress(icc)) + chunk(b"IDAT", zlib.compress(rows))
open(sys.argv[1], "wb").write(png + chunk(b"IEND", b""))
PY
cargo run --release --quiet --bin lic -- encode -q 0.5 "$work/icc.png" "$work/icc.lic"
# A progressive (rnn) file: shown layer by layer, the last picture that of a whole decode.
cargo run --release --quiet --bin lic -- encode --model rnn -q 0.3 format-spec/golden/rgb-64x48-q030.png "$work/rnn.lic"
GDK_PIXBUF_MODULE_FILE="$work/loaders.cache" XDG_DATA_DIRS="$work/share:/usr/share" \
    "$work/test-load" format-spec/golden/*.lic "$work/icc.lic" "$work/rnn.lic"
rm -rf "$work"
