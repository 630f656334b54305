"""Threads for the predictors' compiled kernels: how many this process may use, and one pool.

The kernels that run here (numba with nogil, the AVX2 product through ctypes) release the GIL, so
independent pieces of one step run on several cores. Every piece touches only its own streams'
arrays or its own stream's tables, so the bits never depend on the thread count.

The count is the cores this process may run on, or NNCOMPRESS_THREADS where that is set, or what
`limit` set (parallel.py gives each of W frame workers cores // W).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Sequence

ENV = "NNCOMPRESS_THREADS"

_LIMIT: Optional[int] = None
_POOL: Optional[ThreadPoolExecutor] = None
_POOL_SIZE = 0
_LOCK = threading.Lock()


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def limit(n: Optional[int]) -> None:
    """Use at most n threads from now on (None: back to the default)."""
    global _LIMIT
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"a thread count must be a positive integer, not {n!r}")
    _LIMIT = n


def count() -> int:
    """The threads the kernels may use: limit(), else NNCOMPRESS_THREADS, else usable_cores()."""
    if _LIMIT is not None:
        return _LIMIT
    env = os.environ.get(ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"{ENV} must be a positive integer, not {env!r}")
        return n
    return usable_cores()


def run(fn: Callable, jobs: Sequence[tuple]) -> list:
    """[fn(*job) for job in jobs], the first job on this thread and the others on the pool."""
    global _POOL, _POOL_SIZE
    if len(jobs) < 2:
        return [fn(*j) for j in jobs]
    with _LOCK:
        if _POOL is None or _POOL_SIZE < len(jobs) - 1:   # grows, never shrinks (another
            _POOL_SIZE = len(jobs) - 1                   # caller may hold the old one)
            _POOL = ThreadPoolExecutor(max_workers=_POOL_SIZE, thread_name_prefix="nnc-step")
        pool = _POOL
    futures = [pool.submit(fn, *j) for j in jobs[1:]]
    first = fn(*jobs[0])
    return [first] + [f.result() for f in futures]


def parts(n: int, threads: int, min_part: int, align: int = 1) -> list[tuple[int, int]]:
    """[lo, hi) ranges that cover range(n): as many as `threads` allows with every part at least
    min_part long, each boundary a multiple of `align`."""
    k = max(1, min(threads, n // max(1, min_part)))
    cuts = [0]
    for i in range(1, k):
        c = (n * i // k) // align * align
        if c > cuts[-1]:
            cuts.append(c)
    cuts.append(n)
    return [(cuts[i], cuts[i + 1]) for i in range(len(cuts) - 1) if cuts[i + 1] > cuts[i]]
