"""Golden files pin the bitstream: they must keep decoding, and re-encoding the same text with the
same settings must give the same bytes. A deliberate change of the bitstream must bump the format
version (container.FORMAT_VERSION) or the predictor's name, and add new files.

The files are listed in tests/data/golden.json, one object per file:

    file              the file's name in tests/data
    version           the format version its header must have
    predictor         the predictor name its header must record
    arith             every arithmetic tag in its settings (sorted, each once): what it pins
    members           (optional) the names of the ensemble members inside it, in order
    streams           (optional) the stream count its header must have
    max_header_bytes  (optional) an upper bound on its header's size (the settings dictionaries)
    spec              (optional) a predictor spec: compressing the text with it, in the file's
                      stream count and segment length, must give the file (as `compare` says)
    compare           how a re-encoding must match the file: "bytes" (the whole file, for files
                      of today's version) or "records" (the same header fields and the same
                      records after a header of today's version, for older versions)
    pins              what the file pins, in words

Re-encoding rebuilds the predictor from the file's own header, as the decoder does, and encodes
the text again with its stream count and segment length. Adding a golden file is adding an entry;
a new `compare` mode is a new branch in `matches`.
"""
import dataclasses
import io
import json
from pathlib import Path

import pytest

import nncompress
from nncompress import api, engine
from nncompress.format import container

DATA = Path(__file__).with_name("data")
MANIFEST = json.loads((DATA / "golden.json").read_text())
TEXT = (DATA / MANIFEST["text"]).read_bytes()
GOLDEN = MANIFEST["files"]


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


def matches(again: bytes, blob: bytes, entry: dict) -> bool:
    if entry["compare"] == "bytes":
        return again == blob
    if entry["compare"] == "records":
        return same_after_header(again, blob, entry["version"])
    raise AssertionError(f"unknown compare mode {entry['compare']!r} in golden.json")


def arith_tags(settings) -> list:
    """Every arithmetic tag in a settings tree, sorted, each once."""
    found, stack = set(), [settings]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            found.update(v for k, v in x.items() if k == "arith")
            stack.extend(v for k, v in x.items() if k != "arith")
        elif isinstance(x, list):
            stack.extend(x)
    return sorted(found)


def member_names(settings) -> list:
    while "members" not in settings and "inner" in settings:
        settings = settings["inner"]["settings"]
    return [m["name"] for m in settings.get("members", [])]


@pytest.mark.parametrize("entry", GOLDEN, ids=[e["file"] for e in GOLDEN])
def test_golden_file_decodes_and_reencodes_identically(entry):
    blob = (DATA / entry["file"]).read_bytes()
    assert nncompress.decompress(blob) == TEXT
    h = nncompress.read_header(io.BytesIO(blob))
    assert (h.version, h.predictor_name) == (entry["version"], entry["predictor"])
    assert arith_tags(h.settings) == entry["arith"]
    if "members" in entry:
        assert member_names(h.settings) == entry["members"]
    if "streams" in entry:
        assert h.n_streams == entry["streams"]
    if "max_header_bytes" in entry:
        assert len(container.pack_header(h)) < entry["max_header_bytes"]
    if "spec" in entry:
        again = nncompress.compress(TEXT, model=entry["spec"], streams=h.n_streams,
                                    segment_steps=h.segment_steps)
        assert matches(again, blob, entry)
    again = reencode(blob)
    assert nncompress.read_header(io.BytesIO(again)).version == container.FORMAT_VERSION
    assert matches(again, blob, entry)


def test_every_golden_file_is_in_the_manifest():
    listed = {e["file"] for e in GOLDEN}
    assert {p.name for p in DATA.glob("golden-*.nnc")} <= listed
    assert all((DATA / name).is_file() for name in listed)


def test_future_version_is_refused_by_version():
    blob = bytearray((DATA / "golden-v1-ctx1.nnc").read_bytes())
    future = container.FRAMED_VERSION + 1          # version 5 is the framed layout (frames.py)
    blob[4] = future
    with pytest.raises(nncompress.FormatError,
                       match=f"unsupported .nnc format version {future}"):
        nncompress.decompress(bytes(blob))
