"""ContextModel: the interface contract, determinism, what a batch changes, and that it learns."""

import numpy as np
import pytest

from nncompress.format import coding
from nncompress.predictors.base import PredictorIdentity
from nncompress.predictors.context import DEFAULT_SETTINGS, ContextModel

from helpers import CORPORA

# Small tables keep the tests fast (the defaults allocate ~200 MB lazily; that is fine too).
SMALL = {"hash_bits": 12}


def _pseudo_english(n_bytes: int, seed: int = 0) -> bytes:
    words = ("the of and to a in that it was he for on are with as his they be at one have this "
             "from or had by hot word but what some we can out other were all there when up use "
             "your how said an each she which do their time if will way about many then them "
             "write would like so these her long make thing see him two has look more day could "
             "go come did number sound no most people my over know water than call first who may "
             "down side been now find").split()
    rng = np.random.default_rng(seed)
    out, size = [], 0
    while size < n_bytes:
        sentence = " ".join(words[i] for i in rng.integers(0, len(words), rng.integers(4, 12)))
        sentence = sentence[0].upper() + sentence[1:] + (". " if rng.integers(0, 5) else ".\n")
        out.append(sentence)
        size += len(sentence)
    return "".join(out).encode()[:n_bytes]


def _run(model, streams, check=None):
    """Feed contiguous streams in lockstep as the engine does; returns per-stream weight rows.

    streams: list of 1-D int arrays, longest first (ended streams are the trailing ones)."""
    S = len(streams)
    lens = [len(x) for x in streams]
    assert lens == sorted(lens, reverse=True)
    out = [[] for _ in range(S)]
    W = model.start(S)
    for t in range(max(lens, default=0)):
        A = sum(1 for n in lens if n > t)
        if check:
            check(W, A)
        for i in range(A):
            out[i].append(W[i])
        A_next = sum(1 for n in lens if n > t + 1)
        if A_next == 0:
            break
        W = model.step(np.array([streams[i][t] for i in range(A_next)], dtype=np.int64))
    return [np.array(rows, dtype=np.int64).reshape(-1, 256) for rows in out]


def _bits_per_byte(weights: np.ndarray, data: np.ndarray) -> float:
    return coding.code_length_bits(coding.quantize(weights), data) / len(data)


def _check_weights(W, A):
    assert W.shape == (A, 256)
    assert W.dtype == np.int64
    assert W.min() >= 0
    assert W.sum(axis=1).max() < coding.MAX_WEIGHT_SUM


def test_identity_and_defaults():
    m = ContextModel()
    assert m.identity == PredictorIdentity(name="ctx1", settings=DEFAULT_SETTINGS)
    assert ContextModel(**m.identity.settings).identity == m.identity
    assert ContextModel(max_order=3).identity.settings["max_order"] == 3
    with pytest.raises(ValueError):
        ContextModel(colour=1)
    with pytest.raises(ValueError):
        ContextModel(limit=255)
    with pytest.raises(ValueError):
        ContextModel(max_order=1.5)


@pytest.mark.parametrize("S", [1, 2, 7])
def test_weights_contract_with_shrinking_batch(S):
    rng = np.random.default_rng(S)
    data = np.frombuffer(_pseudo_english(3000, seed=S), dtype=np.uint8).astype(np.int64)
    data[::97] = rng.integers(0, 256, len(data[::97]))  # some binary noise
    # unequal lengths: streams end one after the other, down to a single one
    cuts = sorted(rng.integers(1, len(data), S - 1).tolist()) if S > 1 else []
    streams = sorted(np.split(data, cuts), key=len, reverse=True)
    rows = _run(ContextModel(**SMALL), streams, check=_check_weights)
    assert [len(r) for r in rows] == [len(x) for x in streams]


def test_step_contract():
    m = ContextModel(**SMALL)
    with pytest.raises(RuntimeError):
        m.step(np.array([1]))
    assert m.start(3).shape == (3, 256)
    assert m.step(np.array([1, 2, 3])).shape == (3, 256)
    with pytest.raises(ValueError):
        m.step(np.array([1, 2, 3, 4]))  # A never grows
    with pytest.raises(ValueError):
        m.step(np.array([256, 0]))
    assert m.step(np.array([4])).shape == (1, 256)
    assert m.step(np.zeros(0, dtype=np.int64)).shape == (0, 256)
    m.start(0)


def test_deterministic_and_restartable():
    data = np.frombuffer(_pseudo_english(4000, seed=3), dtype=np.uint8).astype(np.int64)
    streams = [data[:1500], data[1500:2800], data[2800:]]
    a = _run(ContextModel(**SMALL), streams)
    m = ContextModel(**SMALL)
    _run(m, [data[:100]])
    b = _run(m, streams)  # start() resets every table
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


def test_compiled_step_matches_numpy_reference():
    """step() is one compiled kernel; the numpy reference methods must give the very same
    weights, with one stream and with two (more cases in test_kernels.py)."""
    data = np.frombuffer(_pseudo_english(6000, seed=4), dtype=np.uint8).astype(np.int64)
    data[::50] = 255  # also halving (limit is small) and rare bytes
    fast = ContextModel(limit=20, **SMALL)
    slow = ContextModel(limit=20, **SMALL)
    slow.use_kernels = False
    for streams in ([data], [data[:4000], data[4000:]]):
        for x, y in zip(_run(fast, streams), _run(slow, streams)):
            assert np.array_equal(x, y)


def test_batch_composition():
    """What holds for a batch: the count tables are shared by the streams (that helps
    compression), so a stream's weights depend on the whole batch, not on its own bytes alone.
    - S = 1 gives the same weights as any fresh run of that stream (tested above);
    - the same bytes in every stream give the same weights in every stream;
    - the weights differ from a stream coded alone (the tables saw the other streams too)."""
    data = np.frombuffer(_pseudo_english(2000, seed=5), dtype=np.uint8).astype(np.int64)
    alone = _run(ContextModel(**SMALL), [data])[0]
    twins = _run(ContextModel(**SMALL), [data, data, data])
    assert np.array_equal(twins[0], twins[1]) and np.array_equal(twins[0], twins[2])
    assert np.array_equal(twins[0][0], alone[0])  # nothing seen yet
    assert not np.array_equal(twins[0], alone)


def test_learns_pseudo_english():
    raw = _pseudo_english(20000, seed=6)
    data = np.frombuffer(raw, dtype=np.uint8).astype(np.int64)
    bpb = _bits_per_byte(_run(ContextModel(), [data])[0], data)
    # adaptive order-0 baseline (counts + 1), the same integer tables and code length
    counts = np.ones(256, dtype=np.int64)
    base = np.empty((len(data), 256), dtype=np.int64)
    for i, x in enumerate(data):
        base[i] = counts
        counts[x] += 1
    order0 = _bits_per_byte(base, data)
    assert order0 > 4.0
    assert bpb < 3.5
    assert bpb < order0 - 1.0


@pytest.mark.slow
def test_alice29_beats_gzip():
    """Ideal code length on alice29.txt (152 KB, a few seconds) below gzip -9's 2.85 bits/byte."""
    path = CORPORA / "canterbury" / "alice29.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present (the evaluation corpora live in ../shared/corpora)")
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8).astype(np.int64)
    m = ContextModel()
    bits = 0.0
    W = m.start(1)
    chunk = []
    for i, x in enumerate(data):
        chunk.append(W[0])
        if len(chunk) == 8192 or i == len(data) - 1:
            n = len(chunk)
            bits += coding.code_length_bits(coding.quantize(np.array(chunk)), data[i + 1 - n:i + 1])
            chunk = []
        W = m.step(data[i:i + 1])
    assert bits / len(data) < 2.85


def test_many_streams_on_one_count_saturate_and_halve():
    S = 300  # more increments of one count in one step than a uint8 holds
    m = ContextModel(**SMALL)
    W = m.start(S)
    for _ in range(4):
        W = m.step(np.full(S, ord("a"), dtype=np.int64))
        _check_weights(W, S)
    assert (W.argmax(axis=1) == ord("a")).all()
    assert int(m._counts.max()) <= m.settings["limit"]


def test_ctx2_is_the_same_model_with_its_own_defaults():
    """ctx2 differs from ctx1 only by its default settings (orders 0-7, low escapes), which its
    identity records in full; an unknown name is refused."""
    from nncompress.predictors.context import CTX2_SETTINGS
    small2 = {**CTX2_SETTINGS, **SMALL}
    a, b = ContextModel("ctx2", **SMALL), ContextModel("ctx1", **small2)
    assert a.identity.name == "ctx2" and a.identity.settings == small2
    assert ContextModel("ctx2").identity.settings["max_order"] == 7
    data = np.frombuffer(_pseudo_english(3000), dtype=np.uint8).astype(np.int64)
    streams = [data[:1600], data[1600:]]
    wa, wb = _run(a, streams, _check_weights), _run(b, streams)
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))
    wc = _run(ContextModel("ctx1", **SMALL), streams)
    assert not all(np.array_equal(x, y) for x, y in zip(wa, wc))
    with pytest.raises(ValueError, match="unknown context model 'ctx3'"):
        ContextModel("ctx3")
