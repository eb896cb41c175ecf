#!/usr/bin/env python3
"""Per-image PSNR gap between two codecs of a kodak-bench run, at fixed rates.

usage: per_image_gap.py [PER_IMAGE_CSV] [CODEC_A] [CODEC_B]
       (defaults: kodak-bench/results/per_image.csv lic-cw webp)

Each image's PSNR is interpolated linearly in log(bpp) between its measured points at
0.25, 0.5 and 1.0 bpp; prints A − B in dB per image ("n/a" outside an image's range) and
the mean over the images where all three rates are inside both curves.
"""
import collections
import csv
import math
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "kodak-bench/results/per_image.csv"
a, b = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else ("lic-cw", "webp")
RATES = (0.25, 0.5, 1.0)

curves = collections.defaultdict(list)
for r in csv.DictReader(open(path)):
    curves[(r["codec"], r["image"])].append((float(r["bpp"]), float(r["psnr"])))


def psnr_at(points, bpp):
    points = sorted(points)
    for (b0, p0), (b1, p1) in zip(points, points[1:]):
        if b0 <= bpp <= b1 and b1 > b0:
            t = (math.log(bpp) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return p0 + t * (p1 - p0)
    return None


images = sorted({im for (c, im) in curves if c == a} & {im for (c, im) in curves if c == b})
print(f"{a} − {b}, dB at " + " / ".join(f"{r} bpp" for r in RATES))
sums, n = [0.0] * len(RATES), 0
for im in images:
    gaps = []
    for r in RATES:
        pa, pb = psnr_at(curves[(a, im)], r), psnr_at(curves[(b, im)], r)
        gaps.append(None if pa is None or pb is None else pa - pb)
    print(im, " ".join("  n/a" if g is None else f"{g:+.2f}" for g in gaps))
    if all(g is not None for g in gaps):
        sums = [s + g for s, g in zip(sums, gaps)]
        n += 1
if n:
    print(f"mean over {n} images", " ".join(f"{s / n:+.2f}" for s in sums))
