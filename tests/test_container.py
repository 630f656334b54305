import io
import struct
import zlib

import pytest

from nncompress.format import container
from nncompress.format.container import Header
from nncompress.errors import FormatError, TruncatedError


def _header(**kw):
    base = dict(original_length=1000, n_streams=3, segment_steps=100, predictor_name="ctx1",
                model_sha256=bytes(range(32)), settings={"orders": [0, 1, 2], "b": "é"})
    base.update(kw)
    return Header(**base)


def test_header_round_trip_and_fixed_layout():
    h = _header()
    blob = container.pack_header(h)
    assert blob[:4] == b"\x89NNC"
    assert struct.unpack_from("<HHQII", blob, 4) == (4, 0, 1000, 3, 100)
    assert blob[26:58] == bytes(range(32))
    assert blob[58] == 4 and blob[59:63] == b"ctx1"
    (m,) = struct.unpack_from("<I", blob, 63)
    raw = zlib.decompressobj(-15, container.SETTINGS_ZDICT_V4).decompress(blob[67:67 + m])
    assert raw == container.settings_bytes(h.settings)  # raw DEFLATE with the preset dictionary
    assert container.read_header(io.BytesIO(blob)) == h
    for version, zdict in ((3, container.SETTINGS_ZDICT_V3), (2, container.SETTINGS_ZDICT)):
        old = Header(**{**h.__dict__, "version": version})   # an older version: its dictionary
        b = container.pack_header(old)
        assert b[4] == version
        raw = zlib.decompressobj(-15, zdict).decompress(b[67:])
        assert raw.startswith(container.settings_bytes(h.settings))
        assert container.read_header(io.BytesIO(b)) == old
    v1 = Header(**{**h.__dict__, "version": 1})           # version 1: the JSON as is
    b1 = container.pack_header(v1)
    assert b1[67:67 + struct.unpack_from("<I", b1, 63)[0]] == container.settings_bytes(h.settings)
    assert container.read_header(io.BytesIO(b1)) == v1


def test_ensemble_settings_are_small_in_version_2():
    import nncompress
    from nncompress.predictors import spec as specs
    p = specs.build_predictor("fslstm-small-v2+ctx1")   # with dynamic evaluation
    h = _header(predictor_name="mix", settings=p.identity.settings, version=2)
    assert len(container.pack_header(h)) < 160 < len(container.pack_header(Header(**{**h.__dict__, "version": 1})))


@pytest.mark.parametrize("version,spec", [(3, "fslstm-small-v3+ctx2+match"),
                                          (4, "fslstm-small-v3+ctx2+cm")])
def test_default_settings_are_tiny_in_their_version(version, spec):
    """A default's description (about 700 bytes of JSON) costs a few bytes with the dictionary of
    the format version that introduced it: on a 4 KB file the header is then about 2% of the
    output instead of 10%. Version 4's dictionary still holds version 3's default."""
    from nncompress.predictors import spec as specs
    p = specs.build_predictor(spec, device="cpu")
    h = _header(predictor_name=p.identity.name, settings=p.identity.settings, version=version)
    v2 = Header(**{**h.__dict__, "version": 2})
    assert len(container.settings_bytes(h.settings)) > 500
    assert len(container.pack_header(h)) < 100 < 200 < len(container.pack_header(v2))
    assert container.read_header(io.BytesIO(container.pack_header(h))) == h
    if version == 3:
        v4 = Header(**{**h.__dict__, "version": 4})
        assert len(container.pack_header(v4)) < 100


def test_bad_settings_stream_is_a_format_error():
    h = _header()
    for payload in (b"\x00garbage", container._deflate(b"[1, 2]", 2), container._deflate(b"{}", 2) + b"x"):
        name = h.predictor_name.encode()
        body = (container._FIXED.pack(container.MAGIC, 2, 0, 1000, 3, 100, 1, 24, bytes(32), len(name))
                + name + struct.pack("<I", len(payload)) + payload)
        blob = body + struct.pack("<I", zlib.crc32(body))
        with pytest.raises(FormatError):
            container.read_header(io.BytesIO(blob))


def test_header_rejects_wrong_magic_version_and_flips():
    blob = bytearray(container.pack_header(_header()))
    with pytest.raises(FormatError, match="magic"):
        container.read_header(io.BytesIO(b"PK\x03\x04" + bytes(blob[4:])))
    future = bytearray(blob)
    future[4] = container.FORMAT_VERSION + 1
    with pytest.raises(FormatError, match=f"version {container.FORMAT_VERSION + 1}"):
        container.read_header(io.BytesIO(bytes(future)))
    for i in range(6, len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x10
        with pytest.raises(FormatError):
            container.read_header(io.BytesIO(bytes(bad)))


def test_header_truncation_is_truncated_error():
    blob = container.pack_header(_header())
    for cut in range(4, len(blob)):
        with pytest.raises(TruncatedError):
            container.read_header(io.BytesIO(blob[:cut]))
    assert issubclass(TruncatedError, EOFError)


def test_stream_lengths_cover_input_without_empty_streams():
    for n in range(0, 60):
        for s in range(1, 12):
            if not container.valid_stream_count(n, s):
                continue
            lens = container.stream_lengths(n, s)
            assert sum(lens) == n and len(lens) == s
            assert all(x > 0 for x in lens) or n == 0
            assert lens == sorted(lens, reverse=True)
    assert not container.valid_stream_count(9, 4)  # L=3 would leave stream 3 empty
    with pytest.raises(ValueError):
        container.pack_header(_header(original_length=9, n_streams=4))


def test_records_round_trip_and_detect_damage():
    words = bytes(range(40))
    seg = container.pack_segment(50, words, 1234)
    end = container.pack_end(1, b"\x07" * 32)
    f = io.BytesIO(seg + end)
    rec = container.read_record(f, expected_symbols=50)
    assert (rec.n_symbols, rec.words, rec.data_crc) == (50, words, 1234)
    assert container.read_record(f) == container.EndRecord(1, b"\x07" * 32)
    container.expect_eof(f)
    with pytest.raises(FormatError, match="symbol count"):
        container.read_record(io.BytesIO(seg), expected_symbols=49)
    bad = bytearray(seg)
    bad[30] ^= 1
    with pytest.raises(FormatError, match="CRC"):
        container.read_record(io.BytesIO(bytes(bad)))
    huge = container.pack_segment(1, bytes(400), 0)  # 100 words for 1 symbol: impossible
    with pytest.raises(FormatError, match="word count"):
        container.read_record(io.BytesIO(huge))
    with pytest.raises(TruncatedError):
        container.read_record(io.BytesIO(seg[:-1]))
    with pytest.raises(FormatError, match="trailing"):
        container.expect_eof(io.BytesIO(b"x"))
