"""The engine: one lockstep loop that compression, decompression and measurement all run.

The input is cut into S contiguous streams (container.stream_lengths). At step t every active
stream codes one byte: the predictor's weights for all of them are quantised in one call
(coding.quantize) and coded in one coder call, then the predictor is stepped with the bytes just
coded. The encoder may do its quantising and coding in a second process (coder_process.py) while
the predictor runs; the bytes are the same either way. Steps are grouped into segments; each
segment is an independent range-coder message. The only difference between the directions is
where the bytes of a step come from (the input, or the decoder), which `_Side` objects supply; the
predictor calls are identical by construction.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable, Optional

import numpy as np

from ..format import coding, container
from ..format.container import Header
from ..errors import ChecksumError, FormatError
from ..predictors.base import DEFAULT_MAX_STREAMS, DEFAULT_MIN_STREAM_LEN, Predictor

Progress = Optional[Callable[[int], None]]

# Rows the encoder hands constriction per call (tables are built step by step but coded in batches).
_ENCODE_BATCH_ROWS = 1 << 11
# Progress is reported every this many steps.
_PROGRESS_STEPS = 4096
# Aim for about this many symbols per segment.
_SEGMENT_SYMBOLS = 1 << 20
# Inputs from this size on are coded in a second process when the machine has 2 or more cores.
CODER_PROCESS_MIN_BYTES = 1 << 20


def choose_streams(n: int, min_stream_len: int = DEFAULT_MIN_STREAM_LEN,
                   max_streams: int = DEFAULT_MAX_STREAMS) -> int:
    """Stream count for an input of n bytes: one stream for short inputs, then one more per
    min_stream_len bytes, at most max_streams; adjusted so that no stream is empty."""
    return fit_streams(n, min(max_streams, n // max(1, min_stream_len)))


def fit_streams(n: int, wanted: int) -> int:
    """The stream count nearest below `wanted` (at least 1) that leaves no stream empty."""
    if n == 0:
        return 1
    s = max(1, min(wanted, n))
    span = -(-n // s)
    return -(-n // span)


def choose_segment_steps(n_streams: int) -> int:
    return max(1, _SEGMENT_SYMBOLS // n_streams)


def active_counts(lengths: list[int], t0: int, t1: int) -> np.ndarray:
    """Number of active streams at each step in [t0, t1) (streams longer than t)."""
    lens = np.asarray(lengths)
    steps = np.arange(t0, t1)
    return (lens[None, :] > steps[:, None]).sum(axis=1)


def segments(lengths: list[int], segment_steps: int):
    """The segments of a file: (t0, t1, active streams per step) in order."""
    for t0 in range(0, lengths[0], segment_steps):
        t1 = min(lengths[0], t0 + segment_steps)
        yield t0, t1, active_counts(lengths, t0, t1)


class _Side:
    """Supplies the bytes of each step: from the input (encoder) or from the decoder."""

    bits = None     # a predictor that codes each step's bytes itself (codes_bits), or None

    def begin(self, seg: int, t0: int, t1: int, n_symbols: int) -> None: ...

    def code(self, t: int, weights: np.ndarray) -> np.ndarray:
        """Codes step t given the predictor's weights for its active streams (the side
        quantises them) and returns the step's symbols."""

    def code_segment(self, predictor, counts: list[int]) -> None:
        """Codes the whole segment (counts[s] bytes of each active stream s) with a predictor
        that codes its own segments."""

    def end(self, seg: int) -> None: ...


@dataclass
class RunStats:
    original_bytes: int = 0
    compressed_bytes: int = 0
    n_streams: int = 1
    n_segments: int = 0
    seconds: float = 0.0
    ideal_bits: float = 0.0

    @property
    def bits_per_byte(self) -> float:
        return 8.0 * self.compressed_bytes / self.original_bytes if self.original_bytes else 0.0


def run(predictor: Predictor, lengths: list[int], segment_steps: int, side: _Side,
        progress: Progress = None) -> int:
    """The lockstep loop. Returns the number of segments."""
    n_streams = len(lengths)
    total_steps = lengths[0]
    if total_steps == 0:
        return 0
    if codes_segments(predictor):
        return _run_segments(predictor, lengths, segment_steps, side, progress)
    if codes_bits(predictor):
        predictor.layout(lengths)
        side.bits = predictor
    weights = predictor.start(n_streams)
    n_seg = 0
    for t0, t1, active in segments(lengths, segment_steps):
        side.begin(n_seg, t0, t1, int(active.sum()))
        for t in range(t0, t1):
            a = int(active[t - t0])
            symbols = side.code(t, weights[:a])
            if t + 1 < total_steps:
                weights = predictor.step(symbols)
            if progress is not None and (t + 1 - t0) % _PROGRESS_STEPS == 0:
                progress(int(active[t + 1 - t0 - _PROGRESS_STEPS: t + 1 - t0].sum()))
        side.end(n_seg)
        n_seg += 1
        if progress is not None and (t1 - t0) % _PROGRESS_STEPS:
            progress(int(active[(t1 - t0) - (t1 - t0) % _PROGRESS_STEPS:].sum()))
    return n_seg


def codes_segments(predictor) -> bool:
    """Whether the predictor codes whole segments itself (predictors/bcm.py) instead of handing
    the engine weights per step."""
    return bool(getattr(predictor, "CODES_SEGMENTS", False))


def codes_bits(predictor) -> bool:
    """Whether the predictor codes each step's bytes itself (predictors/bmix.py): the engine
    steps it as usual, and the sides hand it the weights of each step to code with instead of
    quantising them."""
    return bool(getattr(predictor, "CODES_BITS", False))


def _run_segments(predictor, lengths: list[int], segment_steps: int, side: _Side,
                  progress: Progress) -> int:
    """The loop for a predictor that codes its own segments: the same segments and records,
    each segment one call with the segment's bytes of every stream."""
    predictor.start(len(lengths))
    n_seg = 0
    for t0, t1, active in segments(lengths, segment_steps):
        counts = [max(0, min(ln, t1) - t0) for ln in lengths]
        counts = [k for k in counts if k]
        side.begin(n_seg, t0, t1, sum(counts))
        side.code_segment(predictor, counts)
        side.end(n_seg)
        n_seg += 1
        if progress is not None:
            progress(sum(counts))
    return n_seg


def _segment_crc(block: np.ndarray, lengths: list[int], t0: int, t1: int) -> int:
    crc = 0
    for s, ln in enumerate(lengths):
        k = max(0, min(ln, t1) - t0)
        if k:
            crc = zlib.crc32(block[s, :k].tobytes(), crc)
    return crc


class _EncodeSide(_Side):
    def __init__(self, src: BinaryIO, lengths: list[int], out: BinaryIO, measure_only: bool = False,
                 coder=None):
        self.src, self.lengths, self.out, self.measure_only = src, lengths, out, measure_only
        self.coder = coder  # a coder_process.CoderProcess, or None to code here
        self.span = lengths[0]
        self.written = 0
        self.ideal_bits = 0.0

    def begin(self, seg, t0, t1, n_symbols):
        self.t0, self.t1, self.n_symbols = t0, t1, n_symbols
        self.block = np.zeros((len(self.lengths), t1 - t0), dtype=np.uint8)
        for s, ln in enumerate(self.lengths):
            k = max(0, min(ln, t1) - t0)
            if k:
                self.src.seek(s * self.span + t0)
                b = self.src.read(k)
                if len(b) != k:
                    raise OSError("input changed size while being compressed")
                self.block[s, :k] = np.frombuffer(b, dtype=np.uint8)
        if self.coder is not None:
            self.coder.begin()
        if self.bits is not None:
            self.bits.begin_segment()
        self.enc = None if (self.measure_only or self.coder or self.bits) else \
            coding.SegmentEncoder()
        self.pend_sym: list[np.ndarray] = []
        self.pend_freq: list[np.ndarray] = []
        self.pend_rows = 0
        self.seg_words = None

    def _flush(self):
        if not self.pend_sym:
            return
        sym = np.concatenate(self.pend_sym)
        freq = np.concatenate(self.pend_freq)
        if self.enc is not None:
            self.enc.encode(sym, freq)
        self.ideal_bits += coding.code_length_bits(freq, sym)
        self.pend_sym, self.pend_freq, self.pend_rows = [], [], 0

    def code(self, t, weights):
        symbols = self.block[: len(weights), t - self.t0].astype(np.int64)
        if self.bits is not None:
            self.bits.encode_step(t, symbols, weights)
            return symbols
        if self.coder is not None:
            self.coder.code(symbols, weights)
            return symbols
        freq = coding.quantize(weights)
        self.pend_sym.append(symbols)
        self.pend_freq.append(freq)
        self.pend_rows += len(freq)
        if self.pend_rows >= _ENCODE_BATCH_ROWS:
            self._flush()
        return symbols

    def code_segment(self, predictor, counts):
        rows = [self.block[s, :k] for s, k in enumerate(counts)]
        self.seg_words = predictor.encode_segment(rows)
        self.ideal_bits += 8 * len(self.seg_words)

    def end(self, seg):
        if self.bits is not None:
            self.seg_words = self.bits.end_segment()
            self.ideal_bits += 8 * len(self.seg_words)
        if self.seg_words is not None:
            if self.measure_only:
                return
            words = self.seg_words
        elif self.coder is not None:
            words, bits = self.coder.end()
            self.ideal_bits += bits
        else:
            self._flush()
            if self.enc is None:
                return
            words = self.enc.finish().astype("<u4").tobytes()
        rec = container.pack_segment(self.n_symbols, words,
                                     _segment_crc(self.block, self.lengths, self.t0, self.t1))
        self.out.write(rec)
        self.written += len(rec)


class _DecodeSide(_Side):
    def __init__(self, src: BinaryIO, lengths: list[int], sink: BinaryIO):
        self.src, self.lengths, self.sink = src, lengths, sink
        self.span = lengths[0]

    def begin(self, seg, t0, t1, n_symbols):
        rec = container.read_record(self.src, expected_symbols=n_symbols)
        if not isinstance(rec, container.SegmentRecord):
            raise FormatError("corrupt .nnc data (end record before the last segment)")
        self.rec, self.t0, self.t1 = rec, t0, t1
        if self.bits is not None:
            self.bits.begin_segment(rec.words)
        else:
            self.dec = coding.SegmentDecoder(np.frombuffer(rec.words, dtype="<u4"))
        self.block = np.zeros((len(self.lengths), t1 - t0), dtype=np.uint8)

    def code(self, t, weights):
        if self.bits is not None:
            symbols = self.bits.decode_step(t, weights)
            self.block[: len(symbols), t - self.t0] = symbols
            return symbols
        freq = coding.quantize(weights)
        try:
            symbols = self.dec.decode(freq)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # constriction panics derive from BaseException
            raise FormatError(f"corrupt .nnc data (range decoder failed: {e})") from None
        self.block[: len(freq), t - self.t0] = symbols
        return symbols

    def code_segment(self, predictor, counts):
        for s, row in enumerate(predictor.decode_segment(self.rec.words, counts)):
            self.block[s, :counts[s]] = row

    def end(self, seg):
        if self.bits is not None:
            self.bits.end_segment()
        if _segment_crc(self.block, self.lengths, self.t0, self.t1) != self.rec.data_crc:
            raise ChecksumError(f"decoded data of segment {seg} fails its CRC: the file is corrupt "
                                "or the predictor differs from the one that wrote it")
        for s, ln in enumerate(self.lengths):
            k = max(0, min(ln, self.t1) - self.t0)
            if k:
                self.sink.seek(s * self.span + self.t0)
                self.sink.write(self.block[s, :k].tobytes())


def use_coder_process(n: int) -> bool:
    import os
    return n >= CODER_PROCESS_MIN_BYTES and (os.cpu_count() or 1) >= 2


def encode(src: BinaryIO, n: int, out: BinaryIO, predictor: Predictor, n_streams: int,
           segment_steps: Optional[int] = None, progress: Progress = None,
           coder_process: Optional[bool] = None) -> RunStats:
    """Compresses the first n bytes of the seekable binary file `src` into `out`.
    `coder_process`: code in a second process (None: when use_coder_process(n)); the output
    is the same either way."""
    t_start = time.perf_counter()
    if not container.valid_stream_count(n, n_streams):
        raise ValueError(f"invalid stream count {n_streams} for {n} bytes")
    segment_steps = segment_steps or choose_segment_steps(n_streams)
    ident = predictor.identity
    header = Header(n, n_streams, segment_steps, ident.name, ident.model_sha256, ident.settings)
    head = container.pack_header(header)
    out.write(head)
    lengths = header.stream_lengths()
    coder = None
    if codes_segments(predictor) or codes_bits(predictor):
        coder_process = False
    if coder_process if coder_process is not None else use_coder_process(n):
        from .coder_process import CoderProcess
        coder = CoderProcess()
    try:
        side = _EncodeSide(src, lengths, out, coder=coder)
        n_seg = run(predictor, lengths, segment_steps, side, progress)
    finally:
        if coder is not None:
            coder.close()
    end = container.pack_end(n_seg, container.sha256_of(src, n))
    out.write(end)
    return RunStats(n, len(head) + side.written + len(end), n_streams, n_seg,
                    time.perf_counter() - t_start, side.ideal_bits)


def decode_body(src: BinaryIO, header: Header, sink: BinaryIO, predictor: Predictor,
                progress: Progress = None) -> RunStats:
    """Decodes the records following `header` (already read from `src`) into the seekable `sink`
    and checks every checksum. The caller must discard the sink if this raises."""
    t_start = time.perf_counter()
    lengths = header.stream_lengths()
    side = _DecodeSide(src, lengths, sink)
    n_seg = run(predictor, lengths, header.segment_steps, side, progress)
    rec = container.read_record(src)
    if not isinstance(rec, container.EndRecord):
        raise FormatError("corrupt .nnc data (more segments than the header implies)")
    if rec.n_segments != n_seg:
        raise FormatError("corrupt .nnc data (segment count mismatch)")
    container.expect_eof(src)
    sink.flush()
    if container.sha256_of(sink, header.original_length) != rec.sha256:
        raise ChecksumError("decoded data fails the SHA-256 of the original")
    return RunStats(header.original_length, 0, header.n_streams, n_seg,
                    time.perf_counter() - t_start)


def measure(src: BinaryIO, n: int, predictor: Predictor, n_streams: int,
            segment_steps: Optional[int] = None) -> RunStats:
    """Runs the encoder's loop without coding: the ideal code length of the quantised tables."""
    t_start = time.perf_counter()
    segment_steps = segment_steps or choose_segment_steps(n_streams)
    lengths = container.stream_lengths(n, n_streams)
    side = _EncodeSide(src, lengths, None, measure_only=True)
    n_seg = run(predictor, lengths, segment_steps, side)
    return RunStats(n, 0, n_streams, n_seg, time.perf_counter() - t_start, side.ideal_bits)
