"""Framed files (format version 5, nncompress/format/frames.py) coded by workers.

The input is cut into frames of `frame_size` bytes; each frame is coded on its own (a complete
version-4 body, the predictor in its initial state) by a worker, and the results are written in
frame order as they come. The frame layout depends only on the input and the frame size, and a
frame's body only on its bytes and the predictor's settings, so the output is the same for any
number of workers and any executor:

- serial: in this process (workers = 1);
- a local process pool ("spawn" processes: torch and fork do not mix), each worker building its
  Compressor or Decompressor once and deep-copying a fresh predictor per frame;
- a Dask distributed cluster (`cluster="tcp://host:8786"`, the optional `nncompress[cluster]`
  extra), one task per frame; a worker that dies has its task run again elsewhere, and a task
  that raises anything but a data error is retried up to `CLUSTER_RETRIES` times.

At most `2 x workers` frames are in flight, so memory is bounded by frame size x workers
whatever the input length; input and output are read and written frame by frame (standard input
and output need not be seekable).
"""
from __future__ import annotations

import collections
import io
import os
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator, Optional

from . import api, levels
from .errors import FormatError, NNCError, TruncatedError
from .format import container, frames

CLUSTER_RETRIES = 3

Write = Callable[[bytes], object]


class PartialError(TruncatedError):
    """The input ended inside a frame or before a trailer: `frames` complete frames
    (`original_bytes` bytes) were decoded, checked and handed to the output before this was
    raised; nothing of the incomplete frame was."""

    def __init__(self, message: str, frames_done: int = 0, original_bytes: int = 0):
        super().__init__(message)
        self.frames_done, self.original_bytes = frames_done, original_bytes

    def __reduce__(self):
        return (PartialError, (str(self), self.frames_done, self.original_bytes))


@dataclass
class FramedStats:
    original_bytes: int = 0
    compressed_bytes: int = 0
    n_frames: int = 0
    frame_size: int = 0
    n_streams: int = 0          # of the first frame
    n_segments: int = 0         # over all frames
    seconds: float = 0.0
    workers: int = 1

    @property
    def bits_per_byte(self) -> float:
        return 8.0 * self.compressed_bytes / self.original_bytes if self.original_bytes else 0.0


def default_frame_size(level: Optional[int], model: Optional[str]) -> int:
    """The frame size of a level (levels.Level.frame_bytes); with --model, the default level's."""
    lv = levels.get(levels.DEFAULT_LEVEL if level is None or model is not None else level)
    return lv.frame_bytes


def parse_size(text: str) -> int:
    """A frame size: bytes, or with a binary suffix K, M or G (1M = 1 MiB); ValueError otherwise."""
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    digits = t[:-1] if mult > 1 else t
    if not digits.isdigit():
        raise ValueError(f"not a size: {text!r} (bytes, or a number with K, M or G)")
    return frames.check_frame_size(int(digits) * mult)


def resolve_workers(workers: int) -> int:
    """-T N: N worker processes; 0 means one per core."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer, not {workers!r}")
    return workers or (os.cpu_count() or 1)


# ------------------------------------------------------------------ the work of one frame
# Module-level caches: one Compressor / Decompressor per process (pool worker or Dask worker),
# built on first use and reused for every frame that process codes.

_COMPRESSORS: dict = {}
_DECOMPRESSORS: dict = {}


def _key(opts: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in opts.items()))


def _compressor(opts: dict) -> "api.Compressor":
    k = _key(opts)
    if k not in _COMPRESSORS:
        _COMPRESSORS[k] = api.Compressor(opts.get("level"), model=opts.get("model"),
                                         device=opts.get("device", "auto"),
                                         streams=opts.get("streams"),
                                         dynamic_eval=opts.get("dynamic_eval"))
    return _COMPRESSORS[k]


def _decompressor(opts: dict) -> "api.Decompressor":
    k = _key(opts)
    if k not in _DECOMPRESSORS:
        _DECOMPRESSORS[k] = api.Decompressor(model=opts.get("model"),
                                             device=opts.get("device", "auto"))
    return _DECOMPRESSORS[k]


def compress_frame(opts: dict, data: bytes, coder_process: Optional[bool] = None,
                   verify: bool = False):
    """One frame's body: (body, n_streams, n_segments). With `verify`, the body is decoded
    again and compared with `data` first."""
    out = io.BytesIO()
    st = _compressor(opts).compress_stream(io.BytesIO(data), out, coder_process=coder_process)
    body = out.getvalue()
    if verify and decode_frame(opts, body, len(data)) != data:
        raise NNCError("verification failed: a decoded frame differs from the input; "
                       "nothing written")
    return body, st.n_streams, st.n_segments


def decode_frame(opts: dict, body: bytes, n: int) -> bytes:
    """The original bytes of one frame's body (every check of the body passes first)."""
    if container.MAGIC != body[:4] or frames.is_v5(body[:6]):
        raise FormatError("corrupt .nnc data (a frame does not hold a version 1-4 body)")
    try:
        data = _decompressor(opts).decompress(body)
    except TruncatedError as e:   # the body is complete, so this is damage, not a cut-off
        raise FormatError(f"corrupt .nnc data (a frame's body: {e})") from None
    if len(data) != n:
        raise FormatError("corrupt .nnc data (a frame's length does not match its record)")
    return data


def _as_value(fn, *args):
    """Runs fn on a cluster worker, returning a data error as a value (it would fail the same
    way on every retry) instead of raising it."""
    try:
        return ("ok", fn(*args))
    except NNCError as e:
        return ("err", e)


def _pool_init(opts: dict, direction: str, step_threads: int = 1) -> None:
    import signal
    from .predictors import threads
    # Ctrl-C and terminal signals are handled by the parent, which ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threads.limit(step_threads)     # the workers share the cores
    if direction == "c":
        _compressor(opts)
    else:
        _decompressor(opts)


# ------------------------------------------------------------------ executors

class _Done:
    def __init__(self, value=None, error=None):
        self.value, self.error = value, error

    def result(self):
        if self.error is not None:
            raise self.error
        return self.value


class _Serial:
    """Runs each task at submit time, in this process."""
    workers = 1

    def submit(self, fn, *args):
        return _Done(fn(*args))

    def close(self, abort: bool = False) -> None:
        pass


class _Pool:
    """A pool of `workers` spawned processes."""

    def __init__(self, workers: int, opts: dict, direction: str):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from .predictors import threads
        self.workers = workers
        self.ex = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_pool_init,
                                      initargs=(opts, direction,
                                                max(1, threads.count() // workers)))

    def submit(self, fn, *args):
        return _PoolFuture(self.ex.submit(fn, *args))

    def close(self, abort: bool = False) -> None:
        if abort:
            for p in list((getattr(self.ex, "_processes", None) or {}).values()):
                try:
                    p.kill()
                except (OSError, AttributeError):
                    pass
            self.ex.shutdown(wait=False, cancel_futures=True)
        else:
            self.ex.shutdown(wait=True)


class _PoolFuture:
    def __init__(self, fut):
        self.fut = fut

    def result(self):
        from concurrent.futures.process import BrokenProcessPool
        try:
            return self.fut.result()
        except BrokenProcessPool:
            raise NNCError("a worker process ended unexpectedly (out of memory?); "
                           "nothing written") from None


class _Cluster:
    """Tasks on a Dask distributed scheduler; every worker needs nncompress (and the model
    files) installed."""

    def __init__(self, address: str, opts: dict):
        try:
            from distributed import Client
        except ImportError:
            raise NNCError("--cluster needs Dask distributed: pip install 'nncompress[cluster]'") \
                from None
        try:
            self.client = Client(address, timeout="30s", set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise NNCError(f"cannot reach the Dask scheduler at {address}: {e}") from None
        self.workers = max(1, sum(self.client.nthreads().values()))

    def submit(self, fn, *args):
        return _ClusterFuture(self.client.submit(_as_value, fn, *args, pure=False,
                                                 retries=CLUSTER_RETRIES))

    def close(self, abort: bool = False) -> None:
        try:
            self.client.close()
        except Exception:       # a scheduler already gone: nothing left to release
            pass


class _ClusterFuture:
    def __init__(self, fut):
        self.fut = fut

    def result(self):
        try:
            kind, value = self.fut.result()
        except NNCError:
            raise
        except Exception as e:   # KilledWorker after repeated deaths, a lost scheduler, ...
            raise NNCError(f"cluster task failed ({e.__class__.__name__}: {str(e)[:200]}); "
                           "nothing written") from None
        if kind == "err":
            raise value
        return value


def _executor(workers: int, cluster: Optional[str], opts: dict, direction: str,
              n_frames: Optional[int]):
    if cluster:
        return _Cluster(cluster, opts)
    workers = resolve_workers(workers)
    if n_frames is not None:
        workers = min(workers, max(1, n_frames))
    if workers <= 1:
        return _Serial()
    return _Pool(workers, opts, direction)


# ------------------------------------------------------------------ reading frames of an input

def _read_frame(src: BinaryIO, size: int) -> bytes:
    parts, left = [], size
    while left:
        b = src.read(min(left, 1 << 20))
        if not b:
            break
        parts.append(b)
        left -= len(b)
    return b"".join(parts)


def _input_frames(src: BinaryIO, size: int) -> Iterator[bytes]:
    while True:
        data = _read_frame(src, size)
        if not data:
            return
        yield data
        if len(data) < size:
            return


# ------------------------------------------------------------------ compress / decompress

def compress_stream(src: BinaryIO, write: Write, *, level: Optional[int] = None,
                    model: Optional[str] = None, device: str = "auto",
                    streams: Optional[int] = None, dynamic_eval=None,
                    frame_size: Optional[int] = None, workers: int = 1,
                    cluster: Optional[str] = None, verify: bool = False,
                    n_bytes: Optional[int] = None,
                    progress: Optional[Callable[[int], None]] = None,
                    compressor: Optional["api.Compressor"] = None) -> FramedStats:
    """Compresses everything `src` (any readable binary file: a pipe will do) yields into a
    version-5 member, handed to `write` piece by piece as frames finish (in frame order).
    `level`, `model`, `device`, `streams`, `dynamic_eval`: as for api.Compressor. `frame_size`:
    bytes per frame (default: the level's). `workers`: processes (0: one per core; 1: this
    process, `compressor` if given); `cluster`: a Dask scheduler address instead. `verify`:
    decode each frame's body and compare before it is written. `n_bytes`: the input's length if
    known (caps the workers at the frame count)."""
    t0 = time.perf_counter()
    opts = {"level": level, "model": model, "device": device, "streams": streams,
            "dynamic_eval": dynamic_eval}
    frame_size = frames.check_frame_size(frame_size or default_frame_size(level, model))
    n_frames = frames.frame_count(n_bytes, frame_size) if n_bytes is not None else None
    if compressor is not None:
        _COMPRESSORS[_key(opts)] = compressor
    ex = _executor(workers, cluster, opts, "c", n_frames)
    # One worker process fills a core; the coder process is for a lone encoder.
    cp = None if isinstance(ex, _Serial) else False
    stats = FramedStats(frame_size=frame_size, workers=ex.workers)
    writer = frames.Writer(write, frame_size)
    pending: collections.deque = collections.deque()

    def finish_one():
        data, fut = pending.popleft()
        body, n_streams, n_seg = fut.result()
        writer.frame(data, body)
        if stats.n_frames == 0:
            stats.n_streams = n_streams
        stats.n_frames += 1
        stats.n_segments += n_seg
        if progress is not None:
            progress(len(data))

    ok = False
    try:
        for data in _input_frames(src, frame_size):
            pending.append((data, ex.submit(compress_frame, opts, data, cp, verify)))
            while len(pending) >= 2 * ex.workers:
                finish_one()
        while pending:
            finish_one()
        writer.finish()
        ok = True
    finally:
        ex.close(abort=not ok)
    stats.original_bytes, stats.compressed_bytes = writer.total, writer.written
    stats.seconds = time.perf_counter() - t0
    return stats


def decompress_stream(src: BinaryIO, write: Write, *, model: Optional[str] = None,
                      device: str = "auto", workers: int = 1, cluster: Optional[str] = None,
                      head: bytes = b"", progress: Optional[Callable[[int], None]] = None,
                      decompressor: Optional["api.Decompressor"] = None) -> FramedStats:
    """Decodes the version-5 data in `src` (any readable binary file; `head`: its first bytes,
    already read) frame by frame, handing each frame's original bytes to `write` in order once
    every check of that frame has passed. Every member's SHA-256 is checked at its trailer. When
    the data ends early, every complete frame is written and PartialError says how many."""
    t0 = time.perf_counter()
    opts = {"model": model, "device": device}
    if decompressor is not None:
        _DECOMPRESSORS[_key(opts)] = decompressor
    reader = frames.Reader(src, head)
    ex = _executor(workers, cluster, opts, "d", None)
    stats = FramedStats(frame_size=reader.frame_size, workers=ex.workers)
    check = frames.ContentCheck()
    pending: collections.deque = collections.deque()

    def finish_one():
        fut = pending.popleft()
        data = fut.result()
        check.update(data)
        write(data)
        stats.n_frames += 1
        stats.original_bytes += len(data)
        if progress is not None:
            progress(len(data))

    ok = False
    try:
        try:
            for item in reader.frames():
                if isinstance(item, frames.Frame):
                    pending.append(ex.submit(decode_frame, opts, item.body, item.n))
                    while len(pending) >= 2 * ex.workers:
                        finish_one()
                else:
                    while pending:
                        finish_one()
                    check.check(reader)
        except TruncatedError as e:
            while pending:
                finish_one()
            raise PartialError(f"{e}; {stats.n_frames} complete frame"
                               f"{'s' if stats.n_frames != 1 else ''} ({stats.original_bytes} "
                               "bytes) recovered", stats.n_frames, stats.original_bytes) from None
        ok = True
    finally:
        ex.close(abort=not ok)
    stats.seconds = time.perf_counter() - t0
    return stats


@dataclass
class FramedInfo:
    members: int = 0
    frame_size: int = 0
    n_frames: int = 0
    original_bytes: int = 0
    compressed_bytes: int = 0
    first: Optional[api.FileInfo] = None     # the first frame's body
    n_segments: int = 0
    frame_sizes: list = field(default_factory=list)

    @property
    def bits_per_byte(self) -> float:
        return 8.0 * self.compressed_bytes / self.original_bytes if self.original_bytes else 0.0


def info(src: BinaryIO, head: bytes = b"") -> FramedInfo:
    """Walks a version-5 file, checking every record and every frame body's records (no
    decoding)."""
    start = src.tell() - len(head)
    reader = frames.Reader(src, head)
    fi = FramedInfo(frame_size=reader.frame_size)
    for item in reader.frames():
        if isinstance(item, frames.Frame):
            b = api.info(io.BytesIO(item.body))
            if b.header.original_length != item.n:
                raise FormatError("corrupt .nnc data (a frame's length does not match its record)")
            fi.first = fi.first or b
            fi.n_frames += 1
            fi.n_segments += b.n_segments
            fi.original_bytes += item.n
        else:
            fi.members += 1
            if reader.frame_size not in fi.frame_sizes:
                fi.frame_sizes.append(reader.frame_size)
    fi.compressed_bytes = src.tell() - start
    return fi
