"""The online ensemble mixers (linear, and linear plus the geometric stage): protocol, exactness,
and that they learn which member to trust."""
import hashlib
import io
import math

import numpy as np
import pytest

import nncompress
from nncompress import engine
from nncompress.predictors.context import ContextModel
from nncompress.format import coding, container
from nncompress.errors import ModelMismatchError
from nncompress.predictors.base import PredictorIdentity
from nncompress.predictors import mix
from nncompress.predictors.mix import GeoMixture, Mixture
from nncompress.predictors.order0 import Order0


class Oracle:
    """Knows the text: puts most mass on the true next byte in the given half of each stream."""

    def __init__(self, text: bytes, good_half: int, name: str):
        self.text, self.good_half = text, good_half
        self.identity = PredictorIdentity(name)

    def _w(self):
        w = np.ones((self.a, 256), dtype=np.int64)
        for s in range(self.a):
            pos = s * self.span + self.t
            if pos < len(self.text) and (self.t * 2 // self.span) == self.good_half:
                w[s, self.text[pos]] = 200
        return w

    def start(self, n):
        self.a, self.t = n, 0
        self.span = -(-len(self.text) // n)
        return self._w()

    def step(self, symbols):
        self.a, self.t = len(symbols), self.t + 1
        return self._w()


def _with_settings(blob: bytes, sha256: bytes | None = None, **change) -> bytes:
    """`blob` with some predictor settings (and optionally the model hash) in its header replaced
    (the records left as they are)."""
    h = nncompress.read_header(io.BytesIO(blob))
    forged = container.Header(h.original_length, h.n_streams, h.segment_steps, h.predictor_name,
                              sha256 or h.model_sha256, dict(h.settings, **change))
    return container.pack_header(forged) + blob[len(container.pack_header(h)):]


def _bits(pred, data, s):
    return engine.measure(io.BytesIO(data), len(data), pred, s).ideal_bits


def test_mixer_tracks_the_better_member_per_region():
    rng = np.random.default_rng(0)
    text = bytes(rng.integers(0, 256, 4000).astype(np.uint8))
    a, b = Oracle(text, 0, "order0"), Oracle(text, 1, "ctx1")
    mix_bits = _bits(Mixture([Oracle(text, 0, "order0"), Oracle(text, 1, "ctx1")]), text, 2)
    assert mix_bits < 0.5 * min(_bits(a, text, 2), _bits(b, text, 2))


def test_mixture_weights_are_exact_and_bounded():
    data = b"abracadabra, abracadabra! " * 200
    m1 = Mixture([Order0(), ContextModel("ctx1")])
    m2 = Mixture([Order0(), ContextModel("ctx1")])
    w1, w2 = m1.start(3), m2.start(3)
    arr = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    for t in range(300):
        assert np.array_equal(w1, w2)
        assert w1.min() >= 1 and w1.sum(axis=1).max() < coding.MAX_WEIGHT_SUM
        a = 3 if t < 200 else 2  # a stream ends: the mixer must follow the shrinking batch
        w1, w2 = m1.step(arr[t:t + a]), m2.step(arr[t:t + a])
        assert w1.shape == (a, 256)


def test_ensemble_round_trip_header_and_missing_member():
    data = (b"It was a bright cold day in April, and the clocks were striking thirteen. " * 40)
    blob = nncompress.compress(data, model="ctx1+order0")
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.predictor_name == "gmix" and h.settings["arith"] == "geo-v1"
    assert [m["name"] for m in h.settings["members"]] == ["ctx1", "order0"]
    assert nncompress.decompress(blob) == data
    # a member this version does not know (in a file whose ensemble identity names it, as a
    # newer version would write it) -> refused, naming it
    members = [dict(h.settings["members"][0], name="ctx9"), h.settings["members"][1]]
    ident = hashlib.sha256(b"".join(m["name"].encode() + b"\0" + bytes.fromhex(m["sha256"])
                                    for m in members)).digest()
    with pytest.raises(ModelMismatchError, match="ctx9"):
        nncompress.decompress(_with_settings(blob, sha256=ident, members=members))
    # the same members under the old identity: a forged or damaged header
    with pytest.raises(ModelMismatchError, match="identity"):
        nncompress.decompress(_with_settings(blob, members=members))


def test_mixing_a_useless_member_costs_little():
    data = (b"The Owl and the Pussy-cat went to sea in a beautiful pea-green boat. " * 60)
    ctx = nncompress.cross_entropy(data, model="ctx1")
    mixed = nncompress.cross_entropy(data, model="ctx1+order0")
    assert mixed - ctx < 0.05  # bits per byte: the fixed share's price on near-free text


class Half:
    """Knows half of each byte: uniform over the 4 bytes (of 16) that share its high or low bits."""

    def __init__(self, text: bytes, high: bool, name: str):
        self.text, self.high = text, high
        self.identity = PredictorIdentity(name)

    def _w(self):
        w = np.ones((self.a, 256), dtype=np.int64)
        for s in range(self.a):
            pos = s * self.span + self.t
            if pos < len(self.text):
                y = self.text[pos]
                for v in range(16):
                    if (v >> 2 == y >> 2) if self.high else (v & 3 == y & 3):
                        w[s, v] = 1000
        return w

    start = Oracle.start
    step = Oracle.step


def test_geometric_stage_combines_complementary_members():
    # Each member narrows the byte to 4 of 16; only their product pins it down. A linear mixture
    # cannot do better than about 2 bits per byte, the geometric stage learns to multiply.
    rng = np.random.default_rng(1)
    text = bytes(rng.integers(0, 16, 3000).astype(np.uint8))
    def members():
        return [Half(text, True, "order0"), Half(text, False, "ctx1")]
    lin = _bits(Mixture(members()), text, 2) / len(text)
    geo = _bits(GeoMixture(members()), text, 2) / len(text)
    assert lin > 1.9 and geo < 0.6 * lin


def test_geometric_tables_are_the_rounded_functions():
    # Built with integers only; they must equal the float functions rounded (at most 1 off).
    want_log = [round(4096 * math.log2(1 + i / 4096)) for i in range(4096)]
    want_exp = [round(2 ** 29 * 2 ** (-j / 4096)) for j in range(4096)]
    assert np.abs(mix._LOG2 - want_log).max() <= 1
    assert np.abs(mix._EXP2 - want_exp).max() <= 1
    p = np.concatenate([np.arange(1, 5000), np.random.default_rng(2).integers(1, 1 << 22, 5000),
                        [1 << 22]]).astype(np.int64)
    got = mix.log2_q12(p) / 4096
    assert np.abs(got - np.log2(p / 2 ** 22)).max() < 2 ** -11
    d = np.arange(0, 40 * 4096, 7, dtype=np.int64)
    e = mix.exp2_neg_q12(d)
    assert np.abs(e - np.floor(2 ** 29 * 2.0 ** (-d / 4096))).max() <= 1 + 2 ** 29 * 2 ** -13
    assert e[-1] == 0 and e[0] == 1 << 29


def test_geometric_mixture_is_exact_and_bounded_with_shrinking_batches():
    data = b"abracadabra, abracadabra! " * 200
    def make():
        return GeoMixture([Order0(), ContextModel("ctx1")])
    m1, m2 = make(), make()
    w1, w2 = m1.start(3), m2.start(3)
    arr = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    for t in range(300):
        assert np.array_equal(w1, w2)
        assert w1.min() >= 0 and w1.max() == 1 << 29
        assert w1.sum(axis=1).max() < coding.MAX_WEIGHT_SUM
        a = 3 if t < 200 else 2
        w1, w2 = m1.step(arr[t:t + a]), m2.step(arr[t:t + a])
        assert w1.shape == (a, 256)
    assert np.abs(m1.w).max() <= mix.W_LIMIT and not np.array_equal(m1.w[:, -1], [1 << 16] * 4)


@pytest.mark.parametrize("change", [{"arith": "geo-v9"}, {"lr_shift": 99}, {"lr_shift": "x"}])
def test_unknown_geometric_mixer_settings_are_refused(change):
    data = b"one two three four five six seven eight nine ten " * 20
    blob = nncompress.compress(data, model="ctx1+order0")
    with pytest.raises(ModelMismatchError, match="not understood"):
        nncompress.decompress(_with_settings(blob, **change))
