"""Python API: one-shot functions on bytes, and stream variants on binary files that the CLI uses.

    >>> import nncompress
    >>> blob = nncompress.compress(b"hello hello hello", model="ctx1")
    >>> nncompress.decompress(blob)
    b'hello hello hello'
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import BinaryIO, Optional

from . import container, engine, models
from .container import Header
from .engine import Progress, RunStats
from .errors import FormatError
from .predictors.base import stream_limits


def _stream_count(pred, n: int, streams: Optional[int]) -> int:
    if streams is not None:
        return engine.fit_streams(n, streams)
    return engine.choose_streams(n, *stream_limits(pred))


def _length(f: BinaryIO) -> int:
    pos = f.tell()
    end = f.seek(0, os.SEEK_END)
    f.seek(pos)
    return end - pos


def compress_stream(src: BinaryIO, dst: BinaryIO, *, model: Optional[str] = None,
                    device: str = "auto", streams: Optional[int] = None,
                    segment_steps: Optional[int] = None, progress: Progress = None,
                    dynamic_eval=None) -> RunStats:
    """Compresses the whole seekable binary file `src` (from offset 0) into `dst`.

    `dynamic_eval`: None (on when the FS-LSTM model file carries dynamic-evaluation statistics,
    as the shipped default does), False (static model), True (the model's tuned settings) or a
    dict of overrides {"segment": steps, "lr": float, "decay": float, "eps": float}. The settings
    used are recorded in the header; decoding needs nothing but the file and the model."""
    src.seek(0)
    n = _length(src)
    pred = models.build_predictor(model, device=device, dynamic_eval=dynamic_eval)
    s = _stream_count(pred, n, streams)
    return engine.encode(src, n, dst, pred, s, segment_steps, progress)


def read_header(src: BinaryIO) -> Header:
    """Reads and checks a .nnc header from `src` (raises FormatError for anything else)."""
    return container.read_header(src)


def predictor_for(header: Header, *, model: Optional[str] = None, device: str = "auto"):
    """The predictor that decodes `header`'s file; raises ModelMismatchError (naming the model)
    before anything is decoded when it is not available. `model` names extra model files or
    folders ("+"-separated) to look in."""
    extra = []
    for part in (model.split(models.ENSEMBLE_SEP) if model else []):
        if part in models.BUILTIN or part in models.STAGES:
            continue
        extra.append(part if os.path.exists(part) else str(models.resolve(part).path))
    return models.predictor_for_header(header.predictor_name, header.model_sha256,
                                       header.settings, extra, device)


def decompress_stream(src: BinaryIO, sink: BinaryIO, *, model: Optional[str] = None,
                      device: str = "auto", progress: Progress = None,
                      header: Optional[Header] = None, predictor=None) -> RunStats:
    """Decodes the .nnc data in `src` into the seekable binary file `sink` (written at offsets
    0..N-1). Every check passes before this returns; if it raises, discard the sink."""
    if header is None:
        header = container.read_header(src)
    if predictor is None:
        predictor = predictor_for(header, model=model, device=device)
    return engine.decode_body(src, header, sink, predictor, progress)


def compress(data: bytes, *, model: Optional[str] = None, device: str = "auto",
             streams: Optional[int] = None, segment_steps: Optional[int] = None,
             dynamic_eval=None) -> bytes:
    """Compresses `data` into a complete .nnc file (`dynamic_eval`: see compress_stream)."""
    out = io.BytesIO()
    compress_stream(io.BytesIO(bytes(data)), out, model=model, device=device, streams=streams,
                    segment_steps=segment_steps, dynamic_eval=dynamic_eval)
    return out.getvalue()


def decompress(data: bytes, *, model: Optional[str] = None, device: str = "auto") -> bytes:
    """Decodes a complete .nnc file. Raises an NNCError subclass for anything that does not
    decode exactly."""
    sink = io.BytesIO()
    decompress_stream(io.BytesIO(bytes(data)), sink, model=model, device=device)
    return sink.getvalue()


def cross_entropy(data: bytes, *, model: Optional[str] = None, device: str = "auto",
                  streams: Optional[int] = None, dynamic_eval=None) -> float:
    """The model's ideal code length in bits per byte under the quantised tables that coding
    would use (the container and coder overhead come on top)."""
    data = bytes(data)
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


def info(src: BinaryIO) -> FileInfo:
    """Reads the header and walks every record (checking record CRCs, not decoding)."""
    start = src.tell()
    header = container.read_header(src)
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
