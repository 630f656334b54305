"""The .nnc container: header, segment records and end record (standard library only).

All integers are little-endian and unsigned. A file is::

    Header  SegmentRecord*  EndRecord  <end of file>

Header (format version 4; versions 1 to 3 differ only in the settings field, see below)::

    offset  size  field
    0       4     magic  89 4E 4E 43  ("\\x89NNC")
    4       2     format version (4; version 1 to 3 files are still read)
    6       2     flags, reserved, must be 0
    8       8     original length in bytes (N)
    16      4     stream count S (>= 1): the input is cut into S contiguous streams coded in lockstep
    20      4     steps per segment (>= 1): each segment codes this many lockstep steps
    24      1     coder id: 1 = constriction 0.5 range coder (queue), Categorical(perfect=False),
                  32-bit words
    25      1     table precision in bits (24): every byte has an integer frequency >= 1, sum 2**24
    26      32    SHA-256 of the predictor's model file (32 zero bytes: no model file)
    58      1     predictor name length n (1..255)
    59      n     predictor name, ASCII (for example "ctx1")
    59+n    4     settings length m (at most 1 MiB)
    63+n    m     predictor settings: JSON, UTF-8, keys sorted, no spaces; every setting that
                  changes the predicted tables. Versions 2 to 4 store it compressed as a raw
                  DEFLATE stream (RFC 1951, no zlib wrapper) with a preset dictionary:
                  SETTINGS_ZDICT in version 2, SETTINGS_ZDICT_V3 (the same followed by the
                  settings of the version-3 default) in version 3, SETTINGS_ZDICT_V4 (version 3's
                  followed by the settings of the version-4 default) in version 4. The default's
                  700-byte description takes about 220 bytes in version 2 and about 10 with the
                  dictionary of its own version, which matters on small inputs; version 1 stored
                  the JSON as is.
    63+n+m  4     CRC-32 of all header bytes before it

Stream layout: with L = ceil(N / S), stream s holds original bytes [s*L, min(N, (s+1)*L)); S is
always chosen so that every stream is non-empty (only the last may be shorter). At lockstep step t
the active streams are those longer than t; they are always the first ones.

SegmentRecord, one per segment, segments in order (segment i covers steps
[i*steps_per_segment, (i+1)*steps_per_segment) of every stream)::

    0       1     tag 0x53 ("S")
    1       8     symbol count: the bytes this segment codes, over all streams
    9       4     word count W
    13      4     CRC-32 of the W words as stored
    17      4     CRC-32 of the original bytes of the segment, stream by stream (stream 0's bytes of
                  the segment, then stream 1's, ...)
    21      4*W   the range coder's words, each u32

Each segment is an independent range-coder message (a new encoder per segment), so memory stays
bounded whatever N is. The predictor's state carries over from one segment to the next.

EndRecord::

    0       1     tag 0x45 ("E")
    1       4     segment count
    5       32    SHA-256 of the whole original data
    37      4     CRC-32 of the 37 bytes before it

An empty input has S = 1, no segment records and an end record.
"""
from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Union

from . import limits
from ..errors import FormatError, TruncatedError

MAGIC = b"\x89NNC"
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
# Version 5 is a sequence of frames around complete bodies of these versions (frames.py); a body
# itself never has version 5.
FRAMED_VERSION = 5
CODER_CONSTRICTION_RANGE = 1
CODER_NAMES = {CODER_CONSTRICTION_RANGE: "constriction-0.5-range-categorical-f24"}
PRECISION = 24
MAX_SETTINGS = 1 << 20

# Format constant of version 2 (never to be changed): the preset dictionary of the settings'
# DEFLATE stream, made of the settings JSON that files usually carry.
SETTINGS_ZDICT = (
    b'{"arith":"exact-v1"}{"esc":32,"esc_step":8,"hash_bits":18,"inc":1,"limit":250,"max_order":5}'
    b'{"buckets":"class4-v1","members":[{"name":"fslstm-small-v2","settings":{"arith":"exact-v1",'
    b'"dyneval":{"arith":"de-out-v1","decay":0.0,"eps":0.0001,"lr":0.001,"segment":8}},"sha256":"'
    b'"},{"name":"ctx1","settings":{"esc":32,"esc_step":8,"hash_bits":18,"inc":1,"limit":250,'
    b'"max_order":5},"sha256":"0000000000000000000000000000000000000000000000000000000000000000"}],'
    b'"share":5,"temper":1}')

# Format constant of version 3 (never to be changed): version 2's dictionary followed by the
# settings of the default when version 3 was introduced (DEFLATE prefers the nearest match, so
# what a default shares with it costs a few bytes; other settings compress as in version 2).
SETTINGS_ZDICT_V3 = SETTINGS_ZDICT + (
    b'{"arith":"match-sse-v1","hash_bits":20,"inner":{"name":"gmix","settings":{"arith":"geo-v1","'
    b'buckets":"class4-v1","lr_shift":10,"members":[{"name":"fslstm-small-v3","settings":{"arith":'
    b'"exact-v1","dyneval":{"arith":"de-full-v1","decay":0.0,"eps":0.0001,"lr":0.0003,"segment":8}'
    b'},"sha256":"ef3455b571d7a63db07a738d4694da5fe519ded2ab357f3044c6881358328a55"},{"name":"ctx2'
    b'","settings":{"esc":12,"esc_step":0,"hash_bits":19,"inc":1,"limit":250,"max_order":7},"sha25'
    b'6":"0000000000000000000000000000000000000000000000000000000000000000"}],"share":5,"temper":1'
    b'},"sha256":"1c77e839eb18624bae082633eba90224f54e5ffa12d982654ffc2204b24bf310"},"min_len":6,"'
    b'rate":7,"verify":32}')

# Format constant of version 4 (never to be changed): version 3's dictionary followed by the
# settings of the default when version 4 was introduced (fslstm-small-v3+ctx2+cm).
SETTINGS_ZDICT_V4 = SETTINGS_ZDICT_V3 + (
    b'{"apm_mix":3,"apm_rate":7,"arith":"cm-v1","hash_bits":18,"inner":{"name":"gmix","settings":{"ari'
    b'th":"geo-v1","buckets":"class4-v1","lr_shift":10,"members":[{"name":"fslstm-small-v3","settings"'
    b':{"arith":"exact-v1","dyneval":{"arith":"de-full-v1","decay":0.0,"eps":0.0001,"lr":0.0003,"segme'
    b'nt":8}},"sha256":"ef3455b571d7a63db07a738d4694da5fe519ded2ab357f3044c6881358328a55"},{"name":"ct'
    b'x2","settings":{"esc":12,"esc_step":0,"hash_bits":19,"inc":1,"limit":250,"max_order":7},"sha256"'
    b':"0000000000000000000000000000000000000000000000000000000000000000"}],"share":5,"temper":1},"sha'
    b'256":"1c77e839eb18624bae082633eba90224f54e5ffa12d982654ffc2204b24bf310"},"limit":127,"lr":2,"lr_'
    b'shift":13,"match_bits":20,"match_min":6,"nibbles":4,"verify":32}')
ZDICTS = {2: SETTINGS_ZDICT, 3: SETTINGS_ZDICT_V3, 4: SETTINGS_ZDICT_V4}

_FIXED = struct.Struct("<4sHHQIIBB32sB")  # magic .. predictor name length
_SEG = struct.Struct("<cQIII")
_END = struct.Struct("<cI32s")
TAG_SEGMENT = b"S"
TAG_END = b"E"


@dataclass(frozen=True)
class Header:
    original_length: int
    n_streams: int
    segment_steps: int
    predictor_name: str
    model_sha256: bytes = bytes(32)
    settings: dict = field(default_factory=dict)
    coder: int = CODER_CONSTRICTION_RANGE
    precision: int = PRECISION
    version: int = FORMAT_VERSION

    def stream_lengths(self) -> list[int]:
        return stream_lengths(self.original_length, self.n_streams)


@dataclass(frozen=True)
class SegmentRecord:
    n_symbols: int
    words: bytes
    words_crc: int
    data_crc: int


@dataclass(frozen=True)
class EndRecord:
    n_segments: int
    sha256: bytes


def stream_lengths(n: int, n_streams: int) -> list[int]:
    """Lengths of the S contiguous streams of an input of n bytes (see the module docstring)."""
    if n == 0:
        return [0]
    span = -(-n // n_streams)
    return [min(span, n - s * span) for s in range(n_streams)]


def valid_stream_count(n: int, n_streams: int) -> bool:
    if n == 0:
        return n_streams == 1
    return 1 <= n_streams <= n and (n_streams - 1) * -(-n // n_streams) < n


def settings_bytes(settings: dict) -> bytes:
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _deflate(blob: bytes, version: int = FORMAT_VERSION) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, ZDICTS[version])
    return c.compress(blob) + c.flush()


def _inflate(blob: bytes, version: int = FORMAT_VERSION) -> bytes:
    d = zlib.decompressobj(-15, ZDICTS[version])
    try:
        out = d.decompress(blob, MAX_SETTINGS + 1)
    except zlib.error as e:
        raise FormatError(f"corrupt .nnc header (settings: {e})") from None
    if len(out) > MAX_SETTINGS or d.unconsumed_tail or d.unused_data or not d.eof:
        raise FormatError("corrupt .nnc header (settings stream)")
    return out


def pack_header(h: Header) -> bytes:
    name = h.predictor_name.encode("ascii")
    if not 1 <= len(name) <= 255:
        raise ValueError("predictor name must be 1..255 ASCII characters")
    if len(h.model_sha256) != 32:
        raise ValueError("model_sha256 must be 32 bytes")
    if not valid_stream_count(h.original_length, h.n_streams):
        raise ValueError(f"invalid stream count {h.n_streams} for {h.original_length} bytes")
    if h.segment_steps < 1:
        raise ValueError("segment_steps must be >= 1")
    if h.version not in READABLE_VERSIONS:
        raise ValueError(f"cannot write format version {h.version}")
    blob = settings_bytes(h.settings)
    if h.version >= 2:
        blob = _deflate(blob, h.version)
    body = (
        _FIXED.pack(MAGIC, h.version, 0, h.original_length, h.n_streams, h.segment_steps,
                    h.coder, h.precision, h.model_sha256, len(name))
        + name + struct.pack("<I", len(blob)) + blob
    )
    return body + struct.pack("<I", zlib.crc32(body))


_CHUNK = 1 << 20


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    """n bytes of f; longer reads go in chunks, so memory follows the data actually there."""
    if n <= _CHUNK:
        data = f.read(n)
    else:
        parts, left = [], n
        while left:
            b = f.read(min(_CHUNK, left))
            if not b:
                break
            parts.append(b)
            left -= len(b)
        data = b"".join(parts)
    if data is None or len(data) < n:
        raise TruncatedError(f"truncated .nnc data: {what} is incomplete")
    return data


def read_header(f: BinaryIO) -> Header:
    """Reads and validates a header. Raises FormatError (TruncatedError when data ends early)."""
    head = f.read(_FIXED.size)
    if len(head) < 4 or head[:4] != MAGIC:
        raise FormatError("not an .nnc file (bad magic)")
    if len(head) < _FIXED.size:
        raise TruncatedError("truncated .nnc data: header is incomplete")
    (_, version, flags, length, n_streams, seg_steps, coder, precision, sha, name_len) = \
        _FIXED.unpack(head)
    if version == FRAMED_VERSION:
        raise FormatError("a framed .nnc file (format version 5) where a single body was expected: "
                          "read it frame by frame (frames.py; nncompress.decompress, "
                          "nncompress.parallel or the CLI do)")
    if version not in READABLE_VERSIONS:
        raise FormatError(f"unsupported .nnc format version {version} (this nncompress reads "
                          f"versions {', '.join(map(str, READABLE_VERSIONS))} and "
                          f"{FRAMED_VERSION}, framed); use the nncompress release that wrote it")
    name = _read_exact(f, name_len, "header")
    (m,) = struct.unpack("<I", _read_exact(f, 4, "header"))
    if m > MAX_SETTINGS:
        raise FormatError("corrupt .nnc header (settings length out of range)")
    blob = _read_exact(f, m, "header")
    (crc,) = struct.unpack("<I", _read_exact(f, 4, "header"))
    if zlib.crc32(head + name + struct.pack("<I", m) + blob) != crc:
        raise FormatError("corrupt .nnc header (CRC mismatch)")
    # The CRC passed, so anything odd below is a writer bug or a deliberate forgery.
    if flags != 0:
        raise FormatError(f"unsupported .nnc header flags {flags:#x}")
    if coder not in CODER_NAMES:
        raise FormatError(f"unsupported coder id {coder} in .nnc header")
    if precision != PRECISION:
        raise FormatError(f"unsupported table precision {precision} in .nnc header")
    if not valid_stream_count(length, n_streams) or seg_steps < 1 or name_len < 1:
        raise FormatError("corrupt .nnc header (inconsistent stream layout)")
    problem = limits.layout_problem(length, n_streams, seg_steps)
    if problem:
        raise FormatError(f"unsupported .nnc header (stream layout beyond the limits: {problem})")
    pname = name.decode("latin-1")
    if not limits.plain_name(pname):
        raise FormatError(f"corrupt .nnc header (predictor name {pname!r} is not a plain name)")
    if version >= 2:
        blob = _inflate(blob, version)
    try:
        settings = limits.loads_settings(blob)
    except (UnicodeDecodeError, ValueError) as e:
        raise FormatError(f"corrupt .nnc header (settings: {e})") from None
    return Header(length, n_streams, seg_steps, pname, sha, settings, coder, precision, version)


def pack_segment(n_symbols: int, words: bytes, data_crc: int) -> bytes:
    if len(words) % 4:
        raise ValueError("words must be a whole number of u32")
    return _SEG.pack(TAG_SEGMENT, n_symbols, len(words) // 4, zlib.crc32(words), data_crc) + words


def pack_end(n_segments: int, sha256: bytes) -> bytes:
    body = _END.pack(TAG_END, n_segments, sha256)
    return body + struct.pack("<I", zlib.crc32(body))


def max_words(n_symbols: int) -> int:
    """An upper bound on the words a segment of n symbols can take (each symbol costs at most
    24 bits with 24-bit tables; the coder adds at most a few words)."""
    return (n_symbols * PRECISION) // 32 + 4


def read_record(f: BinaryIO, expected_symbols: int | None = None) -> Union[SegmentRecord, EndRecord]:
    """Reads the next record. For a segment, checks the word count against the symbol count
    (before reading the words) and the CRC of the words."""
    tag = _read_exact(f, 1, "record")
    if tag == TAG_SEGMENT:
        rest = _read_exact(f, _SEG.size - 1, "segment record")
        _, n_symbols, n_words, words_crc, data_crc = _SEG.unpack(tag + rest)
        if expected_symbols is not None and n_symbols != expected_symbols:
            raise FormatError("corrupt .nnc data (segment symbol count does not match the header)")
        if not limits.min_words(n_symbols) <= n_words <= max_words(n_symbols):
            raise FormatError("corrupt .nnc data (segment word count out of range)")
        words = _read_exact(f, 4 * n_words, "segment")
        if zlib.crc32(words) != words_crc:
            raise FormatError("corrupt .nnc data (segment CRC mismatch)")
        return SegmentRecord(n_symbols, words, words_crc, data_crc)
    if tag == TAG_END:
        rest = _read_exact(f, _END.size - 1 + 4, "end record")
        body, (crc,) = tag + rest[:-4], struct.unpack("<I", rest[-4:])
        if zlib.crc32(body) != crc:
            raise FormatError("corrupt .nnc data (end record CRC mismatch)")
        _, n_segments, sha = _END.unpack(body)
        return EndRecord(n_segments, sha)
    raise FormatError("corrupt .nnc data (unknown record tag)")


def check_body_size(h: Header, body_bytes: int) -> None:
    """Refuses a header whose records cannot fit in the `body_bytes` that follow it (a forged
    original length or stream layout), before any predictor is built."""
    problem = limits.body_problem(h.original_length, h.n_streams, h.segment_steps, body_bytes)
    if problem:
        raise TruncatedError(f"truncated or forged .nnc data: {problem}")


def expect_eof(f: BinaryIO) -> None:
    if f.read(1):
        raise FormatError("corrupt .nnc data (trailing bytes after the end record)")


def sha256_of(f: BinaryIO, n: int, chunk: int = 1 << 20) -> bytes:
    """SHA-256 of the first n bytes of a seekable file, read from offset 0."""
    h = hashlib.sha256()
    f.seek(0)
    left = n
    while left:
        b = f.read(min(chunk, left))
        if not b:
            raise TruncatedError("input ended early while hashing")
        h.update(b)
        left -= len(b)
    return h.digest()
