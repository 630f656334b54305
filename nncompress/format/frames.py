"""Format version 5: a sequence of independent frames around complete version-4 bodies (standard
library only).

All integers are little-endian and unsigned. A version-5 file (a "member") is::

    Preamble  FrameRecord*  Index  Trailer

and a .nnc file may be several members one after the other (the concatenation of two files is a
file; it decodes to the concatenation of their contents, as with gzip and xz).

Preamble (20 bytes)::

    offset  size  field
    0       4     magic  89 4E 4E 43  ("\\x89NNC", as in versions 1 to 4)
    4       2     format version (5)
    6       2     flags, reserved, must be 0
    8       8     frame size F (1 .. 2**40): every frame but the last holds exactly F original bytes
    16      4     CRC-32 of the 16 bytes before it

Frame layout: frame k holds original bytes [k*F, min(N, (k+1)*F)); it depends only on the input
and on F, never on how many workers coded it. An empty input has no frames.

FrameRecord, one per frame, in order::

    0       1     tag 0x46 ("F")
    1       8     original length n of the frame (F, or 1..F for the last frame)
    9       8     body length B (108 .. 3n + 2**21)
    17      4     CRC-32 of the 17 bytes before it
    21      B     a complete body of version 1 to 4 (the writer writes version 4): header, segment
                  records and end record (container.py), coding exactly these n bytes with a
                  predictor in its initial state, so it decodes by itself; its own SHA-256 and
                  CRCs check the frame

Index::

    0       1     tag 0x49 ("I")
    1       8     frame count K
    9       16*K  per frame: original length n (8), body length B (8), as in its record
    9+16K   4     CRC-32 of the index bytes before it

Trailer (61 bytes)::

    0       1     tag 0x54 ("T")
    1       8     total original length N (the sum of the frames' n)
    9       8     frame count K
    17      8     index length in bytes (13 + 16*K), so that a seeking reader finds the index
    25      32    SHA-256 of the member's whole original content
    57      4     CRC-32 of the 57 bytes before it

After a trailer, either the data ends or another member (a version-5 preamble) follows.
"""
from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Optional

from . import container
from ..errors import ChecksumError, FormatError, TruncatedError

MAGIC = container.MAGIC
VERSION = container.FRAMED_VERSION
MAX_FRAME_SIZE = 1 << 40
MIN_BODY = 108         # the smallest body: a header with a 1-byte name and empty settings, an end
                       # record (a frame of n >= 1 bytes also has a segment record)
TAG_FRAME, TAG_INDEX, TAG_TRAILER = b"F", b"I", b"T"

_PRE = struct.Struct("<4sHHQ")
_REC = struct.Struct("<cQQ")
_TRL = struct.Struct("<cQQQ32s")
PREAMBLE_BYTES = _PRE.size + 4
RECORD_BYTES = _REC.size + 4
TRAILER_BYTES = _TRL.size + 4


def _crc(b: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(b))


def check_frame_size(frame_size) -> int:
    if isinstance(frame_size, bool) or not isinstance(frame_size, int) \
            or not 1 <= frame_size <= MAX_FRAME_SIZE:
        raise ValueError(f"frame size must be an integer from 1 to 2**40, not {frame_size!r}")
    return frame_size


def pack_preamble(frame_size: int) -> bytes:
    body = _PRE.pack(MAGIC, VERSION, 0, check_frame_size(frame_size))
    return body + _crc(body)


def pack_frame(n: int, body: bytes) -> bytes:
    """The frame record of a frame of n original bytes coded as `body`, followed by the body."""
    rec = _REC.pack(TAG_FRAME, n, len(body))
    return rec + _crc(rec) + body


def pack_index(frames: list[tuple[int, int]]) -> bytes:
    """The index of (original length, body length) per frame."""
    b = struct.pack("<cQ", TAG_INDEX, len(frames)) + b"".join(
        struct.pack("<QQ", n, blen) for n, blen in frames)
    return b + _crc(b)


def pack_trailer(total: int, n_frames: int, index_bytes: int, sha256: bytes) -> bytes:
    b = _TRL.pack(TAG_TRAILER, total, n_frames, index_bytes, sha256)
    return b + _crc(b)


def overhead_bytes(n_frames: int) -> int:
    """Bytes of a member that are not frame bodies."""
    return PREAMBLE_BYTES + n_frames * (RECORD_BYTES + 16) + 13 + TRAILER_BYTES


def max_body(n: int) -> int:
    """An upper bound on the body of a frame of n bytes (a header with at most 1 MiB of settings,
    segments of at most 24 bits per byte plus their records)."""
    return 3 * n + (1 << 21)


def frame_count(n: int, frame_size: int) -> int:
    return -(-n // frame_size)


class Writer:
    """Writes one member: call frame() for each frame in order, then finish(). `write` takes
    bytes (a file's write method)."""

    def __init__(self, write, frame_size: int):
        self.write, self.frame_size = write, check_frame_size(frame_size)
        self.frames: list[tuple[int, int]] = []
        self.sha = hashlib.sha256()
        self.total = 0
        self.written = 0
        self.last_short = False
        self._put(pack_preamble(frame_size))

    def _put(self, b: bytes) -> None:
        self.write(b)
        self.written += len(b)

    def frame(self, data: bytes, body: bytes) -> None:
        """Appends the frame of original bytes `data`, coded as `body`."""
        if not 1 <= len(data) <= self.frame_size or self.last_short:
            raise ValueError("frames must hold frame_size bytes, only the last one fewer")
        self.last_short = len(data) < self.frame_size
        self.sha.update(data)
        self.total += len(data)
        self.frames.append((len(data), len(body)))
        self._put(pack_frame(len(data), body))

    def finish(self) -> None:
        index = pack_index(self.frames)
        self._put(index)
        self._put(pack_trailer(self.total, len(self.frames), len(index), self.sha.digest()))


def _read(f: BinaryIO, n: int, what: str) -> bytes:
    parts, left = [], n
    while left:
        b = f.read(min(left, 1 << 20))
        if not b:
            break
        parts.append(b)
        left -= len(b)
    data = b"".join(parts)
    if len(data) < n:
        raise TruncatedError(f"truncated .nnc data: {what} is incomplete")
    return data


def read_preamble(f: BinaryIO, head: bytes = b"") -> int:
    """Reads a version-5 preamble (of which `head`, already read, is the start) and returns the
    frame size."""
    b = head + _read(f, PREAMBLE_BYTES - len(head), "file preamble")
    magic, version, flags, frame_size = _PRE.unpack(b[:_PRE.size])
    if magic != MAGIC:
        raise FormatError("not an .nnc file (bad magic)")
    if version != VERSION:
        raise FormatError(f"unsupported .nnc format version {version} after a version-5 member")
    if _crc(b[:_PRE.size]) != b[_PRE.size:]:
        raise FormatError("corrupt .nnc file preamble (CRC mismatch)")
    if flags != 0:
        raise FormatError(f"unsupported .nnc preamble flags {flags:#x}")
    if not 1 <= frame_size <= MAX_FRAME_SIZE:
        raise FormatError("corrupt .nnc file preamble (frame size out of range)")
    return frame_size


@dataclass(frozen=True)
class Frame:
    index: int           # 0-based position in its member
    n: int               # original length
    body: bytes          # a complete version 1..4 body


@dataclass
class MemberEnd:
    total: int
    n_frames: int


class Reader:
    """Reads the members of a version-5 file frame by frame, in bounded memory (one body at a
    time). frames() yields Frame objects of every member in order; the caller decodes each body
    and passes its original bytes to done() in the same order, which checks the member's
    SHA-256 at its trailer. Raises TruncatedError when the data ends early (nothing after the
    last complete frame is trusted) and FormatError for anything malformed."""

    def __init__(self, f: BinaryIO, head: bytes = b""):
        self.f = f
        self.frame_size = read_preamble(f, head)
        self.members = 1
        self.frames_read = 0          # over all members

    def frames(self) -> Iterator[Frame]:
        f = self.f
        while True:
            listed: list[tuple[int, int]] = []
            short = False
            while True:
                tag = _read(f, 1, "frame record")
                if tag != TAG_FRAME:
                    break
                rest = _read(f, RECORD_BYTES - 1, "frame record")
                _, n, blen = _REC.unpack(tag + rest[:_REC.size - 1])
                if _crc(tag + rest[:_REC.size - 1]) != rest[_REC.size - 1:]:
                    raise FormatError("corrupt .nnc data (frame record CRC mismatch)")
                if not 1 <= n <= self.frame_size or short or not MIN_BODY <= blen <= max_body(n):
                    raise FormatError("corrupt .nnc data (frame record out of range)")
                short = n < self.frame_size
                body = _read(f, blen, f"frame {len(listed)}")
                listed.append((n, blen))
                yield Frame(len(listed) - 1, n, body)
                self.frames_read += 1
            if tag != TAG_INDEX:
                raise FormatError("corrupt .nnc data (unknown record tag after a frame)")
            k_raw = _read(f, 8, "frame index")
            (k,) = struct.unpack("<Q", k_raw)
            if k != len(listed):
                raise FormatError("corrupt .nnc data (frame index count does not match the frames)")
            entries = _read(f, 16 * k + 4, "frame index")
            index = tag + k_raw + entries[:-4]
            if _crc(index) != entries[-4:]:
                raise FormatError("corrupt .nnc data (frame index CRC mismatch)")
            if [struct.unpack_from("<QQ", entries, 16 * i) for i in range(k)] != listed:
                raise FormatError("corrupt .nnc data (frame index does not match the frames)")
            trl = _read(f, TRAILER_BYTES, "trailer")
            if _crc(trl[:-4]) != trl[-4:] or trl[:1] != TAG_TRAILER:
                raise FormatError("corrupt .nnc data (trailer CRC mismatch)")
            _, total, n_frames, index_bytes, sha = _TRL.unpack(trl[:-4])
            if total != sum(n for n, _ in listed) or n_frames != k or index_bytes != len(index) + 4:
                raise FormatError("corrupt .nnc data (trailer does not match the frames)")
            self._member_sha = sha
            yield MemberEnd(total, k)
            head = f.read(1)
            if not head:
                return
            head += f.read(3)
            if head != MAGIC[:len(head)]:
                raise FormatError("corrupt .nnc data (trailing bytes after the trailer)")
            self.frame_size = read_preamble(f, head)
            self.members += 1


class ContentCheck:
    """The running SHA-256 of a member's decoded frames, checked at its trailer."""

    def __init__(self):
        self.sha = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self.sha.update(data)

    def check(self, reader: Reader) -> None:
        if self.sha.digest() != reader._member_sha:
            raise ChecksumError("decoded data fails the SHA-256 of the original")
        self.sha = hashlib.sha256()


class Prefixed:
    """A readable file whose first bytes were already read (to tell the format version), with
    them put back in front."""

    def __init__(self, head: bytes, f: BinaryIO):
        self.head, self.f = head, f

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.f.read(n)
        if n is None or n < 0:
            b, self.head = self.head + self.f.read(), b""
            return b
        b, self.head = self.head[:n], self.head[n:]
        if len(b) < n:
            b += self.f.read(n - len(b))
        return b


def open_member(f: BinaryIO) -> tuple[bool, bytes, BinaryIO]:
    """(version 5?, its first bytes, the file to go on reading): a version 1-4 file is handed
    back from its start (seeked back, or with the bytes put in front again)."""
    head = f.read(6)
    if is_v5(head):
        return True, head, f
    try:
        seekable = f.seekable()
    except (AttributeError, OSError, ValueError):
        seekable = False
    if seekable:
        f.seek(-len(head), 1)
        return False, b"", f
    return False, b"", Prefixed(head, f)


def is_v5(head: bytes) -> bool:
    """Whether the first bytes of a file (at least 6) start a version-5 member."""
    return len(head) >= 6 and head[:4] == MAGIC and struct.unpack_from("<H", head, 4)[0] == VERSION
