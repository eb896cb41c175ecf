#!/usr/bin/env python3
"""Packs random crops of the training images as high-quality JPEGs, small enough to travel
to a lent GPU machine (its working-tree limit is 64 MiB, the CUDA binary included).

usage: pack_crops.py TRAIN_DIR OUT_DIR CROPS_PER_IMAGE SIZE QUALITY
The held-out validation images (every 40th file by name, see src/train/data.rs) are skipped.
"""
import os
import random
import sys

from PIL import Image

src, dst, per, size, quality = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
os.makedirs(dst, exist_ok=True)
files = sorted(f for f in os.listdir(src) if f.lower().endswith((".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff", ".webp")))
rng = random.Random(1)
n = 0
for i, f in enumerate(files):
    if i % 40 == 20:
        continue
    im = Image.open(os.path.join(src, f)).convert("RGB")
    w, h = im.size
    if w < size or h < size:
        continue
    for k in range(per):
        x, y = rng.randint(0, w - size), rng.randint(0, h - size)
        im.crop((x, y, x + size, y + size)).save(os.path.join(dst, f"{n:05d}.jpg"), quality=quality, subsampling=0)
        n += 1
print(n, "crops")
