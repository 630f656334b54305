"""Throughput of nncompress.compress / decompress, per device (pytest-benchmark).

Not part of the CI run (CI runs ``pytest tests/``). Run it with

    pytest bench/ --benchmark-only                      # CPU, plus CUDA when torch sees a GPU
    pytest bench/ --benchmark-only --benchmark-json=speed.json

Input: ../shared/corpora/enwik/enwik6 (1,000,000 bytes; or $NNCOMPRESS_SHARED/corpora/enwik/enwik6);
skipped with a message when absent. Each case runs once by default (a round is about a minute on 2
CPU cores with the context model); the kB/s figures (1 kB = 1000 bytes of original data) and the
stream count are in each benchmark's extra_info, shown with ``--benchmark-columns`` or in the JSON.

Environment:
    NNCOMPRESS_BENCH_MODEL    model name or path (default: the API's default model)
    NNCOMPRESS_BENCH_STREAMS  comma-separated stream counts, e.g. "1,8,64" (default: nncompress's choice)
    NNCOMPRESS_BENCH_ROUNDS   rounds per case (default 1)
"""
from __future__ import annotations

import io
import os
import time

import pytest

nncompress = pytest.importorskip("nncompress")
from nncompress.tools.bench import shared_dir  # noqa: E402

MIN_BYTES = 1_000_000
ENWIK6 = shared_dir() / "corpora" / "enwik" / "enwik6"
MODEL = os.environ.get("NNCOMPRESS_BENCH_MODEL") or None
ROUNDS = int(os.environ.get("NNCOMPRESS_BENCH_ROUNDS", "1"))
STREAMS = [int(s) for s in os.environ.get("NNCOMPRESS_BENCH_STREAMS", "").split(",") if s.strip()] or [None]


def _cuda_available() -> bool:
    try:
        import torch
        return bool(torch.cuda.is_available())
    except Exception:
        return False


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not _cuda_available(), reason="no CUDA device (torch.cuda.is_available() is False)")),
]

_blobs: dict = {}  # (device, streams) -> compressed bytes, reused by the decompress bench


@pytest.fixture(scope="module")
def data() -> bytes:
    if not ENWIK6.is_file():
        pytest.skip(f"{ENWIK6} not found: the speed bench needs a >= 1 MB input "
                    "(set NNCOMPRESS_SHARED to the folder holding corpora/enwik/enwik6)")
    d = ENWIK6.read_bytes()
    assert len(d) >= MIN_BYTES
    return d


def _stream_count(blob: bytes):
    try:
        return len(nncompress.read_header(io.BytesIO(blob)).stream_lengths())
    except Exception:
        return None


def _record(benchmark, n: int, times: list[float], device: str, streams, blob: bytes, what: str):
    best, mean = min(times), sum(times) / len(times)
    benchmark.extra_info.update({
        "input": ENWIK6.name, "bytes": n, "compressed_bytes": len(blob),
        "bpb": round(8 * len(blob) / n, 4), "device": device, "model": MODEL or "default",
        "streams_requested": streams if streams is not None else "auto",
        "streams": _stream_count(blob),
        f"{what}_kBps_best": round(n / 1000 / best, 2),
        f"{what}_kBps_mean": round(n / 1000 / mean, 2),
    })
    print(f"\n{what} {device} streams={_stream_count(blob)}: {n / 1000 / best:.1f} kB/s (best of {len(times)})")


@pytest.mark.parametrize("streams", STREAMS, ids=lambda s: f"streams={s or 'auto'}")
@pytest.mark.parametrize("device", DEVICES)
def test_compress_speed(benchmark, data, device, streams):
    times: list[float] = []

    def run():
        t0 = time.perf_counter()
        out = nncompress.compress(data, model=MODEL, device=device, streams=streams)
        times.append(time.perf_counter() - t0)
        return out

    blob = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    _blobs[(device, streams)] = blob
    _record(benchmark, len(data), times, device, streams, blob, "compress")


@pytest.mark.parametrize("streams", STREAMS, ids=lambda s: f"streams={s or 'auto'}")
@pytest.mark.parametrize("device", DEVICES)
def test_decompress_speed(benchmark, data, device, streams):
    blob = _blobs.get((device, streams))
    if blob is None:
        blob = nncompress.compress(data, model=MODEL, device=device, streams=streams)
    times: list[float] = []

    def run():
        t0 = time.perf_counter()
        out = nncompress.decompress(blob, device=device, **({"model": MODEL} if MODEL else {}))
        times.append(time.perf_counter() - t0)
        return out

    back = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    assert back == data, "round trip mismatch"
    _record(benchmark, len(data), times, device, streams, blob, "decompress")
