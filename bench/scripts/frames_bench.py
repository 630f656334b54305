"""Framed files (format version 5): ratio cost against frame size, speed-up against workers.

    # the input: the first 4 MiB of trainpool shard 7's Wikipedia plain text, files in name order
    tar xJf shard7.tar.xz wiki-plain-wikiextractor && \\
        cat wiki-plain-wikiextractor/*.txt | head -c 4194304 > wiki4m.txt

    python bench/scripts/frames_bench.py ratio --level 1 --input wiki4m.txt --out bench/results/frames-ratio.jsonl
    python bench/scripts/frames_bench.py ratio --level 6 --bytes 1048576 --sizes 256K,1M ...
    python bench/scripts/frames_bench.py speed --level 1 --bytes 2097152 --frame-size 1M \\
        --workers 1,2 --input wiki4m.txt --out bench/results/frames-speed.jsonl
    python bench/scripts/frames_bench.py report bench/results/frames-ratio.jsonl \\
        bench/results/frames-speed.jsonl --md bench/results/frames.md --png bench/results/frames.png

`ratio` compresses the input once per frame size (in this process, the bodies exactly as the
CLI writes them) and appends one JSON line per (level, frame size): file bytes, bits per byte
and the cost relative to one frame holding the whole input. Frame sizes from the input's length
up give one frame, hence the same file; they are listed once, as "whole". `speed` runs the CLI
(`nncompress c/d -T N --frame-size F`) and records wall seconds and peak resident memory of the
whole process tree (/usr/bin/time -v of each worker is not available through the pool, so the
peak is sampled with psutil every 50 ms over the tree). `report` writes the Markdown tables and
a chart (matplotlib).
"""
from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def parse_size(s: str) -> int:
    from nncompress.parallel import parse_size as p
    return p(s)


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def ratio(args) -> None:
    from nncompress import parallel
    data = Path(args.input).read_bytes()
    if args.bytes:
        data = data[:args.bytes]
    sizes = sorted({min(parse_size(s), len(data)) for s in args.sizes.split(",")})
    rows = []
    for fs in sizes:
        t0 = time.perf_counter()
        out = io.BytesIO()
        st = parallel.compress_stream(io.BytesIO(data), out.write, level=args.level,
                                      frame_size=fs, workers=1)
        rows.append({"kind": "ratio", "level": args.level, "input": Path(args.input).name,
                     "input_bytes": len(data), "frame_size": fs, "frames": st.n_frames,
                     "file_bytes": len(out.getvalue()), "bpb": 8 * len(out.getvalue()) / len(data),
                     "seconds": round(time.perf_counter() - t0, 1),
                     "date": datetime.date.today().isoformat(), "commit": commit()})
        print(json.dumps(rows[-1]), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(rows[-1]) + "\n")


def _tree_rss(pid: int, per: dict) -> int:
    """The resident memory summed over the process tree of `pid`; `per` keeps each child's
    peak."""
    import psutil
    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for q in procs:
        try:
            r = q.memory_info().rss
        except psutil.Error:
            continue
        total += r
        if q.pid != pid:
            per[q.pid] = max(per.get(q.pid, 0), r)
    return total


def _run_sampled(cmd, stdin, stdout):
    """Wall seconds, the peak resident memory summed over the process tree of a command, and
    the largest peak of one child process (a worker, or the coder process)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
    peak, per, others = [0], {}, set()

    def sample():
        import psutil
        k = 0
        while p.poll() is None:
            peak[0] = max(peak[0], _tree_rss(p.pid, per))
            k += 1
            if k % 10 == 0:       # other busy processes on the machine make the timing unfair
                mine = {p.pid, *per}
                for q in psutil.process_iter(["pid", "cpu_percent", "cmdline", "status"]):
                    if q.info["pid"] not in mine and q.info["status"] == "running" \
                            and q.info["pid"] != os.getpid():
                        others.add(" ".join((q.info["cmdline"] or [])[:3])[:60])
            time.sleep(0.05)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = p.communicate()
    th.join()
    if p.returncode:
        raise SystemExit(f"{cmd}: exit {p.returncode}: {err.decode()[-500:]}")
    _run_sampled.others |= others
    return time.perf_counter() - t0, peak[0], max(per.values(), default=0)


_run_sampled.others = set()


def speed(args) -> None:
    data = Path(args.input).read_bytes()
    if args.bytes:
        data = data[:args.bytes]
    nnc = [sys.executable, "-m", "nncompress"]
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "in.txt"
        src.write_bytes(data)
        files = {}
        for w in [int(x) for x in args.workers.split(",")]:
            _run_sampled.others = set()
            out = Path(d) / f"out{w}.nnc"
            with open(src, "rb") as fi, open(out, "wb") as fo:
                c_sec, c_peak, c_child = _run_sampled(nnc + ["c", f"-{args.level}", "-T", str(w),
                                                    "--frame-size", args.frame_size, "-c", "-"],
                                             fi, fo)
            back = Path(d) / f"back{w}.txt"
            with open(out, "rb") as fi, open(back, "wb") as fo:
                d_sec, d_peak, d_child = _run_sampled(nnc + ["d", "-T", str(w), "-c", "-"], fi, fo)
            assert back.read_bytes() == data, "round trip failed"
            files[w] = out.read_bytes()
            row = {"kind": "speed", "level": args.level, "input": Path(args.input).name,
                   "input_bytes": len(data), "frame_size": parse_size(args.frame_size),
                   "workers": w, "c_seconds": round(c_sec, 2), "d_seconds": round(d_sec, 2),
                   "c_peak_mib": round(c_peak / 2**20), "d_peak_mib": round(d_peak / 2**20),
                   "c_child_mib": round(c_child / 2**20), "d_child_mib": round(d_child / 2**20),
                   "file_bytes": len(files[w]), "cpus": os.cpu_count(),
                   "other_running": sorted(_run_sampled.others),
                   "date": datetime.date.today().isoformat(), "commit": commit()}
            print(json.dumps(row), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
        assert len(set(files.values())) == 1, "files differ between worker counts"


def _fmt_size(n: int) -> str:
    for unit, v in (("M", 1 << 20), ("K", 1 << 10)):
        if n % v == 0:
            return f"{n // v}{unit}"
    return str(n)


def _short_names(cmds: list) -> str:
    """Other processes seen during a timing, as 'python3 -m pytest'-like names."""
    names = []
    for c in cmds:
        parts = " ".join(c.split()).split(" ")
        if not parts[0]:
            continue
        name = " ".join([os.path.basename(parts[0])] + parts[1:3])
        if name not in names:
            names.append(name)
    return "; ".join(names[:5]) + ("; ..." if len(names) > 5 else "")


def report(args) -> None:
    rows = [json.loads(line) for p in args.files for line in open(p) if line.strip()]
    last = {}
    for r in rows:           # a measurement repeated later replaces the earlier one
        last[(r["kind"], r["level"], r["input_bytes"], r["frame_size"], r.get("workers"))] = r
    rows = list(last.values())
    out = []
    rat = [r for r in rows if r["kind"] == "ratio"]
    charts = {}
    if rat:
        out.append("## Ratio cost against frame size\n")
        out.append("Bits per byte of the whole version-5 file; cost: size relative to one frame "
                   "holding the whole input (frame sizes from the input's length up, to 64M, give "
                   "that same file).\n")
        out.append("| level | input | frame size | frames | file bytes | bits/byte | cost |")
        out.append("|---|---|---:|---:|---:|---:|---:|")
        for key in sorted({(r["level"], r["input"], r["input_bytes"]) for r in rat}):
            grp = sorted((r for r in rat if (r["level"], r["input"], r["input_bytes"]) == key),
                         key=lambda r: r["frame_size"])
            whole = [r for r in grp if r["frames"] == 1]
            base = whole[0]["file_bytes"] if whole else None
            for r in grp:
                label = "whole" if r["frames"] == 1 else _fmt_size(r["frame_size"])
                cost = f"{100 * (r['file_bytes'] / base - 1):+.2f}%" if base else "-"
                out.append(f"| -{key[0]} | {key[1]} ({key[2]} B) | {label} | {r['frames']} | "
                           f"{r['file_bytes']} | {r['bpb']:.4f} | {cost} |")
                if base:
                    pts = charts.setdefault(f"-{key[0]}, {key[2] // 1024} KiB input", [])
                    pts.append((r["frame_size"], 100 * (r["file_bytes"] / base - 1)))
                    if r["frames"] == 1:   # every larger frame size gives this same file
                        fs = r["frame_size"] * 2
                        while fs <= 64 << 20:
                            pts.append((fs, 0.0))
                            fs *= 2
        out.append("")
    spd = [r for r in rows if r["kind"] == "speed"]
    if spd:
        out.append("## Speed-up against workers\n")
        out.append("Wall seconds of the whole command (start-up and model loading included); "
                   "peak: resident memory summed over the process tree.\n")
        out.append("| level | input bytes | frame size | -T | c s | d s | c speed-up | "
                   "d speed-up | peak MiB c / d (tree) | largest child MiB c / d | same bytes |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for key in sorted({(r["level"], r["input_bytes"], r["frame_size"]) for r in spd}):
            grp = sorted((r for r in spd if (r["level"], r["input_bytes"], r["frame_size"]) == key),
                         key=lambda r: r["workers"])
            one = [r for r in grp if r["workers"] == 1]
            same = len({r["file_bytes"] for r in grp}) == 1
            for r in grp:
                su = (f"{one[0]['c_seconds'] / r['c_seconds']:.2f}x",
                      f"{one[0]['d_seconds'] / r['d_seconds']:.2f}x") if one else ("-", "-")
                out.append(f"| -{key[0]} | {key[1]} | {_fmt_size(key[2])} | {r['workers']} | "
                           f"{r['c_seconds']} | {r['d_seconds']} | {su[0]} | {su[1]} | "
                           f"{r['c_peak_mib']} / {r['d_peak_mib']} | "
                           f"{r.get('c_child_mib', '-')} / {r.get('d_child_mib', '-')} | "
                           f"{'yes' if same else 'NO'} |")
                others = _short_names(r.get("other_running", []))
                if others:
                    out.append(f"|  | also running: {others} | | | | | | | | | |")
        out.append("")
    Path(args.md).write_text("\n".join(out) + "\n") if args.md else print("\n".join(out))
    if args.png and charts:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, pts in sorted(charts.items()):
            xs, ys = zip(*sorted(pts))
            ax.plot([x / 2**20 for x in xs], ys, marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("frame size (MiB)")
        ax.set_ylabel("size cost against one frame (%)")
        ax.set_title("format 5: size cost of the frame size (one frame = 0)")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("ratio")
    r.add_argument("--level", type=int, required=True)
    r.add_argument("--input", required=True)
    r.add_argument("--bytes", type=int, default=0)
    r.add_argument("--sizes", default="256K,512K,1M,2M,4M,8M,16M,32M,64M")
    r.add_argument("--out", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--level", type=int, required=True)
    s.add_argument("--input", required=True)
    s.add_argument("--bytes", type=int, default=0)
    s.add_argument("--frame-size", default="1M")
    s.add_argument("--workers", default="1,2")
    s.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("files", nargs="+")
    p.add_argument("--md")
    p.add_argument("--png")
    args = ap.parse_args()
    {"ratio": ratio, "speed": speed, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
