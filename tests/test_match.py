"""The match model and its SSE stage: exact integer tables, long repeats found, header rebuilds."""
import io

import numpy as np
import pytest

import nncompress
from nncompress import engine
from nncompress.predictors import spec as specs
from nncompress.format import coding, container
from nncompress.errors import ModelMismatchError
from nncompress.predictors.match import MatchStage, len_class, p_bucket
from nncompress.predictors.order0 import Order0


def _bits(pred, data: bytes, streams: int) -> float:
    return engine.measure(io.BytesIO(data), len(data), pred, streams).ideal_bits


def test_buckets_are_monotone_and_in_range():
    p = np.arange(1, 1 << 16, dtype=np.int64)
    b = p_bucket(p)
    assert b.min() == 0 and b.max() == 127 and np.all(np.diff(b) >= 0)
    n = np.arange(0, 1 << 17, dtype=np.int64)
    c = len_class(n)
    assert c[0] == 0 and np.array_equal(c[:16], n[:16]) and c.max() == 19 and np.all(np.diff(c) >= 0)


def test_repeated_random_block_costs_almost_nothing_the_second_time():
    rng = np.random.default_rng(1)
    block = bytes(rng.integers(0, 256, 3000).astype(np.uint8))
    data = block + block
    plain = _bits(Order0(), data, 1)
    matched = _bits(MatchStage(Order0()), data, 1)
    assert plain > 0.95 * 8 * len(data)                  # order-0 cannot see the repeat
    # the first copy costs about 8 bits a byte, the second very little
    assert matched < 8 * len(block) + 0.5 * len(block)


def test_match_across_streams_and_shrinking_batches():
    rng = np.random.default_rng(2)
    block = bytes(rng.integers(0, 256, 2000).astype(np.uint8))
    data = block * 3 + b"tail"   # 3 streams: each later stream sees the earlier ones' bytes
    assert _bits(MatchStage(Order0()), data, 3) < 0.6 * _bits(Order0(), data, 3)
    assert nncompress.decompress(nncompress.compress(data, model="order0+ctx1+match",
                                                     streams=3)) == data


def test_tables_are_valid_and_deterministic():
    data = np.frombuffer(b"the cat sat on the mat; the cat sat on the hat. " * 60, np.uint8)
    a, b = MatchStage(Order0()), MatchStage(Order0())
    wa, wb = a.start(3), b.start(3)
    arr = data.astype(np.int64)
    for t in range(900):
        assert np.array_equal(wa, wb)
        assert wa.min() >= 1 and wa.sum(axis=1).max() < coding.MAX_WEIGHT_SUM
        n = 3 if t < 600 else 2
        wa, wb = a.step(arr[t:t + n]), b.step(arr[t:t + n])
    assert a.model.mlen.max() > 20                      # the repeats were found and followed


def test_a_hash_collision_is_not_taken_for_a_match():
    st = MatchStage(Order0(), hash_bits=10, min_len=4)
    st.start(1)
    text = np.frombuffer(b"abcdefgh" + b"ijklmnop" * 3, np.uint8).astype(np.int64)
    st.model.table[:] = 8               # every slot "points" at offset 8 (after "efgh") of stream 0
    for c in text[:12]:
        st.step(np.array([c]))
        assert st.model.mlen[0] == 0    # the contexts differ from "efgh": checked and dropped
    for c in text[12:24]:         # the real repeat of "ijklmnop" is found
        st.step(np.array([c]))
    assert st.model.mlen[0] >= 4


@pytest.mark.parametrize("spec", ["ctx1+match", "order0+ctx1+match"])
def test_round_trip_and_header(spec):
    data = b"It was the best of times, it was the worst of times, it was the age of wisdom. " * 30
    blob = nncompress.compress(data, model=spec)
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.predictor_name == "match" and h.settings["arith"] == "match-sse-v1"
    assert nncompress.decompress(blob) == data
    plain = spec[:-len("+match")]
    assert (nncompress.cross_entropy(data, model=spec)
            < nncompress.cross_entropy(data, model=plain))


def test_header_settings_are_used_and_checked():
    data = b"abcabcabd" * 300
    pred = MatchStage(Order0(), min_len=3)
    out = io.BytesIO()
    engine.encode(io.BytesIO(data), len(data), out, pred, 1)
    blob = out.getvalue()
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.settings["min_len"] == 3
    assert nncompress.decompress(blob) == data      # rebuilt from the header, not the defaults
    rest = blob[len(container.pack_header(h)):]

    def forged(**changes):
        s = dict(h.settings, **changes)
        return container.pack_header(container.Header(h.original_length, h.n_streams,
                                                      h.segment_steps, h.predictor_name,
                                                      h.model_sha256, s)) + rest
    with pytest.raises(ModelMismatchError, match="match stage"):
        nncompress.decompress(forged(arith="match-sse-v9"))
    with pytest.raises(ModelMismatchError, match="match-stage settings"):
        nncompress.decompress(forged(min_len=99))
    with pytest.raises(ModelMismatchError, match="identity"):
        nncompress.decompress(forged(inner=dict(h.settings["inner"], name="ctx1")))


def test_match_only_ends_a_spec():
    with pytest.raises(nncompress.ModelError, match="final stage"):
        specs.build_predictor("match+ctx1")
    assert [r.name for r in specs.model_files("ctx1+order0+match")] == ["ctx1", "order0"]
