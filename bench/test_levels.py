"""Throughput of every compression level, each way (pytest-benchmark; not part of CI).

    pytest bench/test_levels.py --benchmark-only [--benchmark-json=levels.json]

Input: the first NNCOMPRESS_BENCH_BYTES bytes (default 200,000) of enwik6 from the shared corpora,
skipped with a message when absent. One Compressor / Decompressor per level, built outside the
timed call (model loading is not counted); KB/s (1000 bytes of original per second), bits per
byte and the stream count are in each benchmark's extra_info.
NNCOMPRESS_BENCH_LEVELS picks levels, e.g. "1,3,6" (default: all).
"""
from __future__ import annotations

import io
import os
import time

import pytest

nncompress = pytest.importorskip("nncompress")
from nncompress import levels  # noqa: E402
from nncompress_corpora import shared_dir  # noqa: E402

ENWIK6 = shared_dir() / "corpora" / "enwik" / "enwik6"
N = int(os.environ.get("NNCOMPRESS_BENCH_BYTES", "200000"))
LEVELS = [int(x) for x in os.environ.get("NNCOMPRESS_BENCH_LEVELS", "").split(",") if x.strip()] \
    or sorted(levels.LEVELS)
_blobs: dict = {}


@pytest.fixture(scope="module")
def data() -> bytes:
    if not ENWIK6.is_file():
        pytest.skip(f"{ENWIK6} not found (set NNCOMPRESS_SHARED to the folder holding corpora/)")
    return ENWIK6.read_bytes()[:N]


def _timed(benchmark, fn):
    times = []

    def run():
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        return out
    return benchmark.pedantic(run, rounds=1, iterations=1), min(times)


@pytest.mark.parametrize("level", LEVELS)
def test_compress(benchmark, data, level):
    c = nncompress.Compressor(level=level)
    blob, t = _timed(benchmark, lambda: c.compress(data))
    _blobs[level] = blob
    benchmark.extra_info.update({"level": level, "bytes": len(data), "kBps": round(len(data) / 1000 / t, 2),
                                 "bpb": round(8 * len(blob) / len(data), 4),
                                 "streams": c.stream_count(len(data))})


@pytest.mark.parametrize("level", LEVELS)
def test_decompress(benchmark, data, level):
    blob = _blobs.get(level) or nncompress.compress(data, level=level)
    d = nncompress.Decompressor()
    d._predictor(nncompress.read_header(io.BytesIO(blob)))   # load the model outside the timing
    back, t = _timed(benchmark, lambda: d.decompress(blob))
    assert back == data
    benchmark.extra_info.update({"level": level, "bytes": len(data), "kBps": round(len(data) / 1000 / t, 2)})
