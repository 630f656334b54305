"""The levels table: bits per byte, speed each way and peak memory of every level (-1 .. -9),
through the CLI, on a few texts; prints a Markdown table.

    python bench/scripts/level_table.py [--levels 1,2,...] [--bytes N] FILE...

Each file (its first --bytes bytes, default all) is compressed with `nncompress c -N` and
decompressed with `nncompress d`, each in a fresh process; the output is compared with the input.
KB/s are 1000 bytes of original per second of the whole command (model loading included); peak
memory is the child's maximum resident set (os.wait4).
"""
from __future__ import annotations

import argparse
import lzma
import os
import subprocess
import tempfile
import time
from pathlib import Path


def run(args):
    t0 = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed: {err.strip()}")
    return dt, ru.ru_maxrss / 1024  # seconds, MiB (ru_maxrss is in KiB on Linux)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="1,2,3,4,5,6,7,8,9")
    ap.add_argument("--bytes", type=int, default=0, help="use each file's first N bytes (0: all)")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    with tempfile.TemporaryDirectory() as d:
        inputs = []
        for f in map(Path, a.files):
            data = f.read_bytes()[: a.bytes or None]
            p = Path(d) / f.name
            p.write_bytes(data)
            inputs.append((p, data))
        names = [p.name for p, _ in inputs]
        print("| level | " + " | ".join(f"{n} bpb" for n in names)
              + " | KB/s c / d (each file) | peak MiB c / d |")
        print("|---:|" + "---:|" * len(names) + "---|---:|")
        print("| xz -9 | " + " | ".join(f"{8 * len(lzma.compress(x, preset=9)) / len(x):.3f}"
                                        for _, x in inputs) + " | | |")
        for lv in levels:
            bpbs, speeds, mem = [], [], [0.0, 0.0]
            for p, data in inputs:
                out, back = Path(d) / f"{p.name}.{lv}.nnc", Path(d) / f"{p.name}.{lv}.out"
                tc, mc = run(["nncompress", "c", f"-{lv}", "-f", "-q", str(p), str(out)])
                td, md = run(["nncompress", "d", "-f", "-q", str(out), str(back)])
                if back.read_bytes() != data:
                    raise SystemExit(f"level {lv}: {p.name} did not round-trip")
                bpbs.append(8 * out.stat().st_size / len(data))
                speeds.append(f"{len(data) / 1000 / tc:.1f} / {len(data) / 1000 / td:.1f}")
                mem = [max(mem[0], mc), max(mem[1], md)]
                out.unlink()
                back.unlink()
            print(f"| -{lv} | " + " | ".join(f"{b:.3f}" for b in bpbs) + " | "
                  + ", ".join(speeds) + f" | {mem[0]:.0f} / {mem[1]:.0f} |", flush=True)


if __name__ == "__main__":
    main()
