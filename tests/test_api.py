import io
import os

import pytest

import nncompress
from nncompress.predictors import modelfiles, spec as specs
from nncompress.errors import ChecksumError, FormatError, ModelError, ModelMismatchError, NNCError

from helpers import canterbury_files, compress_in_fresh_processes

CASES = {
    "empty": b"",
    "one": b"x",
    "all256": bytes(range(256)),
    "random100k": os.urandom(100_000),
    "repeats": b"abcabcabd" * 20_000 + b"\x00" * 50_000,
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("model", ["order0", None])
def test_round_trip(name, model):
    data = CASES[name]
    if model is None:
        data = data[:8_000]  # the default model codes a few KB/s; the golden files pin its bytes
    blob = nncompress.compress(data, model=model)
    assert nncompress.decompress(blob) == data


def test_random_bytes_do_not_expand_much():
    data = CASES["random100k"]
    blob = nncompress.compress(data, model="order0")
    assert len(blob) < len(data) * 1.02 + 300


def test_stream_count_and_segments_do_not_change_content():
    data = CASES["repeats"][:40_000]
    for streams in (1, 2, 5, 64):
        blob = nncompress.compress(data, model="order0", streams=streams, segment_steps=999)
        info = nncompress.info(io.BytesIO(blob))
        assert info.header.n_streams == streams
        assert nncompress.decompress(blob) == data


def test_error_hierarchy():
    for cls in (FormatError, ChecksumError, ModelError, ModelMismatchError):
        assert issubclass(cls, NNCError)
    with pytest.raises(FormatError):
        nncompress.decompress(b"definitely not nnc")
    with pytest.raises(ModelError, match="unknown model"):
        nncompress.compress(b"abc", model="no-such-model")


def test_missing_model_named_in_error(monkeypatch):
    blob = bytearray(nncompress.compress(b"hello world", model="order0"))
    # Forge a header naming a model file that does not exist here (CRC recomputed).
    from nncompress.format import container
    h = container.read_header(io.BytesIO(bytes(blob)))
    forged = container.Header(h.original_length, h.n_streams, h.segment_steps, "fslstm-xyz",
                              b"\x11" * 32, {})
    body = container.pack_header(forged) + bytes(blob[len(container.pack_header(h)):])
    with pytest.raises(ModelMismatchError, match="fslstm-xyz"):
        nncompress.decompress(body)


def test_cross_entropy_close_to_real_size():
    data = CASES["repeats"][:50_000]
    bpb = nncompress.cross_entropy(data, model="order0")
    real = 8 * len(nncompress.compress(data, model="order0")) / len(data)
    assert bpb <= real <= bpb + 8 * 400 / len(data)


def test_models_registry():
    s = specs.parse_spec()
    assert [r.name for r in specs.model_files(None)] == list(s.members)
    assert str(s) == specs.DEFAULT_SPEC
    assert [r.name for r in specs.model_files("ctx1+order0")] == ["ctx1", "order0"]
    with pytest.raises(ModelError):
        modelfiles.resolve("ctx1+order0")
    assert "ctx1" in specs.available() and "order0" in specs.available()


@pytest.mark.slow
@pytest.mark.parametrize("path", canterbury_files(), ids=lambda p: p.name)
def test_canterbury_round_trip_default_model(path):
    # the first 300 KB of each (the default codes about 5 KB/s on a CI core; whole files, and
    # every corpus, go through bench/scripts/roundtrip_corpora.sh)
    data = path.read_bytes()[:300_000]
    assert nncompress.decompress(nncompress.compress(data)) == data


def test_default_same_bytes_with_one_and_two_threads_in_fresh_processes(tmp_path):
    """The shipped default (the int8 FS-LSTM under the bmix stage) gives the same bytes with 1
    and 2 threads, each in a fresh process, over several streams."""
    text = (b"The default must give the same bytes on any thread count. " * 20
            + bytes(range(256)) + b"def f(x):\n    return x + 1\n" * 30)
    src = tmp_path / "text"
    src.write_bytes(text)
    outs = compress_in_fresh_processes(None, src, 3, dynamic_eval=None)
    assert outs[0] == outs[1]
    h = nncompress.read_header(io.BytesIO(outs[0]))
    assert h.n_streams == 3 and h.predictor_name == "bmix"
    assert '"name":"fslstm-medium-i8-v1"' in \
        nncompress.format.container.settings_bytes(h.settings).decode()
    assert nncompress.decompress(outs[0]) == text
