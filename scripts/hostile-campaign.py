#!/usr/bin/env python3
"""Feeds `lic decode` damaged and crafted files and reports how it took them.

Seeds are real .lic files (made by `lic encode` from the Kodak and test images); each case
is one mutation of a seed: byte flips (with and without the chunk CRC repaired), cuts,
header fields rewritten (CRC repaired), chunks duplicated, dropped or swapped, a tile's
stream replaced by random bytes or by the zero-cost word `01 00 00 00`. Every file is decoded
by its own `lic decode` process under `/usr/bin/time`, with a time limit.

Outcome per file: decoded, refused (exit 1 and one error line), panic (exit 101), killed by
a signal, or over the time limit. Prints the counts, the slowest and largest runs, and the
slowest file under 1 KB.

usage: scripts/hostile-campaign.py LIC_BINARY SEED.lic... [--cases N] [--seed S]
       [--timeout SECONDS] [--keep DIR]
"""
import argparse
import os
import random
import struct
import subprocess
import tempfile
import zlib

SIG = b"\x89LIC\r\n\x1a\n"


def chunks(data):
    """(offset, type, payload) of each chunk after the signature, as far as they parse."""
    out, pos = [], len(SIG)
    while pos + 8 <= len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        if pos + 12 + n > len(data):
            break
        out.append((pos, data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]))
        pos += 12 + n
    return out


def chunk(kind, payload):
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def assemble(parts):
    return SIG + b"".join(chunk(k, p) for k, p in parts)


def mutate(data, rng):
    parts = [(k, p) for _, k, p in chunks(data)]
    kind = rng.choice(["flip", "flip-crc", "cut", "header", "dup", "drop", "swap",
                       "random-tile", "zero-word", "tiny-header"])
    if kind == "flip":
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return kind, bytes(b)
    if kind == "flip-crc":
        i = rng.randrange(len(parts))
        p = bytearray(parts[i][1])
        if p:
            for _ in range(rng.randint(1, 8)):
                p[rng.randrange(len(p))] ^= 1 << rng.randrange(8)
        parts[i] = (parts[i][0], bytes(p))
        return kind, assemble(parts)
    if kind == "cut":
        return kind, data[:rng.randrange(len(data))]
    if kind in ("header", "tiny-header"):
        head = bytearray(parts[0][1])
        field = rng.choice(["dims", "dims", "tile", "model", "color", "quality"])
        if field == "dims" or kind == "tiny-header":
            big = rng.random() < 0.7
            for off in (4, 8):
                v = rng.randint(1, 65536) if big else rng.randint(1, 64)
                head[off:off + 4] = struct.pack(">I", v)
        elif field == "tile":
            head[22:24] = struct.pack(">H", rng.choice([0, 1, 4, 5, 64, 4096, 4097, 65535]))
        elif field == "model":
            head[1] = rng.randrange(4)
        elif field == "color":
            head[2] = rng.randrange(6)
        else:
            head[20:22] = struct.pack(">H", rng.randrange(65536))
        parts[0] = (parts[0][0], bytes(head))
        if kind == "tiny-header":
            # The crafted case: a huge picture declared over a few bytes of stream.
            parts = [parts[0]] + [(k, b"\x01\x00\x00\x00") if k == b"CWLT" else (k, p)
                                  for k, p in parts[1:]]
        return kind, assemble(parts)
    if kind == "dup":
        i = rng.randrange(len(parts))
        parts.insert(i, parts[i])
        return kind, assemble(parts)
    if kind == "drop":
        parts.pop(rng.randrange(len(parts)))
        return kind, assemble(parts)
    if kind == "swap" and len(parts) > 2:
        i, j = rng.sample(range(len(parts)), 2)
        parts[i], parts[j] = parts[j], parts[i]
        return kind, assemble(parts)
    tiles = [i for i, (k, _) in enumerate(parts) if k in (b"CWLT", b"RNLY")]
    if not tiles:
        return "flip", data[:-1]
    i = rng.choice(tiles)
    if kind == "zero-word":
        parts[i] = (parts[i][0], b"\x01\x00\x00\x00" * rng.randint(1, 4))
    else:
        n = rng.choice([4, 8, 64, len(parts[i][1]), 4 * rng.randint(1, 4096)])
        parts[i] = (parts[i][0], bytes(rng.randrange(256) for _ in range(n)))
    return "random-tile" if kind == "swap" else kind, assemble(parts)


def run(lic, path, out, timeout):
    cmd = ["/usr/bin/time", "-f", "%e %M", lic, "decode", path, out]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", timeout, 0, ""
    lines = p.stderr.decode(errors="replace").strip().splitlines()
    secs, kib = (float(x) for x in lines[-1].split()) if lines else (0.0, 0.0)
    msg = "\n".join(lines[:-1])
    if "signal" in msg or p.returncode < 0 or "Command terminated" in msg:
        return "signal", secs, kib, msg
    if p.returncode == 101 or "panicked" in msg:
        return "panic", secs, kib, msg
    return ("decoded" if p.returncode == 0 else "refused"), secs, kib, msg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lic")
    ap.add_argument("seeds", nargs="+")
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--keep", help="folder for the files that panicked, crashed or hung")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    seeds = [open(s, "rb").read() for s in a.seeds]
    counts, by_kind = {}, {}
    slowest, largest, slowest_small = (0, None), (0, None), (0, None)
    with tempfile.TemporaryDirectory() as tmp:
        path, out = os.path.join(tmp, "case.lic"), os.path.join(tmp, "out.png")
        for case in range(a.cases):
            kind, data = mutate(rng.choice(seeds), rng)
            with open(path, "wb") as f:
                f.write(data)
            outcome, secs, kib, msg = run(a.lic, path, out, a.timeout)
            counts[outcome] = counts.get(outcome, 0) + 1
            by_kind.setdefault(kind, {}).setdefault(outcome, 0)
            by_kind[kind][outcome] += 1
            desc = f"case {case} ({kind}, {len(data)} bytes)"
            if secs > slowest[0]:
                slowest = (secs, desc)
            if kib > largest[0]:
                largest = (kib, desc)
            if len(data) < 1024 and secs > slowest_small[0]:
                slowest_small = (secs, desc)
            if outcome in ("panic", "signal", "timeout"):
                print(f"{outcome}: {desc}: {msg[:200]}")
                if a.keep:
                    os.makedirs(a.keep, exist_ok=True)
                    with open(os.path.join(a.keep, f"{outcome}-{case}.lic"), "wb") as f:
                        f.write(data)
    print(f"{a.cases} files from {len(seeds)} seeds (random seed {a.seed}): "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for kind, c in sorted(by_kind.items()):
        print(f"  {kind}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    print(f"slowest: {slowest[0]:.2f} s, {slowest[1]}")
    print(f"largest: {largest[0] / 1024:.0f} MiB, {largest[1]}")
    print(f"slowest under 1 KB: {slowest_small[0]:.2f} s, {slowest_small[1]}")


if __name__ == "__main__":
    main()
