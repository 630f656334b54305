import dataclasses

import pytest
import torch

from nncompress.predictors.fslstm import (CONFIGS, FSRNN, FSConfig, LNLSTMCell, bits_per_byte,
                                          count_parameters, get_config)

@pytest.fixture(autouse=True)
def one_thread():
    # the machines are shared: 2 threads on a busy 2-core box are many times slower than 1
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# fsrnn.md table; the paper's own vocabularies (official configs.py: PTB 50, enwik8 205)
PAPER = {
    "ptb-fs-lstm-2": (7.2e6, 50),
    "ptb-fs-lstm-4": (6.5e6, 50),
    "enwik8-fs-lstm-2": (27e6, 205),
    "enwik8-fs-lstm-4": (27e6, 205),
    "enwik8-large-fs-lstm-4": (47e6, 205),
}


@pytest.mark.parametrize("name", list(PAPER))
@pytest.mark.parametrize("paper_vocab", [False, True])
def test_paper_parameter_counts(name, paper_vocab):
    reported, vocab = PAPER[name]
    cfg = get_config(name)
    if paper_vocab:
        cfg = dataclasses.replace(cfg, vocab=vocab)
    n = count_parameters(cfg)   # sum of numel over the real module's parameters (meta device)
    assert abs(n / reported - 1) < 0.03, (name, n)


def test_count_matches_real_module():
    cfg = get_config("tiny")
    assert count_parameters(cfg) == sum(p.numel() for p in FSRNN(cfg).parameters())


def test_shipping_sizes():
    assert 0.3e6 <= count_parameters(CONFIGS["small"]) <= 0.5e6
    n = count_parameters(CONFIGS["base"])
    assert 2e6 <= n <= 3e6 and 4 * n <= 12 * 2**20


def test_structure_k4():
    cfg = dataclasses.replace(get_config("tiny"), k=4)
    m = FSRNN(cfg)
    E, Fn, Sn = cfg.embed, cfg.fast, cfg.slow
    assert [c.W.shape for c in m.fast] == [(E + Fn, 4 * Fn), (Sn + Fn, 4 * Fn),
                                           (1 + Fn, 4 * Fn), (1 + Fn, 4 * Fn)]
    assert m.slow.W.shape == (Fn + Sn, 4 * Sn)
    assert m.embedding.shape == (256, E) and m.out_W.shape == (Fn, 256)
    # orthogonal init: embedding (256 x E) has orthonormal columns
    assert torch.allclose(m.embedding.T @ m.embedding, torch.eye(E), atol=1e-4)
    assert torch.all(m.out_b == 0) and all(torch.all(c.b == 0) for c in m.fast)


def test_config_roundtrip_and_checks():
    cfg = get_config("small")
    assert FSConfig.from_dict(cfg.to_dict()) == cfg
    assert get_config(cfg) is cfg
    with pytest.raises(ValueError):
        FSConfig(k=1)
    with pytest.raises(ValueError):
        FSConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError):
        get_config("nope")


def _reference_step(cell, x, h, c, train_masks=None):
    """The official LNLSTM.py + aux.py equations, written out."""
    n = cell.n
    z = torch.cat([x, h], 1) @ cell.W + cell.b
    z = z.view(-1, 4, n)
    mu = z.mean(-1, keepdim=True)
    var = ((z - mu) ** 2).mean(-1, keepdim=True)
    z = ((z - mu) / torch.sqrt(var + cell.ln_eps)).reshape(-1, 4 * n) * cell.ln_gain + cell.ln_bias
    i, j, f, o = z.split(n, 1)
    c2 = c * torch.sigmoid(f + cell.forget_bias) + torch.sigmoid(i) * torch.tanh(j)
    mu = c2.mean(-1, keepdim=True)
    sd = torch.sqrt(((c2 - mu) ** 2).mean(-1, keepdim=True) + cell.ln_eps)
    h2 = torch.tanh(cell.lnc_gain * (c2 - mu) / sd + cell.lnc_bias) * torch.sigmoid(o)
    kh, kc = 1 - cell.zoneout_h, 1 - cell.zoneout_c   # aux.zoneout's keep = P(new value)
    return kh * h2 + (1 - kh) * h, kc * c2 + (1 - kc) * c, h2, c2


def test_cell_equations_and_eval_zoneout_blend():
    torch.manual_seed(1)
    cell = LNLSTMCell(5, 7, zoneout_c=0.3, zoneout_h=0.05).eval()
    with torch.no_grad():
        for p in (cell.b, cell.ln_gain, cell.ln_bias, cell.lnc_gain, cell.lnc_bias):
            p.uniform_(-0.5, 1.5)
    x, h, c = torch.randn(3, 5), torch.randn(3, 7), torch.randn(3, 7)
    with torch.no_grad():
        h1, c1 = cell(cell.gates_x(x), h, c)
        rh, rc, h2, c2 = _reference_step(cell, x, h, c)
    assert torch.allclose(h1, rh, atol=1e-5) and torch.allclose(c1, rc, atol=1e-5)
    # the blend really happens: the output is neither the new nor the old value
    assert not torch.allclose(h1, h2, atol=1e-4) and not torch.allclose(c1, c2, atol=1e-4)


def test_training_zoneout_is_a_per_unit_choice():
    torch.manual_seed(2)
    cell = LNLSTMCell(5, 400, zoneout_c=0.5, zoneout_h=0.2).train()
    x, h, c = torch.randn(4, 5), torch.randn(4, 400), torch.randn(4, 400)
    with torch.no_grad():
        h1, c1 = cell(cell.gates_x(x), h, c)
        *_, h2, c2 = _reference_step(cell, x, h, c)
    for new, old, got, p in ((h2, h, h1, 0.2), (c2, c, c1, 0.5)):
        is_old, is_new = torch.isclose(got, old, atol=1e-6), torch.isclose(got, new, atol=1e-5)
        assert torch.all(is_old | is_new)
        assert abs(is_old.float().mean().item() - p) < 0.05


def test_zero_input_cells_ignore_input_row():
    torch.manual_seed(3)
    cell = LNLSTMCell(1, 6, 0.3, 0.05).eval()
    h, c = torch.randn(2, 6), torch.randn(2, 6)
    with torch.no_grad():
        a = cell(None, h, c)
        b = cell(cell.gates_x(torch.zeros(2, 1)), h, c)
    assert torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])


@pytest.fixture
def tiny4():
    torch.manual_seed(0)
    return FSRNN(dataclasses.replace(get_config("tiny"), k=3, dropout=0.2))


def test_forward_shapes(tiny4):
    x = torch.randint(0, 256, (3, 11))
    logits, state = tiny4(x)
    cfg = tiny4.cfg
    assert logits.shape == (3, 11, 256)
    assert [s.shape for s in state] == [(3, cfg.fast), (3, cfg.fast), (3, cfg.slow), (3, cfg.slow)]
    assert [s.shape for s in tiny4.init_state(3)] == [s.shape for s in state]


def test_eval_determinism_and_training_noise(tiny4):
    x = torch.randint(0, 256, (2, 20))
    tiny4.eval()
    with torch.no_grad():
        a, _ = tiny4(x)
        b, _ = tiny4(x)
    assert torch.equal(a, b)
    tiny4.train()
    with torch.no_grad():
        c, _ = tiny4(x)
    assert not torch.allclose(a, c)


def test_state_carries_across_calls(tiny4):
    tiny4.eval()
    x = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        full, s_full = tiny4(x)
        first, s = tiny4(x[:, :10])
        second, s2 = tiny4(x[:, 10:], s)
        fresh, _ = tiny4(x[:, 10:])
    assert torch.allclose(torch.cat([first, second], 1), full, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(s2, s_full))
    assert not torch.allclose(fresh, second, atol=1e-3)   # the state matters


def test_one_step_reduces_loss():
    torch.manual_seed(0)
    m = FSRNN(get_config("tiny"))
    x = torch.tensor(list(b"the cat sat on the mat. " * 6)).view(2, -1)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)

    def loss_eval():
        m.eval()
        with torch.no_grad():
            return bits_per_byte(m(x[:, :-1])[0], x[:, 1:]).item()

    before = loss_eval()
    m.train()
    loss = bits_per_byte(m(x[:, :-1])[0], x[:, 1:])
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    after = loss_eval()
    assert after < before - 0.05, (before, after)
    assert 7.0 < before < 8.5   # near uniform (8 bits) at init
