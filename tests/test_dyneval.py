"""Exact dynamic evaluation of the FS-LSTM output layer: the rule, the gain, the same bits everywhere."""
import io
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nncompress  # noqa: E402
from nncompress.predictors import modelfiles, registry  # noqa: E402
from nncompress.errors import ModelError, ModelMismatchError  # noqa: E402
from nncompress.predictors.fslstm import dyneval, exact  # noqa: E402
from nncompress.predictors.fslstm.predictor import FSLSTMPredictor, read_exact, save_exact  # noqa: E402

from helpers import STATS_TEXT, TEXT, compress_in_fresh_processes, random_model as _random_model  # noqa: E402


@pytest.fixture(scope="module")
def de_model(tmp_path_factory):
    cfg, sd = _random_model(seed=3)
    q = exact.quantize_model(cfg, sd)
    q.update(dyneval.measure_stats(cfg, q, STATS_TEXT, streams=4, segment=8))
    cfg = {**cfg, "dyneval": {"settings": {"lr": 3e-3}}}
    path = tmp_path_factory.mktemp("de") / "tiny-de.pt"
    save_exact(path, cfg, q)
    return path, cfg, q


def test_stats_are_stored_as_integers_with_a_scale(de_model):
    path, cfg, q = de_model
    cfg2, q2 = read_exact(path)
    assert cfg2["dyneval"] == cfg["dyneval"]
    for name in dyneval.PARAMS:
        ms = q2[f"de.ms.{name}"]
        assert ms.dtype == np.int64 and ms.shape == np.asarray(q[name]).shape
        assert 0 <= ms.min() and ms.max() < 1 << dyneval.MS_BITS and ms.max() >= 1 << (dyneval.MS_BITS - 2)


def test_one_update_follows_the_rms_rule(de_model):
    """After one segment the accumulators moved by -lr * g / isqrt(N * N_REF) / (MS + eps), in the
    parameters' own fixed-point units, up to the floor roundings."""
    _, cfg, q = de_model
    s = dyneval.DynEvalSettings(segment=5, lr=2e-3, decay=0.0, eps=1e-4)
    net = exact.ExactFSRNN(cfg, q)
    de = dyneval.OutputDynEval(net, q, s)
    x = np.frombuffer(TEXT[:3 * 6], dtype=np.uint8).reshape(3, 6).astype(np.int64)
    hs, ws = [], []
    w = net.start(3)
    de.predicted(w)
    for t in range(5):
        hs.append(net.hF.copy())
        ws.append(w.copy())
        de.observe(x[:, t])
        w = net.step(x[:, t])
        de.predicted(w)
    assert de.updates == 1
    # the float reference of the same rule
    N = 15
    gW = sum(h.T.astype(np.float64) @ (np.floor(w_ * 65536 / w_.sum(1, keepdims=True))
                                       - 65536 * np.eye(256)[x[:, t]])
             for t, (h, w_) in enumerate(zip(hs, ws)))
    ms = q["de.ms.out_W"] * 2.0 ** -q["de.ms_exp.out_W"]
    scale = 2.0 ** (q["out_sw"] + dyneval.ACC - (exact.ACT + 16))
    want = -s.lr * gW / math.isqrt(N * dyneval.N_REF) * scale / (ms + s.eps)
    got = de.acc["out_W"] - (np.asarray(q["out_W"], dtype=np.int64) << dyneval.ACC)
    assert np.abs(want).max() > 100          # the update is not trivially zero
    _, R, _ = dyneval.multipliers("out_W", q, s)   # r is m rounded to 1 / 2**R
    tol = 2 + np.abs(gW) / (math.isqrt(N * dyneval.N_REF) * 2.0 ** (R + 1))
    assert (np.abs(got - want) <= tol).all()
    assert np.array_equal(net.p["out_W"], (de.acc["out_W"] >> dyneval.ACC).astype(np.float64))


def test_decay_pulls_back_toward_the_trained_weights(de_model):
    _, cfg, q = de_model
    net = exact.ExactFSRNN(cfg, q)
    de = dyneval.OutputDynEval(net, q, dyneval.DynEvalSettings(segment=1, lr=0.0, decay=0.5))
    a0 = de.acc0["out_W"]
    de.acc["out_W"] = a0 + (1 << 20)
    de.predicted(net.start(1))
    de.observe(np.array([65]))
    moved = de.acc["out_W"] - a0
    assert moved.max() < (1 << 20) and moved.min() >= 0   # part of the way back, never past it


def test_multipliers_stay_in_bounds_for_extreme_settings(de_model):
    _, _, q = de_model
    for s in (dyneval.DynEvalSettings(lr=1.0, eps=1e-12, decay=1.0),
              dyneval.DynEvalSettings(lr=1e-9, eps=10.0, decay=0.0)):
        for name in dyneval.PARAMS:
            r, R, d = dyneval.multipliers(name, q, s)
            assert R >= 0 and 0 <= r.min() and r.max() < 1 << dyneval.R_MAX_BITS
            assert 0 <= d.min() and d.max() <= 1 << dyneval.D_BITS


def test_settings_are_validated():
    with pytest.raises(ValueError):
        dyneval.DynEvalSettings(segment=0)
    with pytest.raises(ValueError):
        dyneval.DynEvalSettings(lr=float("nan"))
    with pytest.raises(ValueError):
        dyneval.DynEvalSettings.from_json({"arith": "de-out-v0", "segment": 8, "lr": 1, "decay": 0,
                                           "eps": 1})


def test_dynamic_evaluation_adapts_to_the_text(de_model):
    path, _, _ = de_model
    data = TEXT * 6
    static = nncompress.cross_entropy(data, model=str(path), device="cpu", streams=2,
                                      dynamic_eval=False)
    dynamic = nncompress.cross_entropy(data, model=str(path), device="cpu", streams=2,
                                       dynamic_eval=True)
    assert dynamic < 0.9 * static


def test_round_trip_header_and_ensemble(de_model):
    path, _, _ = de_model
    data = TEXT * 3 + bytes(range(256))
    blob = nncompress.compress(data, model=str(path), dynamic_eval={"segment": 4}, device="cpu")
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.settings["dyneval"] == {"arith": dyneval.ARITH, "segment": 4, "lr": 3e-3,
                                     "decay": 0.0, "eps": 1e-4}
    assert nncompress.decompress(blob, model=str(path)) == data
    static = nncompress.compress(data, model=str(path), device="cpu", dynamic_eval=False)
    assert "dyneval" not in nncompress.read_header(io.BytesIO(static)).settings
    assert blob != static
    auto = nncompress.compress(data, model=str(path), device="cpu")  # a model with statistics
    assert nncompress.read_header(io.BytesIO(auto)).settings["dyneval"]["segment"] == 8
    mix = nncompress.compress(data, model=f"{path}+ctx1", dynamic_eval=True, device="cpu")
    assert nncompress.decompress(mix, model=str(path)) == data


@pytest.mark.slow   # the slow tier (CI runs it after the fast one)
def test_torch_backend_decodes_the_numpy_file(de_model):
    """The torch backend (what CUDA runs) repeats the numpy backend's updates exactly."""
    path, cfg, q = de_model
    data = TEXT * 2
    blob = nncompress.compress(data, model=str(path), dynamic_eval=True, device="cpu", streams=3)
    src = io.BytesIO(blob)
    h = nncompress.read_header(src)
    ref = modelfiles.resolve(str(path))
    pred = FSLSTMPredictor(ref.name, ref.sha256, cfg, q, device="cpu",
                           de=dyneval.DynEvalSettings.from_json(h.settings["dyneval"]),
                           backend="torch")
    sink = io.BytesIO()
    nncompress.decompress_stream(src, sink, header=h, predictor=pred)
    assert sink.getvalue() == data
    assert pred.de.updates > 10


@pytest.mark.slow   # the slow tier (CI runs it after the fast one)
def test_same_bytes_with_one_and_two_threads_in_fresh_processes(de_model, tmp_path):
    path, _, _ = de_model
    src = tmp_path / "text"
    src.write_bytes(TEXT * 4)
    outs = compress_in_fresh_processes(path, src, 2)
    assert outs[0] == outs[1]
    assert nncompress.decompress(outs[0], model=str(path)) == TEXT * 4


def test_a_model_without_statistics_is_refused(tmp_path):
    cfg, sd = _random_model(seed=4)
    path = tmp_path / "plain.pt"
    save_exact(path, cfg, exact.quantize_model(cfg, sd))
    with pytest.raises(ModelError, match="no dynamic-evaluation statistics"):
        nncompress.compress(b"abc", model=str(path), dynamic_eval=True)
    with pytest.raises(ModelError, match="needs an FS-LSTM"):
        nncompress.compress(b"abc", model="ctx1", dynamic_eval=True)


def test_unknown_update_arithmetic_in_a_header_is_refused(de_model):
    path, _, _ = de_model
    ref = modelfiles.resolve(str(path))
    bad = {"arith": "exact-v1", "dyneval": {"arith": "de-out-v9", "segment": 8, "lr": 1e-3,
                                            "decay": 0.0, "eps": 1e-4}}
    with pytest.raises(ModelMismatchError, match="dynamic evaluation"):
        registry.predictor_for_header(ref.name, ref.sha256, bad, [str(path)])


def test_cli_options_reach_the_header(de_model, tmp_path):
    from click.testing import CliRunner
    from nncompress.cli import main
    path, _, _ = de_model
    src = tmp_path / "t.txt"
    src.write_bytes(TEXT * 2)
    r = CliRunner().invoke(main, ["c", "-m", str(path), "--dynamic-eval", "--de-segment", "4",
                                  "--de-lr", "0.002", "--verify", str(src)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["info", str(tmp_path / "t.txt.nnc")])
    assert '"dyneval":{"arith":"de-out-v1","decay":0.0,"eps":0.0001,"lr":0.002,"segment":4}' in r.output
    r = CliRunner().invoke(main, ["d", "-m", str(path), str(tmp_path / "t.txt.nnc"), str(tmp_path / "back")])
    assert r.exit_code == 0 and (tmp_path / "back").read_bytes() == TEXT * 2
    r = CliRunner().invoke(main, ["c", "-f", "--no-dynamic-eval", "--de-lr", "0.1", str(src)])
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["c", "-f", "-m", "ctx1", "--dynamic-eval", str(src)])
    assert r.exit_code == 1 and "needs an FS-LSTM" in r.output


def test_bench_runs_a_model_with_dynamic_evaluation(de_model):
    from nncompress.tools.bench import nnc_compressors
    path, _, _ = de_model
    static, dyn = nnc_compressors((f"{path}:static", f"{path}:de"), "cpu", None)
    assert dyn.name.endswith("dyn-eval") and static.name.endswith("static")
    blob = dyn.compress(TEXT)
    assert "dyneval" in nncompress.read_header(io.BytesIO(blob)).settings
    assert "dyneval" not in nncompress.read_header(io.BytesIO(static.compress(TEXT))).settings
    assert dyn.decompress(blob) == TEXT
    assert dyn.ideal_bpb(TEXT * 3) < static.ideal_bpb(TEXT * 3)
