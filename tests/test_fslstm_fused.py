"""The compiled FS-LSTM step (predictors/fslstm/fused.py) computes exact.py's integers."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nncompress.predictors import spec as specs  # noqa: E402
from nncompress.predictors.fslstm import exact  # noqa: E402
from nncompress.predictors.fslstm.model import FSRNN, get_config  # noqa: E402


def _q(k=3, seed=0, scale=1.0):
    """Integer tensors of a random tiny model; `scale` > 1 inflates the recurrent and input
    matrices, gains and biases so that pre-activations and cell states reach their clamps."""
    torch.manual_seed(seed)
    cfg = get_config("tiny")
    cfg.k = k
    cfg.zoneout_h, cfg.zoneout_c = 0.05, 0.3
    m = FSRNN(cfg).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 1:
                p.add_(0.2 * torch.randn_like(p))
            if scale != 1.0 and "embedding" not in name:
                p.mul_(scale)
    sd = {k_: v.detach().numpy() for k_, v in m.state_dict().items()}
    c = cfg.to_dict()
    return c, exact.quantize_model(c, sd)


def _run(net, symbols):
    """Weights, states and tapes of every step; streams drop off the end as in the engine."""
    out = [np.asarray(net.start(symbols.shape[1]))]
    tapes = []
    net.record = True
    for t in range(symbols.shape[0]):
        a = symbols.shape[1] - min(t // 4, symbols.shape[1] - 1)   # shrinking batches
        out.append(np.asarray(net.step(symbols[t, :a])))
        out += [net.hF, net.cF, net.hS, net.cS]
        tapes.append(net.tape)
    return out, tapes


@pytest.mark.parametrize("k,scale", [(2, 1.0), (3, 1.0), (3, 40.0)])
def test_kernels_give_the_reference_integers(k, scale):
    cfg, q = _q(k=k, seed=k, scale=scale)
    rng = np.random.default_rng(k)
    symbols = rng.integers(0, 256, size=(24, 7)).astype(np.int64)
    ref, ref_tapes = _run(exact.ExactFSRNN(cfg, q, use_kernels=False), symbols)
    got, got_tapes = _run(exact.ExactFSRNN(cfg, q, use_kernels=True), symbols)
    assert len(ref) == len(got)
    for a, b in zip(ref, got):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    for ta, tb in zip(ref_tapes, got_tapes):
        assert ta.keys() == tb.keys()
        for c in ta:
            if isinstance(ta[c], dict):
                assert ta[c].keys() == tb[c].keys()
                for key in ta[c]:
                    assert np.array_equal(ta[c][key], tb[c][key]), (c, key)
            else:
                assert np.array_equal(ta[c], tb[c])
    if scale > 1:   # the lookup tables' index clamps were reached, so they were compared too
        top = int(q["lut_tanh"].max())
        assert any((np.abs(t[c]["tj"]) == top).any() for t in ref_tapes for c in t
                   if isinstance(t[c], dict))

@pytest.mark.parametrize("de", [{"scope": "full"}, {"scope": "full", "decay": 0.05, "lr": 0.01},
                                {"scope": "out", "decay": 0.05, "segment": 4}])
def test_shipped_model_with_dynamic_evaluation_is_unchanged(monkeypatch, de):
    """The default's FS-LSTM member adapting (every weight, or the output layer; with decay and
    a large step): the kernels and the reference give the same weights step after step (the
    backward pass reads the kernels' tape, the updates run in fused.de_update)."""
    rng = np.random.default_rng(5)
    text = rng.integers(32, 127, size=(40, 9)).astype(np.int64)

    def tables(use):
        monkeypatch.setattr(exact.ExactFSRNN, "use_kernels", use)
        p = specs.build_predictor("fslstm-small-v3", device="cpu", dynamic_eval=de)
        w = [p.start(9)]
        for t in range(text.shape[0]):
            w.append(p.step(text[t]))
        return w

    for a, b in zip(tables(False), tables(True)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("k,scale", [(3, 1.0), (3, 40.0)])
def test_backward_kernel_gives_the_reference_gradients(k, scale):
    """Full dynamic evaluation's segment gradients (backward.SegmentGrads) with and without the
    kernels, on random losses large enough to reach the delta clamps at scale 40."""
    from nncompress.predictors.fslstm import backward
    cfg, q = _q(k=k, seed=10 + k, scale=scale)
    rng = np.random.default_rng(k)
    symbols = rng.integers(0, 256, size=(12, 6)).astype(np.int64)
    errs = [rng.integers(-(1 << 16), 1 << 16, size=(6, 256)).astype(np.int64)
            for _ in range(symbols.shape[0] + 1)]
    grads = []
    for use in (False, True):
        net = exact.ExactFSRNN(cfg, q, use_kernels=use)
        net.record = True
        g = backward.SegmentGrads(net)
        net.start(6)
        g.add(errs[0], net.hF, None)
        for t in range(symbols.shape[0]):
            a = 6 - t // 5
            net.step(symbols[t, :a])
            g.add(errs[t + 1][:a], net.hF, net.tape)
        grads.append(g.backward())
    ref, got = grads
    assert ref.keys() == got.keys()
    for name in ref:
        assert np.array_equal(np.asarray(ref[name]), np.asarray(got[name])), name
    assert any(np.abs(np.asarray(v)).max() > 0 for v in ref.values())
