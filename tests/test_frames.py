"""Format version 5 (nncompress/format/frames.py, nncompress/parallel.py in one process): the frame
layout, round trips, concatenation, truncation, damage, the golden framed file."""
import hashlib
import io
import struct
from pathlib import Path

import pytest

import nncompress
from nncompress import parallel
from nncompress.errors import ChecksumError, FormatError, TruncatedError
from nncompress.format import container, frames

DATA = Path(__file__).parent / "data"
TEXT = (b"Frames are coded on their own; the layout depends only on the input. " * 40
        + bytes(range(256)))


def framed(data: bytes, frame_size: int, level: int = 1, workers: int = 1,
           model=None) -> bytes:
    out = io.BytesIO()
    parallel.compress_stream(io.BytesIO(data), out.write, level=None if model else level,
                             frame_size=frame_size, workers=workers, model=model)
    return out.getvalue()


def decoded(blob: bytes, workers: int = 1) -> bytes:
    out = io.BytesIO()
    parallel.decompress_stream(io.BytesIO(blob), out.write, workers=workers)
    return out.getvalue()


def test_layout_by_hand():
    """Preamble, frame records holding plain version-4 bodies, index and trailer, byte by byte."""
    blob = framed(TEXT, 1024)
    n = len(TEXT)
    assert blob[:4] == b"\x89NNC" and struct.unpack_from("<HHQ", blob, 4) == (5, 0, 1024)
    pos, sizes = frames.PREAMBLE_BYTES, []
    c = nncompress.Compressor(level=1)
    for k in range(frames.frame_count(n, 1024)):
        tag, fn, blen = struct.unpack_from("<cQQ", blob, pos)
        assert tag == b"F" and fn == min(1024, n - 1024 * k)
        body = blob[pos + frames.RECORD_BYTES: pos + frames.RECORD_BYTES + blen]
        # a frame is exactly what the one-shot API writes for its bytes: a version-4 file
        assert body == c.compress(TEXT[1024 * k: 1024 * k + fn])
        assert container.read_header(io.BytesIO(body)).version == container.FORMAT_VERSION
        sizes.append((fn, blen))
        pos += frames.RECORD_BYTES + blen
    assert blob[pos: pos + 13 + 16 * len(sizes)] == frames.pack_index(sizes)
    pos += 13 + 16 * len(sizes)
    trl = blob[pos:]
    assert len(trl) == frames.TRAILER_BYTES
    assert struct.unpack_from("<cQQQ", trl) == (b"T", n, len(sizes), 13 + 16 * len(sizes))
    assert trl[25:57] == hashlib.sha256(TEXT).digest()
    assert len(blob) == sum(b for _, b in sizes) + frames.overhead_bytes(len(sizes))


@pytest.mark.parametrize("n,frame_size", [(0, 100), (1, 100), (100, 100), (101, 100),
                                          (2500, 1000), (2500, 1 << 20)])
def test_round_trip_and_frame_count(n, frame_size):
    data = TEXT[:n]
    blob = framed(data, frame_size)
    assert decoded(blob) == data
    assert nncompress.decompress(blob) == data          # the API reads version 5 too
    fi = parallel.info(io.BytesIO(blob))
    assert fi.n_frames == frames.frame_count(n, frame_size) and fi.frame_size == frame_size
    assert fi.original_bytes == n and fi.compressed_bytes == len(blob)


def test_concatenation_decodes_to_the_concatenation():
    a, b = framed(TEXT[:1500], 512), framed(TEXT[1000:], 700)
    assert decoded(a + b) == TEXT[:1500] + TEXT[1000:]
    assert nncompress.decompress(a + b + a) == TEXT[:1500] + TEXT[1000:] + TEXT[:1500]
    fi = parallel.info(io.BytesIO(a + b))
    assert fi.members == 2 and fi.frame_sizes == [512, 700]


def test_cut_off_data_recovers_complete_frames_only():
    blob = framed(TEXT, 1024)
    ends, pos = [], frames.PREAMBLE_BYTES
    while blob[pos:pos + 1] == b"F":
        pos += frames.RECORD_BYTES + struct.unpack_from("<Q", blob, pos + 9)[0]
        ends.append(pos)
    assert len(ends) == 3
    for cut in (ends[0] - 1, ends[0], ends[0] + 5, ends[1] + 30, ends[2], len(blob) - 1):
        got = []
        with pytest.raises(parallel.PartialError) as e:
            parallel.decompress_stream(io.BytesIO(blob[:cut]), got.append)
        k = sum(1 for x in ends if x <= cut)
        assert b"".join(got) == TEXT[:1024 * k] and e.value.frames_done == k
        assert f"{k} complete frame" in str(e.value) and f"({min(len(TEXT), 1024 * k)} bytes)" \
            in str(e.value)
        assert isinstance(e.value, TruncatedError)
        with pytest.raises(TruncatedError):
            nncompress.decompress(blob[:cut])


def _flip(blob: bytes, pos: int) -> bytes:
    b = bytearray(blob)
    b[pos] ^= 0x40
    return bytes(b)


def test_damage_anywhere_is_refused():
    blob = framed(TEXT, 1024)
    for pos in range(0, len(blob), max(1, len(blob) // 37)):
        with pytest.raises((FormatError, ChecksumError)):
            decoded(_flip(blob, pos))
    with pytest.raises(FormatError, match="trailing bytes"):
        decoded(blob + b"garbage")
    with pytest.raises(FormatError, match="version 4 after a version-5 member"):
        decoded(blob + nncompress.compress(b"x", level=1))


def test_forged_frame_records_are_refused():
    good = framed(TEXT[:300], 1000)
    body = nncompress.compress(TEXT[:300], level=1)
    pre = frames.pack_preamble(1000)
    for recs in (frames.pack_frame(301, body),                     # length differs from the body
                 frames.pack_frame(300, b"x" * 200),               # not a body
                 frames.pack_frame(300, good),                     # a version-5 file in a frame
                 frames.pack_frame(2000, body)):                   # more than the frame size
        blob = pre + recs + frames.pack_index([(300, len(body))]) + frames.pack_trailer(
            300, 1, 29, hashlib.sha256(TEXT[:300]).digest())
        with pytest.raises(FormatError):
            decoded(blob)
    # a short frame before the last one
    blob = (pre + frames.pack_frame(300, body) + frames.pack_frame(300, body)
            + frames.pack_index([(300, len(body))] * 2)
            + frames.pack_trailer(600, 2, 45, hashlib.sha256(TEXT[:300] * 2).digest()))
    with pytest.raises(FormatError, match="out of range"):
        decoded(blob)
    # a trailer whose SHA-256 is wrong (every CRC correct)
    blob = (pre + frames.pack_frame(300, body) + frames.pack_index([(300, len(body))])
            + frames.pack_trailer(300, 1, 29, bytes(32)))
    with pytest.raises(ChecksumError):
        decoded(blob)


def test_writer_refuses_a_wrong_layout():
    w = frames.Writer(io.BytesIO().write, 10)
    with pytest.raises(ValueError):
        w.frame(b"x" * 11, b"")
    w.frame(b"x" * 5, b"")
    with pytest.raises(ValueError):
        w.frame(b"x" * 5, b"")
    for bad in (0, -1, 1 << 41, 1.5, True):
        with pytest.raises(ValueError):
            frames.pack_preamble(bad)


def test_parse_size():
    assert parallel.parse_size("1M") == 1 << 20 and parallel.parse_size("256K") == 1 << 18
    assert parallel.parse_size("64m") == 64 << 20 and parallel.parse_size("1000") == 1000
    assert parallel.parse_size("1MiB") == 1 << 20
    for bad in ("", "M", "1.5M", "-1", "0", "1T"):
        with pytest.raises(ValueError):
            parallel.parse_size(bad)


def test_every_level_has_a_frame_size():
    from nncompress import levels
    for lv in levels.LEVELS.values():
        assert 1 << 18 <= lv.frame_bytes <= 1 << 26


GOLDEN_V5 = DATA / "framed" / "golden-v5-ctx1.nnc"


def test_golden_v5_file():
    """tests/data/golden.txt with ctx1 (level 1 when it was written) in 256-byte frames (3
    frames), written at format version 5: it decodes, and writing it again gives the same
    bytes."""
    text = (DATA / "golden.txt").read_bytes()
    blob = GOLDEN_V5.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == \
        "7d67ea28cf49a685dcfe8b770dcc798c7017fee58373562a0db7264f7550d4eb"
    assert nncompress.decompress(blob) == text and decoded(blob) == text
    fi = parallel.info(io.BytesIO(blob))
    assert (fi.n_frames, fi.frame_size, fi.first.header.predictor_name) == (3, 256, "ctx1")
    assert framed(text, 256, model="ctx1") == blob


def test_nncfile_reads_version_5(tmp_path):
    p = tmp_path / "x.nnc"
    p.write_bytes(framed(TEXT, 700))
    with nncompress.open(p, "rb") as f:
        assert f.read() == TEXT
