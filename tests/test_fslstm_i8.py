"""The int8 FS-LSTM arithmetic (exact-i8-v1): agreement with the float model, the same integers
from torch._int_mm, its fallback, the compiled kernels, the reference and the torch backend, and
model files that say which arithmetic they need."""
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nncompress  # noqa: E402
from nncompress.errors import ModelError, ModelMismatchError  # noqa: E402
from nncompress.predictors import modelfiles  # noqa: E402
from nncompress.predictors.fslstm import exact  # noqa: E402
from nncompress.predictors.fslstm.predictor import (FSLSTMPredictor, load_fslstm,  # noqa: E402
                                                    read_exact, save_exact)
from nncompress.tools.export import exact_bits, float_bits  # noqa: E402

from helpers import TEXT, random_model, step_tables  # noqa: E402


@pytest.fixture(scope="module")
def tiny8():
    cfg, sd = random_model(seed=3)
    return {**cfg, "arith": exact.ARITH_I8}, sd, exact.quantize_model_i8(cfg, sd)


def test_weights_are_int8_with_column_multipliers(tiny8):
    _, sd, q = tiny8
    for name in ("fast.0.Wh", "fast.1.Wx", "slow.Wh", "out_W"):
        w8, m, r = q[name], q[name + ".m"], q[name + ".r"]
        assert np.abs(w8).max() <= 127 and np.abs(w8).max(axis=0).min() >= 126  # every column uses the range
        assert m.shape == (w8.shape[1],) and 0 <= m.min() and m.max() < 1 << exact.I8_MULT_BITS
    w = sd["out_W"]
    back = q["out_W"] * q["out_W.m"] / 2.0 ** (q["out_W.r"] + exact.FRAC - 7)
    assert np.abs(back - w).max() <= np.abs(w).max(axis=0).max() / 127 * 0.51 + 1e-6
    assert "out_sw" not in q and "slow.sx" not in q


def test_i8_tracks_float_cross_entropy(tiny8):
    cfg, sd, q = tiny8
    fcfg = {k: v for k, v in cfg.items() if k != "arith"}
    fb = float_bits(fcfg, sd, TEXT, 4)
    eb, _ = exact_bits(cfg, q, TEXT, 4)
    assert abs(eb - fb) / fb < 0.005
    # the same weights read as exact-v1 integers would be nonsense: the tag matters
    assert exact.ExactFSRNN(cfg, q).i8 and not exact.ExactFSRNN(fcfg, exact.quantize_model(fcfg, sd)).i8


def test_kernels_reference_torch_backend_and_fallback_agree(tiny8, monkeypatch):
    cfg, _, q = tiny8
    s = [TEXT[:240], TEXT[240:480], TEXT[480:720]]
    fused = step_tables(exact.ExactFSRNN(cfg, q), s)
    ref = step_tables(exact.ExactFSRNN(cfg, q, use_kernels=False), s)
    tor = step_tables(exact.ExactFSRNN(cfg, q, backend="torch", device="cpu"), s)
    monkeypatch.setattr(exact, "FORCE_INT8_FALLBACK", True)
    fb = step_tables(exact.ExactFSRNN(cfg, q), s)
    assert np.array_equal(fused, ref) and np.array_equal(fused, tor) and np.array_equal(fused, fb)
    # one stream alone gives what it gives in a batch
    alone = step_tables(exact.ExactFSRNN(cfg, q), [s[1]])[0]
    assert np.array_equal(alone, fused[1])


@pytest.mark.parametrize("scale", [1.0, 40.0])
def test_float64_cell_kernel_gives_the_int64_integers(scale):
    """fused.cell_i8f (integer-valued float64s, what runs) against fused.cell_i8 (int64) and the
    numpy reference; at scale 40 the pre-activations, cell states and lookup indices reach their
    clamps."""
    cfg, sd = random_model(seed=5, k=3)
    cfg = {**cfg, "zoneout_h": 0.05, "zoneout_c": 0.3}
    for name in list(sd):
        if "embedding" not in name:
            sd[name] = sd[name] * scale
    cfg = {**cfg, "arith": exact.ARITH_I8}
    q = exact.quantize_model_i8(cfg, sd)
    s = [TEXT[i * 200:(i + 1) * 200] for i in range(5)]
    net = exact.ExactFSRNN(cfg, q)
    assert net.pf is not None                      # the float64 kernel is the one that runs
    old = exact.ExactFSRNN(cfg, q)
    old.pf = None                                   # the int64 kernel
    ref = exact.ExactFSRNN(cfg, q, use_kernels=False)
    ref.record = True                               # its last step's intermediates stay
    got = [step_tables(n, s) for n in (net, old, ref)]
    assert np.array_equal(got[0], got[1]) and np.array_equal(got[0], got[2])
    for a in ("hF", "cF", "hS", "cS"):
        assert np.array_equal(getattr(net, a), getattr(ref, a))
    if scale > 1:    # the lookup tables' index clamps were reached
        top = int(q["lut_tanh"].max())
        assert any((np.abs(ref.tape[c]["tj"]) == top).any() for c in ("fast.0", "slow"))
    # values outside the float kernel's exact ranges select the int64 kernel
    q2 = dict(q, **{"slow.ln_gain": q["slow.ln_gain"] * 0 + (1 << 29)})
    assert exact.ExactFSRNN(cfg, q2).pf is None


def test_int8_product_fallback_is_exact_at_the_extremes(monkeypatch):
    a = torch.tensor([[127] * 64, [-127] * 64, list(range(-32, 32))], dtype=torch.int8)
    w = torch.tensor([[127, -127, 1]] * 64, dtype=torch.int8)
    fast = exact.int8_product(a, w)
    monkeypatch.setattr(exact, "FORCE_INT8_FALLBACK", True)
    slow = exact.int8_product(a, w)
    want = a.long() @ w.long()
    assert fast.dtype == slow.dtype == torch.int32
    assert torch.equal(fast.long(), want) and torch.equal(slow.long(), want)


@pytest.mark.parametrize("k", [64, exact._F32_EXACT_K - 1, exact._F32_EXACT_K + 7])
def test_every_int8_product_path_is_exact_at_the_extremes(k):
    """torch._int_mm (where it runs), float32 (sums below 2**24) and float64 (longer sums) give
    the same integers; which one runs is chosen by speed, so each must be exact on its own."""
    a = torch.full((32, k), 127, dtype=torch.int8)
    a[1::2] = -127
    w = torch.full((k, 8), -128, dtype=torch.int8)
    w[0] = 127                       # odd sums, beyond 2**24 when k is past the bound
    want = a.long() @ w.long()
    assert torch.equal(exact._float_product(a, w).long(), want)
    if k >= exact._F32_EXACT_K:      # float32 alone would round these sums
        assert not torch.equal(torch.matmul(a.float(), w.float()).long(), want)
    try:
        got = torch._int_mm(a, w)
    except (RuntimeError, AttributeError, NotImplementedError):
        got = None
    if got is not None:
        assert torch.equal(got.long(), want)
    assert exact._choose_cpu_product() in exact.cpu_products()
    from nncompress.predictors.fslstm import x86mm
    if x86mm.available():
        assert torch.equal(exact._avx2_product(a, w).long(), want)


def test_avx2_product_pads_every_shape():
    from nncompress.predictors.fslstm import x86mm
    if not x86mm.available():
        pytest.skip("no AVX2 product on this machine (not x86-64 with AVX2)")
    rng = np.random.default_rng(2)
    for S, K, N in ((1, 1, 1), (7, 33, 17), (13, 256, 1024), (6, 513, 16)):
        a = rng.integers(-127, 128, (S, K)).astype(np.int8)
        w = rng.integers(-127, 128, (K, N)).astype(np.int8)
        w[0] = -128 if K > 1 else w[0]
        got = x86mm.product(a, x86mm.Packed(w))
        assert got.dtype == np.int32 and got.shape == (S, N)
        assert np.array_equal(got, a.astype(np.int64) @ w.astype(np.int64))
    with pytest.raises(ValueError):
        x86mm.product(np.zeros((2, 3), np.int8), x86mm.Packed(np.zeros((4, 8), np.int8)))


@pytest.mark.parametrize("product", ["int_mm", "avx2", "float"])
def test_every_cpu_product_gives_the_same_model_tables(tiny8, monkeypatch, product):
    if product not in exact.cpu_products():
        pytest.skip(f"no {product} product on this machine")
    cfg, _, q = tiny8
    s = [TEXT[:160], TEXT[160:320], TEXT[320:480]]
    with monkeypatch.context() as m:     # the reference on the float product
        m.setattr(exact, "FORCE_INT8_FALLBACK", True)
        ref = step_tables(exact.ExactFSRNN(cfg, q, use_kernels=False), s)
    monkeypatch.setattr(exact, "_CPU_PRODUCT", product)
    assert np.array_equal(step_tables(exact.ExactFSRNN(cfg, q), s), ref)


def test_q7_rounds_and_clamps():
    a = np.array([[-(1 << 14), -129, -65, -64, -63, 0, 63, 64, 127, 1 << 14]], dtype=np.int64)
    got = exact.to_q7(a, exact._NumpyOps)
    assert got.tolist() == [[-127, -1, -1, 0, 0, 0, 0, 1, 1, 127]]
    from nncompress.predictors.fslstm import fused
    out = np.empty(a.shape, dtype=np.int8)
    fused.q7(a, out)
    assert out.tolist() == got.tolist()


def _ship(tmp_path, cfg, q, name="tiny-i8"):
    path = tmp_path / f"{name}.pt"
    save_exact(path, cfg, q)
    return path


def test_model_file_round_trip_and_header_tag(tiny8, tmp_path):
    cfg, _, q = tiny8
    path = _ship(tmp_path, cfg, q)
    cfg2, q2 = read_exact(path)
    assert cfg2["arith"] == exact.ARITH_I8 and all(np.array_equal(q[k], q2[k]) for k in q)
    assert torch.load(path, weights_only=True)["tensors"]["out_W"].dtype == torch.int8
    data = TEXT * 2
    blob = nncompress.compress(data, model=str(path), device="cpu", streams=3)
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.settings["arith"] == exact.ARITH_I8
    assert nncompress.decompress(blob, model=str(path)) == data


def test_arith_mismatch_and_dynamic_evaluation_are_refused(tiny8, tmp_path):
    cfg, sd, q = tiny8
    path = _ship(tmp_path, cfg, q)
    ref = modelfiles.resolve(str(path))
    with pytest.raises(ModelMismatchError, match="exact-v1"):
        load_fslstm(ref, settings={"arith": exact.ARITH_I16})
    with pytest.raises(ModelMismatchError, match="not-an-arith"):
        load_fslstm(ref, settings={"arith": "not-an-arith"})
    with pytest.raises(ModelError, match="no dynamic evaluation"):
        load_fslstm(ref, dynamic_eval=True)
    odd = _ship(tmp_path, {**cfg, "arith": "exact-i4-v9"}, q, name="odd")
    with pytest.raises(ModelError, match="exact-i4-v9"):
        load_fslstm(modelfiles.resolve(str(odd)))
    # an exact-v1 file (no "arith" key) is still exact-v1
    fcfg = {k: v for k, v in cfg.items() if k != "arith"}
    p16 = FSLSTMPredictor("x", bytes(32), fcfg, exact.quantize_model(fcfg, sd), device="cpu")
    assert p16.identity.settings["arith"] == exact.ARITH_I16


@pytest.mark.parametrize("n_threads", [2, 3])
def test_streams_stepped_in_parts_on_threads_give_the_same_integers(tiny8, monkeypatch,
                                                                       n_threads):
    """A step split over threads (each part its own rows) gives every stream the weights and
    state it gets in one part, also as streams drop off the end."""
    from nncompress.predictors import threads
    cfg, _, q = tiny8
    S, T = 20, 40
    arr = np.frombuffer(TEXT[:S * T], dtype=np.uint8).reshape(S, T).astype(np.int64)

    def run():
        net = exact.ExactFSRNN(cfg, q)
        out = [np.asarray(net.start(S)).copy()]
        for t in range(T - 1):
            a = S if t < T // 2 else S - (t - T // 2)      # streams drop off, one per step
            out.append(np.asarray(net.step(arr[:a, t])).copy())
        return out, [x.copy() for x in (net.hF, net.cF, net.hS, net.cS)], net

    monkeypatch.setattr(threads, "count", lambda: 1)
    one, st1, net = run()
    assert len(net._parts(S)) == 1
    monkeypatch.setattr(threads, "count", lambda: n_threads)
    monkeypatch.setattr(exact.ExactFSRNN, "MIN_PART_STREAMS", 2)
    many, stn, net = run()
    assert len(net._parts(S)) == n_threads and len(net._parts(3)) == 1
    assert all(np.array_equal(a, b) for a, b in zip(one, many))
    assert all(np.array_equal(a, b) for a, b in zip(st1, stn))
