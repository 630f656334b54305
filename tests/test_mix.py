"""The online ensemble mixer: protocol, exactness, and that it learns which member to trust."""
import io

import numpy as np
import pytest

import nncompress
from nncompress import coding, engine, models
from nncompress.errors import ModelMismatchError
from nncompress.predictors.base import PredictorIdentity
from nncompress.predictors.mix import Mixture
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
    m1 = Mixture([Order0(), models.load_predictor(models.ModelRef("ctx1"))])
    m2 = Mixture([Order0(), models.load_predictor(models.ModelRef("ctx1"))])
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
    assert h.predictor_name == "mix"
    assert [m["name"] for m in h.settings["members"]] == ["ctx1", "order0"]
    assert nncompress.decompress(blob) == data
    # a member this version does not know -> refused, naming it
    from nncompress import container
    s = dict(h.settings)
    s["members"] = [dict(s["members"][0], name="ctx9"), s["members"][1]]
    forged = container.Header(h.original_length, h.n_streams, h.segment_steps, h.predictor_name,
                              h.model_sha256, s)
    rest = blob[len(container.pack_header(h)):]
    with pytest.raises(ModelMismatchError, match="ctx9"):
        nncompress.decompress(container.pack_header(forged) + rest)


def test_mixing_a_useless_member_costs_little():
    data = (b"The Owl and the Pussy-cat went to sea in a beautiful pea-green boat. " * 60)
    ctx = nncompress.cross_entropy(data, model="ctx1")
    mixed = nncompress.cross_entropy(data, model="ctx1+order0")
    assert mixed - ctx < 0.05  # bits per byte: the fixed share's price on near-free text
