"""Real .nnc sizes and speeds of several predictor specs on several files, through the CLI, one
process per (file, spec), appended to a JSON-lines file so that a run can be stopped and resumed
(pairs already in the file are skipped), then a Markdown table of bits per byte.

    python bench/scripts/model_table.py --out bench/results/models.jsonl \
        --spec fslstm-small-v3+ctx2+cm --spec fslstm-medium-v1+ctx2+cm \
        [--bytes N] [--decode] FILE...
    python bench/scripts/model_table.py --out bench/results/models.jsonl --report

FILE is a path or a corpus file name (nncompress_corpora.locate); with --bytes N only its first N
bytes are coded (written to a temporary file). Each row records the compressed size, bits per
byte, compress (and with --decode, decompress) KB/s of the whole command and its peak resident
memory (/usr/bin/time), and with --decode whether the round trip gave the input back.
"""
import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nncompress_corpora as corpora


def _timed(args):
    """(stderr, seconds, peak MiB) of one command under /usr/bin/time -v."""
    t = time.time()
    p = subprocess.run(["/usr/bin/time", "-v"] + args, capture_output=True, text=True)
    dt = time.time() - t
    if p.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr[-2000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return p.stderr, dt, int(m.group(1)) / 1024 if m else None


def measure(path: Path, spec: str, decode: bool) -> dict:
    n = path.stat().st_size
    with tempfile.TemporaryDirectory() as d:
        out, back = Path(d) / "x.nnc", Path(d) / "x.out"
        _, tc, mc = _timed(["nncompress", "c", "-q", "-m", spec, str(path), str(out)])
        row = {"bytes": n, "nnc_bytes": out.stat().st_size,
               "bpb": 8 * out.stat().st_size / n, "c_s": round(tc, 2),
               "c_kBps": round(n / tc / 1000, 2), "c_MiB": mc}
        if decode:
            _, td, md = _timed(["nncompress", "d", "-q", str(out), str(back)])
            row.update({"d_s": round(td, 2), "d_kBps": round(n / td / 1000, 2), "d_MiB": md,
                        "roundtrip": back.read_bytes() == path.read_bytes()})
    return row


def _input(name: str, n_bytes, tmp: Path) -> tuple[str, Path]:
    p = Path(name)
    if not p.exists():
        p = corpora.locate(name)
    if not n_bytes:
        return p.name, p
    q = tmp / f"{p.name}.{n_bytes}"
    q.write_bytes(p.read_bytes()[:n_bytes])
    return f"{p.name}[:{n_bytes}]", q


def report(rows: list) -> str:
    files = list(dict.fromkeys(r["file"] for r in rows))
    specs = list(dict.fromkeys(r["spec"] for r in rows))
    cell = {(r["file"], r["spec"]): r for r in rows}
    lines = ["| file | bytes | " + " | ".join(f"`{s}`" for s in specs) + " |",
             "|---|---:|" + "---:|" * len(specs)]
    for f in files:
        n = next(r["bytes"] for r in rows if r["file"] == f)
        lines.append(f"| {f} | {n:,} | " + " | ".join(
            f"{cell[f, s]['bpb']:.3f}" if (f, s) in cell else "" for s in specs) + " |")
    lines += ["", "KB/s compress / decompress (whole command), peak MiB compress:", "",
              "| file | " + " | ".join(f"`{s}`" for s in specs) + " |",
              "|---|" + "---:|" * len(specs)]
    for f in files:
        def sp(r):
            d = f" / {r['d_kBps']:.1f}" if "d_kBps" in r else ""
            return f"{r['c_kBps']:.1f}{d}, {r['c_MiB']:.0f}"
        lines.append(f"| {f} | " + " | ".join(sp(cell[f, s]) if (f, s) in cell else ""
                                              for s in specs) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--spec", action="append", default=[])
    ap.add_argument("--bytes", type=int, default=0)
    ap.add_argument("--decode", action="store_true")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    rows = [json.loads(x) for x in a.out.read_text().splitlines()] if a.out.exists() else []
    done = {(r["file"], r["spec"]) for r in rows}
    with tempfile.TemporaryDirectory() as d:
        for name in a.files:
            label, path = _input(name, a.bytes, Path(d))
            for spec in a.spec:
                if (label, spec) in done:
                    continue
                r = {"file": label, "spec": spec,
                     "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
                     **measure(path, spec, a.decode),
                     "date": time.strftime("%Y-%m-%d %H:%M")}
                rows.append(r)
                with a.out.open("a") as f:
                    f.write(json.dumps(r) + "\n")
                print(f"{label} {spec}: {r['bpb']:.4f} bpb, {r['c_kBps']} KB/s", flush=True)
    if a.report or not a.files:
        print(report(rows))


if __name__ == "__main__":
    main()
