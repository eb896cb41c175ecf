#!/usr/bin/env python3
"""usage: scripts/st_merge.py A B PREFIX OUT

Writes OUT = every tensor of A, plus the tensors of B whose names start with PREFIX
(replacing A's of the same name). Pure Python: safetensors is an 8-byte little-endian
header length, a JSON header of {name: {dtype, shape, data_offsets}}, then the data."""
import json, struct, sys

def read(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    head = json.loads(b[8:8 + n])
    data = b[8 + n:]
    out = {}
    for k, v in head.items():
        if k == '__metadata__':
            continue
        s, e = v['data_offsets']
        out[k] = (v['dtype'], v['shape'], data[s:e])
    return out

a, b, prefix, dst = sys.argv[1:5]
ta, tb = read(a), read(b)
added = [k for k in tb if k.startswith(prefix)]
for k in added:
    ta[k] = tb[k]
head, blobs, off = {}, [], 0
for k in sorted(ta):
    dt, shape, raw = ta[k]
    head[k] = {'dtype': dt, 'shape': shape, 'data_offsets': [off, off + len(raw)]}
    blobs.append(raw)
    off += len(raw)
h = json.dumps(head, separators=(',', ':')).encode()
h += b' ' * ((8 - len(h) % 8) % 8)
with open(dst, 'wb') as f:
    f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))
print(f'{dst}: {len(ta)} tensors, {len(added)} from {b}')
