"""The compiled kernels (predictors/kernels.py) against the numpy reference methods of each stage:
the same weights at every step and the same tables at the end, through shrinking batches,
hash collisions, row take-overs, halvings and streams that share one context."""
import numpy as np
import pytest

from nncompress.predictors import cm, kernels, mix
from nncompress.predictors.cm import CMStage
from nncompress.predictors.context import ContextModel
from nncompress.predictors.match import MatchStage
from nncompress.predictors.mix import GeoMixture, Mixture
from nncompress.predictors.order0 import Order0

SMALL = {"max_order": 4, "hash_bits": 10}   # small tables: many collisions


def _text(n: int, seed: int) -> np.ndarray:
    """Bytes with what the stages look at: words, capitals, digits, lines and indentation,
    repeats (matches) and bytes of 128 and more."""
    rng = np.random.default_rng(seed)
    words = [b"the", b"Cat", b"sat", b"on", b"mat", b"\xc3\xa9t\xc3\xa9", b"x = 1;", b"if (a)",
             b"0123", b"ZEBRA", b"\t", b"  "]
    out = bytearray()
    while len(out) < n:
        r = rng.random()
        if r < 0.08:
            out += b"\n" + b" " * int(rng.integers(0, 9))
        elif r < 0.12 and len(out) > 64:
            start = int(rng.integers(0, len(out) - 40))
            out += out[start:start + int(rng.integers(8, 40))]      # a repeat
        elif r < 0.14:
            out += bytes(rng.integers(0, 256, 3).astype(np.uint8))
        else:
            out += words[int(rng.integers(0, len(words)))] + b" "
    return np.frombuffer(bytes(out[:n]), dtype=np.uint8).astype(np.int64)


def _steps(data: np.ndarray, S: int):
    """The symbols of each step with S contiguous streams, as the engine cuts a file (the last
    stream shorter, so the batch shrinks at the end)."""
    span = -(-len(data) // S)
    lengths = [max(0, min(span, len(data) - s * span)) for s in range(S)]
    for t in range(1, span):
        a = sum(1 for ln in lengths if ln > t - 1)
        yield np.array([data[s * span + t - 1] for s in range(a)], dtype=np.int64)


def _lockstep(make, data: np.ndarray, S: int):
    ref, fast = make(), make()
    ref.use_kernels = False
    wr, wf = ref.start(S), fast.start(S)
    assert np.array_equal(wr, wf)
    for t, sym in enumerate(_steps(data, S)):
        wr, wf = ref.step(sym), fast.step(sym)
        assert wr.shape == wf.shape and np.array_equal(wr, wf), f"step {t}"
    return ref, fast


@pytest.mark.parametrize("S", [1, 3, 37])
def test_context_model(S):
    data = _text(3000 if S == 1 else 6000, seed=S)
    ref, fast = _lockstep(lambda: ContextModel(limit=20, **SMALL), data, S)
    for name in ("_counts", "_n", "_d"):
        assert np.array_equal(getattr(ref, name), getattr(fast, name))
    assert ref._n.max() > 0


def test_context_model_ctx2_and_shared_counts():
    _lockstep(lambda: ContextModel("ctx2", hash_bits=12), _text(4000, seed=9), 5)
    # 300 streams on the same contexts: one count gets more increments than a uint8 holds, and
    # its row is halved once
    data = np.tile(np.frombuffer(b"aaab", dtype=np.uint8).astype(np.int64), 300 * 3)
    ref, fast = _lockstep(lambda: ContextModel(limit=20, **SMALL), np.sort(data), 300)
    assert np.array_equal(ref._counts, fast._counts)


def test_context_coefficients():
    m = ContextModel()
    rng = np.random.default_rng(7)
    n = rng.integers(0, 64000, (50, m._K)) * (rng.integers(0, 3, (50, m._K)) > 0)
    d = np.where(n > 0, np.minimum(rng.integers(1, 257, n.shape), n), 0)
    a_ref, left_ref = m._coefficients(n, d)
    for i in range(50):
        a = np.empty(m._K, dtype=np.int64)
        assert kernels.ctx_coefficients(n[i], d[i], m._esc, a) == left_ref[i]
        assert np.array_equal(a, a_ref[i])


@pytest.mark.parametrize("S", [1, 4, 50])
def test_match_stage(S):
    data = _text(8000, seed=10 + S)
    data[4000:6000] = data[:2000]                       # long repeats, across streams too
    ref, fast = _lockstep(lambda: MatchStage(Order0(), hash_bits=10, min_len=3), data, S)
    for name in ("table", "mlen", "ptr", "n"):
        assert np.array_equal(getattr(ref.model, name), getattr(fast.model, name))
    assert np.array_equal(ref.q, fast.q) and np.array_equal(ref.qn, fast.qn)
    assert fast.qn.sum() > 0


@pytest.mark.parametrize("S,inner,settings", [
    (1, "order0", {}), (3, "order0", {"hash_bits": 10}), (40, "order0", {"hash_bits": 10}),
    (6, "ctx", {"hash_bits": 11, "nibbles": 2}), (5, "ctx", {"nibbles": 16, "match_bits": 10}),
])
def test_cm_stage(S, inner, settings):
    n = 1200 if S == 1 else 3000
    data = _text(n, seed=20 + S)
    data[n * 2 // 3:n * 2 // 3 + n // 5] = data[:n // 5]

    def make():
        return CMStage(Order0() if inner == "order0" else ContextModel(**SMALL), **settings)
    ref, fast = _lockstep(make, data, S)
    for name in ("H", "Dt", "apm", "W1", "W2", "mq", "mqn"):
        assert np.array_equal(getattr(ref, name), getattr(fast, name)), name
    for name in ("table", "mlen", "buf"):
        assert np.array_equal(getattr(ref.match, name), getattr(fast.match, name))
    assert np.abs(fast.W1).max() > 0 and fast.mqn.sum() > 0


@pytest.mark.parametrize("cls", [Mixture, GeoMixture])
@pytest.mark.parametrize("S", [1, 3, 20])
def test_mixers(cls, S):
    data = _text(4000, seed=30 + S)
    ref, fast = _lockstep(lambda: cls([Order0(), ContextModel(**SMALL)]), data, S)
    assert np.array_equal(ref.alpha, fast.alpha)
    if cls is GeoMixture:
        assert np.array_equal(ref.w, fast.w) and not np.array_equal(fast.w[:, -1], [1 << 16] * 4)


def test_three_members():
    _lockstep(lambda: GeoMixture([Order0(), ContextModel(**SMALL), ContextModel("ctx2", **SMALL)]),
              _text(2000, seed=40), 4)


def test_helpers():
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 50, 300)
    uniq, gid = kernels._group(keys, len(keys))
    assert np.array_equal(np.sort(uniq), np.unique(keys)) and np.array_equal(uniq[gid], keys)
    assert len(kernels._group(keys, 0)[0]) == 0
    for x in [1, 2, 3, 4095, 4096, (1 << 22), (1 << 40) + 5, (1 << 62)]:
        assert kernels._floor_log2(x) == x.bit_length() - 1
    v = np.concatenate([np.arange(0, 5000), rng.integers(0, 1 << 44, 5000)])
    assert all(kernels._isqrt(int(x)) == r for x, r in zip(v, mix._isqrt(v)))
    # the kernels' copies of the cm stage's constants
    assert np.array_equal(kernels._ORDER_MASKS, cm._ORDER_MASKS)
    assert np.array_equal(kernels._SPARSE_MASKS, cm._SPARSE_MASKS)
    assert np.array_equal(kernels._DEPTH, cm.DEPTH) and np.array_equal(kernels._LOCAL, cm.LOCAL)
    assert (kernels._N_HASHED, kernels._N_CTX, kernels._N_INPUTS) == (cm.N_HASHED, cm.N_CTX,
                                                                       cm.N_INPUTS)
    assert kernels._HALF == cm._HALF and kernels._H2 == cm._H2 and kernels._FNV == cm._FNV
