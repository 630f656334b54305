"""Golden files pin the bitstream: they must keep decoding, and re-encoding the same text with the
same settings must give the same bytes (for version-1 files: the same records after a version-2
header that describes the same settings). A deliberate change of the bitstream must bump the format
version (container.FORMAT_VERSION) or the predictor's name, and add new files."""
from pathlib import Path

import dataclasses
import io

import pytest

import nncompress
from nncompress import api, engine
from nncompress.format import container

DATA = Path(__file__).with_name("data")
TEXT = (DATA / "golden.txt").read_bytes()


def reencode(blob: bytes) -> bytes:
    """TEXT compressed again by the predictor that the header of `blob` describes (rebuilt from the
    header, as the decoder does), with its stream count and segment length."""
    h = nncompress.read_header(io.BytesIO(blob))
    out = io.BytesIO()
    engine.encode(io.BytesIO(TEXT), len(TEXT), out, api.predictor_for(h), h.n_streams,
                  h.segment_steps)
    return out.getvalue()


def same_after_header(again: bytes, blob: bytes, version: int) -> bool:
    """`again` is `blob` written with a newer header version: the same header fields and the same
    records after it."""
    src = io.BytesIO(again)
    h2 = nncompress.read_header(src)
    h = nncompress.read_header(io.BytesIO(blob))
    return (dataclasses.replace(h2, version=version) == h
            and again[src.tell():] == blob[len(container.pack_header(h)):])


def compress_like(h, model=None) -> bytes:
    """TEXT compressed through the API with `model` (None: today's default) in the stream count and
    segment length of the header `h`."""
    return nncompress.compress(TEXT, model=model, streams=h.n_streams,
                               segment_steps=h.segment_steps)


def load_golden(name: str, version: int, predictor: str):
    """A golden file, checked to decode to TEXT, and its header (of the given version and
    predictor name)."""
    blob = (DATA / name).read_bytes()
    assert nncompress.decompress(blob) == TEXT
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.version == version and h.predictor_name == predictor
    return blob, h


# "default" is fslstm-small-v1+ctx1: it pins the exact FS-LSTM arithmetic and the mixer too.
@pytest.mark.parametrize("model,name", [("ctx1", "ctx1"), ("order0", "order0"), ("default", "mix")])
def test_golden_file_decodes_and_reencodes_identically(model, name):
    blob = (DATA / f"golden-v1-{model}.nnc").read_bytes()
    assert nncompress.decompress(blob) == TEXT
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.version == 1 and h.predictor_name == name
    again = reencode(blob)
    assert nncompress.read_header(io.BytesIO(again)).version == container.FORMAT_VERSION
    assert same_after_header(again, blob, 1)


# The version-2 default, fslstm-small-v2+ctx1 with dynamic evaluation on: it pins the compressed
# header, the exact FS-LSTM, the integer dynamic-evaluation updates and the mixer.
def test_golden_v2_default_decodes_and_reencodes_identically():
    blob, h = load_golden("golden-v2-default.nnc", 2, "mix")
    members = {m["name"]: m for m in h.settings["members"]}
    assert members["fslstm-small-v2"]["settings"]["dyneval"]["arith"] == "de-out-v1"
    assert same_after_header(reencode(blob), blob, 2)


def test_future_version_is_refused_by_version():
    blob = bytearray((DATA / "golden-v1-ctx1.nnc").read_bytes())
    future = container.FRAMED_VERSION + 1          # version 5 is the framed layout (frames.py)
    blob[4] = future
    with pytest.raises(nncompress.FormatError,
                       match=f"unsupported .nnc format version {future}"):
        nncompress.decompress(bytes(blob))


# The default of fslstm-small-v3 before the geometric mixer: fslstm-small-v3+ctx1+match with full
# dynamic evaluation and the linear mixer. It pins the integer backward pass and update
# (de-full-v1) and the match stage.
def test_golden_v3_default_decodes_and_reencodes_identically():
    blob, h = load_golden("golden-v2-default-v3.nnc", 2, "match")
    assert h.settings["arith"] == "match-sse-v1" and h.settings["inner"]["name"] == "mix"
    members = {m["name"]: m for m in h.settings["inner"]["settings"]["members"]}
    assert members["fslstm-small-v3"]["settings"]["dyneval"]["arith"] == "de-full-v1"
    assert same_after_header(reencode(blob), blob, 2)


# The default from the geometric mixer (gmix, geo-v1) to ctx2: the same models and stages as
# above. Compressing with its spec must still give exactly this file's records.
def test_golden_v4_default_decodes_and_reencodes_identically():
    blob, h = load_golden("golden-v2-default-v4.nnc", 2, "match")
    inner = h.settings["inner"]
    assert inner["name"] == "gmix" and inner["settings"]["arith"] == "geo-v1"
    assert [m["name"] for m in inner["settings"]["members"]] == ["fslstm-small-v3", "ctx1"]
    again = compress_like(h, "fslstm-small-v3+ctx1+match")
    assert same_after_header(again, blob, 2)
    assert same_after_header(reencode(blob), blob, 2)


# The default of format version 3 (the settings dictionary of SETTINGS_ZDICT_V3): the FS-LSTM
# with ctx2 under the geometric mixer, then the match stage. Compressing with its spec must give
# exactly this file's records.
def test_golden_v5_default_decodes_and_reencodes_identically():
    blob, h = load_golden("golden-v3-default-v5.nnc", 3, "match")
    inner = h.settings["inner"]
    assert [m["name"] for m in inner["settings"]["members"]] == ["fslstm-small-v3", "ctx2"]
    assert len(container.pack_header(h)) < 100
    again = compress_like(h, "fslstm-small-v3+ctx2+match")
    assert same_after_header(again, blob, 3)
    assert same_after_header(reencode(blob), blob, 3)


# Today's default (format version 4: the settings dictionary of SETTINGS_ZDICT_V4): the same
# mixture under the cm stage (cm-v1), in 3 streams so that the merged updates of a batch are
# pinned too. Compressing with the default spec must give exactly this file.
def test_golden_v6_default_decodes_and_reencodes_identically():
    blob, h = load_golden("golden-v4-default-v6.nnc", 4, "cm")
    assert h.settings["arith"] == "cm-v1" and h.n_streams == 3
    inner = h.settings["inner"]
    assert [m["name"] for m in inner["settings"]["members"]] == ["fslstm-small-v3", "ctx2"]
    assert len(container.pack_header(h)) < 100
    again = compress_like(h)
    assert again == blob
    assert reencode(blob) == blob
