"""The cm stage: integer squash/stretch and bit-tree tables, learning, determinism, header rebuilds."""
import io

import numpy as np
import pytest

import nncompress
from nncompress import engine
from nncompress.predictors import spec as specs
from nncompress.format import coding
from nncompress.errors import ModelError, ModelMismatchError
from nncompress.predictors import cm
from nncompress.predictors.cm import CMStage
from nncompress.predictors.order0 import Order0


def _bits(pred, data: bytes, streams: int) -> float:
    return engine.measure(io.BytesIO(data), len(data), pred, streams).ideal_bits


def test_squash_and_stretch_are_monotone_inverse_tables():
    x = np.arange(-2047, 2048)
    p = cm.squash(x)
    assert p.min() == 1 and p.max() == 4094 and np.all(np.diff(p) >= 0)
    assert abs(int(cm.squash(np.array([0]))[0]) - 2048) <= 1
    assert np.all(np.diff(cm.STRETCH) >= 0) and cm.STRETCH[1] < -1500 and cm.STRETCH[4095] > 1500
    # stretch inverts squash: the smallest x whose squash reaches p (squash rises by at most 4
    # per step of x, at the middle)
    q = np.arange(2, 4094)
    back = cm.squash(cm.STRETCH[q]) - q
    assert back.min() >= 0 and back.max() <= 4
    # the float function it approximates: 1 / (1 + e^-x/256)
    assert np.abs(p - 4096 / (1 + np.exp(-x / 256))).max() < 16   # linear pieces of 128 steps


def test_bit_tree_round_trip():
    rng = np.random.default_rng(0)
    w = rng.integers(0, 1 << 20, size=(5, 256))
    w[0, :] = 0
    w[0, 65] = 1000                     # one certain byte
    p1 = cm.tree_p1(w)
    assert p1.shape == (5, 255) and p1.min() >= 1 and p1.max() <= 4095
    leaves = cm.leaves(p1)
    assert np.all(leaves.sum(axis=1) == 1 << 36) and leaves.min() >= 0
    # the leaves follow the original distribution up to the Q12 precision of each decision
    ref = w[1:] / w[1:].sum(axis=1, keepdims=True)
    got = leaves[1:] / (1 << 36)
    assert np.abs(got - ref).max() < 0.002
    assert leaves[0].argmax() == 65 and leaves[0, 65] > 0.99 * (1 << 36)


def test_a_new_stage_repeats_its_predictor_and_then_learns():
    """At the start the weights are the wrapped predictor's (within the Q12 precision of the bit
    decisions); on text with structure that order 0 cannot see, the stage beats it by far."""
    text = b"the quick brown fox jumps over the lazy dog; " * 8 + b"pack my box with five dozen liquor jugs. " * 8
    data = bytes(text) * 6
    st = CMStage(Order0())
    first = st.start(1)
    ref = Order0().start(1)
    assert np.abs(first / first.sum() - ref / ref.sum()).max() < 0.001
    assert _bits(CMStage(Order0()), data, 1) < 0.25 * _bits(Order0(), data, 1)


def test_repeated_random_block_costs_little_the_second_time():
    rng = np.random.default_rng(1)
    block = bytes(rng.integers(0, 256, 3000).astype(np.uint8))
    data = block + block
    bits = _bits(CMStage(Order0()), data, 1)
    assert bits < 8 * len(block) + 0.5 * len(block)     # the match model finds the repeat
    assert bits > 0.9 * 8 * len(block)                   # the random block itself is not learnt


def test_tables_are_valid_and_deterministic_through_shrinking_batches():
    data = np.frombuffer(b"int main(void)\n{\n    return 0;\n}\n" * 40, np.uint8).astype(np.int64)
    a, b = CMStage(Order0(), hash_bits=12), CMStage(Order0(), hash_bits=12)
    wa, wb = a.start(4), b.start(4)
    for t in range(300):
        assert np.array_equal(wa, wb)
        assert wa.min() >= 0 and wa.sum(axis=1).max() < coding.MAX_WEIGHT_SUM
        n = 4 if t < 150 else (3 if t < 250 else 1)
        chunk = data[t * 4:t * 4 + n]
        wa, wb = a.step(chunk), b.step(chunk)
    assert np.abs(a.W1).max() > 0 and np.array_equal(a.W1, b.W1) and np.array_equal(a.H, b.H)


class _Last:
    """Wraps a predictor and keeps the weights it returned last."""

    def __init__(self, inner):
        self.inner, self.identity = inner, inner.identity

    def start(self, n):
        self.w = self.inner.start(n)
        return self.w

    def step(self, s):
        self.w = self.inner.step(s)
        return self.w


def test_only_the_likely_subtrees_are_refined():
    """The high nibble's nodes and the low-nibble subtrees of the `nibbles` most likely high
    nibbles (plus the match model's) are refined; everywhere else the wrapped predictor's
    P(bit) stays as it is."""
    text = np.frombuffer(b"Some Text, with digits 0123 and CAPITALS; some text again. " * 30,
                         np.uint8).astype(np.int64)
    inner = _Last(Order0())
    st = CMStage(inner, nibbles=2, hash_bits=12)
    st.start(2)
    for t in range(0, 600, 2):
        st.step(text[t:t + 2])
        mass = cm.tree_sums(inner.w)[:, 16:32]
        ref = cm.tree_p1(inner.w)
        for s in range(2):
            chosen = set(st.hn[s].tolist())
            top = set(np.argsort(-mass[s], kind="stable")[:2].tolist())
            if st.match.mlen[s] == 0:
                assert chosen == top
            for h in set(range(16)) - chosen:
                nodes = [((16 + h) << d) + m - 1 for d in range(4) for m in range(1 << d)]
                assert np.array_equal(st.p1[s, nodes], ref[s, nodes])
    assert (st.match.mlen > 0).any()


def test_weight_sums_stay_exact_in_float64():
    """The mixers' products go through float64: every partial sum must stay an exact integer."""
    W = np.full((1, cm.N_INPUTS), cm.W_LIMIT, dtype=np.int64)
    X = np.full((1, cm.N_INPUTS, 1), 2047, dtype=np.int64)
    exact = int(W[0] @ X[0, :, 0])
    assert exact < 2 ** 53
    assert int(np.matmul(W.astype(np.float64), X.astype(np.float64))[0, 0, 0]) == exact


@pytest.mark.parametrize("spec", ["ctx1+cm", "order0+ctx1+cm"])
def test_round_trip_and_header(spec):
    data = b"def f(x):\n    return x * 2\n\n" * 60 + bytes(range(256))
    blob = nncompress.compress(data, model=spec, streams=3)
    assert nncompress.decompress(blob) == data
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.predictor_name == "cm" and h.settings["arith"] == cm.ARITH
    assert h.settings["inner"]["name"] == ("ctx1" if spec == "ctx1+cm" else "gmix")
    # the stage starts as its predictor and learns: never much worse, even on a tiny input
    plain = nncompress.compress(data, model=spec[:-len("+cm")], streams=3)
    assert len(blob) < 1.1 * len(plain) + 64


def _forged(blob: bytes, **changes) -> bytes:
    from nncompress.format import container
    src = io.BytesIO(blob)
    h = container.read_header(src)
    import dataclasses
    settings = dict(h.settings, **changes)
    return container.pack_header(dataclasses.replace(h, settings=settings)) + blob[src.tell():]


def test_forged_settings_are_refused_before_decoding():
    data = b"abcabcabd" * 50
    blob = nncompress.compress(data, model="order0+cm")
    with pytest.raises(ModelMismatchError, match="cm stage is not understood"):
        nncompress.decompress(_forged(blob, arith="cm-v0"))
    with pytest.raises(ModelMismatchError, match="settings are not understood"):
        nncompress.decompress(_forged(blob, hash_bits=40))
    with pytest.raises(ModelMismatchError, match="settings are not understood"):
        nncompress.decompress(_forged(blob, colour=1))


def test_stages_only_end_a_spec():
    with pytest.raises(ModelError, match="final stage"):
        specs.build_predictor("ctx1+cm+order0")
    assert specs.parse_spec("ctx1+order0+cm") == specs.Spec(("ctx1", "order0"), "cm")
    assert specs.parse_spec("ctx1+match") == specs.Spec(("ctx1",), "match")
