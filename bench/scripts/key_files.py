"""Real .nnc sizes of the default model and ctx1 (through the CLI, --verify) against xz -9, xz -9e
and gzip -9 on the files issue 3 names, plus any extra files; prints a Markdown table.

    python bench/scripts/key_files.py [--files a,b] [--no-header] [EXTRA_FILE...]

(--files picks corpus files by name, so that two halves can run side by side.)
"""
import argparse
import gzip
import lzma
import os
import re
import subprocess
import tempfile
from pathlib import Path

import nncompress_corpora as corpora

KEY = ["alice29.txt", "book1", "lcet10.txt", "plrabn12.txt", "enwik6"]


def nnc(path, model):
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "x.nnc"
        args = ["nncompress", "c", "-v", "--verify", str(path), str(out)] + (["-m", model] if model else [])
        p = subprocess.run(args, capture_output=True, text=True, check=True)
        speeds = re.findall(r"([0-9.]+) KB/s", p.stderr)  # compress, then the verifying decode
        return out.stat().st_size, float(speeds[0]), float(speeds[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", default=",".join(KEY))
    ap.add_argument("--no-header", action="store_true")
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    files = [corpora.locate(n) for n in a.files.split(",") if n] + [Path(p) for p in a.extra]
    if not a.no_header:
        print("| file | bytes | default | ctx1 | xz -9 | xz -9e | gzip -9 | 25% below xz -9 | default vs xz -9 | default KB/s c / d |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for f in files:
        data = f.read_bytes()
        n = len(data)
        bpb = lambda size: 8 * size / n
        d_size, d_speed, d_dspeed = nnc(f, None)
        c_size, _, _ = nnc(f, "ctx1")
        xz9 = len(lzma.compress(data, preset=9))
        xz9e = len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
        gz = len(gzip.compress(data, 9))
        print(f"| {f.name} | {n:,} | {bpb(d_size):.3f} | {bpb(c_size):.3f} | {bpb(xz9):.3f} | "
              f"{bpb(xz9e):.3f} | {bpb(gz):.3f} | {0.75 * bpb(xz9):.3f} | "
              f"{100 * (d_size / xz9 - 1):+.1f}% | {d_speed:.1f} / {d_dspeed:.1f} |", flush=True)


if __name__ == "__main__":
    main()
