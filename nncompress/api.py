"""Python API: one-shot functions on bytes, and stream variants on binary files that the CLI uses.

    >>> import nncompress
    >>> blob = nncompress.compress(b"hello hello hello", model="ctx1")
    >>> nncompress.decompress(blob)
    b'hello hello hello'
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Optional

from . import container, engine, limits, models
from .container import Header
from .engine import Progress, RunStats
from .errors import FormatError, NNCError
from .predictors.base import stream_limits


def _stream_count(pred, n: int, streams: Optional[int]) -> int:
    """The stream count for n bytes: `streams` (fitted to n) or the predictor's choice; raises
    ValueError when it is more than the predictor or the format allows."""
    if streams is not None:
        if isinstance(streams, bool) or not isinstance(streams, int) or streams < 1:
            raise ValueError(f"streams must be a positive integer, not {streams!r}")
        s = engine.fit_streams(n, min(streams, limits.MAX_STREAMS + 1))
    else:
        s = engine.choose_streams(n, *stream_limits(pred))
    cap = models.stream_cap(pred.identity.settings)
    if s > cap:
        why = " with full dynamic evaluation" if cap < limits.MAX_STREAMS else ""
        raise ValueError(f"at most {cap} streams can be coded{why}, not {streams}")
    return s


def check_streams(pred, n: int, streams: Optional[int]) -> int:
    """The stream count compress_stream will use for n bytes (ValueError if it cannot)."""
    return _stream_count(pred, n, streams)


def _bytes(data, what: str = "data") -> bytes:
    """A bytes-like object's bytes; TypeError for anything else (int, str, None, ...)."""
    if isinstance(data, (str, int)) or data is None:
        raise TypeError(f"{what} must be a bytes-like object, not {type(data).__name__}")
    try:
        return memoryview(data).tobytes()
    except TypeError:
        raise TypeError(f"{what} must be a bytes-like object, not {type(data).__name__}") from None


def _remaining(f: BinaryIO) -> Optional[int]:
    """Bytes left in a seekable file from its position (None when it cannot tell)."""
    try:
        if not f.seekable():
            return None
        return _length(f)
    except (OSError, ValueError, AttributeError):
        return None


def _only_nnc_errors(func):
    """Decoding raises only NNCError subclasses (and OSError for I/O): anything else that damaged
    or forged data provokes past the checks becomes a FormatError."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (NNCError, OSError):
            raise
        except (ValueError, IndexError, KeyError, TypeError, AttributeError, ArithmeticError,
                LookupError, RuntimeError, MemoryError, struct.error, zlib.error) as e:
            raise FormatError(f"this .nnc data cannot be decoded ({e.__class__.__name__}: "
                              f"{str(e)[:200]})") from None
    return wrapper


def _length(f: BinaryIO) -> int:
    pos = f.tell()
    end = f.seek(0, os.SEEK_END)
    f.seek(pos)
    return end - pos


def compress_stream(src: BinaryIO, dst: BinaryIO, *, model: Optional[str] = None,
                    device: str = "auto", streams: Optional[int] = None,
                    segment_steps: Optional[int] = None, progress: Progress = None,
                    dynamic_eval=None, predictor=None) -> RunStats:
    """Compresses the whole seekable binary file `src` (from offset 0) into `dst`.

    `dynamic_eval`: None (on when the FS-LSTM model file carries dynamic-evaluation statistics,
    as the shipped default does), False (static model), True (the model's tuned settings) or a
    dict of overrides {"segment": steps, "lr": float, "decay": float, "eps": float}. The settings
    used are recorded in the header; decoding needs nothing but the file and the model.
    `predictor`: an already built predictor (models.build_predictor) instead of `model`.
    Raises ValueError for a stream count or segment length the predictor or format cannot take."""
    src.seek(0)
    n = _length(src)
    if predictor is None:
        predictor = models.build_predictor(model, device=device, dynamic_eval=dynamic_eval)
    else:
        models.check_predictor(predictor)
    s = _stream_count(predictor, n, streams)
    if segment_steps is not None:
        if isinstance(segment_steps, bool) or not isinstance(segment_steps, int) \
                or not 1 <= segment_steps < 1 << 32:
            raise ValueError(f"segment_steps must be in 1..2**32-1, not {segment_steps!r}")
        problem = limits.layout_problem(n, s, segment_steps)
        if problem:
            raise ValueError(f"segment_steps {segment_steps}: {problem}")
    return engine.encode(src, n, dst, predictor, s, segment_steps, progress)


@_only_nnc_errors
def read_header(src: BinaryIO) -> Header:
    """Reads and checks a .nnc header from `src` (raises FormatError for anything else). When
    `src` is seekable, the header must also leave room for the records it implies."""
    header = container.read_header(src)
    left = _remaining(src)
    if left is not None:
        container.check_body_size(header, left)
    return header


@_only_nnc_errors
def predictor_for(header: Header, *, model: Optional[str] = None, device: str = "auto"):
    """The predictor that decodes `header`'s file; raises ModelMismatchError (naming the model)
    before anything is decoded when it is not available. `model` names extra model files or
    folders ("+"-separated) to look in."""
    extra = []
    for part in (model.split(models.ENSEMBLE_SEP) if model else []):
        if part in models.BUILTIN or part in models.STAGES:
            continue
        extra.append(part if os.path.exists(part) else str(models.resolve(part).path))
    cap = models.stream_cap(header.settings)
    if header.n_streams > cap:
        raise FormatError(f"unsupported .nnc header ({header.n_streams} streams; this predictor "
                          f"codes at most {cap})")
    return models.predictor_for_header(header.predictor_name, header.model_sha256,
                                       header.settings, extra, device)


def decompress_stream(src: BinaryIO, sink: BinaryIO, *, model: Optional[str] = None,
                      device: str = "auto", progress: Progress = None,
                      header: Optional[Header] = None, predictor=None) -> RunStats:
    """Decodes the .nnc data in `src` into the seekable binary file `sink` (written at offsets
    0..N-1). Every check passes before this returns; if it raises, discard the sink."""
    if header is None:
        header = read_header(src)
    return _decode_body(src, sink, model, device, progress, header, predictor)


@_only_nnc_errors
def _decode_body(src, sink, model, device, progress, header, predictor) -> RunStats:
    if predictor is None:
        predictor = predictor_for(header, model=model, device=device)
    return engine.decode_body(src, header, sink, predictor, progress)


def compress(data: bytes, *, model: Optional[str] = None, device: str = "auto",
             streams: Optional[int] = None, segment_steps: Optional[int] = None,
             dynamic_eval=None) -> bytes:
    """Compresses `data` into a complete .nnc file (`dynamic_eval`: see compress_stream)."""
    out = io.BytesIO()
    compress_stream(io.BytesIO(_bytes(data)), out, model=model, device=device, streams=streams,
                    segment_steps=segment_steps, dynamic_eval=dynamic_eval)
    return out.getvalue()


def decompress(data: bytes, *, model: Optional[str] = None, device: str = "auto") -> bytes:
    """Decodes a complete .nnc file. Raises an NNCError subclass for anything that does not
    decode exactly."""
    sink = io.BytesIO()
    decompress_stream(io.BytesIO(_bytes(data)), sink, model=model, device=device)
    return sink.getvalue()


def cross_entropy(data: bytes, *, model: Optional[str] = None, device: str = "auto",
                  streams: Optional[int] = None, dynamic_eval=None) -> float:
    """The model's ideal code length in bits per byte under the quantised tables that coding
    would use (the container and coder overhead come on top)."""
    data = _bytes(data)
    if not data:
        return 0.0
    pred = models.build_predictor(model, device=device, dynamic_eval=dynamic_eval)
    stats = engine.measure(io.BytesIO(data), len(data), pred, _stream_count(pred, len(data), streams))
    return stats.ideal_bits / len(data)


@dataclass
class FileInfo:
    header: Header
    compressed_bytes: int
    n_segments: int

    @property
    def bits_per_byte(self) -> float:
        n = self.header.original_length
        return 8.0 * self.compressed_bytes / n if n else 0.0


@_only_nnc_errors
def info(src: BinaryIO) -> FileInfo:
    """Reads the header and walks every record (checking record CRCs, not decoding)."""
    start = src.tell()
    header = read_header(src)
    n_seg = 0
    for _, _, active in engine.segments(header.stream_lengths(), header.segment_steps):
        rec = container.read_record(src, expected_symbols=int(active.sum()))
        if not isinstance(rec, container.SegmentRecord):
            raise FormatError("corrupt .nnc data (end record before the last segment)")
        n_seg += 1
    rec = container.read_record(src)
    if not isinstance(rec, container.EndRecord) or rec.n_segments != n_seg:
        raise FormatError("corrupt .nnc data (segment count mismatch)")
    container.expect_eof(src)
    return FileInfo(header, src.tell() - start, n_seg)
