#!/usr/bin/env python3
"""Compares two validation lines of a cw train.log ("0.106bpp/21.00dB 0.147bpp/21.83dB ...").

Prints the mean PSNR difference of B over A on their common log-rate range, with both curves
piecewise linear in log(bpp): one number for "is checkpoint B better than A".

usage: scripts/compare_val.py "VAL LINE A" "VAL LINE B"
"""
import math
import re
import sys


def points(line):
    return sorted((math.log(float(b)), float(p))
                  for b, p in re.findall(r"([\d.]+)bpp/([\d.]+)dB", line))


def at(curve, x):
    for (x0, y0), (x1, y1) in zip(curve, curve[1:]):
        if x0 - 1e-9 <= x <= x1 + 1e-9:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    raise ValueError("outside the curve")


def mean_gain(a, b, n=200):
    lo = max(a[0][0], b[0][0])
    hi = min(a[-1][0], b[-1][0])
    xs = [lo + (hi - lo) * i / n for i in range(n + 1)]
    return sum(at(b, x) - at(a, x) for x in xs) / len(xs)


if __name__ == "__main__":
    print(f"{mean_gain(points(sys.argv[1]), points(sys.argv[2])):+.3f} dB")
