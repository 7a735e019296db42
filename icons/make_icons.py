#!/usr/bin/env python3
"""Draw the Testbay icon (a rack with three slots, one lit) and write the PNG and ICO
files that src-tauri/tauri.conf.json lists. Standard library only; run it again after
changing the drawing: `python3 icons/make_icons.py`."""

import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
SS = 4  # supersampling factor per axis

BG = (30, 41, 59)  # slate
SLOT = (71, 85, 105)
LIT = (34, 197, 94)  # green: a slot in use
DOT = (148, 163, 184)


def inside_rounded(x, y, x0, y0, x1, y1, r):
    if x < x0 or x > x1 or y < y0 or y > y1:
        return False
    cx = min(max(x, x0 + r), x1 - r)
    cy = min(max(y, y0 + r), y1 - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def colour_at(u, v):
    """Colour (r, g, b, a) of the point (u, v) in the unit square."""
    if not inside_rounded(u, v, 0.04, 0.04, 0.96, 0.96, 0.2):
        return (0, 0, 0, 0)
    for i, top in enumerate((0.22, 0.43, 0.64)):
        if inside_rounded(u, v, 0.18, top, 0.82, top + 0.14, 0.035):
            if inside_rounded(u, v, 0.64, top + 0.045, 0.74, top + 0.095, 0.025):
                return (*(LIT if i == 1 else DOT), 255)
            return (*SLOT, 255)
    return (*BG, 255)


def render(size):
    rows = []
    n = SS * SS
    for y in range(size):
        row = bytearray([0])  # PNG filter: none
        for x in range(size):
            acc = [0, 0, 0, 0]
            for sy in range(SS):
                for sx in range(SS):
                    c = colour_at((x + (sx + 0.5) / SS) / size, (y + (sy + 0.5) / SS) / size)
                    a = c[3]
                    acc[0] += c[0] * a
                    acc[1] += c[1] * a
                    acc[2] += c[2] * a
                    acc[3] += a
            a = acc[3]
            if a == 0:
                row += bytes(4)
            else:
                row += bytes((round(acc[0] / a), round(acc[1] / a), round(acc[2] / a), round(a / n)))
        rows.append(bytes(row))
    return b"".join(rows)


def png(size):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(render(size), 9))
        + chunk(b"IEND", b"")
    )


def ico(pngs):
    """An ICO whose entries are PNG images (valid since Windows Vista)."""
    header = struct.pack("<HHH", 0, 1, len(pngs))
    offset = 6 + 16 * len(pngs)
    entries, blobs = b"", b""
    for size, data in pngs:
        dim = 0 if size >= 256 else size
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
        blobs += data
    return header + entries + blobs


def main():
    outputs = {"32x32.png": 32, "128x128.png": 128, "128x128@2x.png": 256, "icon.png": 512}
    cache = {}
    for name, size in outputs.items():
        cache[size] = png(size)
        (HERE / name).write_bytes(cache[size])
    (HERE / "icon.ico").write_bytes(ico([(16, png(16)), (32, cache[32]), (48, png(48)), (256, cache[256])]))


if __name__ == "__main__":
    main()
