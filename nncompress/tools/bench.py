"""``nncompress bench``: compression ratio and speed against the classic codecs, and the enwik8 tables.

Two commands under one group (``bench_cmd``; the CLI registers it as ``nncompress bench``):

* ``nncompress bench [PATHS...]`` (the default command, also ``nncompress bench ratio``): compresses
  each file with nncompress (one column per ``--model``; every .nnc is decompressed and compared
  byte for byte, a mismatch stops the run) and with gzip -9, bzip2 -9, xz -9e, zstd -19,
  zstd --ultra -22 and brotli -q 11 (and paq8px -8, zpaq -m5 and 7-Zip PPMd where installed),
  and writes results.md, results.csv, chart.png and
  machine.json into a results folder.
* ``nncompress bench enwik8``: the two enwik8 tables, each under its own protocol -- the
  language-model protocol (cross-entropy on the last 5 MB after training on the first 90 MB) and
  whole-file compressed size -- with the published figures (package data
  nncompress/data/anchors.json) beside our rows.

Corpus files, the default file set and enwik8 (size, sha256, address, download) come from the
project's corpus registry, ``nncompress_corpora`` (corpora/ in the source tree).

Only click, the standard library and ``nncompress_corpora`` (standard library only) are imported at
module load; nncompress's API, torch, zstandard, brotli and matplotlib are imported when needed.
"""
from __future__ import annotations

import csv
import datetime as _dt
import importlib.resources
import json
import math
import os
import platform
import subprocess
import sys
import time
import urllib.error
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click

import nncompress_corpora as corpora
from nncompress_corpora import shared_dir  # noqa: F401  (bench/test_speed.py imports it from here)

# --------------------------------------------------------------------------------------------
# Files and constants

# The default file set is the registry's text files (corpora.TEXT_FILES: Canterbury, Calgary,
# large Canterbury, enwik5/6), located and verified (size, sha256) through the registry.
# --quick: five small files of different kinds (English, LaTeX paper, C, man page, Wikipedia XML),
# about 350 kB in all.
QUICK_FILES = ("alice29.txt", "paper1", "progc", "xargs.1", "enwik5")

DEFAULT_MAX_BYTES = 1_000_000   # default file set only: bible.txt and world192.txt exceed it
DEFAULT_BUDGET_S = 900.0        # default file set only: the ~15-minute target on 2 cores

LM_TRAIN_BYTES = 90_000_000
LM_TEST_BYTES = 5_000_000


def repo_root() -> Path:
    """The source checkout this module runs from (for the git commit in reports; an installed
    copy has none, and the report then says so)."""
    return Path(__file__).resolve().parents[2]


def load_anchors() -> dict:
    """Published reference figures (package data nncompress/data/anchors.json), with their
    sources and protocols; read through importlib.resources, so any install has them."""
    res = importlib.resources.files("nncompress").joinpath("data", "anchors.json")
    try:
        return json.loads(res.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise click.ClickException(
            f"published figures not found at {res}: this nncompress was installed without its "
            "package data (nncompress/data/anchors.json)")


# --------------------------------------------------------------------------------------------
# Compressors

@dataclass
class Compressor:
    name: str                                   # column label, e.g. "xz -9e" or "nnc ctx1"
    compress: Callable[[bytes], bytes] | None
    decompress: Callable[[bytes], bytes] | None
    version: str = ""
    skipped: str = ""                           # non-empty: not run, and why
    ideal_bpb: Callable[[bytes], float] | None = None
    model_file_bytes: int | None = None        # nncompress only: size of the model file (0 = built in)
    is_nnc: bool = False
    repeat: bool = True                         # repeat fast calls for a steadier time
    last: dict = field(default_factory=dict)    # nncompress: ideal_bpb / streams of the last compress


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return ""


def _c_version(lib: str, func: str) -> str:
    """Version string of a C library loaded by Python's own extension (libbz2, liblzma)."""
    try:
        import ctypes
        import ctypes.util
        found = ctypes.util.find_library(lib)
        if not found:
            return ""
        f = getattr(ctypes.CDLL(found), func)
        f.restype = ctypes.c_char_p
        return f().decode().split(",")[0]
    except Exception:
        return ""


def classic_compressors() -> list[Compressor]:
    import bz2
    import gzip
    import lzma
    import zlib

    out = [
        Compressor("gzip -9", lambda d: gzip.compress(d, compresslevel=9, mtime=0), gzip.decompress,
                   f"zlib {zlib.ZLIB_RUNTIME_VERSION} (Python gzip module)"),
        Compressor("bzip2 -9", lambda d: bz2.compress(d, 9), bz2.decompress,
                   f"libbz2 {_c_version('bz2', 'BZ2_bzlibVersion') or '?'} (Python bz2 module)"),
        Compressor("xz -9e", lambda d: lzma.compress(d, preset=9 | lzma.PRESET_EXTREME),
                   lzma.decompress,
                   f"liblzma {_c_version('lzma', 'lzma_version_string') or '?'} (Python lzma module)"),
    ]
    try:
        import zstandard
        libv = ".".join(map(str, getattr(zstandard, "ZSTD_VERSION", ())))
        ver = f"zstandard {zstandard.__version__} (libzstd {libv})"

        def zstd_codec(level: int):
            comp = zstandard.ZstdCompressor(level=level)
            dec = zstandard.ZstdDecompressor()
            return comp.compress, dec.decompress

        for level, label in ((19, "zstd -19"), (22, "zstd --ultra -22")):
            c, d = zstd_codec(level)
            out.append(Compressor(label, c, d, ver))
    except ImportError:
        for label in ("zstd -19", "zstd --ultra -22"):
            out.append(Compressor(label, None, None, skipped="skipped (not installed: pip install zstandard)"))
    try:
        import brotli
        # lgwin=24 is the brotli command line's default window (the Python default is 22).
        out.append(Compressor("brotli -q 11", lambda d: brotli.compress(d, quality=11, lgwin=24),
                              brotli.decompress, f"brotli {_dist_version('brotli') or getattr(brotli, '__version__', '?')}"))
    except ImportError:
        out.append(Compressor("brotli -q 11", None, None, skipped="skipped (not installed: pip install brotli)"))
    return out


# External command-line compressors of the same class as nncompress (context mixing, PPM): run
# through temporary files, sizes as the user gets them (archive overhead included).

def _run_tool(args: list[str], cwd: Path) -> None:
    p = subprocess.run(args, cwd=cwd, capture_output=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): "
                           f"{p.stderr.decode(errors='replace').strip()[-300:]}")


def _tool_codec(pack: Callable[[Path, Path], None], unpack: Callable[[Path, Path], Path]):
    """(compress, decompress) over bytes for a tool that works on files: pack(input, archive)
    and unpack(archive, folder) -> the restored file."""
    import tempfile

    def comp(d: bytes) -> bytes:
        with tempfile.TemporaryDirectory() as t:
            src, arc = Path(t) / "f", Path(t) / "a"
            src.write_bytes(d)
            pack(src, arc)
            return arc.read_bytes()

    def dec(blob: bytes) -> bytes:
        with tempfile.TemporaryDirectory() as t:
            arc = Path(t) / "a"
            arc.write_bytes(blob)
            (Path(t) / "out").mkdir()
            return unpack(arc, Path(t) / "out").read_bytes()

    return comp, dec


def _first_line(args: list[str]) -> str:
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=10)
        return ((p.stdout or "") + (p.stderr or "")).strip().splitlines()[0]
    except Exception:
        return ""


def external_compressors(paq8px: str | None = None) -> list[Compressor]:
    """paq8px -8 (a binary on PATH or given with --paq8px), zpaq -m5 and 7-Zip's PPMd (-mx=9);
    each one absent is listed as skipped, with how to get it."""
    import shutil
    out = []
    exe = paq8px or shutil.which("paq8px")
    if exe and Path(exe).is_file():
        exe = str(Path(exe).resolve())
        comp, dec = _tool_codec(
            lambda src, arc: _run_tool([exe, "-8", src.name, arc.name], src.parent),
            lambda arc, d: (_run_tool([exe, "-d", str(arc), str(d / "f")], d), d / "f")[1])
        out.append(Compressor("paq8px -8", comp, dec, _first_line([exe]) or exe, repeat=False))
    else:
        out.append(Compressor("paq8px -8", None, None, skipped="skipped (no paq8px binary: put "
                              "one on PATH or give --paq8px PATH)"))
    zpaq = shutil.which("zpaq")
    if zpaq:
        def pack_zpaq(src: Path, arc: Path) -> None:     # zpaq wants the .zpaq suffix
            _run_tool([zpaq, "a", "a.zpaq", src.name, "-m5"], src.parent)
            (src.parent / "a.zpaq").rename(arc)

        def unpack_zpaq(arc: Path, d: Path) -> Path:
            arc = arc.rename(arc.with_suffix(".zpaq"))
            _run_tool([zpaq, "x", str(arc), "-to", str(d / "x")], d)
            return d / "x" / "f"
        comp, dec = _tool_codec(pack_zpaq, unpack_zpaq)
        out.append(Compressor("zpaq -m5", comp, dec, _first_line([zpaq]).split(" journaling")[0],
                              repeat=False))
    else:
        out.append(Compressor("zpaq -m5", None, None,
                              skipped="skipped (not installed: apt install zpaq)"))
    sevenz = shutil.which("7zz") or shutil.which("7z")
    if sevenz:
        def pack7(src: Path, arc: Path) -> None:          # 7-Zip adds .7z to a bare name
            _run_tool([sevenz, "a", "-t7z", "-m0=PPMd", "-mx=9", "a.7z", src.name], src.parent)
            (src.parent / "a.7z").rename(arc)

        def unpack7(arc: Path, d: Path) -> Path:
            _run_tool([sevenz, "e", "-y", "-t7z", f"-o{d}", str(arc)], d)
            return d / "f"
        comp, dec = _tool_codec(pack7, unpack7)
        out.append(Compressor("7z PPMd -mx=9", comp, dec,
                              " ".join(_first_line([sevenz]).split()[:3]), repeat=False))
    else:
        out.append(Compressor("7z PPMd -mx=9", None, None,
                              skipped="skipped (not installed: apt install 7zip)"))
    return out


def _api():
    """nncompress's public API (compress, decompress, cross_entropy)."""
    import nncompress
    missing = [n for n in ("compress", "decompress", "cross_entropy") if not hasattr(nncompress, n)]
    if missing:
        raise click.ClickException(f"nncompress API incomplete here: missing {', '.join(missing)}")
    return nncompress


def nnc_compressors(models: tuple[str, ...], device: str, streams: int | None) -> list[Compressor]:
    """One Compressor per predictor spec (predictors/spec.py: "MODEL:de", "MODEL:static", ...
    choose the dynamic evaluation). Compression goes through ``compress_stream`` when the API has
    it: its run statistics give the ideal code length (the same quantised tables as
    ``cross_entropy``) and the stream count in the same pass; otherwise ``compress`` plus a
    ``cross_entropy`` pass."""
    import inspect
    import io

    from ..predictors import spec as specs

    api = _api()
    dec_takes_model = "model" in inspect.signature(api.decompress).parameters
    out = []
    for m in models or (None,):
        spec = specs.parse_spec(m)
        refs = specs.model_files(spec)
        label = spec.label
        paths = [Path(r.path) for r in refs if getattr(r, "path", None)]
        size = sum(p.stat().st_size for p in paths)
        c = Compressor(f"nnc {label}", None, None, is_nnc=True, repeat=False, model_file_bytes=size)

        if hasattr(api, "compress_stream"):
            def comp(d, m=m, c=c):
                buf = io.BytesIO()
                st = api.compress_stream(io.BytesIO(d), buf, model=m, device=device, streams=streams)
                n = getattr(st, "original_bytes", len(d)) or len(d)
                bits = getattr(st, "ideal_bits", None)
                c.last = {"ideal_bpb": bits / n if bits is not None and n else None,
                          "streams": getattr(st, "n_streams", None)}
                return buf.getvalue()
        else:
            def comp(d, m=m, c=c):
                c.last = {}
                return api.compress(d, model=m, device=device, streams=streams)

        def dec(d, m=m):
            if dec_takes_model and m is not None:
                return api.decompress(d, model=m, device=device)
            return api.decompress(d, device=device)

        def ideal(d, m=m):
            return float(api.cross_entropy(d, model=m, device=device, streams=streams))

        ver = f"nncompress {getattr(api, '__version__', '') or _dist_version('nncompress')}, model {label}"
        if paths:
            ver += f" ({', '.join(p.name for p in paths)})"
        c.compress, c.decompress, c.ideal_bpb, c.version = comp, dec, ideal, ver
        out.append(c)
    return out


# --------------------------------------------------------------------------------------------
# Measuring

class _Rates:
    """kB/s of original data for classes with nbytes, compress_s and decompress_s."""

    @property
    def compress_kBps(self) -> float:
        return self.nbytes / 1000.0 / self.compress_s if self.compress_s > 0 else math.inf

    @property
    def decompress_kBps(self) -> float:
        return self.nbytes / 1000.0 / self.decompress_s if self.decompress_s > 0 else math.inf


@dataclass
class Result(_Rates):
    file: str
    path: str
    nbytes: int
    compressor: str
    compressed_bytes: int
    compress_s: float
    decompress_s: float
    verified: bool
    version: str = ""
    ideal_bpb: float | None = None
    ideal_s: float = 0.0
    model_file_bytes: int | None = None
    streams: int | None = None

    @property
    def bpb(self) -> float:
        return 8.0 * self.compressed_bytes / self.nbytes


def _timed(fn: Callable, arg, repeat: bool, min_s: float = 0.2, max_n: int = 50):
    """(result, seconds per call). Fast calls are repeated until ``min_s`` for a steadier figure."""
    t0 = time.perf_counter()
    res = fn(arg)
    dt = time.perf_counter() - t0
    if repeat and dt < min_s:
        n = min(max_n, max(1, int(min_s / max(dt, 1e-6))))
        t0 = time.perf_counter()
        for _ in range(n):
            fn(arg)
        dt = (time.perf_counter() - t0) / n
    return res, dt


class RoundTripError(click.ClickException):
    """A decompressed file differed from the original (or failed to decode): a hard failure."""
    exit_code = 3

    def __init__(self, message: str, results: list | None = None, notes: list | None = None):
        super().__init__(message)
        self.results = list(results or [])
        self.notes = list(notes or [])


def measure(name: str, path: Path, data: bytes, c: Compressor, min_s: float = 0.2) -> Result:
    blob, tc = _timed(c.compress, data, c.repeat, min_s)
    try:
        back, td = _timed(c.decompress, blob, c.repeat, min_s)
        ok = back == data
    except Exception as e:  # a decoder error is a failed round trip, reported as such
        back, td, ok = None, 0.0, False
        click.echo(f"  {c.name}: decompression raised {type(e).__name__}: {e}", err=True)
    r = Result(name, str(path), len(data), c.name, len(blob), tc, td, ok, c.version,
               model_file_bytes=c.model_file_bytes, streams=c.last.get("streams"))
    if c.last.get("ideal_bpb") is not None:
        r.ideal_bpb = c.last["ideal_bpb"]        # from the compression pass itself
    elif c.ideal_bpb is not None and ok:
        t0 = time.perf_counter()
        r.ideal_bpb = c.ideal_bpb(data)
        r.ideal_s = time.perf_counter() - t0
    return r


@dataclass
class Plan:
    files: list[tuple[str, Path]]                     # (display name, path) to measure
    notes: list[str] = field(default_factory=list)    # what was left out, and why


def plan_default(quick: bool, max_bytes: int) -> Plan:
    """The registry's text files (only QUICK_FILES with quick), each located and verified by the
    registry; files over max_bytes (their registered size), absent or not matching are noted."""
    root = corpora.shared_dir() / "corpora"
    plan = Plan([])
    if not root.is_dir():
        plan.notes.append(f"corpus folder {root} not found (set NNCOMPRESS_SHARED): "
                          "no default files; give PATHS")
        return plan
    table = corpora.entries()
    for name in corpora.TEXT_FILES:
        if quick and name not in QUICK_FILES:
            continue
        e = table[name]
        if max_bytes and e.bytes > max_bytes:
            plan.notes.append(f"{e.relpath()} ({e.bytes:,} bytes): over --max-bytes {max_bytes:,}, "
                              "skipped (use --max-bytes 0 to include it)")
            continue
        try:
            plan.files.append((name, corpora.locate(name, root)))
        except corpora.CorpusError as err:
            plan.notes.append(f"{e.relpath()}: {err}; skipped")
    if quick:
        plan.notes.append(f"--quick: only {', '.join(QUICK_FILES)}")
    return plan


def plan_paths(paths: tuple[str, ...]) -> Plan:
    plan = Plan([])
    ps = [Path(p) for p in paths]
    names = [p.name for p in ps]
    for p in ps:
        if not p.is_file():
            raise click.BadParameter(f"{p}: not a file", param_hint="PATHS")
        name = p.name if names.count(p.name) == 1 else f"{p.parent.name}/{p.name}"
        plan.files.append((name, p))
    return plan


def _projected_s(done: list[tuple[int, float]], n: int) -> float | None:
    """Seconds a file of n bytes should take, from (bytes, seconds) of the files done so far:
    a least-squares fit t = a + b*n (a = per-file start-up cost, b = cost per byte), so that small
    files' start-up time is not taken for per-byte cost. None with fewer than two files done."""
    if len(done) < 2:
        return None
    xs, ts = [d[0] for d in done], [d[1] for d in done]
    mx, mt = sum(xs) / len(xs), sum(ts) / len(ts)
    var = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (t - mt) for x, t in zip(xs, ts)) / var if var else 0.0
    if b <= 0:
        b = sum(ts) / sum(xs)
        return b * n
    a = max(0.0, mt - b * mx)
    return a + b * n


def run_report(plan: Plan, compressors: list[Compressor], budget_s: float | None,
               echo: Callable[[str], None] = click.echo,
               min_s: float = 0.2) -> tuple[list[Result], list[str]]:
    """Measure every runnable compressor on every planned file, smallest file first.

    With a budget, a file is skipped (whole, for every compressor, and noted), with all larger
    ones, when the time projected from the files done so far would pass the budget. A failed
    round trip raises RoundTripError carrying the results so far."""
    results: list[Result] = []
    notes = list(plan.notes)
    runnable = [c for c in compressors if not c.skipped]
    start = time.perf_counter()
    done: list[tuple[int, float]] = []
    order = sorted(plan.files, key=lambda f: f[1].stat().st_size)
    for i, (name, path) in enumerate(order):
        data = path.read_bytes()
        if not data:
            notes.append(f"{name}: empty file, skipped")
            continue
        elapsed = time.perf_counter() - start
        projected = _projected_s(done, len(data)) if budget_s is not None else None
        if projected is not None and elapsed + projected > budget_s:
            left = [n for n, _ in order[i:]]
            notes.append(f"time budget {budget_s:.0f} s (--budget): {len(left)} file(s) not run "
                         f"after {elapsed:.0f} s, as {name} alone was projected to take "
                         f"{projected:.0f} s: {', '.join(left)}")
            break
        echo(f"{name} ({len(data):,} bytes)")
        t_file = time.perf_counter()
        for c in runnable:
            r = measure(name, path, data, c, min_s)
            results.append(r)
            extra = f", ideal {r.ideal_bpb:.3f} bpb" if r.ideal_bpb is not None else ""
            echo(f"  {c.name:18s} {r.compressed_bytes:>10,} B  {r.bpb:6.3f} bpb  "
                 f"{r.compress_kBps:9.1f} / {r.decompress_kBps:9.1f} kB/s{extra}"
                 f"{'' if r.verified else '  ROUND TRIP FAILED'}")
            if not r.verified:
                raise RoundTripError(f"round trip failed: {c.name} on {path}", results, notes)
        done.append((len(data), time.perf_counter() - t_file))
    return results, notes


# --------------------------------------------------------------------------------------------
# Machine description

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(repo_root()), *args], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def machine_info(device: str, compressors: list[Compressor]) -> dict:
    info: dict = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_bytes": _ram_bytes(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "command": " ".join(["nncompress"] + sys.argv[1:]) if sys.argv else "",
    }
    versions = {}
    for dist in ("nncompress", "numpy", "constriction", "click", "zstandard", "brotli", "matplotlib"):
        versions[dist] = _dist_version(dist) or None
    torch_info: dict = {"version": None}
    try:
        import torch
        torch_info = {"version": torch.__version__,
                      "threads": torch.get_num_threads(),
                      "cuda_available": bool(torch.cuda.is_available())}
        if torch_info["cuda_available"]:
            torch_info["cuda"] = torch.version.cuda
            torch_info["gpu"] = torch.cuda.get_device_name(0)
    except Exception as e:
        torch_info["error"] = f"{type(e).__name__}: {e}"
    versions["torch"] = torch_info.get("version")
    info["versions"] = versions
    info["torch"] = torch_info
    resolved = device
    if device == "auto":
        resolved = "cuda" if torch_info.get("cuda_available") else "cpu"
    info["device"] = {"requested": device,
                      "resolved": resolved,
                      "note": "resolved assumes 'auto' means cuda when available, else cpu"}
    info["codecs"] = {c.name: (c.skipped or c.version) for c in compressors}
    info["models"] = {c.name: {"model_file_bytes": c.model_file_bytes, "version": c.version}
                      for c in compressors if c.is_nnc}
    commit = _git("rev-parse", "HEAD")
    info["git"] = {"commit": commit or None,
                   "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None}
    return info


# --------------------------------------------------------------------------------------------
# Writers

CSV_FIELDS = ["file", "bytes", "compressor", "compressed_bytes", "bpb", "compress_kBps",
              "decompress_kBps", "ideal_bpb", "verified", "version", "model_file_bytes", "streams", "path"]


def _f(x: float | None, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{nd}f}"


def write_csv(path: Path, results: list[Result]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_FIELDS)
        for r in results:
            w.writerow([r.file, r.nbytes, r.compressor, r.compressed_bytes, _f(r.bpb, 4),
                        _f(r.compress_kBps, 1), _f(r.decompress_kBps, 1), _f(r.ideal_bpb, 4),
                        str(r.verified).lower(), r.version,
                        "" if r.model_file_bytes is None else r.model_file_bytes,
                        "" if r.streams is None else r.streams, r.path])


@dataclass
class Summary(_Rates):
    name: str
    version: str
    nbytes: int
    compressed: int
    compress_s: float
    decompress_s: float
    mean_bpb: float
    files: int

    @property
    def bpb(self) -> float:
        return 8.0 * self.compressed / self.nbytes


def summarize(results: list[Result]) -> list[Summary]:
    by: dict[str, list[Result]] = {}
    for r in results:
        by.setdefault(r.compressor, []).append(r)
    out = []
    for name, rs in by.items():
        out.append(Summary(name, rs[0].version, sum(r.nbytes for r in rs),
                           sum(r.compressed_bytes for r in rs), sum(r.compress_s for r in rs),
                           sum(r.decompress_s for r in rs), sum(r.bpb for r in rs) / len(rs), len(rs)))
    return out


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(results: list[Result], compressors: list[Compressor], notes: list[str],
                    machine: dict, anchors: dict | None, title_extra: str = "") -> str:
    names = [c.name for c in compressors if not c.skipped]
    files: list[tuple[str, int]] = []
    cell: dict[tuple[str, str], Result] = {}
    for r in results:
        if (r.file, r.nbytes) not in files:
            files.append((r.file, r.nbytes))
        cell[(r.file, r.compressor)] = r
    # corpus order (the registry's TEXT_FILES), then the rest in given order
    rank = {n: i for i, n in enumerate(corpora.TEXT_FILES)}
    files.sort(key=lambda f: rank.get(f[0], len(rank)))

    out = [f"# nncompress bench: ratio report{title_extra}", ""]
    m = machine
    out.append(f"{m['date']} -- {m['cpu_model']}, {m['cpus_usable'] or m['cpu_count']} usable cores, "
               f"{(m['ram_bytes'] or 0) / 2**30:.1f} GiB RAM, {m['os']}, Python {m['python']}, "
               f"torch {m['versions'].get('torch')}, device {m['device']['requested']} "
               f"(-> {m['device']['resolved']}), git {(m['git']['commit'] or '?')[:12]}"
               f"{' (dirty)' if m['git'].get('dirty') else ''}.")
    out.append("")
    out.append("## Bits per byte (bpb = 8 x compressed bytes / original bytes; lower is better)")
    out.append("")
    out.append("Every compressed file was decompressed and compared with the original. Best per row in bold. "
               "nncompress sizes are whole .nnc files (header included); the model file is not counted "
               "(see its size below).")
    out.append("")
    rows = []
    for fname, nb in files:
        vals = {n: cell[(fname, n)].bpb for n in names if (fname, n) in cell}
        best = min(vals.values()) if vals else None
        row = [fname, f"{nb:,}"]
        for n in names:
            v = vals.get(n)
            s = _f(v)
            row.append(f"**{s}**" if v is not None and v == best else s)
        rows.append(row)
    summ = {s.name: s for s in summarize(results)}
    if files:
        tot_bytes = sum(nb for _, nb in files)
        rows.append(["**total** (8 x sum compressed / sum bytes)", f"{tot_bytes:,}"]
                    + [_f(summ[n].bpb) if n in summ else "" for n in names])
        rows.append([f"**mean** of the {len(files)} per-file bpb", ""]
                    + [_f(summ[n].mean_bpb) if n in summ else "" for n in names])
    out.append(_table(["file", "bytes"] + names, rows))
    out.append("")

    nnc = [r for r in results if any(c.is_nnc and c.name == r.compressor for c in compressors)]
    if nnc:
        out.append("## nncompress details")
        out.append("")
        out.append("ideal bpb = the model's cross-entropy under the quantised tables the coder uses "
                   "(sum of -log2 p / bytes); overhead = bpb - ideal bpb (container + coder). "
                   "Speeds are kB/s of original data (1 kB = 1000 bytes), one run each, "
                   "model loading included.")
        out.append("")
        rows = []
        for fname, nb in files:
            for r in nnc:
                if r.file != fname:
                    continue
                ov = r.bpb - r.ideal_bpb if r.ideal_bpb is not None else None
                rows.append([fname, r.compressor, "built in" if not r.model_file_bytes else f"{r.model_file_bytes:,}",
                             "" if r.streams is None else str(r.streams),
                             f"{r.compressed_bytes:,}", _f(r.bpb), _f(r.ideal_bpb),
                             _f(ov, 4), _f(r.compress_kBps, 1), _f(r.decompress_kBps, 1),
                             "yes" if r.verified else "NO"])
        out.append(_table(["file", "compressor", "model file bytes", "streams", "compressed bytes", "bpb",
                           "ideal bpb", "overhead bpb", "compress kB/s", "decompress kB/s",
                           "round trip"], rows))
        out.append("")

    if summ:
        out.append("## Totals per compressor (all files together)")
        out.append("")
        rows = []
        for n in names:
            s = summ.get(n)
            if s is None:
                continue
            rows.append([n, f"{s.compressed:,}", _f(s.bpb), _f(s.mean_bpb),
                         _f(s.compress_kBps, 1), _f(s.decompress_kBps, 1), s.version])
        out.append(_table(["compressor", "compressed bytes", "total bpb", "mean bpb",
                           "compress kB/s", "decompress kB/s", "version"], rows,
                          ["l", "r", "r", "r", "r", "r", "l"]))
        out.append("")

    skipped_c = [c for c in compressors if c.skipped]
    if notes or skipped_c:
        out.append("## Not run")
        out.append("")
        for c in skipped_c:
            out.append(f"- {c.name}: {c.skipped}")
        for n in notes:
            out.append(f"- {n}")
        out.append("")

    if anchors:
        ran = {f for f, _ in files}
        ref = anchors.get("peers_2core", {})
        prow = [r for r in ref.get("rows", []) if r["file"] in ran]
        sref = anchors.get("small_files", {})
        srow = [r for r in sref.get("rows", []) if r["file"] in ran]
        if prow or srow:
            out.append("## Reference figures (published or measured elsewhere; not measured in this run)")
            out.append("")
        if prow:
            out.append(f"Protocol: {ref['protocol']}. Source: {ref['source']}.")
            out.append("")
            out.append(_table(["file"] + ref["columns"],
                              [[r["file"]] + [_f(v) for v in r["bpb"]] for r in prow]))
            out.append("")
        if srow:
            out.append(f"Protocol: {sref['protocol']}. Source: {sref['source']}.")
            out.append("")
            out.append(_table(["file", "bytes", "xz bytes (bpb)", "cmix v19 bpb", "ts_zip RWKV 169M bytes (bpb)"],
                              [[r["file"], f"{r['bytes']:,}", f"{r['xz_bytes']:,} ({_f(r['xz_bpb'])})",
                                _f(r["cmix_v19_bpb"]), f"{r['ts_zip_bytes']:,} ({_f(r['ts_zip_bpb'])})"]
                               for r in srow]))
            out.append("")
    out.append("Files: results.csv (one row per file and compressor), chart.png (bpb vs speed), "
               "machine.json (hardware, versions, git commit).")
    out.append("")
    return "\n".join(out)


def write_chart(path: Path, results: list[Result], compressors: list[Compressor],
                subtitle: str = "") -> str | None:
    """bpb vs throughput, one point per compressor over all files. Returns a message if skipped."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        return "chart.png not written: matplotlib is not installed (pip install matplotlib)"
    summ = [s for s in summarize(results)]
    if not summ:
        return "chart.png not written: nothing was measured"
    nnc_names = {c.name for c in compressors if c.is_nnc}
    fig = Figure(figsize=(9, 6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for s in summ:
        color = "#c0392b" if s.name in nnc_names else "#1f5fa8"
        xc, xd = s.compress_kBps, s.decompress_kBps
        ax.plot([xc, xd], [s.bpb, s.bpb], color=color, lw=1, alpha=0.5, zorder=1)
        # open ring drawn larger and below the dot, so both show when the speeds coincide
        ax.scatter([xd], [s.bpb], s=110, facecolors="white", edgecolors=color, lw=1.5, zorder=3)
        ax.scatter([xc], [s.bpb], s=50, color=color, zorder=4)
    ax.set_xscale("log")
    xs = [v for s in summ for v in (s.compress_kBps, s.decompress_kBps) if math.isfinite(v) and v > 0]
    ax.set_xlim(min(xs) / 15, max(xs) * 2.5)
    ys = [s.bpb for s in summ]
    yr = (max(ys) - min(ys)) or 0.5
    ax.set_ylim(min(ys) - 0.08 * yr, max(ys) + 0.08 * yr)
    ax.set_xlabel("throughput, kB/s of original data (log scale)   filled = compress, open = decompress")
    ax.set_ylabel("bits per byte, all files together (lower is better)")
    nfiles = len({r.file for r in results})
    nbytes = sum({r.file: r.nbytes for r in results}.values())
    ax.set_title(f"Ratio vs speed: {nfiles} files, {nbytes / 1e6:.2f} MB{subtitle}", fontsize=12)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", axis="x", alpha=0.1)
    ax.text(0.99, 0.02, "better: down and right", transform=ax.transAxes, ha="right", va="bottom",
            fontsize=9, color="gray")
    fig.tight_layout()
    # labels left of the compress point; nudged apart (with a leader line) when points share a height
    fig.canvas.draw()
    pts_per_unit = ax.get_window_extent().height / fig.dpi * 72 / (ax.get_ylim()[1] - ax.get_ylim()[0])
    min_gap = 13.0  # points
    placed: list[float] = []
    for s in sorted(summ, key=lambda s: s.bpb):
        y = s.bpb * pts_per_unit
        while any(abs(y - p) < min_gap for p in placed):
            y = max(p for p in placed if abs(y - p) < min_gap) + min_gap
        placed.append(y)
        dy = y - s.bpb * pts_per_unit
        color = "#c0392b" if s.name in nnc_names else "#1f5fa8"
        # left of the compress point, unless that runs off the plot (the slowest compressor):
        # then right of its decompress point
        left = s.compress_kBps > min(xs) * 30
        anchor = s.compress_kBps if left else max(s.compress_kBps, s.decompress_kBps)
        ax.annotate(f"{s.name}  {s.bpb:.3f}", xy=(anchor, s.bpb), xytext=(-9 if left else 9, dy),
                    textcoords="offset points", ha="right" if left else "left", va="center",
                    fontsize=10, color=color,
                    fontweight="bold" if s.name in nnc_names else "normal",
                    arrowprops=dict(arrowstyle="-", color=color, lw=0.6, alpha=0.6) if abs(dy) > 1 else None,
                    annotation_clip=False)
    fig.savefig(path)
    return None


def _default_out(prefix: str) -> Path:
    return Path("results") / f"{prefix}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


# --------------------------------------------------------------------------------------------
# CLI

class _DefaultGroup(click.Group):
    """A group whose default command is ``ratio``: ``bench [PATHS...]`` = ``bench ratio [PATHS...]``."""

    default_cmd = "ratio"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_cmd] + list(args)
        elif not args:
            args = [self.default_cmd]
        return super().parse_args(ctx, args)


@click.group("bench", cls=_DefaultGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
def bench_cmd():
    """Benchmarks: ratio report (default) and the enwik8 tables.

    \b
    nncompress bench [PATHS...] [--model NAME]... [--quick]   ratio and speed report
    nncompress bench enwik8 [--path FILE | --download]          enwik8 tables (two protocols)

    Options of each: nncompress bench ratio --help, nncompress bench enwik8 --help.
    """


@bench_cmd.command("ratio")
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="nncompress model (repeat for several); NAME:de / NAME:static force dynamic "
              "evaluation on / off. Default: the API's default model.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="results folder [results/bench-YYYYmmdd-HHMMSS]")
@click.option("--device", default="auto", show_default=True, help="device for nncompress: auto, cpu, cuda")
@click.option("--streams", type=int, default=None, help="parallel streams for nncompress (default: its own)")
@click.option("--quick", is_flag=True, help=f"only {', '.join(QUICK_FILES)} (about 350 kB)")
@click.option("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, show_default=True,
              help="default file set: skip files larger than this (0 = no limit)")
@click.option("--budget", "budget_s", type=float, default=None,
              help=f"stop starting new files once the projected time passes this many seconds "
                   f"[default set: {DEFAULT_BUDGET_S:.0f}; given PATHS: no limit]")
@click.option("--no-nnc", is_flag=True, help="classic codecs only")
@click.option("--no-ideal", is_flag=True,
              help="no separate cross-entropy pass (only made when the API lacks compress_stream)")
@click.option("--no-chart", is_flag=True, help="do not draw chart.png")
@click.option("--min-time", "min_s", type=float, default=0.2, show_default=True,
              help="repeat each classic codec call until this many seconds, for steadier speeds on small files")
@click.option("--paq8px", "paq8px", type=click.Path(dir_okay=False), default=None,
              help="paq8px binary to compare with (default: paq8px on PATH)")
@click.option("--no-peers", is_flag=True,
              help="leave out the context-mixing and PPM peers (paq8px, zpaq, 7-Zip PPMd)")
def ratio_cmd(paths, models, out_dir, device, streams, quick, max_bytes, budget_s, no_nnc, no_ideal, no_chart,
              min_s, paq8px, no_peers):
    """Ratio and speed of nncompress against gzip, bzip2, xz, zstd and brotli, and against
    paq8px -8, zpaq -m5 and 7-Zip PPMd where they are installed.

    Without PATHS: the text files of the shared corpora (Canterbury, Calgary, large Canterbury,
    enwik5/6) up to --max-bytes each, within --budget seconds; all left out files are listed.
    """
    if paths:
        plan = plan_paths(paths)
    else:
        plan = plan_default(quick, max_bytes)
        if budget_s is None:
            budget_s = DEFAULT_BUDGET_S
    for n in plan.notes:
        click.echo(f"note: {n}")
    compressors: list[Compressor] = []
    if not no_nnc:
        compressors += nnc_compressors(tuple(models), device, streams)
        if no_ideal:
            for c in compressors:
                c.ideal_bpb = None
    compressors += classic_compressors()
    if not no_peers:
        compressors += external_compressors(paq8px)
    for c in compressors:
        if c.skipped:
            click.echo(f"note: {c.name}: {c.skipped}")
    out = Path(out_dir) if out_dir else _default_out("bench")
    out.mkdir(parents=True, exist_ok=True)

    machine = machine_info(device, compressors)
    failure: click.ClickException | None = None
    try:
        results, notes = run_report(plan, compressors, budget_s, min_s=min_s)
    except RoundTripError as e:
        failure = e
        results, notes = e.results, (e.notes or list(plan.notes)) + [f"STOPPED: {e.message}"]
    machine["budget_s"] = budget_s
    machine["files"] = [str(p) for _, p in plan.files]
    (out / "machine.json").write_text(json.dumps(machine, indent=2) + "\n", encoding="utf-8")
    write_csv(out / "results.csv", results)
    anchors = None
    try:
        anchors = load_anchors()
    except click.ClickException as e:
        notes.append(e.message)
    (out / "results.md").write_text(render_markdown(results, compressors, notes, machine, anchors),
                                    encoding="utf-8")
    if not no_chart:
        msg = write_chart(out / "chart.png", results, compressors)
        if msg:
            click.echo(f"note: {msg}")
    for n in notes[len(plan.notes):]:
        click.echo(f"note: {n}")
    click.echo(f"results in {out}/ (results.md, results.csv, machine.json"
               f"{'' if no_chart or not (out / 'chart.png').exists() else ', chart.png'})")
    if failure:
        raise failure


# ---- enwik8 ---------------------------------------------------------------------------------

def _default_cache() -> Path:
    return Path(os.environ.get("NNCOMPRESS_CACHE", Path.home() / ".cache" / "nncompress"))


def _enwik8() -> "corpora.Entry":
    return corpora.entries()["enwik8"]


def verify_enwik8(path: Path) -> None:
    """Raise ClickException unless ``path`` is the registry's enwik8 (size, then sha256)."""
    try:
        corpora.verify(path, _enwik8())
    except corpora.CorpusError as err:
        raise click.ClickException(f"not enwik8: {err}")


def _download_progress() -> Callable[[int, int], None]:
    last = [time.monotonic()]

    def show(got: int, total: int) -> None:
        if time.monotonic() - last[0] > 2:
            last[0] = time.monotonic()
            pct = f" ({100 * got / total:.0f}%)" if total else ""
            click.echo(f"  {got / 1e6:.1f} MB{pct}", err=True)
    return show


def download_enwik8(dest_dir: Path, url: str = corpora.ENWIK8_URL) -> Path:
    """enwik8 in dest_dir: kept if it verifies, else downloaded (zip), unzipped and verified by the
    registry's download_enwik8. Every failure is one ClickException line."""
    dest = dest_dir / "enwik8"
    if dest.is_file():
        try:
            verify_enwik8(dest)
            click.echo(f"using verified {dest}", err=True)
            return dest
        except click.ClickException:
            click.echo(f"{dest} exists but is not enwik8; downloading again", err=True)
    click.echo(f"downloading {url} ...", err=True)
    fix = "Download and unzip it yourself, then pass --path FILE"
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        corpora.download_enwik8(dest, url, progress=_download_progress())
    except corpora.CorpusError as err:
        raise click.ClickException(f"the enwik8 inside {url} is not enwik8 ({err}). {fix}")
    except (zipfile.BadZipFile, KeyError) as err:
        raise click.ClickException(f"{url} is not a zip holding enwik8 ({err}). {fix}")
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise click.ClickException(f"could not download {url}: {reason}. {fix}")
    click.echo(f"enwik8 verified (sha256 {_enwik8().sha256[:16]}...) at {dest}", err=True)
    return dest


def find_enwik8(path: str | None, download: bool, cache: Path,
                url: str = corpora.ENWIK8_URL) -> tuple[Path | None, str]:
    """(verified path or None, a sentence on where it came from or why it is missing)."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise click.ClickException(f"--path {p}: no such file")
        verify_enwik8(p)
        return p, f"{p} (size and sha256 verified)"
    if download:
        p = download_enwik8(cache, url)
        return p, f"{p} (downloaded from {url}, verified)"
    for cand in (os.environ.get("NNCOMPRESS_ENWIK8"), corpora.shared_dir() / "corpora" / _enwik8().relpath(),
                 cache / "enwik8"):
        if cand and Path(cand).is_file():
            verify_enwik8(Path(cand))
            return Path(cand), f"{cand} (size and sha256 verified)"
    return None, "enwik8 not found (give --path FILE or --download)"


NOT_MEASURED = "not measured"


def render_enwik8(anchors: dict, ours_lm: list[dict], ours_whole: list[dict], where: str,
                  machine: dict | None = None) -> str:
    lm = anchors["enwik8_language_model"]
    wf = anchors["enwik8_whole_file"]
    out = ["# nncompress bench: enwik8", ""]
    out.append(f"enwik8: {where}.")
    if machine:
        out.append(f"Machine: {machine['cpu_model']}, {machine['cpus_usable'] or machine['cpu_count']} cores, "
                   f"device {machine['device']['requested']}, git {(machine['git']['commit'] or '?')[:12]}, "
                   f"{machine['date']}.")
    out.append("")
    out.append("The two tables below use different protocols and must not be compared with each other: (a) is "
               "a language model's cross-entropy on a held-out 5 MB after training on 90 MB; "
               "(b) is the size of the whole 100 MB file compressed in one pass.")
    out.append("")
    out.append("## (a) Language-model protocol: cross-entropy in bits per byte on the last 5,000,000 bytes "
               "(bytes 95,000,000-99,999,999), after training on the first 90,000,000")
    out.append("")
    out.append(f"Source of published rows: {lm['source']}.")
    out.append("")
    rows = []
    for r in ours_lm:
        rows.append([f"**{r['model']}** (this run)", r["value"], "", r.get("notes", ""), "this run"])
    for r in lm["rows"]:
        rows.append([r["model"], str(r["test_bpb"]), r["params"], r["notes"], r["source"]])
    out.append(_table(["model", "test bpb (LM protocol)", "params", "notes", "source"], rows,
                      ["l", "r", "r", "l", "l"]))
    out.append("")
    out.append("## (b) Whole-file protocol: enwik8 (100,000,000 bytes) compressed in one pass")
    out.append("")
    out.append(f"Source of published rows: {wf['source']}. bpb = 8 x compressed bytes / 100,000,000.")
    out.append("")
    rows = []
    for r in ours_whole:
        rows.append([f"**{r['compressor']}** (this run)", r["bytes"], r["bpb"], r.get("notes", ""), "this run"])
    for r in wf["rows"]:
        rows.append([r["compressor"], f"{r['bytes']:,}", _f(r["bpb"]), r["notes"], r["source"]])
    out.append(_table(["compressor", "compressed bytes", "bpb (whole file)", "notes", "source"], rows,
                      ["l", "r", "r", "l", "l"]))
    out.append("")
    return "\n".join(out)


@bench_cmd.command("enwik8")
@click.option("--path", "path", type=click.Path(dir_okay=False), default=None, help="your copy of enwik8")
@click.option("--download", is_flag=True, help=f"download {corpora.ENWIK8_URL} (about 36 MB) into --cache")
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="where --download puts enwik8 [$NNCOMPRESS_CACHE or ~/.cache/nncompress]")
@click.option("--model", "models", multiple=True, metavar="NAME", help="nncompress model(s) for our rows")
@click.option("--measure", "do_measure", is_flag=True,
              help="compress the whole 100 MB with nncompress (hours on CPU) and verify the round trip")
@click.option("--classic", is_flag=True, help="also measure the classic codecs on the whole file (about 10-20 min)")
@click.option("--lm-model", default=None, metavar="NAME",
              help="with --measure: a model trained on enwik8's first 90,000,000 bytes only (your "
                   "claim; not checked); measures its cross-entropy on the last 5,000,000")
@click.option("--device", default="auto", show_default=True)
@click.option("--streams", type=int, default=None)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="results folder [results/enwik8-YYYYmmdd-HHMMSS]")
@click.option("--url", default=corpora.ENWIK8_URL, hidden=True, help="download address (a mirror, or tests)")
def enwik8_cmd(path, download, cache, models, do_measure, classic, lm_model, device, streams, out_dir, url):
    """The enwik8 tables: language-model protocol and whole-file size, beside published figures."""
    anchors = load_anchors()
    cache_dir = Path(cache) if cache else _default_cache()
    p, where = find_enwik8(path, download, cache_dir, url)
    model_labels = list(models) or [None]
    ours_lm: list[dict] = []
    ours_whole: list[dict] = []
    csv_rows: list[Result] = []

    if lm_model and do_measure and p is not None:
        api = _api()
        data = p.read_bytes()
        test = data[len(data) - LM_TEST_BYTES:]
        assert len(test) == LM_TEST_BYTES
        click.echo(f"cross-entropy of {lm_model} on the last {LM_TEST_BYTES:,} bytes ...", err=True)
        ce = float(api.cross_entropy(test, model=lm_model, device=device, streams=streams))
        ours_lm.append({"model": f"nncompress {lm_model}", "value": _f(ce),
                        "notes": "model declared trained on enwik8[:90M] only (not checked); "
                                 "state starts fresh at byte 95,000,000"})
    else:
        why = "no model trained on enwik8's first 90,000,000 bytes only (--lm-model NAME --measure)"
        if p is None:
            why = "enwik8 absent; " + why
        ours_lm.append({"model": "nncompress", "value": NOT_MEASURED, "notes": why})

    compressors: list[Compressor] = []
    if do_measure and p is not None:
        compressors += nnc_compressors(tuple(models), device, streams)
        for c in compressors:
            c.ideal_bpb = None
    else:
        from ..predictors import spec as specs
        for m in model_labels:
            try:
                label = specs.parse_spec(m).label
            except Exception:
                label = m or "(default model)"
            ours_whole.append({"compressor": f"nncompress {label}", "bytes": NOT_MEASURED,
                               "bpb": NOT_MEASURED,
                               "notes": "enwik8 absent" if p is None else
                               "not run: takes hours on CPU; use --measure"})
    if classic and p is not None:
        compressors += classic_compressors()
    else:
        ours_whole.append({"compressor": "classic codecs (gzip, bzip2, xz, zstd, brotli)", "bytes": NOT_MEASURED,
                           "bpb": NOT_MEASURED,
                           "notes": "enwik8 absent" if p is None else "not run; use --classic"})
    if compressors and p is not None:
        data = p.read_bytes()
        for c in compressors:
            if c.skipped:
                ours_whole.append({"compressor": c.name, "bytes": NOT_MEASURED, "bpb": NOT_MEASURED,
                                   "notes": c.skipped})
                continue
            click.echo(f"{c.name} on enwik8 ...", err=True)
            r = measure("enwik8", p, data, c)
            csv_rows.append(r)
            if not r.verified:
                raise RoundTripError(f"round trip failed: {c.name} on {p}")
            ours_whole.append({"compressor": c.name, "bytes": f"{r.compressed_bytes:,}", "bpb": _f(r.bpb),
                               "notes": f"{r.compress_kBps:.1f} / {r.decompress_kBps:.1f} kB/s compress / "
                                        f"decompress, round trip verified; {r.version}"})

    out = Path(out_dir) if out_dir else _default_out("enwik8")
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info(device, compressors)
    (out / "machine.json").write_text(json.dumps(machine, indent=2) + "\n", encoding="utf-8")
    md = render_enwik8(anchors, ours_lm, ours_whole, where, machine)
    (out / "enwik8.md").write_text(md, encoding="utf-8")
    if csv_rows:
        write_csv(out / "enwik8.csv", csv_rows)
    click.echo(md)
    click.echo(f"written to {out}/enwik8.md")


if __name__ == "__main__":  # python -m nncompress.tools.bench
    bench_cmd()
