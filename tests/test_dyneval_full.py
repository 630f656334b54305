"""Full dynamic evaluation: the exact integer backward pass against float autograd, exactness of
the adapted files, and the gain."""
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nncompress  # noqa: E402
from nncompress import engine  # noqa: E402
from nncompress.predictors.fslstm import backward, dyneval, exact  # noqa: E402
from nncompress.predictors.fslstm.model import FSConfig, FSRNN  # noqa: E402
from nncompress.predictors.fslstm.predictor import FSLSTMPredictor, save_exact  # noqa: E402

from helpers import STATS_TEXT, TEXT, compress_in_fresh_processes, random_model as _random_model  # noqa: E402


def _exact_grads(cfg, q, x):
    """Integer gradient sums of one segment over x (S, T), as real numbers."""
    net = exact.ExactFSRNN(cfg, q)
    net.record = True
    sg = backward.SegmentGrads(net)
    w = net.start(x.shape[0])
    for t in range(x.shape[1]):
        sg.add(dyneval.error_q16(net.ops, w, x[:, t]), net.hF, net.tape)
        w = net.step(x[:, t])
    G = sg.backward()
    return {n: G[n].astype(np.float64) / 2.0 ** backward.grad_bits(n, q)[1] for n in G}


def _float_grads(cfg, sd, x):
    m = FSRNN(FSConfig.from_dict(cfg)).eval()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    xt = torch.from_numpy(x)
    logits, _ = m(xt[:, :-1])
    # the first prediction comes from the zero state: the model's output for it is out_b alone
    logits = torch.cat([m.out_b.expand(x.shape[0], 1, 256), logits], 1)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), xt.reshape(-1),
                                             reduction="sum")
    loss.backward()
    return {n: p.grad.double().numpy() for n, p in m.named_parameters()}


def _cos(a, b):
    a, b = a.ravel(), b.ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))


@pytest.mark.parametrize("k", [2, 3])
def test_integer_backward_matches_float_autograd(k):
    cfg, sd = _random_model(k=k, seed=5)
    q = exact.quantize_model(cfg, sd)
    x = np.frombuffer(TEXT[:3 * 12], dtype=np.uint8).reshape(3, 12).astype(np.int64)
    G = _exact_grads(cfg, q, x)
    Fg = _float_grads(cfg, sd, x)
    n_in = {c: sd[f"{c}.W"].shape[0] - sd[f"{c}.ln_gain"].shape[0] // 4
            for c in [f"fast.{i}" for i in range(k)] + ["slow"]}
    pairs = {"out_W": Fg["out_W"], "out_b": Fg["out_b"]}
    for c in n_in:
        pairs[f"{c}.Wh"] = Fg[f"{c}.W"][n_in[c]:]
    pairs["fast.1.Wx"] = Fg["fast.1.W"][: n_in["fast.1"]]
    pairs["slow.Wx"] = Fg["slow.W"][: n_in["slow"]]
    for c in ["fast.1", "slow"] + [f"fast.{i}" for i in range(2, k)]:
        pairs[f"{c}.b"] = Fg[f"{c}.b"]
    for name, ref in pairs.items():
        assert _cos(G[name], ref) > 0.999, name
        assert 0.99 < np.linalg.norm(G[name]) / np.linalg.norm(ref) < 1.01, name
    # fast.0's input table T[v] = E[v] W_x + b: dL/db = sum_v dL/dT[v], dL/dE[v] = dL/dT[v] W_x^T
    W1x = sd["fast.0.W"][: n_in["fast.0"]].astype(np.float64)
    assert _cos(G["in_table"].sum(0), Fg["fast.0.b"]) > 0.999
    assert _cos(G["in_table"] @ W1x.T, Fg["embedding"]) > 0.999


@pytest.fixture(scope="module")
def full_model(tmp_path_factory):
    cfg, sd = _random_model(seed=3)
    q = exact.quantize_model(cfg, sd)
    q.update(dyneval.measure_stats(cfg, q, STATS_TEXT, streams=4, segment=8, scope="full"))
    cfg = {**cfg, "dyneval": {"settings": {"lr": 3e-3, "scope": "full"}}}
    path = tmp_path_factory.mktemp("defull") / "tiny-full.pt"
    save_exact(path, cfg, q)
    return path, cfg, q


def test_full_statistics_cover_every_adapted_parameter(full_model):
    _, cfg, q = full_model
    for name in backward.full_params(cfg):
        ms = q[f"de.ms.{name}"]
        assert ms.shape == np.asarray(q[name]).shape and ms.max() >= 1 << (dyneval.MS_BITS - 2)


def _bits(pred, data, streams):
    return engine.measure(io.BytesIO(data), len(data), pred, streams).ideal_bits


def test_full_adapts_more_than_the_output_layer(full_model):
    _, cfg, q = full_model
    data = TEXT * 2
    mk = lambda de: FSLSTMPredictor("tiny", bytes(32), cfg, q, "cpu", de)
    static = _bits(mk(None), data, 2)
    out = _bits(mk(dyneval.DynEvalSettings(lr=3e-3, scope="out")), data, 2)
    full_pred = mk(dyneval.DynEvalSettings(lr=3e-3, scope="full"))
    full = _bits(full_pred, data, 2)
    assert full_pred.de.updates > 10
    assert full < out < static


def test_full_round_trip_threads_torch_backend_and_header(full_model, monkeypatch):
    path, cfg, q = full_model
    data = TEXT[:900]
    blob = nncompress.compress(data, model=str(path), streams=3)
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.settings["dyneval"]["arith"] == "de-full-v1"
    assert nncompress.decompress(blob, model=str(path)) == data
    # the torch backend (what CUDA runs) computes the same adapted tables
    de = dyneval.DynEvalSettings(lr=3e-3, scope="full")
    a = FSLSTMPredictor("tiny", bytes(32), cfg, q, "cpu", de)
    b = FSLSTMPredictor("tiny", bytes(32), cfg, q, "cpu", de, backend="torch")
    x = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    wa, wb = a.start(3), b.start(3)
    for t in range(200):
        assert np.array_equal(wa, wb)
        n = 3 if t < 150 else 2
        wa, wb = a.step(x[3 * t % 600: 3 * t % 600 + n]), b.step(x[3 * t % 600: 3 * t % 600 + n])
    assert a.de.updates > 20
    for name in a.de.params:
        assert np.array_equal(np.asarray(a.net.p[name]), b.net.p[name].cpu().numpy()), name


@pytest.mark.slow   # the slow tier (CI runs it after the fast one)
def test_same_bytes_with_one_and_two_threads_in_fresh_processes(full_model, tmp_path):
    path, _, _ = full_model
    src = tmp_path / "text"
    src.write_bytes(TEXT * 3)
    outs = compress_in_fresh_processes(path, src, 3)
    assert outs[0] == outs[1]
    h = nncompress.read_header(io.BytesIO(outs[0]))
    assert h.settings["dyneval"]["arith"] == "de-full-v1"
    assert nncompress.decompress(outs[0], model=str(path)) == TEXT * 3


@pytest.mark.slow   # the slow tier (CI runs it after the fast one)
def test_cli_scope_option(full_model, tmp_path):
    from click.testing import CliRunner
    from nncompress.cli import main
    path, _, _ = full_model
    src = tmp_path / "t.txt"
    src.write_bytes(TEXT)
    for scope, arith in (("out", "de-out-v1"), ("full", "de-full-v1")):
        r = CliRunner().invoke(main, ["c", "-f", "-m", str(path), "--de-scope", scope,
                                      "--verify", str(src)])
        assert r.exit_code == 0, r.output
        info = CliRunner().invoke(main, ["info", str(tmp_path / "t.txt.nnc")]).output
        assert f'"dyneval":{{"arith":"{arith}"' in info   # the CLI writes framed files
    r = CliRunner().invoke(main, ["c", "-f", "-m", str(path), "--de-scope", "full",
                                  "--de-segment", "5000", str(src)])
    assert r.exit_code == 1 and "at least every 1024 steps" in r.output
