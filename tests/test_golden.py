"""Golden files pin the bitstream: they must keep decoding, and re-encoding the same text with the
same settings must give the same bytes (for version-1 files: the same records after a version-2
header that describes the same settings). A deliberate change of the bitstream must bump the format
version (container.FORMAT_VERSION) or the predictor's name, and add new files."""
from pathlib import Path

import dataclasses
import io

import pytest

import nncompress
from nncompress import container

DATA = Path(__file__).with_name("data")
TEXT = (DATA / "golden.txt").read_bytes()


# "default" is fslstm-small-v1+ctx1: it pins the exact FS-LSTM arithmetic and the mixer too.
@pytest.mark.parametrize("model,spec,name", [("ctx1", "ctx1", "ctx1"), ("order0", "order0", "order0"),
                                             ("default", "fslstm-small-v1+ctx1", "mix")])
def test_golden_file_decodes_and_reencodes_identically(model, spec, name):
    blob = (DATA / f"golden-v1-{model}.nnc").read_bytes()
    assert nncompress.decompress(blob) == TEXT
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.version == 1 and h.predictor_name == name
    again = nncompress.compress(TEXT, model=spec, streams=h.n_streams,
                                segment_steps=h.segment_steps)
    src = io.BytesIO(again)
    h2 = nncompress.read_header(src)
    assert h2.version == 2 and dataclasses.replace(h2, version=1) == h
    assert again[src.tell():] == blob[len(container.pack_header(h)):]


# The version-2 default, fslstm-small-v2+ctx1 with dynamic evaluation on: it pins the compressed
# header, the exact FS-LSTM, the integer dynamic-evaluation updates and the mixer.
def test_golden_v2_default_decodes_and_reencodes_identically():
    blob = (DATA / "golden-v2-default.nnc").read_bytes()
    assert nncompress.decompress(blob) == TEXT
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.version == 2 and h.predictor_name == "mix"
    members = {m["name"]: m for m in h.settings["members"]}
    assert members["fslstm-small-v2"]["settings"]["dyneval"]["arith"] == "de-out-v1"
    again = nncompress.compress(TEXT, model="fslstm-small-v2+ctx1", streams=h.n_streams,
                                segment_steps=h.segment_steps)
    assert again == blob


def test_future_version_is_refused_by_version():
    blob = bytearray((DATA / "golden-v1-ctx1.nnc").read_bytes())
    blob[4] = container.FORMAT_VERSION + 1
    with pytest.raises(nncompress.FormatError,
                       match=f"unsupported .nnc format version {container.FORMAT_VERSION + 1}"):
        nncompress.decompress(bytes(blob))


# The version-2 default since fslstm-small-v3: fslstm-small-v3+ctx1+match with full dynamic
# evaluation. It pins the integer backward pass and update (de-full-v1) and the match stage.
def test_golden_v3_default_decodes_and_reencodes_identically():
    blob = (DATA / "golden-v2-default-v3.nnc").read_bytes()
    assert nncompress.decompress(blob) == TEXT
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.version == 2 and h.predictor_name == "match"
    assert h.settings["arith"] == "match-sse-v1" and h.settings["inner"]["name"] == "mix"
    members = {m["name"]: m for m in h.settings["inner"]["settings"]["members"]}
    assert members["fslstm-small-v3"]["settings"]["dyneval"]["arith"] == "de-full-v1"
    again = nncompress.compress(TEXT, model="fslstm-small-v3+ctx1+match", streams=h.n_streams,
                                segment_steps=h.segment_steps)
    assert again == blob
