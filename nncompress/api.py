"""Python API: one-shot functions on bytes, and stream variants on binary files that the CLI uses.

    >>> import nncompress
    >>> blob = nncompress.compress(b"hello hello hello", model="ctx1")
    >>> nncompress.decompress(blob)
    b'hello hello hello'
"""
from __future__ import annotations

import builtins
import copy
import io
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Optional

from . import engine, levels
from .format import container, frames, limits
from .format.container import Header
from .engine import Progress, RunStats
from .errors import FormatError, NNCError
from .predictors import registry
from .predictors import spec as specs


def _stream_count(pred, n: int, streams: Optional[int]) -> int:
    """The stream count for n bytes: `streams` (fitted to n) or the predictor's choice; raises
    ValueError when it is more than the predictor or the format allows."""
    if streams is not None:
        if isinstance(streams, bool) or not isinstance(streams, int) or streams < 1:
            raise ValueError(f"streams must be a positive integer, not {streams!r}")
        s = engine.fit_streams(n, min(streams, limits.MAX_STREAMS + 1))
    lim = registry.stream_limits(pred)
    if streams is None:
        s = engine.choose_streams(n, lim.min_stream_len, lim.max_streams)
    cap = lim.cap
    if s > cap:
        why = (f" by {pred.identity.name}, which codes one stream in its natural order"
               if engine.codes_segments(pred) else
               " with full dynamic evaluation" if cap < limits.MAX_STREAMS else "")
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


def compress_stream(src: BinaryIO, dst: BinaryIO, *, level: Optional[int] = None,
                    model: Optional[str] = None, device: str = "auto",
                    streams: Optional[int] = None, segment_steps: Optional[int] = None,
                    progress: Progress = None, dynamic_eval=None, predictor=None,
                    coder_process: Optional[bool] = None) -> RunStats:
    """Compresses the whole seekable binary file `src` (from offset 0) into `dst`.

    `level` 1..9 (default 6, nncompress.levels) or `model`, a predictor spec, chooses the
    predictor; `dynamic_eval` overrides its dynamic evaluation: None (the level's; for a model,
    on when the FS-LSTM model file carries dynamic-evaluation statistics), False (static model),
    True (the model's tuned settings) or a dict of overrides {"scope": "out"|"full", "segment":
    steps, "lr": float, "decay": float, "eps": float}. The settings used are recorded in the
    header; decoding needs nothing but the file and the model. `predictor`: an already built
    predictor in its initial state, instead of a level or model (Compressor passes one).
    `coder_process`: range-code in a second process (None: for inputs of 1 MiB or more on a
    machine with 2 or more cores; False where other processes already fill the cores); the bytes
    are the same either way.
    Raises ValueError for a stream count or segment length the predictor or format cannot take."""
    if predictor is None:
        return Compressor(level, model=model, device=device, streams=streams,
                          dynamic_eval=dynamic_eval).compress_stream(
            src, dst, progress=progress, segment_steps=segment_steps,
            coder_process=coder_process)
    registry.check_predictor(predictor)
    src.seek(0)
    n = _length(src)
    s = _stream_count(predictor, n, streams)
    if segment_steps is not None:
        if isinstance(segment_steps, bool) or not isinstance(segment_steps, int) \
                or not 1 <= segment_steps < 1 << 32:
            raise ValueError(f"segment_steps must be in 1..2**32-1, not {segment_steps!r}")
        problem = limits.layout_problem(n, s, segment_steps)
        if problem:
            raise ValueError(f"segment_steps {segment_steps}: {problem}")
    return engine.encode(src, n, dst, predictor, s, segment_steps, progress,
                         coder_process=coder_process)


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
    for part in (specs.parse_spec(model).members if model else []):
        if os.path.exists(part):
            extra.append(part)
            continue
        ref = specs.resolve(part)
        if not ref.builtin:
            extra.append(str(ref.path))
    node = registry.check_header(header.predictor_name, header.model_sha256, header.settings)
    cap = node.stream_limits().cap
    if header.n_streams > cap:
        raise FormatError(f"unsupported .nnc header ({header.n_streams} streams; this predictor "
                          f"codes at most {cap})")
    return registry.rebuild(node, extra, device)


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


def compress(data, level: Optional[int] = None, *, model: Optional[str] = None,
             device: str = "auto", streams: Optional[int] = None,
             segment_steps: Optional[int] = None, dynamic_eval=None) -> bytes:
    """`data` (bytes-like) as a complete .nnc file, at `level` 1..9 (default 6) or with `model`
    (see compress_stream). For many inputs, a Compressor builds the predictor only once."""
    data = _bytes(data)
    return Compressor(level, model=model, device=device, streams=streams,
                      dynamic_eval=dynamic_eval).compress(data, segment_steps=segment_steps)


def decompress(data, *, model: Optional[str] = None, device: str = "auto") -> bytes:
    """Decodes a complete .nnc file (bytes-like). Raises an NNCError subclass for anything that
    does not decode exactly. For many files, a Decompressor reuses their predictors."""
    return Decompressor(model=model, device=device).decompress(data)


def cross_entropy(data: bytes, *, model: Optional[str] = None, device: str = "auto",
                  streams: Optional[int] = None, dynamic_eval=None) -> float:
    """The model's ideal code length in bits per byte under the quantised tables that coding
    would use (the container and coder overhead come on top)."""
    data = _bytes(data)
    if not data:
        return 0.0
    pred = specs.build_predictor(model, device=device, dynamic_eval=dynamic_eval)
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


# ---------------------------------------------------------------------------------------------
# reusable objects (the one-shot functions above are conveniences over these)

def _preset(level, model, dynamic_eval):
    """(predictors.spec.Spec, levels.Level or None) for a Compressor's arguments."""
    if model is not None and level is not None:
        raise ValueError("give a level or a model, not both")
    if model is not None:
        return specs.parse_spec(model, dynamic_eval), None
    lv = levels.get(levels.DEFAULT_LEVEL if level is None else level)
    return specs.parse_spec(lv.spec, dynamic_eval), lv


def _fresh(template):
    """A predictor in its initial state: coding changes a predictor (its tables, and with dynamic
    evaluation its weights), so every file starts from a copy of the one built and loaded once."""
    return copy.deepcopy(template)


class Compressor:
    """Compresses with one predictor, built (model file read and checked) once.

        c = nncompress.Compressor(level=1)
        blob = c.compress(data)
        c.compress_stream(src, dst)          # src: a seekable binary file

    `level`: 1 (fastest) to 9 (smallest), default 6 (nncompress.levels); or `model`: a predictor
    spec ("ctx1", "fslstm-medium-i8-v1+ctx2+cm", a model file). `streams` fixes the stream count;
    `dynamic_eval` overrides the FS-LSTM's (see compress_stream). Every file is independent and
    decodes with Decompressor, decompress() or the CLI."""

    def __init__(self, level: Optional[int] = None, *, model: Optional[str] = None,
                 device: str = "auto", streams: Optional[int] = None, dynamic_eval=None):
        spec, self.level = _preset(level, model, dynamic_eval)
        self.streams = streams
        self._template = specs.build_predictor(spec, device=device)

    @property
    def identity(self):
        """What the header of every file this Compressor writes records about its predictor
        (name, model SHA-256, settings)."""
        return self._template.identity

    def stream_count(self, n: int) -> int:
        """The number of streams an input of n bytes is coded in (ValueError when the
        predictor or the format cannot take the `streams` asked for)."""
        s = self.streams
        if s is None and self.level is not None and self.level.stream_bytes is not None:
            lim = registry.stream_limits(self._template)
            s = levels.streams_for(self.level, n, lim.min_stream_len, lim.max_streams)
        return _stream_count(self._template, n, s)

    def compress_stream(self, src: BinaryIO, dst: BinaryIO, *, progress: Progress = None,
                        segment_steps: Optional[int] = None,
                        coder_process: Optional[bool] = None) -> RunStats:
        """Compresses the whole seekable binary file `src` into `dst` (`coder_process`: see
        compress_stream)."""
        src.seek(0)
        return compress_stream(src, dst, streams=self.stream_count(_length(src)),
                               segment_steps=segment_steps, progress=progress,
                               predictor=_fresh(self._template), coder_process=coder_process)

    def compress(self, data, *, segment_steps: Optional[int] = None,
                 coder_process: Optional[bool] = None) -> bytes:
        """`data` (bytes-like) as a complete .nnc file (a single version-4 body; the framed
        version 5 is written by nncompress.parallel and the CLI)."""
        out = io.BytesIO()
        self.compress_stream(io.BytesIO(_bytes(data)), out, segment_steps=segment_steps,
                             coder_process=coder_process)
        return out.getvalue()


class Decompressor:
    """Decodes .nnc files, building each file's predictor once and reusing it for later files
    made with the same one. `model` says where to look for model files (see predictor_for)."""

    def __init__(self, *, model: Optional[str] = None, device: str = "auto"):
        self.model, self.device = model, device
        self._templates: dict = {}

    def _predictor(self, header: Header):
        key = (header.predictor_name, header.model_sha256,
               container.settings_bytes(header.settings))
        if key not in self._templates:
            self._templates[key] = predictor_for(header, model=self.model, device=self.device)
        return _fresh(self._templates[key])

    def decompress_stream(self, src: BinaryIO, sink: BinaryIO, *,
                          progress: Progress = None) -> RunStats:
        """Decodes the .nnc data in `src` (any version) into the seekable binary file `sink`."""
        framed, head, src = frames.open_member(src)
        if framed:
            return self._decode_framed(src, head, sink)
        header = read_header(src)
        return decompress_stream(src, sink, header=header, predictor=self._predictor(header),
                                 progress=progress)

    @_only_nnc_errors
    def _decode_framed(self, src: BinaryIO, head: bytes, sink: BinaryIO) -> RunStats:
        """A version-5 file, frame by frame in this process (nncompress.parallel runs the frames
        in worker processes)."""
        import time
        t0 = time.perf_counter()
        reader = frames.Reader(src, head)
        check = frames.ContentCheck()
        stats = RunStats()
        for item in reader.frames():
            if isinstance(item, frames.MemberEnd):
                check.check(reader)
                continue
            if frames.is_v5(item.body[:6]):
                raise FormatError("corrupt .nnc data (a frame does not hold a version 1-4 body)")
            body = io.BytesIO(item.body)
            header = read_header(body)
            if header.original_length != item.n:
                raise FormatError("corrupt .nnc data (a frame's length does not match its record)")
            part = io.BytesIO()
            st = decompress_stream(body, part, header=header, predictor=self._predictor(header))
            data = part.getvalue()
            check.update(data)
            sink.write(data)
            stats.original_bytes += len(data)
            stats.n_segments += st.n_segments
            stats.n_streams = stats.n_streams if stats.n_segments > st.n_segments else st.n_streams
        stats.seconds = time.perf_counter() - t0
        return stats

    def decompress(self, data) -> bytes:
        """A complete .nnc file (bytes-like) decoded; NNCError subclasses for anything else."""
        sink = io.BytesIO()
        self.decompress_stream(io.BytesIO(_bytes(data)), sink)
        return sink.getvalue()


# Data written to an NNCFile stays in memory up to this size, then goes to a temporary file.
_SPOOL_BYTES = 64 << 20


class NNCFile(io.BufferedIOBase):
    """A file object over .nnc data (from nncompress.open). Writing collects the data and
    compresses it on close(), as one .nnc file; reading decodes the whole file on the first read
    and then serves it (seekable). Nothing is streamed yet: the data passes through memory or,
    above 64 MiB, a temporary file."""

    def __init__(self, file, mode: str = "rb", *, level: Optional[int] = None,
                 model: Optional[str] = None, device: str = "auto"):
        if mode not in ("r", "rb", "w", "wb", "x", "xb"):
            raise ValueError(f"invalid mode {mode!r}: 'rb', 'wb' or 'xb'")
        self._writing = mode[0] in "wx"
        if not self._writing and level is not None:
            raise ValueError("a level is only for writing")
        # build the predictor first: a bad level or model fails before the file is created
        self._compressor = Compressor(level, model=model, device=device) if self._writing else None
        self._own = isinstance(file, (str, bytes, os.PathLike))
        self._fp = builtins.open(file, mode[0] + "b") if self._own else file
        self.name = os.fspath(file) if self._own else getattr(file, "name", None)
        self._model, self._device = model, device
        self._buf = tempfile.SpooledTemporaryFile(_SPOOL_BYTES) if self._writing else None

    def _close_fp(self):
        if self._own:
            self._fp.close()

    # -- io.BufferedIOBase

    def readable(self):
        self._check_open()
        return not self._writing

    def writable(self):
        self._check_open()
        return self._writing

    def seekable(self):
        self._check_open()
        return not self._writing

    def _check_open(self):
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def write(self, data) -> int:
        self._check_open()
        if not self._writing:
            raise io.UnsupportedOperation("not writable")
        b = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
        return self._buf.write(b)

    def _decoded(self):
        self._check_open()
        if self._writing:
            raise io.UnsupportedOperation("not readable")
        if self._buf is None:
            buf = tempfile.SpooledTemporaryFile(_SPOOL_BYTES)
            try:
                Decompressor(model=self._model, device=self._device).decompress_stream(
                    self._fp, buf)
            except BaseException:
                buf.close()
                raise
            buf.seek(0)
            self._buf = buf
        return self._buf

    def read(self, size: int = -1) -> bytes:
        return self._decoded().read(-1 if size is None else size)

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, b) -> int:
        return self._decoded().readinto(b)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._decoded().seek(offset, whence)

    def tell(self) -> int:
        self._check_open()
        return self._buf.tell() if self._buf is not None else 0

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._writing:
                self._compressor.compress_stream(self._buf, self._fp)
                self._fp.flush()
        finally:
            try:
                if self._buf is not None:
                    self._buf.close()
            finally:
                self._close_fp()
                super().close()


def open(file, mode: str = "rb", *, level: Optional[int] = None, model: Optional[str] = None,
         device: str = "auto") -> NNCFile:
    """A .nnc file as a binary file object, in the manner of lzma.open and gzip.open: mode "rb"
    (decode), "wb" or "xb" (compress on close, at `level` or with `model`). `file` is a path
    (str, bytes, os.PathLike) or a binary file object."""
    return NNCFile(file, mode, level=level, model=model, device=device)
