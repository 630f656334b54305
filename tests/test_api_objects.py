"""The reusable API objects: Compressor, Decompressor, open(), and the public names."""
import io
import pathlib

import pytest

import nncompress
from nncompress import levels

TEXT = b"".join(b"line %d of a small text, with some words repeated: words words.\n" % i
                for i in range(300))


def test_public_names_are_pinned():
    assert sorted(nncompress.__all__) == sorted([
        "ChecksumError", "Compressor", "Decompressor", "FormatError", "ModelError",
        "ModelMismatchError", "NNCError", "NNCFile", "TruncatedError", "__version__", "compress",
        "compress_stream", "cross_entropy", "decompress", "decompress_stream", "info", "open",
        "read_header"])
    for name in nncompress.__all__:
        assert hasattr(nncompress, name), name


def test_compressor_reuses_its_predictor_and_matches_the_one_shot_function():
    c = nncompress.Compressor(level=1)
    a, b = c.compress(TEXT), c.compress(TEXT[:5000])
    assert c.compress(TEXT) == a                      # the second use starts from a fresh state
    assert a == nncompress.compress(TEXT, level=1) == nncompress.compress(TEXT, model="bcm")
    d = nncompress.Decompressor()
    assert d.decompress(a) == TEXT and d.decompress(b) == TEXT[:5000]
    assert d.decompress(memoryview(a)) == TEXT


def test_a_reused_compressor_with_dynamic_evaluation_gives_the_same_bytes_every_time():
    c = nncompress.Compressor(model="fslstm-small-v3", dynamic_eval={"scope": "out"})
    a = c.compress(TEXT[:3000])
    assert c.compress(TEXT[:3000]) == a
    assert nncompress.Decompressor().decompress(a) == TEXT[:3000]


def test_decompressor_keeps_one_predictor_per_file_kind():
    d = nncompress.Decompressor()
    for model in ("ctx1", "order0", "ctx1", "order0"):
        assert d.decompress(nncompress.compress(TEXT, model=model)) == TEXT
    assert len(d._templates) == 2


def test_compressor_stream_methods(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(TEXT)
    out = io.BytesIO()
    with src.open("rb") as f:
        stats = nncompress.Compressor(model="ctx1").compress_stream(f, out)
    assert stats.n_streams >= 1
    sink = io.BytesIO()
    nncompress.Decompressor().decompress_stream(io.BytesIO(out.getvalue()), sink)
    assert sink.getvalue() == TEXT


@pytest.mark.parametrize("bad", [0, 10, -1, "6", 6.0, True])
def test_levels_out_of_range_are_refused(bad):
    with pytest.raises(ValueError, match="level"):
        nncompress.Compressor(level=bad)


def test_level_and_model_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        nncompress.Compressor(level=1, model="ctx1")


def test_level_6_is_the_default_predictor():
    from nncompress.predictors import spec as specs
    lv = levels.get(levels.DEFAULT_LEVEL)
    assert lv.level == 6 and specs.parse_spec(lv.spec) == specs.parse_spec(specs.DEFAULT_SPEC)
    assert lv.stream_bytes is None
    assert levels.FAST == 1 and levels.BEST == 9 and sorted(levels.LEVELS) == list(range(1, 10))


def test_level_stream_bytes_shape_the_stream_count():
    lv8, lv9 = levels.get(8), levels.get(9)
    n = 1 << 22
    assert levels.get(8).stream_bytes is None and lv9.stream_bytes == 1 << 16
    assert levels.streams_for(lv9, n, 1 << 12, 256) == n // (1 << 16)
    assert levels.streams_for(lv8, n, 1 << 12, 256) == 256   # the predictor's own choice
    assert levels.streams_for(lv9, n, 1 << 17, 256) == n // (1 << 17)  # never below its minimum


def test_open_write_then_read_by_path_and_pathlike(tmp_path):
    p = tmp_path / "t.nnc"
    with nncompress.open(p, "wb", level=1) as f:
        f.write(TEXT[:1000])
        f.write(memoryview(TEXT[1000:]))
        assert f.writable() and not f.readable()
    assert p.read_bytes() == nncompress.compress(TEXT, level=1)
    with nncompress.open(str(p), "rb") as f:
        assert f.read(10) == TEXT[:10]
        assert f.read() == TEXT[10:]
        f.seek(0)
        assert f.readline() == TEXT.split(b"\n")[0] + b"\n"
    with pytest.raises(FileExistsError):
        nncompress.open(p, "xb", level=1)


def test_open_on_file_objects(tmp_path):
    buf = io.BytesIO()
    with nncompress.open(buf, "wb", model="ctx1") as f:
        f.write(TEXT)
    assert not buf.closed                               # a caller's file object stays open
    buf.seek(0)
    with nncompress.open(buf, "rb") as f:
        assert f.read() == TEXT


def test_open_refuses_bad_modes_and_reading_damage(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        nncompress.open(tmp_path / "x", "ab")
    with pytest.raises(ValueError, match="level"):
        nncompress.open(tmp_path / "x", "wb", level=12)
    assert not (tmp_path / "x").exists()
    bad = tmp_path / "bad.nnc"
    bad.write_bytes(b"not an nnc file at all")
    with nncompress.open(bad, "rb") as f:
        with pytest.raises(nncompress.FormatError):
            f.read()
