"""The engine with mock predictors (no trained weights needed)."""
import io

import numpy as np
import pytest

import nncompress
from nncompress import engine
from nncompress.format import container
from nncompress.predictors.base import PredictorIdentity
from nncompress.predictors.order0 import Order0
from helpers import decode_with as _decode


class Recorder:
    """Uniform-ish predictor that records every call, to check the lockstep protocol."""

    def __init__(self):
        self.identity = PredictorIdentity("order0", settings={"limit": 1})
        self.calls = []

    def start(self, n):
        self.calls.append(("start", n))
        self.n = n
        return np.ones((n, 256), dtype=np.int64)

    def step(self, symbols):
        assert len(symbols) <= self.n
        self.n = len(symbols)
        self.calls.append(("step", tuple(int(x) for x in symbols)))
        w = np.ones((len(symbols), 256), dtype=np.int64)
        w[np.arange(len(symbols)), symbols] = 50  # favour repeating the last byte
        return w


def _encode(data, pred, s, seg_steps=None):
    out = io.BytesIO()
    stats = engine.encode(io.BytesIO(data), len(data), out, pred, s, seg_steps)
    return out.getvalue(), stats


@pytest.mark.parametrize("n,s,seg", [(10, 4, 1), (10, 4, 3), (17, 5, 4), (1, 1, 7), (100, 3, 1000)])
def test_lockstep_calls_are_identical_both_ways(n, s, seg):
    data = bytes((i * 37) % 251 for i in range(n))
    s = engine.fit_streams(n, s)
    enc_pred, dec_pred = Recorder(), Recorder()
    blob, stats = _encode(data, enc_pred, s, seg)
    assert _decode(blob, dec_pred) == data
    assert enc_pred.calls == dec_pred.calls
    # every byte but the very last step's is fed back to the predictor exactly once
    lens = container.stream_lengths(n, s)
    fed = sum(len(c[1]) for c in enc_pred.calls if c[0] == "step")
    assert fed == n - sum(1 for ln in lens if ln == lens[0])
    # streams are contiguous slices: the first step carries the first byte of each stream
    first = enc_pred.calls[1][1] if len(enc_pred.calls) > 1 else ()
    span = lens[0]
    assert list(first) == [data[k * span] for k in range(len(first))]
    assert stats.n_segments == -(-lens[0] // seg)


def test_fit_and_choose_streams():
    assert engine.choose_streams(0) == 1
    assert engine.choose_streams(1000) == 1
    assert engine.choose_streams(10 << 16) == 10
    assert engine.choose_streams(10 ** 9) == 64
    for n in range(1, 200):
        for want in (1, 2, 3, 7, 50, 500):
            s = engine.fit_streams(n, want)
            assert 1 <= s <= min(want, n) and container.valid_stream_count(n, s)


def test_progress_counts_every_byte_and_measure_matches_size():
    rng = np.random.default_rng(0)
    data = bytes(rng.integers(97, 101, 30000).astype(np.uint8))
    seen = []
    out = io.BytesIO()
    stats = engine.encode(io.BytesIO(data), len(data), out, Order0(), 3, 5000, progress=seen.append)
    assert sum(seen) == len(data)
    m = engine.measure(io.BytesIO(data), len(data), Order0(), 3, 5000)
    assert m.ideal_bits == pytest.approx(stats.ideal_bits)
    payload_bits = 8 * stats.compressed_bytes
    assert m.ideal_bits < payload_bits < m.ideal_bits + 8 * 400  # header, records, coder flush


def test_wrong_predictor_is_detected_not_silent():
    data = b"the quick brown fox jumps over the lazy dog " * 50
    blob, _ = _encode(data, Order0(), 2)
    with pytest.raises(Exception) as e:
        _decode(blob, Order0(limit=64))
    from nncompress.errors import NNCError
    assert isinstance(e.value, NNCError)


@pytest.mark.parametrize("model", ["ctx1", "order0"])
def test_coder_process_writes_the_same_bytes(model):
    """Coding in a second process (what large inputs get) gives the in-process bytes exactly,
    across several segments and steps wider than one shared-memory slot."""
    from nncompress.predictors import spec as specs
    from nncompress.engine.coder_process import SLOT_ROWS
    rng = np.random.default_rng(5)
    data = bytes(rng.integers(97, 100, 38500, dtype=np.uint8)) + b"the end" * 500  # 42000
    streams = SLOT_ROWS + 52                              # 2100 streams of 20 bytes
    assert container.valid_stream_count(len(data), streams)
    outs, bits = [], []
    for cp in (False, True):
        out = io.BytesIO()
        st = engine.encode(io.BytesIO(data), len(data), out, specs.build_predictor(model),
                           streams, 3, coder_process=cp)
        outs.append(out.getvalue())
        bits.append(st.ideal_bits)
    assert outs[0] == outs[1] and bits[0] == pytest.approx(bits[1], rel=1e-12)
    assert nncompress.decompress(outs[1]) == data


def test_a_dead_coder_process_is_an_os_error():
    from nncompress.engine.coder_process import CoderProcess
    cp = CoderProcess()
    try:
        cp._proc.kill()
        cp._proc.wait()
        with pytest.raises(OSError, match="coder process"):
            cp.begin()
            cp.code(np.zeros(3, dtype=np.int64), np.ones((3, 256), dtype=np.int64))
            cp.end()
    finally:
        cp.close()
