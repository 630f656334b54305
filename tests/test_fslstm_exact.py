"""The integer-exact FS-LSTM: agreement with the float model, and the same bits everywhere."""
import hashlib
import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nncompress.predictors import modelfiles  # noqa: E402
from nncompress.format import coding  # noqa: E402
from nncompress.errors import ModelError  # noqa: E402
from nncompress.predictors.fslstm import exact  # noqa: E402
from nncompress.tools.export import float_bits, exact_bits  # noqa: E402
from nncompress.predictors.fslstm.predictor import FSLSTMPredictor, read_exact, save_exact  # noqa: E402

from helpers import TEXT, random_model as _random_model, step_tables  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    cfg, sd = _random_model()
    return cfg, sd, exact.quantize_model(cfg, sd)


@pytest.mark.parametrize("k", [2, 3])
def test_exact_tracks_float_cross_entropy(k):
    cfg, sd = _random_model(k=k, seed=k)
    q = exact.quantize_model(cfg, sd)
    fb = float_bits(cfg, sd, TEXT, 4)
    eb, _ = exact_bits(cfg, q, TEXT, 4)
    assert abs(eb - fb) / fb < 0.002


def test_batch_composition_invariance(tiny):
    cfg, _, q = tiny
    a, b, c = TEXT[:300], TEXT[300:600], TEXT[600:900]
    alone = step_tables(exact.ExactFSRNN(cfg, q), [a])[0]
    batched = step_tables(exact.ExactFSRNN(cfg, q), [b, a, c])[1]
    assert np.array_equal(alone, batched)


def test_numpy_and_torch_give_identical_weights(tiny):
    cfg, _, q = tiny
    s = [TEXT[:200], TEXT[200:400]]
    np_w = step_tables(exact.ExactFSRNN(cfg, q, backend="numpy"), s)
    t_w = step_tables(exact.ExactFSRNN(cfg, q, backend="torch", device="cpu"), s)
    assert np.array_equal(np_w, t_w)
    assert np_w.sum(-1).max() < coding.MAX_WEIGHT_SUM


def test_isqrt_is_exact_at_edges():
    v = np.array([0, 1, 2, 3, 4, 15, 16, 17, (1 << 26) - 1, 1 << 26, (1 << 52) + 1,
                  ((1 << 30) - 1) ** 2, ((1 << 30) - 1) ** 2 - 1, (1 << 60) + 12345], dtype=np.int64)
    r = exact._NumpyOps.isqrt(v)
    assert [int(x) for x in r] == [math.isqrt(int(x)) for x in v]
    rt = exact._TorchOps("cpu").isqrt(torch.from_numpy(v))
    assert rt.tolist() == [math.isqrt(int(x)) for x in v]


def _compress_in_subprocess(model_path, data_path, threads):
    """Compress in a fresh process limited to `threads` CPU threads (torch, BLAS, OpenMP)."""
    import os
    code = ("import sys, torch, nncompress; torch.set_num_threads(int(sys.argv[3]));"
            "d = open(sys.argv[1], 'rb').read();"
            "sys.stdout.buffer.write(nncompress.compress(d, model=sys.argv[2], device='cpu'))")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    p = subprocess.run([sys.executable, "-c", code, str(data_path), str(model_path), str(threads)],
                       capture_output=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


@pytest.mark.slow   # the slow tier (CI runs it after the fast one)
def test_model_file_round_trip_threads_and_fresh_processes(tiny, tmp_path):
    cfg, _, q = tiny
    path = tmp_path / "tiny-rand.pt"
    save_exact(path, cfg, q)
    cfg2, q2 = read_exact(path)
    assert cfg2 == cfg and all(np.array_equal(np.asarray(q[k]), np.asarray(q2[k])) for k in q)
    data = tmp_path / "text"
    data.write_bytes(TEXT * 3)
    one = _compress_in_subprocess(path, data, 1)
    two = _compress_in_subprocess(path, data, 2)
    assert one == two
    import nncompress
    assert nncompress.decompress(one, model=str(path)) == TEXT * 3
    # the torch backend (what CUDA runs) decodes the numpy backend's file
    ref = modelfiles.resolve(str(path))
    pred = FSLSTMPredictor(ref.name, ref.sha256, cfg, q, device="cpu")
    pred.net = exact.ExactFSRNN(cfg, q, backend="torch", device="cpu")
    pred.backend = "torch"
    import io
    src = io.BytesIO(one)
    h = nncompress.read_header(src)
    sink = io.BytesIO()
    nncompress.decompress_stream(src, sink, header=h, predictor=pred)
    assert sink.getvalue() == TEXT * 3


def test_model_record_hash_is_checked(tiny, tmp_path):
    cfg, _, q = tiny
    path = tmp_path / "m.pt"
    save_exact(path, cfg, q)
    (tmp_path / "m.json").write_text('{"sha256": "%s"}' % ("0" * 64))
    with pytest.raises(ModelError, match="does not match"):
        modelfiles.resolve(str(path))
    (tmp_path / "m.json").write_text('{"sha256": "%s"}' % hashlib.sha256(path.read_bytes()).hexdigest())
    assert modelfiles.resolve(str(path)).sha256 == hashlib.sha256(path.read_bytes()).digest()


def test_model_file_must_be_plain_data(tmp_path):
    evil = tmp_path / "evil.pt"

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "nncompress-fslstm-exact", "x": Boom()}, evil)
    with pytest.raises(ModelError, match="cannot read"):
        read_exact(evil)


def test_floordiv_is_exact_floor_division():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.integers(-(1 << 52), 1 << 52, 20000), rng.integers(-1000, 1000, 2000),
                        np.array([0, 1, -1, (1 << 52) - 1, -(1 << 52) + 1, 6 * 7, -6 * 7])])
    b = np.concatenate([rng.integers(1, 1 << 26, 20000), rng.integers(1, 50, 2000),
                        np.array([1, 1, 1, 3, 3, 7, 7])])
    b[:5000] = rng.integers(1, 1 << 52, 5000)
    assert np.array_equal(exact._NumpyOps.floordiv(a, b), a // b)
    bb = b[5000:8000]                                              # < 2**26
    near = bb * rng.integers(-(1 << 26), 1 << 26, 3000)            # exact multiples and their
    for delta in (-1, 0, 1):                                       # neighbours: where a float
        x = near + delta                                           # quotient is most often off
        assert np.array_equal(exact._NumpyOps.floordiv(x, bb), x // bb)
    t = exact._TorchOps("cpu").floordiv(torch.from_numpy(a), torch.from_numpy(b))
    assert np.array_equal(t.numpy(), a // b)
